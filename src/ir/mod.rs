//! The intermediate representation: plain data, one [`Network`] per `network` block.
//!
//! A network is a directed acyclic petgraph of [`Node`]s. A node is one *application* of
//! an operation; the weights a convolution or FC layer uses live apart, in
//! [`Network::weights`], and a node refers to them by [`WeightId`]. A weight set applied
//! n times (BackRes: `Conv3 x4`, `[Conv2 Conv3] x2`, or a name written again) is one
//! [`WeightSet`] and n nodes with `step` 1..=n: shared weights are explicit, never copied.
//!
//! The front end (`crate::syntax::lower_ir`) makes a network from the AST; the passes (`crate::passes`)
//! then bring it, in a fixed order, to its final form. Invariants of the final form, checked
//! by the `validate` pass and relied upon by `analysis` and `backend`:
//! - the graph is acyclic, has exactly one [`Op::Input`] node ([`Network::input`]) and exactly
//!   one sink ([`Network::output`]), and every other node is reachable from the input;
//! - no [`Op::Layer`] (unresolved name) and no [`Network::repeats`] remain;
//! - every `Conv`/`Fc` node's [`WeightId`] indexes [`Network::weights`], and the nodes of one
//!   weight set carry steps 1..=n, each exactly once, in topological order;
//! - every node has `out_shape` set, and every input edge has a distinct `port` 0..k
//!   (port 0 is the main path; a [`Op::Join`] takes the skip inputs on ports 1..);
//! - every node has `domain` set; an edge between domains passes through a
//!   [`Op::Boundary`] node (an [`Op::Encode`] node where the input enters the SNN domain);
//! - every spiking node (activation [`Activation::Spiking`]) has `slot` set, indexing
//!   [`Network::thresholds`], one slot per (weight set, step).

pub mod defaults;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::span::Span;

/// Most nodes a network may have after unrolling (every application counts). The front
/// end's skip lowering and the `unroll` pass both stop there.
pub const MAX_APPLICATIONS: u64 = 1_000_000;

/// Index of a weight set in [`Network::weights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WeightId(pub usize);

/// Index of a threshold slot in [`Network::thresholds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SlotId(pub usize);

/// All networks of one source file, in source order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Program {
    pub networks: Vec<Network>,
}

/// One `network NAME { ... }` block.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub name: String,
    /// The span of the network's name.
    pub span: Span,
    pub settings: Settings,
    pub weights: Vec<WeightSet>,
    #[serde(skip)]
    pub graph: DiGraph<Node, Edge>,
    pub input: NodeIndex,
    pub output: NodeIndex,
    /// Repeated regions still to unroll (empty after the `unroll` pass).
    pub repeats: Vec<RepeatRegion>,
    /// Filled by the `threshold-slots` pass.
    pub thresholds: Vec<ThresholdSlot>,
}

/// The network-wide settings (`input`, `timesteps`, `encode`, `neuron`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub input: Option<Shape>,
    pub timesteps: Option<u32>,
    pub encode: Encoding,
    /// The neuron a layer gets when it names none.
    pub neuron: NeuronSpec,
    pub surrogate_gamma: f32,
    pub method: Method,
    pub classifier: Classifier,
    /// The STDP constants the file writes (`stdp(eta=.., ..)`); unwritten ones are `None`
    /// and come from `[train.stdp]` or the STDP defaults (`train::stdp`).
    #[serde(skip_serializing_if = "StdpSettings::is_empty")]
    pub stdp: StdpSettings,
}

/// The `stdp(...)` setting of a network file: the constants of STDP training (Eq. 5's η,
/// τ and offset, the weight bounds, uniform threshold adaptation, competition) that the
/// file fixes. Each is `None` when not written. Values are range-checked by the front end
/// (`syntax::lower`), with the same rules as `train::stdp::StdpConfig::validate`.
///
/// Precedence of a run (`snnc train --method stdp`): CLI flag > `[train.stdp]` TOML >
/// this setting > the defaults of `train::stdp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StdpSettings {
    /// η, learning rate (weight units per update), ≥ 0.
    pub eta: Option<f32>,
    /// τ, time constant of Eq. 5 (time steps), > 0.
    pub tau: Option<f32>,
    /// STDP_offset of Eq. 5, in [0, 1].
    pub offset: Option<f32>,
    /// Lower weight bound (`wmin`), < `w_max`.
    pub w_min: Option<f32>,
    /// Upper weight bound (`wmax`).
    pub w_max: Option<f32>,
    /// Threshold adaptation's target spike rate (spikes per neuron per step), in [0, 1].
    pub target_rate: Option<f32>,
    /// Threshold adaptation's gain per unit of rate error per mini-batch, ≥ 0.
    pub gain: Option<f32>,
    /// The lowest threshold adaptation may set, > 0.
    pub min_threshold: Option<f32>,
    /// Winner-take-all across feature maps at a position.
    pub wta: Option<bool>,
    /// Probability that a kernel sits out one step's update, in [0, 1).
    pub dropout: Option<f32>,
    /// Images per STDP mini-batch, ≥ 1.
    pub batch: Option<u32>,
    /// Training images presented per layer (as `--stdp-images`), ≥ 0.
    pub images: Option<u32>,
}

