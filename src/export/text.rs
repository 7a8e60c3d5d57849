//! The text form of the IR that `snnc show` prints: settings, then one row per node in
//! topological order, then weight sets, thresholds and (before `unroll`) repeat regions.

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;

use super::{act_text, kind_text, op_text};
use crate::ir::{EdgeKind, Network};
use crate::passes;

/// One line per node in topological order, then weight sets and thresholds.
pub fn to_text(net: &Network) -> String {
    let apps = passes::applications(net);
    let mut s = String::new();
    let st = &net.settings;
    let _ = writeln!(s, "network {}", net.name);
    let _ = writeln!(
        s,
        "  settings: input {} timesteps {} encode {} method {} classifier {} surrogate gamma={}",
        st.input
            .map(|i| i.to_string())
            .unwrap_or_else(|| "?".into()),
        st.timesteps
            .map(|t| t.to_string())
            .unwrap_or_else(|| format!("default({})", crate::ir::defaults::timesteps(st.method))),
        lower(&st.encode),
        lower(&st.method),
        lower(&st.classifier),
        st.surrogate_gamma,
    );
    if !st.stdp.is_empty() {
        let _ = writeln!(s, "  stdp: {}", st.stdp.written().join(" "));
    }
    let _ = writeln!(s, "  nodes:");
    let mut rows: Vec<Vec<String>> = vec![[
        "node",
        "operation",
        "activation",
        "domain",
        "shape",
        "slot",
        "inputs",
    ]
    .map(String::from)
    .to_vec()];
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
    let header = ["weights", "signature", "params", "applied"]
        .map(String::from)
        .to_vec();
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(net.weights.iter().enumerate().map(|(i, w)| {
            vec![
                w.name.clone(),
                kind_text(&w.kind),
                w.params()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "overflow".into()),
                apps.get(i).copied().unwrap_or(0).to_string(),
            ]
        }))
        .collect();
    write_table(&mut s, &rows);
    let layers = net
        .unique_params()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "overflow".into());
    // Stochmax's retain and auxiliary heads are parameters too (counted once shapes are known).
    let head = crate::analysis::unique_parameters(net).head;
    if head > 0 {
        let _ = writeln!(
            s,
            "  unique params: {layers} in layers + {head} in the stochmax retain/auxiliary heads"
        );
    } else {
        let _ = writeln!(s, "  unique params: {layers}");
    }
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

/// `Agd` → `agd`: a setting's value as the language writes it.
fn lower(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}").to_lowercase()
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
