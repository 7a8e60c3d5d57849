//! `validate`: checks the invariants stated in `crate::ir` on the final IR. A failure here
//! is a compiler bug, reported as a diagnostic instead of a panic. For a network whose
//! `method` is `conversion` it also reports the layers conversion cannot simulate
//! (`passes::convertible`).

use std::collections::{HashMap, HashSet};

use miette::Diagnostic;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::{Activation, Network, Op, WeightId};
use crate::span::Span;

#[derive(Debug, Error, Diagnostic)]
#[error("internal error: the IR of `{network}` breaks an invariant: {what}")]
#[diagnostic(
    code(snnc::validate::invariant),
    help("this is a bug in snnc; please report it with the file")
)]
pub struct InvariantError {
    pub network: String,
    pub what: String,
    #[label("in this network")]
    pub span: Span,
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    if net.settings.method == crate::ir::Method::Conversion {
        for problem in super::convertible::conversion_problems(net) {
            diags.push(problem);
        }
    }
    let mut fail = |what: String| {
        diags.push(InvariantError {
            network: net.name.clone(),
            what,
            span: net.span,
        });
    };
    let Ok(order) = petgraph::algo::toposort(&net.graph, None) else {
        fail("the graph has a cycle".into());
        return;
    };
    let inputs: Vec<_> = net
        .graph
        .node_indices()
        .filter(|&n| net.graph[n].op == Op::Input)
        .collect();
    if inputs != [net.input] {
        fail(format!("{} input nodes", inputs.len()));
    }
    let sinks: Vec<_> = net
        .graph
        .node_indices()
        .filter(|&n| {
            net.graph
                .edges_directed(n, Direction::Outgoing)
                .next()
                .is_none()
        })
        .collect();
    if sinks != [net.output] {
        fail(format!("{} sinks, not the output alone", sinks.len()));
    }
    let mut reached = HashSet::new();
    let mut dfs = petgraph::visit::Dfs::new(&net.graph, net.input);
    while let Some(n) = dfs.next(&net.graph) {
        reached.insert(n);
    }
    if reached.len() != net.graph.node_count() {
        fail("a node is not reachable from the input".into());
    }
    if !net.repeats.is_empty() {
        fail("repeat regions remain".into());
    }
    let mut steps: HashMap<WeightId, u32> = HashMap::new();
    for &n in &order {
        let node = &net.graph[n];
        match node.op {
            Op::Layer { .. } => fail(format!("`{}` is unresolved", node.name)),
            Op::Conv { weights } | Op::Fc { weights } => {
                if weights.0 >= net.weights.len() {
                    fail(format!("`{}` has no weight set", node.name));
                }
                let s = steps.entry(weights).or_insert(0);
                *s += 1;
                if node.step != *s {
                    fail(format!(
                        "`{}` has step {} where {} was expected",
                        node.name, node.step, s
                    ));
                }
            }
            _ => {}
        }
        if node.out_shape.is_none() {
            fail(format!("`{}` has no shape", node.name));
        }
        let Some(domain) = node.domain else {
            fail(format!("`{}` has no domain", node.name));
            continue;
        };
        let mut ports: Vec<u32> = net
            .graph
            .edges_directed(n, Direction::Incoming)
            .map(|e| e.weight().port)
            .collect();
        ports.sort_unstable();
        if ports.iter().enumerate().any(|(i, &p)| p as usize != i) {
            fail(format!("`{}` has input ports {ports:?}", node.name));
        }
        let converts = matches!(node.op, Op::Encode { .. } | Op::Boundary { .. });
        for e in net.graph.edges_directed(n, Direction::Incoming) {
            if converts {
                continue;
            }
            let src = &net.graph[e.source()];
            if src.domain != Some(domain) {
                fail(format!(
                    "`{}` → `{}` crosses domains without a boundary",
                    src.name, node.name
                ));
            }
        }
        match (node.activation, node.slot) {
            (Activation::Spiking(_), Some(slot)) if slot.0 < net.thresholds.len() => {}
            (Activation::Spiking(_), _) => {
                fail(format!("spiking `{}` has no threshold slot", node.name))
            }
            _ => {}
        }
    }
}
