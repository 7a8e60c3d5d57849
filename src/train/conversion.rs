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
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use serde::Serialize;

use crate::analysis;
use crate::backend::candle::classifier::correct_count;
use crate::backend::candle::event::PathPolicy;
use crate::backend::candle::model::rng_for as derive_rng;
use crate::backend::candle::model::{ForwardOptions, Model};
pub use crate::backend::candle::step::{Counters, RunOutput, RunSpec, Simulator};
use crate::data::{Dataset, Split};
use crate::ir::{Activation, Network, Op, Reset, SlotId};
use crate::train::checkpoint::{self, Meta};
use crate::train::driver::{
    batch_tensors, check_data, load_data, EvalConfig, EvalOutcome, TrainConfig,
};
use crate::train::error::TrainError;
use crate::train::method::TrainingMethod;
use crate::train::report::{ActivityRecord, EnergyRecord, Report};
use crate::train::{defaults, progress};

const BALANCE_STREAM: u64 = 1 << 40;
const EVAL_STREAM: u64 = (1 << 40) + 1;
/// Percentile balancing keeps at most about this many activations per slot.
const PERCENTILE_SAMPLE: f64 = 4.0e6;
pub use crate::train::checkpoint::RESET_KEY;

use crate::backend::candle::err;

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
            balance_images: defaults::BALANCE_IMAGES,
            balance_steps: defaults::BALANCE_STEPS,
            reset: Reset::Subtract,
            eval_timesteps: defaults::CONVERSION_TIMESTEPS.to_vec(),
            batch: defaults::CONVERSION_BATCH,
            policy: PathPolicy::default(),
            seed: 0,
            progress: false,
        }
    }
}

