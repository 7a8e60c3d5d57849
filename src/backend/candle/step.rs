//! The executable network step by step: one time step at a time, membrane potentials held
//! across steps, so memory does not grow with T. Neurons are the network's own (LIF:
//! `u ← leak·u + I`, a spike where u ≥ θ, then the reset the caller configures; IF is leak 1)
//! or, for conversion ([`Simulator::set_if_neurons`]), IF whatever the file declares. Conv and
//! FC layers take the dense path (candle) or the event-driven one (`event`, one image per
//! rayon task) by measured input density ([`PathPolicy`]); the neuron update, the density
//! count and the zeroing of outputs also run on both cores, and layer values are read in
//! place from the tensors (no per-step copies).
//!
//! What runs when: nodes before the first spiking layer run once (`Phase::Pre`, an ANN
//! prefix), the SNN block at every step, and an ANN suffix behind an SNN→ANN boundary once on
//! the spike rates at each requested latency. Logits at T are the output's mean over the
//! first T steps (the run is causal, so one run at the largest T gives every smaller T).
//!
//! Used by conversion (balancing, evaluation) and STDP: the [`Observer`] hooks are called per
//! spiking layer application and step. The neuron update is `neuron::lif_step_into` (what
//! `lif_step` runs), the same step the batched scan runs (the dynamics exist once).
//!
//! Invariants: a network it cannot run (an SNN block after an SNN→ANN boundary) is an error,
//! never a panic; random draws come only from the `rng` passed in (Poisson input), in
//! topological order and step order.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use rand::RngCore;
use rayon::prelude::*;

use super::alloc::par_zeros;
use super::conv::{par_max, with_cpu_data};
use super::encode::{self, SeededRng};
use super::event::{ConvEvent, FcEvent, PathPolicy};
use super::model::{self, Model};
use super::neuron;
pub use super::observe::Counters;
use super::observe::{Application, NoObserver, Observer, SpikeCounter, Tee};
use super::{err, usize_of};
use crate::ir::{
    Activation, BoundaryKind, Domain, Encoding, LayerKind, Network, Op, Reset, SlotId, WeightId,
};

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

