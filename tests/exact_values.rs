//! Exact values where they are computable, on compiled networks: the energy of the small
//! conversion nets (Eq. 10/11 with the layer sizes written out), balanced thresholds (a
//! hybrid net's spiking layer, BackRes steps, the order of balancing), stochmax's test-time
//! logits, and the event-driven path against the dense one.
//!
//! Every use of the runtime and conversion API goes through the helpers at the top of this
//! file.

use candle_core::{Device, Tensor};
use rand::Rng;
use snnc::backend::candle::event::PathPolicy;
use snnc::backend::candle::model::{rng_for, ForwardOptions, ForwardOutput, Model};
use snnc::backend::candle::observe::Recorder;
use snnc::data::Split;
use snnc::ir::{Network, Reset, SlotId, WeightId};
use snnc::train::conversion::{
    self, Balance, ConversionConfig, RunOutput, RunSpec, Simulator, SnnEvaluation, SplitImages,
    ThresholdRecord,
};

type R = Result<(), Box<dyn std::error::Error>>;

// ---- the runtime and conversion API, in one place ----------------------------------------

fn dev() -> Device {
    Device::Cpu
}

fn compile_one(src: &str) -> Network {
    match snnc::compile(src) {
        Ok(mut p) => p.networks.remove(0),
        Err(d) => panic!("does not compile: {d:?}"),
    }
}

fn compile_file(path: &str) -> Network {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    compile_one(&std::fs::read_to_string(full).expect("readable"))
}

fn model(net: &Network, seed: u64) -> Model {
    Model::new(net, &dev(), seed).expect("the network lowers")
}

fn forward_eval(m: &Model, x: &Tensor, t: usize) -> ForwardOutput {
    m.forward(x, &ForwardOptions::snn(t, false), &mut rng_for(0, 0))
        .expect("forward")
}

/// The model run as conversion's SNN (IF, subtract, slot thresholds) at T steps, recording
/// the per-slot maximum input current.
fn recorded_max_input(m: &Model, x: &Tensor, t: usize) -> Vec<f32> {
    let mut rec = Recorder::new(m.thresholds().len());
    m.forward_observed(
        x,
        &ForwardOptions::if_conversion(t),
        &mut rng_for(0, 0),
        &mut rec,
    )
    .expect("forward");
    rec.max_input
}

fn set_param(m: &Model, name: &str, v: Vec<f32>) {
    let (_, var) = m
        .vars()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter `{name}`"));
    let t = Tensor::from_vec(v, var.shape(), &dev()).unwrap();
    var.set(&t).unwrap();
}

fn param(m: &Model, name: &str) -> Vec<f32> {
    let (_, var) = m
        .vars()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter `{name}`"));
    var.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

fn simulator(m: &Model, policy: PathPolicy) -> Simulator {
    Simulator::new(m, Reset::Subtract, policy).expect("simulator")
}

fn set_sim_threshold(sim: &mut Simulator, slot: usize, v: f32) {
    sim.set_threshold(SlotId(slot), v).unwrap();
}

/// Max-input balancing over `images` (all in one batch) for `steps` steps.
fn balance(
    sim: &mut Simulator,
    split: &Split,
    shape: [usize; 3],
    steps: usize,
) -> Vec<ThresholdRecord> {
    let cfg = ConversionConfig {
        balance: Balance::MaxInput,
        balance_images: split.labels.len(),
        balance_steps: steps,
        batch: split.labels.len(),
        ..ConversionConfig::default()
    };
    conversion::balance(sim, &SplitImages::new(split, shape), &cfg).expect("balance")
}

/// The SNN run on `x` with logits and counters at each of `checkpoints`.
fn run_snn(sim: &Simulator, x: &Tensor, checkpoints: &[usize], seed: u64) -> RunOutput {
    let spec = RunSpec {
        ann: false,
        checkpoints: checkpoints.to_vec(),
        stop: None,
        collect: None,
    };
    sim.run(x, &spec, &mut rng_for(seed, 5)).expect("run")
}

fn evaluate_snn(sim: &Simulator, split: &Split, shape: [usize; 3], t: usize) -> SnnEvaluation {
    let data = SplitImages::new(split, shape);
    conversion::evaluate_snn(sim, &data, &[t], 8, 1, false).expect("evaluate")
}

// ---- helpers -----------------------------------------------------------------------------

/// Conv1, then Conv2 repeated ×3 (BackRes: one weight set, three unroll steps, three
/// threshold slots), then FC1: IF neurons, direct input, 6×6 images.
fn backres_net() -> Network {
    compile_one(
        "network BR {
        input 1x6x6
        timesteps 12
        encode direct
        method conversion
        neuron IF(threshold = 1.0, reset = subtract)
        Conv1(1,4,3x3/1)
        Conv2(4,4,3x3/1) x3
        FC1(144,3)
    }",
    )
}

