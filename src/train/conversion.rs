//! ANN-to-SNN conversion (Section III.B.1 and IV of the paper): the ANN phase is the AGD loop
//! with `TrainMethod::Ann` (every spiking layer as ReLU, T = 1); this module then balances one
//! threshold per (spiking layer, unroll step) and runs the converted SNN, step by step.
//!
//! - [`Simulator`] executes a final-form network one time step at a time with integrate-and-
//!   fire neurons (leak 1, reset by subtraction or to zero), holding membrane potentials
//!   across steps, so memory does not grow with T. Conv and FC layers take the dense path
//!   (candle) or the event-driven one (`backend::candle::event`) by measured input density.
//! - Balancing: [`Balance::MaxInput`] (Sengupta et al. 2019): slot by slot in topological order,
//!   with earlier slots already balanced and spiking, Poisson trains of the balance images
//!   drive the network for `balance_steps` steps and the slot's threshold becomes the largest
//!   weighted input Σ w·x(t) it received. A BackRes layer's steps are separate slots and are
//!   balanced in order. [`Balance::Percentile`] (Rueckauer et al. 2017): λ = the P-th
//!   percentile of the ANN's non-zero activations per slot, threshold λ / λ_upstream.
//! - Evaluation at several latencies is one run at the largest T: the SNN is causal, so the
//!   first T steps of a longer run with the same input spikes are exactly the run at T.
//!
//! Invariants: thresholds stay positive and finite; every random draw comes from
//! `derive_rng(seed, stream)` (balancing and evaluation use fixed streams), so one seed gives
//! the same thresholds and results; a network the simulator cannot run (an SNN block after an
//! SNN→ANN boundary) is an error, never a panic.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use rand::Rng;
use serde::Serialize;

use crate::analysis;
use crate::backend::candle::encode::SeededRng;
use crate::backend::candle::event::{ConvEvent, FcEvent, PathPolicy};
use crate::backend::candle::model::rng_for as derive_rng;
use crate::backend::candle::model::{self, Model};
use crate::data::Split;
use crate::ir::{
    Activation, BoundaryKind, Domain, Encoding, LayerKind, Network, Op, PoolKind, Reset, SlotId,
};
use crate::train::agd::batch_tensors;
use crate::train::checkpoint::{self, Meta};
use crate::train::report::{ActivityRecord, EnergyRecord, Report};

/// Table I: energy of one multiply-accumulate and one accumulate (pJ, 45 nm).
pub const E_MAC_PJ: f64 = 3.2;
pub const E_AC_PJ: f64 = 0.1;

const BALANCE_STREAM: u64 = 1 << 40;
const EVAL_STREAM: u64 = (1 << 40) + 1;
/// Percentile balancing keeps at most about this many activations per slot.
const PERCENTILE_SAMPLE: f64 = 4.0e6;
/// The checkpoint key of the reset mode (0: subtract, 1: zero).
pub const RESET_KEY: &str = "conversion.reset";

fn err(msg: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(msg.into())
}

/// Images and labels by index: what balancing and evaluation read.
pub trait Images {
    fn count(&self) -> usize;
    /// Images `[B, C, H, W]` in [0, 1] and labels `[B]` (u32) of the examples `idx`.
    fn images(&self, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor)>;
}

/// A data split with its image shape `[C, H, W]`.
#[derive(Debug, Clone, Copy)]
pub struct SplitImages<'a> {
    pub split: &'a Split,
    pub shape: [usize; 3],
}

impl<'a> SplitImages<'a> {
    pub fn new(split: &'a Split, shape: [usize; 3]) -> Self {
        SplitImages { split, shape }
    }
}

impl Images for SplitImages<'_> {
    fn count(&self) -> usize {
        self.split.len()
    }

    fn images(&self, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor)> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.split.len()) {
            return Err(err(format!("image {bad} is beyond the split")));
        }
        batch_tensors(self.split, self.shape, idx, dev)
    }
}

/// How thresholds are balanced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Balance {
    /// Sengupta et al.: the largest weighted input per slot over Poisson trains.
    MaxInput,
    /// Rueckauer et al.: the P-th percentile (0 < P ≤ 100) of the ANN's activations.
    Percentile(f32),
}

impl std::str::FromStr for Balance {
    type Err = String;

