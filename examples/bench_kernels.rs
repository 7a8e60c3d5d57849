//! Micro-benchmark of the numeric core (run in release mode):
//! `cargo run --release --example bench_kernels [reps]`.
//!
//! 1. The fused LIF scan against the unfused reference, forward + backward, on the sizes of
//!    the MNIST benchmark network at T = 10, B = 32.
//! 2. im2col convolution against candle's `conv2d`, forward and forward + backward, on
//!    1→32 28×28 and 32→64 14×14 at N = T·B = 320, and 64→64 32×32 at N = 32.
//!
//! The allocator is tuned with `alloc::tune_malloc` unless `--system-malloc` is given.
//! `network` as an argument runs only the whole-network step (`network-im2col`: without
//! the candle-conv2d comparison).
//! `fused` as an argument runs only the fused spiking convolutions (`conv2d_lif_infer`, and
//! `conv2d_lif` forward + backward, max-pooled) on the network's two layers with 0/1 inputs.
//! `events` as an argument runs only the second layer's inference (32→64 14×14, N = 320,
//! T = 10) on average-pooled spikes at several spike rates, event path against im2col + gemm,
//! to find the density below which the event path is faster.
//! Each timing is the median of `reps` runs (default 3) after one warm-up run.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use snnc::backend::candle::alloc::tune_malloc;
use snnc::backend::candle::conv::{
    conv2d_im2col, conv2d_lif, conv2d_lif_infer, force_dense_events, force_im2col, SpikePool,
};
use snnc::backend::candle::neuron::{lif_scan, lif_scan_reference, lif_scan_steps, NeuronParams};
use snnc::backend::candle::pool::avg_pool2d;
use snnc::ir::Reset;

