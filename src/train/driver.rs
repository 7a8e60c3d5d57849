//! The training driver: one library path from a network and a configuration to a trained,
//! checkpointed and reported run, for every training method (`train::method`). It owns data
//! loading ([`load_data`]), the epoch loop of gradient training ([`train`]: batches, forward,
//! loss, backward, optimiser, NaN handling), checkpoints and `--resume`, evaluation
//! ([`evaluate`]), reports, plots and progress; a method contributes its forward mode and what
//! happens after the gradient phase ([`run`]). The CLI and the examples only build a
//! [`TrainConfig`].
//!
//! Invariants: randomness of epoch e comes from the seed and e alone (data order:
//! `data::batches(.., seed, e)`; Poisson noise, dropout, stochmax noise:
//! `rng_for(seed, EPOCH_STREAM + e)`), so a run is reproducible and a resumed run
//! continues exactly as the uninterrupted one would; every parameter must receive a
//! gradient at every step (an error otherwise); a non-finite loss stops training with an
//! error and leaves the last checkpoint (end of the previous epoch) in place.
//!
//! Ctrl-C (issue 11.10): with [`install_interrupt_handler`], a first SIGINT during the epoch
//! loop finishes the running batch, writes a checkpoint of the position ([`checkpoint::Position`]:
//! batch index, the sequential stream's word position, the epoch's running sums) and stops
//! with [`TrainError::Interrupted`] (exit 130); `--resume` then continues bit-equal to the
//! uninterrupted run. A second SIGINT, or one outside the epoch loop, exits 130 at once
//! (checkpoints are written atomically, so the last complete one stays intact). The handler
//! (`signal-hook`) only sets flags; the loop reads them at batch boundaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::analysis;
use crate::backend::candle::classifier::correct_count;
use crate::backend::candle::model::{rng_for, ForwardOptions, Mode, Model, SlotActivity};
use crate::backend::candle::observe::Recorder;
use crate::data::{self, DataSpec, Dataset, Split};
use crate::ir::Network;
use crate::train::checkpoint::{self, Meta};
use crate::train::conversion::ConversionConfig;
use crate::train::method::{self, TrainingMethod};
use crate::train::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use crate::train::report::{self, ActivityRecord, EnergyRecord, EpochRecord, Report};
use crate::train::{defaults, progress};

pub use crate::train::error::TrainError;

/// Set by every SIGINT (once the handler is installed); read at batch boundaries.
static INTERRUPTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// When set, the next SIGINT exits with status 130 at once: outside an epoch loop, and
/// after a first SIGINT inside one.
static ABORT_NEXT: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(true)));

