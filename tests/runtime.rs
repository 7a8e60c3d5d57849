//! The runtime: lowering, hybrid semantics, BackRes gradients, AGD training, checkpoints.

use candle_core::{Device, Tensor};
use snnc::backend::candle::model::{rng_for as derive_rng, ForwardOptions, Model};
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::backend::candle::neuron::{lif_scan_reference, NeuronParams};
use snnc::backend::candle::observe::Recorder;
use snnc::data::{Dataset, Split};
use snnc::ir::{Activation, Classifier, Encoding, JoinMode, Network, PoolKind, Shape};
use snnc::train::checkpoint;
use snnc::train::driver::{self, TrainConfig, TrainError};
use snnc::train::method;

type R = Result<(), Box<dyn std::error::Error>>;

fn dev() -> Device {
    Device::Cpu
}

fn image(b: usize, c: usize, h: usize, w: usize, seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = derive_rng(seed, 7);
    let v: Vec<f32> = (0..b * c * h * w).map(|_| rng.0.random::<f32>()).collect();
    Tensor::from_vec(v, (b, c, h, w), &dev()).unwrap()
}

fn grad_of(model: &Model, name: &str, x: &Tensor, opts: ForwardOptions) -> Tensor {
    let out = model.forward(x, &opts, &mut derive_rng(1, 1)).unwrap();
    let g = out
        .logits
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    g.get(model.weight(name).unwrap().as_tensor())
        .unwrap_or_else(|| panic!("{name} has no gradient"))
        .clone()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A BackRes layer's gradient is the sum of its unroll steps' gradients: compared with an
/// unshared twin whose two weight sets hold the same values.
#[test]
fn backres_gradient_is_sum_over_unroll_steps() -> R {
    let input = Shape::new(1, 8, 8);
    let b = NetBuilder::new("shared", input, 4).encoding(Encoding::Direct);
    let lif = b.lif();
    let shared = b
        .conv("Conv1", 1, 4, 3, 1, lif)
        .conv("Conv2", 4, 4, 3, 1, lif)
        .reuse("Conv2", lif)
        .fc("FC1", 256, 3, Activation::None)
        .build();
    let twin = NetBuilder::new("twin", input, 4)
        .encoding(Encoding::Direct)
        .conv("Conv1", 1, 4, 3, 1, lif)
        .conv("Conv2a", 4, 4, 3, 1, lif)
        .conv("Conv2b", 4, 4, 3, 1, lif)
        .fc("FC1", 256, 3, Activation::None)
        .build();
    assert_eq!(shared.thresholds.len(), 3, "one slot per (layer, step)");
    let ms = Model::new(&shared, &dev(), 3)?;
    let mt = Model::new(&twin, &dev(), 4)?;
    for (from, to) in [
        ("Conv1", "Conv1"),
        ("Conv2", "Conv2a"),
        ("Conv2", "Conv2b"),
        ("FC1", "FC1"),
    ] {
        mt.weight(to)
            .unwrap()
            .set(ms.weight(from).unwrap().as_tensor())?;
    }
    let x = image(2, 1, 8, 8, 5);
    let opts = ForwardOptions::snn(4, false);
    let out_s = ms.forward(&x, &opts, &mut derive_rng(1, 1))?;
    let out_t = mt.forward(&x, &opts, &mut derive_rng(1, 1))?;
    assert!(max_abs_diff(&out_s.logits, &out_t.logits) < 1e-5);
    let gs = grad_of(&ms, "Conv2", &x, opts);
    let ga = grad_of(&mt, "Conv2a", &x, opts);
    let gb = grad_of(&mt, "Conv2b", &x, opts);
    let sum = (&ga + &gb)?;
    let scale = sum.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(scale > 1e-4, "the gradients must not vanish");
    assert!(max_abs_diff(&gs, &sum) < 1e-4 * scale.max(1.0));
    // And neither step alone is the whole gradient.
    assert!(max_abs_diff(&gs, &ga) > 1e-3 * scale);
    Ok(())
}

/// Hybrid boundaries: the ANN block is computed once and fed identically at every step;
/// the spike rate over T leaves the SNN block. Checked against a hand-written computation.
#[test]
fn hybrid_boundaries_follow_the_contract() -> R {
    let t = 5;
    let b = NetBuilder::new("hyb", Shape::new(1, 6, 6), t as u32);
    let lif = b.lif();
    let net = b
        .conv("Conv1", 1, 3, 3, 1, Activation::Relu)
        .conv("Conv2", 3, 2, 3, 1, lif)
        .fc("FC1", 72, 5, Activation::Relu)
        .fc("FC2", 5, 3, Activation::None)
        .build();
    let m = Model::new(&net, &dev(), 9)?;
    let x = image(2, 1, 6, 6, 2);
    let mut rec = Recorder::new(m.thresholds().len());
    let out = m.forward_observed(
        &x,
        &ForwardOptions::snn(t, false),
        &mut derive_rng(0, 0),
        &mut rec,
    )?;

    let w = |n: &str| m.weight(n).unwrap().as_tensor().clone();
    let a = x.conv2d(&w("Conv1"), 1, 1, 1, 1)?.relu()?; // once, [B, 3, 6, 6]
    let cur = a.conv2d(&w("Conv2"), 1, 1, 1, 1)?; // the same current at every step
    let n = cur.elem_count();
    let cur_t = cur.flatten_all()?.unsqueeze(0)?.repeat((t, 1))?;
    let spec = snnc::ir::NeuronSpec::default();
    let p = NeuronParams {
        leak: spec.leak,
        threshold: spec.threshold,
        reset: spec.reset,
        gamma: 0.3,
    };
    let s = lif_scan_reference(&cur_t, &p)?; // [T, n]
    let rate = s.mean(0)?.reshape((2, 72))?;
    let h = rate.matmul(&w("FC1").t()?)?.relu()?;
    let logits = h.matmul(&w("FC2").t()?)?;
    assert!(max_abs_diff(&out.logits, &logits) < 1e-5);
    assert!(max_abs_diff(&out.penultimate, &h) < 1e-5);
    // Recorded: the slot's max input current and its spike rate.
    let want_max = cur.max_all()?.to_scalar::<f32>()?;
    assert!((rec.max_input[0] - want_max).abs() < 1e-5);
    let want_rate = s.mean_all()?.to_scalar::<f32>()?;
    assert_eq!(rec.activity.len(), 1);
    assert!((rec.activity[0].spike_rate - want_rate).abs() < 1e-6);
    assert!(n > 0);
    Ok(())
}

fn full_net(classifier: Classifier) -> Network {
    let b = NetBuilder::new("full", Shape::new(1, 8, 8), 3).classifier(classifier);
    let lif = b.lif();
    let b = b.conv("Conv1", 1, 4, 3, 1, lif);
    let skip = b.mark();
    b.conv("Conv2", 4, 4, 3, 1, lif)
        .reuse("Conv2", lif)
        .join(skip, JoinMode::Concat)
        .pool(PoolKind::Avg, 2, 2)
        .dropout(0.2)
        .conv("Conv3", 8, 4, 3, 1, Activation::Relu)
        .pool(PoolKind::Max, 2, 2)
        .fc("FC1", 16, 8, lif)
        .fc("FC2", 8, 4, Activation::None)
        .build()
}

#[test]
fn every_parameter_receives_a_gradient() -> R {
    for c in [Classifier::Softmax, Classifier::Stochmax] {
        let m = Model::new(&full_net(c), &dev(), 1)?;
        let x = image(4, 1, 8, 8, 3);
        let y = Tensor::new(&[0u32, 1, 2, 3], &dev())?;
        let mut rng = derive_rng(2, 0);
        for opts in [ForwardOptions::snn(3, true), ForwardOptions::ann(true)] {
            let out = m.forward(&x, &opts, &mut rng)?;
            let g = m.loss(&out, &y, true, &mut rng)?.backward()?;
            for (name, v) in m.vars() {
                let gr = g
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no grad"));
                let s = gr.abs()?.sum_all()?.to_scalar::<f32>()?;
                assert!(s > 0.0 && s.is_finite(), "{name} ({c:?}, {opts:?}): {s}");
            }
        }
    }
    Ok(())
}

/// The ANN mode's gradient against central finite differences.
#[test]
fn ann_gradient_matches_finite_differences() -> R {
    let net = NetBuilder::new("fd", Shape::new(1, 4, 4), 1)
        .conv("Conv1", 1, 2, 3, 1, Activation::Relu)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 8, 3, Activation::None)
        .build();
    let m = Model::new(&net, &dev(), 11)?;
    let x = image(2, 1, 4, 4, 4);
    let y = Tensor::new(&[1u32, 2], &dev())?;
    let opts = ForwardOptions::ann(false);
    let loss = |m: &Model| -> f64 {
        let out = m.forward(&x, &opts, &mut derive_rng(0, 0)).unwrap();
        let l = m.loss(&out, &y, false, &mut derive_rng(0, 0)).unwrap();
        l.to_scalar::<f32>().unwrap() as f64
    };
    let out = m.forward(&x, &opts, &mut derive_rng(0, 0))?;
    let g = m.loss(&out, &y, false, &mut derive_rng(0, 0))?.backward()?;
    for name in ["Conv1", "FC1"] {
        let var = m.weight(name).unwrap().clone();
        let grad = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        for i in [0, base.len() / 2, base.len() - 1] {
            let eps = 1e-2f32;
            let mut plus = base.clone();
            plus[i] += eps;
            var.set(&Tensor::from_vec(plus, var.shape(), &dev())?)?;
            let lp = loss(&m);
            let mut minus = base.clone();
            minus[i] -= eps;
            var.set(&Tensor::from_vec(minus, var.shape(), &dev())?)?;
            let lm = loss(&m);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev())?)?;
            let fd = (lp - lm) / (2.0 * eps as f64);
            assert!(
                (fd - grad[i] as f64).abs() < 2e-3 + 0.02 * fd.abs(),
                "{name}[{i}]: fd {fd} vs {}",
                grad[i]
            );
        }
    }
    Ok(())
}

