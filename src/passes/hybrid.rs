//! `hybrid`: domains and the nodes between them. A spiking layer computes at every time
//! step (SNN), a ReLU layer once (ANN); nodes without activation (pools, dropouts, joins,
//! the last layer) take the domain of their main input. Where the raw input (the image,
//! possibly pooled) enters the SNN an `Op::Encode` node is inserted (one per source);
//! elsewhere ANN → SNN and SNN → ANN edges pass through an `Op::Boundary` (one per source
//! and direction).

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use miette::Diagnostic;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::{Activation, BoundaryKind, Domain, Edge, EdgeKind, Network, Node, Op};
use crate::span::Span;

#[derive(Debug, Error, Diagnostic)]
pub enum HybridWarning {
    #[error("`timesteps` is set but network `{network}` has no spiking layer")]
    #[diagnostic(
        code(snnc::hybrid::unused_timesteps),
        severity(Warning),
        help("every layer is ReLU, so the network runs once (T = 1); remove `timesteps` or make layers spiking")
    )]
    UnusedTimesteps {
        network: String,
        #[label("network without spiking layers")]
        span: Span,
    },
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    if net.settings.timesteps.is_some() && !net.graph.node_weights().any(|n| n.is_spiking()) {
        diags.push(HybridWarning::UnusedTimesteps {
            network: net.name.clone(),
            span: net.span,
        });
    }
    let order = net.topo_order();
    // `raw`: the value is the input image, unchanged by any weighted layer.
    let mut raw: HashMap<NodeIndex, bool> = HashMap::new();
    for &idx in &order {
        let main_in = net.inputs_of(idx).first().copied();
        let in_domain = main_in
            .and_then(|i| net.graph[i].domain)
            .unwrap_or(Domain::Ann);
        let node = &net.graph[idx];
        let domain = match (&node.op, node.activation) {
            (Op::Input, _) => Domain::Ann,
            (_, Activation::Spiking(_)) => Domain::Snn,
            (_, Activation::Relu) => Domain::Ann,
            (_, Activation::None) => in_domain,
        };
        let is_raw = match node.op {
            Op::Input => true,
            Op::Pool { .. } | Op::Dropout { .. } => {
                main_in.is_some_and(|i| raw.get(&i).copied().unwrap_or(false))
            }
            _ => false,
        };
        raw.insert(idx, is_raw);
        net.graph[idx].domain = Some(domain);
    }
    // Edges that cross domains.
    let crossing: Vec<(petgraph::graph::EdgeIndex, NodeIndex, NodeIndex, Edge)> = net
        .graph
        .edge_references()
        .filter(|e| {
            let (a, b) = (&net.graph[e.source()], &net.graph[e.target()]);
            a.domain != b.domain
        })
        .map(|e| (e.id(), e.source(), e.target(), *e.weight()))
        .collect();
    let mut inserted: HashMap<(NodeIndex, bool), NodeIndex> = HashMap::new();
    let mut ids: Vec<_> = crossing.iter().map(|c| c.0).collect();
    ids.sort_unstable_by_key(|e| std::cmp::Reverse(e.index()));
    for id in ids {
        net.graph.remove_edge(id);
    }
    for (_, src, dst, w) in crossing {
        let to = net.graph[dst].domain.unwrap_or(Domain::Ann);
        let mid = *inserted.entry((src, to == Domain::Snn)).or_insert_with(|| {
            let s = &net.graph[src];
            let span = net.graph[dst].span;
            let (name, op) = match to {
                Domain::Snn if raw.get(&src).copied().unwrap_or(false) => (
                    "Encode".to_string(),
                    Op::Encode {
                        encoding: net.settings.encode,
                    },
                ),
                Domain::Snn => (
                    format!("{}→SNN", s.name),
                    Op::Boundary {
                        kind: BoundaryKind::AnnToSnn,
                    },
                ),
                Domain::Ann => (
                    format!("{}→ANN", s.name),
                    Op::Boundary {
                        kind: BoundaryKind::SnnToAnn,
                    },
                ),
            };
            let mut node = Node::new(name, op, Activation::None, span);
            node.out_shape = s.out_shape;
            node.domain = Some(to);
            let n = net.graph.add_node(node);
            net.graph.add_edge(
                src,
                n,
                Edge {
                    port: 0,
                    kind: w.kind,
                },
            );
            n
        });
        // An Encode/Boundary fed by a skip edge still feeds its consumer on the same port.
        net.graph.add_edge(mid, dst, w);
        if w.kind == EdgeKind::Main {
            if let Some(e) = net.graph.find_edge(src, mid) {
                net.graph[e].kind = EdgeKind::Main;
            }
        }
    }
}
