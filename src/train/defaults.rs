//! The one place that decides the defaults of a run: T, batch, learning rate, epochs,
//! balancing. The CLI, the `[train]` TOML table and the examples all fall back to these.
//!
//! The default T of a network is decided once, in [`crate::ir::defaults::timesteps`] (what
//! `snnc show` labels and `snnc estimate` assumes); the T constants here are that value, so
//! `show`, `estimate`, `train` and `eval` agree on the T of a file.

use crate::ir::{defaults as ir_defaults, Method, Network};

/// T of AGD training and evaluation when neither a flag nor the network's `timesteps` says
/// (= [`ir_defaults::timesteps`]`(Agd)`).
pub const TIMESTEPS: usize = ir_defaults::timesteps(Method::Agd);
/// T of STDP training (both phases) and evaluation when neither a flag nor the network's
/// `timesteps` says (= [`ir_defaults::timesteps`]`(Stdp)`).
pub const STDP_TIMESTEPS: usize = ir_defaults::timesteps(Method::Stdp);
/// Conversion: T of `snnc eval` on a converted checkpoint when neither says: the headline T
/// of `snnc train --method conversion`, the largest of [`CONVERSION_TIMESTEPS`]
/// (= [`ir_defaults::timesteps`]`(Conversion)`).
pub const CONVERSION_EVAL_TIMESTEPS: usize = ir_defaults::timesteps(Method::Conversion);
/// Images per training batch.
pub const BATCH: usize = 32;
/// Images per batch of `snnc eval`.
pub const EVAL_BATCH: usize = 100;
pub const EPOCHS: usize = 1;
/// Adam's (and SGD's) learning rate.
pub const LR: f64 = 1e-3;
/// SGD's momentum μ.
pub const MOMENTUM: f64 = 0.9;
pub const WEIGHT_DECAY: f64 = 0.0;
pub const SEED: u64 = 0;
/// Conversion: images presented while balancing thresholds.
pub const BALANCE_IMAGES: usize = 256;
/// Conversion: time steps of each balancing run.
pub const BALANCE_STEPS: usize = 100;
/// Conversion: latencies T at which the converted SNN is evaluated.
pub const CONVERSION_TIMESTEPS: [usize; 4] = ir_defaults::CONVERSION_EVAL_TIMESTEPS;
/// Conversion: images per simulated batch (memory is O(batch), independent of T).
pub const CONVERSION_BATCH: usize = 100;

/// T for `net`: the flag if given, else the network's `timesteps`, else `fallback`.
pub fn timesteps(net: &Network, flag: Option<usize>, fallback: usize) -> usize {
    flag.or(net.settings.timesteps.map(|t| t as usize))
        .unwrap_or(fallback)
}

/// The T `snnc train --method NAME` falls back to when neither `--timesteps` nor the
/// network's `timesteps` says: [`STDP_TIMESTEPS`] for `stdp`, else [`TIMESTEPS`] (AGD and
/// the ANN baseline; conversion evaluates at its own list of T, `CONVERSION_TIMESTEPS`).
pub fn train_timesteps_fallback(method: &str) -> usize {
    if method == "stdp" {
        STDP_TIMESTEPS
    } else {
        TIMESTEPS
    }
}