#[test]
fn wrong_input_shape_is_an_error() -> R {
    let m = Model::new(&full_net(Classifier::Softmax), &dev(), 1)?;
    let x = image(1, 3, 8, 8, 1);
    let e = m.forward(&x, &ForwardOptions::snn(2, false), &mut derive_rng(0, 0));
    assert!(e.is_err());
    let msg = m.check_input(Shape::new(1, 28, 28)).unwrap_err();
    assert!(msg.contains("1×8×8") && msg.contains("1×28×28"), "{msg}");
    Ok(())
}

fn small_net() -> Network {
    let b = NetBuilder::new("tiny", Shape::new(1, 8, 8), 4);
    let lif = b.lif();
    b.conv("Conv1", 1, 8, 3, 1, lif)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 128, 4, Activation::None)
        .build()
}

/// `n` synthetic 1×8×8 images of 4 classes: class k lights quadrant k (intensity 0.6–1)
/// over background noise (0–0.3). Learnable in seconds.
fn synthetic_split(n: usize, rng: &mut snnc::backend::candle::encode::SeededRng) -> Split {
    use rand::Rng;
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.0.random_range(0..4u8);
        for y in 0..8 {
            for x in 0..8 {
                let q = (y / 4) * 2 + x / 4;
                let v = if q == k as usize {
                    0.6 + 0.4 * rng.0.random::<f32>()
                } else {
                    0.3 * rng.0.random::<f32>()
                };
                images.push(v);
            }
        }
        labels.push(k);
    }
    Split { images, labels }
}

