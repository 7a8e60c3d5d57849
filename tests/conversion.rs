//! ANN-to-SNN conversion: threshold balancing, IF rates, SNN/ANN agreement, checkpoints,
//! and the event-driven accumulation path.

use candle_core::{Device, Tensor};
use rand::Rng;
use snnc::backend::candle::encode::SeededRng;
use snnc::backend::candle::event::{density, ConvEvent, FcEvent, PathPolicy};
use snnc::backend::candle::model::rng_for as derive_rng;
use snnc::backend::candle::model::{ForwardOptions, Model};
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::backend::candle::observe::{Application, Observer};
use snnc::backend::candle::step::if_step;
use snnc::data::{Dataset, Split};
use snnc::ir::{Activation, Encoding, Network, NeuronKind, NeuronSpec, PoolKind, Reset, Shape};
use snnc::train::checkpoint::{self, Meta};
use snnc::train::conversion::{
    self, backres_increasing, balance, energy_from_input_density, energy_from_rates, evaluate_ann,
    evaluate_snn, percentile, Balance, ConversionConfig, RunSpec, Simulator, SplitImages,
};
use snnc::train::driver::{self, TrainConfig};
use snnc::train::method;
use snnc::train::report::ActivityRecord;

type R = Result<(), Box<dyn std::error::Error>>;

fn dev() -> Device {
    Device::Cpu
}

fn if_neuron() -> Activation {
    Activation::Spiking(NeuronSpec {
        kind: NeuronKind::If,
        leak: 1.0,
        threshold: 1.0,
        reset: Reset::Subtract,
    })
}

fn set(model: &Model, name: &str, v: Vec<f32>, shape: &[usize]) -> R {
    let t = Tensor::from_vec(v, shape, &dev())?;
    model.weight(name).ok_or("no weight")?.set(&t)?;
    Ok(())
}

fn split(images: Vec<f32>, labels: Vec<u8>) -> Split {
    Split { images, labels }
}

/// `n` synthetic 1×8×8 images of 4 classes: class k lights quadrant k (intensity 0.6–1)
/// over background noise (0–0.3).
fn synthetic(n: usize, rng: &mut SeededRng) -> Split {
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.0.random_range(0..4u8);
        for y in 0..8 {
            for x in 0..8 {
                let q = (y / 4) * 2 + x / 4;
                images.push(if q == k as usize {
                    0.6 + 0.4 * rng.0.random::<f32>()
                } else {
                    0.3 * rng.0.random::<f32>()
                });
            }
        }
        labels.push(k);
    }
    Split { images, labels }
}

const S8: [usize; 3] = [1, 8, 8];

fn cfg(steps: usize) -> ConversionConfig {
    ConversionConfig {
        balance_images: 16,
        balance_steps: steps,
        batch: 8,
        ..ConversionConfig::default()
    }
}