fn random_split(n: usize, len: usize, lo: f32, hi: f32, seed: u64) -> Split {
    let mut rng = rng_for(seed, 7);
    Split {
        images: (0..n * len)
            .map(|_| lo + (hi - lo) * rng.0.random::<f32>())
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

fn tensor(split: &Split, shape: [usize; 3]) -> Tensor {
    let n = split.labels.len();
    Tensor::from_vec(
        split.images.clone(),
        (n, shape[0], shape[1], shape[2]),
        &dev(),
    )
    .unwrap()
}

fn rows(v: &[f32], cols: usize) -> Vec<&[f32]> {
    v.chunks(cols).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

// ---- energy ------------------------------------------------------------------------------

/// Operations per time step of the Fashion-MNIST conversion nets, written out (Eq. 8:
/// K²·I·O·H·W; FC: X·Y): Conv1(1,32,3x3) at 28×28, two 32→32 convs at 28×28, a 32→64 conv at
/// 14×14, FC1(3136,256), FC2(256,10).
const CONV1: f64 = 9.0 * 1.0 * 32.0 * 784.0; // 225 792
const CONV_32: f64 = 9.0 * 32.0 * 32.0 * 784.0; // 7 225 344
const CONV_64: f64 = 9.0 * 32.0 * 64.0 * 196.0; // 3 612 672
const FC1: f64 = 3136.0 * 256.0; // 802 816
const FC2: f64 = 256.0 * 10.0;

fn rate_of(e: &SnnEvaluation, layer: &str, step: u32) -> f64 {
    e.results[0]
        .activity
        .iter()
        .find(|a| a.layer == layer && a.step == step)
        .unwrap_or_else(|| panic!("no activity for {layer}@{step}"))
        .spike_rate
}

fn density_of(e: &SnnEvaluation, layer: &str, step: u32) -> f64 {
    e.results[0]
        .input_activity
        .iter()
        .find(|a| a.layer == layer && a.step == step)
        .unwrap_or_else(|| panic!("no input activity for {layer}@{step}"))
        .spike_rate
}

/// E_ANN = 3.2 pJ · Σ ops; E_SNN = 0.1 pJ · T · Σ ops · SA with SA of each layer the measured
/// rate of the spikes it receives (the Poisson input for Conv1; an average pool passes its
/// input's rate), and the input-density variant with SA the measured non-zero fraction.
fn check_energy(path: &str, layers: [(&str, u32, f64); 6]) {
    let net = compile_file(path);
    let m = model(&net, 3);
    let mut sim = simulator(&m, PathPolicy::Dense);
    // Thresholds below the initial 1.0, so that every layer spikes within a few steps.
    for slot in 0..net.thresholds.len() {
        set_sim_threshold(&mut sim, slot, 0.3);
    }
    let split = random_split(4, 784, 0.0, 1.0, 11);
    let t = 6;
    let e = evaluate_snn(&sim, &split, [1, 28, 28], t);
    let r = &e.results[0];
    let ops_total: f64 = layers.iter().map(|l| l.2).sum();
    assert!(
        close(r.e_ann_pj, 3.2 * ops_total, 1e-9),
        "{path}: E_ANN {}",
        r.e_ann_pj
    );
    assert!(close(ops_total, 19_094_528.0, 0.0));
    let input_rate = density_of(&e, layers[0].0, layers[0].1);
    // Pixels uniform in [0, 1): about half the Poisson inputs are spikes.
    assert!((0.4..0.6).contains(&input_rate), "{input_rate}");
    let mut e_snn = CONV1 * input_rate;
    for w in layers.windows(2) {
        let (src, step, _) = w[0];
        let sa = rate_of(&e, src, step);
        assert!(sa > 0.0 && sa < 1.0, "{path}: {src}@{step} rate {sa}");
        e_snn += w[1].2 * sa;
    }
    let e_snn = e_snn * t as f64 * 0.1;
    assert!(
        close(r.e_snn_pj, e_snn, 1e-6),
        "{path}: E_SNN {} vs {e_snn}",
        r.e_snn_pj
    );
    assert!(close(r.ee, 3.2 * ops_total / e_snn, 1e-6));
    let e_dens: f64 = layers
        .iter()
        .map(|&(l, s, ops)| ops * density_of(&e, l, s))
        .sum::<f64>()
        * t as f64
        * 0.1;
    assert!(close(r.e_snn_input_density_pj, e_dens, 1e-6), "{path}");
    // After an average pool the non-zero fraction exceeds the spike rate: the two differ.
    assert!(r.e_snn_input_density_pj > r.e_snn_pj);
}

#[test]
fn energy_of_the_fashion_mnist_conversion_nets_by_hand() {
    check_energy(
        "networks/fashion-mnist/conversion/vgg-backres.snn",
        [
            ("Conv1", 1, CONV1),
            ("Conv2", 1, CONV_32),
            ("Conv2", 2, CONV_32),
            ("Conv3", 1, CONV_64),
            ("FC1", 1, FC1),
            ("FC2", 1, FC2),
        ],
    );
    check_energy(
        "networks/fashion-mnist/conversion/vgg-unshared.snn",
        [
            ("Conv1", 1, CONV1),
            ("Conv2", 1, CONV_32),
            ("Conv3", 1, CONV_32),
            ("Conv4", 1, CONV_64),
            ("FC1", 1, FC1),
            ("FC2", 1, FC2),
        ],
    );
}

// ---- thresholds --------------------------------------------------------------------------

/// A hybrid net: FC1 ReLU runs once on the raw image and its output is FC2's current at
/// every step, so max-input balancing gives FC2 the threshold max over images and neurons of
/// W2·relu(W1·x), computed here in plain arithmetic.
#[test]
fn hybrid_spiking_layer_threshold_is_max_of_w2_relu_w1_x() {
    let net = compile_one(
        "network HybridTh {
            input 1x1x6
            timesteps 8
            method conversion
            neuron IF(threshold = 1.0, reset = subtract)
            FC1(6,5) ReLU
            FC2(5,4)
            FC3(4,3)
        }",
    );
    assert_eq!(net.thresholds.len(), 1, "only FC2 spikes");
    let m = model(&net, 6);
    let split = random_split(5, 6, 0.0, 1.0, 2);
    // W2 in [−0.5, 1): some neuron receives a positive current.
    let mut rng = rng_for(5, 5);
    set_param(
        &m,
        "FC2",
        (0..20).map(|_| rng.0.random::<f32>() * 1.5 - 0.5).collect(),
    );
    let (w1, w2) = (param(&m, "FC1"), param(&m, "FC2"));
    let mut want = f32::NEG_INFINITY;
    for img in split.images.chunks(6) {
        let a1: Vec<f32> = rows(&w1, 6).iter().map(|w| dot(w, img).max(0.0)).collect();
        for w in rows(&w2, 5) {
            want = want.max(dot(w, &a1));
        }
    }
    assert!(want > 0.0, "the test needs a positive maximum: {want}");
    let mut sim = simulator(&m, PathPolicy::Dense);
    let th = balance(&mut sim, &split, [1, 1, 6], 6);
    assert_eq!((th[0].layer.as_str(), th[0].step), ("FC2", 1));
    assert!(
        (th[0].threshold - want).abs() <= 1e-5 * want,
        "{} vs {want}",
        th[0].threshold
    );
}

/// A BackRes layer applied three times gets one threshold per step, each equal to the
/// maximum input current that step receives when the network runs with all balanced
/// thresholds (recorded independently by the model's forward pass as conversion's SNN).
#[test]
fn backres_step_thresholds_equal_the_recorded_maximum_inputs() {
    let net = backres_net();
    assert_eq!(net.thresholds.len(), 4);
    let mut m = model(&net, 8);
    let split = random_split(6, 36, 0.0, 1.0, 3);
    let steps = 12;
    let mut sim = simulator(&m, PathPolicy::Dense);
    let th = balance(&mut sim, &split, [1, 6, 6], steps);
    let steps_of_conv2: Vec<u32> = th
        .iter()
        .filter(|r| r.layer == "Conv2")
        .map(|r| r.step)
        .collect();
    assert_eq!(steps_of_conv2, [1, 2, 3]);
    for (i, r) in th.iter().enumerate() {
        m.set_threshold(SlotId(i), r.threshold).unwrap();
    }
    let recorded = recorded_max_input(&m, &tensor(&split, [1, 6, 6]), steps);
    for (r, got) in th.iter().zip(&recorded) {
        assert!(*got > 0.0);
        assert!(
            (r.threshold - got).abs() <= 1e-5 * got,
            "{}@{}: threshold {} vs recorded max {got}",
            r.layer,
            r.step,
            r.threshold
        );
    }
    let c2: Vec<f32> = th
        .iter()
        .filter(|r| r.layer == "Conv2")
        .map(|r| r.threshold)
        .collect();
    assert!(
        c2[0] != c2[1] && c2[1] != c2[2],
        "one threshold per step: {c2:?}"
    );
}

/// Balancing order: FC1 receives currents [3, 1.5]; FC2's first row is [1, −1]. With FC1
/// balanced (θ = 3) neuron 0 fires every step and neuron 1 every other step (V = 1.5, 3),
/// so FC2 receives 1 − 0 = 1 at odd steps: its maximum is 1. With FC1 at its initial θ = 0.5
/// both fire every step and FC2 receives 0: balancing all slots at once would see 0 and
/// leave FC2 at 0.5.
#[test]
fn balancing_goes_slot_by_slot_in_order() {
    let net = compile_one(
        "network Order {
            input 2x1x1
            timesteps 10
            encode direct
            method conversion
            neuron IF(threshold = 0.5, reset = subtract)
            FC1(2,2)
            FC2(2,2)
            FC3(2,2)
        }",
    );
    let m = model(&net, 0);
    set_param(&m, "FC1", vec![3.0, 0.0, 0.0, 1.5]);
    set_param(&m, "FC2", vec![1.0, -1.0, 0.0, 0.0]);
    let split = Split {
        images: vec![1.0, 1.0],
        labels: vec![0],
    };
    let x = tensor(&split, [2, 1, 1]);
    // Unbalanced FC1: FC2's maximum input over 10 steps is 0.
    let unbalanced = run_snn(&simulator(&m, PathPolicy::Dense), &x, &[10], 0);
    assert_eq!(unbalanced.max_input, [3.0, 0.0]);
    // Balanced FC1 only: FC2's maximum is 1.
    let mut half = simulator(&m, PathPolicy::Dense);
    set_sim_threshold(&mut half, 0, 3.0);
    assert_eq!(run_snn(&half, &x, &[10], 0).max_input, [3.0, 1.0]);
    // Balancing does FC1 first, then FC2 with FC1 balanced.
    let mut sim = simulator(&m, PathPolicy::Dense);
    let th = balance(&mut sim, &split, [2, 1, 1], 10);
    let got: Vec<f32> = th.iter().map(|r| r.threshold).collect();
    assert_eq!(got, [3.0, 1.0], "all at once would give [3, 0.5]");
}

// ---- stochmax ----------------------------------------------------------------------------

/// Test-time stochmax logits are log σ(W_ρ h + b_ρ) + o (ρ replaces the mask), computed here
/// from the model's h, o and head parameters; with b_ρ pushing down the class o prefers, the
/// prediction differs from argmax o.
#[test]
fn stochmax_test_logits_are_log_rho_plus_o() -> R {
    let net = compile_one(
        "network SM {
            input 1x1x8
            timesteps 4
            encode direct
            FC1(8,6) LIF(leak = 1.0, threshold = 0.3, reset = subtract)
            FC2(6,3)
            stochmax
        }",
    );
    let m = model(&net, 4);
    let split = random_split(4, 8, 0.0, 1.0, 4);
    let x = tensor(&split, [1, 1, 8]);
    let out = forward_eval(&m, &x, 4);
    let h: Vec<f32> = out.penultimate.flatten_all()?.to_vec1()?;
    let o: Vec<f32> = out.logits.flatten_all()?.to_vec1()?;
    assert!(h.iter().any(|v| *v > 0.0), "FC1 must spike");
    let argmax = |v: &[f32]| {
        (0..v.len())
            .max_by(|&a, &b| v[a].total_cmp(&v[b]))
            .unwrap_or(0)
    };
    let by_hand = |b_rho: &[f32]| -> Vec<f32> {
        let w = param(&m, "stochmax.rho.weight");
        let mut out = Vec::new();
        for (hb, ob) in h.chunks(6).zip(o.chunks(3)) {
            for k in 0..3 {
                let a = dot(&w[k * 6..(k + 1) * 6], hb) + b_rho[k];
                out.push(-(1.0 + (-a).exp()).ln() + ob[k]);
            }
        }
        out
    };
    let check = |b_rho: &[f32]| -> Vec<f32> {
        set_param(&m, "stochmax.rho.bias", b_rho.to_vec());
        let got: Vec<f32> = m
            .eval_logits(&out)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = by_hand(b_rho);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
        }
        got
    };
    check(&[0.5, -0.25, 1.0]);
    // Push down the class o prefers for the first image.
    let k = argmax(&o[..3]);
    let mut b = vec![2.0f32; 3];
    b[k] = -30.0;
    let got = check(&b);
    assert_ne!(argmax(&got[..3]), k, "log ρ must change the prediction");
    Ok(())
}