fn data(seed: u64) -> Dataset {
    let mut rng = derive_rng(seed, 0);
    Dataset {
        name: "synthetic".into(),
        shape: [1, 8, 8],
        classes: 4,
        train: synthetic_split(256, &mut rng),
        test: synthetic_split(128, &mut rng),
    }
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        timesteps: 4,
        batch: 32,
        lr: 5e-3,
        seed: 7,
        ..TrainConfig::default()
    }
}

#[test]
fn tiny_training_learns_and_is_deterministic() -> R {
    let d = data(1);
    let run = |seed: u64| {
        let mut m = Model::new(&small_net(), &dev(), seed).unwrap();
        let c = TrainConfig { seed, ..cfg(3) };
        driver::train(&mut m, &d, &c).unwrap()
    };
    let r = run(7);
    let first = &r.epochs[0];
    let last = r.epochs.last().unwrap();
    assert!(last.loss < first.loss, "{:?}", r.epochs);
    assert!(last.test_accuracy > 0.6, "chance is 0.25: {:?}", r.epochs);
    // The report's activity: the Poisson input, whose rate is the mean test intensity
    // (128·64·4 Bernoulli draws: σ ≈ 0.003), then Conv1, strictly between silent and saturated.
    let names: Vec<_> = r
        .activity
        .iter()
        .map(|a| (a.layer.as_str(), a.step))
        .collect();
    assert_eq!(names, [("Input", 1), ("Conv1", 1)]);
    let mean = d.test.images.iter().map(|&v| v as f64).sum::<f64>() / d.test.images.len() as f64;
    let (r_in, r_c1) = (r.activity[0].spike_rate, r.activity[1].spike_rate);
    assert!(
        (r_in - mean).abs() < 0.015,
        "input rate {r_in} vs mean intensity {mean}"
    );
    assert!(r_c1 > 0.0 && r_c1 < 1.0, "Conv1 rate {r_c1}");
    // Eq. 10/11 by hand: Conv1(1,8,3x3) at 8×8 is 9·8·64 = 4608 ops, FC1(128,4) 512 ops;
    // E_ANN = 5120·3.2 pJ, E_SNN = 0.1 pJ·T·(4608·r_in + 512·r_Conv1) at T = 4.
    let e = r.energy.clone();
    let e_snn = 0.1 * 4.0 * (4608.0 * r_in + 512.0 * r_c1);
    assert!((e.e_ann_pj - 5120.0 * 3.2).abs() < 1e-6, "{e:?}");
    assert!(
        (e.e_snn_pj - e_snn).abs() < 1e-6 * e_snn,
        "{e:?} vs {e_snn}"
    );
    // One seed, the same numbers; another seed, other numbers.
    assert_eq!(
        run(7).epochs.iter().map(|e| e.loss).collect::<Vec<_>>(),
        r.epochs.iter().map(|e| e.loss).collect::<Vec<_>>()
    );
    assert_ne!(run(8).epochs[0].loss, first.loss);
    Ok(())
}

