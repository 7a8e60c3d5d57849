//! Cost and energy: side tables computed from the final IR (after every pass). Never
//! mutates the IR. Owner of every energy rule of snnc (Eq. 8–11, Table I): `estimate`, the
//! training reports and `estimate --activity` all price through [`estimate`] (training code
//! through [`price`], which calls it; conversion's input-density figure through
//! [`price_by_input_density`]).
//!
//! [`estimate`] gives one [`LayerCost`] row per layer application (each unroll step its own
//! row; `Input`, `Encode`, `Boundary` and `Join` nodes get no row) and the totals of the
//! paper's Section VII, all energies **per image** (one inference over T steps):
//! - ops per time step: Eq. 8, `O_h·O_w·N·k²·M` for a convolution (the paper's `O²` for a
//!   square output), `X·Y` for an FC layer, 0 for pools and dropouts; exact integers (u128,
//!   saturating, so no network overflows);
//! - params: a weight set's parameters on its first application only, 0 on later steps
//!   (shared weights counted once); the total is [`unique_parameters`]: the weight sets plus,
//!   with `stochmax`, its retain and auxiliary heads (2·(H·K + K), biases included);
//! - op: a ReLU layer is MAC, once; a spiking layer (LIF/IF) fed by spikes is AC at each of
//!   T steps; the last layer (logits, no activation) takes the kind of what feeds it: AC
//!   after a spiking layer, MAC after a ReLU layer or the input itself;
//! - a spiking layer fed by real values (`encode direct`, or a ReLU block through an
//!   ANN→SNN boundary) multiplies: under [`Convention::Strict`] (the default) it is ops MACs
//!   at each of the T steps it is fed (ops·E_MAC·T); under [`Convention::Paper`] it is priced
//!   as Eq. 11 prints it, AC at its own output rate;
//! - SA, the spike activity that scales an AC layer's ops, is the rate of the layer's *input*
//!   spikes: the output rate of the nearest spiking layer upstream, or the Poisson input's
//!   rate for a layer fed by the input. On the way: dropouts and average pools pass the rate
//!   unchanged (an average pool is linear: the pooled map's mean value is the input's rate, and
//!   the next layer's accumulates are counted per unit of spike, the paper's SA); a max pool
//!   of a w×w window fires when any spike of its window does, `1 − (1 − r)^(w²)` for
//!   independent spikes at rate r (≥ r, ≤ min(1, w²·r)); a `concat` join averages its inputs'
//!   rates weighted by their features; an `add` join sums them (the summed maps carry every
//!   spike of both, so the next layer accumulates once per spike: SA may exceed 1).
//! - FLOPS_ANN = Σ ops; FLOPS_SNN = Σ_AC ops·SA + Σ_MAC ops (Eq. 9, per time step);
//!   E_ANN = Σ ops·E_MAC (Eq. 10: the same topology, ReLU everywhere, T = 1);
//!   E_SNN = Σ_AC ops·SA·E_AC·T + Σ_MAC ops·E_MAC·n (Eq. 11; n = 1 for ANN layers, T for a
//!   strict-priced spiking layer fed by real values); EE = E_ANN / E_SNN (`None` when E_SNN
//!   is 0).
//!
//! For an all-spiking, Poisson-coded network at a uniform rate SA this gives
//! EE = E_MAC / (E_AC·SA·T) exactly (32/(SA·T) with Table I).

pub mod activity;

pub use activity::{
    Activity, ActivityError, ActivityReport, Convention, EnergyModel, InputRateSource, E_AC_PJ,
    E_MAC_PJ,
};

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use serde::Serialize;

use crate::ir::{
    Activation, BoundaryKind, Classifier, Domain, Encoding, JoinMode, LayerKind, Network,
    NeuronKind, Op, PoolKind, Shape,
};

/// What an estimate needs besides the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Latency T; `None`: the network's `timesteps`, else the default of its method
    /// ([`crate::ir::defaults::timesteps`], the T `train` and `eval` use).
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
    /// How many times per image the ops are performed: T for AC layers and strict-priced
    /// spiking layers fed by real values, 1 for ANN layers, 0 without arithmetic.
    pub times: u32,
    /// The activity that scales the ops of an AC layer (1 for MAC layers); may exceed 1
    /// after an `add` join.
    pub sa: f64,
    /// Energy of this application in the SNN per image (Eq. 11's term), pJ.
    pub energy_pj: f64,
    /// Energy of this application in the ANN baseline per image (Eq. 10's term), pJ.
    pub e_ann_pj: f64,
}

/// Unique parameters of a network ([`unique_parameters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Parameters {
    /// Every weight set once, however often applied (no biases): Σ I·O·K² or X·Y.
    pub layers: u64,
    /// The classifier head's own parameters: with `stochmax`, the retain map ρ and the
    /// auxiliary map r, each `H → K` with bias, so 2·(H·K + K); 0 with `softmax`.
    pub head: u64,
    /// `layers + head` (saturating).
    pub total: u64,
}

