//! Tests of the training parts: input encoders, softmax/stochmax classifiers, optimisers,
//! reports and plots. Expected values are worked by hand (formulas in the comments).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use snnc::backend::candle::classifier::{
    correct_count, log_sigmoid, softmax_cross_entropy, softplus, Classifier, Stochmax,
};
use snnc::backend::candle::encode::{direct, dropout_mask, poisson, SeededRng};
use snnc::train::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use snnc::train::report::{
    plot_activity, plot_training, ActivityRecord, EnergyRecord, EpochRecord, Report,
};

const CPU: Device = Device::Cpu;

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tol {tol}); {got:?} vs {want:?}"
        );
    }
}

fn vec_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

// ───────────────────────────── encoders ─────────────────────────────

#[test]
fn poisson_rate_matches_pixel_and_is_reproducible() {
    let pixels = [0.0f32, 0.25, 0.5, 0.75, 1.0, 0.1];
    let images = Tensor::new(&pixels, &CPU).unwrap().reshape((2, 3)).unwrap();
    let t = 4000;
    let spikes = poisson(&images, t, &mut SeededRng::new(7)).unwrap();
    assert_eq!(spikes.dims(), &[t, 2, 3]);
    assert_eq!(spikes.dtype(), DType::F32);
    let values = vec_f64(&spikes);
    assert!(
        values.iter().all(|&v| v == 0.0 || v == 1.0),
        "spikes are binary"
    );
    let rates = vec_f64(&spikes.mean(0).unwrap());
    // Binomial std of a rate over 4000 draws is at most 0.5/sqrt(4000) ≈ 0.0079: allow 4σ.
    assert_close(&rates, &[0.0, 0.25, 0.5, 0.75, 1.0, 0.1], 0.032);
    assert_eq!(rates[0], 0.0, "a black pixel never spikes");
    assert_eq!(rates[4], 1.0, "a white pixel always spikes");

    let again = poisson(&images, t, &mut SeededRng::new(7)).unwrap();
    assert_eq!(vec_f64(&again), values, "same seed, same spikes");
    let other = poisson(&images, t, &mut SeededRng::new(8)).unwrap();
    assert_ne!(vec_f64(&other), values, "another seed, other spikes");
    // Successive draws from one stream differ (the stream advances).
    let mut rng = SeededRng::new(7);
    let first = vec_f64(&poisson(&images, 50, &mut rng).unwrap());
    let second = vec_f64(&poisson(&images, 50, &mut rng).unwrap());
    assert_ne!(first, second);
}

#[test]
fn poisson_keeps_dtype_and_rejects_bad_input() {
    let images = Tensor::new(&[[0.5f64, 2.0, -1.0]], &CPU).unwrap();
    let spikes = poisson(&images, 20, &mut SeededRng::new(1)).unwrap();
    assert_eq!(spikes.dtype(), DType::F64);
    let rates = vec_f64(&spikes.mean(0).unwrap());
    assert_eq!(rates[1], 1.0, "pixels above 1 always spike");
    assert_eq!(rates[2], 0.0, "pixels below 0 never spike");
    assert!(poisson(&images, 0, &mut SeededRng::new(1)).is_err());
    assert!(poisson(
        &Tensor::new(0.5f32, &CPU).unwrap(),
        3,
        &mut SeededRng::new(1)
    )
    .is_err());
}

#[test]
fn direct_coding_repeats_the_image() {
    let images = Tensor::arange(0f32, 24.0, &CPU)
        .unwrap()
        .reshape((2, 3, 2, 2))
        .unwrap();
    let coded = direct(&images, 5).unwrap();
    assert_eq!(coded.dims(), &[5, 2, 3, 2, 2]);
    for step in 0..5 {
        assert_eq!(vec_f64(&coded.get(step).unwrap()), vec_f64(&images));
    }
    assert!(direct(&images, 0).is_err());
}