#[test]
fn ann_baseline_trains() -> R {
    let d = data(2);
    let mut m = Model::new(&small_net(), &dev(), 1)?;
    let c = TrainConfig {
        method: method::ANN,
        ..cfg(2)
    };
    let r = driver::train(&mut m, &d, &c)?;
    assert!(
        r.epochs.last().unwrap().test_accuracy > 0.6,
        "{:?}",
        r.epochs
    );
    assert!(r.activity.is_empty(), "an ANN has no spikes");
    assert_eq!(r.timesteps, 1);
    Ok(())
}

#[test]
fn checkpoint_round_trip_and_resume() -> R {
    let d = data(3);
    let dir_a = tempfile::tempdir()?;
    let dir_b = tempfile::tempdir()?;
    let mut a = Model::new(&small_net(), &dev(), 5)?;
    let ca = TrainConfig {
        out: Some(dir_a.path().into()),
        ..cfg(2)
    };
    driver::train(&mut a, &d, &ca)?;
    // The same run, interrupted after one epoch and resumed.
    let mut b = Model::new(&small_net(), &dev(), 5)?;
    let cb = TrainConfig {
        out: Some(dir_b.path().into()),
        ..cfg(1)
    };
    driver::train(&mut b, &d, &cb)?;
    let mut b2 = Model::new(&small_net(), &dev(), 99)?;
    let cb2 = TrainConfig {
        out: Some(dir_b.path().into()),
        resume: true,
        ..cfg(2)
    };
    let rb = driver::train(&mut b2, &d, &cb2)?;
    assert_eq!(rb.epochs.len(), 2);
    // Resuming a finished run trains nothing and returns its report.
    let again = driver::train(&mut b2, &d, &cb2)?;
    assert_eq!(again.epochs, rb.epochs);
    // Another method's checkpoint is refused.
    let ann = TrainConfig {
        method: method::ANN,
        ..cb2.clone()
    };
    let e = driver::train(&mut b2, &d, &ann).unwrap_err();
    assert!(e.to_string().contains("cannot resume"), "{e}");
    for (name, v) in a.vars() {
        let w = b2.weight(&name).unwrap();
        assert!(max_abs_diff(v.as_tensor(), w.as_tensor()) < 1e-6, "{name}");
    }
    // Round trip: a fresh model loaded from the file equals the trained one.
    let (map, meta) = checkpoint::load(&checkpoint::weights_path(dir_a.path()))?;
    assert_eq!(meta.epoch, 2);
    assert_eq!(meta.seed, 7);
    assert_eq!(meta.network, "tiny");
    let mut c = Model::new(&small_net(), &dev(), 0)?;
    c.load(&map)?;
    for (name, v) in a.vars() {
        assert!(max_abs_diff(v.as_tensor(), c.weight(&name).unwrap().as_tensor()) < 1e-7);
    }
    assert!(map.contains_key("threshold.Conv1.1"));
    assert!(map.contains_key("adam.m.Conv1"));
    assert!(dir_a.path().join("report.json").exists());
    Ok(())
}

#[test]
fn non_finite_loss_stops_training_and_keeps_the_checkpoint() -> R {
    let d = data(4);
    let dir = tempfile::tempdir()?;
    let mut m = Model::new(&small_net(), &dev(), 5)?;
    let c = TrainConfig {
        out: Some(dir.path().into()),
        ..cfg(1)
    };
    driver::train(&mut m, &d, &c)?;
    let before = std::fs::read(checkpoint::weights_path(dir.path()))?;
    let w = m.weight("FC1").unwrap();
    w.set(&(w.as_tensor() * f64::NAN)?)?;
    let c2 = TrainConfig { epochs: 2, ..c };
    let e = driver::train(&mut m, &d, &c2).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                epoch: 1,
                batch: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(std::fs::read(checkpoint::weights_path(dir.path()))?, before);
    Ok(())
}