fn median_secs(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

fn scan_case(name: &str, dims: &[usize], reps: usize) -> Result<()> {
    let cpu = Device::Cpu;
    let p = NeuronParams {
        leak: 0.95,
        threshold: 1.0,
        reset: Reset::Subtract,
        gamma: 0.3,
    };
    let x = Var::from_tensor(&Tensor::rand(-0.5f32, 1.5, dims, &cpu)?)?;
    let g = Tensor::rand(-1f32, 1., dims, &cpu)?;
    let run = |fused: bool| -> Result<()> {
        let s = if fused {
            lif_scan(x.as_tensor(), &p)?
        } else {
            lif_scan_reference(x.as_tensor(), &p)?
        };
        let grads = (s * &g)?.sum_all()?.backward()?;
        grads
            .get(x.as_tensor())
            .map(|_| ())
            .ok_or_else(|| candle_core::Error::Msg("no gradient for the scan input".into()).bt())
    };
    // What the loss and candle's backward cost around any op (an affine in place of the scan).
    let overhead = median_secs(reps, || {
        let s = x.as_tensor().affine(1.0, 0.0)?;
        (s * &g)?.sum_all()?.backward().map(|_| ())
    })?;
    // The fused backward kernel alone, through the op's own backward on a fresh graph
    // whose loss is a plain sum (no upstream multiply).
    let bwd_only = median_secs(reps, || {
        let s = lif_scan(x.as_tensor(), &p)?;
        s.sum_all()?.backward().map(|_| ())
    })?;
    let fwd_fused = median_secs(reps, || lif_scan(x.as_tensor(), &p).map(|_| ()))?;
    let fwd_ref = median_secs(reps, || lif_scan_reference(x.as_tensor(), &p).map(|_| ()))?;
    let fused = median_secs(reps, || run(true))?;
    let reference = median_secs(reps, || run(false))?;
    println!(
        "scan {name:<6} {dims:?}: fwd fused {:7.1} ms ref {:7.1} ms ({:4.1}x) | fwd+bwd fused {:7.1} ms ref {:7.1} ms ({:4.1}x)",
        fwd_fused * 1e3,
        fwd_ref * 1e3,
        fwd_ref / fwd_fused,
        fused * 1e3,
        reference * 1e3,
        reference / fused
    );
    println!(
        "            loss+backward around an affine: {:7.1} ms; fused fwd+bwd with a plain sum loss: {:7.1} ms",
        overhead * 1e3,
        bwd_only * 1e3
    );
    Ok(())
}

fn conv_case(n: usize, c: usize, hw: usize, o: usize, input_grad: bool, reps: usize) -> Result<()> {
    let cpu = Device::Cpu;
    let x = Var::from_tensor(&Tensor::rand(0f32, 1., (n, c, hw, hw), &cpu)?)?;
    let w = Var::from_tensor(&Tensor::rand(-0.1f32, 0.1, (o, c, 3, 3), &cpu)?)?;
    // Without an input gradient the input is a plain tensor, as the network's image is.
    let xin = if input_grad {
        x.as_tensor().clone()
    } else {
        x.as_tensor().detach()
    };
    let g = Tensor::rand(-1f32, 1., (n, o, hw, hw), &cpu)?;
    let run = |ours: bool, bwd: bool| -> Result<()> {
        let y = if ours {
            conv2d_im2col(&xin, w.as_tensor(), 1, 1)?
        } else {
            xin.conv2d(w.as_tensor(), 1, 1, 1, 1)?
        };
        if bwd {
            let grads = (y * &g)?.sum_all()?.backward()?;
            if grads.get(w.as_tensor()).is_none() {
                candle_core::bail!("no weight gradient")
            }
        }
        Ok(())
    };
    let f_c = median_secs(reps, || run(false, false))?;
    let f_o = median_secs(reps, || run(true, false))?;
    let b_c = median_secs(reps, || run(false, true))?;
    let b_o = median_secs(reps, || run(true, true))?;
    println!(
        "conv {c:>2}->{o:<2} {hw}x{hw} N={n:<3} dx={input_grad:<5}: fwd candle {:7.1} ms im2col {:7.1} ms ({:4.2}x) | fwd+bwd candle {:8.1} ms im2col {:7.1} ms ({:4.2}x)",
        f_c * 1e3,
        f_o * 1e3,
        f_c / f_o,
        b_c * 1e3,
        b_o * 1e3,
        b_c / b_o
    );
    Ok(())
}

fn pool_case(reps: usize) -> Result<()> {
    let cpu = Device::Cpu;
    let x = Var::from_tensor(&Tensor::rand(0f32, 1., (320, 32, 28, 28), &cpu)?)?;
    let t = median_secs(reps, || {
        let y = avg_pool2d(x.as_tensor(), 2, 2)?;
        y.sum_all()?.backward().map(|_| ())
    })?;
    println!("avg_pool2d 2x2/2 [320,32,28,28] fwd+bwd {:.1} ms", t * 1e3);
    Ok(())
}

/// One training step's forward + backward of the benchmark network
/// `Conv1(1,32,3x3/1) LIF; Pool(2x2/2); Conv2(32,64,3x3/1) LIF; Pool(2x2/2); FC1(3136,256) LIF;
/// FC2(256,10)` at B = 32, T = 10 (direct input currents, mean logits over T, cross-entropy),
/// lowered the way the runtime is meant to: every layer on `[T·B, ...]` at once.
fn network_case(reps: usize, candle_conv: bool) -> Result<()> {
    let cpu = Device::Cpu;
    let (t, b) = (10usize, 32usize);
    let p = NeuronParams {
        leak: 0.95,
        threshold: 1.0,
        reset: Reset::Subtract,
        gamma: 0.3,
    };
    let img = Tensor::rand(0f32, 1., (b, 1, 28, 28), &cpu)?;
    let x = img
        .unsqueeze(0)?
        .repeat((t, 1, 1, 1, 1))?
        .reshape((t * b, 1, 28, 28))?;
    let labels = Tensor::from_vec((0..b as u32).map(|i| i % 10).collect(), b, &cpu)?;
    let w1 = Var::from_tensor(&(Tensor::randn(0f32, 1., (32, 1, 3, 3), &cpu)? / 3.0)?)?;
    let w2 = Var::from_tensor(&(Tensor::randn(0f32, 1., (64, 32, 3, 3), &cpu)? / 17.0)?)?;
    let f1 = Var::from_tensor(&(Tensor::randn(0f32, 1., (256, 3136), &cpu)? / 56.0)?)?;
    let f2 = Var::from_tensor(&(Tensor::randn(0f32, 1., (10, 256), &cpu)? / 16.0)?)?;
    let lif = |y: &Tensor| lif_scan_steps(y, t, &p);
    let conv = |x: &Tensor, w: &Var| -> Result<Tensor> {
        if candle_conv {
            x.conv2d(w.as_tensor(), 1, 1, 1, 1)
        } else {
            conv2d_im2col(x, w.as_tensor(), 1, 1)
        }
    };
    let step = || -> Result<()> {
        let h = lif(&conv(&x, &w1)?)?;
        let h = avg_pool2d(&h, 2, 2)?;
        let h = lif(&conv(&h, &w2)?)?;
        let h = avg_pool2d(&h, 2, 2)?.reshape((t * b, 3136))?;
        let h = lif(&h.matmul(&f1.as_tensor().t()?)?)?;
        let logits = h
            .matmul(&f2.as_tensor().t()?)?
            .reshape((t, b, 10))?
            .mean(0)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        let grads = loss.backward()?;
        if grads.get(w1.as_tensor()).is_none() {
            candle_core::bail!("no gradient reached Conv1")
        }
        Ok(())
    };
    let secs = median_secs(reps, step)?;
    let which = if candle_conv {
        "candle conv2d"
    } else {
        "im2col conv"
    };
    println!(
        "network step (fwd+bwd, B=32, T=10, {which}): {:.1} ms",
        secs * 1e3
    );
    Ok(())
}

/// The fused spiking convolution of a layer of the Fashion-MNIST network at T = 10, B = 32:
/// inputs 0/1 at `density`, then a 2×2 max pool; inference alone, then forward + backward,
/// each on the layer's own path and with im2col + gemm forced, calls alternating, medians.
/// The neuron the fused-convolution benchmarks run (LIF, leak 0.99, threshold 1).
fn fused_lif() -> NeuronParams {
    NeuronParams {
        leak: 0.99,
        threshold: 1.0,
        reset: Reset::Subtract,
        gamma: 0.3,
    }
}

fn fused_case(c: usize, hw: usize, o: usize, density: f32, reps: usize) -> Result<()> {
    let cpu = Device::Cpu;
    let (t, n) = (10, 320);
    let p = fused_lif();
    let pool = Some(SpikePool {
        max: true,
        k: 2,
        s: 2,
    });
    let x = Tensor::rand(0f32, 1., (n, c, hw, hw), &cpu)?
        .lt(density as f64)?
        .to_dtype(candle_core::DType::F32)?;
    // The network's first layer reads the input image, which needs no gradient.
    let x = if c == 1 {
        x
    } else {
        Var::from_tensor(&x)?.as_tensor().clone()
    };
    let scale = (2.0 / (9.0 * c as f64)).sqrt();
    let w = Var::from_tensor(&(Tensor::randn(0f32, 1., (o, c, 3, 3), &cpu)? * scale)?)?;
    let infer = || conv2d_lif_infer(&x, w.as_tensor(), (1, 1), t, &p, pool).map(|_| ());
    let train = || -> Result<()> {
        let s = conv2d_lif(&x, w.as_tensor(), (1, 1), t, &p, pool)?;
        s.sum_all()?.backward().map(|_| ())
    };
    // [own inference, forced inference, own training, forced training]
    let mut times: [Vec<f64>; 4] = Default::default();
    for rep in 0..=reps {
        for (i, forced) in [(0, false), (1, true), (2, false), (3, true)] {
            force_im2col(forced);
            let t0 = Instant::now();
            if i < 2 {
                infer()?
            } else {
                train()?
            }
            if rep > 0 {
                times[i].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    force_im2col(false);
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let [a, b, c2, d] = times.each_mut().map(med);
    println!(
        "fused {c}->{o} {hw}x{hw} N={n} density {density}: inference {a:.2} ms (im2col+gemm {b:.2}), forward+backward {c2:.2} ms (im2col+gemm {d:.2})"
    );
    Ok(())
}

/// The fused 32→64 layer's inference on 2×2 average-pooled spikes of `rate`: event path
/// against im2col + gemm, with the pooled input's non-zero fraction.
fn events_case(rate: f32, reps: usize) -> Result<()> {
    let cpu = Device::Cpu;
    let (t, n) = (10, 320);
    let p = fused_lif();
    let spikes = Tensor::rand(0f32, 1., (n, 32, 28, 28), &cpu)?
        .lt(rate as f64)?
        .to_dtype(candle_core::DType::F32)?;
    let x = avg_pool2d(&spikes, 2, 2)?;
    let nz = x
        .ne(0f32)?
        .to_dtype(candle_core::DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    let scale = (2.0 / (9.0 * 32.0f64)).sqrt();
    let w = (Tensor::randn(0f32, 1., (64, 32, 3, 3), &cpu)? * scale)?;
    let pool = Some(SpikePool {
        max: false,
        k: 2,
        s: 2,
    });
    let mut times: [Vec<f64>; 2] = Default::default();
    for rep in 0..=reps {
        for (i, dense) in [(0, false), (1, true)] {
            force_dense_events(dense);
            let t0 = Instant::now();
            conv2d_lif_infer(&x, &w, (1, 1), t, &p, pool)?;
            if rep > 0 {
                times[i].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    force_dense_events(false);
    let [a, b] = times.each_mut().map(|v| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    });
    println!(
        "events 32->64 14x14 N={n}: spike rate {rate}, pooled non-zero {nz:.3}: event path {a:.2} ms, im2col+gemm {b:.2} ms, ratio {:.2}",
        b / a
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = args.iter().find_map(|s| s.parse().ok()).unwrap_or(3usize);
    let tuned = !args.iter().any(|a| a == "--system-malloc") && tune_malloc();
    println!(
        "threads: {}, reps: {reps} (median), malloc tuned: {tuned}",
        rayon::current_num_threads()
    );
    if args.iter().any(|a| a == "network-im2col") {
        return network_case(reps, false);
    }
    if args.iter().any(|a| a == "events") {
        for rate in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4] {
            events_case(rate, reps)?;
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "fused") {
        fused_case(1, 28, 32, 0.3, reps)?;
        if args.iter().any(|a| a == "conv1") {
            return Ok(());
        }
        return fused_case(32, 14, 64, 0.4, reps);
    }
    if args.iter().any(|a| a == "network") {
        network_case(reps, false)?;
        return network_case(reps, true);
    }
    let (t, b) = (10, 32);
    scan_case("conv1", &[t, b * 32 * 28 * 28], reps)?;
    scan_case("conv2", &[t, b * 64 * 14 * 14], reps)?;
    scan_case("fc1", &[t, b * 256], reps)?;
    conv_case(t * b, 1, 28, 32, false, reps)?;
    conv_case(t * b, 32, 14, 64, true, reps)?;
    conv_case(32, 64, 32, 64, true, reps)?;
    pool_case(reps)?;
    network_case(reps, false)?;
    network_case(reps, true)
}