    /// `max` (or `max-input`), `percentile` (99.9), `percentile:P`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        match s {
            "max" | "max-input" => return Ok(Balance::MaxInput),
            "percentile" => return Ok(Balance::Percentile(99.9)),
            _ => {}
        }
        if let Some(p) = s.strip_prefix("percentile:") {
            let p: f32 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{p}` is not a number (percentile:P, 0 < P ≤ 100)"))?;
            if p > 0.0 && p <= 100.0 {
                return Ok(Balance::Percentile(p));
            }
            return Err(format!("percentile {p} is outside (0, 100]"));
        }
        Err(format!(
            "unknown balancing `{s}`: expected `max`, `percentile` or `percentile:P`"
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Balance {
    /// The same text as [`std::str::FromStr`] (`balance = "percentile:99"` in a config file).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Balance::MaxInput => write!(f, "max"),
            Balance::Percentile(p) => write!(f, "percentile:{p}"),
        }
    }
}

/// Everything conversion needs besides the trained model and data.
#[derive(Debug, Clone)]
pub struct ConversionConfig {
    pub balance: Balance,
    /// Training images presented while balancing.
    pub balance_images: usize,
    /// Time steps of each balancing run.
    pub balance_steps: usize,
    pub reset: Reset,
    /// Latencies T at which the SNN is evaluated.
    pub eval_timesteps: Vec<usize>,
    /// Images per simulated batch (memory is O(batch), independent of T).
    pub batch: usize,
    pub policy: PathPolicy,
    pub seed: u64,
    /// Progress bars (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for ConversionConfig {
    fn default() -> Self {
        ConversionConfig {
            balance: Balance::MaxInput,
            balance_images: 256,
            balance_steps: 100,
            reset: Reset::Subtract,
            eval_timesteps: vec![50, 100, 250, 500],
            batch: 100,
            policy: PathPolicy::default(),
            seed: 0,
            progress: false,
        }
    }
}

/// Spike and input counts, summed over neurons, images and steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Per slot: spikes, and neuron·steps.
    pub spikes: Vec<f64>,
    pub neuron_steps: Vec<f64>,
    /// Per node index (weighted nodes only): non-zero inputs, and inputs, over the steps.
    pub input_nonzero: Vec<f64>,
    pub input_total: Vec<f64>,
}

impl Counters {
    fn new(slots: usize, nodes: usize) -> Self {
        Counters {
            spikes: vec![0.0; slots],
            neuron_steps: vec![0.0; slots],
            input_nonzero: vec![0.0; nodes],
            input_total: vec![0.0; nodes],
        }
    }

    fn add(&mut self, o: &Counters) {
        for (a, b) in [
            (&mut self.spikes, &o.spikes),
            (&mut self.neuron_steps, &o.neuron_steps),
            (&mut self.input_nonzero, &o.input_nonzero),
            (&mut self.input_total, &o.input_total),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// What one simulated batch produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Per requested checkpoint T: logits `[B, K]`, the output averaged over the first T steps.
    pub logits: Vec<Tensor>,
    /// Per requested checkpoint T: counts over the first T steps.
    pub counters: Vec<Counters>,
    /// Per slot: the largest input current seen.
    pub max_input: Vec<f32>,
    /// Per slot (only when asked): a sample of the non-zero activations (ANN mode).
    pub activations: Vec<Vec<f32>>,
    /// Layer applications that took the dense / event path.
    pub dense_calls: usize,
    pub event_calls: usize,
}

/// How a batch is run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The ANN: spiking layers as ReLU, one step, direct input.
    pub ann: bool,
    /// Checkpoints T (ascending); the run lasts the last one. Ignored with `ann`.
    pub checkpoints: Vec<usize>,
    /// Stop at this node (only its ancestors run; no logits).
    pub stop: Option<NodeIndex>,
    /// Keep each non-zero activation with this probability (percentile balancing).
    pub collect: Option<f64>,
}

enum Prepared {
    None,
    Conv(ConvEvent),
    Fc(FcEvent),
}

/// A final-form network executed one time step at a time with IF neurons.
pub struct Simulator {
    net: Network,
    order: Vec<NodeIndex>,
    weights: Vec<Tensor>,
    events: Vec<Prepared>,
    thresholds: Vec<f32>,
    reset: Reset,
    policy: PathPolicy,
    device: Device,
}

fn usize_of(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| err(format!("size {v} does not fit this machine")))
}

/// Phase of a node in an SNN run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Computed once before the time loop (ANN prefix).
    Pre,
    /// Computed at every step.
    Step,
    /// Computed from spike rates after the steps (ANN suffix).
    Post,
}

impl Simulator {
    /// The model's network, weights and thresholds, run with IF neurons and `reset`.
    pub fn new(model: &Model, reset: Reset, policy: PathPolicy) -> Result<Self> {
        let net = model.network().clone();
        let weights = net
            .weights
            .iter()
            .map(|w| {
                model
                    .weight(&w.name)
                    .map(|v| v.as_tensor().detach())
                    .ok_or_else(|| err(format!("the model has no weights `{}`", w.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(
            net,
            weights,
            model.thresholds().to_vec(),
            reset,
            policy,
            model.device(),
        )
    }

    /// A simulator from a network, its weights (one tensor per weight set) and thresholds.
    pub fn from_parts(
        net: Network,
        weights: Vec<Tensor>,
        thresholds: Vec<f32>,
        reset: Reset,
        policy: PathPolicy,
        device: &Device,
    ) -> Result<Self> {
        if weights.len() != net.weights.len() || thresholds.len() != net.thresholds.len() {
            return Err(err("weights or thresholds do not match the network"));
        }
        let order = net.topo_order();
        let mut events = Vec::with_capacity(net.graph.node_count());
        for n in net.graph.node_indices() {
            let node = &net.graph[n];
            let prep = match node.op.weights() {
                Some(wid) if device.is_cpu() => {
                    let wt = weights
                        .get(wid.0)
                        .ok_or_else(|| err(format!("no weight set {}", wid.0)))?;
                    match net.weights[wid.0].kind {
                        LayerKind::Conv { stride, pad, .. } => {
                            let src = net.inputs_of(n).first().copied();
                            let shape =
                                src.and_then(|s| net.graph[s].out_shape).ok_or_else(|| {
                                    err(format!("`{}` has no input shape", node.name))
                                })?;
                            Prepared::Conv(ConvEvent::new(
                                wt,
                                usize_of(stride)?,
                                usize_of(pad)?,
                                usize_of(shape.h)?,
                                usize_of(shape.w)?,
                            )?)
                        }
                        LayerKind::Fc { .. } => Prepared::Fc(FcEvent::new(wt)?),
                    }
                }
                _ => Prepared::None,
            };
            events.push(prep);
        }
        Ok(Simulator {
            net,
            order,
            weights,
            events,
            thresholds,
            reset,
            policy,
            device: device.clone(),
        })
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    pub fn reset(&self) -> Reset {
        self.reset
    }

    pub fn set_policy(&mut self, policy: PathPolicy) {
        self.policy = policy;
    }

    pub fn set_threshold(&mut self, slot: SlotId, value: f32) -> Result<()> {
        model::set_slot_threshold(&mut self.thresholds, slot, value)
    }

    /// Slots in the order of their nodes in the topological order.
    pub fn slots_in_order(&self) -> Vec<SlotId> {
        self.order
            .iter()
            .filter_map(|&n| self.net.graph[n].slot)
            .collect()
    }

    fn phases(&self) -> Result<Vec<Phase>> {
        let mut ph = vec![Phase::Pre; self.net.graph.node_count()];
        for &n in &self.order {
            let node = &self.net.graph[n];
            let ins = self.net.inputs_of(n);
            let any_post = ins.iter().any(|i| ph[i.index()] == Phase::Post);
            let p = if matches!(
                node.op,
                Op::Boundary {
                    kind: BoundaryKind::SnnToAnn
                }
            ) {
                Phase::Post
            } else if node.domain == Some(Domain::Snn) {
                if any_post {
                    return Err(err(format!(
                        "`{}` is spiking after an SNN→ANN boundary: conversion cannot simulate \
                         an SNN block that needs spike rates of an earlier one",
                        node.name
                    )));
                }
                Phase::Step
            } else if any_post {
                Phase::Post
            } else if ins.iter().any(|i| ph[i.index()] == Phase::Step) {
                Phase::Step
            } else {
                Phase::Pre
            };
            ph[n.index()] = p;
        }
        Ok(ph)
    }

    /// The ancestors of `target` (itself included).
    fn ancestors(&self, target: NodeIndex) -> Vec<bool> {
        let mut need = vec![false; self.net.graph.node_count()];
        let mut stack = vec![target];
        while let Some(n) = stack.pop() {
            if need[n.index()] {
                continue;
            }
            need[n.index()] = true;
            stack.extend(self.net.graph.neighbors_directed(n, Direction::Incoming));
        }
        need
    }

    /// Runs images `x` `[B, C, H, W]`.
    pub fn run(&self, x: &Tensor, spec: &RunSpec, rng: &mut SeededRng) -> Result<RunOutput> {
        let nodes = self.net.graph.node_count();
        let slots = self.thresholds.len();
        let need = match spec.stop {
            Some(t) => self.ancestors(t),
            None => vec![true; nodes],
        };
        let mut st = State {
            values: vec![None; nodes],
            membranes: vec![None; nodes],
            counters: Counters::new(slots, nodes),
            max_input: vec![0.0; slots],
            activations: vec![Vec::new(); slots],
            dense_calls: 0,
            event_calls: 0,
            record_inputs: !spec.ann,
        };
        let out_node = self.net.output;
        let mut out = RunOutput {
            logits: Vec::new(),
            counters: Vec::new(),
            max_input: Vec::new(),
            activations: Vec::new(),
            dense_calls: 0,
            event_calls: 0,
        };
        if spec.ann {
            for &n in &self.order {
                if need[n.index()] {
                    let v = self.node(n, x, true, spec, &mut st, rng)?;
                    st.values[n.index()] = Some(v);
                }
            }
            if spec.stop.is_none() {
                let l = st.values[out_node.index()]
                    .clone()
                    .ok_or_else(|| err("the network has no output"))?;
                out.logits.push(l.flatten_from(1)?);
                out.counters.push(st.counters.clone());
            }
        } else {
            let ph = self.phases()?;
            let t_max = spec.checkpoints.last().copied().unwrap_or(0);
            if t_max == 0 {
                return Err(err("an SNN run needs at least one time step"));
            }
            for &n in &self.order {
                if need[n.index()] && ph[n.index()] == Phase::Pre {
                    let v = self.node(n, x, false, spec, &mut st, rng)?;
                    st.values[n.index()] = Some(v);
                }
            }
            // Inputs of SNN→ANN boundaries and the output, summed over steps.
            let mut sums: HashMap<usize, Tensor> = HashMap::new();
            let mut next_ck = 0;
            for t in 1..=t_max {
                for &n in &self.order {
                    if !need[n.index()] || ph[n.index()] != Phase::Step {
                        continue;
                    }
                    let v = self.node(n, x, false, spec, &mut st, rng)?;
                    st.values[n.index()] = Some(v);
                }
                if spec.stop.is_some() {
                    continue;
                }
                for &n in &self.order {
                    let summed = if n == out_node && ph[n.index()] == Phase::Step {
                        Some(n)
                    } else if ph[n.index()] == Phase::Post
                        && matches!(self.net.graph[n].op, Op::Boundary { .. })
                    {
                        self.net.inputs_of(n).first().copied()
                    } else {
                        None
                    };
                    if let Some(src) = summed {
                        let v = st.values[src.index()]
                            .clone()
                            .ok_or_else(|| err("a summed value is missing"))?;
                        let key = n.index();
                        let s = match sums.remove(&key) {
                            Some(s) => (s + v)?,
                            None => v,
                        };
                        sums.insert(key, s);
                    }
                }
                while next_ck < spec.checkpoints.len() && spec.checkpoints[next_ck] == t {
                    out.logits
                        .push(self.finish(x, t, &ph, &sums, spec, &mut st, rng)?);
                    out.counters.push(st.counters.clone());
                    next_ck += 1;
                }
            }
        }
        out.max_input = st.max_input;
        out.activations = st.activations;
        out.dense_calls = st.dense_calls;
        out.event_calls = st.event_calls;
        Ok(out)
    }

    /// Logits after `t` steps: the output's mean over the steps, or the ANN suffix run on
    /// the spike rates.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        x: &Tensor,
        t: usize,
        ph: &[Phase],
        sums: &HashMap<usize, Tensor>,
        spec: &RunSpec,
        st: &mut State,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        let out_node = self.net.output;
        let out = match ph[out_node.index()] {
            Phase::Pre => st.values[out_node.index()]
                .clone()
                .ok_or_else(|| err("the network has no output"))?,
            Phase::Step => {
                let s = sums
                    .get(&out_node.index())
                    .ok_or_else(|| err("the output was not summed"))?;
                (s / t as f64)?
            }
            Phase::Post => {
                for &n in &self.order {
                    if ph[n.index()] != Phase::Post {
                        continue;
                    }
                    let v = match (&self.net.graph[n].op, sums.get(&n.index())) {
                        (Op::Boundary { .. }, Some(s)) => (s / t as f64)?,
                        _ => self.node(n, x, true, spec, st, rng)?,
                    };
                    st.values[n.index()] = Some(v);
                }
                st.values[out_node.index()]
                    .clone()
                    .ok_or_else(|| err("the network has no output"))?
            }
        };
        out.flatten_from(1)
    }

    /// Computes node `n` for one step (or once, with `ann`).
    fn node(
        &self,
        n: NodeIndex,
        x: &Tensor,
        ann: bool,
        spec: &RunSpec,
        st: &mut State,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        let node = &self.net.graph[n];
        let ins: Vec<Tensor> = self
            .net
            .inputs_of(n)
            .iter()
            .map(|&i| {
                st.values[i.index()]
                    .clone()
                    .ok_or_else(|| err(format!("`{}` runs before its input", node.name)))
            })
            .collect::<Result<_>>()?;
        let first = || {
            ins.first()
                .cloned()
                .ok_or_else(|| err(format!("`{}` has no input", node.name)))
        };
        let v = match &node.op {
            Op::Input => x.clone(),
            Op::Encode { encoding } => {
                let img = first()?;
                if ann || *encoding == Encoding::Direct {
                    img
                } else {
                    poisson_step(&img, rng)?
                }
            }
            Op::Conv { weights } | Op::Fc { weights } => {
                self.weighted(n, weights.0, &first()?, st)?
            }
            Op::Pool {
                kind,
                window,
                stride,
            } => {
                let k = usize_of(*window)?;
                let s = usize_of(*stride)?;
                match kind {
                    PoolKind::Avg => first()?.avg_pool2d_with_stride(k, s)?,
                    PoolKind::Max => first()?.max_pool2d_with_stride(k, s)?,
                }
            }
            Op::Dropout { .. } => first()?,
            Op::Join { mode } => model::join(ins.clone(), *mode)?,
            Op::Boundary { .. } => first()?,
            Op::Layer { .. } => {
                return Err(err(format!(
                    "`{}` is an unresolved layer: the network is not in final form",
                    node.name
                )))
            }
        };
        match node.activation {
            Activation::None => Ok(v),
            Activation::Relu => v.relu(),
            Activation::Spiking(_) => {
                let slot = node
                    .slot
                    .ok_or_else(|| err(format!("spiking `{}` has no slot", node.name)))?;
                let th = *self
                    .thresholds
                    .get(slot.0)
                    .ok_or_else(|| err(format!("no threshold slot {}", slot.0)))?;
                let shape = v.shape().clone();
                let cur = v.flatten_all()?.to_vec1::<f32>()?;
                let m = cur.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if m > st.max_input[slot.0] {
                    st.max_input[slot.0] = m;
                }
                if ann {
                    let a: Vec<f32> = cur.iter().map(|&c| c.max(0.0)).collect();
                    if let Some(p) = spec.collect {
                        let keep = &mut st.activations[slot.0];
                        for &c in &a {
                            if c > 0.0 && (p >= 1.0 || rng.0.random::<f64>() < p) {
                                keep.push(c);
                            }
                        }
                    }
                    return Tensor::from_vec(a, shape, &self.device);
                }
                let mem = st.membranes[n.index()].get_or_insert_with(|| vec![0.0; cur.len()]);
                if mem.len() != cur.len() {
                    return Err(err(format!("`{}` changed size between steps", node.name)));
                }
                let (spikes, count) = if_step(mem, &cur, th, self.reset);
                st.counters.spikes[slot.0] += count as f64;
                st.counters.neuron_steps[slot.0] += cur.len() as f64;
                Tensor::from_vec(spikes, shape, &self.device)
            }
        }
    }

    /// A conv or FC application on `inp`, by the dense or event path.
    fn weighted(&self, n: NodeIndex, wid: usize, inp: &Tensor, st: &mut State) -> Result<Tensor> {
        let wt = &self.weights[wid];
        let kind = self.net.weights[wid].kind;
        let b = inp.dim(0)?;
        let flat = inp.flatten_all()?.to_vec1::<f32>()?;
        let nz = flat.iter().filter(|&&v| v != 0.0).count();
        if st.record_inputs {
            st.counters.input_nonzero[n.index()] += nz as f64;
            st.counters.input_total[n.index()] += flat.len() as f64;
        }
        let density = if flat.is_empty() {
            0.0
        } else {
            nz as f32 / flat.len() as f32
        };
        let event = self
            .policy
            .use_event(density, matches!(kind, LayerKind::Conv { .. }));
        match (kind, &self.events[n.index()]) {
            (LayerKind::Conv { .. }, Prepared::Conv(ev)) if event => {
                st.event_calls += 1;
                let (o, oh, ow) = ev.out_dims();
                Tensor::from_vec(ev.forward(&flat)?, (b, o, oh, ow), &self.device)
            }
            (LayerKind::Fc { outputs, .. }, Prepared::Fc(ev)) if event => {
                st.event_calls += 1;
                Tensor::from_vec(ev.forward(&flat)?, (b, usize_of(outputs)?), &self.device)
            }
            (LayerKind::Conv { stride, pad, .. }, _) => {
                st.dense_calls += 1;
                inp.conv2d(wt, usize_of(pad)?, usize_of(stride)?, 1, 1)
            }
            (LayerKind::Fc { .. }, _) => {
                st.dense_calls += 1;
                inp.flatten_from(1)?.matmul(&wt.t()?)
            }
        }
    }
}

struct State {
    values: Vec<Option<Tensor>>,
    membranes: Vec<Option<Vec<f32>>>,
    counters: Counters,
    max_input: Vec<f32>,
    activations: Vec<Vec<f32>>,
    dense_calls: usize,
    event_calls: usize,
    record_inputs: bool,
}

/// One step of rate coding: a spike with probability x (intensities in [0, 1]).
fn poisson_step(x: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
    let v = x.flatten_all()?.to_vec1::<f32>()?;
    let s: Vec<f32> = v
        .iter()
        .map(|&p| if rng.uniform_open() < p { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(s, x.shape(), x.device())
}

/// One IF step (leak 1): V += I; a spike where V ≥ θ, then V −= θ (subtract) or V = 0.
/// Returns the spikes and their number.
pub fn if_step(v: &mut [f32], current: &[f32], threshold: f32, reset: Reset) -> (Vec<f32>, usize) {
    let mut count = 0;
    let s = v
        .iter_mut()
        .zip(current)
        .map(|(m, &i)| {
            *m += i;
            if *m >= threshold {
                count += 1;
                match reset {
                    Reset::Subtract => *m -= threshold,
                    Reset::Zero => *m = 0.0,
                }
                1.0
            } else {
                0.0
            }
        })
        .collect();
    (s, count)
}

fn progress_bar(len: usize, show: bool, prefix: &str) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    let style =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb.set_prefix(prefix.to_string());
    pb
}

/// One balanced threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRecord {
    pub layer: String,
    pub step: u32,
    pub threshold: f32,
}

/// The thresholds of `sim`, per slot.
pub fn threshold_records(sim: &Simulator) -> Vec<ThresholdRecord> {
    sim.net
        .thresholds
        .iter()
        .zip(&sim.thresholds)
        .map(|(s, &t)| ThresholdRecord {
            layer: s.layer.clone(),
            step: s.step,
            threshold: t,
        })
        .collect()
}

/// For every weight set applied more than once (BackRes): whether its thresholds strictly
/// increase with the unroll step, v_thresh,1 < v_thresh,2 < … (the paper's observation).
pub fn backres_increasing(records: &[ThresholdRecord]) -> Vec<(String, bool)> {
    let mut by: Vec<(String, Vec<(u32, f32)>)> = Vec::new();
    for r in records {
        match by.iter_mut().find(|(l, _)| *l == r.layer) {
            Some((_, v)) => v.push((r.step, r.threshold)),
            None => by.push((r.layer.clone(), vec![(r.step, r.threshold)])),
        }
    }
    by.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(l, mut v)| {
            v.sort_by_key(|(s, _)| *s);
            let inc = v.windows(2).all(|w| w[0].1 < w[1].1);
            (l, inc)
        })
        .collect()
}

fn first_n(data: &dyn Images, n: usize) -> Vec<usize> {
    (0..data.count().min(n)).collect()
}

/// Balances every slot of `sim` in place (see the module docs); returns the thresholds.
pub fn balance(
    sim: &mut Simulator,
    data: &dyn Images,
    cfg: &ConversionConfig,
) -> Result<Vec<ThresholdRecord>> {
    let idx = first_n(data, cfg.balance_images.max(1));
    if idx.is_empty() {
        return Err(err("balancing needs at least one image"));
    }
    let batch = cfg.batch.max(1);
    let chunks: Vec<&[usize]> = idx.chunks(batch).collect();
    let dev = sim.device.clone();
    match cfg.balance {
        Balance::MaxInput => {
            let steps = cfg.balance_steps.max(1);
            let slots = sim.slots_in_order();
            let pb = progress_bar(slots.len() * chunks.len(), cfg.progress, "balancing");
            for slot in slots {
                let target = sim.net.thresholds[slot.0].node;
                let spec = RunSpec {
                    ann: false,
                    checkpoints: vec![steps],
                    stop: Some(target),
                    collect: None,
                };
                // The same input spikes for every slot.
                let mut rng = derive_rng(cfg.seed, BALANCE_STREAM);
                let mut m = 0f32;
                for c in &chunks {
                    let (x, _) = data.images(c, &dev)?;
                    let out = sim.run(&x, &spec, &mut rng)?;
                    m = m.max(out.max_input[slot.0]);
                    pb.inc(1);
                }
                let s = &sim.net.thresholds[slot.0];
                pb.set_message(format!("{}@{}: {m:.3}", s.layer, s.step));
                if m > 0.0 && m.is_finite() {
                    sim.set_threshold(slot, m)?;
                }
            }
            pb.finish_and_clear();
        }
        Balance::Percentile(p) => {
            let per_image: f64 = sim
                .net
                .thresholds
                .iter()
                .filter_map(|s| sim.net.graph[s.node].out_shape?.features())
                .map(|f| f as f64)
                .fold(0.0, f64::max);
            let keep = (PERCENTILE_SAMPLE / (per_image * idx.len() as f64).max(1.0)).min(1.0);
            let spec = RunSpec {
                ann: true,
                checkpoints: vec![1],
                stop: None,
                collect: Some(keep),
            };
            let mut rng = derive_rng(cfg.seed, BALANCE_STREAM);
            let mut acts: Vec<Vec<f32>> = vec![Vec::new(); sim.thresholds.len()];
            let pb = progress_bar(chunks.len(), cfg.progress, "percentiles");
            for c in &chunks {
                let (x, _) = data.images(c, &dev)?;
                let out = sim.run(&x, &spec, &mut rng)?;
                for (a, o) in acts.iter_mut().zip(out.activations) {
                    a.extend(o);
                }
                pb.inc(1);
            }
            pb.finish_and_clear();
            let lambda: Vec<Option<f32>> = acts.iter_mut().map(|a| percentile(a, p)).collect();
            for slot in sim.slots_in_order() {
                let Some(l) = lambda[slot.0] else { continue };
                let up = upstream_scale(&sim.net, sim.net.thresholds[slot.0].node, &lambda);
                let th = l / up;
                if th.is_finite() && th > 0.0 {
                    sim.set_threshold(slot, th)?;
                }
            }
        }
    }
    Ok(threshold_records(sim))
}

/// The P-th percentile of `v` (nearest rank); `None` when empty.
pub fn percentile(v: &mut [f32], p: f32) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    // p is an f32 (99.9 is 99.90000152…): a small slack keeps exact ranks exact.
    let rank = ((p as f64 / 100.0) * n as f64 - 1e-3).ceil() as usize;
    let i = rank.clamp(1, n) - 1;
    let (_, x, _) = v.select_nth_unstable_by(i, |a, b| a.total_cmp(b));
    Some(*x)
}

/// The activation scale λ of what reaches `node` on its main path: that of the nearest
/// spiking node upstream, 1 for the input or a real-valued (ReLU) layer.
fn upstream_scale(net: &Network, node: NodeIndex, lambda: &[Option<f32>]) -> f32 {
    let mut cur = net.inputs_of(node).first().copied();
    while let Some(n) = cur {
        let nd = &net.graph[n];
        if let Some(slot) = nd.slot {
            return lambda.get(slot.0).copied().flatten().unwrap_or(1.0);
        }
        if nd.activation == Activation::Relu || matches!(nd.op, Op::Input | Op::Encode { .. }) {
            return 1.0;
        }
        cur = net.inputs_of(n).first().copied();
    }
    1.0
}

/// The SNN at one latency T.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimestepResult {
    pub timesteps: usize,
    pub test_accuracy: f64,
    /// Per spiking layer application: spikes per neuron per time step.
    pub activity: Vec<ActivityRecord>,
    /// Per weighted layer application: the fraction of non-zero inputs per step (SA).
    pub input_activity: Vec<ActivityRecord>,
    /// Eq. 10 / Eq. 11 by `snnc::analysis::estimate` with the measured spike rates (SA of a
    /// layer = the rate of its input spikes; Table I energies).
    pub e_ann_pj: f64,
    pub e_snn_pj: f64,
    pub ee: f64,
    /// Eq. 11 with SA = the measured fraction of non-zero inputs of each layer (after an
    /// average pool this is larger than the spike rate), and the EE it gives.
    pub e_snn_input_density_pj: f64,
    pub ee_input_density: f64,
}

/// E_ANN, E_SNN and EE by `analysis::estimate` at latency `t` with measured spike rates
/// (per layer and unroll step) and the Poisson input's measured rate.
pub fn energy_from_rates(
    net: &Network,
    activity: &[ActivityRecord],
    input_rate: f64,
    t: usize,
) -> (f64, f64, f64) {
    let mut rates: HashMap<(String, u32), f64> = activity
        .iter()
        .filter(|a| a.spike_rate.is_finite())
        .map(|a| ((a.layer.clone(), a.step), a.spike_rate.clamp(0.0, 1.0)))
        .collect();
    rates.insert(("Input".into(), 1), input_rate.clamp(0.0, 1.0));
    let opts = analysis::Options {
        timesteps: Some(u32::try_from(t).unwrap_or(u32::MAX)),
        activity: analysis::Activity::Measured {
            rates,
            fallback: 1.0,
        },
        energy: analysis::EnergyModel::INT32,
    };
    let est = analysis::estimate(net, &opts);
    (est.e_ann_pj, est.e_snn_pj, est.ee.unwrap_or(0.0))
}

/// What evaluating the SNN produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnnEvaluation {
    pub results: Vec<TimestepResult>,
    pub images: usize,
    pub seconds: f64,
    pub dense_calls: usize,
    pub event_calls: usize,
}

/// Operations per time step of a weighted node: Eq. 8 for a convolution (K²·I·O·H·W of
/// its output), X·Y for an FC layer.
fn ops(net: &Network, n: NodeIndex) -> f64 {
    let node = &net.graph[n];
    let Some(w) = node.op.weights() else {
        return 0.0;
    };
    let out = node.out_shape.unwrap_or(crate::ir::Shape::new(0, 0, 0));
    match net.weights[w.0].kind {
        LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            ..
        } => (kernel * kernel) as f64 * in_ch as f64 * out_ch as f64 * (out.h * out.w) as f64,
        LayerKind::Fc { inputs, outputs } => inputs as f64 * outputs as f64,
    }
}

/// E_ANN (Eq. 10: every layer MAC) and E_SNN (Eq. 11: an SNN-domain layer costs ops·SA·T
/// accumulates with its measured input activity SA; an ANN-domain layer ops MACs).
/// `sa` is indexed by node. Returns (E_ANN, E_SNN, EE) in pJ.
pub fn energy(net: &Network, sa: &[f64], timesteps: usize) -> (f64, f64, f64) {
    let (mut e_ann, mut e_snn) = (0.0, 0.0);
    for n in net.graph.node_indices() {
        if net.graph[n].op.weights().is_none() {
            continue;
        }
        let o = ops(net, n);
        e_ann += o * E_MAC_PJ;
        if net.graph[n].domain == Some(Domain::Snn) {
            let a = sa.get(n.index()).copied().unwrap_or(1.0);
            e_snn += o * a * timesteps as f64 * E_AC_PJ;
        } else {
            e_snn += o * E_MAC_PJ;
        }
    }
    let ee = if e_snn > 0.0 { e_ann / e_snn } else { 0.0 };
    (e_ann, e_snn, ee)
}

fn c_has_weights(net: &Network, n: NodeIndex) -> bool {
    net.graph[n].op.weights().is_some()
}

fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(1)?;
    let eq = pred.eq(labels)?.to_dtype(DType::F32)?;
    Ok(eq.sum_all()?.to_scalar::<f32>()? as usize)
}

/// Accuracy of the ANN (spiking layers as ReLU) on `data`.
pub fn evaluate_ann(sim: &Simulator, data: &dyn Images, batch: usize) -> Result<f64> {
    let idx: Vec<usize> = (0..data.count()).collect();
    if idx.is_empty() {
        return Ok(0.0);
    }
    let spec = RunSpec {
        ann: true,
        checkpoints: vec![1],
        stop: None,
        collect: None,
    };
    let mut rng = derive_rng(0, EVAL_STREAM);
    let mut right = 0;
    for c in idx.chunks(batch.max(1)) {
        let (x, y) = data.images(c, &sim.device)?;
        let out = sim.run(&x, &spec, &mut rng)?;
        right += correct(&out.logits[0], &y)?;
    }
    Ok(right as f64 / idx.len() as f64)
}

/// Runs the SNN on `data` once, for max(`timesteps`) steps, and reports accuracy, activity
/// and energy at every T of `timesteps`.
pub fn evaluate_snn(
    sim: &Simulator,
    data: &dyn Images,
    timesteps: &[usize],
    batch: usize,
    seed: u64,
    progress: bool,
) -> Result<SnnEvaluation> {
    let mut ts: Vec<usize> = timesteps.iter().copied().filter(|&t| t > 0).collect();
    ts.sort_unstable();
    ts.dedup();
    if ts.is_empty() {
        return Err(err("no latency T ≥ 1 to evaluate"));
    }
    let idx: Vec<usize> = (0..data.count()).collect();
    if idx.is_empty() {
        return Err(err("the test set is empty"));
    }
    let spec = RunSpec {
        ann: false,
        checkpoints: ts.clone(),
        stop: None,
        collect: None,
    };
    let nodes = sim.net.graph.node_count();
    let slots = sim.thresholds.len();
    let mut right = vec![0usize; ts.len()];
    let mut counters = vec![Counters::new(slots, nodes); ts.len()];
    let (mut dense, mut event) = (0, 0);
    let mut rng = derive_rng(seed, EVAL_STREAM);
    let start = Instant::now();
    let chunks: Vec<&[usize]> = idx.chunks(batch.max(1)).collect();
    let pb = progress_bar(chunks.len(), progress, "SNN");
    for c in chunks {
        let (x, y) = data.images(c, &sim.device)?;
        let out = sim.run(&x, &spec, &mut rng)?;
        for (i, l) in out.logits.iter().enumerate() {
            right[i] += correct(l, &y)?;
        }
        for (acc, c) in counters.iter_mut().zip(&out.counters) {
            acc.add(c);
        }
        dense += out.dense_calls;
        event += out.event_calls;
        pb.inc(1);
        let last = right.len() - 1;
        pb.set_message(format!(
            "acc@T={} {:.1}%",
            ts[last],
            100.0 * right[last] as f64 / pb.position().max(1) as f64 / c.len().max(1) as f64
        ));
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let n = idx.len() as f64;
    let results = ts
        .iter()
        .zip(&right)
        .zip(&counters)
        .map(|((&t, &r), c)| {
            let activity: Vec<ActivityRecord> = sim
                .net
                .thresholds
                .iter()
                .enumerate()
                .map(|(i, s)| ActivityRecord {
                    layer: s.layer.clone(),
                    step: s.step,
                    spike_rate: c.spikes[i] / c.neuron_steps[i].max(1.0),
                })
                .collect();
            let sa: Vec<f64> = (0..nodes)
                .map(|i| {
                    if c.input_total[i] > 0.0 {
                        c.input_nonzero[i] / c.input_total[i]
                    } else {
                        1.0
                    }
                })
                .collect();
            let input_activity = sim
                .order
                .iter()
                .filter(|&&n| sim.net.graph[n].op.weights().is_some())
                .map(|&n| ActivityRecord {
                    layer: sim.net.graph[n].name.clone(),
                    step: sim.net.graph[n].step,
                    spike_rate: sa[n.index()],
                })
                .collect();
            // The Poisson input's rate: the input density of a layer fed by the encoder.
            let input_rate = sim
                .net
                .graph
                .node_indices()
                .filter(|&e| matches!(sim.net.graph[e].op, Op::Encode { .. }))
                .flat_map(|e| sim.net.graph.neighbors_directed(e, Direction::Outgoing))
                .find(|&c| c_has_weights(&sim.net, c))
                .map(|c| sa[c.index()])
                .unwrap_or(1.0);
            let (_, e_dens, ee_dens) = energy(&sim.net, &sa, t);
            let (e_ann, e_snn, ee) = energy_from_rates(&sim.net, &activity, input_rate, t);
            TimestepResult {
                timesteps: t,
                test_accuracy: r as f64 / n,
                activity,
                input_activity,
                e_ann_pj: e_ann,
                e_snn_pj: e_snn,
                ee,
                e_snn_input_density_pj: e_dens,
                ee_input_density: ee_dens,
            }
        })
        .collect();
    Ok(SnnEvaluation {
        results,
        images: idx.len(),
        seconds,
        dense_calls: dense,
        event_calls: event,
    })
}

/// The whole conversion after the ANN phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversion {
    pub ann_test_accuracy: f64,
    pub balance: String,
    pub thresholds: Vec<ThresholdRecord>,
    /// Per BackRes layer: whether v_thresh,1 < v_thresh,2 < … holds.
    pub backres_increasing: Vec<(String, bool)>,
    pub snn: SnnEvaluation,
    pub balance_seconds: f64,
}

impl Conversion {
    /// The report's `extra` keys: `ann_test_accuracy`, `conversion` (per T), `thresholds`,
    /// `backres_thresholds_increasing`, `balance`.
    pub fn to_extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        fn j<T: Serialize>(v: &T) -> serde_json::Value {
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
        }
        m.insert("ann_test_accuracy".into(), self.ann_test_accuracy.into());
        m.insert("balance".into(), self.balance.clone().into());
        m.insert("conversion".into(), j(&self.snn.results));
        m.insert("thresholds".into(), j(&self.thresholds));
        let inc: serde_json::Map<String, serde_json::Value> = self
            .backres_increasing
            .iter()
            .map(|(l, b)| (l.clone(), (*b).into()))
            .collect();
        m.insert("backres_thresholds_increasing".into(), inc.into());
        m.insert("conversion_images".into(), self.snn.images.into());
        m.insert("conversion_seconds".into(), self.snn.seconds.into());
        m.insert("balance_seconds".into(), self.balance_seconds.into());
        m
    }
}

/// Puts a conversion's results into a training report: `method` becomes `conversion`; the
/// headline numbers (T, test accuracy, activity, energy) are the SNN's at the largest T;
/// everything else goes to `extra` ([`Conversion::to_extra`]).
pub fn apply_to_report(report: &mut Report, conv: &Conversion) {
    report.method = "conversion".into();
    if let Some(r) = conv.snn.results.last() {
        report.timesteps = r.timesteps;
        report.test_accuracy = r.test_accuracy;
        report.activity = r.activity.clone();
        report.energy = EnergyRecord {
            e_ann_pj: r.e_ann_pj,
            e_snn_pj: r.e_snn_pj,
            ee: r.ee,
        };
        let per_image = conv.snn.seconds / conv.snn.images.max(1) as f64;
        if per_image > 0.0 {
            report.infer_images_per_s = 1.0 / per_image;
        }
    }
    report.extra.extend(conv.to_extra());
}

/// Balances the trained `model` on `balance_data`, writes the thresholds into it, and
/// evaluates the ANN and the SNN on `test`.
pub fn convert(
    model: &mut Model,
    balance_data: &dyn Images,
    test: &dyn Images,
    cfg: &ConversionConfig,
) -> Result<Conversion> {
    let mut sim = Simulator::new(model, cfg.reset, cfg.policy)?;
    let ann_test_accuracy = evaluate_ann(&sim, test, cfg.batch)?;
    let start = Instant::now();
    let thresholds = balance(&mut sim, balance_data, cfg)?;
    let balance_seconds = start.elapsed().as_secs_f64();
    for (i, &t) in sim.thresholds().iter().enumerate() {
        model.set_threshold(SlotId(i), t)?;
    }
    let snn = evaluate_snn(
        &sim,
        test,
        &cfg.eval_timesteps,
        cfg.batch,
        cfg.seed,
        cfg.progress,
    )?;
    Ok(Conversion {
        ann_test_accuracy,
        balance: cfg.balance.to_string(),
        backres_increasing: backres_increasing(&thresholds),
        thresholds,
        snn,
        balance_seconds,
    })
}

/// Writes the converted model (ANN weights and balanced thresholds) with the reset mode as
/// a checkpoint whose `meta.method` is `conversion`.
pub fn save_checkpoint(model: &Model, reset: Reset, path: &Path, meta: &Meta) -> Result<()> {
    let mut state = model.state()?;
    let r: u8 = match reset {
        Reset::Subtract => 0,
        Reset::Zero => 1,
    };
    state.insert(RESET_KEY.into(), Tensor::new(&[r], &Device::Cpu)?);
    let meta = Meta {
        method: "conversion".into(),
        ..meta.clone()
    };
    checkpoint::save(path, &state, &meta)
}

/// The reset mode a conversion checkpoint records (subtract when absent).
pub fn checkpoint_reset(map: &HashMap<String, Tensor>) -> Result<Reset> {
    match map.get(RESET_KEY) {
        None => Ok(Reset::Subtract),
        Some(t) => match t.flatten_all()?.to_vec1::<u8>()?.first() {
            Some(1) => Ok(Reset::Zero),
            _ => Ok(Reset::Subtract),
        },
    }
}