#[test]
fn thresholds_are_settable_per_slot() -> R {
    let mut m = Model::new(&full_net(Classifier::Softmax), &dev(), 1)?;
    let slots = m.thresholds().len();
    assert_eq!(slots, 4); // Conv1, Conv2@1, Conv2@2, FC1
    let x = image(2, 1, 8, 8, 1);
    let opts = ForwardOptions::snn(4, false);
    let mut r0 = Recorder::new(slots);
    m.forward_observed(&x, &opts, &mut derive_rng(0, 0), &mut r0)?;
    m.set_threshold(snnc::ir::SlotId(0), 100.0)?;
    assert!(m.set_threshold(snnc::ir::SlotId(0), -1.0).is_err());
    let mut r1 = Recorder::new(slots);
    m.forward_observed(&x, &opts, &mut derive_rng(0, 0), &mut r1)?;
    assert!(r0.activity[0].spike_rate > 0.0);
    assert_eq!(r1.activity[0].spike_rate, 0.0);
    Ok(())
}

/// E_ANN and E_SNN by hand: Conv1(1,2,3x3/1) on 4×4 → 2×4×4 (9·1·2·16 = 288 ops),
/// FC1(32,3) (96 ops). E_ANN = 384·3.2; with the Poisson input at rate 0.5 (SA of Conv1)
/// and Conv1 spiking at 0.25 (SA of FC1), at T = 4: E_SNN = (288·0.5 + 96·0.25)·4·0.1.
#[test]
fn energy_from_measured_activity_by_hand() {
    use snnc::train::report::ActivityRecord;
    let b = NetBuilder::new("e", Shape::new(1, 4, 4), 4);
    let lif = b.lif();
    let net = b
        .conv("Conv1", 1, 2, 3, 1, lif)
        .fc("FC1", 32, 3, Activation::None)
        .build();
    let activity = [("Input", 0.5), ("Conv1", 0.25)].map(|(l, r)| ActivityRecord {
        layer: l.into(),
        step: 1,
        spike_rate: r,
    });
    let e = driver::energy(&net, &activity, 4, false);
    assert!((e.e_ann_pj - 384.0 * 3.2).abs() < 1e-9);
    let want = (288.0 * 0.5 + 96.0 * 0.25) * 4.0 * 0.1;
    assert!((e.e_snn_pj - want).abs() < 1e-9, "{e:?}");
    assert!((e.ee - 384.0 * 3.2 / want).abs() < 1e-9);
}

#[test]
fn stochmax_training_learns() -> R {
    let d = data(5);
    let b = NetBuilder::new("sm", Shape::new(1, 8, 8), 4).classifier(Classifier::Stochmax);
    let lif = b.lif();
    let net = b
        .conv("Conv1", 1, 8, 3, 1, lif)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 128, 4, Activation::None)
        .build();
    let mut m = Model::new(&net, &dev(), 3)?;
    assert!(m.vars().iter().any(|(n, _)| n.starts_with("stochmax.")));
    let r = driver::train(&mut m, &d, &cfg(3))?;
    assert!(r.test_accuracy > 0.6, "chance is 0.25: {:?}", r.epochs);
    // The head was trained: every stochmax parameter moved from its seeded initial value.
    let init = Model::new(&net, &dev(), 3)?;
    for (name, v) in m
        .vars()
        .into_iter()
        .filter(|(n, _)| n.starts_with("stochmax."))
    {
        let v0 = init.vars().into_iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(
            max_abs_diff(v.as_tensor(), v0.as_tensor()) > 1e-4,
            "{name} did not move"
        );
    }
    // Predictions follow the test-time rule log σ(W_ρ h + b_ρ) + o, computed by hand here, and
    // ρ is not uniform over the classes (it shifts the logits by different amounts).
    let idx: Vec<usize> = (0..d.test.len()).collect();
    let (x, y) = driver::batch_tensors(&d.test, [1, 8, 8], &idx, &dev())?;
    let out = m.forward(&x, &ForwardOptions::snn(4, false), &mut derive_rng(7, 9))?;
    let p = |n: &str| -> Vec<f32> {
        let v = m.vars().into_iter().find(|(k, _)| k == n).unwrap().1;
        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    };
    let (w, b) = (p("stochmax.rho.weight"), p("stochmax.rho.bias"));
    let h: Vec<f32> = out.penultimate.flatten_all()?.to_vec1()?;
    let o: Vec<f32> = out.logits.flatten_all()?.to_vec1()?;
    let eval: Vec<f32> = m.eval_logits(&out)?.flatten_all()?.to_vec1()?;
    let (hw, mut right, mut shift_spread) = (h.len() / idx.len(), 0, 0f32);
    for (i, &label) in y.to_vec1::<u32>()?.iter().enumerate() {
        let hi = &h[i * hw..(i + 1) * hw];
        let mut shifts = Vec::new();
        for k in 0..4 {
            let a: f32 = w[k * hw..(k + 1) * hw]
                .iter()
                .zip(hi)
                .map(|(a, b)| a * b)
                .sum::<f32>()
                + b[k];
            let want = -(1.0 + (-a).exp()).ln() + o[i * 4 + k];
            assert!(
                (eval[i * 4 + k] - want).abs() < 1e-4,
                "{} vs {want}",
                eval[i * 4 + k]
            );
            shifts.push(want - o[i * 4 + k]);
        }
        let spread = shifts.iter().cloned().fold(f32::MIN, f32::max)
            - shifts.iter().cloned().fold(f32::MAX, f32::min);
        shift_spread = shift_spread.max(spread);
        let pred = (0..4)
            .max_by(|&a, &c| eval[i * 4 + a].total_cmp(&eval[i * 4 + c]))
            .unwrap();
        right += usize::from(pred as u32 == label);
    }
    assert!(shift_spread > 0.1, "log ρ is flat: {shift_spread}");
    assert!(
        right as f64 / idx.len() as f64 > 0.6,
        "{right} of {}",
        idx.len()
    );
    Ok(())
}

