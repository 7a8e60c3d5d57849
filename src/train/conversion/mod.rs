//! ANN-to-SNN conversion (Section III.B.1 and IV of the paper): the ANN phase is the AGD loop
//! with `TrainMethod::Ann` (every spiking layer as ReLU, T = 1); this module then balances one
//! threshold per (spiking layer, unroll step) and runs the converted SNN, step by step.
//!
//! - [`Simulator`] executes a final-form network one time step at a time with integrate-and-
//!   fire neurons (leak 1, reset by subtraction or to zero), holding membrane potentials
//!   across steps, so memory does not grow with T. Conv and FC layers take the dense path
//!   (candle) or the event-driven one (`backend::candle::event`) by measured input density;
//!   [`sim_path`] lets a run force one path (`SNNC_SIM_PATH=auto|event|dense`, or
//!   `snnc eval --sim-path`), for benchmarks and comparisons; the results agree to f32
//!   summation order.
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

mod balance;
mod evaluate;
mod method;

pub use balance::*;
pub use evaluate::*;
pub use method::{evaluate_steps, ConversionMethod, StepNeurons};

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

/// What a conversion run computes per step, when forced (benchmarks, comparisons).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimPath {
    /// The SNN, with this accumulation path.
    Snn(PathPolicy),
    /// `snnc eval` of a converted checkpoint only: the source ANN (ReLU, one pass, the same
    /// weights), for its inference time; balancing and training ignore it.
    Ann,
}

impl std::str::FromStr for SimPath {
    type Err = String;

    /// `auto`, `event`, `dense` (see [`PathPolicy`]) or `ann`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("ann") {
            return Ok(SimPath::Ann);
        }
        s.parse::<PathPolicy>().map(SimPath::Snn).map_err(|_| {
            format!(
                "unknown simulation path `{}` (expected auto, event, dense or ann)",
                s.trim()
            )
        })
    }
}

/// The path forced by [`set_sim_path`].
static SIM_PATH: std::sync::Mutex<Option<SimPath>> = std::sync::Mutex::new(None);

/// Forces every later conversion run of this process onto `path` (`None`: back to
/// `SNNC_SIM_PATH`, else the configured policy). `snnc eval --sim-path` calls it.
pub fn set_sim_path(path: Option<SimPath>) {
    if let Ok(mut g) = SIM_PATH.lock() {
        *g = path;
    }
}

/// The forced path: [`set_sim_path`]'s, else `SNNC_SIM_PATH` (`auto`, `event`, `dense` or
/// `ann`; anything else is an error), else `None`.
pub fn forced_sim_path() -> Result<Option<SimPath>> {
    if let Some(p) = SIM_PATH.lock().ok().and_then(|g| *g) {
        return Ok(Some(p));
    }
    match std::env::var("SNNC_SIM_PATH") {
        Ok(v) => v
            .parse::<SimPath>()
            .map(Some)
            .map_err(|e| err(format!("SNNC_SIM_PATH: {e}"))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(err(format!("SNNC_SIM_PATH: {e}"))),
    }
}

/// The accumulation path an SNN run uses: the forced one ([`forced_sim_path`]), else
/// `configured`.
pub fn sim_path(configured: PathPolicy) -> Result<PathPolicy> {
    Ok(match forced_sim_path()? {
        Some(SimPath::Snn(p)) => p,
        _ => configured,
    })
}

fn progress_bar(len: usize, show: bool, prefix: &str) -> progress::Progress {
    progress::Progress::new(len, show, prefix, false)
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
    if let Some(r) = conv.snn.results.last() {
        report
            .extra
            .insert("input_spike_rate".into(), r.input_spike_rate.into());
    }
}

/// Balances the trained `model` on `balance_data`, writes the thresholds into it, and
/// evaluates the ANN and the SNN on `test`.
pub fn convert(
    model: &mut Model,
    balance_data: &dyn Images,
    test: &dyn Images,
    cfg: &ConversionConfig,
) -> Result<Conversion> {
    let mut sim = Simulator::new(model, cfg.reset, sim_path(cfg.policy)?)?;
    sim.set_if_neurons(true);
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

#[cfg(test)]
mod sim_path_tests {
    use super::*;

    /// `--sim-path` / `SNNC_SIM_PATH` values: the three accumulation paths and the ANN;
    /// anything else is an error naming the choices.
    #[test]
    fn sim_path_values_parse() {
        assert_eq!("auto".parse(), Ok(SimPath::Snn(PathPolicy::default())));
        assert_eq!(" Event ".parse(), Ok(SimPath::Snn(PathPolicy::Event)));
        assert_eq!("dense".parse(), Ok(SimPath::Snn(PathPolicy::Dense)));
        assert_eq!("ANN".parse(), Ok(SimPath::Ann));
        let e = "sparse".parse::<SimPath>().unwrap_err();
        assert!(
            e.contains("`sparse`") && e.contains("auto, event, dense or ann"),
            "{e}"
        );
        assert!("ann".parse::<PathPolicy>().is_err());
    }
}