/// FC1(3,2) IF → FC2(2,2) IF → FC3(2,2), Poisson input with intensities 1 and 0 (so the
/// spike trains are deterministic). x = [1, 0, 1]:
/// FC1 currents W1·x = [1+2, −1+0.5] = [3, −0.5] → v1 = 3; FC1 then spikes [1, 0] every step;
/// FC2 currents W2·[1, 0] = [1.5, 4] → v2 = 4.
#[test]
fn max_balancing_matches_hand_computed_thresholds() -> R {
    let net = NetBuilder::new("tiny", Shape::new(3, 1, 1), 10)
        .fc("FC1", 3, 2, if_neuron())
        .fc("FC2", 2, 2, if_neuron())
        .fc("FC3", 2, 2, Activation::None)
        .build();
    let mut model = Model::new(&net, &dev(), 0)?;
    set(&model, "FC1", vec![1.0, 7.0, 2.0, -1.0, 9.0, 0.5], &[2, 3])?;
    set(&model, "FC2", vec![1.5, 5.0, 4.0, -3.0], &[2, 2])?;
    set(&model, "FC3", vec![1.0, 0.0, 0.0, 1.0], &[2, 2])?;
    let sp = split(vec![1.0, 0.0, 1.0], vec![0]);
    let data = SplitImages::new(&sp, [3, 1, 1]);
    let mut sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let th = balance(&mut sim, &data, &cfg(20))?;
    assert_eq!(th.len(), 2);
    assert_eq!((th[0].layer.as_str(), th[0].step), ("FC1", 1));
    assert!((th[0].threshold - 3.0).abs() < 1e-6, "{th:?}");
    assert!((th[1].threshold - 4.0).abs() < 1e-6, "{th:?}");
    // The balanced thresholds reach the model through convert's write-back.
    let out = conversion::convert(&mut model, &data, &data, &{
        let mut c = cfg(20);
        c.eval_timesteps = vec![5, 10];
        c
    })?;
    assert_eq!(model.thresholds(), &[3.0, 4.0]);
    // FC2: neuron 1 (current 4) fires every step, neuron 0 (1.5) at rate 3/8 → class 1;
    // the label is 0, so the accuracy is 0.
    assert_eq!(out.snn.results.len(), 2);
    assert_eq!(out.snn.results[1].test_accuracy, 0.0);
    // FC1's neuron 0 fires every step, neuron 1 never: rate 1/2.
    assert!((out.snn.results[1].activity[0].spike_rate - 0.5).abs() < 1e-9);
    // The report carries the SNN at the largest T and the conversion keys.
    let mut report = snnc::train::report::Report::new("ann", "tiny", 1);
    conversion::apply_to_report(&mut report, &out);
    assert_eq!(
        (report.method.as_str(), report.timesteps),
        ("conversion", 10)
    );
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["thresholds"][1]["threshold"], 4.0);
    assert_eq!(json["thresholds"][1]["layer"], "FC2");
    assert_eq!(json["conversion"][0]["timesteps"], 5);
    assert_eq!(json["ann_test_accuracy"], 0.0);
    assert!(json["conversion"][1]["e_snn_pj"].as_f64().ok_or("e_snn")? > 0.0);
    Ok(())
}

/// FC1(2,2) applied twice (BackRes), x = [1, 1], W = [[1, 1], [2, 1]]:
/// step 1 currents W·x = [2, 3] → v1 = 3; neuron 1 fires every step, neuron 0 (V = 2, 4, 3, …)
/// at t = 2, 3, 5, 6, …; step 2 receives [0, 1] (currents [1, 1]) or [1, 1] (currents
/// [2, 3]) → v2 = 3.
#[test]
fn backres_layer_gets_a_threshold_per_unroll_step() -> R {
    let net = NetBuilder::new("br", Shape::new(2, 1, 1), 10)
        .fc("FC1", 2, 2, if_neuron())
        .reuse("FC1", if_neuron())
        .fc("FC2", 2, 2, Activation::None)
        .build();
    assert_eq!(net.thresholds.len(), 2);
    let model = Model::new(&net, &dev(), 0)?;
    set(&model, "FC1", vec![1.0, 1.0, 2.0, 1.0], &[2, 2])?;
    let sp = split(vec![1.0, 1.0], vec![0]);
    let data = SplitImages::new(&sp, [2, 1, 1]);
    let mut sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let th = balance(&mut sim, &data, &cfg(12))?;
    assert_eq!((th[0].step, th[1].step), (1, 2));
    assert!((th[0].threshold - 3.0).abs() < 1e-6, "{th:?}");
    assert!((th[1].threshold - 3.0).abs() < 1e-6, "{th:?}");

    // A conv BackRes layer with random weights: two slots, two distinct thresholds.
    let net = NetBuilder::new("cbr", Shape::new(1, 6, 6), 10)
        .conv("Conv1", 1, 4, 3, 1, if_neuron())
        .conv("Conv2", 4, 4, 3, 1, if_neuron())
        .reuse("Conv2", if_neuron())
        .fc("FC1", 144, 3, Activation::None)
        .build();
    let model = Model::new(&net, &dev(), 5)?;
    let mut rng = derive_rng(3, 3);
    let imgs: Vec<f32> = (0..8 * 36).map(|_| rng.0.random::<f32>()).collect();
    let sp = split(imgs, vec![0; 8]);
    let data = SplitImages::new(&sp, [1, 6, 6]);
    let mut sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let th = balance(&mut sim, &data, &cfg(30))?;
    let c2: Vec<_> = th.iter().filter(|t| t.layer == "Conv2").collect();
    assert_eq!(c2.len(), 2);
    assert_eq!((c2[0].step, c2[1].step), (1, 2));
    assert!(c2.iter().all(|t| t.threshold > 0.0));
    assert_ne!(c2[0].threshold, c2[1].threshold);
    let inc = backres_increasing(&th);
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0].1, c2[0].threshold < c2[1].threshold);
    Ok(())
}

