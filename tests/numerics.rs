//! Numerics of the candle kernels: the surrogate spike, the fused LIF/IF scan, im2col
//! convolution and pooling, against hand-computed values, finite differences, unfused
//! references and candle's own ops.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snnc::backend::candle::conv::{conv2d, conv2d_im2col, im2col};
use snnc::backend::candle::neuron::{
    lif_scan, lif_scan_reference, lif_scan_steps, spike, NeuronParams,
};
use snnc::backend::candle::pool::{avg_pool2d, max_pool2d};
use snnc::ir::Reset;

const CPU: Device = Device::Cpu;

fn rand_vec(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(rand_vec(rng, n, lo, hi), shape, &CPU).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let scale = 1f32.max(w.abs());
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

fn params(leak: f32, reset: Reset) -> NeuronParams {
    NeuronParams {
        leak,
        threshold: 1.0,
        reset,
        gamma: 0.3,
    }
}

// ------------------------------------------------------------------------------------
// The surrogate spike.

/// An antiderivative of Eq. 4: F'(v) = γ·max(0, 1 − |v − θ|/θ).
fn surrogate_antiderivative(v: f64, th: f64, gamma: f64) -> f64 {
    let u = ((v - th) / th).clamp(-1.0, 1.0);
    gamma * th * (u - u * u.abs() / 2.0)
}

#[test]
fn spike_forward_is_heaviside_with_theta_of_zero_one() {
    let v = Tensor::new(&[-1.0f32, 0.0, 0.49, 0.5, 0.51, 3.0], &CPU).unwrap();
    let s = spike(&v, 0.5, 0.3).unwrap();
    assert_eq!(flat(&s), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn spike_backward_matches_finite_differences_of_antiderivative() {
    let (th, gamma) = (0.8f32, 0.3f32);
    // Points away from the kinks at v = 0, θ, 2θ (u = −1, 0, 1).
    let pts = [
        -0.7f32,
        0.05,
        0.3,
        0.55,
        0.79 - 0.05,
        0.95,
        1.1,
        1.45,
        1.55,
        1.7,
        2.5,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let up = rand_vec(&mut rng, pts.len(), -2.0, 2.0);
    let v = Var::new(&pts[..], &CPU).unwrap();
    let g = Tensor::new(&up[..], &CPU).unwrap();
    let loss = (spike(v.as_tensor(), th, gamma).unwrap() * &g)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let got = flat(grads.get(v.as_tensor()).unwrap());
    let h = 1e-4f64;
    let want: Vec<f32> = pts
        .iter()
        .zip(&up)
        .map(|(&p, &u)| {
            let p = p as f64;
            let d = (surrogate_antiderivative(p + h, th as f64, gamma as f64)
                - surrogate_antiderivative(p - h, th as f64, gamma as f64))
                / (2.0 * h);
            (d * u as f64) as f32
        })
        .collect();
    assert_close(&got, &want, 1e-5, "spike grad");
    // Outside [0, 2θ] the surrogate vanishes; at θ it peaks at γ.
    assert_eq!(got[0], 0.0);
    assert_eq!(got[10], 0.0);
}

#[test]
fn spike_rejects_bad_threshold() {
    let v = Tensor::new(&[1.0f32], &CPU).unwrap();
    assert!(spike(&v, 0.0, 0.3).is_err());
    assert!(spike(&v, f32::NAN, 0.3).is_err());
    assert!(spike(&v, 1.0, f32::INFINITY).is_err());
}

// ------------------------------------------------------------------------------------
// LIF/IF dynamics against hand-computed sequences.

fn scan_1d(x: &[f32], p: &NeuronParams) -> (Vec<f32>, Vec<f32>) {
    let t = Tensor::new(x, &CPU).unwrap().reshape((x.len(), 1)).unwrap();
    let fused = flat(&lif_scan(&t, p).unwrap());
    let reference = flat(&lif_scan_reference(&t, p).unwrap());
    (fused, reference)
}

#[test]
fn if_subtract_and_zero_by_hand() {
    // θ = 1, leak 1. x = 1.5, 0.75, 0.5, 0.25, 0.875 (all exact in binary).
    // subtract: v = 1.5 s u=.5 | 1.25 s u=.25 | .75 | 1.0 s (Θ(0)=1) u=0 | .875
    // zero:     v = 1.5 s u=0  | .75         | 1.25 s u=0 | .25 | 1.125 s
    let x = [1.5f32, 0.75, 0.5, 0.25, 0.875];
    let (f, r) = scan_1d(&x, &params(1.0, Reset::Subtract));
    assert_eq!(f, vec![1.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(r, f);
    let (f, r) = scan_1d(&x, &params(1.0, Reset::Zero));
    assert_eq!(f, vec![1.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(r, f);
}

#[test]
fn lif_subtract_and_zero_by_hand() {
    // θ = 1, leak 0.5. x = 2.5, 0.5, 0.5.
    // subtract: v = 2.5 s u=1.5 | .75+.5=1.25 s u=.25 | .125+.5=.625
    // zero:     v = 2.5 s u=0   | .5                  | .25+.5=.75
    let x = [2.5f32, 0.5, 0.5];
    let (f, r) = scan_1d(&x, &params(0.5, Reset::Subtract));
    assert_eq!(f, vec![1.0, 1.0, 0.0]);
    assert_eq!(r, f);
    let (f, r) = scan_1d(&x, &params(0.5, Reset::Zero));
    assert_eq!(f, vec![1.0, 0.0, 0.0]);
    assert_eq!(r, f);
    // Leak below threshold: 0.75, 0.75 → .75 | .375+.75=1.125 s
    let (f, _) = scan_1d(&[0.75, 0.75], &params(0.5, Reset::Subtract));
    assert_eq!(f, vec![0.0, 1.0]);
}

fn scan_grad(x: &[f32], p: &NeuronParams, fused: bool) -> Vec<f32> {
    let v = Var::from_tensor(&Tensor::new(x, &CPU).unwrap()).unwrap();
    let s = if fused {
        lif_scan(v.as_tensor(), p).unwrap()
    } else {
        lif_scan_reference(v.as_tensor(), p).unwrap()
    };
    let grads = s.sum_all().unwrap().backward().unwrap();
    flat(grads.get(v.as_tensor()).unwrap())
}

#[test]
fn lif_backward_by_hand() {
    // θ = 1, γ = 0.3, leak 0.5, x = 2.5, 0.5, 0.5, upstream gradient 1 everywhere.
    // subtract: v = 2.5, 1.25, .625; σ' = 0, .3·.75 = .225, .3·.625 = .1875
    //   dv2 = .1875; dv1 = .225 + .5·.1875 = .31875; dv0 = 0 + .5·.31875 = .159375
    let x = [2.5f32, 0.5, 0.5];
    let p = params(0.5, Reset::Subtract);
    let want = [0.159375f32, 0.31875, 0.1875];
    assert_close(&scan_grad(&x, &p, true), &want, 1e-6, "fused subtract");
    assert_close(&scan_grad(&x, &p, false), &want, 1e-6, "reference subtract");
    // zero: v = 2.5, .5, .75; σ' = 0, .15, .225; s0 = 1 cuts the carry (detached reset):
    //   dv2 = .225; dv1 = .15 + .5·.225 = .2625; dv0 = 0 + 0
    let p = params(0.5, Reset::Zero);
    let want = [0.0f32, 0.2625, 0.225];
    assert_close(&scan_grad(&x, &p, true), &want, 1e-6, "fused zero");
    assert_close(&scan_grad(&x, &p, false), &want, 1e-6, "reference zero");
}

// ------------------------------------------------------------------------------------
// Fused scan = unfused reference.

/// Compares spikes and input gradients of the fused scan and the reference on `x`; with
/// `transpose`, `x` is `[N, T]` and both get the non-contiguous view `x.t()`.
fn fused_vs_reference(x: &Tensor, p: &NeuronParams, seed: u64, transpose: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let view_dims: Vec<usize> = if transpose {
        x.t().unwrap().dims().to_vec()
    } else {
        x.dims().to_vec()
    };
    let g = rand_tensor(&mut rng, &view_dims, -1.0, 1.0);
    let run = |fused: bool| {
        let v = Var::from_tensor(x).unwrap();
        let input = if transpose {
            let t = v.as_tensor().t().unwrap();
            assert!(!t.is_contiguous());
            t
        } else {
            v.as_tensor().clone()
        };
        let s = if fused {
            lif_scan(&input, p).unwrap()
        } else {
            lif_scan_reference(&input, p).unwrap()
        };
        let grads = (&s * &g).unwrap().sum_all().unwrap().backward().unwrap();
        (flat(&s), flat(grads.get(v.as_tensor()).unwrap()))
    };
    let (sf, gf) = run(true);
    let (sr, gr) = run(false);
    assert_eq!(sf, sr, "spikes differ ({p:?})");
    let fired = sf.iter().filter(|&&s| s > 0.0).count();
    assert!(
        fired > 0 && fired < sf.len(),
        "test data must both fire and stay silent"
    );
    assert_close(&gf, &gr, 1e-5, &format!("grad {p:?}"));
}

#[test]
fn fused_scan_gradients_equal_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = rand_tensor(&mut rng, &[8, 3, 5, 7], -0.5, 1.2);
    let mut seed = 0;
    for leak in [1.0f32, 0.9] {
        for reset in [Reset::Subtract, Reset::Zero] {
            seed += 1;
            fused_vs_reference(&x, &params(leak, reset), seed, false);
        }
    }
}

#[test]
fn fused_scan_parallel_path_and_noncontiguous_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // 3 steps × 50 000 neurons: above the parallel threshold.
    let x = rand_tensor(&mut rng, &[3, 50_000], -0.5, 1.5);
    fused_vs_reference(&x, &params(0.95, Reset::Subtract), 21, false);
    fused_vs_reference(&x, &params(0.95, Reset::Zero), 22, false);
    // A transposed view: [T, N] from an [N, T] tensor.
    let base = rand_tensor(&mut rng, &[40, 6], -0.5, 1.5);
    let xt = base.t().unwrap();
    assert!(!xt.is_contiguous());
    let p = params(0.9, Reset::Subtract);
    assert_eq!(
        flat(&lif_scan(&xt, &p).unwrap()),
        flat(&lif_scan_reference(&xt, &p).unwrap())
    );
    fused_vs_reference(&base, &p, 23, true);
}

#[test]
fn scan_steps_on_time_major_batches() {
    // [T·B, C] with T = 3, B = 2, C = 1: sample 0 gets 1.5, 0.75, 0.5; sample 1 gets 0.25 ×3.
    let x = Tensor::new(&[[1.5f32], [0.25], [0.75], [0.25], [0.5], [0.25]], &CPU).unwrap();
    let p = params(1.0, Reset::Subtract);
    let s = lif_scan_steps(&x, 3, &p).unwrap();
    assert_eq!(s.dims(), &[6, 1]);
    // IF, θ = 1: sample 0: 1.5 s | .5+.75 = 1.25 s | .25+.5 = .75; sample 1: .25, .5, .75.
    assert_eq!(flat(&s), vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert!(lif_scan_steps(&x, 4, &p).is_err());
    assert!(lif_scan_steps(&x, 0, &p).is_err());
}

#[test]
fn scan_rejects_bad_input() {
    let p = params(0.9, Reset::Subtract);
    let scalar = Tensor::new(1.0f32, &CPU).unwrap();
    assert!(lif_scan(&scalar, &p).is_err());
    let x = Tensor::zeros((2, 3), candle_core::DType::F32, &CPU).unwrap();
    let bad = NeuronParams {
        threshold: -1.0,
        ..p
    };
    assert!(lif_scan(&x, &bad).is_err());
    let f64x = Tensor::zeros((2, 3), candle_core::DType::F64, &CPU).unwrap();
    assert!(lif_scan(&f64x, &p).is_err());
    // Empty time axis is fine.
    let empty = Tensor::zeros((0, 3), candle_core::DType::F32, &CPU).unwrap();
    assert_eq!(lif_scan(&empty, &p).unwrap().dims(), &[0, 3]);
}

// ------------------------------------------------------------------------------------
// im2col convolution = candle's conv2d, forward and backward.

fn conv_case(n: usize, c: usize, hw: usize, o: usize, k: usize, stride: usize, pad: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64((n * 1000 + c * 100 + stride * 10 + pad) as u64);
    let x = Var::from_tensor(&rand_tensor(&mut rng, &[n, c, hw, hw], -1.0, 1.0)).unwrap();
    let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, c, k, k], -0.5, 0.5)).unwrap();
    let ours = conv2d_im2col(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
    let theirs = x
        .as_tensor()
        .conv2d(w.as_tensor(), pad, stride, 1, 1)
        .unwrap();
    assert_eq!(ours.dims(), theirs.dims());
    let what = format!("conv n{n} c{c} {hw} o{o} k{k} s{stride} p{pad}");
    assert_close(&flat(&ours), &flat(&theirs), 1e-5, &what);
    let g = rand_tensor(&mut rng, ours.dims(), -1.0, 1.0);
    let go = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
    let gt = (&theirs * &g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, v) in [("dx", &x), ("dw", &w)] {
        assert_close(
            &flat(go.get(v.as_tensor()).unwrap()),
            &flat(gt.get(v.as_tensor()).unwrap()),
            1e-4,
            &format!("{what} {name}"),
        );
    }
}

/// The weight gradient alone (the input tracks no gradient, as for a network's first
/// layer, so no dX is computed) equals the one computed beside dX.
#[test]
fn conv_weight_gradient_without_input_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let x = rand_tensor(&mut rng, &[9, 32, 14, 14], -1.0, 1.0);
    let w = Var::from_tensor(&rand_tensor(&mut rng, &[4, 32, 3, 3], -0.5, 0.5)).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let g = rand_tensor(&mut rng, &[9, 4, 14, 14], -1.0, 1.0);
    let dw = |x: &Tensor| {
        let y = conv2d(x, w.as_tensor(), 1, 1).unwrap();
        let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        flat(grads.get(w.as_tensor()).unwrap())
    };
    let alone = dw(&x);
    assert_eq!(
        alone,
        dw(xv.as_tensor()),
        "dW depends on whether dX is computed"
    );
    let theirs = x.conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap();
    let grads = (&theirs * &g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_close(&alone, &flat(grads.get(w.as_tensor()).unwrap()), 1e-4, "dW");
}

#[test]
fn im2col_conv_matches_candle_conv2d() {
    for stride in [1, 2] {
        for pad in [0, 1] {
            conv_case(2, 3, 7, 4, 3, stride, pad);
        }
    }
    conv_case(3, 1, 6, 2, 1, 1, 0);
    conv_case(1, 2, 9, 3, 5, 2, 1);
    // The chunked path: two 32-channel 14×14 images per chunk, 20 chunks in 10 groups of
    // the weight-gradient sum; then 3 chunks, the last one partial, at stride 2.
    conv_case(40, 32, 14, 4, 3, 1, 1);
    conv_case(30, 32, 14, 5, 3, 2, 0);
    // The public entry point.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = rand_tensor(&mut rng, &[2, 2, 6, 6], -1.0, 1.0);
    let w = rand_tensor(&mut rng, &[3, 2, 3, 3], -1.0, 1.0);
    assert_close(
        &flat(&conv2d(&x, &w, 1, 1).unwrap()),
        &flat(&x.conv2d(&w, 1, 1, 1, 1).unwrap()),
        1e-5,
        "conv2d",
    );
}

/// Non-square input (candle 0.11's conv2d backward mis-sizes dx there, so this one is
/// checked against finite differences of the loss, which is linear in x and in w).
#[test]
fn im2col_conv_non_square_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (xs, ws) = ([1usize, 2, 4, 6], [2usize, 2, 3, 3]);
    let xv = rand_vec(&mut rng, xs.iter().product(), -1.0, 1.0);
    let wv = rand_vec(&mut rng, ws.iter().product(), -1.0, 1.0);
    let (stride, pad) = (2, 1);
    let loss_and_out = |xv: &[f32], wv: &[f32], g: Option<&Tensor>| {
        let x = Tensor::from_vec(xv.to_vec(), &xs[..], &CPU).unwrap();
        let w = Tensor::from_vec(wv.to_vec(), &ws[..], &CPU).unwrap();
        let y = conv2d_im2col(&x, &w, stride, pad).unwrap();
        let l = g.map(|g| {
            (&y * g)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        });
        (l, y)
    };
    let (_, y) = loss_and_out(&xv, &wv, None);
    let x = Tensor::from_vec(xv.clone(), &xs[..], &CPU).unwrap();
    let w = Tensor::from_vec(wv.clone(), &ws[..], &CPU).unwrap();
    assert_close(
        &flat(&y),
        &flat(&x.conv2d(&w, pad, stride, 1, 1).unwrap()),
        1e-5,
        "non-square forward",
    );
    let g = rand_tensor(&mut rng, y.dims(), -1.0, 1.0);
    let (x, w) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
    let y = conv2d_im2col(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
    let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
    let h = 0.01f32;
    let fd = |which: usize, len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| {
                let (mut xp, mut wp) = (xv.clone(), wv.clone());
                let (mut xm, mut wm) = (xv.clone(), wv.clone());
                if which == 0 {
                    xp[i] += h;
                    xm[i] -= h;
                } else {
                    wp[i] += h;
                    wm[i] -= h;
                }
                let lp = loss_and_out(&xp, &wp, Some(&g)).0.unwrap();
                let lm = loss_and_out(&xm, &wm, Some(&g)).0.unwrap();
                (lp - lm) / (2.0 * h)
            })
            .collect()
    };
    let dx = flat(grads.get(x.as_tensor()).unwrap());
    let dw = flat(grads.get(w.as_tensor()).unwrap());
    assert_close(&dx, &fd(0, xv.len()), 2e-3, "non-square dx");
    assert_close(&dw, &fd(1, wv.len()), 2e-3, "non-square dw");
}

#[test]
fn conv_by_hand_and_input_without_gradient() {
    // 1×1×3×3 input 1..9, 2×2 kernel of ones, stride 1: sums of 2×2 windows.
    let x = Tensor::arange(1f32, 10., &CPU)
        .unwrap()
        .reshape((1, 1, 3, 3))
        .unwrap();
    let w = Var::ones((1, 1, 2, 2), candle_core::DType::F32, &CPU).unwrap();
    let y = conv2d(&x, w.as_tensor(), 1, 0).unwrap();
    assert_eq!(flat(&y), vec![12.0, 16.0, 24.0, 28.0]);
    // dL/dw for L = sum(y): each tap sums the 4 input pixels it meets.
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        flat(grads.get(w.as_tensor()).unwrap()),
        vec![12.0, 16.0, 24.0, 28.0]
    );
    assert!(grads.get(&x).is_none());
}

#[test]
fn im2col_by_hand_and_its_col2im_backward() {
    // 3×3 image 1..9, 2×2 kernel, stride 1: four patches, row-major.
    let x = Var::from_tensor(
        &Tensor::arange(1f32, 10., &CPU)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap(),
    )
    .unwrap();
    let cols = im2col(x.as_tensor(), (2, 2), 1, 0).unwrap();
    assert_eq!(
        cols.to_vec2::<f32>().unwrap(),
        vec![
            vec![1.0, 2.0, 4.0, 5.0],
            vec![2.0, 3.0, 5.0, 6.0],
            vec![4.0, 5.0, 7.0, 8.0],
            vec![5.0, 6.0, 8.0, 9.0],
        ]
    );
    // col2im of ones counts the patches each pixel belongs to.
    let grads = cols.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        flat(grads.get(x.as_tensor()).unwrap()),
        vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]
    );
    // Padding 1, stride 2: patches at (−1,−1), (−1,1), (1,−1), (1,1); padding reads 0.
    let cols = im2col(x.as_tensor(), (2, 2), 2, 1).unwrap();
    assert_eq!(
        cols.to_vec2::<f32>().unwrap(),
        vec![
            vec![0.0, 0.0, 0.0, 1.0],
            vec![0.0, 0.0, 2.0, 3.0],
            vec![0.0, 4.0, 0.0, 7.0],
            vec![5.0, 6.0, 8.0, 9.0],
        ]
    );
}

