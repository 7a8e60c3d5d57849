//! `unroll`: every repeat region becomes `count` applications in a row, then every weighted
//! node gets its step: the n-th application of a weight set in topological order is step n
//! (so `[Conv2 Conv3] x2` and the unrolled row `Conv2–Conv3–Conv2–Conv3` are the same IR).
//!
//! Regions are unrolled inner first. Skip edges into a region are copied to every
//! application; skip edges leaving it start from the last application. The total number
//! of nodes is capped at [`super::MAX_APPLICATIONS`] before anything is copied.

use std::collections::{HashMap, HashSet};

use miette::Diagnostic;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use thiserror::Error;

use super::resolve::signature_text;
use super::{channels, channels_reaching, channels_wanted_after, MAX_APPLICATIONS};
use crate::diagnostics::Diagnostics;
use crate::ir::{Edge, EdgeKind, LayerKind, Network, WeightId, WeightSet};
use crate::span::Span;

#[derive(Debug, Error, Diagnostic)]
pub enum UnrollError {
    #[error("a repeated {what} must map C channels back to C, but this one maps {from} to {to}")]
    #[diagnostic(code(snnc::unroll::not_c_to_c))]
    NotCToC {
        what: &'static str,
        from: u64,
        to: u64,
        #[label("maps {from} → {to} channels")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("unrolling gives more than {max} layer applications")]
    #[diagnostic(
        code(snnc::unroll::too_large),
        help("reduce the repeat counts; the limit keeps compilation bounded")
    )]
    TooLarge {
        max: u64,
        #[label("this repeat goes over the limit")]
        span: Span,
    },

    #[error("internal: repeat region is not a chain")]
    #[diagnostic(code(snnc::unroll::internal))]
    NotAChain {
        #[label("region")]
        span: Span,
    },
}

/// The main-path successor of a node.
fn main_next(net: &Network, n: NodeIndex) -> Option<NodeIndex> {
    net.graph
        .edges_directed(n, Direction::Outgoing)
        .find(|e| e.weight().kind == EdgeKind::Main && e.weight().port == 0)
        .map(|e| e.target())
}

fn region_chain(net: &Network, first: NodeIndex, last: NodeIndex) -> Option<Vec<NodeIndex>> {
    let mut chain = vec![first];
    let mut cur = first;
    while cur != last {
        cur = main_next(net, cur)?;
        chain.push(cur);
        if chain.len() > net.graph.node_count() {
            return None;
        }
    }
    Some(chain)
}

/// A signature with other channels (input, output), the rest kept.
fn with_channels(kind: LayerKind, c_in: u64, c_out: u64) -> LayerKind {
    match kind {
        LayerKind::Conv {
            kernel,
            stride,
            pad,
            ..
        } => LayerKind::Conv {
            in_ch: c_in,
            out_ch: c_out,
            kernel,
            stride,
            pad,
        },
        LayerKind::Fc { .. } => LayerKind::Fc {
            inputs: c_in,
            outputs: c_out,
        },
    }
}

/// The help for one repeated layer that is not C → C: the C → C signature that takes the
/// channels reaching it (its written input when those are not evident), and, when the
/// next layer wants other channels (its written output when not evident), the way there.
fn single_help(net: &Network, node: NodeIndex, ws: &WeightSet) -> String {
    let (from, to) = channels(&ws.kind);
    let conv = matches!(ws.kind, LayerKind::Conv { .. });
    let c_in = conv
        .then(|| channels_reaching(net, node))
        .flatten()
        .unwrap_or(from);
    let c_out = conv
        .then(|| channels_wanted_after(net, node))
        .flatten()
        .unwrap_or(to);
    let keep = signature_text(&ws.name, &with_channels(ws.kind, c_in, c_in));
    if c_in == c_out {
        format!("a repeated layer feeds itself: `{keep}` maps the {c_in} channels reaching it to the {c_out} the next layer takes")
    } else {
        let grow = signature_text(&ws.name, &with_channels(ws.kind, c_out, c_out));
        format!("a repeated layer feeds itself: `{keep}` keeps the {c_in} channels reaching it; for {c_out} channels, map {c_in} → {c_out} with another layer first, then repeat `{grow}`")
    }
}

