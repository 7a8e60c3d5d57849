//! `resolve`: layer names → weight sets. The first use of a name with a signature declares
//! the weight set; every later use (with the same signature, or bare) applies the same
//! weights. Afterwards no `Op::Layer` remains.

use std::collections::HashMap;

use miette::Diagnostic;
use thiserror::Error;

use super::{channels, channels_reaching};
use crate::diagnostics::Diagnostics;
use crate::ir::{LayerKind, Network, Op, WeightId, WeightSet};
use crate::span::Span;

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
        help("a name names one set of weights; write `{suggest}` each time (or just `{name}` after the first), or give the new layer another name")
    )]
    SignatureMismatch {
        name: String,
        first: String,
        second: String,
        /// The signature that fits: see [`consistent_signature`].
        suggest: String,
        /// The use with the second signature: the site to edit (primary label).
        #[label(primary, "second signature {second}")]
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

/// Among the signatures one name is written with (in source order), the one to suggest: a
/// weight set applied more than once maps C → C, so prefer in == out, and among those the
/// one whose input matches the channels `reaching` its first use; failing in == out, the
/// one matching those channels; else the first.
pub(crate) fn consistent_signature(sigs: &[LayerKind], reaching: Option<u64>) -> Option<LayerKind> {
    let c_to_c = |k: &LayerKind| channels(k).0 == channels(k).1;
    let fits =
        |k: &LayerKind| Some(channels(k).0) == reaching && matches!(k, LayerKind::Conv { .. });
    sigs.iter()
        .find(|k| c_to_c(k) && fits(k))
        .or_else(|| sigs.iter().find(|k| c_to_c(k)))
        .or_else(|| sigs.iter().find(|k| fits(k)))
        .or(sigs.first())
        .copied()
}

pub fn run(net: &mut Network, diags: &mut Diagnostics) {
    let order = net.topo_order();
    // Every signature each name is written with, in order, and the channels reaching its
    // first use written with a signature: the material for the helps.
    let mut written: HashMap<String, (Vec<LayerKind>, Option<u64>)> = HashMap::new();
    for &idx in &order {
        if let Op::Layer {
            signature: Some(sig),
        } = net.graph[idx].op
        {
            let entry = written
                .entry(net.graph[idx].name.clone())
                .or_insert_with(|| (Vec::new(), channels_reaching(net, idx)));
            if !entry.0.contains(&sig) {
                entry.0.push(sig);
            }
        }
    }
    let mut by_name: HashMap<String, WeightId> = HashMap::new();
    for idx in order {
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
                    let suggest = written
                        .get(&name)
                        .and_then(|(sigs, reaching)| consistent_signature(sigs, *reaching))
                        .unwrap_or(ws.kind);
                    diags.push(ResolveError::SignatureMismatch {
                        suggest: signature_text(&name, &suggest),
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
                let help = Some(match written.get(&name) {
                    Some((sigs, reaching)) => {
                        let sig = consistent_signature(sigs, *reaching)
                            .map(|k| signature_text(&name, &k))
                            .unwrap_or_else(|| name.clone());
                        format!("write `{name}` with its signature the first time: `{sig}`")
                    }
                    None if name.starts_with("FC") => format!(
                        "declare it with a signature: `{name}(INPUTS,OUTPUTS)`, e.g. `{name}(512,10)`"
                    ),
                    None => match channels_reaching(net, idx) {
                        Some(c) => format!(
                            "declare it with a signature: `{name}(IN,OUT,KxK/S)`, e.g. `{name}({c},{c},3x3/1)` for the {c} channels reaching it"
                        ),
                        None => format!(
                            "declare it with a signature: `{name}(IN,OUT,KxK/S)`, e.g. `{name}(64,64,3x3/1)`"
                        ),
                    },
                });
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
