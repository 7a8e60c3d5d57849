//! Dense (candle im2col/matmul) vs event-driven accumulation for the layers of the
//! Fashion-MNIST conversion networks, at several input densities.
//!
//! `cargo run --release --example conversion_bench [-- BATCH REPEATS]`
//!
//! Each path is timed as the step runtime runs it: the dense path from the input tensor to
//! the output tensor (candle `conv2d` / `matmul`), the event path from the input's values
//! (borrowed from the tensor, no copy) to the output tensor (`Tensor::from_vec` takes the
//! vector, no copy either).

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use snnc::backend::candle::event::{ConvEvent, FcEvent};

fn random(n: usize, p: f32, rng: &mut rand_chacha::ChaCha8Rng, spikes: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.random::<f32>() < p {
                if spikes {
                    1.0
                } else {
                    rng.random::<f32>() - 0.5
                }
            } else {
                0.0
            }
        })
        .collect()
}

fn time<F: FnMut() -> candle_core::Result<()>>(reps: usize, mut f: F) -> f64 {
    f().expect("warm-up");
    let start = Instant::now();
    for _ in 0..reps {
        f().expect("run");
    }
    start.elapsed().as_secs_f64() * 1000.0 / reps as f64
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let densities = [0.01f32, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0];
    // (name, C, O, H) for 3×3/1 convs with padding 1, as in the VGG conversion nets.
    let convs = [
        ("Conv1 1→32 @28×28", 1usize, 32usize, 28usize, true),
        ("Conv2 32→32 @28×28", 32, 32, 28, true),
        ("Conv3 32→64 @14×14", 32, 64, 14, true),
        // After an average pool the inputs are graded (k/4), not 0/1 spikes: the event
        // kernel multiplies instead of adding (random non-binary values here).
        ("Conv3 32→64 @14×14, graded input", 32, 64, 14, false),
    ];
    println!("batch {batch}, {reps} repeats; times per layer application (ms)");
    println!("| layer | input density | dense ms | event ms | event/dense |");
    println!("|---|---|---|---|---|");
    for (name, c, o, h, spikes) in convs {
        let w = Tensor::from_vec(random(o * c * 9, 1.0, &mut rng, false), (o, c, 3, 3), &dev)?;
        let ev = ConvEvent::new(&w, 1, 1, h, h)?;
        for &p in &densities {
            let x = random(batch * c * h * h, p, &mut rng, spikes);
            let t = Tensor::from_vec(x.clone(), (batch, c, h, h), &dev)?;
            let dense = time(reps, || {
                let _ = t.conv2d(&w, 1, 1, 1, 1)?;
                Ok(())
            });
            let event = time(reps, || {
                let y = ev.forward(&x)?;
                let _ = Tensor::from_vec(y, (batch, o, h, h), &dev)?;
                Ok(())
            });
            println!(
                "| {name} | {p:.2} | {dense:.2} | {event:.2} | {:.2} |",
                event / dense
            );
        }
    }
    let (x_in, y_out) = (3136usize, 256usize);
    let w = Tensor::from_vec(
        random(y_out * x_in, 1.0, &mut rng, false),
        (y_out, x_in),
        &dev,
    )?;
    let ev = FcEvent::new(&w)?;
    for &p in &densities {
        let x = random(batch * x_in, p, &mut rng, false);
        let t = Tensor::from_vec(x.clone(), (batch, x_in), &dev)?;
        let dense = time(reps, || {
            let _ = t.matmul(&w.t()?)?;
            Ok(())
        });
        let event = time(reps, || {
            let y = ev.forward(&x)?;
            let _ = Tensor::from_vec(y, (batch, y_out), &dev)?;
            Ok(())
        });
        println!(
            "| FC1 3136→256 | {p:.2} | {dense:.2} | {event:.2} | {:.2} |",
            event / dense
        );
    }
    Ok(())
}