/// The help for a repeated block that is not C → C: when the channels reaching the block
/// are the last layer's output, the first layer is the odd one out; otherwise the last.
fn block_help(first: &WeightSet, last: &WeightSet, reaching: Option<u64>) -> String {
    let (from, first_out) = channels(&first.kind);
    let (last_in, to) = channels(&last.kind);
    if reaching == Some(to) {
        let fix = signature_text(&first.name, &with_channels(first.kind, to, first_out));
        format!("the block's first layer must take the {to} channels its last layer outputs (and that reach the block): `{fix}`")
    } else {
        let fix = signature_text(&last.name, &with_channels(last.kind, last_in, from));
        format!(
            "the block's last layer must output the {from} channels its first layer takes: `{fix}`"
        )
    }
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    let mut regions = std::mem::take(&mut net.repeats);
    // Regions by their last node: only nested regions share one, and those must follow the
    // last node to its final copy when an inner region is unrolled.
    let mut by_last: HashMap<NodeIndex, Vec<usize>> = HashMap::new();
    for (k, r) in regions.iter().enumerate() {
        by_last.entry(r.last).or_default().push(k);
    }
    let mut i = 0;
    while i < regions.len() {
        let r = regions[i].clone();
        i += 1;
        let Some(chain) = region_chain(net, r.first, r.last) else {
            diags.push(UnrollError::NotAChain { span: r.span });
            continue;
        };
        // C → C: the first weighted layer's input channels equal the last one's output.
        let weighted: Vec<WeightId> = chain
            .iter()
            .filter_map(|&n| net.graph[n].op.weights())
            .collect();
        if let (Some(f), Some(l)) = (weighted.first(), weighted.last()) {
            let (from, _) = channels(&net.weights[f.0].kind);
            let (_, to) = channels(&net.weights[l.0].kind);
            if from != to {
                let single = weighted.len() == 1 && chain.len() == 1;
                let help = Some(if single {
                    single_help(net, chain[0], &net.weights[f.0])
                } else {
                    let first = chain
                        .iter()
                        .copied()
                        .find(|&n| net.graph[n].op.weights().is_some())
                        .unwrap_or(r.first);
                    block_help(
                        &net.weights[f.0],
                        &net.weights[l.0],
                        channels_reaching(net, first),
                    )
                });
                diags.push(UnrollError::NotCToC {
                    what: if single { "layer" } else { "block" },
                    from,
                    to,
                    span: r.span,
                    help,
                });
                continue;
            }
        }
        let len = chain.len() as u64;
        let extra = len.checked_mul(u64::from(r.count - 1));
        let total = extra.and_then(|e| e.checked_add(net.graph.node_count() as u64));
        if !matches!(total, Some(t) if t <= MAX_APPLICATIONS) {
            diags.push(UnrollError::TooLarge {
                max: MAX_APPLICATIONS,
                span: r.span,
            });
            return;
        }
        let new_last = copy_region(net, &chain, r.count);
        if let Some(ks) = by_last.remove(&r.last) {
            for &k in &ks {
                if k >= i {
                    regions[k].last = new_last;
                }
            }
            by_last.insert(new_last, ks);
        }
        if net.output == r.last {
            net.output = new_last;
        }
    }
    number_steps(net);
}

/// Nodes off the main path that lie wholly inside the region: skip paths (pool copies)
/// that leave a chain node and come back into the chain.
fn satellites(net: &Network, chain: &[NodeIndex]) -> Vec<NodeIndex> {
    let in_chain: HashSet<NodeIndex> = chain.iter().copied().collect();
    let mut out = Vec::new();
    for &n in chain {
        // Skip paths are made of skip edges only; the main path never counts.
        for e in net.graph.edges_directed(n, Direction::Outgoing) {
            if e.weight().kind != EdgeKind::Skip {
                continue;
            }
            let mut path = Vec::new();
            let mut t = e.target();
            while !in_chain.contains(&t) {
                let ins = net.graph.edges_directed(t, Direction::Incoming).count();
                let mut outs = net.graph.edges_directed(t, Direction::Outgoing);
                let (Some(next), None) = (outs.next(), outs.next()) else {
                    path.clear();
                    break;
                };
                if ins != 1 || next.weight().kind != EdgeKind::Skip {
                    path.clear();
                    break;
                }
                path.push(t);
                t = next.target();
            }
            if in_chain.contains(&t) {
                out.extend(path);
            }
        }
    }
    out
}

/// Appends `count - 1` copies of `chain` after it; returns the last node of the last copy.
fn copy_region(net: &mut Network, chain: &[NodeIndex], count: u32) -> NodeIndex {
    let first = chain[0];
    let last_k = chain.len() - 1;
    let mut members: Vec<NodeIndex> = chain.to_vec();
    members.extend(satellites(net, chain));
    let index: HashMap<NodeIndex, usize> =
        members.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    // What leaves the region: the main successor of the last node and skip edges to outside.
    let mut outgoing = Vec::new();
    // Incoming edges from outside other than the main input of `first` (skips into the region).
    let mut incoming_skips = Vec::new();
    // Edges inside the region, the chain's own main edges included.
    let mut internal = Vec::new();
    for (k, &n) in members.iter().enumerate() {
        for e in net.graph.edges_directed(n, Direction::Outgoing) {
            match index.get(&e.target()) {
                Some(&j) => internal.push((k, j, *e.weight())),
                None => outgoing.push((e.id(), k, e.target(), *e.weight())),
            }
        }
        for e in net.graph.edges_directed(n, Direction::Incoming) {
            let from_outside = !index.contains_key(&e.source());
            if from_outside && !(n == first && e.weight().kind == EdgeKind::Main) {
                incoming_skips.push((e.source(), k, *e.weight()));
            }
        }
    }
    let mut prev_copy: Vec<NodeIndex> = members.clone();
    for _ in 1..count {
        let copy: Vec<NodeIndex> = members
            .iter()
            .map(|&n| net.graph.add_node(net.graph[n].clone()))
            .collect();
        for &(a, b, w) in &internal {
            net.graph.add_edge(copy[a], copy[b], w);
        }
        for &(src, k, w) in &incoming_skips {
            net.graph.add_edge(src, copy[k], w);
        }
        net.graph.add_edge(
            prev_copy[last_k],
            copy[0],
            Edge {
                port: 0,
                kind: EdgeKind::Main,
            },
        );
        prev_copy = copy;
    }
    // Re-attach what left the region to the last copy.
    let mut ids: Vec<_> = outgoing.iter().map(|o| o.0).collect();
    ids.sort_unstable_by_key(|e| std::cmp::Reverse(e.index()));
    for id in ids {
        net.graph.remove_edge(id);
    }
    for (_, k, t, w) in outgoing {
        net.graph.add_edge(prev_copy[k], t, w);
    }
    prev_copy[last_k]
}

/// Step n for the n-th application of each weight set, in topological order.
fn number_steps(net: &mut Network) {
    let mut counts: HashMap<WeightId, u32> = HashMap::new();
    for n in net.topo_order() {
        if let Some(w) = net.graph[n].op.weights() {
            let c = counts.entry(w).or_insert(0);
            *c += 1;
            net.graph[n].step = *c;
        }
    }
}
