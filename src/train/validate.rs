//! Checks of a run's settings against the chosen method, before anything is trained
//! (issue 12.2: a setting that does nothing in the chosen mode is never silent; issue 13.8:
//! `--epochs 0` is refused).
//!
//! Owner: the training CLI. Invariant: every setting the user gave (as a flag or in the
//! `[train]` table of `--config`) either changes the run, or [`check`] returns a
//! [`Warning`] naming it, or [`check`] refuses the run with a [`TrainError::Config`]
//! (`snnc::train::config`, exit 2). The rule, per setting:
//!
//! | setting | ignored when | outcome |
//! |---|---|---|
//! | `--epochs 0` | always (nothing would be trained or written) | error |
//! | `--timesteps` | `--method conversion` (no T of the run is set by it) | error, pointing at `--eval-timesteps` |
//! | `--timesteps`, the network's `timesteps` | `--method ann` (an ANN runs T = 1) | warning |
//! | `--momentum` | `--optimizer adam` (Adam has no momentum setting) | warning |
//! | `--balance`, `--balance-images`, `--balance-steps`, `--reset`, `--eval-timesteps` | a method other than conversion | warning |
//! | `--balance-steps` | `--balance percentile` (balances on one ANN pass) | warning |

use crate::ir::Network;
use crate::train::conversion::Balance;
use crate::train::driver::{OptimizerKind, TrainConfig};
use crate::train::error::TrainError;

/// The code every [`Warning`] is printed with.
pub const IGNORED_FLAG: &str = "snnc::train::ignored_flag";

/// Which settings the user gave (a flag, or its key in `--config`), as opposed to defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    pub timesteps: bool,
    pub momentum: bool,
    pub balance: bool,
    pub balance_images: bool,
    pub balance_steps: bool,
    pub reset: bool,
    pub eval_timesteps: bool,
}

/// A setting the run does not use: the flag and why. Printed as
/// `warning: <message> [snnc::train::ignored_flag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag, as written on the command line (`--momentum`).
    pub flag: &'static str,
    /// The whole sentence: which flag, and why it has no effect.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "warning: {} [{IGNORED_FLAG}]", self.message)
    }
}

/// Checks `cfg` (resolved for `net`) given which settings the user wrote. Returns the
/// warnings to print, in a fixed order, or the error that refuses the run.
///
/// Errors: [`TrainError::Config`] (exit 2) for `epochs == 0` and for `--timesteps` with
/// `--method conversion`.
pub fn check(cfg: &TrainConfig, net: &Network, given: &Given) -> Result<Vec<Warning>, TrainError> {
    if cfg.epochs == 0 {
        return Err(TrainError::Config(
            "--epochs must be at least 1 (0 epochs would train nothing and write no weights)"
                .into(),
        ));
    }
    let method = cfg.method.name();
    let conversion = method == "conversion";
    if conversion && given.timesteps {
        return Err(TrainError::Config(format!(
            "--timesteps {} sets no T of a conversion run: its ANN trains at T = 1 and the SNN \
             is evaluated at --eval-timesteps (default: the network's `timesteps`, else {}); \
             pass --eval-timesteps instead",
            cfg.timesteps,
            join(&crate::ir::defaults::CONVERSION_EVAL_TIMESTEPS),
        )));
    }
    let mut out = Vec::new();
    let mut warn = |flag: &'static str, message: String| out.push(Warning { flag, message });
    if given.momentum && cfg.optimizer == OptimizerKind::Adam {
        warn(
            "--momentum",
            "--momentum is ignored: Adam has no momentum setting (it applies to --optimizer sgd)"
                .into(),
        );
    }
    if method == "ann" {
        if given.timesteps {
            warn(
                "--timesteps",
                format!(
                    "--timesteps {} is ignored: --method ann runs T = 1",
                    cfg.timesteps
                ),
            );
        } else if let Some(t) = net.settings.timesteps {
            warn(
                "--timesteps",
                format!(
                    "network `{}` sets `timesteps {t}`, which --method ann ignores: an ANN runs \
                     T = 1",
                    net.name
                ),
            );
        }
    }
    if !conversion {
        for (on, flag) in [
            (given.balance, "--balance"),
            (given.balance_images, "--balance-images"),
            (given.balance_steps, "--balance-steps"),
            (given.reset, "--reset"),
            (given.eval_timesteps, "--eval-timesteps"),
        ] {
            if on {
                warn(
                    flag,
                    format!("{flag} is ignored: only --method conversion uses it, not {method}"),
                );
            }
        }
    } else if given.balance_steps && matches!(cfg.conversion.balance, Balance::Percentile(_)) {
        warn(
            "--balance-steps",
            "--balance-steps is ignored: percentile balancing reads one pass of the ANN and has \
             no time steps (only --balance max uses it)"
                .into(),
        );
    }
    Ok(out)
}