#[test]
fn conv_gradient_only_where_tracked_and_twice() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = Var::from_tensor(&rand_tensor(&mut rng, &[2, 2, 5, 5], -1.0, 1.0)).unwrap();
    let w = rand_tensor(&mut rng, &[3, 2, 3, 3], -1.0, 1.0);
    let y = conv2d(x.as_tensor(), &w, 1, 1).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&w).is_none());
    let want = x
        .as_tensor()
        .conv2d(&w, 1, 1, 1, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want = flat(want.get(x.as_tensor()).unwrap());
    assert_close(&flat(grads.get(x.as_tensor()).unwrap()), &want, 1e-4, "dx");
    // A second backward over the same graph recomputes what the first one consumed.
    let wv = Var::from_tensor(&w).unwrap();
    let y = conv2d(x.as_tensor(), wv.as_tensor(), 1, 1).unwrap();
    let loss = y.sum_all().unwrap();
    let first = flat(loss.backward().unwrap().get(wv.as_tensor()).unwrap());
    let second = flat(loss.backward().unwrap().get(wv.as_tensor()).unwrap());
    assert_eq!(first, second);
}

#[test]
fn conv_rejects_bad_shapes() {
    let x = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F32, &CPU).unwrap();
    let w = Tensor::zeros((3, 1, 3, 3), candle_core::DType::F32, &CPU).unwrap();
    assert!(conv2d(&x, &w, 1, 0).is_err());
    let w = Tensor::zeros((3, 2, 5, 5), candle_core::DType::F32, &CPU).unwrap();
    assert!(conv2d(&x, &w, 1, 0).is_err());
    assert!(conv2d(&x, &w, 1, 1).is_ok());
    assert!(conv2d(&x, &w, 0, 1).is_err());
}