/// The unique parameters of `net` (final form): its weight sets, each once (shared weights
/// of an unrolled layer counted once), plus the stochmax heads where the network has them.
/// H is the feature count feeding the last layer, K the last layer's outputs (the backend's
/// `Stochmax::new(H, K)`): FC2(512,10) gives 2·(512·10 + 10) = 10,260. Saturates at
/// `u64::MAX`; never fails.
pub fn unique_parameters(net: &Network) -> Parameters {
    let layers = net.weights.iter().fold(0u64, |acc, w| {
        acc.saturating_add(w.params().unwrap_or(u64::MAX))
    });
    let head = match net.settings.classifier {
        Classifier::Softmax => 0,
        Classifier::Stochmax => {
            let features = |ix| {
                net.graph
                    .node_weight(ix)
                    .and_then(|n: &crate::ir::Node| n.out_shape)
                    .and_then(|s| s.features())
            };
            let k = features(net.output).unwrap_or(0);
            let h = net
                .inputs_of(net.output)
                .first()
                .and_then(|&i| features(i))
                .unwrap_or(0);
            h.saturating_mul(k).saturating_add(k).saturating_mul(2)
        }
    };
    Parameters {
        layers,
        head,
        total: layers.saturating_add(head),
    }
}

/// The totals and rows of one network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub name: String,
    /// Unique parameters, classifier head included (saturating): `parameters.total`.
    pub params: u64,
    /// The split of `params` into weight sets and classifier head.
    pub parameters: Parameters,
    /// Number of conv/FC applications.
    pub logical_depth: u64,
    pub timesteps: u32,
    /// The uniform rate (or the fallback of measured rates).
    pub spike_rate: f64,
    pub energy: EnergyModel,
    /// The unit of every energy: `pJ per image` (one inference, T steps).
    pub energy_unit: &'static str,
    pub flops_ann: f64,
    pub flops_snn: f64,
    /// Eq. 10, pJ per image.
    pub e_ann_pj: f64,
    /// Eq. 11, pJ per image.
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

/// The T of a network that writes no `timesteps`: its method's default, saturated to u32.
pub fn default_timesteps(net: &Network) -> u32 {
    u32::try_from(crate::ir::defaults::timesteps(net.settings.method)).unwrap_or(u32::MAX)
}

/// The cost table of a network in its final form (see the module docs for every rule).
/// Energies in pJ per image. Never fails: sizes saturate, unknown shapes count 0 ops.
pub fn estimate(net: &Network, opts: &Options) -> Estimate {
    let t = opts
        .timesteps
        .or(net.settings.timesteps)
        .unwrap_or_else(|| default_timesteps(net));
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
        let join = match node.op {
            Op::Join { mode } => mode,
            _ => JoinMode::Concat,
        };
        let fed = feed(net, &inputs, &carries, join);
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
            Op::Pool {
                kind: PoolKind::Max,
                window,
                ..
            } => match fed {
                Carries::Spikes { rate, from_input } => Carries::Spikes {
                    rate: max_pool_rate(rate, *window),
                    from_input,
                },
                Carries::Real => Carries::Real,
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
            times: 0,
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
            let strict = e.convention == Convention::Strict;
            let in_snn = node.domain == Some(Domain::Snn);
            let (op, sa, times) = match (node.activation, fed) {
                (Activation::Relu, _) => (OpKind::Mac, 1.0, 1),
                (Activation::Spiking(_), Carries::Spikes { rate, .. }) => (OpKind::Ac, rate, t),
                (Activation::Spiking(_), Carries::Real) if strict => (OpKind::Mac, 1.0, t),
                (Activation::Spiking(_), Carries::Real) => (OpKind::Ac, own_rate, t),
                (
                    Activation::None,
                    Carries::Spikes {
                        rate,
                        from_input: false,
                    },
                ) => (OpKind::Ac, rate, t),
                (Activation::None, Carries::Real) if strict && in_snn => (OpKind::Mac, 1.0, t),
                (Activation::None, _) => (OpKind::Mac, 1.0, 1),
            };
            row.op = op;
            row.sa = sa;
            row.times = times;
            row.e_ann_pj = ops * e.e_mac;
            row.energy_pj = match op {
                OpKind::Ac => ops * sa * e.e_ac * f64::from(times),
                _ => ops * e.e_mac * f64::from(times),
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

    let parameters = unique_parameters(net);
    Estimate {
        name: net.name.clone(),
        params: parameters.total,
        parameters,
        logical_depth: depth,
        timesteps: t,
        spike_rate: act.uniform_rate(),
        energy: e,
        energy_unit: ENERGY_UNIT,
        flops_ann,
        flops_snn,
        e_ann_pj: e_ann,
        e_snn_pj: e_snn,
        ee: (e_snn > 0.0).then(|| e_ann / e_snn),
        layers,
    }
}

/// The unit of every energy an [`Estimate`] holds.
pub const ENERGY_UNIT: &str = "pJ per image";

/// The output rate of a max pool with a `window`×`window` window over independent spikes at
/// rate `r`: the probability that at least one of its w² inputs spikes, `1 − (1 − r)^(w²)`.
/// At least `r` (for w ≥ 1), at most `min(1, w²·r)`; `r` itself for w = 1 or r ∈ {0, 1}.
pub fn max_pool_rate(r: f64, window: u64) -> f64 {
    let n = window.saturating_mul(window);
    if n <= 1 {
        return r;
    }
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    (1.0 - (1.0 - r).powi(n)).clamp(r.min(1.0), 1.0)
}

/// What reaches a node: its inputs' carries. Real values win; spike rates of several inputs
/// combine by `join`: `concat` averages them weighted by features, `add` sums them.
fn feed(
    net: &Network,
    inputs: &[NodeIndex],
    carries: &HashMap<NodeIndex, Carries>,
    join: JoinMode,
) -> Carries {
    let mut total = 0.0;
    let mut weighted = 0.0;
    let mut sum = 0.0;
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
                sum += rate;
                all_input &= from_input;
            }
        }
    }
    if inputs.is_empty() {
        return Carries::Real;
    }
    let rate = match join {
        JoinMode::Add => sum,
        JoinMode::Concat if total > 0.0 => weighted / total,
        JoinMode::Concat => 0.0,
    };
    Carries::Spikes {
        rate,
        from_input: all_input,
    }
}

