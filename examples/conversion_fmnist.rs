//! Conversion on Fashion-MNIST: trains the ANN of `networks/fashion-mnist/conversion/
//! vgg-backres.snn` or `vgg-unshared.snn` (built here layer by layer, the same topology),
//! balances its thresholds, and evaluates the SNN at several latencies; then times the SNN at
//! T = `--time-t` on `--time-images` test images with the dense path and with the automatic
//! dense/event choice.
//!
//! ```text
//! cargo run --release --example conversion_fmnist -- backres|unshared|FILE.snn OUT_DIR [EPOCHS] [TEST_IMAGES]
//!     [BALANCE_IMAGES] [BALANCE_STEPS] [BALANCE] [TIME_IMAGES] [TRAIN_IMAGES] [T,T,...]
//! ```
//! A finished ANN checkpoint in OUT_DIR (`ann.safetensors`) is reused.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use snnc::backend::candle::event::PathPolicy;
use snnc::backend::candle::model::Model;
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::data::{self, DataSpec};
use snnc::ir::{Activation, Encoding, Network, NeuronKind, NeuronSpec, PoolKind, Reset, Shape};
use snnc::train::checkpoint::{self, Meta};
use snnc::train::conversion::{self, Balance, ConversionConfig, Simulator, SplitImages};
use snnc::train::driver::{self, TrainConfig};
use snnc::train::method;