// ------------------------------------------------------------------------------------
// Pooling: hand values and finite differences.

#[test]
fn pooling_by_hand() {
    let x = Tensor::arange(0f32, 16., &CPU)
        .unwrap()
        .reshape((1, 1, 4, 4))
        .unwrap();
    assert_eq!(
        flat(&avg_pool2d(&x, 2, 2).unwrap()),
        vec![2.5, 4.5, 10.5, 12.5]
    );
    assert_eq!(
        flat(&max_pool2d(&x, 2, 2).unwrap()),
        vec![5.0, 7.0, 13.0, 15.0]
    );
    // 3×3 windows, stride 1 (window ≠ stride).
    assert_eq!(
        flat(&avg_pool2d(&x, 3, 1).unwrap()),
        vec![5.0, 6.0, 9.0, 10.0]
    );
    assert_eq!(
        flat(&max_pool2d(&x, 3, 1).unwrap()),
        vec![10.0, 11.0, 14.0, 15.0]
    );
    assert!(avg_pool2d(&x, 5, 1).is_err());
    assert!(max_pool2d(&x, 2, 0).is_err());
}

fn pool_fd(max: bool, shape: &[usize], k: usize, s: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    // Distinct values spaced ≥ 0.05 apart so ±h never changes a window's argmax.
    let mut vals: Vec<f32> = (0..n).map(|i| i as f32 * 0.05).collect();
    for i in (1..n).rev() {
        vals.swap(i, rng.random_range(0..=i));
    }
    let pool = |t: &Tensor| {
        if max {
            max_pool2d(t, k, s).unwrap()
        } else {
            avg_pool2d(t, k, s).unwrap()
        }
    };
    let x = Var::new(vals.clone(), &CPU)
        .unwrap()
        .as_tensor()
        .reshape(shape)
        .unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let y = pool(x.as_tensor());
    let g = rand_tensor(&mut rng, y.dims(), -1.0, 1.0);
    let gv = flat(&g);
    let got = flat(
        (&y * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap(),
    );
    let loss = |v: &[f32]| -> f64 {
        let t = Tensor::from_vec(v.to_vec(), shape, &CPU).unwrap();
        flat(&pool(&t))
            .iter()
            .zip(&gv)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    let h = 0.01f32;
    let want: Vec<f32> = (0..n)
        .map(|i| {
            let mut p = vals.clone();
            p[i] += h;
            let mut m = vals.clone();
            m[i] -= h;
            ((loss(&p) - loss(&m)) / (2.0 * h as f64)) as f32
        })
        .collect();
    let what = format!("{} pool {k}/{s} {shape:?}", if max { "max" } else { "avg" });
    assert_close(&got, &want, 2e-3, &what);
}

/// Where candle's average pool is defined (window = stride, dividing H and W), the parallel
/// custom op that replaced it computes the same values and gradients, bit for bit.
#[test]
fn average_pooling_is_candles_where_candle_defines_it() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (shape, k) in [([3, 5, 8, 8], 2), ([2, 3, 9, 6], 3), ([1, 2, 4, 4], 4)] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &shape, -2.0, 2.0)).unwrap();
        let ours = avg_pool2d(x.as_tensor(), k, k).unwrap();
        let theirs = x.as_tensor().avg_pool2d_with_stride(k, k).unwrap();
        assert_eq!(flat(&ours), flat(&theirs), "avg pool {k} {shape:?}");
        let g = rand_tensor(&mut rng, ours.dims(), -1.0, 1.0);
        let grad = |y: &Tensor| {
            let gs = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            flat(gs.get(x.as_tensor()).unwrap())
        };
        assert_eq!(
            grad(&ours),
            grad(&theirs),
            "avg pool gradient {k} {shape:?}"
        );
    }
}