impl StdpSettings {
    /// The keys of `stdp(...)`, in the order `snnc show` prints them.
    pub const KEYS: [&'static str; 12] = [
        "eta",
        "tau",
        "offset",
        "wmin",
        "wmax",
        "target_rate",
        "gain",
        "min_threshold",
        "wta",
        "dropout",
        "batch",
        "images",
    ];

    /// Whether the file writes no STDP constant.
    pub fn is_empty(&self) -> bool {
        *self == StdpSettings::default()
    }

    /// The written constants as `key=value` in [`Self::KEYS`] order (empty when none).
    pub fn written(&self) -> Vec<String> {
        let f = |v: Option<f32>| v.map(|x| x.to_string());
        let vals = [
            f(self.eta),
            f(self.tau),
            f(self.offset),
            f(self.w_min),
            f(self.w_max),
            f(self.target_rate),
            f(self.gain),
            f(self.min_threshold),
            self.wta.map(|b| b.to_string()),
            f(self.dropout),
            self.batch.map(|b| b.to_string()),
            self.images.map(|b| b.to_string()),
        ];
        Self::KEYS
            .iter()
            .zip(vals)
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            input: None,
            timesteps: None,
            encode: Encoding::Poisson,
            neuron: NeuronSpec::default(),
            surrogate_gamma: 0.3,
            method: Method::Agd,
            classifier: Classifier::Softmax,
            stdp: StdpSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Poisson,
    Direct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Agd,
    Conversion,
    Stdp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Classifier {
    Softmax,
    Stochmax,
}

/// A feature map: channels × height × width. An FC layer's output is `features × 1 × 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Shape {
    pub c: u64,
    pub h: u64,
    pub w: u64,
}

impl Shape {
    pub fn new(c: u64, h: u64, w: u64) -> Self {
        Shape { c, h, w }
    }

    /// C·H·W, the features an FC layer receives; `None` on overflow.
    pub fn features(&self) -> Option<u64> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.c, self.h, self.w)
    }
}

/// The weights a name such as `Conv3` or `FC1` declares: one entity, however often applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightSet {
    pub name: String,
    pub kind: LayerKind,
    /// Where the signature was first written.
    pub span: Span,
}

impl WeightSet {
    /// Number of trainable parameters (layers carry no bias, as in the paper).
    pub fn params(&self) -> Option<u64> {
        self.kind.params()
    }
}

/// The signature of a weighted layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerKind {
    /// `ConvN(I,O,KxK/S[, pad=P])`.
    Conv {
        in_ch: u64,
        out_ch: u64,
        kernel: u64,
        stride: u64,
        pad: u64,
    },
    /// `FCN(X,Y)`.
    Fc { inputs: u64, outputs: u64 },
}

impl LayerKind {
    /// Weights of this signature: I·O·K² or X·Y; `None` on overflow.
    pub fn params(&self) -> Option<u64> {
        match *self {
            LayerKind::Conv {
                in_ch,
                out_ch,
                kernel,
                ..
            } => in_ch
                .checked_mul(out_ch)?
                .checked_mul(kernel)?
                .checked_mul(kernel),
            LayerKind::Fc { inputs, outputs } => inputs.checked_mul(outputs),
        }
    }
}

/// One application of an operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The name as written (`Conv3`, `FC1`); pools, dropouts and inserted nodes get
    /// generated names (`Pool1`, `Dropout1`, `Encode`, `Join→FC1`).
    pub name: String,
    pub op: Op,
    /// 1-based unroll step of this application of its weight set (1 for everything else).
    pub step: u32,
    pub activation: Activation,
    /// The text of this application.
    pub span: Span,
    /// Filled by the `shapes` pass.
    pub out_shape: Option<Shape>,
    /// Filled by the `hybrid` pass.
    pub domain: Option<Domain>,
    /// Filled by the `threshold-slots` pass for spiking nodes.
    pub slot: Option<SlotId>,
}

impl Node {
    /// A node with defaults for everything the passes fill in later.
    pub fn new(name: impl Into<String>, op: Op, activation: Activation, span: Span) -> Self {
        Node {
            name: name.into(),
            op,
            step: 1,
            activation,
            span,
            out_shape: None,
            domain: None,
            slot: None,
        }
    }

