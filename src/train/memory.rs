//! Memory bound of a training or evaluation step, checked before anything is allocated
//! (issue 11.4).
//!
//! Owner: the driver calls [`check`] before the first batch of training and of evaluation.
//! Invariants: the estimate is computed in saturating u64 arithmetic from shapes alone (no
//! tensor is built), and a step whose estimate exceeds the memory the OS reports as
//! available is refused with [`TrainError::Memory`] (exit 1) naming the size and the remedy.
//!
//! The estimate: the batched model keeps every layer application of all T steps for
//! backpropagation through time, so one step holds Σ over nodes of
//! `T·B·features·4` bytes (f32; `T = 1` for ANN-domain nodes). Training multiplies this by
//! [`TRAIN_FACTOR`] (the gradient of every activation, the surrogate derivative and the
//! membrane/reset temporaries of each spiking node); evaluation by [`EVAL_FACTOR`]
//! (the activations and one temporary per op).
//!
//! Conversion's step-by-step simulator (`backend::candle::step`) holds one time step at a
//! time, never T: per node its output and, for a spiking node, its membrane potential, plus
//! the input current being integrated, so [`simulation_bytes`] = Σ over nodes of
//! `batch·features·4·`[`SIM_FACTOR`]; conversion checks it ([`check_simulation`]) before the
//! simulator runs, in `snnc train --method conversion` and in `snnc eval` of its checkpoints.

use crate::ir::{Domain, Network};
use crate::train::error::TrainError;

/// Bytes of one activation element (f32).
pub const BYTES_PER_ELEMENT: u64 = 4;
/// Multiplier of the activation bytes in a training step (activations, their gradients and
/// temporaries of the surrogate gradient).
pub const TRAIN_FACTOR: u64 = 4;
/// Multiplier of the activation bytes in an evaluation step (activations and temporaries).
pub const EVAL_FACTOR: u64 = 2;

/// Multiplier of the one-step activation bytes in conversion's simulator (the output, the
/// membrane potential and the input current of each node).
pub const SIM_FACTOR: u64 = 3;

/// The estimated bytes of conversion's step-by-step simulator over a batch of `batch`
/// images: Σ over nodes of `batch·features·4·`[`SIM_FACTOR`], whatever T (the simulator keeps
/// one step). Saturates at `u64::MAX`.
pub fn simulation_bytes(net: &Network, batch: usize) -> u64 {
    let b = batch.max(1) as u64;
    net.graph
        .node_weights()
        .map(|n| {
            n.out_shape
                .and_then(|s| s.features())
                .unwrap_or(0)
                .saturating_mul(b)
        })
        .fold(0u64, u64::saturating_add)
        .saturating_mul(BYTES_PER_ELEMENT)
        .saturating_mul(SIM_FACTOR)
}

/// Refuses a simulation that needs more than `available` bytes (see [`simulation_bytes`]),
/// with [`TrainError::Memory`] (T reported as 1: the simulator holds one step); `None` skips
/// the check.
pub fn check_simulation_against(
    net: &Network,
    batch: usize,
    available: Option<u64>,
) -> Result<(), TrainError> {
    let Some(available) = available else {
        return Ok(());
    };
    let need = simulation_bytes(net, batch);
    if need > available {
        return Err(TrainError::Memory {
            what: "conversion simulation".into(),
            need: gib(need),
            available: gib(available),
            batch,
            timesteps: 1,
        });
    }
    Ok(())
}

/// [`check_simulation_against`] the machine's available memory ([`available_bytes`]).
pub fn check_simulation(net: &Network, batch: usize) -> Result<(), TrainError> {
    check_simulation_against(net, batch, available_bytes())
}

/// The estimated bytes of one step over a batch of `batch` images for `timesteps` steps:
/// Σ over nodes of `steps·batch·features·4`, times [`TRAIN_FACTOR`] when `training`, else
/// [`EVAL_FACTOR`]. Saturates at `u64::MAX`; nodes without a known shape count 0.
pub fn step_bytes(net: &Network, batch: usize, timesteps: usize, training: bool) -> u64 {
    let t = timesteps.max(1) as u64;
    let b = batch.max(1) as u64;
    let elements = net
        .graph
        .node_weights()
        .map(|n| {
            let per = n.out_shape.and_then(|s| s.features()).unwrap_or(0);
            let steps = if n.domain == Some(Domain::Snn) { t } else { 1 };
            per.saturating_mul(steps).saturating_mul(b)
        })
        .fold(0u64, u64::saturating_add);
    let factor = if training { TRAIN_FACTOR } else { EVAL_FACTOR };
    elements
        .saturating_mul(BYTES_PER_ELEMENT)
        .saturating_mul(factor)
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux); `None` where it cannot be read.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

/// The `MemAvailable:` line of a `/proc/meminfo` text, in bytes (the file gives kB).
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Refuses a step that needs more than `available` bytes (see [`step_bytes`]); `None` (not
/// Linux, or unreadable) skips the check.
pub fn check_against(
    net: &Network,
    batch: usize,
    timesteps: usize,
    training: bool,
    available: Option<u64>,
) -> Result<(), TrainError> {
    let Some(available) = available else {
        return Ok(());
    };
    let need = step_bytes(net, batch, timesteps, training);
    if need > available {
        return Err(TrainError::Memory {
            what: if training { "training" } else { "evaluation" }.into(),
            need: gib(need),
            available: gib(available),
            batch,
            timesteps,
        });
    }
    Ok(())
}

/// [`check_against`] the machine's available memory ([`available_bytes`]).
pub fn check(
    net: &Network,
    batch: usize,
    timesteps: usize,
    training: bool,
) -> Result<(), TrainError> {
    check_against(net, batch, timesteps, training, available_bytes())
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
