//! The values a network file may leave out that depend on how it is run: decided here,
//! once, for every command (`show` prints them, `train`/`eval`/`estimate` use them).
//! Owner: the front end. Invariant: each value is what `snnc train` actually runs with.

use super::Method;

/// The time steps T (≥ 1) a network that writes no `timesteps` is run with, by method:
///
/// - AGD (and the ANN baseline, trained on the same file): **10**, what `snnc train` and
///   `snnc eval` use.
/// - conversion: **500**, the largest of [`CONVERSION_EVAL_TIMESTEPS`]; conversion evaluates
///   the SNN at each of those T and reports the largest as its headline T.
/// - STDP: **100** (snnc has no STDP trainer yet; this is the T that `show` and `estimate`
///   assume, the paper's latency for its STDP tables).
pub const fn timesteps(method: Method) -> usize {
    match method {
        Method::Agd => 10,
        Method::Conversion => CONVERSION_EVAL_TIMESTEPS[CONVERSION_EVAL_TIMESTEPS.len() - 1],
        Method::Stdp => 100,
    }
}

/// The T at which a converted SNN is evaluated by default (`snnc train --method conversion`
/// without `--eval-timesteps`), ascending.
pub const CONVERSION_EVAL_TIMESTEPS: [usize; 4] = [50, 100, 250, 500];
