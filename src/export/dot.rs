//! Graphviz DOT of the IR (`snnc show --format dot`).

use std::fmt::Write as _;

use petgraph::visit::EdgeRef;

use super::{act_text, op_text};
use crate::ir::{EdgeKind, Network};
use crate::passes;

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