/// Installs the process's SIGINT handling (the CLI calls it once): the first Ctrl-C while
/// [`train`]'s epoch loop runs asks it to stop after the running batch and checkpoint; a
/// second one, or one at any other moment, exits with status 130 at once (the handler runs
/// in signal context: `_exit(130)`, nothing printed).
///
/// Errors: the handler could not be registered (the OS error, in words).
pub fn install_interrupt_handler() -> Result<(), String> {
    use signal_hook::consts::SIGINT;
    // Registered first, so it sees ABORT_NEXT as it was before this signal.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&ABORT_NEXT))
        .and_then(|_| signal_hook::flag::register(SIGINT, Arc::clone(&INTERRUPTED)))
        .and_then(|_| signal_hook::flag::register(SIGINT, Arc::clone(&ABORT_NEXT)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Asks a running epoch loop to stop after its batch, as a first Ctrl-C does (for library
/// users and tests; the flag is process-wide and cleared when [`train`] starts and returns).
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Arms the interrupt for the epoch loop's lifetime: a first SIGINT is then a request, not
/// an exit.
struct Armed;

impl Armed {
    fn new() -> Self {
        INTERRUPTED.store(false, Ordering::SeqCst);
        ABORT_NEXT.store(false, Ordering::SeqCst);
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        ABORT_NEXT.store(true, Ordering::SeqCst);
        INTERRUPTED.store(false, Ordering::SeqCst);
    }
}

const EPOCH_STREAM: u64 = 100;
const EVAL_STREAM: u64 = 1 << 32;

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Everything a training run needs besides the model and data.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The training method (see [`crate::train::method`]).
    pub method: &'static dyn TrainingMethod,
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
    /// Settings of the conversion method (balancing, reset, latencies); other methods
    /// ignore them.
    pub conversion: ConversionConfig,
    /// Settings of the STDP method (`--stdp-images`, `[train.stdp]`); other methods ignore them.
    pub stdp: crate::train::stdp::StdpConfig,
    /// Keys every report of the run carries (the resolved configuration, version, source
    /// hash: [`describe`]).
    pub describe: serde_json::Map<String, serde_json::Value>,
    /// The data limits the run was loaded with (recorded in checkpoints for `--resume`; the
    /// data given to [`train`] is already limited).
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: method::AGD,
            epochs: defaults::EPOCHS,
            timesteps: defaults::TIMESTEPS,
            batch: defaults::BATCH,
            lr: defaults::LR,
            schedule: LrSchedule::Constant,
            optimizer: OptimizerKind::Adam,
            momentum: defaults::MOMENTUM,
            weight_decay: defaults::WEIGHT_DECAY,
            seed: defaults::SEED,
            out: None,
            resume: false,
            progress: false,
            conversion: ConversionConfig::default(),
            stdp: crate::train::stdp::StdpConfig::default(),
            describe: serde_json::Map::new(),
            train_limit: None,
            test_limit: None,
        }
    }
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

/// The time steps a forward pass with `opts` holds (1 in ANN mode).
fn step_count(opts: &ForwardOptions) -> usize {
    if opts.mode == Mode::Ann {
        1
    } else {
        opts.timesteps
    }
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
    crate::train::memory::check(model.network(), batch.min(n), step_count(&opts), false)?;
    let start = Instant::now();
    let (mut right, mut loss) = (0usize, 0f64);
    let mut act: Vec<SlotActivity> = Vec::new();
    let mut input_rate: Option<f64> = None;
    let mut max_input = vec![0f32; model.thresholds().len()];
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch) {
        let (x, y) = batch_tensors(split, shape, chunk, &dev)?;
        rng.set_images(chunk.iter().copied());
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
/// the measured `activity` (`analysis::price`; unmeasured layers at the mean measured
/// rate). With `ann` (the ANN baseline runs the ANN itself): E_SNN = E_ANN, EE = 1.
pub fn energy(
    net: &Network,
    activity: &[ActivityRecord],
    timesteps: usize,
    ann: bool,
) -> EnergyRecord {
    let rates: HashMap<(String, u32), f64> = activity
        .iter()
        .filter(|a| a.spike_rate.is_finite())
        .map(|a| ((a.layer.clone(), a.step), a.spike_rate.clamp(0.0, 1.0)))
        .collect();
    // Unmeasured spiking layers: the mean measured rate.
    let fallback = if rates.is_empty() {
        0.0
    } else {
        rates.values().sum::<f64>() / rates.len() as f64
    };
    let run = analysis::MeasuredRun {
        rates,
        input_rate: None,
        fallback,
        timesteps: u32::try_from(timesteps).unwrap_or(u32::MAX),
    };
    let est = analysis::price(net, &run, analysis::EnergyModel::INT32);
    if ann {
        EnergyRecord {
            e_ann_pj: est.e_ann_pj,
            e_snn_pj: est.e_ann_pj,
            ee: 1.0,
        }
    } else {
        EnergyRecord {
            e_ann_pj: est.e_ann_pj,
            e_snn_pj: est.e_snn_pj,
            ee: est.ee.unwrap_or(f64::NAN),
        }
    }
}

/// The report's top-level `input_spike_rate`: the measured rate of the Poisson-coded input
/// (the `Input` activity record), `null` when the input is direct-coded (real-valued, no
/// spikes). `snnc estimate --activity` prices the first layer at this rate.
pub fn input_spike_rate(activity: &[ActivityRecord]) -> serde_json::Value {
    activity
        .iter()
        .find(|a| a.layer == "Input" && a.spike_rate.is_finite())
        .map_or(serde_json::Value::Null, |a| a.spike_rate.into())
}

/// Checks that `data` fits `model`: image shape and number of classes.
pub fn check_data(model: &Model, data: &Dataset) -> Result<(), TrainError> {
    let [c, h, w] = data.shape;
    model
        .check_input(crate::ir::Shape::new(c as u64, h as u64, w as u64))
        .map_err(TrainError::DataMismatch)?;
    if data.classes > model.classes() {
        return Err(TrainError::DataMismatch(format!(
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
        return Err(TrainError::DataMismatch("the training set is empty".into()));
    }
    check_data(model, data)?;
    let steps = step_count(&cfg.method.forward_options(cfg.timesteps, true));
    crate::train::memory::check(model.network(), cfg.batch.min(train.len()), steps, true)?;
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
    let timesteps = cfg.method.training_timesteps(cfg.timesteps);
    let ann = cfg.method.forward_options(cfg.timesteps, false).mode == Mode::Ann;
    let mut report = Report::new(
        cfg.method.checkpoint_method(),
        &model.network().name,
        timesteps,
    );
    report.extra.insert("seed".into(), cfg.seed.into());
    report.extra.insert("batch".into(), cfg.batch.into());
    report.extra.extend(cfg.describe.clone());
    let mut start_epoch = 0;
    // Where inside `start_epoch` a checkpoint written on Ctrl-C stopped.
    let mut position: Option<checkpoint::Position> = None;
    // The epoch of the last checkpoint written (or resumed from): the last good one.
    let mut saved_epoch: Option<usize> = None;
    if cfg.resume {
        let dir = cfg
            .out
            .as_ref()
            .ok_or_else(|| TrainError::Config("--resume needs an output folder".into()))?;
        let (map, meta) = checkpoint::load(&checkpoint::weights_path(dir))?;
        let same = |saved: &str, now: &str| saved.is_empty() || saved == now;
        if !same(&meta.network, &report.network) || !same(&meta.method, &report.method) {
            return Err(TrainError::Checkpoint(format!(
                "cannot resume: {} holds `{}` trained by {}, not `{}` by {}",
                dir.display(),
                meta.network,
                meta.method,
                report.network,
                report.method
            )));
        }
        let path = checkpoint::weights_path(dir);
        match &meta.net {
            Some(saved) => check_net_record(saved, model.network(), &path, true, !ann)?,
            None if cfg.progress => eprintln!("{}", unrecorded_warning(&path)),
            None => {}
        }
        model.load(&map)?;
        opt.load_state(&map)?;
        start_epoch = meta.epoch;
        saved_epoch = Some(meta.epoch);
        position = meta.position.clone();
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
    let opts = cfg.method.forward_options(cfg.timesteps, true);
    let batch = cfg.batch.max(1);
    let run_start = Instant::now();
    // Per-batch records beside the report (`batches.jsonl`), appended to on `--resume`.
    let mut batch_log = match &cfg.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let path = crate::train::records::path_beside(&dir.join("report.json"));
            Some(if cfg.resume {
                crate::train::records::BatchLog::open_append(&path)?
            } else {
                crate::train::records::BatchLog::create(&path)?
            })
        }
        None => None,
    };
    let save = |model: &Model,
                opt: &dyn Optimizer,
                report: &Report,
                dir: &Path,
                epoch: usize,
                position: Option<checkpoint::Position>|
     -> Result<(), TrainError> {
        std::fs::create_dir_all(dir)?;
        let mut state = model.state()?;
        state.extend(opt.state_tensors()?);
        let meta = Meta {
            epoch,
            seed: cfg.seed,
            network: report.network.clone(),
            method: report.method.clone(),
            settings: Some(run_settings(cfg)),
            net: Some(checkpoint::NetRecord::of(model.network())),
            position,
        };
        checkpoint::save(&checkpoint::weights_path(dir), &state, &meta)?;
        Ok(())
    };
    let _armed = Armed::new();
    for epoch in start_epoch..cfg.epochs {
        opt.set_lr(cfg.schedule.lr_at(cfg.lr, epoch))?;
        let mut rng = rng_for(cfg.seed, EPOCH_STREAM + epoch as u64);
        // A checkpoint written on Ctrl-C: continue its epoch where it stopped.
        let resume_at = position.take().filter(|_| epoch == start_epoch);
        let mut pb = progress::Progress::new(
            train.len(),
            cfg.progress,
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            true,
        );
        let start = Instant::now();
        let (mut loss_sum, mut right, mut seen) = (0f64, 0usize, 0usize);
        let mut terms_sum: Option<report::LossTerms> = None;
        let mut skip = 0;
        if let Some(p) = &resume_at {
            rng.0.set_word_pos(p.rng_word_pos);
            (loss_sum, right, seen, skip) = (p.loss_sum, p.right, p.seen, p.batch);
            terms_sum = p
                .terms_sum
                .map(|[ce, kl, aux, neg_entropy]| report::LossTerms {
                    ce,
                    kl,
                    aux,
                    neg_entropy,
                });
            pb.inc(seen as u64);
        }
        for (bi, chunk) in crate::data::batches(train, batch, Some(cfg.seed), epoch)
            .enumerate()
            .skip(skip)
        {
            if INTERRUPTED.load(Ordering::SeqCst) {
                pb.finish_and_clear();
                if cfg.progress {
                    eprintln!(
                        "interrupted: writing a checkpoint after batch {bi} of epoch {} (Ctrl-C again to abort)",
                        epoch + 1
                    );
                }
                let p = checkpoint::Position {
                    batch: bi,
                    rng_word_pos: rng.0.get_word_pos(),
                    loss_sum,
                    right,
                    seen,
                    terms_sum: terms_sum.map(|t| [t.ce, t.kl, t.aux, t.neg_entropy]),
                };
                return Err(interrupted(cfg, epoch + 1, bi, |dir| {
                    save(model, opt.as_ref(), &report, dir, epoch, Some(p))
                })?);
            }
            let chunk = chunk.as_slice();
            let (x, y) = batch_tensors(train, data.shape, chunk, &dev)?;
            rng.set_images(chunk.iter().copied());
            let out = model.forward(&x, &opts, &mut rng)?;
            let (loss, terms) = model.train_loss_terms(&out, &y, &mut rng)?;
            let l = loss.to_scalar::<f32>()?;
            let stop = |what: String| TrainError::NonFinite {
                epoch: epoch + 1,
                batch: bi + 1,
                loss: l,
                what,
                kept: kept(cfg, saved_epoch),
            };
            if !l.is_finite() {
                pb.finish_and_clear();
                return Err(stop(format!("the loss became {l}")));
            }
            let grads = loss.backward()?;
            if let Some((name, _)) = vars.iter().find(|(_, v)| grads.get(v).is_none()) {
                return Err(TrainError::NoGradient(name.clone()));
            }
            opt.step(&grads)?;
            if let Some(name) = non_finite_param(&vars)? {
                pb.finish_and_clear();
                return Err(stop(format!(
                    "the weights `{name}` became non-finite after the update"
                )));
            }
            loss_sum += l as f64 * chunk.len() as f64;
            let batch_terms = terms.as_ref().map(loss_terms_value).transpose()?;
            if let Some(t) = &batch_terms {
                report::LossTerms::accumulate(&mut terms_sum, t, chunk.len() as f64);
            }
            let batch_right = correct_count(&model.eval_logits(&out)?, &y)?;
            right += batch_right;
            seen += chunk.len();
            if let Some(log) = &mut batch_log {
                log.append(&crate::train::records::BatchRecord {
                    epoch: epoch + 1,
                    batch: bi + 1,
                    images_seen: epoch * train.len() + seen,
                    loss: l as f64,
                    accuracy: batch_right as f64 / chunk.len().max(1) as f64,
                    lr: cfg.schedule.lr_at(cfg.lr, epoch),
                    ce: batch_terms.map(|t| t.ce),
                    kl: batch_terms.map(|t| t.kl),
                    aux: batch_terms.map(|t| t.aux),
                    entropy: batch_terms.map(|t| t.neg_entropy),
                })?;
            }
            pb.inc(chunk.len() as u64);
            pb.set_message(progress_message(
                loss_sum / seen as f64,
                terms_sum.map(|t| t.mean(seen as f64)),
                right as f64 / seen as f64,
            ));
        }
        let train_secs = start.elapsed().as_secs_f64().max(1e-9);
        pb.finish_and_clear();
        let eval_opts = cfg.method.forward_options(cfg.timesteps, false);
        let eval = evaluate(model, test, data.shape, eval_opts, batch, cfg.seed)?;
        if !eval.loss.is_finite() {
            return Err(TrainError::NonFinite {
                epoch: epoch + 1,
                batch: seen.div_ceil(batch),
                loss: eval.loss as f32,
                what: format!("the test loss became {}", eval.loss),
                kept: kept(cfg, saved_epoch),
            });
        }
        report.epochs.push(EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            test_accuracy: eval.accuracy,
            test_loss: Some(eval.loss),
            loss_terms: terms_sum.map(|t| t.mean(seen.max(1) as f64)),
        });
        report.test_accuracy = eval.accuracy;
        report.train_images_per_s = seen as f64 / train_secs;
        report.infer_images_per_s = eval.images_per_s;
        report.wall_s = run_start.elapsed().as_secs_f64();
        report.activity = eval.activity.clone();
        report.energy = energy(model.network(), &eval.activity, timesteps, ann);
        report
            .extra
            .insert("input_spike_rate".into(), input_spike_rate(&eval.activity));
        progress::epoch_done(&report);
        if let Some(dir) = &cfg.out {
            save(model, opt.as_ref(), &report, dir, epoch + 1, None)?;
            saved_epoch = Some(epoch + 1);
            report.write_json(&dir.join("report.json"))?;
        }
    }
    if INTERRUPTED.load(Ordering::SeqCst) && start_epoch < cfg.epochs {
        // Ctrl-C during the last epoch's evaluation: its checkpoint is written already.
        let (epoch, batches) = (cfg.epochs, train.len().div_ceil(batch));
        return Err(interrupted(cfg, epoch, batches, |_| Ok(()))?);
    }
    Ok(report)
}

/// The [`TrainError::Interrupted`] of a run stopped in `epoch` (from 1) after `batch`
/// batches, after `save` wrote its checkpoint into `cfg.out` (nothing without one).
fn interrupted(
    cfg: &TrainConfig,
    epoch: usize,
    batch: usize,
    save: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<TrainError, TrainError> {
    let saved = match &cfg.out {
        Some(dir) => {
            save(dir)?;
            format!(
                "checkpoint written to {} (epoch {epoch}, batch {batch})",
                checkpoint::weights_path(dir).display()
            )
        }
        None => "no output folder, so nothing was saved".to_string(),
    };
    Ok(TrainError::Interrupted {
        epoch,
        batch,
        saved,
        out: cfg.out.clone(),
    })
}

/// Refuses a checkpoint whose recorded network settings differ from `net`'s (the first
/// difference, [`checkpoint::NetRecord::first_mismatch`]): `surrogate` when training
/// continues (evaluation does not use γ), `neurons` when the method runs the declared neurons.
pub fn check_net_record(
    saved: &checkpoint::NetRecord,
    net: &Network,
    path: &Path,
    surrogate: bool,
    neurons: bool,
) -> Result<(), TrainError> {
    match saved.first_mismatch(&checkpoint::NetRecord::of(net), surrogate, neurons) {
        Some(m) => Err(TrainError::CheckpointMismatch {
            path: path.display().to_string(),
            setting: m.setting,
            checkpoint: m.checkpoint,
            file: m.file,
        }),
        None => Ok(()),
    }
}

/// The warning for a checkpoint written before network settings were recorded.
fn unrecorded_warning(path: &Path) -> String {
    format!(
        "warning[snnc::train::checkpoint_unrecorded]: {} does not record the classifier, coding, surrogate and neuron parameters it was trained with (an older snnc wrote it); the network file's are used unchecked",
        path.display()
    )
}

/// Loads the data set `spec` (default: `data::default_spec()`), keeping the first
/// `train_limit`/`test_limit` images of each split.
pub fn load_data(
    spec: Option<&str>,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, TrainError> {
    let spec = match spec {
        Some(s) => s.parse::<DataSpec>()?,
        None => data::default_spec(),
    };
    Ok(data::load(&spec, train_limit, test_limit)?)
}

/// A whole run: the data set to load and where to write.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub train: TrainConfig,
    /// `fashion-mnist[:DIR]`, `mnist:DIR`, `cifar10:DIR`, `embedded`; `None`: the default.
    pub data: Option<String>,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// The network's source text, hashed into every report (`source_fnv1a64`).
    pub source: Option<String>,
}

/// What a finished run produced besides its files.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub report: Report,
    /// Lines the method wants shown (conversion: thresholds, accuracy per T).
    pub summary: Vec<String>,
    pub out: PathBuf,
}

/// Trains `net` as `cfg` says: loads the data, lowers the model (seeded), runs the gradient
/// phase with checkpoints in `out`, lets the method finish (conversion balances and evaluates
/// the SNN), and writes `report.json`, `training.svg` and `activity.svg`. With
/// `cfg.train.progress`, a header and progress bars go to stderr.
pub fn run(net: &Network, cfg: &RunConfig) -> Result<RunOutcome, TrainError> {
    let run_start = Instant::now();
    let t = &cfg.train;
    if t.timesteps == 0 || t.batch == 0 {
        return Err(TrainError::Config(
            "--timesteps and --batch must be at least 1".into(),
        ));
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(TrainError::Config("--lr must be a positive number".into()));
    }
    t.method.validate(t)?;
    t.method.check_network(net)?;
    if let Some(outcome) = t.method.run(net, cfg)? {
        return Ok(outcome);
    }
    let out = t.out.clone().unwrap_or_else(|| default_out(net, t.method));
    let mut train_cfg = TrainConfig {
        out: Some(out.clone()),
        train_limit: cfg.train_limit,
        test_limit: cfg.test_limit,
        ..t.clone()
    };
    let mut model = Model::new(net, &Device::Cpu, t.seed).map_err(|e| TrainError::Lower {
        network: net.name.clone(),
        reason: e.to_string(),
    })?;
    let data = load_data(cfg.data.as_deref(), cfg.train_limit, cfg.test_limit)?;
    check_data(&model, &data)?;
    if t.method.name() == "conversion" {
        // Its simulator runs after the ANN phase: refuse before training (issue 11.4).
        let most = data.test.len().max(t.conversion.balance_images);
        crate::train::memory::check_simulation(net, t.conversion.batch.min(most))?;
    }
    train_cfg.describe = describe(net, cfg, &data, cfg.source.as_deref());
    std::fs::create_dir_all(&out)?;
    if t.progress {
        eprintln!(
            "training `{}` ({}) on {} images, testing on {}, T = {}, batch {}, {} epoch(s) → {}",
            net.name,
            method_label(t.method),
            data.train.len(),
            data.test.len(),
            t.method.training_timesteps(t.timesteps),
            t.batch,
            t.epochs,
            out.display()
        );
    }
    let mut report = train(&mut model, &data, &train_cfg)?;
    let mut summary = t
        .method
        .after_training(&mut model, &data, &train_cfg, &mut report, &out)?;
    summary.extend(crate::train::raster::after_run(
        &model, &data, &train_cfg, &out,
    )?);
    let plot_err = |e: report::PlotError| TrainError::Io(std::io::Error::other(e.to_string()));
    let batches = crate::train::records::read_batches(&crate::train::records::path_beside(
        &out.join("report.json"),
    ))
    .unwrap_or_default();
    let test_losses: Vec<f64> = report
        .epochs
        .iter()
        .map(|e| e.test_loss.unwrap_or(f64::NAN))
        .collect();
    crate::train::plot::plot_training(
        &report.epochs,
        &test_losses,
        &batches,
        &out.join("training.svg"),
    )
    .map_err(plot_err)?;
    report::plot_activity(&report.activity, &out.join("activity.svg")).map_err(plot_err)?;
    // The whole run, data loading and the method's phase after training included.
    report.wall_s = run_start.elapsed().as_secs_f64();
    report.write_json(&out.join("report.json"))?;
    Ok(RunOutcome {
        report,
        summary,
        out,
    })
}

/// How a run's header names its method: `agd`, or `conversion, ANN phase` for a method
/// whose gradient phase trains something else first.
pub fn method_label(method: &dyn TrainingMethod) -> String {
    let (name, phase) = (method.name(), method.checkpoint_method());
    if name == phase {
        name.to_string()
    } else {
        format!("{name}, {} phase", phase.to_uppercase())
    }
}

/// What evaluating a checkpoint gave.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// `agd`, `ann`, or `conversion, IF`.
    pub label: String,
    /// T the network ran at (1 for an ANN).
    pub timesteps: usize,
    pub accuracy: f64,
    pub images: usize,
    /// Mean test loss (batched runs only).
    pub loss: Option<f64>,
    pub images_per_s: f64,
    pub activity: Vec<ActivityRecord>,
    /// The energy estimate (conversion only).
    pub energy: Option<EnergyRecord>,
}

/// How to evaluate a checkpoint, resolved (see [`EvalFlags`] for what `snnc eval` is told).
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// T (default: the network's `timesteps`, else the method's default).
    pub timesteps: Option<usize>,
    pub batch: usize,
    pub data: Option<String>,
    pub test_limit: Option<usize>,
    pub progress: bool,
}

/// What `snnc eval` is told. Unset settings come from the checkpoint's record of its run
/// (`meta.timesteps`, `meta.batch`, `meta.seed`), then from the network file, then from
/// [`defaults`]; each value taken from the checkpoint is announced in [`PreparedEval::notes`].
#[derive(Debug, Clone, Default)]
pub struct EvalFlags {
    pub timesteps: Option<usize>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub data: Option<String>,
    pub test_limit: Option<usize>,
    pub progress: bool,
}

/// A checkpoint loaded into its network, checked, with its evaluation settings resolved.
pub struct PreparedEval {
    pub model: Model,
    pub tensors: HashMap<String, candle_core::Tensor>,
    /// The checkpoint's metadata, with `seed` replaced by `--seed` when given.
    pub meta: Meta,
    pub method: &'static dyn TrainingMethod,
    pub config: EvalConfig,
    /// One line each (`note: …` or `warning[code]: …`): settings taken from the checkpoint,
    /// neuron parameters where checkpoint and file disagree.
    pub notes: Vec<String>,
}

/// Loads the checkpoint at `weights` into `net` and resolves how to evaluate it.
///
/// Errors (`snnc::train::checkpoint`, exit 1): the checkpoint's tensor names or shapes do not
/// fit `net` (the first mismatch is named with both shapes), or a weight or threshold holds a
/// non-finite value (the tensor is named).
pub fn prepare_eval(
    net: &Network,
    weights: &Path,
    flags: &EvalFlags,
) -> Result<PreparedEval, TrainError> {
    let (map, mut meta) = checkpoint::load(weights)?;
    let mut model = Model::new(net, &Device::Cpu, 0).map_err(|e| TrainError::Lower {
        network: net.name.clone(),
        reason: e.to_string(),
    })?;
    let expected: Vec<(String, Vec<usize>)> = model
        .vars()
        .iter()
        .map(|(n, v)| (n.clone(), v.dims().to_vec()))
        .collect();
    let slots: Vec<String> = (0..model.thresholds().len())
        .map(|i| model.threshold_name(crate::ir::SlotId(i)))
        .collect();
    let unfit = |e: String| {
        TrainError::Checkpoint(format!(
            "{} does not fit `{}`: {e}",
            weights.display(),
            net.name
        ))
    };
    checkpoint::check_fits(&map, &expected, &slots).map_err(unfit)?;
    checkpoint::check_finite(&map).map_err(|e| {
        TrainError::Checkpoint(format!("{}: {e}; its weights diverged", weights.display()))
    })?;
    let file_thresholds = model.thresholds().to_vec();
    model.load(&map).map_err(|e| unfit(e.to_string()))?;
    // Checkpoints without a method (weights only) are evaluated as AGD SNNs.
    let method = method::find(&meta.method).unwrap_or(method::AGD);
    let mut notes = Vec::new();
    // A method whose training runs over T (AGD) is evaluated at its training T; conversion's
    // checkpoint records the ANN phase, whose T is not the converted network's.
    let runs_over_t = method.training_timesteps(2) == 2;
    match &meta.net {
        // An ANN (and conversion's IF simulation) ignores the declared neurons.
        Some(saved) => check_net_record(
            saved,
            net,
            weights,
            false,
            runs_over_t && method.forward_options(2, false).mode == Mode::Snn,
        )?,
        None if meta.epoch > 0 => notes.push(unrecorded_warning(weights)),
        None => {}
    }
    if runs_over_t {
        notes.extend(threshold_notes(
            &slots,
            &file_thresholds,
            model.thresholds(),
        ));
    }
    let settings = meta.settings.clone();
    let timesteps = match (flags.timesteps, &settings) {
        (Some(t), _) => Some(t),
        (None, Some(s)) if runs_over_t && s.timesteps > 0 => {
            let file = net.settings.timesteps.map(|t| t as usize);
            let said = match file {
                Some(f) if f != s.timesteps => {
                    format!(" (the file says {f}; --timesteps overrides)")
                }
                _ => String::new(),
            };
            notes.push(format!(
                "note: T = {} from the checkpoint{said}",
                s.timesteps
            ));
            Some(s.timesteps)
        }
        _ => None,
    };
    let batch = match (flags.batch, &settings) {
        (Some(b), _) => b,
        // Conversion records its ANN phase's batch, not the batch its SNN was simulated with.
        (None, Some(s)) if s.batch > 0 && method.checkpoint_method() == method.name() => {
            notes.push(format!(
                "note: batch {} from the checkpoint (the training batch; --batch overrides)",
                s.batch
            ));
            s.batch
        }
        _ => defaults::EVAL_BATCH,
    };
    match flags.seed {
        Some(seed) => meta.seed = seed,
        None if settings.is_some() => notes.push(format!(
            "note: seed {} from the checkpoint (--seed overrides)",
            meta.seed
        )),
        None => {}
    }
    Ok(PreparedEval {
        model,
        tensors: map,
        meta,
        method,
        config: EvalConfig {
            timesteps,
            batch,
            data: flags.data.clone(),
            test_limit: flags.test_limit,
            progress: flags.progress,
        },
        notes,
    })
}

/// `warning[snnc::train::checkpoint_threshold]` lines for each threshold slot whose value in
/// the checkpoint differs from the network file's.
fn threshold_notes(slots: &[String], file: &[f32], loaded: &[f32]) -> Vec<String> {
    slots
        .iter()
        .zip(file.iter().zip(loaded))
        .filter(|(_, (f, l))| (**f - **l).abs() > 1e-6 * f.abs().max(l.abs()).max(1.0))
        .map(|(name, (f, l))| {
            format!(
                "warning[snnc::train::checkpoint_threshold]: `{name}` is {l} in the checkpoint but {f} in the network file; the checkpoint's {l} is used, because the weights were trained with it (retrain to use the file's)"
            )
        })
        .collect()
}

/// Evaluates a prepared checkpoint on the test set the way its method runs it.
pub fn run_eval(p: &PreparedEval) -> Result<EvalOutcome, TrainError> {
    p.method
        .evaluate_checkpoint(&p.model, &p.tensors, &p.meta, &p.config)
}

/// Loads the checkpoint at `weights` into `net` and evaluates it on the test set the way
/// its method (`meta.method`) runs it ([`prepare_eval`], then [`run_eval`]).
pub fn evaluate_checkpoint(
    net: &Network,
    weights: &Path,
    flags: &EvalFlags,
) -> Result<EvalOutcome, TrainError> {
    run_eval(&prepare_eval(net, weights, flags)?)
}

/// Accuracy, loss and activity of a batched-model checkpoint at T (AGD, ANN).
pub fn evaluate_batched(
    model: &Model,
    method: &dyn TrainingMethod,
    meta: &Meta,
    cfg: &EvalConfig,
) -> Result<EvalOutcome, TrainError> {
    let t = defaults::timesteps(model.network(), cfg.timesteps, defaults::TIMESTEPS);
    if t == 0 || cfg.batch == 0 {
        return Err(TrainError::Config(
            "--timesteps and --batch must be at least 1".into(),
        ));
    }
    let data = load_data(cfg.data.as_deref(), Some(0), cfg.test_limit)?;
    check_data(model, &data)?;
    let opts = method.forward_options(t, false);
    let ev = evaluate(model, &data.test, data.shape, opts, cfg.batch, meta.seed)?;
    if !ev.loss.is_finite() {
        return Err(TrainError::Checkpoint(format!(
            "the checkpoint gives a non-finite test loss ({}): its weights diverged",
            ev.loss
        )));
    }
    Ok(EvalOutcome {
        label: method.name().to_string(),
        timesteps: method.training_timesteps(t),
        accuracy: ev.accuracy,
        images: data.test.len(),
        loss: Some(ev.loss),
        images_per_s: ev.images_per_s,
        activity: ev.activity,
        energy: None,
    })
}

/// The settings of `cfg` a checkpoint records.
pub fn run_settings(cfg: &TrainConfig) -> checkpoint::RunSettings {
    checkpoint::RunSettings {
        batch: cfg.batch,
        timesteps: cfg.timesteps,
        optimizer: match cfg.optimizer {
            OptimizerKind::Adam => "adam".into(),
            OptimizerKind::Sgd => "sgd".into(),
        },
        train_limit: cfg.train_limit,
        test_limit: cfg.test_limit,
    }
}

/// A setting of a resumed run: the checkpoint's value, unless `flag` gives another, which is
/// refused naming both (`what` is the flag's name).
pub fn resumed<T: PartialEq + std::fmt::Debug>(
    what: &str,
    flag: Option<T>,
    saved: T,
) -> Result<T, TrainError> {
    match flag {
        Some(f) if f != saved => Err(TrainError::Config(format!(
            "--resume continues the checkpoint's run, trained with {what} {saved:?}, but {what} {f:?} was given; drop {what} or start a new run"
        ))),
        _ => Ok(saved),
    }
}

/// The metadata of the checkpoint in `out`, for `--resume`.
pub fn resume_meta(out: &Path) -> Result<Meta, TrainError> {
    let path = checkpoint::weights_path(out);
    Ok(checkpoint::load(&path)?.1)
}

/// The output folder when none is given: `runs/<network>-<method>`.
pub fn default_out(net: &Network, method: &dyn TrainingMethod) -> PathBuf {
    PathBuf::from(format!("runs/{}-{}", net.name, method.name()))
}

/// The running message of a training epoch: mean loss (with stochmax's terms, so that a
/// negative total is explained) and accuracy, a fraction shown in percent.
pub fn progress_message(loss: f64, terms: Option<report::LossTerms>, accuracy: f64) -> String {
    match terms {
        Some(t) => format!(
            "loss {loss:.4} (= {}) acc {:.1}%",
            t.describe(),
            100.0 * accuracy
        ),
        None => format!("loss {loss:.4} acc {:.1}%", 100.0 * accuracy),
    }
}

/// The values of a batch's stochmax loss terms.
fn loss_terms_value(
    t: &crate::backend::candle::classifier::StochmaxTerms,
) -> Result<report::LossTerms, TrainError> {
    let v =
        |x: &candle_core::Tensor| -> Result<f64, TrainError> { Ok(x.to_scalar::<f32>()? as f64) };
    Ok(report::LossTerms {
        ce: v(&t.ce)?,
        kl: v(&t.kl)?,
        aux: v(&t.aux)?,
        neg_entropy: v(&t.neg_entropy)?,
    })
}

/// The first parameter holding a non-finite value, if any.
fn non_finite_param(vars: &[(String, candle_core::Var)]) -> Result<Option<String>, TrainError> {
    for (name, v) in vars {
        if !all_finite(v.as_tensor())? {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Whether every element of `t` is finite: a scan of the data for contiguous f32 CPU
/// tensors, else by tensor ops.
fn all_finite(t: &candle_core::Tensor) -> Result<bool, TrainError> {
    use crate::backend::candle::neuron::f32_slice;
    {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cs) = &*storage {
            if let Ok(d) = f32_slice(cs, layout, "all_finite") {
                return Ok(d.iter().fold(true, |ok, x| ok & x.is_finite()));
            }
        }
    }
    // `t − t` is 0 where `t` is finite and NaN elsewhere (candle's max skips NaN).
    let sum = t.sub(t)?.sum_all()?.to_dtype(candle_core::DType::F64)?;
    Ok(sum.to_scalar::<f64>()? == 0.0)
}

/// What a stopped run leaves behind: the last good checkpoint, named, or none.
fn kept(cfg: &TrainConfig, saved_epoch: Option<usize>) -> String {
    match (&cfg.out, saved_epoch) {
        (Some(dir), Some(e)) => format!(
            "The last good checkpoint is kept: {} (epoch {e}).",
            checkpoint::weights_path(dir).display()
        ),
        _ => "No checkpoint was written.".into(),
    }
}

/// 64-bit FNV-1a of `bytes`, as 16 hex digits: identifies the source a run was compiled from.
pub fn fnv1a64(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The report keys that say what was run: `config` (the whole resolved configuration: method,
/// network, classifier, data set and limits, epochs, T, batch, optimiser, learning rate and
/// schedule, momentum, weight decay, seed, and conversion's settings), `snnc_version` and
/// `source_fnv1a64` (when the source is known).
pub fn describe(
    net: &Network,
    cfg: &RunConfig,
    data: &Dataset,
    source: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let t = &cfg.train;
    let mut c = serde_json::json!({
        "method": t.method.name(),
        "network": net.name,
        "classifier": format!("{:?}", net.settings.classifier).to_lowercase(),
        "data": data.name,
        "data_spec": cfg.data,
        "train_images": data.train.len(),
        "test_images": data.test.len(),
        "train_limit": cfg.train_limit,
        "test_limit": cfg.test_limit,
        "epochs": t.epochs,
        "timesteps": t.method.training_timesteps(t.timesteps),
        "batch": t.batch,
        "optimizer": run_settings(t).optimizer,
        "lr": t.lr,
        "lr_schedule": match t.schedule {
            LrSchedule::Constant => "constant",
            LrSchedule::Step { .. } => "step",
            LrSchedule::Cosine { .. } => "cosine",
        },
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "seed": t.seed,
        "resume": t.resume,
    });
    if t.method.name() == "conversion" {
        let cc = &t.conversion;
        c["conversion"] = serde_json::json!({
            "balance": cc.balance.to_string(),
            "balance_images": cc.balance_images,
            "balance_steps": cc.balance_steps,
            "reset": format!("{:?}", cc.reset).to_lowercase(),
            "eval_timesteps": cc.eval_timesteps,
            "batch": cc.batch,
        });
    }
    let mut m = serde_json::Map::new();
    m.insert("config".into(), c);
    m.insert("snnc_version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(src) = source {
        m.insert("source_fnv1a64".into(), fnv1a64(src.as_bytes()).into());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::all_finite;
    use candle_core::{DType, Device, Tensor};

    /// The scan (contiguous f32) and the tensor fallback (transposed, f64) both find a NaN or
    /// an infinity anywhere, and pass finite data.
    #[test]
    fn all_finite_finds_nan_and_infinity() {
        for bad in [
            None,
            Some(f32::NAN),
            Some(f32::INFINITY),
            Some(f32::NEG_INFINITY),
        ] {
            let mut data: Vec<f32> = (0..600).map(|i| i as f32 - 300.0).collect();
            if let Some(b) = bad {
                data[437] = b;
            }
            let t = Tensor::from_vec(data, (20, 30), &Device::Cpu).unwrap();
            let tt = t.t().unwrap();
            assert!(!tt.is_contiguous());
            let t64 = t.to_dtype(DType::F64).unwrap();
            for x in [&t, &tt, &t64] {
                assert_eq!(all_finite(x).unwrap(), bad.is_none(), "{bad:?}");
            }
        }
    }
}