/// An IF neuron driven by a constant current a fires at rate min(1, max(0, a)/v) up to 1/T.
#[test]
fn if_rate_matches_relu_over_threshold() {
    // Binary fractions, so that the sums are exact and ceil(v/a) is the true step count.
    let th = 1.25f32;
    let currents = [0.0f32, 0.0625, 0.375, 0.875, 1.0, 1.25, 2.5, -0.5];
    for reset in [Reset::Subtract, Reset::Zero] {
        let mut v = vec![0f32; currents.len()];
        let mut counts = vec![0usize; currents.len()];
        let t = 2000;
        for _ in 0..t {
            let (s, _) = if_step(&mut v, &currents, th, reset).unwrap();
            for (c, x) in counts.iter_mut().zip(s) {
                *c += x as usize;
            }
        }
        for (a, c) in currents.iter().zip(counts) {
            let rate = c as f32 / t as f32;
            let relu = (a.max(0.0) / th).min(1.0);
            match reset {
                // Subtraction keeps the remainder: exact up to one spike.
                Reset::Subtract => assert!((rate - relu).abs() <= 1.0 / t as f32 + 1e-6),
                // Reset to zero loses the remainder: rate = 1/ceil(v/a) ≤ a/v.
                Reset::Zero => {
                    let expect = if *a > 0.0 { 1.0 / (th / a).ceil() } else { 0.0 };
                    assert!(
                        (rate - expect).abs() <= 1.0 / t as f32 + 1e-6,
                        "{a}: {rate}"
                    );
                    assert!(rate <= relu + 1e-6);
                }
            }
        }
    }
}

/// The simulator's ANN mode is the model's `Mode::Ann` forward pass.
#[test]
fn simulator_ann_mode_matches_model() -> R {
    let net = small_net(Encoding::Poisson);
    let model = Model::new(&net, &dev(), 9)?;
    let sp = synthetic(6, &mut derive_rng(1, 1));
    let idx: Vec<usize> = (0..6).collect();
    let (x, _) = driver::batch_tensors(&sp, S8, &idx, &dev())?;
    let want = model.forward(&x, &ForwardOptions::ann(false), &mut derive_rng(0, 0))?;
    let sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let spec = RunSpec {
        ann: true,
        checkpoints: vec![1],
        stop: None,
        collect: None,
    };
    let got = sim.run(&x, &spec, &mut derive_rng(0, 0))?;
    let d = (&got.logits[0] - &want.logits)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(d < 1e-4, "{d}");
    Ok(())
}

fn small_net(enc: Encoding) -> Network {
    NetBuilder::new("small", Shape::new(1, 8, 8), 10)
        .encoding(enc)
        .conv("Conv1", 1, 4, 3, 1, if_neuron())
        .reuse_conv_twice()
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 64, 16, if_neuron())
        .fc("FC2", 16, 4, Activation::None)
        .build()
}

trait Twice {
    fn reuse_conv_twice(self) -> Self;
}

impl Twice for NetBuilder {
    fn reuse_conv_twice(self) -> Self {
        self.conv("Conv2", 4, 4, 3, 1, if_neuron())
            .reuse("Conv2", if_neuron())
    }
}

