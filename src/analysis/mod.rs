//! Cost and energy: side tables computed from the final IR (after every pass). Never
//! mutates the IR.
//!
//! [`estimate`] gives one [`LayerCost`] row per layer application (each unroll step its own
//! row; `Input`, `Encode`, `Boundary` and `Join` nodes get no row) and the totals of the
//! paper's Section VII:
//! - ops per time step: Eq. 8, `O_h·O_w·N·k²·M` for a convolution (the paper's `O²` for a
//!   square output), `X·Y` for an FC layer, 0 for pools and dropouts; exact integers (u128,
//!   saturating, so no network overflows);
//! - params: a weight set's parameters on its first application only, 0 on later steps
//!   (shared weights counted once); the total is [`crate::ir::Network::unique_params`];
//! - op: a ReLU layer is MAC, a spiking layer (LIF/IF) is AC; the last layer (logits, no
//!   activation) takes the kind of what feeds it: AC after a spiking layer, MAC after a ReLU
//!   layer or the input itself;
//! - SA, the spike activity that scales an AC layer's ops, is the rate of the layer's *input*
//!   spikes: the output rate of the nearest spiking layer upstream (through pools, dropouts,
//!   joins — a join averages its inputs' rates weighted by their features), or the Poisson
//!   input's rate for a layer fed by the input. A spiking layer fed by real values (a ReLU
//!   block through an ANN→SNN boundary, or direct coding) has no input spike rate; its own
//!   output rate stands in for it. With a uniform rate r every SA is r.
//! - FLOPS_ANN = Σ ops; FLOPS_SNN = Σ_AC ops·SA + Σ_MAC ops (Eq. 9, per time step);
//!   E_ANN = Σ ops·E_MAC (Eq. 10: the same topology, ReLU everywhere, T = 1);
//!   E_SNN = Σ_AC ops·SA·E_AC·T + Σ_MAC ops·E_MAC (Eq. 11; ANN layers run once);
//!   EE = E_ANN / E_SNN (`None` when E_SNN is 0).
//!
//! For an all-spiking network at a uniform rate SA this gives EE = E_MAC / (E_AC·SA·T)
//! exactly (32/(SA·T) with Table I).

pub mod activity;

pub use activity::{Activity, ActivityError, EnergyModel};

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use serde::Serialize;

use crate::ir::{
    Activation, BoundaryKind, Encoding, LayerKind, Network, NeuronKind, Op, PoolKind, Shape,
};

/// The latency used when neither the caller nor the network's `timesteps` sets one.
pub const DEFAULT_TIMESTEPS: u32 = 25;

/// What an estimate needs besides the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Latency T; `None`: the network's `timesteps`, else [`DEFAULT_TIMESTEPS`].
    pub timesteps: Option<u32>,
    pub activity: Activity,
    pub energy: EnergyModel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timesteps: None,
            activity: Activity::Uniform(0.1),
            energy: EnergyModel::INT32,
        }
    }
}

/// Multiply-accumulate (ReLU layers) or accumulate (spiking layers); `None` for layers
/// without arithmetic (pools, dropouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpKind {
    #[serde(rename = "MAC")]
    Mac,
    #[serde(rename = "AC")]
    Ac,
    #[serde(rename = "-")]
    None,
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpKind::Mac => "MAC",
            OpKind::Ac => "AC",
            OpKind::None => "-",
        })
    }
}

/// One layer application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub step: u32,
    /// `conv`, `fc`, `avgpool`, `maxpool` or `dropout`.
    pub kind: &'static str,
    /// `relu`, `lif`, `if` or `none`.
    pub activation: &'static str,
    pub out_shape: Option<Shape>,
    /// The weight set's parameters on its first application, 0 afterwards.
    pub params: u64,
    /// Operations per time step (Eq. 8, or X·Y).
    pub ops: u128,
    pub op: OpKind,
    /// The activity that scales the ops of an AC layer (1 for MAC layers).
    pub sa: f64,
    /// Energy of this application in the SNN (Eq. 11's term), pJ.
    pub energy_pj: f64,
    /// Energy of this application in the ANN baseline (Eq. 10's term), pJ.
    pub e_ann_pj: f64,
}

/// The totals and rows of one network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub name: String,
    /// Unique parameters (saturating).
    pub params: u64,
    /// Number of conv/FC applications.
    pub logical_depth: u64,
    pub timesteps: u32,
    /// The uniform rate (or the fallback of measured rates).
    pub spike_rate: f64,
    pub energy: EnergyModel,
    pub flops_ann: f64,
    pub flops_snn: f64,
    pub e_ann_pj: f64,
    pub e_snn_pj: f64,
    /// E_ANN / E_SNN; `None` when E_SNN is 0.
    pub ee: Option<f64>,
    pub layers: Vec<LayerCost>,
}

/// What a node's output carries, as seen by the layer it feeds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Carries {
    /// Spikes at this rate; `from_input` when they come straight from the encoded input.
    Spikes { rate: f64, from_input: bool },
    /// Real values (the image, ReLU outputs, rates after an SNN→ANN boundary).
    Real,
}

/// Eq. 8 (conv) or X·Y (FC): operations of one application per time step.
pub fn layer_ops(kind: &LayerKind, out: Option<Shape>) -> u128 {
    match *kind {
        LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            ..
        } => {
            let Some(o) = out else { return 0 };
            [o.h, o.w, in_ch, kernel, kernel, out_ch]
                .iter()
                .fold(1u128, |acc, &x| acc.saturating_mul(u128::from(x)))
        }
        LayerKind::Fc { inputs, outputs } => u128::from(inputs).saturating_mul(u128::from(outputs)),
    }
}