/// Spike rates measured by a training or evaluation run, as [`price`] takes them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeasuredRun {
    /// Output spike rate (spikes per neuron per step, in [0, 1]) per (layer name, unroll
    /// step); non-finite values are ignored, others clamped to [0, 1].
    pub rates: HashMap<(String, u32), f64>,
    /// The Poisson-coded input's measured rate; `None`: `fallback`.
    pub input_rate: Option<f64>,
    /// The rate of every spiking layer `rates` does not name.
    pub fallback: f64,
    /// The latency T the rates were measured at (≥ 1; 0 is taken as 1).
    pub timesteps: u32,
}

/// E_ANN, E_SNN (pJ per image) and EE of one priced run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Energy {
    /// Eq. 10, pJ per image.
    pub e_ann_pj: f64,
    /// Eq. 11, pJ per image.
    pub e_snn_pj: f64,
    /// E_ANN / E_SNN; `None` when E_SNN is 0.
    pub ee: Option<f64>,
}

/// The single entry point for training and evaluation code: prices `net` (final form) at
/// the measured rates of `run` with `energy` (use [`EnergyModel::INT32`], Table I, and its
/// default strict convention), through [`estimate`], so every report and
/// `snnc estimate --activity` on that report give the same E_ANN, E_SNN and EE. Never fails.
pub fn price(net: &Network, run: &MeasuredRun, energy: EnergyModel) -> Energy {
    let clamp = |r: f64| r.is_finite().then(|| r.clamp(0.0, 1.0));
    let fallback = clamp(run.fallback).unwrap_or(0.0);
    let mut rates: HashMap<(String, u32), f64> = run
        .rates
        .iter()
        .filter_map(|(k, &r)| clamp(r).map(|r| (k.clone(), r)))
        .collect();
    if let Some(r) = run.input_rate.and_then(clamp) {
        rates.insert(("Input".to_string(), 1), r);
    }
    let est = estimate(
        net,
        &Options {
            timesteps: Some(run.timesteps.max(1)),
            activity: Activity::Measured { rates, fallback },
            energy,
        },
    );
    Energy {
        e_ann_pj: est.e_ann_pj,
        e_snn_pj: est.e_snn_pj,
        ee: est.ee,
    }
}

/// Prices `net` with the SA of each weighted layer application given directly, as measured
/// (e.g. the fraction of non-zero inputs per step, which after an average pool exceeds the
/// upstream spike rate): the same rows, MAC/AC kinds and T as [`estimate`], but an AC row's
/// SA is `input_sa[(layer, step)]` (1 when absent; non-finite values count as absent, others
/// are clamped to ≥ 0). For conversion's input-density figure. Never fails.
pub fn price_by_input_density(
    net: &Network,
    input_sa: &HashMap<(String, u32), f64>,
    timesteps: u32,
    energy: EnergyModel,
) -> Energy {
    let est = estimate(
        net,
        &Options {
            timesteps: Some(timesteps.max(1)),
            activity: Activity::Uniform(1.0),
            energy,
        },
    );
    let mut e_snn = 0.0;
    for l in &est.layers {
        let ops = l.ops as f64;
        e_snn += match l.op {
            OpKind::Ac => {
                let sa = input_sa
                    .get(&(l.name.clone(), l.step))
                    .copied()
                    .filter(|r| r.is_finite())
                    .map_or(1.0, |r| r.max(0.0));
                ops * sa * energy.e_ac * f64::from(l.times)
            }
            OpKind::Mac => ops * energy.e_mac * f64::from(l.times),
            OpKind::None => 0.0,
        };
    }
    Energy {
        e_ann_pj: est.e_ann_pj,
        e_snn_pj: e_snn,
        ee: (e_snn > 0.0).then(|| est.e_ann_pj / e_snn),
    }
}

#[cfg(test)]
mod tests;
