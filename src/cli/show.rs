//! `snnc show FILE [--network NAME] [--after PASS] [--format text|dot|json]`: the IR of
//! each network after a pass (default: the whole pipeline), as text (one line per node in
//! topological order, then weight sets and thresholds), graphviz DOT, or JSON.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use petgraph::visit::EdgeRef;
use serde_json::json;

use crate::ir::{Activation, EdgeKind, Network, NeuronKind, Op, Reset};
use crate::passes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Text,
    Dot,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The .snn file.
    pub file: PathBuf,
    /// Only this network (default: all).
    #[arg(long)]
    pub network: Option<String>,
    /// Stop after this pass: resolve, unroll, shapes, hybrid, threshold-slots, validate.
    #[arg(long)]
    pub after: Option<String>,
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    pub format: ShowFormat,
}

pub fn run(args: ShowArgs) -> ExitCode {
    if let Some(p) = &args.after {
        if !passes::PIPELINE.contains(&p.as_str()) {
            eprintln!(
                "error: unknown pass `{p}`; the passes are {}",
                passes::PIPELINE.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let name = args.file.display().to_string();
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let color = super::check::use_color();
    let width = super::check::term_width();
    let source = match crate::syntax::decode(&bytes) {
        Ok(s) => s,
        Err(d) => {
            eprint!(
                "{}",
                d.render_text(&name, &String::from_utf8_lossy(&bytes), width, color)
            );
            return ExitCode::from(1);
        }
    };
    let (program, diags) = crate::compile_with_diagnostics(source, args.after.as_deref());
    if !diags.is_empty() {
        eprint!("{}", diags.render_text(&name, source, width, color));
    }
    let Some(program) = program else {
        return ExitCode::from(1);
    };
    let nets: Vec<&Network> = program
        .networks
        .iter()
        .filter(|n| args.network.as_ref().is_none_or(|w| &n.name == w))
        .collect();
    if nets.is_empty() {
        eprintln!(
            "error: no network named `{}` in {name}",
            args.network.unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let out = match args.format {
        ShowFormat::Text => nets
            .iter()
            .map(|n| to_text(n))
            .collect::<Vec<_>>()
            .join("\n"),
        ShowFormat::Dot => nets
            .iter()
            .map(|n| to_dot(n))
            .collect::<Vec<_>>()
            .join("\n"),
        ShowFormat::Json => {
            let v: Vec<_> = nets.iter().map(|n| to_json(n)).collect();
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
    };
    println!("{out}");
    ExitCode::SUCCESS
}

fn op_text(net: &Network, op: &Op) -> String {
    match op {
        Op::Input => "input".into(),
        Op::Layer { signature: Some(k) } => format!("layer {}", kind_text(k)),
        Op::Layer { signature: None } => "layer (bare)".into(),
        Op::Conv { weights } | Op::Fc { weights } => match net.weights.get(weights.0) {
            Some(w) => kind_text(&w.kind),
            None => format!("weights #{}", weights.0),
        },
        Op::Pool {
            kind,
            window,
            stride,
        } => format!("{kind:?}Pool {window}x{window}/{stride}").to_lowercase(),
        Op::Dropout { p } => format!("dropout p={p}"),
        Op::Join { mode } => format!("join {mode:?}").to_lowercase(),
        Op::Encode { encoding } => format!("encode {encoding:?}").to_lowercase(),
        Op::Boundary { kind } => match kind {
            crate::ir::BoundaryKind::AnnToSnn => "boundary ann→snn".into(),
            crate::ir::BoundaryKind::SnnToAnn => "boundary snn→ann".into(),
        },
    }
}

fn kind_text(k: &crate::ir::LayerKind) -> String {
    match *k {
        crate::ir::LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            stride,
            pad,
        } => {
            format!("conv {in_ch}→{out_ch} {kernel}x{kernel}/{stride} pad {pad}")
        }
        crate::ir::LayerKind::Fc { inputs, outputs } => format!("fc {inputs}→{outputs}"),
    }
}

fn act_text(a: &Activation) -> String {
    match a {
        Activation::None => "-".into(),
        Activation::Relu => "ReLU".into(),
        Activation::Spiking(n) => {
            let k = if n.kind == NeuronKind::If {
                "IF"
            } else {
                "LIF"
            };
            let r = if n.reset == Reset::Zero {
                "zero"
            } else {
                "subtract"
            };
            if n.kind == NeuronKind::If {
                format!("IF(threshold={}, reset={r})", n.threshold)
            } else {
                format!("{k}(leak={}, threshold={}, reset={r})", n.leak, n.threshold)
            }
        }
    }
}

/// One line per node in topological order, then weight sets and thresholds.
pub fn to_text(net: &Network) -> String {
    let apps = passes::applications(net);
    let mut s = String::new();
    let st = &net.settings;
    let _ = writeln!(s, "network {}", net.name);
    let _ = writeln!(
        s,
        "  settings: input {} timesteps {} encode {:?} method {:?} classifier {:?} surrogate gamma={}",
        st.input.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
        st.timesteps.map(|t| t.to_string()).unwrap_or_else(|| format!("default({})", passes::default_timesteps(st.method))),
        st.encode,
        st.method,
        st.classifier,
        st.surrogate_gamma,
    );
    let _ = writeln!(s, "  nodes:");
    let mut rows: Vec<Vec<String>> = Vec::new();
    for idx in net.topo_order() {
        let n = &net.graph[idx];
        let ins: Vec<String> = net
            .graph
            .edges_directed(idx, petgraph::Direction::Incoming)
            .map(|e| {
                let src = passes::display_name(&net.graph[e.source()], &apps);
                if e.weight().kind == EdgeKind::Skip {
                    format!("{src}(skip:{})", e.weight().port)
                } else {
                    src
                }
            })
            .collect();
        rows.push(vec![
            passes::display_name(n, &apps),
            op_text(net, &n.op),
            act_text(&n.activation),
            n.domain
                .map(|d| format!("{d:?}").to_uppercase())
                .unwrap_or_else(|| "-".into()),
            n.out_shape
                .map(|o| o.to_string())
                .unwrap_or_else(|| "?".into()),
            n.slot
                .map(|x| format!("slot{}", x.0))
                .unwrap_or_else(|| "-".into()),
            format!(
                "<- {}",
                if ins.is_empty() {
                    "-".into()
                } else {
                    ins.join(", ")
                }
            ),
        ]);
    }
    write_table(&mut s, &rows);
    let _ = writeln!(s, "  weights:");
    let rows: Vec<Vec<String>> = net
        .weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            vec![
                w.name.clone(),
                kind_text(&w.kind),
                format!(
                    "params {}",
                    w.params()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "overflow".into())
                ),
                format!("applied {}", apps.get(i).copied().unwrap_or(0)),
            ]
        })
        .collect();
    write_table(&mut s, &rows);
    let _ = writeln!(
        s,
        "  unique params: {}",
        net.unique_params()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "overflow".into())
    );
    if !net.thresholds.is_empty() {
        let _ = writeln!(s, "  thresholds:");
        for (i, t) in net.thresholds.iter().enumerate() {
            let _ = writeln!(
                s,
                "    slot{i:<4} {}@{} initial {}",
                t.layer, t.step, t.initial
            );
        }
    }
    if !net.repeats.is_empty() {
        let _ = writeln!(s, "  repeats:");
        for r in &net.repeats {
            let a = passes::display_name(&net.graph[r.first], &apps);
            let b = passes::display_name(&net.graph[r.last], &apps);
            let _ = writeln!(s, "    {a} ..= {b} x{}", r.count);
        }
    }
    s
}

/// Writes `rows` indented by four spaces, each column as wide as its widest cell (in
/// characters) and separated by two spaces; the last column is not padded.
fn write_table(s: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::from("    ");
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one box per node, dashed skip edges.
pub fn to_dot(net: &Network) -> String {
    let apps = passes::applications(net);
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", dot_escape(&net.name));
    let _ = writeln!(s, "  rankdir=TB; node [shape=box, fontname=\"monospace\"];");
    for idx in net.graph.node_indices() {
        let n = &net.graph[idx];
        let label = format!(
            "{}\\n{}\\n{} {}",
            dot_escape(&passes::display_name(n, &apps)),
            dot_escape(&op_text(net, &n.op)),
            dot_escape(&act_text(&n.activation)),
            n.out_shape.map(|o| o.to_string()).unwrap_or_default()
        );
        let style = match n.domain {
            Some(crate::ir::Domain::Snn) => ", style=filled, fillcolor=\"#dde8ff\"",
            _ => "",
        };
        let _ = writeln!(s, "  n{} [label=\"{label}\"{style}];", idx.index());
    }
    for e in net.graph.edge_references() {
        let style = if e.weight().kind == EdgeKind::Skip {
            " [style=dashed]"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  n{} -> n{}{style};",
            e.source().index(),
            e.target().index()
        );
    }
    s.push_str("}\n");
    s
}

/// JSON: the network (serde) plus its nodes and edges in topological order.
pub fn to_json(net: &Network) -> serde_json::Value {
    let order = net.topo_order();
    let nodes: Vec<_> = order
        .iter()
        .map(|&i| {
            let mut v = serde_json::to_value(&net.graph[i]).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), json!(i.index()));
            }
            v
        })
        .collect();
    let edges: Vec<_> = net
        .graph
        .edge_references()
        .map(|e| json!({"from": e.source().index(), "to": e.target().index(), "port": e.weight().port, "kind": e.weight().kind}))
        .collect();
    let mut v = serde_json::to_value(net).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("nodes".into(), json!(nodes));
        o.insert("edges".into(), json!(edges));
        o.insert("input".into(), json!(net.input.index()));
        o.insert("output".into(), json!(net.output.index()));
    }
    v
}
