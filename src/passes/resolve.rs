//! `resolve`: layer names → weight sets. The first use of a name with a signature declares
//! the weight set; every later use (with the same signature, or bare) applies the same
//! weights. Afterwards no `Op::Layer` remains.

use std::collections::HashMap;

use miette::Diagnostic;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::{LayerKind, Network, Op, WeightId, WeightSet};
use crate::syntax::span::Span;

#[derive(Debug, Error, Diagnostic)]
pub enum ResolveError {
    #[error("`{name}` is used before it is declared")]
    #[diagnostic(code(snnc::resolve::unknown_name))]
    UnknownName {
        name: String,
        #[label("bare name with no signature before it")]
        span: Span,
        #[help]
        help: Option<String>,
    },

    #[error("`{name}` is used with two signatures: {first} and {second}")]
    #[diagnostic(
        code(snnc::resolve::signature_mismatch),
        help("a name names one set of weights; write `{first}` again (or just `{name}`), or give the new layer another name")
    )]
    SignatureMismatch {
        name: String,
        first: String,
        second: String,
        #[label("{second}")]
        span: Span,
        #[label("first declared as {first}")]
        first_span: Span,
    },

    #[error("`{name}` has too many parameters to count")]
    #[diagnostic(
        code(snnc::resolve::overflow),
        help("the parameter count overflows 64 bits")
    )]
    ParamOverflow {
        name: String,
        #[label("too large")]
        span: Span,
    },
}

/// `Conv3(64,64,3x3/1)`, `Conv3(64,64,3x3/1, pad=0)`, `FC1(4096,512)`.
pub fn signature_text(name: &str, kind: &LayerKind) -> String {
    match *kind {
        LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            stride,
            pad,
        } => {
            if pad == kernel / 2 {
                format!("{name}({in_ch},{out_ch},{kernel}x{kernel}/{stride})")
            } else {
                format!("{name}({in_ch},{out_ch},{kernel}x{kernel}/{stride}, pad={pad})")
            }
        }
        LayerKind::Fc { inputs, outputs } => format!("{name}({inputs},{outputs})"),
    }
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    let mut by_name: HashMap<String, WeightId> = HashMap::new();
    let declared: std::collections::HashSet<String> = net
        .graph
        .node_weights()
        .filter(|n| matches!(n.op, Op::Layer { signature: Some(_) }))
        .map(|n| n.name.clone())
        .collect();
    for idx in net.topo_order() {
        let node = &net.graph[idx];
        let Op::Layer { signature } = node.op else {
            continue;
        };
        let name = node.name.clone();
        let span = node.span;
        let id = match (by_name.get(&name), signature) {
            (Some(&id), None) => id,
            (Some(&id), Some(sig)) => {
                let ws = &net.weights[id.0];
                if ws.kind != sig {
                    diags.push(ResolveError::SignatureMismatch {
                        first: signature_text(&name, &ws.kind),
                        second: signature_text(&name, &sig),
                        name,
                        span,
                        first_span: ws.span,
                    });
                }
                id
            }
            (None, Some(sig)) => {
                if sig.params().is_none() {
                    diags.push(ResolveError::ParamOverflow {
                        name: name.clone(),
                        span,
                    });
                }
                let id = WeightId(net.weights.len());
                net.weights.push(WeightSet {
                    name: name.clone(),
                    kind: sig,
                    span,
                });
                by_name.insert(name, id);
                id
            }
            (None, None) => {
                let later = declared.contains(&name);
                let help = if later {
                    Some(format!("write `{name}` with its signature the first time, e.g. `{name}(64,64,3x3/1)`"))
                } else {
                    Some(format!(
                        "declare it with a signature: `{name}(64,64,3x3/1)` or `{name}(512,10)`"
                    ))
                };
                diags.push(ResolveError::UnknownName { name, span, help });
                continue;
            }
        };
        let ws = &net.weights[id.0];
        let op = match ws.kind {
            LayerKind::Conv { .. } => Op::Conv { weights: id },
            LayerKind::Fc { .. } => Op::Fc { weights: id },
        };
        net.graph[idx].op = op;
    }
}