    /// `Conv3` for step 1 of a layer applied once, `Conv3@2` for its second application.
    pub fn display_name(&self, applications: u32) -> String {
        if applications > 1 {
            format!("{}@{}", self.name, self.step)
        } else {
            self.name.clone()
        }
    }

    pub fn is_spiking(&self) -> bool {
        matches!(self.activation, Activation::Spiking(_))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// The network's input image.
    Input,
    /// A layer name not yet resolved to a weight set (only before the `resolve` pass).
    /// `signature` is `None` for a bare repeated name (`Conv2 x4`).
    Layer {
        signature: Option<LayerKind>,
    },
    Conv {
        weights: WeightId,
    },
    Fc {
        weights: WeightId,
    },
    Pool {
        kind: PoolKind,
        window: u64,
        stride: u64,
    },
    Dropout {
        p: f32,
    },
    /// Where skip connections join the main path, right before the layer they feed.
    Join {
        mode: JoinMode,
    },
    /// The input image enters the SNN domain: rate (Poisson) or direct coding over T steps.
    Encode {
        encoding: Encoding,
    },
    /// A change of domain between an ANN block and an SNN block.
    Boundary {
        kind: BoundaryKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Avg,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinMode {
    Concat,
    Add,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundaryKind {
    /// ReLU → spiking: the real-valued output is fed to the SNN block at every step.
    AnnToSnn,
    /// Spiking → ReLU: the spike rate over the T steps passes.
    SnnToAnn,
}

/// Whether a node's value is computed once (ANN) or at each of T time steps (SNN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Ann,
    Snn,
}

/// What follows a layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "activation", rename_all = "lowercase")]
pub enum Activation {
    /// Pools, dropouts, inserted nodes, and the last layer (the classifier's logits).
    None,
    Relu,
    Spiking(NeuronSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NeuronKind {
    Lif,
    If,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    /// Reset by subtraction of the threshold.
    Subtract,
    /// Reset to zero.
    Zero,
}

/// A spiking neuron (Eq. 2–3): v[t+1] = leak·v[t] + I[t]; spike when v crosses the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NeuronSpec {
    pub kind: NeuronKind,
    /// α in (0, 1]; 1 for IF.
    pub leak: f32,
    pub threshold: f32,
    pub reset: Reset,
}

impl Default for NeuronSpec {
    fn default() -> Self {
        NeuronSpec {
            kind: NeuronKind::Lif,
            leak: 0.99,
            threshold: 1.0,
            reset: Reset::Subtract,
        }
    }
}

/// An edge carries a node's output to one input port of another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub port: u32,
    pub kind: EdgeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    Main,
    Skip,
}

/// A `[ ... ] xN` or `Layer xN` region awaiting the `unroll` pass: the chain of nodes
/// `first ..= last` on the main path is applied `count` times in a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatRegion {
    #[serde(skip)]
    pub first: NodeIndex,
    #[serde(skip)]
    pub last: NodeIndex,
    pub count: u32,
    pub span: Span,
}

/// One threshold: a spiking weight set at one unroll step (v_thresh,n).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdSlot {
    pub layer: String,
    pub step: u32,
    #[serde(skip)]
    pub node: NodeIndex,
    /// The threshold the neuron spec gives; conversion replaces it by a balanced one.
    pub initial: f32,
}

impl Network {
    /// Nodes in topological order (inputs before consumers); ties in insertion order.
    pub fn topo_order(&self) -> Vec<NodeIndex> {
        // The builder inserts nodes in source order and the passes keep that property for
        // the main path, but skip paths make a real sort necessary.
        petgraph::algo::toposort(&self.graph, None)
            .unwrap_or_else(|_| self.graph.node_indices().collect())
    }

    /// The producers feeding `node`, ordered by input port.
    pub fn inputs_of(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut edges: Vec<_> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (e.weight().port, e.source()))
            .collect();
        edges.sort_by_key(|(port, _)| *port);
        edges.into_iter().map(|(_, src)| src).collect()
    }

    /// How many times a weight set is applied (its highest unroll step).
    pub fn applications(&self, weights: WeightId) -> u32 {
        self.graph
            .node_weights()
            .filter(|n| n.op.weights() == Some(weights))
            .map(|n| n.step)
            .max()
            .unwrap_or(0)
    }

    /// Unique parameters: every weight set counted once, however often applied.
    pub fn unique_params(&self) -> Option<u64> {
        self.weights
            .iter()
            .try_fold(0u64, |acc, w| acc.checked_add(w.params()?))
    }
}

impl Op {
    /// The weight set a `Conv` or `Fc` node applies.
    pub fn weights(&self) -> Option<WeightId> {
        match self {
            Op::Conv { weights } | Op::Fc { weights } => Some(*weights),
            _ => None,
        }
    }
}
