//! The spike raster of a finished run: the first [`RASTER_IMAGES`] test images run through the
//! trained SNN while a [`RasterRecorder`] (an [`Observer`]) keeps every spike of every spiking
//! layer application, then `raster.svg` in the run folder (one panel per image, layers
//! stacked with the first at the bottom, x = time step, y = neuron index, at most
//! [`RASTER_NEURONS`] neurons per layer sampled evenly, the sampling stated on the plot; the
//! first [`RASTER_STEPS`] time steps).
//!
//! How the images run: conversion and STDP, whose SNNs are integrate-and-fire networks run
//! step by step, through [`Simulator::run_observed`] (the runtime their accuracy was measured
//! on, one call per layer and time step); AGD through the batched
//! [`Model::forward_observed`] at the run's T, since the step runtime has IF neurons only and
//! an AGD network's LIF leak and reset must be kept. Both call the same hooks, so the recorder
//! is the same. The ANN baseline has no spikes and gets no raster.
//!
//! Owner: training (reports and plots). Invariants: recording never changes what the run
//! computes; random draws (Poisson input) come from their own stream of the run's seed, so a
//! raster is reproducible and does not move any other seeded result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Result, Tensor};

use crate::backend::candle::model::{rng_for, ForwardOptions, Mode, Model};
use crate::backend::candle::observe::{Application, Observer};
use crate::backend::candle::step::{RunSpec, Simulator};
use crate::data::Dataset;
use crate::ir::Reset;
use crate::train::driver::TrainConfig;
use crate::train::error::TrainError;
use crate::train::plot::{plot_rasters, SpikeTrain};

/// Test images drawn: the first four of the test split (fewer when it is smaller).
pub const RASTER_IMAGES: usize = 4;
/// Neurons drawn per layer at most, sampled evenly (`plot::sample_neurons`).
pub const RASTER_NEURONS: usize = 64;
/// Time steps drawn at most: the first 100 (a run is causal, so they are the first steps of
/// the whole run); a longer T is cut, and the panel titles say so.
pub const RASTER_STEPS: usize = 100;
/// The file written in the run folder.
pub const RASTER_FILE: &str = "raster.svg";
/// The random stream of the raster's Poisson input (apart from training's and evaluation's).
const RASTER_STREAM: u64 = 0x5241_5354;

/// Records, per image of the batch, the spike train of every spiking layer application
/// (and of the Poisson input, as layer `input`), in the order they first ran.
///
/// A spike tensor `[R, ...]` holds `R / images` time steps, time outer (`[T·B, ...]` from
/// a batched run, `[B, ...]` per step from the step runtime): row `t·B + b` is image `b` at
/// step `t`. A value > 0.5 is a spike.
#[derive(Debug, Clone)]
pub struct RasterRecorder {
    images: usize,
    /// `trains[b][l]`: image `b`, layer application `l`.
    trains: Vec<Vec<SpikeTrain>>,
    index: HashMap<String, usize>,
}

impl RasterRecorder {
    /// A recorder for a batch of `images` images.
    pub fn new(images: usize) -> Self {
        RasterRecorder {
            images,
            trains: vec![Vec::new(); images],
            index: HashMap::new(),
        }
    }

    /// `trains[b]`: the spike trains of image `b`, one per layer application (first ran
    /// first), `spikes[t][neuron]` with neurons flattened (C·H·W or F).
    pub fn trains(&self) -> &[Vec<SpikeTrain>] {
        &self.trains
    }

    /// The label of an application: the layer, `layer@step` for unroll step > 1.
    pub fn label(app: &Application) -> String {
        if app.step > 1 {
            format!("{}@{}", app.layer, app.step)
        } else {
            app.layer.to_string()
        }
    }

    fn push(&mut self, label: &str, spikes: &Tensor) -> Result<()> {
        if self.images == 0 {
            return Ok(());
        }
        let rows = spikes.dim(0)?;
        if rows % self.images != 0 {
            return Err(candle_core::Error::Msg(format!(
                "raster: {rows} rows of `{label}` are not a multiple of {} images",
                self.images
            )));
        }
        let flat = spikes.flatten_all()?.to_vec1::<f32>()?;
        let per = flat.len() / rows.max(1);
        let l = match self.index.get(label) {
            Some(&l) => l,
            None => {
                let l = self.trains[0].len();
                for t in &mut self.trains {
                    t.push(SpikeTrain {
                        layer: label.to_string(),
                        spikes: Vec::new(),
                    });
                }
                self.index.insert(label.to_string(), l);
                l
            }
        };
        for (r, row) in flat.chunks(per.max(1)).enumerate().take(rows) {
            let b = r % self.images;
            self.trains[b][l]
                .spikes
                .push(row.iter().map(|&v| v > 0.5).collect());
        }
        Ok(())
    }
}

impl Observer for RasterRecorder {
    fn input_spikes(&mut self, spikes: &Tensor) -> Result<()> {
        self.push("input", spikes)
    }

    fn spikes(&mut self, app: &Application, spikes: &Tensor) -> Result<()> {
        self.push(&Self::label(app), spikes)
    }

    fn wants_currents(&self) -> bool {
        false
    }
}

