//! AGD: surrogate-gradient BPTT through the spiking scan (Section IV), with the network's
//! classifier (softmax, or stochmax while training), Adam or SGD, a batch size, epochs and one
//! seed for everything random. `TrainMethod::Ann` trains the same topology with every
//! spiking layer as ReLU and T = 1 (the ANN baseline).
//!
//! Invariants: randomness of epoch e comes from the seed and e alone (data order:
//! `data::batches(.., seed, e)`; Poisson noise, dropout, stochmax noise:
//! `rng_for(seed, EPOCH_STREAM + e)`), so a run is reproducible and a resumed run
//! continues exactly as the uninterrupted one would; every parameter must receive a
//! gradient at every step (an error otherwise); a non-finite loss stops training with an
//! error and leaves the last checkpoint (end of the previous epoch) in place.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::analysis;
use crate::backend::candle::classifier::correct_count;
use crate::backend::candle::model::{rng_for, ForwardOptions, Model, SlotActivity};
use crate::backend::candle::observe::Recorder;
use crate::data::{Dataset, Split};
use crate::ir::Network;
use crate::train::checkpoint::{self, Meta};
use crate::train::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use crate::train::report::{ActivityRecord, EnergyRecord, EpochRecord, Report};

const EPOCH_STREAM: u64 = 100;
const EVAL_STREAM: u64 = 1 << 32;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Which network is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainMethod {
    /// The SNN, by surrogate gradients.
    Agd,
    /// The same topology with ReLU everywhere and T = 1.
    Ann,
}

impl TrainMethod {
    pub fn name(self) -> &'static str {
        match self {
            TrainMethod::Agd => "agd",
            TrainMethod::Ann => "ann",
        }
    }

    /// Forward options of this method at T = `timesteps`.
    pub fn options(self, timesteps: usize, train: bool) -> ForwardOptions {
        match self {
            TrainMethod::Agd => ForwardOptions::snn(timesteps, train),
            TrainMethod::Ann => ForwardOptions::ann(train),
        }
    }
}

/// Everything a training run needs besides the model and data.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub method: TrainMethod,
    pub epochs: usize,
    pub timesteps: usize,
    pub batch: usize,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Where checkpoints and `report.json` go after every epoch (none: keep in memory).
    pub out: Option<PathBuf>,
    /// Continue from `out/weights.safetensors`.
    pub resume: bool,
    /// Show progress bars (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: TrainMethod::Agd,
            epochs: 1,
            timesteps: 10,
            batch: 32,
            lr: 1e-3,
            schedule: LrSchedule::Constant,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
            out: None,
            resume: false,
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Data(String),
    #[error("parameter `{0}` received no gradient: it does not influence the loss")]
    NoGradient(String),
    #[error("the loss became {loss} at epoch {epoch}, batch {batch}; training stopped (the last checkpoint, if any, is kept). Try a lower learning rate.")]
    NonFinite {
        epoch: usize,
        batch: usize,
        loss: f32,
    },
}

/// Accuracy, loss and measured activity on a data set.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    pub images_per_s: f64,
    /// Per spiking application: mean spike rate (empty for an ANN run), preceded by the
    /// Poisson-coded input's rate as layer `Input`, step 1, when there is one.
    pub activity: Vec<ActivityRecord>,
    /// Per threshold slot: the largest input current seen.
    pub max_input: Vec<f32>,
}

/// Images `[B, C, H, W]` and labels `[B]` (u32) of the examples `idx` of `split`.
pub fn batch_tensors(
    split: &Split,
    shape: [usize; 3],
    idx: &[usize],
    dev: &candle_core::Device,
) -> candle_core::Result<(candle_core::Tensor, candle_core::Tensor)> {
    let (x, y) = split.gather(idx);
    let [c, h, w] = shape;
    let x = candle_core::Tensor::from_vec(x, (idx.len(), c, h, w), dev)?;
    let y: Vec<u32> = y.into_iter().map(u32::from).collect();
    Ok((x, candle_core::Tensor::new(y, dev)?))
}