/// The conversion's evaluation latencies: `--eval-timesteps` if given, else the network's
/// `timesteps`, else `ir::defaults::CONVERSION_EVAL_TIMESTEPS`.
pub fn conversion_eval_timesteps(net: &Network, flag: Option<&[usize]>) -> Vec<usize> {
    match (flag, net.settings.timesteps) {
        (Some(f), _) => f.to_vec(),
        (None, Some(t)) => vec![t as usize],
        (None, None) => crate::ir::defaults::CONVERSION_EVAL_TIMESTEPS.to_vec(),
    }
}

fn join(ts: &[usize]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::method;

    fn net(src: &str) -> Network {
        crate::compile(src).expect("compiles").networks.remove(0)
    }

    const FC: &str =
        "network n {\n    input 1x4x4\n    timesteps 3\n    FC1(16,4) LIF\n    FC2(4,2)\n}\n";

    fn cfg(m: &str) -> TrainConfig {
        TrainConfig {
            method: method::find(m).expect("method"),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn defaults_are_silent_for_agd() {
        let n = net(FC);
        assert_eq!(check(&cfg("agd"), &n, &Given::default()).unwrap(), vec![]);
    }

    #[test]
    fn each_rule_names_its_flag() {
        let n = net(FC);
        let flags = |c: &TrainConfig, g: Given| -> Vec<&'static str> {
            check(c, &n, &g).unwrap().iter().map(|w| w.flag).collect()
        };
        let all = Given {
            timesteps: false,
            momentum: true,
            balance: true,
            balance_images: true,
            balance_steps: true,
            reset: true,
            eval_timesteps: true,
        };
        assert_eq!(
            flags(&cfg("agd"), all),
            [
                "--momentum",
                "--balance",
                "--balance-images",
                "--balance-steps",
                "--reset",
                "--eval-timesteps"
            ]
        );
        // The network's `timesteps 3` with ann, then the flag instead of it.
        assert_eq!(flags(&cfg("ann"), Given::default()), ["--timesteps"]);
        let g = Given {
            timesteps: true,
            ..Given::default()
        };
        let w = check(&cfg("ann"), &n, &g).unwrap();
        assert!(
            w[0].message.starts_with("--timesteps 10 is ignored"),
            "{w:?}"
        );
        // SGD uses momentum; max balancing uses the steps; percentile does not.
        let mut sgd = cfg("agd");
        sgd.optimizer = OptimizerKind::Sgd;
        let m = Given {
            momentum: true,
            ..Given::default()
        };
        assert_eq!(flags(&sgd, m), Vec::<&str>::new());
        let steps = Given {
            balance_steps: true,
            ..Given::default()
        };
        let mut conv = cfg("conversion");
        conv.conversion.balance = Balance::MaxInput;
        assert_eq!(flags(&conv, steps), Vec::<&str>::new());
        conv.conversion.balance = Balance::Percentile(99.0);
        assert_eq!(flags(&conv, steps), ["--balance-steps"]);
        let shown = check(&conv, &n, &steps).unwrap()[0].to_string();
        assert!(shown.starts_with("warning: --balance-steps"), "{shown}");
        assert!(shown.ends_with("[snnc::train::ignored_flag]"), "{shown}");
    }

    #[test]
    fn zero_epochs_and_conversion_timesteps_are_refused() {
        let n = net(FC);
        let mut c = cfg("agd");
        c.epochs = 0;
        let e = check(&c, &n, &Given::default()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--epochs"), "{e}");
        let g = Given {
            timesteps: true,
            ..Given::default()
        };
        let e = check(&cfg("conversion"), &n, &g).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--eval-timesteps"), "{e}");
    }

    #[test]
    fn conversion_evaluates_at_the_networks_timesteps() {
        let with = net(FC);
        let without = net("network n {\n    input 1x4x4\n    FC1(16,4) LIF\n    FC2(4,2)\n}\n");
        assert_eq!(conversion_eval_timesteps(&with, None), [3]);
        assert_eq!(conversion_eval_timesteps(&with, Some(&[4, 8])), [4, 8]);
        assert_eq!(
            conversion_eval_timesteps(&without, None),
            crate::ir::defaults::CONVERSION_EVAL_TIMESTEPS
        );
    }
}
