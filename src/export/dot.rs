//! Graphviz DOT of the IR (`snnc show --format dot`).

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;

use super::{act_text, op_text};
use crate::ir::{Domain, EdgeKind, Network};
use crate::passes;

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one box per node (SNN nodes filled blue), solid main edges, dashed skip
/// edges, a dotted `same weights` line from each application of a shared weight set to its
/// next one (`Conv3@1` ⋯ `Conv3@2`), the classifier after the output node, and a legend.
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
            Some(Domain::Snn) => SNN_STYLE,
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
    // Shared weights: the applications of each weight set, in step order, joined by a
    // dotted line that does not move the layout.
    let mut by_set: Vec<Vec<(u32, usize)>> = vec![Vec::new(); net.weights.len()];
    for idx in net.graph.node_indices() {
        let n = &net.graph[idx];
        if let Some(w) = n.op.weights() {
            if let Some(v) = by_set.get_mut(w.0) {
                v.push((n.step, idx.index()));
            }
        }
    }
    for (w, mut uses) in by_set.into_iter().enumerate() {
        uses.sort_unstable();
        for pair in uses.windows(2) {
            let _ = writeln!(
                s,
                "  n{} -> n{} [style=dotted, dir=none, constraint=false, color=gray40, label=\"same weights {}\", fontcolor=gray40];",
                pair[0].1,
                pair[1].1,
                dot_escape(&net.weights[w].name)
            );
        }
    }
    let classifier = format!("{:?}", net.settings.classifier).to_lowercase();
    let _ = writeln!(
        s,
        "  classifier [label=\"{classifier}\\nclassifier\", shape=ellipse];"
    );
    let _ = writeln!(s, "  n{} -> classifier;", net.output.index());
    s.push_str(LEGEND);
    s.push_str("}\n");
    s
}

/// The fill of SNN-domain nodes.
const SNN_STYLE: &str = ", style=filled, fillcolor=\"#dde8ff\"";

/// The legend: node fills and edge styles.
const LEGEND: &str = "  subgraph cluster_legend {
    label=\"legend\"; fontname=\"monospace\"; style=rounded; color=gray60;
    node [shape=plaintext, fontname=\"monospace\"];
    legend_ann [label=\"ANN node (runs once)\", shape=box];
    legend_snn [label=\"SNN node (every step)\", shape=box, style=filled, fillcolor=\"#dde8ff\"];
    legend_a [label=\"\"]; legend_b [label=\"main path\"];
    legend_c [label=\"\"]; legend_d [label=\"skip path\"];
    legend_e [label=\"\"]; legend_f [label=\"shared weights\"];
    legend_a -> legend_b;
    legend_c -> legend_d [style=dashed];
    legend_e -> legend_f [style=dotted, dir=none, color=gray40];
  }
";