/// Conversion's SNN: IF neurons (leak 1, subtract) with the slot thresholds, whatever the
/// declared neuron; checked against the hand-written scan.
#[test]
fn if_conversion_mode_overrides_the_neuron() -> R {
    let b = NetBuilder::new("if", Shape::new(1, 4, 4), 6)
        .encoding(Encoding::Direct)
        .settings(|s| {
            s.neuron.leak = 0.5;
            s.neuron.reset = snnc::ir::Reset::Zero;
        });
    let lif = b.lif();
    let net = b
        .fc("FC1", 16, 5, lif)
        .fc("FC2", 5, 2, Activation::None)
        .build();
    let mut m = Model::new(&net, &dev(), 2)?;
    m.set_threshold(snnc::ir::SlotId(0), 0.7)?;
    let x = image(3, 1, 4, 4, 8);
    let opts = ForwardOptions::if_conversion(6);
    let out = m.forward(&x, &opts, &mut derive_rng(0, 0))?;
    let w = |n: &str| m.weight(n).unwrap().as_tensor().clone();
    let cur = x.flatten_from(1)?.matmul(&w("FC1").t()?)?; // [3, 5]
    let cur_t = cur.flatten_all()?.unsqueeze(0)?.repeat((6, 1))?;
    let p = NeuronParams {
        leak: 1.0,
        threshold: 0.7,
        reset: snnc::ir::Reset::Subtract,
        gamma: 0.3,
    };
    let rate = lif_scan_reference(&cur_t, &p)?.mean(0)?.reshape((3, 5))?;
    let logits = rate.matmul(&w("FC2").t()?)?;
    assert!(max_abs_diff(&out.logits, &logits) < 1e-5);
    // The declared LIF (leak 0.5, reset to zero) gives other numbers here.
    let lif_out = m.forward(&x, &ForwardOptions::snn(6, false), &mut derive_rng(0, 0))?;
    assert!(max_abs_diff(&lif_out.logits, &logits) > 1e-4);
    Ok(())
}

/// A tiny SNN on the embedded Fashion-MNIST slice learns in a few seconds: the loss falls
/// and test accuracy ends well above chance (10 %).
#[test]
fn tiny_training_on_embedded_fashion_mnist_learns() -> R {
    let d = snnc::data::load(&snnc::data::DataSpec::Embedded, Some(512), Some(256))?;
    let b = NetBuilder::new("fmnist-tiny", Shape::new(1, 28, 28), 4);
    let lif = b.lif();
    let net = b
        .fc("FC1", 784, 64, lif)
        .fc("FC2", 64, 10, Activation::None)
        .build();
    let mut m = Model::new(&net, &dev(), 1)?;
    let c = TrainConfig {
        epochs: 3,
        timesteps: 4,
        lr: 2e-3,
        ..cfg(3)
    };
    let r = driver::train(&mut m, &d, &c)?;
    let (first, last) = (&r.epochs[0], r.epochs.last().unwrap());
    assert!(last.loss < first.loss, "{:?}", r.epochs);
    assert!(r.test_accuracy > 0.5, "{:?}", r.epochs);
    Ok(())
}