// ---- event vs dense ----------------------------------------------------------------------

/// The default path policy (the CLI's) against dense and all-event accumulation, on a net
/// whose layer input densities straddle the crossovers (conv 0.6, FC 0.15): a dark batch
/// (Poisson inputs at density ≈ 0.1) and a bright one (≈ 0.75), and spike trains that start
/// silent. Logits equal within 1e-4 and spike counts per slot equal.
#[test]
fn event_and_dense_paths_give_the_same_spikes_and_logits() {
    let net = compile_one(
        "network ED {
            input 1x12x12
            timesteps 12
            encode poisson
            method conversion
            neuron IF(threshold = 1.0, reset = subtract)
            Conv1(1,8,3x3/1)
            Conv2(8,8,3x3/1)
            Pool(2x2/2)
            FC1(288,32)
            FC2(32,10)
        }",
    );
    let m = model(&net, 12);
    let (auto, dense, event) = (
        simulator(&m, PathPolicy::default()),
        simulator(&m, PathPolicy::Dense),
        simulator(&m, PathPolicy::Event),
    );
    let (mut auto_dense, mut auto_event) = (0, 0);
    for (lo, hi, seed) in [(0.0, 0.2, 1), (0.5, 1.0, 2)] {
        let x = tensor(&random_split(3, 144, lo, hi, seed), [1, 12, 12]);
        let a = run_snn(&auto, &x, &[4, 12], seed);
        let d = run_snn(&dense, &x, &[4, 12], seed);
        let e = run_snn(&event, &x, &[4, 12], seed);
        auto_dense += a.dense_calls;
        auto_event += a.event_calls;
        assert_eq!(d.event_calls, 0);
        assert_eq!(e.dense_calls, 0);
        for other in [&d, &e] {
            for (la, lo) in a.logits.iter().zip(&other.logits) {
                let diff = (la - lo)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-4, "logits differ by {diff}");
            }
            for (ca, co) in a.counters.iter().zip(&other.counters) {
                assert_eq!(ca.spikes, co.spikes);
                assert_eq!(ca.input_nonzero, co.input_nonzero);
            }
        }
        let last = a.counters.last().unwrap();
        assert!(
            last.spikes.iter().all(|&s| s > 0.0),
            "every slot spikes: {:?}",
            last.spikes
        );
    }
    assert!(
        auto_dense > 0 && auto_event > 0,
        "the default policy must take both paths: {auto_dense} dense, {auto_event} event"
    );
}

