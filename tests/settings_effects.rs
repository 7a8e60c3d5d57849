//! Every neuron setting written in a `.snn` source changes what it says it changes, checked
//! on compiled networks against values computed in the test: the surrogate's γ scales the
//! gradient through a spiking layer linearly, and `LIF(leak, threshold, reset)` is the scan
//! of Eq. 2–3 with exactly those values.
//!
//! Every use of the runtime API goes through the helpers at the top of this file.

use candle_core::{Device, Tensor};
use rand::Rng;
use snnc::backend::candle::model::{rng_for, ForwardOptions, ForwardOutput, Model};
use snnc::ir::Network;

type R = Result<(), Box<dyn std::error::Error>>;

// ---- the runtime API, in one place -------------------------------------------------------

fn dev() -> Device {
    Device::Cpu
}

fn compile_one(src: &str) -> Network {
    match snnc::compile(src) {
        Ok(mut p) => p.networks.remove(0),
        Err(d) => panic!("does not compile: {d:?}"),
    }
}

fn model(net: &Network, seed: u64) -> Model {
    Model::new(net, &dev(), seed).expect("the network lowers")
}

fn forward_eval(m: &Model, x: &Tensor, t: usize) -> ForwardOutput {
    m.forward(x, &ForwardOptions::snn(t, false), &mut rng_for(0, 0))
        .expect("forward")
}

/// The gradient of the evaluation loss (softmax cross-entropy of the logits against
/// `labels`) with respect to the weights `name`.
fn loss_gradient(m: &Model, x: &Tensor, labels: &[u32], t: usize, name: &str) -> Vec<f32> {
    let out = forward_eval(m, x, t);
    let y = Tensor::new(labels, &dev()).unwrap();
    let loss = m.loss(&out, &y, false, &mut rng_for(0, 0)).unwrap();
    let grads = loss.backward().unwrap();
    let var = m.weight(name).expect("weights");
    grads
        .get(var.as_tensor())
        .unwrap_or_else(|| panic!("{name} has no gradient"))
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn weight_rows(m: &Model, name: &str) -> Vec<Vec<f32>> {
    m.weight(name)
        .expect("weights")
        .as_tensor()
        .to_vec2()
        .unwrap()
}

fn copy_weights(from: &Model, to: &Model, names: &[&str]) {
    for n in names {
        to.weight(n)
            .unwrap()
            .set(from.weight(n).unwrap().as_tensor())
            .unwrap();
    }
}

// ---- helpers -----------------------------------------------------------------------------

fn images(b: usize, n: usize, seed: u64) -> (Tensor, Vec<Vec<f32>>) {
    let mut rng = rng_for(seed, 7);
    let rows: Vec<Vec<f32>> = (0..b)
        .map(|_| (0..n).map(|_| rng.0.random::<f32>()).collect())
        .collect();
    let flat: Vec<f32> = rows.concat();
    (Tensor::from_vec(flat, (b, 1, 1, n), &dev()).unwrap(), rows)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const GAMMA_NET: &str = "network G {
    input 1x1x16
    timesteps 6
    encode direct
    surrogate linear(gamma = GAMMA)
    FC1(16,12) LIF(leak = 0.9, threshold = 0.5, reset = subtract)
    FC2(12,4)
}";

/// With one spiking layer the surrogate gradient enters the backward pass once, and the
/// backward recursion through the membrane is linear in it: dL/dW1 at γ = 0.6 is exactly
/// twice dL/dW1 at γ = 0.3 (0.6f32 is exactly 2·0.3f32), while the forward pass and dL/dW2
/// (which sees only spikes) do not depend on γ.
#[test]
fn surrogate_gamma_scales_the_spiking_layers_gradient_linearly() -> R {
    let a = model(&compile_one(&GAMMA_NET.replace("GAMMA", "0.3")), 4);
    let b = model(&compile_one(&GAMMA_NET.replace("GAMMA", "0.6")), 5);
    copy_weights(&a, &b, &["FC1", "FC2"]);
    let (x, _) = images(6, 16, 1);
    let labels = [0u32, 1, 2, 3, 0, 1];
    let (oa, ob) = (forward_eval(&a, &x, 6), forward_eval(&b, &x, 6));
    let d = (&oa.logits - &ob.logits)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert_eq!(d, 0.0, "γ is a backward-only setting");

    let ga = loss_gradient(&a, &x, &labels, 6, "FC1");
    let gb = loss_gradient(&b, &x, &labels, 6, "FC1");
    let scale = ga.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-4,
        "the surrogate gradient must not vanish: {scale}"
    );
    let nonzero = ga.iter().filter(|v| **v != 0.0).count();
    assert!(nonzero > ga.len() / 4, "{nonzero} of {} non-zero", ga.len());
    for (i, (x, y)) in ga.iter().zip(&gb).enumerate() {
        assert!(
            (y - 2.0 * x).abs() <= 1e-6 * scale,
            "dL/dW1[{i}]: {y} at γ = 0.6 vs 2·{x} at γ = 0.3"
        );
    }
    assert_eq!(
        loss_gradient(&a, &x, &labels, 6, "FC2"),
        loss_gradient(&b, &x, &labels, 6, "FC2")
    );
    Ok(())
}

