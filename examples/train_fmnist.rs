//! Trains snnTorch's tutorial Fashion-MNIST convnet with AGD (batch 32, T = 10) and prints
//! training and inference images/s: the library path of `snnc train`, from source text.
//!
//! `cargo run --release --example train_fmnist -- [TRAIN_LIMIT] [TEST_LIMIT] [EPOCHS]`

use candle_core::Device;
use snnc::backend::candle::model::Model;
use snnc::train::driver::{self, TrainConfig};

const SOURCE: &str = "
network SnnTorchConvnet {
    input 1x28x28
    timesteps 10
    neuron LIF(leak = 0.95, threshold = 1.0)
    Conv1(1,12,5x5/1, pad=0) LIF
    MaxPool(2x2/2)
    Conv2(12,64,5x5/1, pad=0) LIF
    MaxPool(2x2/2)
    FC1(1024,10)
}";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    snnc::backend::candle::alloc::tune_malloc();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let train_limit = args.first().copied().unwrap_or(2000);
    let test_limit = args.get(1).copied().unwrap_or(1000);
    let epochs = args.get(2).copied().unwrap_or(1);
    let program =
        snnc::compile(SOURCE).map_err(|d| d.render_text("convnet", SOURCE, 100, false))?;
    let net = &program.networks[0];
    let data = snnc::data::load(
        &snnc::data::default_spec(),
        Some(train_limit),
        Some(test_limit),
    )?;
    let mut model = Model::new(net, &Device::Cpu, 0)?;
    let cfg = TrainConfig {
        epochs,
        timesteps: 10,
        batch: 32,
        lr: 1e-3,
        progress: true,
        ..TrainConfig::default()
    };
    let r = driver::train(&mut model, &data, &cfg)?;
    for e in &r.epochs {
        println!(
            "epoch {}: loss {:.4} train acc {:.3} test acc {:.3}",
            e.epoch, e.loss, e.train_accuracy, e.test_accuracy
        );
    }
    println!(
        "training {:.1} images/s, inference {:.1} images/s",
        r.train_images_per_s, r.infer_images_per_s
    );
    for a in &r.activity {
        println!("  {}@{}: {:.4}", a.layer, a.step, a.spike_rate);
    }
    Ok(())
}
