//! The executable network step by step: one time step at a time with integrate-and-fire
//! neurons (leak 1, reset by subtraction or to zero), membrane potentials held across steps,
//! so memory does not grow with T. Conv and FC layers take the dense path (candle) or the
//! event-driven one (`event`) by measured input density ([`PathPolicy`]).
//!
//! What runs when: nodes before the first spiking layer run once (`Phase::Pre`, an ANN
//! prefix), the SNN block at every step, and an ANN suffix behind an SNN→ANN boundary once on
//! the spike rates at each requested latency. Logits at T are the output's mean over the
//! first T steps (the run is causal, so one run at the largest T gives every smaller T).
//!
//! Used by conversion (balancing, evaluation) and meant for STDP: the [`Observer`] hooks are
//! called per spiking layer application and step. The IF update is `neuron::lif_step`, the
//! same step the batched scan runs (the dynamics exist once).
//!
//! Invariants: a network it cannot run (an SNN block after an SNN→ANN boundary) is an error,
//! never a panic; random draws come only from the `rng` passed in (Poisson input), in
//! topological order and step order.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use rand::Rng;

use super::encode::{self, SeededRng};
use super::event::{ConvEvent, FcEvent, PathPolicy};
use super::model::{self, Model};
use super::neuron;
use super::observe::{Application, NoObserver, Observer};
use super::{err, usize_of};
use crate::ir::{
    Activation, BoundaryKind, Domain, Encoding, LayerKind, Network, Op, Reset, SlotId,
};

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
    /// Zero counts for `slots` threshold slots and `nodes` graph nodes.
    pub fn new(slots: usize, nodes: usize) -> Self {
        Counters {
            spikes: vec![0.0; slots],
            neuron_steps: vec![0.0; slots],
            input_nonzero: vec![0.0; nodes],
            input_total: vec![0.0; nodes],
        }
    }

    /// Adds `o` elementwise.
    pub fn add(&mut self, o: &Counters) {
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

    /// The nodes in the order they run (topological).
    pub fn order(&self) -> &[NodeIndex] {
        &self.order
    }

    pub fn device(&self) -> &Device {
        &self.device
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
        self.run_observed(x, spec, rng, &mut NoObserver)
    }

    /// [`Simulator::run`] with an observer called at every spiking layer application of
    /// every step (`[B, ...]` tensors; `Application::time` is the step, `None` in ANN mode).
    pub fn run_observed(
        &self,
        x: &Tensor,
        spec: &RunSpec,
        rng: &mut SeededRng,
        obs: &mut dyn Observer,
    ) -> Result<RunOutput> {
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
            time: None,
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
                    let v = self.node(n, x, true, spec, &mut st, rng, obs)?;
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
                    let v = self.node(n, x, false, spec, &mut st, rng, obs)?;
                    st.values[n.index()] = Some(v);
                }
            }
            // Inputs of SNN→ANN boundaries and the output, summed over steps.
            let mut sums: HashMap<usize, Tensor> = HashMap::new();
            let mut next_ck = 0;
            for t in 1..=t_max {
                st.time = Some(t);
                for &n in &self.order {
                    if !need[n.index()] || ph[n.index()] != Phase::Step {
                        continue;
                    }
                    let v = self.node(n, x, false, spec, &mut st, rng, obs)?;
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
                        .push(self.finish(x, t, &ph, &sums, spec, &mut st, rng, obs)?);
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
        obs: &mut dyn Observer,
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
                        (Op::Boundary { .. }, Some(s)) => {
                            let r = (s / t as f64)?;
                            obs.boundary(n, t, &r)?;
                            r
                        }
                        _ => self.node(n, x, true, spec, st, rng, obs)?,
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
    #[allow(clippy::too_many_arguments)]
    fn node(
        &self,
        n: NodeIndex,
        x: &Tensor,
        ann: bool,
        spec: &RunSpec,
        st: &mut State,
        rng: &mut SeededRng,
        obs: &mut dyn Observer,
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
                    let s = encode::poisson_step(
                        &img,
                        st.time.map_or(0, |t| t.saturating_sub(1)),
                        rng,
                    )?;
                    obs.input_spikes(&s)?;
                    s
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
                super::pool::pool2d(&first()?, *kind, k, s)?
            }
            Op::Dropout { .. } => first()?,
            Op::Join { mode } => model::join(ins.clone(), *mode)?,
            Op::Boundary { .. } => first()?,
            Op::Layer { .. } => return Err(model::unresolved(node)),
        };
        match node.activation {
            Activation::None => Ok(v),
            Activation::Relu => v.relu(),
            Activation::Spiking(_) => {
                let (slot, th) = model::spiking_slot(node, &self.thresholds)?;
                let app = Application::of(n, node, slot, if ann { None } else { st.time });
                if let (Op::Conv { .. } | Op::Fc { .. }, Some(inp)) = (&node.op, ins.first()) {
                    obs.presynaptic(&app, inp)?;
                }
                obs.current(&app, &v)?;
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
                let (spikes, count) = if_step(mem, &cur, th, self.reset)?;
                st.counters.spikes[slot.0] += count as f64;
                st.counters.neuron_steps[slot.0] += cur.len() as f64;
                let s = Tensor::from_vec(spikes, shape, &self.device)?;
                obs.spikes(&app, &s)?;
                Ok(s)
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
    /// The time step being run (1-based), `None` before the loop.
    time: Option<usize>,
}

/// One IF step (leak 1) of a layer: V += I; a spike where V ≥ θ, then V −= θ (subtract) or
/// V = 0 — `neuron::lif_step` with leak 1. Returns the spikes and their number.
pub fn if_step(
    v: &mut [f32],
    current: &[f32],
    threshold: f32,
    reset: Reset,
) -> Result<(Vec<f32>, usize)> {
    let p = neuron::NeuronParams {
        leak: 1.0,
        threshold,
        reset,
        gamma: 0.0,
    };
    neuron::lif_step(&p, v, current)
}
