//! Issue 11.9: every layer kind that `check` accepts for conversion converts with a loss that
//! shrinks as T grows (the refused kind, max pooling of spikes, is tested in
//! `tests/convertible.rs`).
//!
//! The conversion loss at T: the mean over images of 1 − cos(SNN logits averaged over the
//! first T steps, ANN logits). The networks have no biases (as in the paper), so with
//! reset by subtraction each IF layer's rate is its ReLU activation divided by the product
//! of the balanced thresholds up to it: the SNN's logits tend to a positive multiple of the
//! ANN's, and the cosine loss tends to 0 as T grows (the rate error is O(1/T) per layer).
//!
//! Owner: conversion tests. Invariants: direct-coded 1×8×8 inputs (no random draws), random
//! Kaiming-initialised weights from fixed seeds, thresholds balanced by `Balance::MaxInput`.

use candle_core::Device;
use snnc::backend::candle::model::rng_for;
use snnc::backend::candle::model::Model;
use snnc::data::Split;
use snnc::ir::Reset;
use snnc::train::conversion::{balance, ConversionConfig, RunSpec, Simulator, SplitImages};

type R = Result<(), Box<dyn std::error::Error>>;

/// `n` deterministic 1×8×8 images with values in [0, 1).
fn images(n: usize) -> Split {
    let images = (0..n * 64)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0)
        .collect();
    Split {
        images,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

/// 1 − cos between rows of `a` and `b` (`[B, K]`), averaged over rows.
fn cosine_loss(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (a.to_vec2()?, b.to_vec2()?);
    let mut sum = 0f64;
    for (x, y) in a.iter().zip(&b) {
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| (*p as f64) * (*q as f64))
            .sum();
        let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
        // A silent SNN output (all zero) is as far from the ANN as orthogonal.
        sum += if nx == 0.0 || ny == 0.0 {
            1.0
        } else {
            1.0 - dot / (nx * ny)
        };
    }
    Ok(sum / a.len().max(1) as f64)
}

/// The conversion loss of `src` at T = 8 and T = 64 on 16 images.
fn losses(src: &str) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let net = snnc::compile(src)
        .map_err(|d| format!("{:?}", d.codes()))?
        .networks
        .remove(0);
    let model = Model::new(&net, &Device::Cpu, 3)?;
    let data = images(16);
    let imgs = SplitImages::new(&data, [1, 8, 8]);
    let mut sim = Simulator::new(&model, Reset::Subtract, Default::default())?;
    let cfg = ConversionConfig {
        balance_images: 16,
        balance_steps: 16,
        batch: 16,
        ..ConversionConfig::default()
    };
    balance(&mut sim, &imgs, &cfg)?;
    let idx: Vec<usize> = (0..16).collect();
    let (x, _) = snnc::train::driver::batch_tensors(&data, [1, 8, 8], &idx, &Device::Cpu)?;
    let mut rng = rng_for(0, 0);
    rng.set_images(idx.iter().copied());
    let run = |ann: bool, checkpoints: Vec<usize>, rng: &mut _| {
        sim.run(
            &x,
            &RunSpec {
                ann,
                checkpoints,
                stop: None,
                collect: None,
            },
            rng,
        )
    };
    let ann = run(true, vec![1], &mut rng)?;
    let snn = run(false, vec![8, 64], &mut rng)?;
    Ok((
        cosine_loss(&snn.logits[0], &ann.logits[0])?,
        cosine_loss(&snn.logits[1], &ann.logits[0])?,
    ))
}

fn assert_shrinks(kind: &str, src: &str) -> R {
    let (t8, t64) = losses(src)?;
    assert!(t8.is_finite() && t64.is_finite(), "{kind}: {t8} {t64}");
    // 8× the steps: the O(1/T) rate error shrinks the loss well below a quarter (measured
    // ratios are 10 to 300 on these networks).
    assert!(
        t64 < t8 / 4.0,
        "{kind}: loss at T = 64 ({t64}) is not below a quarter of T = 8's ({t8})"
    );
    Ok(())
}

#[test]
fn fc_layers_convert_with_a_shrinking_loss() -> R {
    assert_shrinks(
        "FC",
        "network F {\n input 1x8x8\n encode direct\n method conversion\n \
         FC1(64,32) IF\n FC2(32,16) IF\n FC3(16,10)\n}",
    )
}

#[test]
fn conv_and_average_pools_convert_with_a_shrinking_loss() -> R {
    assert_shrinks(
        "Conv + AvgPool + Pool",
        "network C {\n input 1x8x8\n encode direct\n method conversion\n \
         Conv1(1,4,3x3/1) IF\n AvgPool(2x2/2)\n Conv2(4,8,3x3/1) IF\n Pool(2x2/2)\n \
         FC1(32,10)\n}",
    )
}

#[test]
fn backres_repeats_convert_with_a_shrinking_loss() -> R {
    assert_shrinks(
        "BackRes x2",
        "network B {\n input 1x8x8\n encode direct\n method conversion\n \
         Conv1(1,4,3x3/1) IF\n Conv2(4,4,3x3/1) IF x2\n AvgPool(2x2/2)\n FC1(64,10)\n}",
    )
}

#[test]
fn add_skips_convert_with_a_shrinking_loss() -> R {
    assert_shrinks(
        "skip add",
        "network S {\n input 1x8x8\n encode direct\n method conversion\n \
         Conv1(1,4,3x3/1) IF\n Conv2(4,4,3x3/1) IF\n Conv3(4,4,3x3/1) IF\n AvgPool(2x2/2)\n \
         FC1(64,10)\n skip Conv1 -> Conv3 add\n}",
    )
}
