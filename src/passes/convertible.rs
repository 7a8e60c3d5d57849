//! What ANN-to-SNN conversion can simulate rate-correctly, checked on the final IR: part of
//! the `validate` pass for a network whose `method` is `conversion`, and called by
//! `snnc train --method conversion` for any network.
//!
//! Conversion runs the trained ANN as IF neurons whose spike rates approximate the ANN's
//! activations; the approximation error shrinks as T grows only where every operation is
//! linear in the rates (convolutions, FC layers, average pools, `add` and `concat` joins,
//! dropout, which is the identity at test time) or is the spiking non-linearity itself
//! (ReLU → IF). The kinds that break it:
//!
//! - **max pooling of spike maps** (`MaxPool` in the SNN domain): the pooled map fires when
//!   *any* input of the window fires (an OR), so its rate is `1 − Π(1 − rᵢ)`, above the
//!   ANN's `max rᵢ` for any window with two active inputs, at every T. Refused with
//!   `snnc::conversion::max_pool`; `AvgPool` (`Pool`) is the conversion-safe pool.
//!
//! LIF layers are not refused: conversion runs every spiking layer as an IF neuron with a
//! balanced threshold (the leak of the file is not used); `snnc train` says so.

use miette::Diagnostic;
use thiserror::Error;

use crate::ir::{Domain, Network, Op, PoolKind};
use crate::span::Span;

/// A layer that conversion cannot simulate rate-correctly.
#[derive(Debug, Clone, Error, Diagnostic)]
#[error(
    "`{layer}` max-pools spike maps, which ANN-to-SNN conversion cannot simulate rate-correctly"
)]
#[diagnostic(
    code(snnc::conversion::max_pool),
    help(
        "a max-pooled spike map fires when any input of the window fires, so its rate exceeds the \
         ANN's maximum at every T; use `AvgPool` (or `Pool`) in a network meant for conversion"
    )
)]
pub struct MaxPoolOfSpikes {
    pub layer: String,
    #[label("max pooling of spikes")]
    pub span: Span,
}

/// Every layer of `net` (final IR: domains filled by the `hybrid` pass) that conversion
/// cannot simulate rate-correctly, in graph order. Empty when the network converts.
pub fn conversion_problems(net: &Network) -> Vec<MaxPoolOfSpikes> {
    let mut out = Vec::new();
    for n in net.graph.node_indices() {
        let node = &net.graph[n];
        let is_max = matches!(
            node.op,
            Op::Pool {
                kind: PoolKind::Max,
                ..
            }
        );
        if is_max && node.domain == Some(Domain::Snn) {
            out.push(MaxPoolOfSpikes {
                layer: node.name.clone(),
                span: node.span,
            });
        }
    }
    out
}