fn activation_name(a: &Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::Relu => "relu",
        Activation::Spiking(n) => match n.kind {
            NeuronKind::Lif => "lif",
            NeuronKind::If => "if",
        },
    }
}

/// The cost table of a network in its final form (see the module docs for every rule).
pub fn estimate(net: &Network, opts: &Options) -> Estimate {
    let t = opts
        .timesteps
        .or(net.settings.timesteps)
        .unwrap_or(DEFAULT_TIMESTEPS);
    let e = opts.energy;
    let act = &opts.activity;
    let order = net.topo_order();
    let mut carries: HashMap<NodeIndex, Carries> = HashMap::new();
    let mut layers = Vec::new();
    let (mut flops_ann, mut flops_snn, mut e_ann, mut e_snn) = (0.0, 0.0, 0.0, 0.0);
    let mut depth = 0u64;

    for &ix in &order {
        let node = &net.graph[ix];
        let inputs = net.inputs_of(ix);
        let fed = feed(net, &inputs, &carries);
        let own_rate = act.rate(&node.name, node.step);
        let out = match &node.op {
            Op::Input | Op::Encode { .. } => match net.settings.encode {
                Encoding::Poisson => Carries::Spikes {
                    rate: act.input_rate(),
                    from_input: true,
                },
                Encoding::Direct => Carries::Real,
            },
            Op::Boundary { kind } => match kind {
                BoundaryKind::AnnToSnn | BoundaryKind::SnnToAnn => Carries::Real,
            },
            Op::Pool { .. } | Op::Dropout { .. } | Op::Join { .. } | Op::Layer { .. } => fed,
            Op::Conv { .. } | Op::Fc { .. } => match node.activation {
                Activation::Spiking(_) => Carries::Spikes {
                    rate: own_rate,
                    from_input: false,
                },
                Activation::Relu | Activation::None => Carries::Real,
            },
        };
        carries.insert(ix, out);

        let kind = match &node.op {
            Op::Conv { .. } => "conv",
            Op::Fc { .. } => "fc",
            Op::Pool {
                kind: PoolKind::Avg,
                ..
            } => "avgpool",
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => "maxpool",
            Op::Dropout { .. } => "dropout",
            _ => continue,
        };
        let mut row = LayerCost {
            name: node.name.clone(),
            step: node.step,
            kind,
            activation: activation_name(&node.activation),
            out_shape: node.out_shape,
            params: 0,
            ops: 0,
            op: OpKind::None,
            sa: 1.0,
            energy_pj: 0.0,
            e_ann_pj: 0.0,
        };
        if let Some(w) = node.op.weights().and_then(|w| net.weights.get(w.0)) {
            depth += 1;
            if node.step == 1 {
                row.params = w.params().unwrap_or(u64::MAX);
            }
            row.ops = layer_ops(&w.kind, node.out_shape);
            let ops = row.ops as f64;
            let (op, sa) = match (node.activation, fed) {
                (Activation::Relu, _) => (OpKind::Mac, 1.0),
                (Activation::Spiking(_), Carries::Spikes { rate, .. }) => (OpKind::Ac, rate),
                (Activation::Spiking(_), Carries::Real) => (OpKind::Ac, own_rate),
                (
                    Activation::None,
                    Carries::Spikes {
                        rate,
                        from_input: false,
                    },
                ) => (OpKind::Ac, rate),
                (Activation::None, _) => (OpKind::Mac, 1.0),
            };
            row.op = op;
            row.sa = sa;
            row.e_ann_pj = ops * e.e_mac;
            row.energy_pj = match op {
                OpKind::Ac => ops * sa * e.e_ac * f64::from(t),
                _ => ops * e.e_mac,
            };
            flops_ann += ops;
            flops_snn += match op {
                OpKind::Ac => ops * sa,
                _ => ops,
            };
            e_ann += row.e_ann_pj;
            e_snn += row.energy_pj;
        }
        layers.push(row);
    }

    Estimate {
        name: net.name.clone(),
        params: net.weights.iter().fold(0u64, |acc, w| {
            acc.saturating_add(w.params().unwrap_or(u64::MAX))
        }),
        logical_depth: depth,
        timesteps: t,
        spike_rate: act.uniform_rate(),
        energy: e,
        flops_ann,
        flops_snn,
        e_ann_pj: e_ann,
        e_snn_pj: e_snn,
        ee: (e_snn > 0.0).then(|| e_ann / e_snn),
        layers,
    }
}

/// What reaches a node: its inputs' carries, a join averaging spike rates by features.
fn feed(net: &Network, inputs: &[NodeIndex], carries: &HashMap<NodeIndex, Carries>) -> Carries {
    let mut total = 0.0;
    let mut weighted = 0.0;
    let mut all_input = true;
    for (i, src) in inputs.iter().enumerate() {
        match carries.get(src).copied().unwrap_or(Carries::Real) {
            Carries::Real => return Carries::Real,
            Carries::Spikes { rate, from_input } => {
                let f = net.graph[*src]
                    .out_shape
                    .and_then(|s| s.features())
                    .map_or(1.0, |f| f as f64);
                // With one input the rate passes unchanged (no rounding).
                if i == 0 && inputs.len() == 1 {
                    return Carries::Spikes { rate, from_input };
                }
                total += f;
                weighted += f * rate;
                all_input &= from_input;
            }
        }
    }
    if inputs.is_empty() {
        return Carries::Real;
    }
    Carries::Spikes {
        rate: if total > 0.0 { weighted / total } else { 0.0 },
        from_input: all_input,
    }
}

#[cfg(test)]
mod tests;