/// A final-form network executed one time step at a time (see the module docs).
pub struct Simulator {
    net: Network,
    order: Vec<NodeIndex>,
    weights: Vec<Tensor>,
    events: Vec<Prepared>,
    thresholds: Vec<f32>,
    reset: Reset,
    /// Conversion: every spiking layer as IF (leak 1), whatever the network declares.
    if_neurons: bool,
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
    /// The model's network, weights and thresholds, run with the network's neurons (their
    /// leak; IF is leak 1) and `reset` for every spiking layer.
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
        let events = net
            .graph
            .node_indices()
            .map(|n| prepare(&net, n, &weights, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Simulator {
            net,
            order,
            weights,
            events,
            thresholds,
            reset,
            if_neurons: false,
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

    /// Runs every spiking layer as IF (leak 1, `reset`) when `on` (conversion), else as the
    /// network declares it (the default).
    pub fn set_if_neurons(&mut self, on: bool) {
        self.if_neurons = on;
    }

    /// Whether every spiking layer runs as IF ([`Simulator::set_if_neurons`]).
    pub fn if_neurons(&self) -> bool {
        self.if_neurons
    }

    pub fn policy(&self) -> PathPolicy {
        self.policy
    }

    pub fn set_policy(&mut self, policy: PathPolicy) {
        self.policy = policy;
    }

    pub fn set_threshold(&mut self, slot: SlotId, value: f32) -> Result<()> {
        model::set_slot_threshold(&mut self.thresholds, slot, value)
    }

    /// Replaces weight set `wid` (same shape) and re-lays out the event weights of the
    /// layers that apply it; the other layers are untouched (STDP changes one layer's
    /// kernels per mini-batch).
    ///
    /// Errors: no weight set `wid`, a shape other than the old one.
    pub fn set_weights(&mut self, wid: WeightId, w: Tensor) -> Result<()> {
        let old = self
            .weights
            .get(wid.0)
            .ok_or_else(|| err(format!("no weight set {}", wid.0)))?;
        if old.shape() != w.shape() {
            return Err(err(format!(
                "weight set {}: shape {:?}, expected {:?}",
                wid.0,
                w.dims(),
                old.dims()
            )));
        }
        self.weights[wid.0] = w;
        for n in self.net.graph.node_indices() {
            if self.net.graph[n].op.weights() == Some(wid) {
                self.events[n.index()] = prepare(&self.net, n, &self.weights, &self.device)?;
            }
        }
        Ok(())
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
            max_input: vec![0.0; slots],
            activations: vec![Vec::new(); slots],
            dense_calls: 0,
            event_calls: 0,
            time: None,
        };
        // The counts are an observer too, run beside the caller's.
        let mut counter = SpikeCounter::new(slots, nodes, !spec.ann);
        let mut tee = Tee(&mut counter, obs);
        let obs: &mut dyn Observer = &mut tee;
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
                out.counters
                    .push(obs.counters().cloned().unwrap_or_default());
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
                    out.counters
                        .push(obs.counters().cloned().unwrap_or_default());
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
                self.weighted(n, weights.0, &first()?, st, obs)?
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
            Activation::Spiking(neuron_spec) => {
                let (slot, th) = model::spiking_slot(node, &self.thresholds)?;
                let app = Application::of(n, node, slot, if ann { None } else { st.time });
                if let (Op::Conv { .. } | Op::Fc { .. }, Some(inp)) = (&node.op, ins.first()) {
                    obs.presynaptic(&app, inp)?;
                }
                obs.current(&app, &v)?;
                let shape = v.shape().clone();
                let leak = if self.if_neurons {
                    1.0
                } else {
                    neuron::NeuronParams::from_spec(&neuron_spec, 0.0).leak
                };
                let p = neuron::NeuronParams {
                    leak,
                    threshold: th,
                    reset: self.reset,
                    gamma: 0.0,
                };
                // One pass over the current for its maximum, one for the ReLU (ANN mode) or
                // the neuron update; `Some((spikes, neurons))` for the latter.
                let (out, counted) = with_values(&v, |cur| {
                    let m = par_max(cur);
                    if m > st.max_input[slot.0] {
                        st.max_input[slot.0] = m;
                    }
                    if ann {
                        let a: Vec<f32> = cur.par_iter().map(|&c| c.max(0.0)).collect();
                        if let Some(p) = spec.collect {
                            // One key per application from the stream, then a counter-based
                            // draw per element: parallel and the same on any number of threads.
                            let key = rng.0.next_u64();
                            st.activations[slot.0].extend(sample_positive(&a, p, key));
                        }
                        return Ok((a, None));
                    }
                    let mem = st.membranes[n.index()].get_or_insert_with(|| vec![0.0; cur.len()]);
                    if mem.len() != cur.len() {
                        return Err(err(format!("`{}` changed size between steps", node.name)));
                    }
                    let (spikes, count) = par_step(&p, mem, cur)?;
                    Ok((spikes, Some((count, cur.len()))))
                })?;
                let Some((count, neurons)) = counted else {
                    return Tensor::from_vec(out, shape, &self.device);
                };
                obs.spike_count(&app, count, neurons)?;
                let s = Tensor::from_vec(out, shape, &self.device)?;
                obs.spikes(&app, &s)?;
                Ok(s)
            }
        }
    }

    /// A conv or FC application on `inp`, by the dense or event path.
    fn weighted(
        &self,
        n: NodeIndex,
        wid: usize,
        inp: &Tensor,
        st: &mut State,
        obs: &mut dyn Observer,
    ) -> Result<Tensor> {
        let wt = &self.weights[wid];
        let kind = self.net.weights[wid].kind;
        let b = inp.dim(0)?;
        let (nz, len) = with_values(inp, |flat| Ok((count_nonzero(flat), flat.len())))?;
        obs.input_count(n, nz, len)?;
        let density = if len == 0 {
            0.0
        } else {
            nz as f32 / len as f32
        };
        let event = self
            .policy
            .use_event(density, matches!(kind, LayerKind::Conv { .. }));
        match (kind, &self.events[n.index()]) {
            (LayerKind::Conv { .. }, Prepared::Conv(ev)) if event => {
                st.event_calls += 1;
                let (o, oh, ow) = ev.out_dims();
                let y = with_values(inp, |flat| ev.forward(flat))?;
                Tensor::from_vec(y, (b, o, oh, ow), &self.device)
            }
            (LayerKind::Fc { outputs, .. }, Prepared::Fc(ev)) if event => {
                st.event_calls += 1;
                let y = with_values(inp, |flat| ev.forward(flat))?;
                Tensor::from_vec(y, (b, usize_of(outputs)?), &self.device)
            }
            (LayerKind::Conv { stride, pad, .. }, _) => {
                st.dense_calls += 1;
                // snnc's convolution, so the currents equal the fused layers' of the model.
                super::conv::conv2d(inp, wt, usize_of(stride)?, usize_of(pad)?)
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
    max_input: Vec<f32>,
    activations: Vec<Vec<f32>>,
    dense_calls: usize,
    event_calls: usize,
    /// The time step being run (1-based), `None` before the loop.
    time: Option<usize>,
}

/// The positive entries of `a`, each kept with probability `p` (all when `p ≥ 1`), in order:
/// entry i is kept iff `mix64(key ⊕ mix64(i)) < p·2⁶⁴`, a draw that depends only on (`key`,
/// i), so the sample is the same however the work is split over threads.
fn sample_positive(a: &[f32], p: f64, key: u64) -> Vec<f32> {
    let all = p >= 1.0;
    // p·2⁶⁴, saturating; p ≤ 0 (or NaN) keeps nothing.
    let below = (p.max(0.0) * 18_446_744_073_709_551_616.0) as u64;
    a.par_chunks(PAR_STEP_MIN)
        .enumerate()
        .flat_map_iter(|(ci, ch)| {
            ch.iter().enumerate().filter_map(move |(j, &c)| {
                let i = (ci * PAR_STEP_MIN + j) as u64;
                (c > 0.0 && (all || encode::mix64(key ^ encode::mix64(i)) < below)).then_some(c)
            })
        })
        .collect()
}

/// Below this many neurons a layer's update runs on one core.
const PAR_STEP_MIN: usize = 1 << 14;

/// `neuron::lif_step` over a layer, split into chunks that run on both cores (the update is
/// element-wise, so the split changes nothing). Returns the spikes and their number.
fn par_step(p: &neuron::NeuronParams, u: &mut [f32], x: &[f32]) -> Result<(Vec<f32>, usize)> {
    if u.len() < PAR_STEP_MIN || u.len() != x.len() {
        return neuron::lif_step(p, u, x);
    }
    let chunk = u
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(PAR_STEP_MIN / 2);
    let mut spikes = par_zeros(x.len());
    let counts = u
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .zip(spikes.par_chunks_mut(chunk))
        .map(|((u, x), s)| neuron::lif_step_into(p, u, x, s))
        .collect::<Result<Vec<_>>>()?;
    Ok((spikes, counts.into_iter().sum()))
}

/// `f` on the values of `t`, row-major: borrowed from a contiguous f32 CPU tensor (no copy:
/// a layer's values are megabytes and a copy runs on one core), copied out otherwise.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous() {
        return with_cpu_data(t, "step", f)?;
    }
    f(&t.flatten_all()?.to_vec1::<f32>()?)
}

/// The number of non-zero entries of `x`, counted on every core.
fn count_nonzero(x: &[f32]) -> usize {
    x.par_chunks(PAR_STEP_MIN)
        .map(|c| c.iter().filter(|&&v| v != 0.0).count())
        .sum()
}

/// The event-path layout of node `n`'s weights (CPU only; other devices and weightless
/// nodes run dense).
fn prepare(net: &Network, n: NodeIndex, weights: &[Tensor], device: &Device) -> Result<Prepared> {
    let node = &net.graph[n];
    let Some(wid) = node.op.weights() else {
        return Ok(Prepared::None);
    };
    if !device.is_cpu() {
        return Ok(Prepared::None);
    }
    let wt = weights
        .get(wid.0)
        .ok_or_else(|| err(format!("no weight set {}", wid.0)))?;
    Ok(match net.weights[wid.0].kind {
        LayerKind::Conv { stride, pad, .. } => {
            let src = net.inputs_of(n).first().copied();
            let shape = src
                .and_then(|s| net.graph[s].out_shape)
                .ok_or_else(|| err(format!("`{}` has no input shape", node.name)))?;
            Prepared::Conv(ConvEvent::new(
                wt,
                usize_of(stride)?,
                usize_of(pad)?,
                usize_of(shape.h)?,
                usize_of(shape.w)?,
            )?)
        }
        LayerKind::Fc { .. } => Prepared::Fc(FcEvent::new(wt)?),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle::model::{rng_for, ForwardOptions};
    use crate::backend::candle::netbuild::NetBuilder;
    use crate::ir::{Encoding, Shape};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn spec(checkpoints: Vec<usize>) -> RunSpec {
        RunSpec {
            ann: false,
            checkpoints,
            stop: None,
            collect: None,
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// One LIF neuron (leak 0.5, θ = 1) fed I = 0.3 + 0.4 = 0.7 per step:
    /// u = 0.7, 1.05 → spike (0.05 subtract / 0 zero), 0.725 (0.7), 1.0625 → spike (1.05):
    /// spikes 0, 1, 0, 1, so the output means at T = 1..4 are 0, 1/2, 1/3, 1/2. As IF
    /// (conversion): u = 0.7, 1.4 → 0.4, 1.1 → 0.1, 0.8: spikes 0, 1, 1, 0 → 0, 1/2, 2/3, 1/2.
    #[test]
    fn simulator_honours_the_leak() -> Result<()> {
        let dev = Device::Cpu;
        for reset in [Reset::Subtract, Reset::Zero] {
            let b = NetBuilder::new("lif", Shape::new(1, 1, 2), 4)
                .encoding(Encoding::Direct)
                .settings(|s| {
                    s.neuron.kind = crate::ir::NeuronKind::Lif;
                    s.neuron.leak = 0.5;
                    s.neuron.threshold = 1.0;
                    s.neuron.reset = reset;
                });
            let lif = b.lif();
            let net = b
                .fc("FC1", 2, 1, lif)
                .fc("FC2", 1, 1, Activation::None)
                .build();
            let w1 = Tensor::new(&[[0.3f32, 0.4]], &dev)?;
            let w2 = Tensor::new(&[[1.0f32]], &dev)?;
            let x = Tensor::new(&[[[[1.0f32, 1.0]]]], &dev)?;
            for policy in [PathPolicy::Dense, PathPolicy::Event] {
                let mut sim = Simulator::from_parts(
                    net.clone(),
                    vec![w1.clone(), w2.clone()],
                    vec![1.0],
                    reset,
                    policy,
                    &dev,
                )?;
                let out = sim.run(&x, &spec(vec![1, 2, 3, 4]), &mut SeededRng::new(0))?;
                let got: Vec<f32> = out.logits.iter().map(|l| values(l)[0]).collect();
                let want = [0.0, 0.5, 1.0 / 3.0, 0.5];
                for (g, w) in got.iter().zip(want) {
                    assert!((g - w).abs() < 1e-6, "{reset:?} {policy:?}: {got:?}");
                }
                assert_eq!(out.counters[3].spikes, vec![2.0]);
                sim.set_if_neurons(true);
                let out = sim.run(&x, &spec(vec![1, 2, 3, 4]), &mut SeededRng::new(0))?;
                let got: Vec<f32> = out.logits.iter().map(|l| values(l)[0]).collect();
                let want = if reset == Reset::Subtract {
                    [0.0, 0.5, 2.0 / 3.0, 0.5]
                } else {
                    // Reset to zero: 0.7, 1.4 → 0, 0.7, 1.4 → 0: spikes 0, 1, 0, 1.
                    [0.0, 0.5, 1.0 / 3.0, 0.5]
                };
                for (g, w) in got.iter().zip(want) {
                    assert!((g - w).abs() < 1e-6, "IF {reset:?} {policy:?}: {got:?}");
                }
            }
        }
        Ok(())
    }

    /// Step by step (dense and event paths) equals the batched `Model::forward` for a LIF
    /// conv/pool/FC network with leak 0.8, on Poisson input keyed per image and on direct
    /// input.
    #[test]
    fn simulator_matches_batched_forward_for_lif() -> Result<()> {
        let dev = Device::Cpu;
        for (encoding, reset) in [
            (Encoding::Poisson, Reset::Subtract),
            (Encoding::Direct, Reset::Zero),
        ] {
            let b = NetBuilder::new("lifnet", Shape::new(1, 6, 6), 5)
                .encoding(encoding)
                .settings(|s| {
                    s.neuron.kind = crate::ir::NeuronKind::Lif;
                    s.neuron.leak = 0.8;
                    s.neuron.reset = reset;
                });
            let lif = b.lif();
            let net = b
                .conv("C1", 1, 4, 3, 1, lif)
                .pool(crate::ir::PoolKind::Avg, 2, 2)
                .fc("F1", 4 * 3 * 3, 6, lif)
                .fc("F2", 6, 3, Activation::None)
                .build();
            let mut m = Model::new(&net, &dev, 3)?;
            for slot in 0..net.thresholds.len() {
                m.set_threshold(SlotId(slot), 0.25)?;
            }
            let px: Vec<f32> = (0..4 * 36)
                .map(|i| ((i * 37) % 101) as f32 / 100.0)
                .collect();
            let x = Tensor::from_vec(px, (4, 1, 6, 6), &dev)?;
            let t = 5;
            let mut rng = rng_for(11, 2);
            rng.set_images(0..4);
            let want = m.forward(&x, &ForwardOptions::snn(t, false), &mut rng.clone())?;
            for policy in [PathPolicy::Dense, PathPolicy::Event] {
                let sim = Simulator::new(&m, reset, policy)?;
                let out = sim.run(&x, &spec(vec![t]), &mut rng.clone())?;
                let (g, w) = (values(&out.logits[0]), values(&want.logits));
                assert_eq!(g.len(), w.len());
                for (a, b) in g.iter().zip(&w) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{policy:?}: {g:?} vs {w:?}"
                    );
                }
                let spikes: f64 = out.counters[0].spikes.iter().sum();
                assert!(spikes > 0.0, "the test network must spike");
            }
        }
        Ok(())
    }

    /// Percentile sampling keeps about the asked fraction of the positive activations and
    /// nothing else, and gives the same sample on one thread as on two.
    /// The layer update split over both cores (`par_step`, large layers) is the one-core
    /// `lif_step`: the same spikes, count and membranes, for both resets.
    #[test]
    fn parallel_step_is_the_serial_step() -> Result<()> {
        let n = 3 * PAR_STEP_MIN + 17;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5f32..1.5)).collect();
        let u0: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5f32..0.9)).collect();
        for reset in [Reset::Subtract, Reset::Zero] {
            let p = neuron::NeuronParams {
                leak: 0.9,
                threshold: 1.0,
                reset,
                gamma: 0.0,
            };
            let (mut u_par, mut u_ser) = (u0.clone(), u0.clone());
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .map_err(|e| err(e.to_string()))?;
            let (s_par, c_par) = pool.install(|| par_step(&p, &mut u_par, &x))?;
            let (s_ser, c_ser) = neuron::lif_step(&p, &mut u_ser, &x)?;
            assert_eq!(s_par, s_ser, "{reset:?}: spikes");
            assert_eq!(c_par, c_ser, "{reset:?}: count");
            assert!(
                c_par > 0 && c_par < n,
                "{reset:?}: some but not all neurons spike"
            );
            assert_eq!(u_par, u_ser, "{reset:?}: membranes");
        }
        Ok(())
    }