fn progress_bar(len: usize, show: bool, prefix: &str) -> indicatif::ProgressBar {
    progress::bar(len, show, prefix, false)
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
    sim.network()
        .thresholds
        .iter()
        .zip(sim.thresholds())
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
    let dev = sim.device().clone();
    match cfg.balance {
        Balance::MaxInput => {
            let steps = cfg.balance_steps.max(1);
            let slots = sim.slots_in_order();
            let pb = progress_bar(slots.len() * chunks.len(), cfg.progress, "balancing");
            for slot in slots {
                let target = sim.network().thresholds[slot.0].node;
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
                let s = &sim.network().thresholds[slot.0];
                pb.set_message(format!("{}@{}: {m:.3}", s.layer, s.step));
                if m > 0.0 && m.is_finite() {
                    sim.set_threshold(slot, m)?;
                }
            }
            pb.finish_and_clear();
        }
        Balance::Percentile(p) => {
            let per_image: f64 = sim
                .network()
                .thresholds
                .iter()
                .filter_map(|s| sim.network().graph[s.node].out_shape?.features())
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
            let mut acts: Vec<Vec<f32>> = vec![Vec::new(); sim.thresholds().len()];
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
                let up = upstream_scale(
                    sim.network(),
                    sim.network().thresholds[slot.0].node,
                    &lambda,
                );
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

/// E_ANN, E_SNN and EE (pJ) by `analysis::estimate`'s rows at latency `t`, with each
/// accumulate layer's SA replaced by the measured fraction of non-zero inputs of that node
/// (`density`, indexed by node; unmeasured nodes 1): Eq. 11 with the input density instead
/// of the upstream spike rate (after an average pool the density exceeds the spike rate).
pub fn energy_from_input_density(net: &Network, density: &[f64], t: usize) -> (f64, f64, f64) {
    let opts = analysis::Options {
        timesteps: Some(u32::try_from(t).unwrap_or(u32::MAX)),
        activity: analysis::Activity::Uniform(1.0),
        energy: analysis::EnergyModel::INT32,
    };
    let est = analysis::estimate(net, &opts);
    let by_layer: HashMap<(&str, u32), f64> = net
        .graph
        .node_indices()
        .map(|n| {
            let node = &net.graph[n];
            let d = density.get(n.index()).copied().unwrap_or(1.0);
            ((node.name.as_str(), node.step), d)
        })
        .collect();
    let mut e_snn = 0.0;
    for row in &est.layers {
        let ops = row.ops as f64;
        e_snn += match row.op {
            analysis::OpKind::Ac => {
                let sa = by_layer
                    .get(&(row.name.as_str(), row.step))
                    .copied()
                    .unwrap_or(1.0);
                ops * sa * t as f64 * est.energy.e_ac
            }
            analysis::OpKind::Mac => ops * est.energy.e_mac,
            analysis::OpKind::None => 0.0,
        };
    }
    let ee = if e_snn > 0.0 {
        est.e_ann_pj / e_snn
    } else {
        0.0
    };
    (est.e_ann_pj, e_snn, ee)
}

fn c_has_weights(net: &Network, n: NodeIndex) -> bool {
    net.graph[n].op.weights().is_some()
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
        let (x, y) = data.images(c, sim.device())?;
        let out = sim.run(&x, &spec, &mut rng)?;
        right += correct_count(&out.logits[0], &y)?;
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
    let nodes = sim.network().graph.node_count();
    let slots = sim.thresholds().len();
    let mut right = vec![0usize; ts.len()];
    let mut counters = vec![Counters::new(slots, nodes); ts.len()];
    let (mut dense, mut event) = (0, 0);
    let mut rng = derive_rng(seed, EVAL_STREAM);
    let start = Instant::now();
    let chunks: Vec<&[usize]> = idx.chunks(batch.max(1)).collect();
    let pb = progress_bar(chunks.len(), progress, "SNN");
    for c in chunks {
        let (x, y) = data.images(c, sim.device())?;
        let out = sim.run(&x, &spec, &mut rng)?;
        for (i, l) in out.logits.iter().enumerate() {
            right[i] += correct_count(l, &y)?;
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
                .network()
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
                .order()
                .iter()
                .filter(|&&n| sim.network().graph[n].op.weights().is_some())
                .map(|&n| ActivityRecord {
                    layer: sim.network().graph[n].name.clone(),
                    step: sim.network().graph[n].step,
                    spike_rate: sa[n.index()],
                })
                .collect();
            // The Poisson input's rate: the input density of a layer fed by the encoder.
            let input_rate = sim
                .network()
                .graph
                .node_indices()
                .filter(|&e| matches!(sim.network().graph[e].op, Op::Encode { .. }))
                .flat_map(|e| {
                    sim.network()
                        .graph
                        .neighbors_directed(e, Direction::Outgoing)
                })
                .find(|&c| c_has_weights(sim.network(), c))
                .map(|c| sa[c.index()])
                .unwrap_or(1.0);
            let (_, e_dens, ee_dens) = energy_from_input_density(sim.network(), &sa, t);
            let (e_ann, e_snn, ee) = energy_from_rates(sim.network(), &activity, input_rate, t);
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

/// The conversion method: the driver trains the ANN (`Mode::Ann`, checkpoints as `ann`);
/// then thresholds are balanced, the SNN is evaluated at every latency, and the checkpoint
/// (ANN weights, thresholds, reset) and report become `conversion`'s.
#[derive(Debug, Clone, Copy)]
pub struct ConversionMethod;

impl TrainingMethod for ConversionMethod {
    fn name(&self) -> &'static str {
        "conversion"
    }

    fn about(&self) -> &'static str {
        "the ANN, then balanced IF thresholds"
    }

    fn forward_options(&self, _timesteps: usize, train: bool) -> ForwardOptions {
        ForwardOptions::ann(train)
    }

    fn training_timesteps(&self, _timesteps: usize) -> usize {
        1
    }

    fn checkpoint_method(&self) -> &'static str {
        "ann"
    }

    fn validate(&self, cfg: &TrainConfig) -> std::result::Result<(), TrainError> {
        let c = &cfg.conversion;
        if c.balance_images == 0
            || c.balance_steps == 0
            || c.batch == 0
            || c.eval_timesteps.is_empty()
            || c.eval_timesteps.contains(&0)
        {
            return Err(TrainError::Config(
                "--balance-images, --balance-steps and --eval-timesteps must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn after_training(
        &self,
        model: &mut Model,
        data: &Dataset,
        cfg: &TrainConfig,
        report: &mut Report,
        out: &Path,
    ) -> std::result::Result<Vec<String>, TrainError> {
        let cc = ConversionConfig {
            seed: cfg.seed,
            progress: cfg.progress,
            ..cfg.conversion.clone()
        };
        let train = SplitImages::new(&data.train, data.shape);
        let test = SplitImages::new(&data.test, data.shape);
        if cfg.progress {
            eprintln!(
                "balancing thresholds ({}, {} images × {} steps), then the SNN at T = {:?}",
                cc.balance, cc.balance_images, cc.balance_steps, cc.eval_timesteps
            );
        }
        let conv = convert(model, &train, &test, &cc).map_err(TrainError::Conversion)?;
        let meta = Meta {
            epoch: report.epochs.len(),
            seed: cc.seed,
            network: report.network.clone(),
            method: self.name().into(),
        };
        save_checkpoint(model, cc.reset, &checkpoint::weights_path(out), &meta)?;
        apply_to_report(report, &conv);
        report.write_json(&out.join("report.json"))?;
        let mut lines = vec![format!(
            "ANN test accuracy {:.2}%",
            100.0 * conv.ann_test_accuracy
        )];
        for t in &conv.thresholds {
            lines.push(format!(
                "  v_thresh {:<10} step {:>2}  {:.4}",
                t.layer, t.step, t.threshold
            ));
        }
        for (l, inc) in &conv.backres_increasing {
            lines.push(format!("  {l}: v_thresh,1 < v_thresh,2 < … holds: {inc}"));
        }
        for r in &conv.snn.results {
            lines.push(format!(
                "SNN T = {:>4}: accuracy {:6.2}% (conversion loss {:+.2} points), E_SNN {:.3e} pJ, EE = {:.2}",
                r.timesteps,
                100.0 * r.test_accuracy,
                100.0 * (conv.ann_test_accuracy - r.test_accuracy),
                r.e_snn_pj,
                r.ee
            ));
        }
        Ok(lines)
    }

    /// The SNN with its balanced thresholds and IF neurons, step by step (no balancing
    /// again), at T (default: the network's `timesteps`, else 100).
    fn evaluate_checkpoint(
        &self,
        model: &Model,
        tensors: &HashMap<String, Tensor>,
        meta: &Meta,
        cfg: &EvalConfig,
    ) -> std::result::Result<EvalOutcome, TrainError> {
        let t = defaults::timesteps(
            model.network(),
            cfg.timesteps,
            defaults::CONVERSION_EVAL_TIMESTEPS,
        );
        if t == 0 || cfg.batch == 0 {
            return Err(TrainError::Config(
                "--timesteps and --batch must be at least 1".into(),
            ));
        }
        let data = load_data(cfg.data.as_deref(), Some(0), cfg.test_limit)?;
        check_data(model, &data)?;
        let reset = checkpoint_reset(tensors).map_err(TrainError::Conversion)?;
        let sim =
            Simulator::new(model, reset, PathPolicy::default()).map_err(TrainError::Conversion)?;
        let test = SplitImages::new(&data.test, data.shape);
        let ev = evaluate_snn(&sim, &test, &[t], cfg.batch, meta.seed, cfg.progress)
            .map_err(TrainError::Conversion)?;
        let r = &ev.results[0];
        Ok(EvalOutcome {
            label: "conversion, IF".into(),
            timesteps: t,
            accuracy: r.test_accuracy,
            images: ev.images,
            loss: None,
            images_per_s: ev.images as f64 / ev.seconds.max(1e-9),
            activity: r.activity.clone(),
            energy: Some(EnergyRecord {
                e_ann_pj: r.e_ann_pj,
                e_snn_pj: r.e_snn_pj,
                ee: r.ee,
            }),
        })
    }

    fn as_dyn(&self) -> &dyn TrainingMethod {
        self
    }
}
