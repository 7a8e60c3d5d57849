//! The pass pipeline: one pass per file, run per network in the fixed order of [`PASSES`],
//! the one registry of passes (it also gives `snnc show --after` its help and its check).
//!
//! A pass only mutates the network it is given and reports problems as diagnostics; it
//! never panics on user input. When a pass finds errors in a network, the later passes
//! do not run on that network (other networks go on, so every network's errors are
//! reported). After `validate` a network satisfies the invariants of `crate::ir`.

pub mod convertible;
pub mod hybrid;
pub mod resolve;
pub mod shapes;
pub mod threshold_slots;
pub mod unroll;
pub mod validate;

use miette::Diagnostic;
use thiserror::Error;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::diagnostics::Diagnostics;
use crate::ir::{EdgeKind, JoinMode, LayerKind, Network, Node, Op, Program};

/// A pass: mutates one network, reports what it finds.
pub type PassFn = fn(&mut Network, &mut Diagnostics);

/// The passes in the order they run, by the name `snnc show --after` accepts. Adding a
/// pass is one file plus one line here.
pub const PASSES: &[(&str, PassFn)] = &[
    ("resolve", resolve::run),
    ("unroll", unroll::run),
    ("shapes", shapes::run),
    ("hybrid", hybrid::run),
    ("threshold-slots", threshold_slots::run),
    ("validate", validate::run),
];

/// The pass names in order (from [`PASSES`]).
pub fn names() -> impl Iterator<Item = &'static str> {
    PASSES.iter().map(|(name, _)| *name)
}

/// The pass names in order, comma-separated: `resolve, unroll, ...`.
pub fn names_list() -> String {
    names().collect::<Vec<_>>().join(", ")
}

/// The position of pass `name` in [`PASSES`], `None` when there is no such pass.
pub fn position(name: &str) -> Option<usize> {
    names().position(|p| p == name)
}

pub use crate::ir::MAX_APPLICATIONS;

#[derive(Debug, Error, Diagnostic)]
pub enum PipelineError {
    #[error("unknown pass `{name}`")]
    #[diagnostic(code(snnc::passes::unknown), help("the passes are {}", names_list()))]
    UnknownPass { name: String },
}

/// How often each weight set is applied (its highest step), indexed by `WeightId`.
pub fn applications(net: &Network) -> Vec<u32> {
    let mut apps = vec![0u32; net.weights.len()];
    for n in net.graph.node_weights() {
        if let Some(w) = n.op.weights() {
            if let Some(a) = apps.get_mut(w.0) {
                *a = (*a).max(n.step);
            }
        }
    }
    apps
}

/// `Conv3@2` for the second application of a repeated layer, the plain name otherwise.
pub fn display_name(node: &Node, apps: &[u32]) -> String {
    let a = node
        .op
        .weights()
        .and_then(|w| apps.get(w.0).copied())
        .unwrap_or(1);
    node.display_name(a)
}

/// Input and output channels (features for FC) of a signature.
pub(crate) fn channels(kind: &LayerKind) -> (u64, u64) {
    match *kind {
        LayerKind::Conv { in_ch, out_ch, .. } => (in_ch, out_ch),
        LayerKind::Fc { inputs, outputs } => (inputs, outputs),
    }
}

/// The signature of a weighted node, resolved or not.
fn signature_of(net: &Network, node: NodeIndex) -> Option<LayerKind> {
    match net.graph[node].op {
        Op::Layer { signature } => signature,
        Op::Conv { weights } | Op::Fc { weights } => net.weights.get(weights.0).map(|w| w.kind),
        _ => None,
    }
}

/// Whether channels pass a node unchanged (pools, dropout, add-joins, domain changes).
fn keeps_channels(op: &Op) -> bool {
    matches!(
        op,
        Op::Pool { .. }
            | Op::Dropout { .. }
            | Op::Encode { .. }
            | Op::Boundary { .. }
            | Op::Join {
                mode: JoinMode::Add
            }
    )
}

/// The channels that reach a convolution at `node` along the main path, when evident
/// before shapes are known: the output channels of the nearest convolution upstream, or
/// the input image's channels. `None` past a concatenation, an FC layer or a bare name.
pub(crate) fn channels_reaching(net: &Network, node: NodeIndex) -> Option<u64> {
    let mut cur = node;
    for _ in 0..net.graph.node_count() {
        cur = *net.inputs_of(cur).first()?;
        let op = &net.graph[cur].op;
        if let Op::Input = op {
            return net.settings.input.map(|s| s.c);
        }
        if !keeps_channels(op) {
            return match signature_of(net, cur) {
                Some(k @ LayerKind::Conv { .. }) => Some(channels(&k).1),
                _ => None,
            };
        }
    }
    None
}

/// The channels the next convolution after `node` on the main path takes, when evident:
/// `None` when an FC layer, a concatenation or the end comes first.
pub(crate) fn channels_wanted_after(net: &Network, node: NodeIndex) -> Option<u64> {
    let mut cur = node;
    for _ in 0..net.graph.node_count() {
        cur = net
            .graph
            .edges_directed(cur, Direction::Outgoing)
            .find(|e| e.weight().kind == EdgeKind::Main)
            .map(|e| e.target())?;
        if !keeps_channels(&net.graph[cur].op) {
            return match signature_of(net, cur) {
                Some(k @ LayerKind::Conv { .. }) => Some(channels(&k).0),
                _ => None,
            };
        }
    }
    None
}

/// Runs the pipeline (up to and including `stop_after`) on every network.
pub fn run(program: Program, stop_after: Option<&str>) -> Result<Program, Diagnostics> {
    let (program, diags) = run_with_diagnostics(program, stop_after);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(program)
    }
}

/// Like [`run`], but returns the program together with every diagnostic (warnings too).
pub fn run_with_diagnostics(
    mut program: Program,
    stop_after: Option<&str>,
) -> (Program, Diagnostics) {
    let mut diags = Diagnostics::new();
    let last = match stop_after {
        None => PASSES.len() - 1,
        Some(name) => match position(name) {
            Some(i) => i,
            None => {
                diags.push(PipelineError::UnknownPass {
                    name: name.to_string(),
                });
                return (program, diags);
            }
        },
    };
    for net in &mut program.networks {
        for (_, pass) in &PASSES[..=last] {
            let mut d = Diagnostics::new();
            pass(net, &mut d);
            let failed = d.has_errors();
            diags.extend(d);
            if failed {
                break;
            }
        }
    }
    (program, diags)
}
