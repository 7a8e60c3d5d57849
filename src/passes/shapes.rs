//! `shapes`: every node's `out_shape`, in topological order, with the checks that need
//! shapes: declared input channels / FC inputs, kernels and pool windows that do not fit,
//! joins whose inputs cannot be concatenated or added, sizes that overflow.
//!
//! After a mismatch inference continues with the layer's declared output, so one mistake
//! gives one error. A node whose input is unknown (after a spatial error) is skipped.

use miette::Diagnostic;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use thiserror::Error;

use super::resolve::signature_text;
use crate::diagnostics::Diagnostics;
use crate::ir::{JoinMode, LayerKind, Network, Op, Shape};
use crate::span::Span;

#[derive(Debug, Error, Diagnostic)]
pub enum ShapeError {
    #[error("{message}")]
    #[diagnostic(code(snnc::shape::mismatch))]
    Mismatch {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::shape::window))]
    Window {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(snnc::shape::join))]
    Join {
        message: String,
        /// The (first) `skip` line into the join: the site to edit.
        #[label(primary, "{label}")]
        span: Span,
        label: String,
        /// The layer the join feeds (secondary label).
        #[label("{target_label}")]
        target_span: Option<Span>,
        target_label: String,
        #[help]
        help: Option<String>,
    },

    #[error("the size of `{name}` overflows")]
    #[diagnostic(code(snnc::shape::overflow), help("use smaller sizes"))]
    Overflow {
        name: String,
        #[label("too large")]
        span: Span,
    },
}

fn features_text(s: &Shape) -> String {
    match s.features() {
        Some(f) if s.h == 1 && s.w == 1 => format!("{f}"),
        Some(f) => format!("{s} = {f}"),
        None => format!("{s}"),
    }
}

fn out_size(size: u64, window: u64, stride: u64, pad: u64) -> Option<u64> {
    let padded = size.checked_add(pad.checked_mul(2)?)?;
    if window > padded {
        return Some(0);
    }
    Some((padded - window) / stride + 1)
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    let order = net.topo_order();
    let Some(input) = net.settings.input else {
        return;
    };
    if input.features().is_none() {
        diags.push(ShapeError::Overflow {
            name: "input".into(),
            span: net.span,
        });
        return;
    }
    let apps = super::applications(net);
    for idx in order {
        let inputs = net.inputs_of(idx);
        let in_shapes: Vec<Option<Shape>> =
            inputs.iter().map(|&i| net.graph[i].out_shape).collect();
        let node = &net.graph[idx];
        let name = super::display_name(node, &apps);
        let span = node.span;
        let from = inputs
            .first()
            .map(|&i| super::display_name(&net.graph[i], &apps))
            .unwrap_or_default();
        let main = in_shapes.first().copied().flatten();
        let out = match node.op.clone() {
            Op::Input => Some(input),
            Op::Layer { .. } => None,
            Op::Encode { .. } | Op::Boundary { .. } | Op::Dropout { .. } => main,
            Op::Pool { window, stride, .. } => main.and_then(|s| {
                let h = out_size(s.h, window, stride, 0);
                let w = out_size(s.w, window, stride, 0);
                match (h, w) {
                    (Some(h), Some(w)) if h > 0 && w > 0 => Some(Shape::new(s.c, h, w)),
                    _ => {
                        diags.push(ShapeError::Window {
                            message: format!("the {window}×{window} window of `{name}` is larger than its input {s} from {from}"),
                            span,
                            label: format!("window {window}×{window} on {}×{}", s.h, s.w),
                            help: Some("the spatial size would reach zero; remove a pool or use a smaller window".into()),
                        });
                        None
                    }
                }
            }),
            Op::Conv { weights } => {
                let ws = &net.weights[weights.0];
                let LayerKind::Conv { in_ch, out_ch, kernel, stride, pad } = ws.kind else { continue };
                let wname = ws.name.clone();
                main.and_then(|s| {
                    if s.c != in_ch {
                        // A weight set applied more than once that maps C→C (a repeat
                        // feeds itself) must stay C→C: suggest the channels received both ways.
                        let repeated = in_ch == out_ch && unrolled_repeat(net, idx);
                        let out_fixed = if repeated { s.c } else { out_ch };
                        let fixed = LayerKind::Conv { in_ch: s.c, out_ch: out_fixed, kernel, stride, pad };
                        diags.push(ShapeError::Mismatch {
                            message: format!("{name} declares {in_ch} input channels but receives {} ({s}) from {from}", s.c),
                            span,
                            label: format!("declares {in_ch}, receives {}", s.c),
                            help: Some(format!("write `{}`", signature_text(&wname, &fixed))),
                        });
                    }
                    let h = out_size(s.h, kernel, stride, pad);
                    let w = out_size(s.w, kernel, stride, pad);
                    match (h, w) {
                        (Some(h), Some(w)) if h > 0 && w > 0 => Some(Shape::new(out_ch, h, w)),
                        (None, _) | (_, None) => {
                            diags.push(ShapeError::Overflow { name: name.clone(), span });
                            None
                        }
                        _ => {
                            diags.push(ShapeError::Window {
                                message: format!(
                                    "the {kernel}×{kernel} kernel of {name} is larger than its input {s} from {from} (padding {pad})"
                                ),
                                span,
                                label: format!("kernel {kernel}×{kernel} on {}×{} padded by {pad}", s.h, s.w),
                                help: Some("the spatial size would reach zero; use a smaller kernel or more padding, or pool less before it".into()),
                            });
                            None
                        }
                    }
                })
            }
            Op::Fc { weights } => {
                let ws = &net.weights[weights.0];
                let LayerKind::Fc { inputs: declared, outputs } = ws.kind else { continue };
                let wname = ws.name.clone();
                main.and_then(|s| match s.features() {
                    None => {
                        diags.push(ShapeError::Overflow { name: name.clone(), span });
                        None
                    }
                    Some(f) => {
                        if f != declared {
                            let repeated = declared == outputs && unrolled_repeat(net, idx);
                            let fixed = LayerKind::Fc { inputs: f, outputs: if repeated { f } else { outputs } };
                            diags.push(ShapeError::Mismatch {
                                message: format!("{name} declares {declared} inputs but receives {} from {from}", features_text(&s)),
                                span,
                                label: format!("declares {declared}, receives {f}"),
                                help: Some(format!("write `{}`", signature_text(&wname, &fixed))),
                            });
                        }
                        Some(Shape::new(outputs, 1, 1))
                    }
                })
            }
            Op::Join { mode } => join_shape(net, idx, mode, &in_shapes, &inputs, &apps, span, diags),
        };
        net.graph[idx].out_shape = out;
    }
}