fn vgg(backres: bool) -> Network {
    let b = NetBuilder::new(
        if backres { "VGGBackRes" } else { "VGGUnshared" },
        Shape::new(1, 28, 28),
        100,
    )
    .encoding(Encoding::Poisson);
    let nif = Activation::Spiking(NeuronSpec {
        kind: NeuronKind::If,
        leak: 1.0,
        threshold: 1.0,
        reset: Reset::Subtract,
    });
    let b = b.conv("Conv1", 1, 32, 3, 1, nif);
    let (b, last) = if backres {
        (
            b.conv("Conv2", 32, 32, 3, 1, nif).reuse("Conv2", nif),
            "Conv3",
        )
    } else {
        (
            b.conv("Conv2", 32, 32, 3, 1, nif)
                .conv("Conv3", 32, 32, 3, 1, nif),
            "Conv4",
        )
    };
    b.pool(PoolKind::Avg, 2, 2)
        .conv(last, 32, 64, 3, 1, nif)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 3136, 256, nif)
        .fc("FC2", 256, 10, Activation::None)
        .build()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_else(|| "backres".into());
    let backres = which != "unshared";
    let out = PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "runs/conv".into()));
    let epochs: usize = arg(&args, 3, 1);
    let test_images: usize = arg(&args, 4, 1000);
    let balance_images: usize = arg(&args, 5, 256);
    let balance_steps: usize = arg(&args, 6, 100);
    let balance: Balance = arg(&args, 7, Balance::MaxInput);
    let time_images: usize = arg(&args, 8, 200);
    let train_images: usize = arg(&args, 9, 60_000);
    let eval_timesteps: Vec<usize> = args
        .get(10)
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![50, 100, 250, 500]);
    std::fs::create_dir_all(&out)?;

    // A `.snn` file through the front end, or the built-in twin of the conversion networks.
    let net = if which.ends_with(".snn") {
        let src = std::fs::read_to_string(&which)?;
        snnc::compile(&src)
            .map_err(|_| format!("{which} does not compile (see `snnc check {which}`)"))?
            .networks
            .into_iter()
            .next()
            .ok_or("no network in the file")?
    } else {
        vgg(backres)
    };
    let data = data::load(
        &DataSpec::FashionMnist(None),
        Some(train_images),
        Some(test_images),
    )?;
    let dev = Device::Cpu;
    let mut model = Model::new(&net, &dev, 0)?;
    let ann_path = out.join("ann.safetensors");
    let t0 = Instant::now();
    if ann_path.exists() {
        let (map, _) = checkpoint::load(&ann_path)?;
        model.load(&map)?;
        eprintln!("loaded the ANN from {}", ann_path.display());
    } else {
        let cfg = TrainConfig {
            method: method::ANN,
            epochs,
            batch: 64,
            lr: 1e-3,
            seed: 1,
            progress: true,
            ..TrainConfig::default()
        };
        let r = driver::train(&mut model, &data, &cfg)?;
        eprintln!(
            "ANN: {} epochs on {} images in {:.0} s, test accuracy {:.4} ({} test images)",
            epochs,
            data.train.len(),
            t0.elapsed().as_secs_f64(),
            r.test_accuracy,
            data.test.len()
        );
        let meta = Meta {
            epoch: epochs,
            seed: 1,
            network: net.name.clone(),
            method: "ann".into(),
            settings: None,
            ..Default::default()
        };
        checkpoint::save(&ann_path, &model.state()?, &meta)?;
    }

    let cfg = ConversionConfig {
        balance,
        balance_images,
        balance_steps,
        eval_timesteps,
        batch: 100,
        progress: true,
        seed: 1,
        ..ConversionConfig::default()
    };
    let train = SplitImages::new(&data.train, data.shape);
    let test = SplitImages::new(&data.test, data.shape);
    let conv = conversion::convert(&mut model, &train, &test, &cfg)?;
    conversion::save_checkpoint(
        &model,
        cfg.reset,
        &out.join("weights.safetensors"),
        &Meta {
            epoch: epochs,
            seed: 1,
            network: net.name.clone(),
            method: "conversion".into(),
            settings: None,
            ..Default::default()
        },
    )?;
    println!(
        "{}: ANN {:.4}; balance {} ({} images × {} steps) in {:.0} s",
        net.name,
        conv.ann_test_accuracy,
        conv.balance,
        balance_images,
        balance_steps,
        conv.balance_seconds
    );
    for t in &conv.thresholds {
        println!("  threshold {}@{} = {:.4}", t.layer, t.step, t.threshold);
    }
    for (l, inc) in &conv.backres_increasing {
        println!("  {l}: v_thresh increasing with the unroll step: {inc}");
    }
    for r in &conv.snn.results {
        println!(
            "  T = {:>3}: SNN {:.4} (loss {:+.2} points), E_SNN {:.3e} pJ, EE {:.2}",
            r.timesteps,
            r.test_accuracy,
            100.0 * (conv.ann_test_accuracy - r.test_accuracy),
            r.e_snn_pj,
            r.ee
        );
        let acts: Vec<String> = r
            .activity
            .iter()
            .map(|a| format!("{}@{} {:.3}", a.layer, a.step, a.spike_rate))
            .collect();
        println!("         spike rates: {}", acts.join(", "));
    }
    println!(
        "  SNN evaluation of {} images up to T = {}: {:.0} s ({} dense, {} event layer steps)",
        conv.snn.images,
        conv.snn.results.last().map(|r| r.timesteps).unwrap_or(0),
        conv.snn.seconds,
        conv.snn.dense_calls,
        conv.snn.event_calls
    );
    let json = serde_json::to_string_pretty(&conv.to_extra())?;
    std::fs::write(out.join("conversion.json"), json)?;

    // Timing: T = 100 on `time_images` test images, dense vs automatic choice.
    if time_images > 0 {
        let n = time_images.min(data.test.len());
        let sub = data::Split {
            images: data.test.images[..n * data.test.image_len()].to_vec(),
            labels: data.test.labels[..n].to_vec(),
        };
        let sub_images = SplitImages::new(&sub, data.shape);
        for policy in [PathPolicy::Dense, PathPolicy::default(), PathPolicy::Event] {
            let mut sim = Simulator::new(&model, cfg.reset, policy)?;
            sim.set_if_neurons(true);
            let ev = conversion::evaluate_snn(&sim, &sub_images, &[100], 100, 1, false)?;
            println!(
                "  timing {policy:?}: {n} images at T = 100 in {:.1} s → {:.0} s per 10,000 \
                 (accuracy {:.4}; {} dense, {} event layer steps)",
                ev.seconds,
                ev.seconds * 10_000.0 / n as f64,
                ev.results[0].test_accuracy,
                ev.dense_calls,
                ev.event_calls
            );
        }
    }
    Ok(())
}