    #[test]
    fn percentile_sample_is_reproducible_across_threads() {
        let a: Vec<f32> = (0..100_000)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    (i % 17) as f32 - 4.0
                }
            })
            .collect();
        let positive = a.iter().filter(|&&v| v > 0.0).count() as f64;
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| sample_positive(&a, 0.25, 42))
        };
        let one = on(1);
        assert_eq!(one, on(2));
        assert_eq!(one, on(3));
        assert!(one.iter().all(|&v| v > 0.0));
        // Binomial(positive, 0.25): within 6 standard deviations.
        let sd = (positive * 0.25 * 0.75).sqrt();
        assert!(
            (one.len() as f64 - 0.25 * positive).abs() < 6.0 * sd,
            "{}",
            one.len()
        );
        assert_eq!(sample_positive(&a, 1.0, 7).len() as f64, positive);
        assert!(sample_positive(&a, 0.0, 7).is_empty());
        assert_ne!(sample_positive(&a, 0.25, 43), one);
    }

    /// Sums the spike tensors it is shown, per slot, and counts the steps.
    struct TensorSpikes(Vec<f64>, usize);

    impl Observer for TensorSpikes {
        fn spikes(&mut self, app: &Application, spikes: &Tensor) -> Result<()> {
            self.0[app.slot.0] += f64::from(spikes.sum_all()?.to_scalar::<f32>()?);
            self.1 += 1;
            Ok(())
        }
    }

    /// The simulator's counts (its `SpikeCounter` observer, run beside the caller's) equal
    /// the spikes the caller's observer sees in the tensors, and the caller's observer is
    /// still called at every application and step.
    #[test]
    fn spike_counter_observer_matches_the_spike_tensors() -> Result<()> {
        let dev = Device::Cpu;
        let b = NetBuilder::new("cnt", Shape::new(1, 6, 6), 4);
        let lif = b.lif();
        let net = b
            .conv("C1", 1, 3, 3, 1, lif)
            .fc("F1", 3 * 6 * 6, 5, lif)
            .fc("F2", 5, 2, Activation::None)
            .build();
        let mut m = Model::new(&net, &dev, 5)?;
        for slot in 0..net.thresholds.len() {
            m.set_threshold(SlotId(slot), 0.2)?;
        }
        let px: Vec<f32> = (0..3 * 36).map(|i| ((i * 53) % 97) as f32 / 96.0).collect();
        let x = Tensor::from_vec(px, (3, 1, 6, 6), &dev)?;
        let sim = Simulator::new(&m, Reset::Subtract, PathPolicy::default())?;
        let mut seen = TensorSpikes(vec![0.0; net.thresholds.len()], 0);
        let out = sim.run_observed(&x, &spec(vec![2, 4]), &mut SeededRng::new(3), &mut seen)?;
        assert_eq!(seen.1, 2 * 4, "two spiking layers, four steps");
        assert_eq!(out.counters[1].spikes, seen.0);
        assert!(seen.0.iter().sum::<f64>() > 0.0);
        // Neuron·steps: C1 has 3·6·6 neurons per image, F1 5; 3 images; 4 steps (2 at T = 2).
        assert_eq!(
            out.counters[1].neuron_steps,
            vec![3.0 * 108.0 * 4.0, 3.0 * 5.0 * 4.0]
        );
        assert_eq!(
            out.counters[0].neuron_steps,
            vec![3.0 * 108.0 * 2.0, 3.0 * 5.0 * 2.0]
        );
        let total: f64 = out.counters[1].input_total.iter().sum();
        // Inputs of C1 (3·36), F1 (3·108) and F2 (3·5) at each of 4 steps.
        assert_eq!(total, 4.0 * 3.0 * (36.0 + 108.0 + 5.0));
        Ok(())
    }
}
