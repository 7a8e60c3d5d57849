//! `snnc estimate`: parameters, operations and energy (pJ per image) of every layer
//! application of a network, and the totals of the paper's Eq. 8–11 (every rule is in
//! [`crate::analysis`]; this file only maps flags onto [`Options`] and prints).
//!
//! Exit status: 0 ok; 1 when the file has compile errors (rendered as `snnc check` does);
//! 2 for usage errors (bad numbers, unknown `--network`) and I/O errors (unreadable file or
//! activity report).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analysis::{
    self, Activity, Convention, EnergyModel, Estimate, InputRateSource, Options,
};

/// Energy table of the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnergyArg {
    /// Table I: 32-bit integer, MAC 3.2 pJ, AC 0.1 pJ.
    Int32,
    /// 32-bit float: MAC 4.6 pJ, AC 0.9 pJ.
    Fp32,
}

/// How a spiking layer fed by real values (direct coding, a ReLU block before it) is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConventionArg {
    /// Ops MACs at each of the T steps the real values are fed.
    Strict,
    /// The paper's Eq. 11: accumulates at the layer's own spike rate.
    Paper,
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
    /// Latency T (default: the report's `timesteps` with --activity, else the network's
    /// `timesteps`, else its method's default: 10 for AGD, 500 for conversion, 100 for STDP,
    /// the T `snnc show` prints and `snnc train` runs with).
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
    /// Pricing of a spiking layer fed by real values: strict (MACs at every step) or paper
    /// (Eq. 11 as printed: accumulates at its own spike rate).
    #[arg(long, value_enum, default_value = "strict")]
    pub convention: ConventionArg,
    /// A training or eval report: its "activity" array gives the rate per layer and step,
    /// its "input_spike_rate" the input's rate, its "timesteps" the T (unless --timesteps).
    #[arg(long)]
    pub activity: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Where T came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepsOrigin {
    /// `--timesteps`.
    Flag,
    /// The activity report's `timesteps`.
    Report,
    /// The network's `timesteps`, else the default (decided per network).
    Network,
}

/// The options an estimate runs with, where T came from, and notes for stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub opts: Options,
    pub origin: TimestepsOrigin,
    /// Lines for stderr (`note: ...`) about what the report decided.
    pub notes: Vec<String>,
}

/// The options an estimate runs with, from the arguments; `Err((message, exit status))`.
pub fn options(args: &EstimateArgs) -> Result<Resolved, (String, u8)> {
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
    let energy = energy.with_convention(match args.convention {
        ConventionArg::Strict => Convention::Strict,
        ConventionArg::Paper => Convention::Paper,
    });
    let mut notes = Vec::new();
    let mut origin = if args.timesteps.is_some() {
        TimestepsOrigin::Flag
    } else {
        TimestepsOrigin::Network
    };
    let mut timesteps = args.timesteps;
    let activity = match &args.activity {
        None => Activity::Uniform(r),
        Some(path) => {
            let shown = path.display();
            let report = analysis::ActivityReport::load(path, r)
                .map_err(|e| (format!("{shown}: {e}"), 2))?;
            match (report.timesteps, args.timesteps) {
                (Some(rt), None) => {
                    timesteps = Some(rt);
                    origin = TimestepsOrigin::Report;
                    notes.push(format!("T = {rt} from the report {shown} (its rates were measured at that T; --timesteps overrides)"));
                }
                (Some(rt), Some(t)) if rt != t => notes.push(format!(
                    "T = {t} from --timesteps, but the report {shown} was measured at T = {rt}"
                )),
                _ => {}
            }
            notes.push(match report.input_source {
                InputRateSource::TopLevel => {
                    "input spike rate from the report's \"input_spike_rate\"".to_string()
                }
                InputRateSource::ActivityRow => {
                    "input spike rate from the report's `Input` activity entry".to_string()
                }
                InputRateSource::Fallback => format!(
                    "the report gives no input spike rate: the input is priced at --spike-rate {r}"
                ),
            });
            report.activity
        }
    };
    Ok(Resolved {
        opts: Options {
            timesteps,
            activity,
            energy,
        },
        origin,
        notes,
    })
}

/// Where T came from, for the text header.
fn timesteps_origin(net: &crate::ir::Network, origin: TimestepsOrigin) -> &'static str {
    match origin {
        TimestepsOrigin::Flag => "--timesteps",
        TimestepsOrigin::Report => "the report's `timesteps`",
        TimestepsOrigin::Network if net.settings.timesteps.is_some() => "the network's `timesteps`",
        TimestepsOrigin::Network => "default; the network sets no `timesteps`",
    }
}