/// Runs images `x` `[B, C, H, W]` through `sim` step by step for `timesteps` steps and
/// returns their spike trains (`[b][layer]`). Errors: the simulator's.
pub fn record_steps(
    sim: &Simulator,
    x: &Tensor,
    timesteps: usize,
    seed: u64,
) -> Result<Vec<Vec<SpikeTrain>>> {
    let mut rec = RasterRecorder::new(x.dim(0)?);
    let spec = RunSpec {
        ann: false,
        checkpoints: vec![timesteps.max(1)],
        stop: None,
        collect: None,
    };
    sim.run_observed(x, &spec, &mut rng_for(seed, RASTER_STREAM), &mut rec)?;
    Ok(rec.trains)
}

/// Runs images `x` `[B, C, H, W]` through `model` batched with `opts` (an SNN mode) and
/// returns their spike trains (`[b][layer]`). Errors: the model's.
pub fn record_batched(
    model: &Model,
    x: &Tensor,
    opts: &ForwardOptions,
    seed: u64,
) -> Result<Vec<Vec<SpikeTrain>>> {
    let mut rec = RasterRecorder::new(x.dim(0)?);
    model.forward_observed(x, opts, &mut rng_for(seed, RASTER_STREAM), &mut rec)?;
    Ok(rec.trains)
}

/// How a method's trained SNN is run for its raster.
#[derive(Debug, Clone, PartialEq)]
pub enum RasterRun {
    /// Step by step with `reset`, for `timesteps` steps: every spiking layer as IF when
    /// `if_neurons` (conversion), else each layer's declared neuron (STDP).
    Steps {
        reset: Reset,
        timesteps: usize,
        if_neurons: bool,
    },
    /// Batched with these options.
    Batched(ForwardOptions),
}

/// How the run `cfg` describes is rastered: conversion step by step with its reset at its
/// largest evaluated T; any other method batched with its evaluation options; `None` when
/// those are the ANN (no spikes).
pub fn run_for(cfg: &TrainConfig) -> Option<RasterRun> {
    if cfg.method.name() == "conversion" {
        let t = cfg.conversion.eval_timesteps.iter().copied().max()?;
        return Some(RasterRun::Steps {
            reset: cfg.conversion.reset,
            timesteps: t,
            if_neurons: true,
        });
    }
    let opts = cfg.method.forward_options(cfg.timesteps, false);
    (opts.mode != Mode::Ann).then_some(RasterRun::Batched(opts))
}

/// Records the first [`RASTER_IMAGES`] test images of `data` through `model` as `how` says
/// and writes `raster.svg` in `out`. Returns the line to show the user. Errors
/// (`TrainError::Io`): the runtime fails, or the file cannot be written.
pub fn write_raster(
    model: &Model,
    data: &Dataset,
    how: &RasterRun,
    seed: u64,
    out: &Path,
) -> std::result::Result<String, TrainError> {
    let io = |e: String| TrainError::Io(std::io::Error::other(e));
    let n = RASTER_IMAGES.min(data.test.len());
    let idx: Vec<usize> = (0..n).collect();
    let (x, _) = crate::train::driver::batch_tensors(&data.test, data.shape, &idx, model.device())
        .map_err(|e| io(e.to_string()))?;
    let (recorded, t) = match how {
        RasterRun::Steps {
            reset,
            timesteps,
            if_neurons,
        } => {
            let mut sim =
                Simulator::new(model, *reset, Default::default()).map_err(|e| io(e.to_string()))?;
            sim.set_if_neurons(*if_neurons);
            let steps = (*timesteps).clamp(1, RASTER_STEPS);
            (record_steps(&sim, &x, steps, seed), *timesteps)
        }
        RasterRun::Batched(opts) => (record_batched(model, &x, opts, seed), opts.timesteps),
    };
    let mut trains = recorded.map_err(|e| io(format!("cannot record the spike raster: {e}")))?;
    for train in trains.iter_mut().flatten() {
        train.spikes.truncate(RASTER_STEPS);
    }
    let steps = if t > RASTER_STEPS {
        format!(", steps 1–{RASTER_STEPS} of T = {t}")
    } else {
        format!(", T = {t}")
    };
    let path = out.join(RASTER_FILE);
    let panels: Vec<(String, Vec<SpikeTrain>)> = trains
        .into_iter()
        .enumerate()
        .map(|(b, t)| {
            let label = data.test.labels.get(b).copied().unwrap_or_default();
            (format!("test image {}, label {label}{steps}", b + 1), t)
        })
        .collect();
    plot_rasters(&panels, RASTER_NEURONS, &path).map_err(|e| io(e.to_string()))?;
    Ok(raster_line(&path, n))
}

/// The line that tells the user where the raster of `images` test images is.
pub fn raster_line(path: &Path, images: usize) -> String {
    format!(
        "spike raster of test images 1–{images} (at most {RASTER_NEURONS} neurons per layer): {}",
        path.display()
    )
}

/// The raster of a finished run, as the driver calls it: `raster.svg` in `out` when the run's
/// method produces an SNN ([`run_for`]), with the line to show; no line otherwise.
/// Errors: those of [`write_raster`].
pub fn after_run(
    model: &Model,
    data: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
) -> std::result::Result<Vec<String>, TrainError> {
    match run_for(cfg) {
        Some(how) if !data.test.is_empty() => {
            Ok(vec![write_raster(model, data, &how, cfg.seed, out)?])
        }
        _ => Ok(Vec::new()),
    }
}

/// The path `raster.svg` would have in `out`.
pub fn raster_path(out: &Path) -> PathBuf {
    out.join(RASTER_FILE)
}