/// A pooled input image still enters the SNN through Encode (rate coding of the pooled
/// image), as the `hybrid` pass does; direct coding then feeds the pooled image each step.
#[test]
fn pooled_input_is_encoded() -> R {
    let b = NetBuilder::new("pooled", Shape::new(1, 4, 4), 3).encoding(Encoding::Direct);
    let lif = b.lif();
    let net = b
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 4, 3, lif)
        .fc("FC2", 3, 2, Activation::None)
        .build();
    let ops: Vec<_> = net.graph.node_weights().map(|n| n.op.clone()).collect();
    assert!(ops.iter().any(|o| matches!(o, snnc::ir::Op::Encode { .. })));
    assert!(!ops
        .iter()
        .any(|o| matches!(o, snnc::ir::Op::Boundary { .. })));
    let m = Model::new(&net, &dev(), 4)?;
    let x = image(2, 1, 4, 4, 6);
    let out = m.forward(&x, &ForwardOptions::snn(3, false), &mut derive_rng(0, 0))?;
    let w = |n: &str| m.weight(n).unwrap().as_tensor().clone();
    let cur = x.avg_pool2d(2)?.flatten_from(1)?.matmul(&w("FC1").t()?)?;
    let p = NeuronParams {
        leak: 0.99,
        threshold: 1.0,
        reset: snnc::ir::Reset::Subtract,
        gamma: 0.3,
    };
    let s = lif_scan_reference(&cur.flatten_all()?.unsqueeze(0)?.repeat((3, 1))?, &p)?;
    let logits = s.mean(0)?.reshape((2, 3))?.matmul(&w("FC2").t()?)?;
    assert!(max_abs_diff(&out.logits, &logits) < 1e-5);
    Ok(())
}

const CLI_NET: &str = "network Tiny {
    input 1x28x28
    timesteps 3
    Pool(4x4/4)
    FC1(49,32) LIF
    FC2(32,32) x2 LIF
    FC3(32,10)
}
network Wrong {
    input 3x32x32
    FC1(3072,10)
}
";

fn snnc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .output()
        .expect("snnc runs")
}