/// Whether the weighted node `idx` comes from an `xN` repeat (a layer or block feeding
/// itself, which must stay C→C): the unrolled applications of one written layer share its
/// span, while a name written again has a span of its own.
fn unrolled_repeat(net: &Network, idx: NodeIndex) -> bool {
    let node = &net.graph[idx];
    let Some(w) = node.op.weights() else {
        return false;
    };
    net.graph
        .node_weights()
        .any(|m| m.op.weights() == Some(w) && m.step != node.step && m.span == node.span)
}

#[allow(clippy::too_many_arguments)]
fn join_shape(
    net: &Network,
    idx: NodeIndex,
    mode: JoinMode,
    in_shapes: &[Option<Shape>],
    inputs: &[NodeIndex],
    apps: &[u32],
    span: Span,
    diags: &mut Diagnostics,
) -> Option<Shape> {
    let shapes: Option<Vec<Shape>> = in_shapes.iter().copied().collect();
    let shapes = shapes?;
    let first = *shapes.first()?;
    // Into an FC layer, feature vectors are joined; otherwise feature maps.
    let into_fc = net
        .graph
        .edges_directed(idx, Direction::Outgoing)
        .any(|e| matches!(net.graph[e.target()].op, Op::Fc { .. }));
    let target = &net.graph[idx].name;
    let names: Vec<String> = inputs
        .iter()
        .map(|&i| super::display_name(&net.graph[i], apps))
        .collect();
    let mut overflow = false;
    let result = if into_fc {
        let feats: Vec<u64> = shapes
            .iter()
            .map(|s| s.features().unwrap_or(u64::MAX))
            .collect();
        match mode {
            JoinMode::Concat => feats
                .iter()
                .try_fold(0u64, |a, &f| a.checked_add(f))
                .map(|t| Shape::new(t, 1, 1))
                .or_else(|| {
                    overflow = true;
                    None
                }),
            JoinMode::Add => {
                if feats.iter().all(|&f| f == feats[0]) {
                    Some(Shape::new(feats[0], 1, 1))
                } else {
                    None
                }
            }
        }
    } else {
        let same_hw = shapes.iter().all(|s| s.h == first.h && s.w == first.w);
        match mode {
            JoinMode::Concat if same_hw => shapes
                .iter()
                .try_fold(0u64, |a, s| a.checked_add(s.c))
                .map(|c| Shape::new(c, first.h, first.w))
                .or_else(|| {
                    overflow = true;
                    None
                }),
            JoinMode::Add if shapes.iter().all(|s| *s == first) => Some(first),
            _ => None,
        }
    };
    if overflow {
        diags.push(ShapeError::Overflow {
            name: target.clone(),
            span,
        });
        return None;
    }
    if result.is_none() {
        let listing: Vec<String> = shapes
            .iter()
            .zip(&names)
            .map(|(s, n)| format!("{s} from {n}"))
            .collect();
        let (verb, help) = match mode {
            JoinMode::Concat => ("concatenated", "concatenation needs equal height and width; pool the skip path or the main path to match"),
            JoinMode::Add => ("added", "addition needs equal shapes; use `concat`, or make the channels and sizes agree"),
        };
        let fed = net
            .graph
            .edges_directed(idx, Direction::Outgoing)
            .map(|e| e.target())
            .next();
        diags.push(ShapeError::Join {
            message: format!("{} cannot be {verb}", listing.join(" and ")),
            span,
            target_span: fed.map(|t| net.graph[t].span),
            target_label: format!("joined into `{}` here", target.trim_start_matches("Join→")),
            label: format!("shapes cannot be {verb} here"),
            help: Some(help.into()),
        });
    }
    result
}
