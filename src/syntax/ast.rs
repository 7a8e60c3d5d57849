//! The typed AST of a `.snn` file. Every node keeps the [`Span`] of its text.
//!
//! Values are already checked for range here (`syntax::lower` reports bad numbers), so the
//! builder only deals with structure: what feeds what, names, skips.

use crate::ir::{
    Classifier, Encoding, LayerKind, Method, NeuronKind, PoolKind, Reset, Shape, StdpSettings,
};
use crate::span::Span;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceFile {
    pub networks: Vec<NetworkDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDecl {
    pub name: String,
    pub name_span: Span,
    /// The whole `network NAME { ... }` text.
    pub span: Span,
    pub settings: Vec<Setting>,
    /// The main path, in source order.
    pub chain: Vec<ChainItem>,
    pub skips: Vec<SkipDecl>,
    pub classifier: Option<(Classifier, Span)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub kind: SettingKind,
    /// The whole setting item.
    pub span: Span,
    /// The keyword.
    pub key_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SettingKind {
    Input(Shape),
    Timesteps(u32),
    Encode(Encoding),
    Neuron(NeuronDecl),
    Surrogate {
        gamma: f32,
    },
    Method(Method),
    /// `stdp(eta=.., tau=.., ...)`: the STDP constants written (range-checked).
    Stdp(StdpSettings),
}

impl SettingKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            SettingKind::Input(_) => "input",
            SettingKind::Timesteps(_) => "timesteps",
            SettingKind::Encode(_) => "encode",
            SettingKind::Neuron(_) => "neuron",
            SettingKind::Surrogate { .. } => "surrogate",
            SettingKind::Method(_) => "method",
            SettingKind::Stdp(_) => "stdp",
        }
    }
}

/// A spiking neuron as written; unset parameters come from the network's `neuron`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuronDecl {
    pub kind: NeuronKind,
    pub leak: Option<f32>,
    pub threshold: Option<f32>,
    pub reset: Option<Reset>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActivationDecl {
    Relu,
    Spiking(NeuronDecl),
}

/// One element of the main path with what is written around it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainItem {
    pub kind: ChainKind,
    pub activation: Option<(ActivationDecl, Span)>,
    /// `x N` (N ≥ 1).
    pub repeat: Option<(u32, Span)>,
    /// The element itself (layer call or block), without activation and repeat.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChainKind {
    /// A weighted layer: `Conv3(64,64,3x3/1)`, `FC1(4096,512)`, or a bare name `Conv3`
    /// (`signature` None).
    Layer {
        name: String,
        name_span: Span,
        signature: Option<LayerKind>,
    },
    Pool {
        name: String,
        kind: PoolKind,
        window: u64,
        stride: u64,
    },
    Dropout {
        p: f32,
    },
    /// `[ ... ]`.
    Block(Vec<ChainItem>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinModeDecl {
    Concat,
    Add,
}

/// `skip A -> B concat|add`.
#[derive(Debug, Clone, PartialEq)]
pub struct SkipDecl {
    /// `None` for `Input`.
    pub from: Option<String>,
    pub from_span: Span,
    pub to: String,
    pub to_span: Span,
    pub mode: JoinModeDecl,
    pub span: Span,
}