/// `snnc train` writes weights, report and plots; `--resume` continues; `snnc eval` reads
/// the weights back; input errors exit 1, usage errors 2.
#[test]
fn cli_train_resume_and_eval() -> R {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("net.snn");
    std::fs::write(&file, CLI_NET)?;
    let f = file.to_str().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let common = [
        "--data",
        "embedded",
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--out",
        o,
    ];
    let r = snnc(&[&["train", f, "--epochs", "1"][..], &common].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for name in ["weights.safetensors", "report.json"] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let r = snnc(&[&["train", f, "--epochs", "2", "--resume"][..], &common].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report = snnc::train::report::Report::read_json(&out.join("report.json"))?;
    assert_eq!(report.epochs.len(), 2);
    let names: Vec<_> = report
        .activity
        .iter()
        .map(|a| format!("{}@{}", a.layer, a.step))
        .collect();
    assert_eq!(names, ["Input@1", "FC1@1", "FC2@1", "FC2@2"]);
    // Eq. 10/11 by hand at T = 3: FC1(49,32) 1568 ops, FC2(32,32) 1024 ops per application,
    // FC3(32,10) 320 ops; each layer's SA is the rate of the spikes it receives.
    let rate: Vec<f64> = report.activity.iter().map(|a| a.spike_rate).collect();
    let e_ann = 3936.0 * 3.2;
    let e_snn =
        0.1 * 3.0 * (1568.0 * rate[0] + 1024.0 * rate[1] + 1024.0 * rate[2] + 320.0 * rate[3]);
    let en = &report.energy;
    assert!((en.e_ann_pj - e_ann).abs() < 1e-6, "{en:?}");
    assert!(
        (en.e_snn_pj - e_snn).abs() < 1e-9 * e_ann,
        "{en:?} vs {e_snn}"
    );
    assert!((en.ee - e_ann / e_snn).abs() < 1e-6 * en.ee, "{en:?}");
    // The plots hold the run: two epochs of loss, train and test accuracy (one marker per
    // point), and one labelled bar per layer application.
    let training = std::fs::read_to_string(out.join("training.svg"))?;
    for series in snnc::train::plot::TRAINING_SERIES {
        assert!(
            training.contains(series),
            "{series} missing from training.svg"
        );
    }
    // One marker per epoch for the epoch-mean training loss, the test loss, the training
    // accuracy and the test accuracy.
    assert_eq!(training.matches("<circle").count(), 4 * 2, "{training}");
    for e in &report.epochs {
        assert!(e.test_loss.is_some_and(f64::is_finite), "{e:?}");
    }
    let activity = std::fs::read_to_string(out.join("activity.svg"))?;
    let lines: Vec<&str> = activity.lines().map(str::trim).collect();
    for label in ["Input", "FC1", "FC2@1", "FC2@2"] {
        assert!(lines.contains(&label), "{label} missing from activity.svg");
    }
    // The background, one bar per record, and the unroll-step legend (its box, its frame and
    // one swatch per step: FC2 runs twice).
    assert_eq!(
        activity.matches("<rect").count(),
        1 + 4 + 2 + 2,
        "{activity}"
    );
    for step in ["unroll step 1", "unroll step 2"] {
        assert!(lines.contains(&step), "{step} missing from activity.svg");
    }
    let w = out.join("weights.safetensors");
    let r = snnc(&[
        "eval",
        f,
        "--weights",
        w.to_str().unwrap(),
        "--data",
        "embedded",
        "--test-limit",
        "64",
        "--batch",
        "32",
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}");
    // At the training batch (32) and seed, eval sees the same input spikes as the
    // training run's last evaluation: the same accuracy.
    let want = format!(
        "accuracy {:.2}% on 64 test images",
        100.0 * report.test_accuracy
    );
    assert!(stdout.contains(&want), "{stdout} lacks `{want}`");
    // The wrong network for the data: an input error.
    let r = snnc(&[
        "train",
        f,
        "--network",
        "Wrong",
        "--data",
        "embedded",
        "--out",
        o,
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("3×32×32"));
    // Usage errors.
    assert_eq!(
        snnc(&["train", f, "--network", "Nope"]).status.code(),
        Some(2)
    );
    assert_eq!(
        snnc(&["train", f, "--data", "bogus"]).status.code(),
        Some(2)
    );
    Ok(())
}

/// The `[train]` table of `--config` supplies defaults; flags override it.
#[test]
fn cli_config_file_supplies_defaults() -> R {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("net.snn");
    std::fs::write(&file, CLI_NET)?;
    let out = dir.path().join("cfg-run");
    let cfg = dir.path().join("train.toml");
    std::fs::write(
        &cfg,
        format!(
            "[train]\nepochs = 2\ntimesteps = 2\ndata = \"embedded\"\ntrain-limit = 64\ntest_limit = 32\nout = {:?}\n",
            out.to_str().unwrap()
        ),
    )?;
    let f = file.to_str().unwrap();
    let c = cfg.to_str().unwrap();
    let r = snnc(&["train", f, "--config", c, "--epochs", "1"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report = snnc::train::report::Report::read_json(&out.join("report.json"))?;
    assert_eq!(report.epochs.len(), 1, "the flag overrides the file");
    assert_eq!(report.timesteps, 2, "the file overrides the network");
    std::fs::write(&cfg, "[train]\nepoch = 2\n")?;
    assert_eq!(snnc(&["train", f, "--config", c]).status.code(), Some(2));
    Ok(())
}

/// A network too large to allocate is an error, not an abort.
#[test]
fn oversized_network_is_refused() {
    let net = NetBuilder::new("huge", Shape::new(1, 1, 1), 1)
        .fc("FC1", 1, 1 << 20, Activation::Relu)
        .fc("FC2", 1 << 20, 1 << 20, Activation::None)
        .build();
    let e = Model::new(&net, &dev(), 0).err().expect("refused");
    assert!(e.to_string().contains("parameters"), "{e}");
}

/// A batch whose activations would not fit is an error naming the remedy.
#[test]
fn oversized_batch_is_refused() -> R {
    let b = NetBuilder::new("wide", Shape::new(1, 8, 8), 1000);
    let lif = b.lif();
    let net = b
        .conv("Conv1", 1, 4096, 3, 1, lif)
        .fc("FC1", 4096 * 64, 2, Activation::None)
        .build();
    let m = Model::new(&net, &dev(), 0)?;
    let x = image(16, 1, 8, 8, 0);
    let e = m
        .forward(&x, &ForwardOptions::snn(1000, false), &mut derive_rng(0, 0))
        .expect_err("refused");
    assert!(e.to_string().contains("--batch"), "{e}");
    Ok(())
}

/// The single-step update the step-by-step runtime uses (`lif_step`) is the scan's step:
/// T calls on a LIF layer (leak 0.8, both resets) give the spikes of `lif_scan_reference`.
#[test]
fn lif_step_is_one_step_of_the_scan() -> R {
    use snnc::backend::candle::neuron::lif_step;
    let (t, n) = (9, 6);
    let x: Vec<f32> = (0..t * n)
        .map(|i| ((i * 7 % 11) as f32) * 0.15 - 0.2)
        .collect();
    for reset in [snnc::ir::Reset::Subtract, snnc::ir::Reset::Zero] {
        let p = NeuronParams {
            leak: 0.8,
            threshold: 0.9,
            reset,
            gamma: 0.3,
        };
        let want: Vec<f32> = lif_scan_reference(&Tensor::from_vec(x.clone(), (t, n), &dev())?, &p)?
            .flatten_all()?
            .to_vec1()?;
        let mut u = vec![0f32; n];
        let mut got = Vec::new();
        for step in x.chunks(n) {
            let (s, count) = lif_step(&p, &mut u, step)?;
            assert_eq!(count, s.iter().filter(|&&v| v == 1.0).count());
            got.extend(s);
        }
        assert_eq!(got, want, "{reset:?}");
        assert!(want.contains(&1.0) && want.contains(&0.0));
    }
    Ok(())
}
