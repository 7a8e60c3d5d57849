//! Lowering onto candle tensors and the runtime: one file per layer type, the spiking
//! neurons (a fused scan over T with a hand-written backward, and the single-step update),
//! input encoders and classifiers, and the executable network every training method shares,
//! with its two ways to run:
//!
//! - `model`: the lowered network, batched over T (`Model::forward`: training, AGD, the ANN);
//! - `step`: the same network step by step with IF neurons (`step::Simulator`: conversion's
//!   balancing and evaluation, STDP), memory independent of T, dense or event-driven layers;
//! - `observe`: the hooks both call per layer application (and per step), the
//!   `Observer` trait that spike counts, maximum inputs and traces implement.

pub mod alloc;
pub mod classifier;
pub mod conv;
mod conv_events;
pub mod encode;
pub mod event;
pub mod linear;
pub mod model;
pub mod netbuild;
pub mod neuron;
pub mod observe;
pub mod pool;
mod sgemm;
pub mod step;

/// A runtime failure with a message (shape, size or state problems the IR did not rule out).
pub(crate) fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// A size from the IR (u64) as a `usize`, or an error on a machine where it does not fit.
pub(crate) fn usize_of(v: u64) -> candle_core::Result<usize> {
    usize::try_from(v).map_err(|_| err(format!("size {v} does not fit this machine")))
}