/// Runs `model` over `split` (images of `shape`) in batches, recording activity.
pub fn evaluate(
    model: &Model,
    split: &Split,
    shape: [usize; 3],
    opts: ForwardOptions,
    batch: usize,
    seed: u64,
) -> Result<Evaluation, TrainError> {
    let opts = ForwardOptions {
        train: false,
        ..opts
    };
    let mut rng = rng_for(seed, EVAL_STREAM);
    let dev = model.device().clone();
    let n = split.len();
    let batch = batch.max(1);
    let start = Instant::now();
    let (mut right, mut loss) = (0usize, 0f64);
    let mut act: Vec<SlotActivity> = Vec::new();
    let mut input_rate: Option<f64> = None;
    let mut max_input = vec![0f32; model.thresholds().len()];
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch) {
        let (x, y) = batch_tensors(split, shape, chunk, &dev)?;
        let mut rec = Recorder::new(model.thresholds().len());
        let out = model.forward_observed(&x, &opts, &mut rng, &mut rec)?;
        right += correct_count(&model.eval_logits(&out)?, &y)?;
        let l = model.loss(&out, &y, false, &mut rng)?.to_scalar::<f32>()?;
        loss += l as f64 * chunk.len() as f64;
        let w = chunk.len() as f32 / n as f32;
        if act.is_empty() {
            act = rec
                .activity
                .iter()
                .map(|a| SlotActivity {
                    spike_rate: 0.0,
                    ..a.clone()
                })
                .collect();
        }
        for (acc, a) in act.iter_mut().zip(&rec.activity) {
            acc.spike_rate += a.spike_rate * w;
        }
        if let Some(r) = rec.input_rate {
            *input_rate.get_or_insert(0.0) += (r * w) as f64;
        }
        for (m, v) in max_input.iter_mut().zip(&rec.max_input) {
            *m = m.max(*v);
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let denom = n.max(1) as f64;
    Ok(Evaluation {
        accuracy: right as f64 / denom,
        loss: loss / denom,
        images_per_s: n as f64 / secs,
        activity: input_rate
            .map(|r| ActivityRecord {
                layer: "Input".into(),
                step: 1,
                spike_rate: r,
            })
            .into_iter()
            .chain(act.into_iter().map(|a| ActivityRecord {
                layer: a.layer,
                step: a.step,
                spike_rate: a.spike_rate as f64,
            }))
            .collect(),
        max_input,
    })
}

/// E_ANN, E_SNN and EE (Eq. 10, 11; Table I energies) of `net` at T = `timesteps` with
/// the measured `activity` (`analysis::estimate`; unmeasured layers at the mean measured
/// rate). The ANN baseline (`TrainMethod::Ann`) runs the ANN itself: E_SNN = E_ANN, EE = 1.
pub fn energy(
    net: &Network,
    activity: &[ActivityRecord],
    timesteps: usize,
    method: TrainMethod,
) -> EnergyRecord {
    let rates: HashMap<(String, u32), f64> = activity
        .iter()
        .filter(|a| a.spike_rate.is_finite())
        .map(|a| ((a.layer.clone(), a.step), a.spike_rate.clamp(0.0, 1.0)))
        .collect();
    let fallback = if rates.is_empty() {
        0.0
    } else {
        rates.values().sum::<f64>() / rates.len() as f64
    };
    let opts = analysis::Options {
        timesteps: Some(u32::try_from(timesteps).unwrap_or(u32::MAX)),
        activity: analysis::Activity::Measured { rates, fallback },
        energy: analysis::EnergyModel::INT32,
    };
    let est = analysis::estimate(net, &opts);
    match method {
        TrainMethod::Ann => EnergyRecord {
            e_ann_pj: est.e_ann_pj,
            e_snn_pj: est.e_ann_pj,
            ee: 1.0,
        },
        TrainMethod::Agd => EnergyRecord {
            e_ann_pj: est.e_ann_pj,
            e_snn_pj: est.e_snn_pj,
            ee: est.ee.unwrap_or(f64::NAN),
        },
    }
}

fn progress_bar(len: usize, show: bool, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} images, {msg}, {per_sec:.0} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    pb
}

/// Checks that `data` fits `model`: image shape and number of classes.
pub fn check_data(model: &Model, data: &Dataset) -> Result<(), TrainError> {
    let [c, h, w] = data.shape;
    model
        .check_input(crate::ir::Shape::new(c as u64, h as u64, w as u64))
        .map_err(TrainError::Data)?;
    if data.classes > model.classes() {
        return Err(TrainError::Data(format!(
            "the data set `{}` has {} classes but the network's last layer has {} outputs",
            data.name,
            data.classes,
            model.classes()
        )));
    }
    Ok(())
}