/// A readable number: integers below 10^7 as they are, other values in [0.1, 10^6) with one
/// decimal, the rest with 4 significant digits in scientific notation.
fn num(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.0}")
    } else if (0.1..1e6).contains(&x.abs()) {
        format!("{x:.1}")
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

/// The per-layer table and totals of one network, columns aligned; energies per image.
pub fn render_text(
    net: &crate::ir::Network,
    est: &Estimate,
    opts: &Options,
    origin: TimestepsOrigin,
) -> String {
    let mut out = String::new();
    let rate = match opts.activity {
        Activity::Uniform(r) => format!("spike rate {r} (uniform)"),
        Activity::Measured { fallback, .. } => {
            format!("spike rates from the report (unmeasured layers: {fallback})")
        }
    };
    out.push_str(&format!(
        "network {}: T = {} ({}), {}, energy per image: {} (MAC {} pJ, AC {} pJ), {} pricing\n",
        est.name,
        est.timesteps,
        timesteps_origin(net, origin),
        rate,
        est.energy.name,
        est.energy.e_mac,
        est.energy.e_ac,
        est.energy.convention,
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
        "pJ/image",
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
            if l.op == analysis::OpKind::Mac && l.times > 1 {
                "MAC×T".to_string()
            } else {
                l.op.to_string()
            },
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
    let p = est.parameters;
    let params = if p.head > 0 {
        format!(
            "{} ({} in layers + {} in the stochmax retain/auxiliary heads)",
            p.total, p.layers, p.head
        )
    } else {
        p.total.to_string()
    };
    let totals = [
        ("unique params", params),
        ("logical depth", est.logical_depth.to_string()),
        ("FLOPS_ANN", num(est.flops_ann)),
        (
            "FLOPS_SNN",
            format!("{} (per time step)", num(est.flops_snn)),
        ),
        ("E_ANN", format!("{} pJ per image", num(est.e_ann_pj))),
        ("E_SNN", format!("{} pJ per image", num(est.e_snn_pj))),
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

/// Runs `snnc estimate`: compile (errors rendered as `snnc check` does), estimate every (or
/// the named) network, print the tables or the JSON; notes about an activity report go to
/// stderr.
pub fn run(args: EstimateArgs) -> ExitCode {
    let resolved = match options(&args) {
        Ok(o) => o,
        Err((msg, code)) => {
            eprintln!("error: {msg}");
            return ExitCode::from(code);
        }
    };
    let program = match super::check::compile_file_or_report(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let nets: Vec<_> = program
        .networks
        .iter()
        .filter(|n| args.network.as_ref().is_none_or(|want| &n.name == want))
        .collect();
    if nets.is_empty() {
        let names: Vec<_> = program.networks.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "error: no network named `{}` in {} (it has: {})",
            args.network.as_deref().unwrap_or_default(),
            args.file.display(),
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
    let opts = &resolved.opts;
    let estimates: Vec<Estimate> = nets.iter().map(|n| analysis::estimate(n, opts)).collect();
    match args.format {
        Format::Json => println!("{}", render_json(&estimates)),
        Format::Text => {
            let texts: Vec<String> = nets
                .iter()
                .zip(&estimates)
                .map(|(n, e)| render_text(n, e, opts, resolved.origin))
                .collect();
            print!("{}", texts.join("\n"));
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{
        Activation, Edge, EdgeKind, LayerKind, Network, Node, Op, Settings, Shape, WeightId,
        WeightSet,
    };
    use crate::syntax::span::Span;
    use petgraph::graph::DiGraph;

    /// Input 1×4×4 → Conv1(1,2,3x3/1) ReLU → FC1(32,3) logits.
    fn tiny() -> Network {
        let mut g = DiGraph::new();
        let sp = Span::default();
        let mut input = Node::new("Input", Op::Input, Activation::None, sp);
        input.out_shape = Some(Shape::new(1, 4, 4));
        let mut conv = Node::new(
            "Conv1",
            Op::Conv {
                weights: WeightId(0),
            },
            Activation::Relu,
            sp,
        );
        conv.out_shape = Some(Shape::new(2, 4, 4));
        let mut fc = Node::new(
            "FC1",
            Op::Fc {
                weights: WeightId(1),
            },
            Activation::None,
            sp,
        );
        fc.out_shape = Some(Shape::new(3, 1, 1));
        let (a, b, c) = (g.add_node(input), g.add_node(conv), g.add_node(fc));
        let main = Edge {
            port: 0,
            kind: EdgeKind::Main,
        };
        g.add_edge(a, b, main);
        g.add_edge(b, c, main);
        let w = |name: &str, kind| WeightSet {
            name: name.into(),
            kind,
            span: sp,
        };
        Network {
            name: "Tiny".into(),
            span: sp,
            settings: Settings::default(),
            weights: vec![
                w(
                    "Conv1",
                    LayerKind::Conv {
                        in_ch: 1,
                        out_ch: 2,
                        kernel: 3,
                        stride: 1,
                        pad: 1,
                    },
                ),
                w(
                    "FC1",
                    LayerKind::Fc {
                        inputs: 32,
                        outputs: 3,
                    },
                ),
            ],
            graph: g,
            input: a,
            output: c,
            repeats: vec![],
            thresholds: vec![],
        }
    }

    #[test]
    fn text_table_is_aligned_with_totals() {
        let net = tiny();
        let opts = Options::default();
        let est = analysis::estimate(&net, &opts);
        let text = render_text(&net, &est, &opts, TimestepsOrigin::Network);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("network Tiny: T = 10 (default"),
            "{text}"
        );
        // Header and rows: right-aligned numeric columns end at the same character.
        let col_end = |l: &str, word: &str, nth: usize| {
            let i = l.match_indices(word).nth(nth).unwrap().0;
            l[..i + word.len()].chars().count()
        };
        let params = col_end(lines[1], "params", 0);
        let ops = col_end(lines[1], "ops/step", 0);
        assert_eq!(params, col_end(lines[2], "18", 0), "{text}");
        assert_eq!(ops, col_end(lines[2], "288", 0), "{text}");
        // FC1: 96 parameters and 96 ops.
        assert_eq!(params, col_end(lines[3], "96", 0), "{text}");
        assert_eq!(ops, col_end(lines[3], "96", 1), "{text}");
        assert!(text.contains("unique params  114\n"), "{text}");
        assert!(text.contains("logical depth  2\n"));
        // Both layers MAC (ReLU, then logits after ReLU): EE = 1.
        assert!(text.contains("EE             1.000x"), "{text}");
    }

    #[test]
    fn json_has_the_promised_fields() {
        let net = tiny();
        let est = analysis::estimate(&net, &Options::default());
        let v: serde_json::Value = serde_json::from_str(&render_json(&[est])).unwrap();
        let n = &v["networks"][0];
        for key in [
            "name",
            "params",
            "logical_depth",
            "timesteps",
            "spike_rate",
            "flops_ann",
            "flops_snn",
            "e_ann_pj",
            "e_snn_pj",
            "ee",
        ] {
            assert!(!n[key].is_null(), "{key}");
        }
        let l = &n["layers"][0];
        assert_eq!(l["name"], "Conv1");
        assert_eq!(l["ops"], 288);
        assert_eq!(l["op"], "MAC");
        assert_eq!(l["out_shape"]["c"], 2);
        assert_eq!(n["e_ann_pj"].as_f64().unwrap(), (288.0 + 96.0) * 3.2);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: EstimateArgs,
        }
        let parse = |a: &[&str]| Cli::try_parse_from(a).map(|c| c.args);
        let ok = parse(&["x", "f.snn", "--energy", "fp32"]).unwrap();
        assert_eq!(options(&ok).unwrap().opts.energy, EnergyModel::FP32);
        let a = parse(&["x", "f.snn", "--spike-rate", "2"]).unwrap();
        assert_eq!(options(&a).unwrap_err().1, 2);
        let a = parse(&["x", "f.snn", "--timesteps", "0"]).unwrap();
        assert_eq!(options(&a).unwrap_err().1, 2);
        let a = parse(&["x", "f.snn", "--emac=-1", "--eac", "0.1"]).unwrap();
        assert_eq!(options(&a).unwrap_err().1, 2);
        assert!(parse(&["x", "f.snn", "--emac", "1"]).is_err());
        let a = parse(&["x", "f.snn", "--emac", "2", "--eac", "0.5"]).unwrap();
        assert_eq!(options(&a).unwrap().opts.energy.e_mac, 2.0);
    }
}
