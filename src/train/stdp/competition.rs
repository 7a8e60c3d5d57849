//! Competition, so that the kernels of a layer learn different features ([15], [14], [25]):
//!
//! - winner-take-all across feature maps at a position: of the maps that spiked at one
//!   (image, position) in a step, only the one with the largest input current learns (lateral
//!   inhibition of learning; the forward run is not changed: observers never change a run);
//! - uniform threshold adaptation: after each mini-batch, each threshold slot of the layer
//!   moves by `gain · (rate − target)`: up when the layer fires more than the target rate,
//!   down when it is quieter (one threshold per slot, shared by all its neurons: uniform);
//! - dropout: each kernel sits out a step's update with probability `p`.
//!
//! Owner: the STDP helper (`train::stdp`). Invariants: thresholds stay ≥ `min_threshold`
//! (> 0); nothing here panics on bad lengths (mismatches are errors).

use rand::Rng;

use crate::backend::candle::encode::SeededRng;

/// Winner-take-all across the `maps` feature maps of `[batch, maps, positions]` spikes: at
/// each (b, position), only the spiking map with the largest `current` keeps its spike
/// (the first one on ties). Returns the learning spikes, same layout.
pub fn winner_take_all(
    spikes: &[f32],
    current: &[f32],
    batch: usize,
    maps: usize,
    positions: usize,
) -> Result<Vec<f32>, String> {
    let n = batch * maps * positions;
    if spikes.len() != n || current.len() != n {
        return Err(format!(
            "winner-take-all over {batch}×{maps}×{positions} got {} spikes and {} currents",
            spikes.len(),
            current.len()
        ));
    }
    let mut out = vec![0.0; n];
    for b in 0..batch {
        for p in 0..positions {
            let mut best: Option<(usize, f32)> = None;
            for m in 0..maps {
                let i = (b * maps + m) * positions + p;
                if spikes[i] > 0.0 && best.is_none_or(|(_, c)| current[i] > c) {
                    best = Some((i, current[i]));
                }
            }
            if let Some((i, _)) = best {
                out[i] = 1.0;
            }
        }
    }
    Ok(out)
}

/// Uniform threshold adaptation: θ ← max(θ_min, θ + gain · (rate − target)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdAdaptation {
    /// The spike rate (spikes per neuron per step) a layer is steered to.
    pub target_rate: f32,
    /// Threshold change per unit of rate error, per mini-batch (0 turns adaptation off).
    pub gain: f32,
    /// The lowest threshold adaptation may set (> 0).
    pub min_threshold: f32,
}

impl Default for ThresholdAdaptation {
    /// target 0.05: a few spikes per neuron over T = 20–50, sparse enough for the maps to
    /// compete and dense enough for k > 0 updates per presentation; gain 2: a layer firing
    /// at 0.15 (3× target) raises its threshold by 0.2 per mini-batch, settling within tens
    /// of mini-batches; θ_min 0.05 keeps the IF neuron meaningful.
    fn default() -> Self {
        ThresholdAdaptation {
            target_rate: 0.05,
            gain: 2.0,
            min_threshold: 0.05,
        }
    }
}

impl ThresholdAdaptation {
    /// The adapted threshold of a slot that fired at `rate` (spikes per neuron per step).
    pub fn adapt(&self, threshold: f32, rate: f32) -> f32 {
        (threshold + self.gain * (rate - self.target_rate)).max(self.min_threshold)
    }

    /// Checks 0 ≤ target ≤ 1, gain ≥ 0, θ_min > 0, all finite.
    pub fn validate(&self) -> Result<(), String> {
        let ok = (0.0..=1.0).contains(&self.target_rate)
            && self.gain.is_finite()
            && self.gain >= 0.0
            && self.min_threshold.is_finite()
            && self.min_threshold > 0.0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "threshold adaptation needs 0 ≤ target ≤ 1, gain ≥ 0 and a positive minimum \
                 (got target {}, gain {}, minimum {})",
                self.target_rate, self.gain, self.min_threshold
            ))
        }
    }
}

/// Which of `maps` kernels learn this step: each is dropped with probability `p`.
pub fn kernel_dropout(p: f32, maps: usize, rng: &mut SeededRng) -> Vec<bool> {
    if p <= 0.0 {
        return vec![true; maps];
    }
    (0..maps).map(|_| rng.0.random::<f32>() >= p).collect()
}