/// The scan of Eq. 2–3 written out: `v = leak·u + c`; a spike where `v ≥ θ`; reset to zero
/// (`u = 0` after a spike) or by subtraction (`u = v − θ`). Returns the rate over `t` steps
/// for a constant current `c`.
fn hand_rate(c: f32, leak: f32, threshold: f32, zero: bool, t: usize) -> f32 {
    let mut u = 0f32;
    let mut spikes = 0;
    for _ in 0..t {
        let v = leak * u + c;
        if v >= threshold {
            spikes += 1;
            u = if zero { 0.0 } else { v - threshold };
        } else {
            u = v;
        }
    }
    spikes as f32 / t as f32
}

const LIF_NET: &str = "network L {
    input 1x1x16
    timesteps 7
    encode direct
    FC1(16,10) NEURON
    FC2(10,3)
}";

/// `LIF(leak = 0.5, threshold = 0.7, reset = zero)` on FC1: the logits equal the hand scan
/// with exactly those values (constant currents W1·x under direct coding, rates over T = 7,
/// then W2), and each of the three values matters: leak 0.99, reset by subtraction or
/// threshold 1.0 give other logits on the same weights and images.
#[test]
fn lif_leak_and_reset_zero_equal_the_hand_scan() -> R {
    let src = |n: &str| LIF_NET.replace("NEURON", n);
    let m = model(
        &compile_one(&src("LIF(leak = 0.5, threshold = 0.7, reset = zero)")),
        8,
    );
    let t = 7;
    let (x, rows) = images(5, 16, 2);
    // Currents from −3.2 to 4.8 so that some neurons fire, some at every step.
    let w1: Vec<f32> = {
        let mut rng = rng_for(3, 3);
        (0..10 * 16)
            .map(|_| rng.0.random::<f32>() * 0.5 - 0.2)
            .collect()
    };
    m.weight("FC1")
        .unwrap()
        .set(&Tensor::from_vec(w1, (10, 16), &dev())?)?;
    let (w1, w2) = (weight_rows(&m, "FC1"), weight_rows(&m, "FC2"));
    let logits_by_hand = |leak: f32, threshold: f32, zero: bool| -> Vec<f32> {
        let mut out = Vec::new();
        for img in &rows {
            let rates: Vec<f32> = w1
                .iter()
                .map(|w| hand_rate(dot(w, img), leak, threshold, zero, t))
                .collect();
            out.extend(w2.iter().map(|w| dot(w, &rates)));
        }
        out
    };
    let want = logits_by_hand(0.5, 0.7, true);
    let got: Vec<f32> = forward_eval(&m, &x, t).logits.flatten_all()?.to_vec1()?;
    assert_eq!(got.len(), 15);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{got:?}\nvs\n{want:?}");
    }
    // Some neuron fires at an intermediate rate, so that leak and reset both matter.
    let mid = rows
        .iter()
        .flat_map(|img| w1.iter().map(move |w| dot(w, img)));
    assert!(mid
        .map(|c| hand_rate(c, 0.5, 0.7, true, t))
        .any(|r| r > 0.0 && r < 1.0));
    for (other, leak, threshold, zero) in [
        (
            "LIF(leak = 0.99, threshold = 0.7, reset = zero)",
            0.99,
            0.7,
            true,
        ),
        (
            "LIF(leak = 0.5, threshold = 0.7, reset = subtract)",
            0.5,
            0.7,
            false,
        ),
        (
            "LIF(leak = 0.5, threshold = 1.0, reset = zero)",
            0.5,
            1.0,
            true,
        ),
    ] {
        let o = model(&compile_one(&src(other)), 9);
        copy_weights(&m, &o, &["FC1", "FC2"]);
        let got_o: Vec<f32> = forward_eval(&o, &x, t).logits.flatten_all()?.to_vec1()?;
        let want_o = logits_by_hand(leak, threshold, zero);
        let differs = want_o.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(differs, "{other} must change the logits");
        for (g, w) in got_o.iter().zip(&want_o) {
            assert!((g - w).abs() < 1e-5, "{other}: {got_o:?} vs {want_o:?}");
        }
    }
    Ok(())
}
