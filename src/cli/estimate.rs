//! `snnc estimate`: parameters, operations and energy of every layer application of a
//! network, and the totals of the paper's Eq. 8–11 (see [`crate::analysis`]).
//!
//! Exit status: 0 ok; 1 when the file has compile errors (rendered as `snnc check` does);
//! 2 for usage errors (bad numbers, unknown `--network`) and I/O errors (unreadable file or
//! activity report).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::{self, Activity, EnergyModel, Estimate, Options};

/// Energy table of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnergyArg {
    /// Table I: 32-bit integer, MAC 3.2 pJ, AC 0.1 pJ.
    Int32,
    /// 32-bit float: MAC 4.6 pJ, AC 0.9 pJ.
    Fp32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct EstimateArgs {
    /// The .snn file.
    pub file: PathBuf,
    /// Only the network of this name (default: every network of the file).
    #[arg(long)]
    pub network: Option<String>,
    /// Spike activity SA of every layer (and of the Poisson input); with --activity, the
    /// rate of layers the report does not name.
    #[arg(long, default_value_t = 0.1)]
    pub spike_rate: f64,
    /// Latency T (default: the network's `timesteps`, else 25).
    #[arg(long)]
    pub timesteps: Option<u32>,
    /// Energy per operation: Table I (int32) or fp32.
    #[arg(long, value_enum, default_value = "int32")]
    pub energy: EnergyArg,
    /// MAC energy in pJ (with --eac; overrides --energy).
    #[arg(long, requires = "eac")]
    pub emac: Option<f64>,
    /// AC energy in pJ (with --emac; overrides --energy).
    #[arg(long, requires = "emac")]
    pub eac: Option<f64>,
    /// A training or eval report whose "activity" array gives the rate per layer and step.
    #[arg(long)]
    pub activity: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The options an estimate runs with, from the arguments; `Err((message, exit status))`.
pub fn options(args: &EstimateArgs) -> Result<Options, (String, u8)> {
    let r = args.spike_rate;
    if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
        return Err((format!("--spike-rate must lie in [0, 1], got {r}"), 2));
    }
    if args.timesteps == Some(0) {
        return Err(("--timesteps must be at least 1".into(), 2));
    }
    let energy = match (args.emac, args.eac) {
        (Some(m), Some(a)) => EnergyModel::custom(m, a).ok_or_else(|| {
            (
                format!("--emac and --eac must be finite and ≥ 0, got {m} and {a}"),
                2,
            )
        })?,
        _ => match args.energy {
            EnergyArg::Int32 => EnergyModel::INT32,
            EnergyArg::Fp32 => EnergyModel::FP32,
        },
    };
    let activity = match &args.activity {
        None => Activity::Uniform(r),
        Some(path) => {
            Activity::load(path, r).map_err(|e| (format!("{}: {e}", path.display()), 2))?
        }
    };
    Ok(Options {
        timesteps: args.timesteps,
        activity,
        energy,
    })
}

/// Where T came from, for the text header.
fn timesteps_origin(net: &crate::ir::Network, opts: &Options) -> &'static str {
    if opts.timesteps.is_some() {
        "--timesteps"
    } else if net.settings.timesteps.is_some() {
        "the network's `timesteps`"
    } else {
        "default; the network sets no `timesteps`"
    }
}

/// Engineering-friendly number: integers below 10^7 as they are, else 3 significant digits.
fn num(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.0}")
    } else {
        format!("{x:.3e}")
    }
}

fn pad(s: &str, width: usize, right: bool) -> String {
    let n = s.chars().count();
    let fill = " ".repeat(width.saturating_sub(n));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

/// The per-layer table and totals of one network, columns aligned.
pub fn render_text(net: &crate::ir::Network, est: &Estimate, opts: &Options) -> String {
    let mut out = String::new();
    let rate = match opts.activity {
        Activity::Uniform(r) => format!("spike rate {r} (uniform)"),
        Activity::Measured { fallback, .. } => {
            format!("spike rates from the report (unmeasured layers: {fallback})")
        }
    };
    out.push_str(&format!(
        "network {}: T = {} ({}), {}, energy {} (MAC {} pJ, AC {} pJ)\n",
        est.name,
        est.timesteps,
        timesteps_origin(net, opts),
        rate,
        est.energy.name,
        est.energy.e_mac,
        est.energy.e_ac
    ));
    let header = [
        "layer",
        "step",
        "kind",
        "act",
        "out_shape",
        "params",
        "ops/step",
        "op",
        "SA",
        "energy_pJ",
    ];
    let right = [
        false, true, false, false, true, true, true, false, true, true,
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for l in &est.layers {
        rows.push(vec![
            l.name.clone(),
            l.step.to_string(),
            l.kind.to_string(),
            l.activation.to_string(),
            l.out_shape.map_or("?".into(), |s| s.to_string()),
            l.params.to_string(),
            l.ops.to_string(),
            l.op.to_string(),
            if l.op == analysis::OpKind::Ac {
                format!("{:.4}", l.sa)
            } else {
                "-".into()
            },
            num(l.energy_pj),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| pad(s, widths[c], right[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let ee = est
        .ee
        .map_or("∞ (E_SNN = 0)".into(), |x| format!("{x:.3}x"));
    let totals = [
        ("unique params", est.params.to_string()),
        ("logical depth", est.logical_depth.to_string()),
        ("FLOPS_ANN", num(est.flops_ann)),
        (
            "FLOPS_SNN",
            format!("{} (per time step)", num(est.flops_snn)),
        ),
        ("E_ANN", format!("{} pJ", num(est.e_ann_pj))),
        ("E_SNN", format!("{} pJ", num(est.e_snn_pj))),
        ("EE", ee),
    ];
    for (k, v) in totals {
        out.push_str(&format!("{}  {v}\n", pad(k, 13, false)));
    }
    out
}

/// `{"networks": [...]}` of the estimates.
pub fn render_json(estimates: &[Estimate]) -> String {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        networks: &'a [Estimate],
    }
    // The writer serialiser handles u128 ops; it cannot fail on these plain types.
    serde_json::to_string_pretty(&Doc {
        networks: estimates,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Runs `snnc estimate` (compiling waits for the front end).
pub fn run(args: EstimateArgs) -> ExitCode {
    if let Err((msg, code)) = options(&args) {
        eprintln!("error: {msg}");
        return ExitCode::from(code);
    }
    eprintln!("snnc estimate: the front end is not available yet");
    ExitCode::from(2)
}