/// `Simulator::set_weights` (STDP's per-mini-batch update) re-lays out the event weights of
/// every application of the changed set, a BackRes layer's three unroll steps included: the
/// updated simulator computes what a fresh one built from the new weights computes.
#[test]
fn set_weights_gives_the_simulator_of_the_new_weights() {
    let net = backres_net();
    let wid = WeightId(
        net.weights
            .iter()
            .position(|w| w.name == "Conv2")
            .expect("Conv2"),
    );
    let old = model(&net, 8);
    let new = model(&net, 9);
    let conv2 = new.weight("Conv2").expect("Conv2").as_tensor().clone();
    let fresh = model(&net, 8);
    set_param(&fresh, "Conv2", param(&new, "Conv2"));
    let x = tensor(&random_split(4, 36, 0.0, 1.0, 7), [1, 6, 6]);
    for policy in [PathPolicy::Event, PathPolicy::Dense] {
        let before = run_snn(&simulator(&old, policy), &x, &[12], 3);
        let mut sim = simulator(&old, policy);
        sim.set_weights(wid, conv2.clone()).expect("same shape");
        let got = run_snn(&sim, &x, &[12], 3);
        let want = run_snn(&simulator(&fresh, policy), &x, &[12], 3);
        let flat = |o: &RunOutput| o.logits[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&got), flat(&want), "{policy:?}");
        assert_ne!(
            flat(&got),
            flat(&before),
            "{policy:?}: the weights changed nothing"
        );
        let wrong = Tensor::zeros((4, 4, 1, 1), candle_core::DType::F32, &dev()).unwrap();
        assert!(sim.set_weights(wid, wrong).is_err());
    }
}