#[test]
fn dropout_mask_has_rate_and_scale() {
    let p = 0.3f32;
    let mask = dropout_mask(&[100, 100], p, &mut SeededRng::new(3), &CPU).unwrap();
    assert_eq!(mask.dims(), &[100, 100]);
    let values = vec_f64(&mask);
    let scale = 1.0 / (1.0 - p) as f64;
    assert!(values.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
    let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
    // std of the rate over 10 000 draws ≈ 0.0046: allow 4σ.
    assert!((dropped - 0.3).abs() < 0.02, "dropped fraction {dropped}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((mean - 1.0).abs() < 0.03, "mask mean {mean}");
    let same = dropout_mask(&[100, 100], p, &mut SeededRng::new(3), &CPU).unwrap();
    assert_eq!(vec_f64(&same), values);
    let keep_all = dropout_mask(&[4, 4], 0.0, &mut SeededRng::new(3), &CPU).unwrap();
    assert!(vec_f64(&keep_all).iter().all(|&v| v == 1.0));
    for bad in [1.0, -0.1, f32::NAN] {
        assert!(
            dropout_mask(&[2], bad, &mut SeededRng::new(3), &CPU).is_err(),
            "p = {bad}"
        );
    }
}

// ───────────────────────────── softmax ─────────────────────────────

#[test]
fn softmax_cross_entropy_hand_example() {
    // Row 0: −log softmax([1, 2, 3])[2] = log(e + e² + e³) − 3 = 0.4076059644;
    // row 1: −log softmax([1, 1, 1])[0] = log 3 = 1.0986122887; mean 0.7531091266.
    let logits = Tensor::new(&[[1f32, 2., 3.], [1., 1., 1.]], &CPU).unwrap();
    let labels = Tensor::new(&[2u32, 0], &CPU).unwrap();
    let loss = softmax_cross_entropy(&logits, &labels).unwrap();
    assert_eq!(loss.rank(), 0);
    assert_close(&[scalar(&loss)], &[0.7531091265562451], 1e-6);

    // Stable for huge logits: exactly 0 for the winning class, 2000 for the losing one.
    let big = Tensor::new(&[[1000f32, 0., -1000.]], &CPU).unwrap();
    let zero = softmax_cross_entropy(&big, &Tensor::new(&[0u32], &CPU).unwrap()).unwrap();
    let far = softmax_cross_entropy(&big, &Tensor::new(&[2u32], &CPU).unwrap()).unwrap();
    assert_close(&[scalar(&zero), scalar(&far)], &[0.0, 2000.0], 1e-3);
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let data = [0.3f64, -1.2, 2.0, 0.7, 0.1, -0.4];
    let labels = Tensor::new(&[1u32, 0], &CPU).unwrap();
    let logits = Var::new(&data, &CPU).unwrap();
    let loss = softmax_cross_entropy(&logits.reshape((2, 3)).unwrap(), &labels).unwrap();
    let grad = vec_f64(loss.backward().unwrap().get(&logits).unwrap());
    let f = |x: &[f64]| {
        let t = Tensor::new(x, &CPU).unwrap().reshape((2, 3)).unwrap();
        scalar(&softmax_cross_entropy(&t, &labels).unwrap())
    };
    let h = 1e-6;
    let fd: Vec<f64> = (0..data.len())
        .map(|i| {
            let (mut up, mut down) = (data, data);
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect();
    assert_close(&grad, &fd, 1e-7);
}

#[test]
fn softmax_cross_entropy_rejects_bad_labels() {
    let logits = Tensor::new(&[[1f32, 2., 3.]], &CPU).unwrap();
    let out_of_range = Tensor::new(&[3u32], &CPU).unwrap();
    let err = softmax_cross_entropy(&logits, &out_of_range).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(softmax_cross_entropy(&logits, &Tensor::new(&[0i64], &CPU).unwrap()).is_err());
    assert!(softmax_cross_entropy(&logits, &Tensor::new(&[0u32, 1], &CPU).unwrap()).is_err());
    assert!(softmax_cross_entropy(&logits.flatten_all().unwrap(), &out_of_range).is_err());
}

#[test]
fn log_sigmoid_is_finite_and_exact() {
    let x = Tensor::new(&[-1000f32, -1.0, 0.0, 2.0, 1000.0], &CPU).unwrap();
    let want = [
        -1000.0,
        -(1.0 + (-1f64).exp()).ln() - 1.0,
        -(2f64.ln()),
        -(1.0 + (-2f64).exp()).ln(),
        0.0,
    ];
    assert_close(&vec_f64(&log_sigmoid(&x).unwrap()), &want, 1e-5);
    // softplus(x) = log(1 + eˣ); its derivative is σ(x).
    let v = Var::new(&[-30f64, -1.0, 0.0, 3.0, 30.0], &CPU).unwrap();
    let sp = softplus(&v).unwrap();
    let want: Vec<f64> = [-30f64, -1.0, 0.0, 3.0, 30.0]
        .iter()
        .map(|x| x.exp().ln_1p())
        .collect();
    assert_close(&vec_f64(&sp), &want, 1e-12);
    let grad = vec_f64(sp.sum_all().unwrap().backward().unwrap().get(&v).unwrap());
    let sigma: Vec<f64> = [-30f64, -1.0, 0.0, 3.0, 30.0]
        .iter()
        .map(|x| 1.0 / (1.0 + (-x).exp()))
        .collect();
    assert_close(&grad, &sigma, 1e-12);
}

// ───────────────────────────── stochmax ─────────────────────────────

/// The hand-worked head: H = 2, K = 3. With `h = [[1, 2], [0, −1]]`:
/// `a_ρ = [[0.5, 1, 0.5], [0, −0.5, 0.25]]`, `a_r = [[0.25, −0.5, −1], [0, 0.25, −1]]`.
fn hand_head(dtype: DType) -> Stochmax {
    let t = |rows: &[[f64; 2]; 3]| Tensor::new(rows, &CPU).unwrap().to_dtype(dtype).unwrap();
    let b = |v: [f64; 3]| Tensor::new(&v, &CPU).unwrap().to_dtype(dtype).unwrap();
    let mut ts = HashMap::new();
    ts.insert(
        "stochmax.rho.weight".to_string(),
        t(&[[0.5, 0.0], [0.0, 0.5], [-0.5, 0.25]]),
    );
    ts.insert("stochmax.rho.bias".to_string(), b([0.0, 0.0, 0.5]));
    ts.insert(
        "stochmax.aux.weight".to_string(),
        t(&[[0.25, 0.0], [0.0, -0.25], [0.0, 0.0]]),
    );
    ts.insert("stochmax.aux.bias".to_string(), b([0.0, 0.0, -1.0]));
    Stochmax::new(2, 3, VarBuilder::from_tensors(ts, dtype, &CPU)).unwrap()
}

#[test]
fn stochmax_loss_hand_example() {
    let head = hand_head(DType::F32);
    let h = Tensor::new(&[[1f32, 2.], [0., -1.]], &CPU).unwrap();
    let o = Tensor::new(&[[1f32, 2., 0.5], [0., 0., 1.]], &CPU).unwrap();
    let labels = Tensor::new(&[0u32, 2], &CPU).unwrap();
    let u = Tensor::new(&[[0.5f32, 0.25, 0.75], [0.9, 0.1, 0.5]], &CPU).unwrap();
    // a_q = a_ρ + a_r = [[0.75, 0.5, −0.5], [0, −0.25, −0.75]];
    // z = σ((a_q + logit u) / 0.1) off target, 1 on target:
    //   row 0: [1, σ((0.5 − ln 3)/0.1) = 0.0025070886, σ((−0.5 + ln 3)/0.1) = 0.9974929114]
    //   row 1: [σ((0 + ln 9)/0.1) = 1 − 2.87e-10, σ((−0.25 − ln 9)/0.1) = 2.354e-11, 1].
    // ce = mean_b −log softmax(log(z + ε) + o)[t]                       = 0.3953143846
    // kl = Σ_k mean_b [target: −log ρ; other: KL(Ber q ‖ Ber ρ)]       = 0.6040121060
    // aux = Σ_k mean_b [target: −log r; other: −log(1 − r)]             = 2.0978131898
    // neg_entropy = Σ_k mean_b ρ log ρ + (1 − ρ) log(1 − ρ)              = −1.9746437699
    let terms = head.train_terms_with_noise(&h, &o, &labels, &u).unwrap();
    let got = [&terms.ce, &terms.kl, &terms.aux, &terms.neg_entropy].map(scalar);
    assert_close(
        &got,
        &[
            0.3953143845854742,
            0.6040121060389037,
            2.097813189767092,
            -1.9746437699215478,
        ],
        2e-6,
    );
    let total = head.train_loss_with_noise(&h, &o, &labels, &u).unwrap();
    assert_eq!(total.rank(), 0);
    assert_close(&[scalar(&total)], &[1.1224959104699224], 5e-6);

    // Test time: logits log(ρ + ε) + o, e.g. log σ(0.5) + 1 = 0.5259230158.
    let logits = head.eval_logits(&h, &o).unwrap();
    assert_eq!(logits.dims(), &[2, 3]);
    let want = [
        0.5259230158198933,
        1.6867383124817772,
        0.02592301581989337,
        -std::f64::consts::LN_2, // log σ(0) + 0
        -0.9740769841801068,
        0.4240605801211563,
    ];
    assert_close(&vec_f64(&logits), &want, 1e-6);
}

#[test]
fn stochmax_seeded_loss_is_reproducible_and_finite_at_extremes() {
    let head = hand_head(DType::F32);
    let h = Tensor::new(&[[1f32, 2.], [0., -1.]], &CPU).unwrap();
    let o = Tensor::new(&[[1f32, 2., 0.5], [0., 0., 1.]], &CPU).unwrap();
    let labels = Tensor::new(&[0u32, 2], &CPU).unwrap();
    let a = scalar(
        &head
            .train_loss(&h, &o, &labels, &mut SeededRng::new(5))
            .unwrap(),
    );
    let b = scalar(
        &head
            .train_loss(&h, &o, &labels, &mut SeededRng::new(5))
            .unwrap(),
    );
    assert_eq!(a, b);
    assert!(a.is_finite());

    // Saturated pre-activations (|a| ~ 1e4) and huge outputs: still finite, gradients too.
    let h_big = Var::new(&[[4e4f32, -4e4], [-4e4, 4e4]], &CPU).unwrap();
    let o_big = Var::new(&[[1e4f32, -1e4, 0.], [-1e4, 1e4, 5e3]], &CPU).unwrap();
    let loss = head
        .train_loss(&h_big, &o_big, &labels, &mut SeededRng::new(9))
        .unwrap();
    assert!(scalar(&loss).is_finite(), "loss {loss}");
    let grads = loss.backward().unwrap();
    for var in [&h_big, &o_big] {
        assert!(vec_f64(grads.get(var).unwrap())
            .iter()
            .all(|g| g.is_finite()));
    }
    assert!(vec_f64(&head.eval_logits(&h_big, &o_big).unwrap())
        .iter()
        .all(|v| v.is_finite()));
}

#[test]
fn stochmax_rejects_bad_shapes_and_labels() {
    let head = hand_head(DType::F32);
    let h = Tensor::new(&[[1f32, 2.]], &CPU).unwrap();
    let o = Tensor::new(&[[1f32, 2., 0.5]], &CPU).unwrap();
    let mut rng = SeededRng::new(1);
    let label = |l: u32| Tensor::new(&[l], &CPU).unwrap();
    assert!(head.train_loss(&h, &o, &label(3), &mut rng).is_err());
    let wide = Tensor::new(&[[1f32, 2., 3.]], &CPU).unwrap();
    assert!(head.train_loss(&wide, &o, &label(0), &mut rng).is_err());
    assert!(head
        .eval_logits(&h, &wide.narrow(1, 0, 2).unwrap())
        .is_err());
    let two_rows = Tensor::new(&[[1f32, 2.], [3., 4.]], &CPU).unwrap();
    assert!(head.eval_logits(&two_rows, &o).is_err());
    let u_bad = Tensor::new(&[0.5f32, 0.5, 0.5], &CPU).unwrap();
    assert!(head
        .train_loss_with_noise(&h, &o, &label(0), &u_bad)
        .is_err());
    assert!(Stochmax::new(
        0,
        3,
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &CPU)
    )
    .is_err());
}

#[test]
fn every_stochmax_parameter_receives_a_gradient() {
    let varmap = VarMap::new();
    let head = Stochmax::new(4, 5, VarBuilder::from_varmap(&varmap, DType::F32, &CPU)).unwrap();
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "stochmax.aux.bias",
            "stochmax.aux.weight",
            "stochmax.rho.bias",
            "stochmax.rho.weight"
        ]
    );
    let h = Tensor::new(
        &[
            [0.5f32, 1.0, 0.0, 2.0],
            [1.5, 0.2, 0.3, 0.0],
            [0.0, 0.0, 1.0, 1.0],
        ],
        &CPU,
    )
    .unwrap();
    let o = Var::new(
        &[
            [0.1f32, 0.5, -0.3, 0.0, 1.0],
            [1.0, 0.0, 0.2, 0.3, -1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        &CPU,
    )
    .unwrap();
    let labels = Tensor::new(&[1u32, 4, 0], &CPU).unwrap();
    let loss = head
        .train_loss(&h, &o, &labels, &mut SeededRng::new(11))
        .unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm: f64 = vec_f64(g).iter().map(|x| x * x).sum();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{name} gradient norm {norm}"
        );
    }
    assert!(
        vec_f64(grads.get(&o).unwrap()).iter().any(|&g| g != 0.0),
        "o receives a gradient"
    );
}

/// Central differences of `f` at every element of `var` (f64).
fn finite_differences(var: &Var, f: &dyn Fn() -> f64) -> Vec<f64> {
    let base = vec_f64(var.as_tensor());
    let shape = var.dims().to_vec();
    let h = 1e-6;
    let mut out = Vec::new();
    for i in 0..base.len() {
        let at = |delta: f64| {
            let mut x = base.clone();
            x[i] += delta;
            var.set(&Tensor::from_vec(x, shape.clone(), &CPU).unwrap())
                .unwrap();
            f()
        };
        let d = (at(h) - at(-h)) / (2.0 * h);
        out.push(d);
    }
    var.set(&Tensor::from_vec(base, shape, &CPU).unwrap())
        .unwrap();
    out
}

#[test]
fn stochmax_gradients_match_finite_differences() {
    let varmap = VarMap::new();
    let head = Stochmax::new(3, 4, VarBuilder::from_varmap(&varmap, DType::F64, &CPU)).unwrap();
    let var = |name: &str| varmap.data().lock().unwrap()[name].clone();
    let h = Var::new(&[[0.5f64, -1.0, 2.0], [1.0, 0.3, -0.2]], &CPU).unwrap();
    let o = Var::new(&[[0.2f64, -0.1, 0.4, 1.0], [0.0, 0.3, -0.5, 0.1]], &CPU).unwrap();
    let labels = Tensor::new(&[2u32, 0], &CPU).unwrap();
    let u = Tensor::new(&[[0.3f64, 0.6, 0.45, 0.8], [0.2, 0.55, 0.7, 0.4]], &CPU).unwrap();
    let terms = || head.train_terms_with_noise(&h, &o, &labels, &u).unwrap();
    let total = || scalar(&terms().total().unwrap());
    let grads = terms().total().unwrap().backward().unwrap();

    // The total loss through o, h's aux path and the auxiliary head (no stop-gradient there).
    for v in [&o, &var("stochmax.aux.weight"), &var("stochmax.aux.bias")] {
        let analytic = vec_f64(grads.get(v).unwrap());
        assert_close(&analytic, &finite_differences(v, &total), 1e-6);
    }
    // ρ's head: −entropy depends on a_ρ only through ρ, so its gradient is the plain derivative.
    let rho_w = var("stochmax.rho.weight");
    let neg_entropy = || scalar(&terms().neg_entropy);
    let g = terms().neg_entropy.backward().unwrap();
    assert_close(
        &vec_f64(g.get(&rho_w).unwrap()),
        &finite_differences(&rho_w, &neg_entropy),
        1e-6,
    );
    // The cross-entropy reaches a_ρ only through q = σ(stopgrad(a_ρ) + a_r): no gradient.
    let g = terms().ce.backward().unwrap();
    if let Some(g) = g.get(&rho_w) {
        assert!(vec_f64(g).iter().all(|&x| x == 0.0), "stop-gradient on a_ρ");
    }
}

#[test]
fn classifier_dispatch_and_correct_count() {
    let h = Tensor::new(&[[1f32, 2.], [0., -1.]], &CPU).unwrap();
    let o = Tensor::new(&[[1f32, 2., 0.5], [0., 0., 1.]], &CPU).unwrap();
    let labels = Tensor::new(&[0u32, 2], &CPU).unwrap();
    let mut rng = SeededRng::new(1);
    // Softmax: the loss of Eq. 6 on o, and o itself as test logits.
    let softmax = Classifier::Softmax;
    let want = scalar(&softmax_cross_entropy(&o, &labels).unwrap());
    assert_eq!(
        scalar(&softmax.train_loss(&h, &o, &labels, &mut rng).unwrap()),
        want
    );
    assert_eq!(vec_f64(&softmax.eval_logits(&h, &o).unwrap()), vec_f64(&o));
    // Stochmax: the head's own loss and logits.
    let stochmax = Classifier::Stochmax(hand_head(DType::F32));
    let a = scalar(
        &stochmax
            .train_loss(&h, &o, &labels, &mut SeededRng::new(4))
            .unwrap(),
    );
    let b = scalar(
        &hand_head(DType::F32)
            .train_loss(&h, &o, &labels, &mut SeededRng::new(4))
            .unwrap(),
    );
    assert_eq!(a, b);
    // Test-time logits of the hand head: row 0 → class 1 (1.687), row 1 → class 2 (0.424).
    let logits = stochmax.eval_logits(&h, &o).unwrap();
    assert_eq!(correct_count(&logits, &labels).unwrap(), 1);
    assert_eq!(
        correct_count(&logits, &Tensor::new(&[1u32, 2], &CPU).unwrap()).unwrap(),
        2
    );
    assert_eq!(
        correct_count(&o, &Tensor::new(&[0u32, 0], &CPU).unwrap()).unwrap(),
        0
    );
    assert!(correct_count(&o, &Tensor::new(&[5u32, 0], &CPU).unwrap()).is_err());
}

// ───────────────────────────── optimisers ─────────────────────────────

fn f64_var(values: &[f64]) -> Var {
    Var::new(values, &CPU).unwrap()
}

/// Gradients of `0.5 · Σ w²` (i.e. w) for every var.
fn half_square_grads(vars: &[&Var]) -> candle_core::backprop::GradStore {
    let mut loss = Tensor::new(0f64, &CPU).unwrap();
    for v in vars {
        loss = (loss + (v.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()).unwrap();
    }
    loss.backward().unwrap()
}

#[test]
fn adam_steps_match_hand_computation() {
    // loss = 0.5 Σ w², g = w, w₀ = [1, −2], lr 0.1, β = (0.9, 0.999), ε = 1e-8.
    // Step 1: m̂ = g, v̂ = g², so w₁ = w₀ − 0.1 · g/(|g| + ε) = [0.900000001, −1.9000000005].
    // Step 2: m = [0.18, −0.37], v = [0.001809, 0.007606], m̂ = m/0.19, v̂ = v/0.001999
    //   → w₂ = [0.8004122297, −1.8001664866]; step 3 likewise.
    let w = f64_var(&[1.0, -2.0]);
    let config = AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(vec![("w".into(), w.clone())], config).unwrap();
    let want = [
        [0.900000001, -1.9000000005],
        [0.8004122297123382, -1.800166486621093],
        [0.701586274504415, -1.700623392812114],
    ];
    for (i, want) in want.iter().enumerate() {
        let stats = adam.step(&half_square_grads(&[&w])).unwrap();
        assert_eq!(stats.step, i as u64 + 1);
        assert_close(&vec_f64(w.as_tensor()), want, 1e-12);
    }
}

#[test]
fn adam_weight_decay_is_added_to_the_gradient() {
    // loss = Σ w (g = 1), wd 0.5 → g' = 1 + 0.5 w; w₀ = [1, 3]: g'₁ = [1.5, 2.5], w₁ = w₀ − 0.1.
    let w = f64_var(&[1.0, 3.0]);
    let config = AdamConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(vec![("w".into(), w.clone())], config).unwrap();
    let want = [
        [0.9000000006666666, 2.9000000004],
        [0.8001027084220775, 2.8000577574715075],
        [0.7003815249719783, 2.7002132922411284],
    ];
    for want in want {
        let grads = w.sum_all().unwrap().backward().unwrap();
        let stats = adam.step(&grads).unwrap();
        assert_close(&[stats.grad_norm], &[2f64.sqrt()], 1e-12);
        assert_close(&vec_f64(w.as_tensor()), &want, 1e-12);
    }
}

#[test]
fn sgd_momentum_steps_match_hand_computation() {
    // loss = 0.5 Σ w², wd 0.1 → g = 1.1 w; lr 0.1, μ 0.9. With w in units of w₀:
    // b₁ = 1.1, w₁ = 0.89; g₂ = 0.979, b₂ = 0.99 + 0.979 = 1.969, w₂ = 0.6931;
    // g₃ = 0.76241, b₃ = 1.7721 + 0.76241 = 2.53451, w₃ = 0.439649.
    let w0 = [2.0, -0.5];
    let w = f64_var(&w0);
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.1,
        nesterov: false,
    };
    let mut sgd = Sgd::new(vec![("w".into(), w.clone())], config).unwrap();
    for factor in [0.89, 0.89 - 0.1969, 0.439649] {
        sgd.step(&half_square_grads(&[&w])).unwrap();
        assert_close(
            &vec_f64(w.as_tensor()),
            &[w0[0] * factor, w0[1] * factor],
            1e-12,
        );
    }
    // Nesterov: d₁ = g + μ b₁ = 1.1 + 0.99 = 2.09, w₁ = 0.791;
    // g₂ = 0.8701, b₂ = 1.8601, d₂ = 0.8701 + 1.67409 = 2.54419, w₂ = 0.536581.
    let w = f64_var(&w0);
    let mut sgd = Sgd::new(
        vec![("w".into(), w.clone())],
        SgdConfig {
            nesterov: true,
            ..config
        },
    )
    .unwrap();
    for factor in [0.791, 0.536581] {
        sgd.step(&half_square_grads(&[&w])).unwrap();
        assert_close(
            &vec_f64(w.as_tensor()),
            &[w0[0] * factor, w0[1] * factor],
            1e-12,
        );
    }
    // Plain SGD without momentum: w₁ = w₀ − 0.1 · 1.1 w₀ = 0.89 w₀, then 0.89² w₀.
    let w = f64_var(&w0);
    let mut sgd = Sgd::new(
        vec![("w".into(), w.clone())],
        SgdConfig {
            momentum: 0.0,
            ..config
        },
    )
    .unwrap();
    sgd.step(&half_square_grads(&[&w])).unwrap();
    sgd.set_lr(0.2).unwrap();
    sgd.step(&half_square_grads(&[&w])).unwrap();
    // Second step at lr 0.2: 0.89 · (1 − 0.22) = 0.6942.
    assert_close(
        &vec_f64(w.as_tensor()),
        &[w0[0] * 0.6942, w0[1] * 0.6942],
        1e-12,
    );
}

#[test]
fn optimiser_state_round_trips() {
    let run = |opt: &mut dyn Optimizer, w: &Var, steps: usize| {
        for _ in 0..steps {
            opt.step(&half_square_grads(&[w])).unwrap();
        }
    };
    let make_adam = |w: &Var| -> Box<dyn Optimizer> {
        Box::new(
            Adam::new(
                vec![("layer.w".into(), w.clone())],
                AdamConfig {
                    lr: 0.05,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    };
    let make_sgd = |w: &Var| -> Box<dyn Optimizer> {
        Box::new(Sgd::new(vec![("layer.w".into(), w.clone())], SgdConfig::default()).unwrap())
    };
    for make in [&make_adam as &dyn Fn(&Var) -> Box<dyn Optimizer>, &make_sgd] {
        // A: three uninterrupted steps. B: two steps, state saved, a fresh optimiser loads it
        // and takes the third: both end at the same weights.
        let wa = f64_var(&[1.0, -2.0]);
        let mut a = make(&wa);
        run(a.as_mut(), &wa, 3);
        let wb = f64_var(&[1.0, -2.0]);
        let mut b = make(&wb);
        run(b.as_mut(), &wb, 2);
        let state: HashMap<String, Tensor> = b.state_tensors().unwrap().into_iter().collect();
        assert!(
            state.keys().any(|k| k.ends_with("layer.w")),
            "{:?}",
            state.keys()
        );
        // Through a safetensors file, as a checkpoint stores it.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("optim.safetensors");
        candle_core::safetensors::save(&state, &file).unwrap();
        let state = candle_core::safetensors::load(&file, &CPU).unwrap();
        let mut resumed = make(&wb);
        resumed.load_state(&state).unwrap();
        run(resumed.as_mut(), &wb, 1);
        assert_close(&vec_f64(wb.as_tensor()), &vec_f64(wa.as_tensor()), 1e-15);

        // A state for another shape, or lacking an entry, is refused.
        let mut missing = state.clone();
        let key = missing
            .keys()
            .find(|k| k.ends_with("layer.w"))
            .unwrap()
            .clone();
        missing.remove(&key);
        assert!(resumed.load_state(&missing).is_err());
        let mut wrong = state.clone();
        wrong.insert(key, Tensor::zeros(3, DType::F64, &CPU).unwrap());
        assert!(resumed.load_state(&wrong).is_err());
    }
}

#[test]
fn a_parameter_without_gradient_is_an_error_naming_it() {
    let used = f64_var(&[1.0, 2.0]);
    let unused = f64_var(&[3.0]);
    let vars = vec![
        ("used".to_string(), used.clone()),
        ("conv9.weight".to_string(), unused.clone()),
    ];
    let grads = half_square_grads(&[&used]);
    let mut adam = Adam::new(vars.clone(), AdamConfig::default()).unwrap();
    let err = adam.step(&grads).unwrap_err().to_string();
    assert!(err.contains("conv9.weight"), "{err}");
    assert_eq!(
        vec_f64(used.as_tensor()),
        [1.0, 2.0],
        "no parameter is updated"
    );
    let mut sgd = Sgd::new(vars, SgdConfig::default()).unwrap();
    assert!(sgd
        .step(&grads)
        .unwrap_err()
        .to_string()
        .contains("conv9.weight"));
}

#[test]
fn optimiser_settings_are_validated() {
    let w = || vec![("w".to_string(), f64_var(&[1.0]))];
    assert!(Adam::new(
        w(),
        AdamConfig {
            lr: -1.0,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Adam::new(
        w(),
        AdamConfig {
            beta1: 1.0,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Adam::new(
        w(),
        AdamConfig {
            eps: 0.0,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Sgd::new(
        w(),
        SgdConfig {
            momentum: 0.0,
            nesterov: true,
            ..Default::default()
        }
    )
    .is_err());
    assert!(Sgd::new(
        w(),
        SgdConfig {
            lr: f64::NAN,
            ..Default::default()
        }
    )
    .is_err());
    let twice = vec![
        ("w".to_string(), f64_var(&[1.0])),
        ("w".to_string(), f64_var(&[2.0])),
    ];
    assert!(Adam::new(twice, AdamConfig::default()).is_err());
    let mut adam = Adam::new(w(), AdamConfig::default()).unwrap();
    assert!(adam.set_lr(f64::INFINITY).is_err());
    adam.set_lr(0.5).unwrap();
    assert_eq!(adam.lr(), 0.5);
}

#[test]
fn learning_rate_schedules() {
    let step = LrSchedule::Step {
        every: 2,
        gamma: 0.5,
    };
    let got: Vec<f64> = (0..5).map(|e| step.lr_at(0.1, e)).collect();
    assert_close(&got, &[0.1, 0.1, 0.05, 0.05, 0.025], 1e-15);
    let cosine = LrSchedule::Cosine { total: 4 };
    // (1 + cos(π e / 4)) / 2 = 1, 0.8535534, 0.5, 0.1464466, 0, then held at 0.
    let got: Vec<f64> = (0..6).map(|e| cosine.lr_at(1.0, e)).collect();
    assert_close(
        &got,
        &[1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0, 0.0],
        1e-12,
    );
    assert_eq!(LrSchedule::Constant.lr_at(0.3, 100), 0.3);
    assert_eq!(
        LrSchedule::Step {
            every: 0,
            gamma: 0.1
        }
        .lr_at(0.3, 7),
        0.3
    );
    assert_eq!(LrSchedule::Cosine { total: 0 }.lr_at(0.3, 7), 0.3);
    let json = serde_json::to_string(&step).unwrap();
    assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), step);
}

#[test]
fn optimisers_train_a_tiny_classifier() {
    // End to end: stochmax head plus a linear output layer on two separable points.
    for use_adam in [true, false] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &CPU);
        let out = candle_nn::linear(2, 2, vb.pp("out")).unwrap();
        let head = Stochmax::new(2, 2, vb).unwrap();
        let vars: Vec<(String, Var)> = {
            let data = varmap.data().lock().unwrap();
            let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        // candle's initialisers draw from an unseeded generator: fix every starting value
        // so that the run is the same each time.
        for (_, var) in &vars {
            let n = var.elem_count();
            let vals: Vec<f32> = (0..n).map(|i| 0.1 * ((i * 7 % 5) as f32 - 2.0)).collect();
            var.set(&Tensor::from_vec(vals, var.shape(), &CPU).unwrap())
                .unwrap();
        }
        let mut opt: Box<dyn Optimizer> = if use_adam {
            Box::new(
                Adam::new(
                    vars,
                    AdamConfig {
                        lr: 0.05,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        } else {
            Box::new(
                Sgd::new(
                    vars,
                    SgdConfig {
                        lr: 0.1,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        };
        let h = Tensor::new(&[[1f32, 0.], [0., 1.]], &CPU).unwrap();
        let labels = Tensor::new(&[1u32, 0], &CPU).unwrap();
        let mut rng = SeededRng::new(2);
        let o = |h: &Tensor| candle_nn::Module::forward(&out, h).unwrap();
        let first = scalar(&head.train_loss(&h, &o(&h), &labels, &mut rng).unwrap());
        for _ in 0..60 {
            let loss = head.train_loss(&h, &o(&h), &labels, &mut rng).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let last = scalar(&head.train_loss(&h, &o(&h), &labels, &mut rng).unwrap());
        assert!(last < first, "adam = {use_adam}: loss {first} → {last}");
        let predicted = head
            .eval_logits(&h, &o(&h))
            .unwrap()
            .argmax(D::Minus1)
            .unwrap();
        assert_eq!(predicted.to_vec1::<u32>().unwrap(), [1, 0]);
    }
}

// ───────────────────────────── reports ─────────────────────────────

fn sample_report() -> Report {
    let mut extra = serde_json::Map::new();
    extra.insert("seed".into(), serde_json::json!(7));
    extra.insert(
        "optimizer".into(),
        serde_json::json!({"kind": "adam", "lr": 0.001}),
    );
    Report {
        method: "agd".into(),
        network: "vgg3x2.snn".into(),
        timesteps: 25,
        test_accuracy: 0.8125,
        train_images_per_s: 1234.5,
        infer_images_per_s: 4321.0,
        wall_s: 61.25,
        epochs: (1..=4)
            .map(|e| EpochRecord {
                test_loss: None,
                loss_terms: None,
                epoch: e,
                loss: 2.3 / e as f64,
                train_accuracy: 0.2 * e as f64,
                test_accuracy: 0.18 * e as f64,
            })
            .collect(),
        activity: vec![
            ActivityRecord {
                layer: "Conv1".into(),
                step: 1,
                spike_rate: 0.12,
            },
            ActivityRecord {
                layer: "Conv2".into(),
                step: 1,
                spike_rate: 0.08,
            },
            ActivityRecord {
                layer: "Conv2".into(),
                step: 2,
                spike_rate: 0.05,
            },
            ActivityRecord {
                layer: "FC1".into(),
                step: 1,
                spike_rate: 0.02,
            },
        ],
        energy: EnergyRecord {
            e_ann_pj: 1.5e9,
            e_snn_pj: 2.5e8,
            ee: 6.0,
        },
        extra,
    }
}

#[test]
fn report_json_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let report = sample_report();
    report.write_json(&path).unwrap();
    assert_eq!(Report::read_json(&path).unwrap(), report);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(raw["seed"], 7, "extra keys sit at the top level");
    assert_eq!(raw["energy"]["ee"], 6.0);
    // Overwriting replaces the file and leaves no temporary behind.
    let mut second = report.clone();
    second.test_accuracy = 0.9;
    second.write_json(&path).unwrap();
    assert_eq!(Report::read_json(&path).unwrap().test_accuracy, 0.9);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);

    // Non-finite numbers become null and read back as NaN.
    second.energy.ee = f64::INFINITY;
    second.write_json(&path).unwrap();
    assert!(Report::read_json(&path).unwrap().energy.ee.is_nan());

    let fresh = Report::new("conversion", "vgg5.snn", 100);
    assert_eq!(
        (fresh.method.as_str(), fresh.timesteps, fresh.epochs.len()),
        ("conversion", 100, 0)
    );
    fresh.write_json(&path).unwrap();
    assert_eq!(Report::read_json(&path).unwrap(), fresh);

    std::fs::write(&path, "{ not json").unwrap();
    let err = Report::read_json(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(Report::read_json(&dir.path().join("absent.json")).is_err());
    assert!(report
        .write_json(&dir.path().join("no/such/dir/r.json"))
        .is_err());
}

#[test]
fn plots_write_svg_files() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample_report();
    let training = dir.path().join("training.svg");
    plot_training(&report.epochs, &training).unwrap();
    let svg = std::fs::read_to_string(&training).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"));
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "series drawn"
    );
    assert!(
        svg.contains("epoch") && svg.contains("accuracy"),
        "labels drawn as text"
    );

    let activity = dir.path().join("activity.svg");
    plot_activity(&report.activity, &activity).unwrap();
    let svg = std::fs::read_to_string(&activity).unwrap();
    assert!(svg.contains("<svg") && svg.contains("<rect"));
    assert!(svg.contains("Conv2@2"), "unroll steps are labelled");

    // Degenerate input still gives a valid (if empty) plot rather than an error.
    let mut odd = report.epochs.clone();
    odd[1].loss = f64::NAN;
    plot_training(&odd, &training).unwrap();
    plot_training(&[], &dir.path().join("empty.svg")).unwrap();
    plot_activity(&[], &dir.path().join("empty_activity.svg")).unwrap();
    assert!(
        std::fs::metadata(dir.path().join("empty.svg"))
            .unwrap()
            .len()
            > 0
    );
    assert!(plot_training(&report.epochs, &dir.path().join("no/such/dir/t.svg")).is_err());
}