/// A trained tiny ANN, converted: the SNN agrees with the ANN on most inputs at large T, for
/// max and percentile balancing; the dense and event paths give the same predictions.
#[test]
fn converted_network_agrees_with_its_ann() -> R {
    let net = small_net(Encoding::Poisson);
    let mut model = Model::new(&net, &dev(), 2)?;
    let data = Dataset {
        name: "synthetic".into(),
        shape: S8,
        classes: 4,
        train: synthetic(384, &mut derive_rng(11, 1)),
        test: synthetic(48, &mut derive_rng(12, 1)),
    };
    let train = SplitImages::new(&data.train, S8);
    let test = SplitImages::new(&data.test, S8);
    let tc = TrainConfig {
        method: method::ANN,
        epochs: 2,
        batch: 32,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    driver::train(&mut model, &data, &tc)?;
    let base = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let ann_acc = evaluate_ann(&base, &test, 16)?;
    assert!(ann_acc > 0.8, "the ANN did not learn: {ann_acc}");
    let ann_pred = predictions(&base, &test, None)?;

    for bal in [Balance::MaxInput, Balance::Percentile(99.9)] {
        let c = ConversionConfig {
            balance: bal,
            balance_images: 64,
            balance_steps: 50,
            batch: 16,
            ..ConversionConfig::default()
        };
        let mut sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
        balance(&mut sim, &train, &c)?;
        let snn = predictions(&sim, &test, Some(300))?;
        let agree = snn.iter().zip(&ann_pred).filter(|(a, b)| a == b).count();
        assert!(
            agree * 10 >= data.test.len() * 9,
            "{bal}: only {agree}/{} agree",
            data.test.len()
        );
        let ev = evaluate_snn(&sim, &test, &[20, 300], 16, 0, false)?;
        assert!(ev.results[1].test_accuracy >= ann_acc - 0.1);
        // Activity and energy are measured and sane.
        let r = &ev.results[1];
        assert!(r
            .activity
            .iter()
            .all(|a| (0.0..=1.0).contains(&a.spike_rate)));
        assert!(r.e_snn_pj > 0.0 && r.ee > 0.0);
        assert_eq!(r.input_activity.len(), 5);
        // Event-driven path: identical spikes, so identical predictions.
        sim.set_policy(PathPolicy::Event);
        let ev_pred = predictions(&sim, &test, Some(300))?;
        assert_eq!(ev_pred, snn);
    }
    Ok(())
}

fn predictions(
    sim: &Simulator,
    data: &SplitImages,
    t: Option<usize>,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let idx: Vec<usize> = (0..data.split.len()).collect();
    let (x, _) = driver::batch_tensors(data.split, data.shape, &idx, &dev())?;
    let spec = RunSpec {
        ann: t.is_none(),
        checkpoints: vec![t.unwrap_or(1)],
        stop: None,
        collect: None,
    };
    let out = sim.run(&x, &spec, &mut derive_rng(5, 5))?;
    Ok(out.logits[0].argmax(1)?.to_vec1::<u32>()?)
}

/// Balanced thresholds and the reset mode survive a checkpoint round trip.
#[test]
fn checkpoint_round_trip_keeps_thresholds() -> R {
    let net = small_net(Encoding::Direct);
    let mut model = Model::new(&net, &dev(), 4)?;
    let values = [0.7f32, 1.9, 2.3, 0.45];
    for (i, &v) in values.iter().enumerate() {
        model.set_threshold(snnc::ir::SlotId(i), v)?;
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("weights.safetensors");
    let meta = Meta {
        epoch: 3,
        seed: 8,
        network: "small".into(),
        method: "ann".into(),
        settings: None,
        ..Default::default()
    };
    conversion::save_checkpoint(&model, Reset::Zero, &path, &meta)?;
    let (map, meta2) = checkpoint::load(&path)?;
    assert_eq!(meta2.method, "conversion");
    assert_eq!(meta2.epoch, 3);
    assert_eq!(conversion::checkpoint_reset(&map)?, Reset::Zero);
    let mut fresh = Model::new(&net, &dev(), 99)?;
    fresh.load(&map)?;
    assert_eq!(fresh.thresholds(), &values);
    let a = model
        .weight("Conv2")
        .ok_or("w")?
        .as_tensor()
        .flatten_all()?
        .to_vec1::<f32>()?;
    let b = fresh
        .weight("Conv2")
        .ok_or("w")?
        .as_tensor()
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(a, b);
    Ok(())
}

fn sparse(n: usize, p: f32, seed: u64, values: bool) -> Vec<f32> {
    let mut rng = derive_rng(seed, 2);
    (0..n)
        .map(|_| {
            if rng.0.random::<f32>() < p {
                if values {
                    rng.0.random::<f32>() * 2.0 - 0.5
                } else {
                    1.0
                }
            } else {
                0.0
            }
        })
        .collect()
}

/// The event path equals candle's conv2d / matmul on spike and real-valued sparse inputs.
#[test]
fn event_and_dense_paths_agree() -> R {
    for &(c, o, k, s, p, h, w) in &[
        (3usize, 5usize, 3usize, 1usize, 1usize, 7usize, 6usize),
        (2, 4, 3, 2, 1, 9, 9),
        (4, 3, 5, 1, 2, 6, 8),
        (2, 2, 3, 2, 0, 8, 7),
        (1, 6, 1, 1, 0, 4, 4),
    ] {
        for (density_p, values) in [(0.05f32, false), (0.3, true), (1.0, true)] {
            let wv = sparse(o * c * k * k, 1.0, 7, true);
            let wt = Tensor::from_vec(wv, (o, c, k, k), &dev())?;
            let xv = sparse(2 * c * h * w, density_p, 8, values);
            let x = Tensor::from_vec(xv.clone(), (2, c, h, w), &dev())?;
            let want = x.conv2d(&wt, p, s, 1, 1)?;
            let ev = ConvEvent::new(&wt, s, p, h, w)?;
            let (oo, oh, ow) = ev.out_dims();
            assert_eq!(want.dims(), &[2, oo, oh, ow]);
            let got = Tensor::from_vec(ev.forward(&xv)?, (2, oo, oh, ow), &dev())?;
            let d = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "conv {c},{o},{k},{s},{p}: {d}");
        }
    }
    let wv = sparse(7 * 13, 1.0, 3, true);
    let wt = Tensor::from_vec(wv, (7, 13), &dev())?;
    let xv = sparse(3 * 13, 0.2, 4, true);
    let x = Tensor::from_vec(xv.clone(), (3, 13), &dev())?;
    let want = x.matmul(&wt.t()?)?;
    let ev = FcEvent::new(&wt)?;
    let got = Tensor::from_vec(ev.forward(&xv)?, (3, 7), &dev())?;
    let d = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(d < 1e-5, "fc: {d}");
    assert!(ev.forward(&xv[..5]).is_err());
    assert_eq!(density(&[0.0, 1.0, 0.0, 0.5]), 0.5);
    let auto = PathPolicy::Auto { conv: 0.3, fc: 0.1 };
    assert!(auto.use_event(0.05, false) && auto.use_event(0.2, true));
    assert!(!auto.use_event(0.2, false) && !auto.use_event(0.4, true));
    assert!(PathPolicy::Event.use_event(1.0, true) && !PathPolicy::Dense.use_event(0.0, true));
    Ok(())
}

/// Eq. 10/11 on a hand-computed network: FC1(4,3) IF, FC2(3,2).
/// E_ANN = (12 + 6)·3.2 = 57.6 pJ; with SA = 0.5, 0.25 and T = 10:
/// E_SNN = (12·0.5 + 6·0.25)·10·0.1 = 7.5 pJ; EE = 7.68.
#[test]
fn energy_matches_hand_computation() {
    let net = NetBuilder::new("e", Shape::new(4, 1, 1), 10)
        .fc("FC1", 4, 3, if_neuron())
        .fc("FC2", 3, 2, Activation::None)
        .build();
    let mut sa = vec![1.0; net.graph.node_count()];
    for n in net.graph.node_indices() {
        match net.graph[n].name.as_str() {
            "FC1" => sa[n.index()] = 0.5,
            "FC2" => sa[n.index()] = 0.25,
            _ => {}
        }
    }
    let (a, s, ee) = energy_from_input_density(&net, &sa, 10);
    assert!((a - 57.6).abs() < 1e-9);
    assert!((s - 7.5).abs() < 1e-9);
    assert!((ee - 7.68).abs() < 1e-9);
    // Through `analysis::estimate`: FC1's SA is the Poisson input's rate (0.5), FC2's the
    // spike rate of FC1 (0.25): the same 7.5 pJ.
    let rates = [ActivityRecord {
        layer: "FC1".into(),
        step: 1,
        spike_rate: 0.25,
    }];
    let (a, s, ee) = energy_from_rates(&net, &rates, 0.5, 10);
    assert!((a - 57.6).abs() < 1e-6, "{a}");
    assert!((s - 7.5).abs() < 1e-6, "{s}");
    assert!((ee - 7.68).abs() < 1e-6, "{ee}");
}

#[test]
fn percentile_and_balance_parsing() {
    let mut v: Vec<f32> = (1..=1000).rev().map(|i| i as f32).collect();
    assert_eq!(percentile(&mut v, 99.9), Some(999.0));
    assert_eq!(percentile(&mut v, 100.0), Some(1000.0));
    assert_eq!(percentile(&mut v, 50.0), Some(500.0));
    assert_eq!(percentile(&mut [], 50.0), None);
    assert_eq!("max".parse::<Balance>(), Ok(Balance::MaxInput));
    assert_eq!(
        "percentile".parse::<Balance>(),
        Ok(Balance::Percentile(99.9))
    );
    assert_eq!(
        "percentile:99.5".parse::<Balance>(),
        Ok(Balance::Percentile(99.5))
    );
    assert!("percentile:0".parse::<Balance>().is_err());
    assert!("percentile:x".parse::<Balance>().is_err());
    assert!("median".parse::<Balance>().is_err());
}

/// Hybrid networks: a ReLU block before the spiking one (computed once, fed at every step)
/// and one after it (fed the spike rates). The simulator's ANN mode equals the model's, the
/// SNN runs, only the spiking layer is balanced, and at large T the SNN's logits approach
/// the ANN's up to the balanced scale.
#[test]
fn hybrid_network_converts() -> R {
    let net = NetBuilder::new("hyb", Shape::new(1, 4, 4), 10)
        .fc("FC1", 16, 12, Activation::Relu)
        .fc("FC2", 12, 12, if_neuron())
        .fc("FC3", 12, 8, Activation::Relu)
        .fc("FC4", 8, 3, Activation::None)
        .build();
    assert_eq!(net.thresholds.len(), 1);
    let model = Model::new(&net, &dev(), 21)?;
    let mut rng = derive_rng(4, 4);
    let imgs: Vec<f32> = (0..8 * 16).map(|_| rng.0.random::<f32>()).collect();
    let sp = split(imgs, vec![0; 8]);
    let data = SplitImages::new(&sp, [1, 4, 4]);
    let idx: Vec<usize> = (0..8).collect();
    let (x, _) = driver::batch_tensors(&sp, [1, 4, 4], &idx, &dev())?;
    let want = model.forward(&x, &ForwardOptions::ann(false), &mut derive_rng(0, 0))?;
    let mut sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let ann = RunSpec {
        ann: true,
        checkpoints: vec![1],
        stop: None,
        collect: None,
    };
    let got = sim.run(&x, &ann, &mut derive_rng(0, 0))?;
    let d = (&got.logits[0] - &want.logits)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(d < 1e-4, "{d}");
    let th = balance(&mut sim, &data, &cfg(50))?;
    assert_eq!(th.len(), 1);
    assert!(th[0].threshold > 0.0);
    // FC2 is fed the real-valued FC1 output at every step: the rate of its neurons is
    // min(1, relu(W2·a1)/v) up to 1/T, so FC3's input is the ANN's FC2 output / v.
    let snn = RunSpec {
        ann: false,
        checkpoints: vec![2000],
        stop: None,
        collect: None,
    };
    let s = sim.run(&x, &snn, &mut derive_rng(0, 0))?;
    let (n, k) = s.logits[0].dims2()?;
    assert_eq!((n, k), (8, 3));
    let v: Vec<f32> = s.logits[0].flatten_all()?.to_vec1()?;
    assert!(v.iter().all(|x| x.is_finite()));
    let ann_pred = got.logits[0].argmax(1)?.to_vec1::<u32>()?;
    let snn_pred = s.logits[0].argmax(1)?.to_vec1::<u32>()?;
    let agree = ann_pred
        .iter()
        .zip(&snn_pred)
        .filter(|(a, b)| a == b)
        .count();
    assert!(agree >= 6, "{ann_pred:?} vs {snn_pred:?}");
    Ok(())
}

/// `snnc train --method conversion`, then `snnc eval` on its checkpoint: the same SNN
/// accuracy at the same T without balancing again; the report carries the conversion keys.
#[test]
fn cli_conversion_train_then_eval() -> R {
    use std::process::Command;
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(
        &snn,
        "network Tiny {\n  input 1x28x28\n  timesteps 20\n  \
         neuron IF(threshold = 1.0, reset = subtract)\n  Conv1(1,4,3x3/2)\n  \
         Conv2(4,4,3x3/1) x2\n  AvgPool(2x2/2)\n  FC1(196,10)\n}\n",
    )?;
    let out = dir.path().join("run");
    let bin = env!("CARGO_BIN_EXE_snnc");
    let snn_s = snn.to_str().ok_or("path")?;
    let out_s = out.to_str().ok_or("path")?;
    let train = Command::new(bin)
        .args([
            "train",
            snn_s,
            "--method",
            "conversion",
            "--data",
            "embedded",
            "--train-limit",
            "200",
            "--test-limit",
            "40",
            "--balance-images",
            "16",
            "--balance-steps",
            "10",
            "--eval-timesteps",
            "5,20",
            "--out",
            out_s,
        ])
        .output()?;
    let err = String::from_utf8_lossy(&train.stderr).to_string();
    assert!(train.status.success(), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    assert_eq!(report["method"], "conversion");
    assert_eq!(
        report["thresholds"].as_array().ok_or("thresholds")?.len(),
        3
    );
    assert_eq!(report["thresholds"][2]["layer"], "Conv2");
    assert_eq!(report["thresholds"][2]["step"], 2);
    assert!(report["ann_test_accuracy"].is_number());
    let runs = report["conversion"].as_array().ok_or("conversion")?;
    assert_eq!(runs.len(), 2);
    let acc = runs[1]["test_accuracy"].as_f64().ok_or("acc")?;
    let weights = out.join("weights.safetensors");
    let eval = Command::new(bin)
        .args([
            "eval",
            snn_s,
            "--weights",
            weights.to_str().ok_or("path")?,
            "--data",
            "embedded",
            "--test-limit",
            "40",
            "--timesteps",
            "20",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&eval.stdout).to_string();
    assert!(eval.status.success(), "{text}");
    assert!(
        text.contains(&format!("accuracy {:.2}%", 100.0 * acc)),
        "{text} vs {acc}"
    );
    assert!(text.contains("conversion, IF, T = 20"), "{text}");
    Ok(())
}

/// Counts spikes per slot and the time steps seen, through the observer hooks.
struct SpikeCounter {
    spikes: Vec<f64>,
    times: Vec<Option<usize>>,
}

impl Observer for SpikeCounter {
    fn spikes(&mut self, app: &Application, s: &Tensor) -> candle_core::Result<()> {
        self.spikes[app.slot.0] += s.sum_all()?.to_scalar::<f32>()? as f64;
        if app.slot.0 == 0 {
            self.times.push(app.time);
        }
        Ok(())
    }
}

/// One network, two ways to run it: with direct input, the step-by-step simulator and the
/// batched model in `Mode::IfConversion` emit the same spikes per slot (seen through the same
/// observer hook) and the same logits; the stepper's observer sees steps 1..=T in order.
#[test]
fn stepper_and_batched_if_runs_agree_through_observers() -> R {
    let net = small_net(Encoding::Direct);
    let mut model = Model::new(&net, &dev(), 4)?;
    for (i, th) in [0.5f32, 0.4, 0.2, 0.02].into_iter().enumerate() {
        model.set_threshold(snnc::ir::SlotId(i), th)?;
    }
    let sp = synthetic(5, &mut derive_rng(2, 2));
    let idx: Vec<usize> = (0..5).collect();
    let (x, _) = driver::batch_tensors(&sp, S8, &idx, &dev())?;
    let t = 7;
    let slots = model.thresholds().len();
    let mut batched = SpikeCounter {
        spikes: vec![0.0; slots],
        times: Vec::new(),
    };
    let want = model.forward_observed(
        &x,
        &ForwardOptions::if_conversion(t),
        &mut derive_rng(0, 0),
        &mut batched,
    )?;
    let sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let spec = RunSpec {
        ann: false,
        checkpoints: vec![t],
        stop: None,
        collect: None,
    };
    let mut stepped = SpikeCounter {
        spikes: vec![0.0; slots],
        times: Vec::new(),
    };
    let got = sim.run_observed(&x, &spec, &mut derive_rng(0, 0), &mut stepped)?;
    assert_eq!(batched.times, vec![None]);
    assert_eq!(stepped.times, (1..=t).map(Some).collect::<Vec<_>>());
    assert_eq!(stepped.spikes, got.counters[0].spikes);
    assert!(
        stepped.spikes.iter().all(|&s| s > 0.0),
        "{:?}",
        stepped.spikes
    );
    for (a, b) in batched.spikes.iter().zip(&stepped.spikes) {
        assert!(
            (a - b).abs() <= 1.0,
            "{:?} vs {:?}",
            batched.spikes,
            stepped.spikes
        );
    }
    let d = (&got.logits[0] - &want.logits)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(d < 1e-4, "{d}");
    Ok(())
}