#[test]
fn pooling_gradients_match_finite_differences() {
    for max in [false, true] {
        pool_fd(max, &[2, 2, 4, 4], 2, 2, 1); // window = stride (candle's avg op)
        pool_fd(max, &[1, 2, 7, 7], 2, 2, 2); // stride does not divide 7
        pool_fd(max, &[2, 1, 6, 5], 3, 2, 3); // overlapping windows
        pool_fd(max, &[1, 1, 5, 5], 2, 3, 4); // gaps between windows
    }
}

#[test]
fn max_pool_ties_go_to_first_element() {
    let x = Var::ones((1, 1, 2, 2), candle_core::DType::F32, &CPU).unwrap();
    let y = max_pool2d(x.as_tensor(), 2, 2).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        flat(grads.get(x.as_tensor()).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn malloc_tuning_is_accepted_and_idempotent() {
    assert!(snnc::backend::candle::alloc::tune_malloc());
    assert!(snnc::backend::candle::alloc::tune_malloc());
    // Allocation still works after tuning: a large tensor round-trips.
    let t = Tensor::ones(1 << 24, candle_core::DType::F32, &CPU).unwrap();
    assert_eq!(
        t.sum_all().unwrap().to_scalar::<f32>().unwrap(),
        (1 << 24) as f32
    );
}