/// Trains `model` on `data.train`, evaluating on `data.test` after every epoch. With
/// `cfg.out`, a checkpoint and `report.json` are written after every epoch; with
/// `cfg.resume`, training continues from the checkpoint there.
pub fn train(model: &mut Model, data: &Dataset, cfg: &TrainConfig) -> Result<Report, TrainError> {
    let (train, test) = (&data.train, &data.test);
    if train.is_empty() {
        return Err(TrainError::Data("the training set is empty".into()));
    }
    check_data(model, data)?;
    let vars = model.vars();
    let mut opt: Box<dyn Optimizer> = match cfg.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(
            vars.clone(),
            AdamConfig {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..AdamConfig::default()
            },
        )?),
        OptimizerKind::Sgd => Box::new(Sgd::new(
            vars.clone(),
            SgdConfig {
                lr: cfg.lr,
                momentum: cfg.momentum,
                weight_decay: cfg.weight_decay,
                nesterov: false,
            },
        )?),
    };
    let timesteps = match cfg.method {
        TrainMethod::Ann => 1,
        TrainMethod::Agd => cfg.timesteps,
    };
    let mut report = Report::new(cfg.method.name(), &model.network().name, timesteps);
    report.extra.insert("seed".into(), cfg.seed.into());
    report.extra.insert("batch".into(), cfg.batch.into());
    let mut start_epoch = 0;
    if cfg.resume {
        let dir = cfg
            .out
            .as_ref()
            .ok_or_else(|| TrainError::Data("--resume needs an output folder".into()))?;
        let (map, meta) = checkpoint::load(&checkpoint::weights_path(dir))?;
        let same = |saved: &str, now: &str| saved.is_empty() || saved == now;
        if !same(&meta.network, &report.network) || !same(&meta.method, &report.method) {
            return Err(TrainError::Data(format!(
                "cannot resume: {} holds `{}` trained by {}, not `{}` by {}",
                dir.display(),
                meta.network,
                meta.method,
                report.network,
                report.method
            )));
        }
        model.load(&map)?;
        opt.load_state(&map)?;
        start_epoch = meta.epoch;
        if let Ok(old) = Report::read_json(&dir.join("report.json")) {
            if start_epoch >= cfg.epochs {
                // Nothing left to train: the run is complete as saved.
                return Ok(old);
            }
            report.epochs = old
                .epochs
                .into_iter()
                .filter(|e| e.epoch <= start_epoch)
                .collect();
        }
    }
    let dev = model.device().clone();
    let opts = cfg.method.options(cfg.timesteps, true);
    let batch = cfg.batch.max(1);
    let run_start = Instant::now();
    for epoch in start_epoch..cfg.epochs {
        opt.set_lr(cfg.schedule.lr_at(cfg.lr, epoch))?;
        let mut rng = rng_for(cfg.seed, EPOCH_STREAM + epoch as u64);
        let pb = progress_bar(train.len(), cfg.progress, epoch, cfg.epochs);
        let start = Instant::now();
        let (mut loss_sum, mut right, mut seen) = (0f64, 0usize, 0usize);
        for (bi, chunk) in crate::data::batches(train, batch, Some(cfg.seed), epoch).enumerate() {
            let chunk = chunk.as_slice();
            let (x, y) = batch_tensors(train, data.shape, chunk, &dev)?;
            let out = model.forward(&x, &opts, &mut rng)?;
            let loss = model.loss(&out, &y, true, &mut rng)?;
            let l = loss.to_scalar::<f32>()?;
            if !l.is_finite() {
                pb.finish_and_clear();
                return Err(TrainError::NonFinite {
                    epoch: epoch + 1,
                    batch: bi + 1,
                    loss: l,
                });
            }
            let grads = loss.backward()?;
            if let Some((name, _)) = vars.iter().find(|(_, v)| grads.get(v).is_none()) {
                return Err(TrainError::NoGradient(name.clone()));
            }
            opt.step(&grads)?;
            loss_sum += l as f64 * chunk.len() as f64;
            right += correct_count(&model.eval_logits(&out)?, &y)?;
            seen += chunk.len();
            pb.inc(chunk.len() as u64);
            pb.set_message(format!(
                "loss {:.4} acc {:.1}%",
                loss_sum / seen as f64,
                100.0 * right as f64 / seen as f64
            ));
        }
        let train_secs = start.elapsed().as_secs_f64().max(1e-9);
        pb.finish_and_clear();
        let eval_opts = cfg.method.options(cfg.timesteps, false);
        let eval = evaluate(model, test, data.shape, eval_opts, batch, cfg.seed)?;
        report.epochs.push(EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            test_accuracy: eval.accuracy,
        });
        report.test_accuracy = eval.accuracy;
        report.train_images_per_s = seen as f64 / train_secs;
        report.infer_images_per_s = eval.images_per_s;
        report.wall_s = run_start.elapsed().as_secs_f64();
        report.extra.insert("test_loss".into(), eval.loss.into());
        report.activity = eval.activity.clone();
        report.energy = energy(model.network(), &eval.activity, timesteps, cfg.method);
        if let Some(dir) = &cfg.out {
            std::fs::create_dir_all(dir)?;
            let mut state = model.state()?;
            state.extend(opt.state_tensors()?);
            let meta = Meta {
                epoch: epoch + 1,
                seed: cfg.seed,
                network: report.network.clone(),
                method: report.method.clone(),
            };
            checkpoint::save(&checkpoint::weights_path(dir), &state, &meta)?;
            report.write_json(&dir.join("report.json"))?;
        }
    }
    Ok(report)
}
