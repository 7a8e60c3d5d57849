//! `snnc train`: compile a network and hand it to the library's training driver
//! (`train::driver::run`) with any registered method (`train::method`), which writes
//! `DIR/weights.safetensors`, `DIR/report.json`, `DIR/training.svg`, `DIR/activity.svg`.
//! This file only maps flags onto a `RunConfig` and prints the outcome.
//!
//! Settings come from flags, then the `[train]` table of `--config FILE.toml` (same keys,
//! kebab- or snake-case), then `train::defaults`. Exit status: 0 ok, 1 errors in the input
//! (the network, a shape mismatch with the data, a diverging loss), 2 usage or I/O, 130
//! Ctrl-C (after a checkpoint of the position; the message says how to resume) — from
//! `TrainError::exit_code`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::ir::{Network, Reset};
use crate::train::conversion;
use crate::train::defaults;
use crate::train::driver::{self, OptimizerKind, RunConfig, TrainConfig, TrainError};
use crate::train::method;
use crate::train::optim::LrSchedule;
use crate::train::report::ActivityRecord;
use crate::train::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetArg {
    Subtract,
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerArg {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleArg {
    /// The same rate every epoch.
    Constant,
    /// Cosine annealing from --lr to 0 over the epochs.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// What `snnc train --help` says after the flags: which settings are warned about or
/// refused when the chosen method does not use them (`train::validate`).
const AFTER_HELP: &str = "\
Settings the chosen method does not use are never silent:
  warning [snnc::train::ignored_flag], the run goes on:
    --momentum with adam; --timesteps or the network's `timesteps` with --method ann;
    --balance, --balance-images, --balance-steps, --reset, --eval-timesteps with agd or ann;
    --balance-steps with --balance percentile
  error, exit 2:
    --epochs 0, --timesteps with --method conversion (use --eval-timesteps)
      [snnc::train::config]; --device cuda (training runs on the CPU only)
      [snnc::train::device]";

#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(after_help = AFTER_HELP)]
pub struct TrainArgs {
    /// The .snn file.
    #[serde(skip)]
    pub file: PathBuf,
    /// Which network of the file (default: the only one, or the first).
    #[arg(long)]
    pub network: Option<String>,
    /// agd (surrogate gradients), ann (the same topology with ReLU and T = 1) or conversion
    /// (the ANN, then balanced IF thresholds): the names of `train::method::METHODS`
    /// (default: the network's `method`).
    #[arg(long, value_parser = method::parse_name)]
    pub method: Option<String>,
    /// The data set: fashion-mnist[:DIR], mnist:DIR, cifar10:DIR or embedded (default:
    /// Debian's Fashion-MNIST if installed, else the embedded slice).
    #[arg(long)]
    pub data: Option<String>,
    // Help texts that quote a default are built from `train::defaults` (not retyped).
    #[arg(long, help = format!("Training epochs, at least 1 (default {})", defaults::EPOCHS))]
    pub epochs: Option<usize>,
    #[arg(long, help = format!(
        "Time steps T of AGD and STDP (default: the network's `timesteps`, else {}; stdp {}); \
         ann runs T = 1 (warning if given), conversion refuses it (use --eval-timesteps)",
        defaults::TIMESTEPS,
        defaults::STDP_TIMESTEPS
    ))]
    pub timesteps: Option<usize>,
    #[arg(long, help = format!(
        "Images per batch (default {}; conversion's balancing and SNN evaluation: {})",
        defaults::BATCH,
        defaults::CONVERSION_BATCH
    ))]
    pub batch: Option<usize>,
    #[arg(long, help = format!("Learning rate (default {})", defaults::LR))]
    pub lr: Option<f64>,
    /// Learning-rate schedule (default constant).
    #[arg(long, value_enum)]
    #[serde(alias = "lr_schedule")]
    pub lr_schedule: Option<ScheduleArg>,
    /// Update rule (default adam).
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    #[arg(long, help = format!(
        "L2 weight decay, added to the gradient (default {})",
        defaults::WEIGHT_DECAY
    ))]
    #[serde(alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    #[arg(long, help = format!(
        "SGD's momentum (default {}); warning with adam, which has none",
        defaults::MOMENTUM
    ))]
    pub momentum: Option<f64>,
    #[arg(long, help = format!(
        "Seed of the initial weights, input spikes and shuffling (default {})",
        defaults::SEED
    ))]
    pub seed: Option<u64>,
    /// Where training runs (default cpu). `cuda` is refused: the training driver runs on
    /// the CPU only, with or without the `cuda` feature.
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Use the first N training images (default: all).
    #[arg(long)]
    #[serde(alias = "train_limit")]
    pub train_limit: Option<usize>,
    /// Use the first N test images (default: all).
    #[arg(long)]
    #[serde(alias = "test_limit")]
    pub test_limit: Option<usize>,
    /// Output folder (default: runs/<network>-<method>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from OUT/weights.safetensors (default: start afresh), also mid-epoch from
    /// the checkpoint Ctrl-C writes (Ctrl-C finishes the batch, checkpoints, exits 130; a
    /// second Ctrl-C aborts).
    #[arg(long)]
    #[serde(default)]
    pub resume: bool,
    #[arg(long, help = format!(
        "Conversion: training images presented while balancing thresholds (default {})",
        defaults::BALANCE_IMAGES
    ))]
    #[serde(alias = "balance_images")]
    pub balance_images: Option<u32>,
    #[arg(long, help = format!(
        "Conversion with --balance max: time steps of each balancing run (default {})",
        defaults::BALANCE_STEPS
    ))]
    #[serde(alias = "balance_steps")]
    pub balance_steps: Option<u32>,
    /// Conversion: `max` (largest input, Sengupta et al.; the default) or `percentile[:P]`
    /// (Rueckauer et al., default P = 99.9).
    #[arg(long)]
    pub balance: Option<conversion::Balance>,
    /// Conversion: reset of the IF neurons (default subtract).
    #[arg(long, value_enum)]
    pub reset: Option<ResetArg>,
    #[arg(long, value_delimiter = ',', help = format!(
        "Conversion: latencies T at which the SNN is evaluated (default: the network's \
         `timesteps`, else {})",
        crate::ir::defaults::CONVERSION_EVAL_TIMESTEPS.map(|t| t.to_string()).join(",")
    ))]
    #[serde(alias = "eval_timesteps")]
    pub eval_timesteps: Option<Vec<usize>>,
    /// STDP: training images presented to each spiking conv layer (default 2000; 0: the
    /// random-feature baseline).
    #[arg(long)]
    #[serde(alias = "stdp_images")]
    pub stdp_images: Option<u32>,
    /// STDP constants (config file only: a `[train.stdp]` table with the fields of
    /// `train::stdp::StdpConfig`, e.g. `params = { eta = 0.01, tau = 5.0 }`).
    #[arg(skip)]
    #[serde(default)]
    pub stdp: Option<Box<crate::train::stdp::StdpToml>>,
    /// A TOML file whose `[train]` table holds defaults for these flags.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    train: Option<TrainArgs>,
}

/// A CLI failure: the message and the exit status.
pub(crate) struct Fail(pub String, pub u8);

impl Fail {
    fn usage(msg: impl Into<String>) -> Self {
        Fail(msg.into(), 2)
    }

    fn input(msg: impl Into<String>) -> Self {
        Fail(msg.into(), 1)
    }

    /// Prints the message (none when it was already reported) and gives the exit status.
    pub(crate) fn report(self) -> ExitCode {
        if !self.0.is_empty() {
            eprintln!("error: {}", self.0);
        }
        ExitCode::from(self.1)
    }
}

/// Reads and compiles FILE (printing its diagnostics) and picks the network `name`, or the
/// first one.
pub(crate) fn load_network(file: &Path, name: Option<&str>) -> Result<Network, Fail> {
    let program = crate::cli::check::compile_file_or_report(file)
        .map_err(|code| Fail(String::new(), if code == ExitCode::from(1) { 1 } else { 2 }))?;
    let names: Vec<String> = program.networks.iter().map(|x| x.name.clone()).collect();
    let mut nets = program.networks.into_iter();
    match name {
        None => nets
            .next()
            .ok_or_else(|| Fail::input(format!("{} holds no network", file.display()))),
        Some(n) => nets.find(|x| x.name == n).ok_or_else(|| {
            Fail::usage(format!(
                "{} has no network `{n}` (it has: {})",
                file.display(),
                names.join(", ")
            ))
        }),
    }
}

/// A runtime error as the CLI reports it: the message with its code and help, and the exit
/// status its variant maps to.
pub(crate) fn fail(e: TrainError) -> Fail {
    use miette::Diagnostic;
    let code = e.code().map(|c| format!("[{c}]")).unwrap_or_default();
    let msg = match e.help() {
        Some(h) => format!("{e} {code}\nhelp: {h}"),
        None => format!("{e} {code}"),
    };
    Fail(msg, e.exit_code())
}

fn merge(mut args: TrainArgs) -> Result<TrainArgs, Fail> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Fail::usage(format!("cannot read {}: {e}", path.display())))?;
    let cfg: ConfigFile =
        toml::from_str(&text).map_err(|e| Fail::usage(format!("{}: {e}", path.display())))?;
    let Some(t) = cfg.train else {
        return Ok(args);
    };
    macro_rules! fill {
        ($($f:ident),*) => { $( if args.$f.is_none() { args.$f = t.$f; } )* };
    }
    fill!(
        network,
        method,
        data,
        epochs,
        timesteps,
        batch,
        lr,
        lr_schedule,
        optimizer,
        weight_decay,
        momentum,
        seed,
        device,
        train_limit,
        test_limit,
        out,
        balance_images,
        balance_steps,
        balance,
        reset,
        eval_timesteps,
        stdp_images,
        stdp
    );
    args.resume |= t.resume;
    Ok(args)
}

pub fn run(args: TrainArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn run_inner(args: TrainArgs) -> Result<(), Fail> {
    crate::backend::candle::alloc::tune_malloc();
    let args = merge(args)?;
    if args.device == Some(DeviceArg::Cuda) {
        return Err(Fail::usage(device_refusal()));
    }
    let net = load_network(&args.file, args.network.as_deref())?;
    let cfg = run_config(&args, &net).map_err(fail)?;
    let given = validate::Given {
        timesteps: args.timesteps.is_some(),
        momentum: args.momentum.is_some(),
        balance: args.balance.is_some(),
        balance_images: args.balance_images.is_some(),
        balance_steps: args.balance_steps.is_some(),
        reset: args.reset.is_some(),
        eval_timesteps: args.eval_timesteps.is_some(),
    };
    for w in validate::check(&cfg.train, &net, &given).map_err(fail)? {
        eprintln!("{w}");
    }
    // Ctrl-C finishes the batch and checkpoints (issue 11.10); without the handler (one is
    // installed already) SIGINT keeps its default and ends the process.
    if let Err(e) = driver::install_interrupt_handler() {
        eprintln!("warning: Ctrl-C will not checkpoint: {e}");
    }
    // Epoch lines are printed as each epoch ends; any the run did not announce (epochs
    // kept from a resumed run, a method's own loop) are printed after it.
    let live = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = live.clone();
    let guard = crate::train::progress::on_epoch(Box::new(move |r| {
        if let (Some(line), Some(e)) = (crate::train::progress::epoch_summary(r), r.epochs.last()) {
            println!("{line}");
            sink.borrow_mut().push(e.epoch);
        }
    }));
    let outcome = driver::run(&net, &cfg).map_err(|e| {
        let resume_dir = match &e {
            TrainError::Interrupted { out: Some(dir), .. } => Some(dir.clone()),
            _ => None,
        };
        let Fail(msg, code) = fail(e);
        match resume_dir {
            Some(dir) => Fail(
                format!(
                    "{msg}\nresume with: snnc train {} --out {} --resume",
                    args.file.display(),
                    dir.display()
                ),
                code,
            ),
            None => Fail(msg, code),
        }
    })?;
    drop(guard);
    let report = &outcome.report;
    for e in report
        .epochs
        .iter()
        .filter(|e| !live.borrow().contains(&e.epoch))
    {
        println!("{}", crate::train::report::epoch_line(e));
    }
    for line in &outcome.summary {
        println!("{line}");
    }
    println!(
        "speed: training {:.1} images/s, inference {:.1} images/s (last epoch)",
        report.train_images_per_s, report.infer_images_per_s
    );
    if !report.activity.is_empty() {
        println!(
            "at T = {} (the report's activity and energy):",
            report.timesteps
        );
    }
    print_activity(&report.activity);
    let en = &report.energy;
    println!(
        "energy at T = {}: E_ANN {:.3e} pJ, E_SNN {:.3e} pJ, EE = {:.2}",
        report.timesteps, en.e_ann_pj, en.e_snn_pj, en.ee
    );
    println!("wrote {}", outcome.out.display());
    Ok(())
}

/// The library configuration the flags (already merged with `--config`) describe.
fn run_config(args: &TrainArgs, net: &Network) -> Result<RunConfig, TrainError> {
    let method = match &args.method {
        Some(m) => method::find(m)?,
        None => method::for_network(net)?,
    };
    let epochs = args.epochs.unwrap_or(defaults::EPOCHS);
    let optimizer_flag = args.optimizer.map(|o| match o {
        OptimizerArg::Adam => OptimizerKind::Adam,
        OptimizerArg::Sgd => OptimizerKind::Sgd,
    });
    let mut seed = args.seed.unwrap_or(defaults::SEED);
    let mut batch = args.batch.unwrap_or(defaults::BATCH);
    let fallback = defaults::train_timesteps_fallback(method.name());
    let mut timesteps = defaults::timesteps(net, args.timesteps, fallback);
    let mut optimizer = optimizer_flag.unwrap_or(OptimizerKind::Adam);
    let (mut train_limit, mut test_limit) = (args.train_limit, args.test_limit);
    if args.resume {
        // A resumed run continues the checkpoint's run: its settings, not the defaults.
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| driver::default_out(net, method));
        let meta = driver::resume_meta(&out)?;
        seed = driver::resumed("--seed", args.seed, meta.seed)?;
        if let Some(r) = &meta.settings {
            batch = driver::resumed("--batch", args.batch, r.batch)?;
            timesteps = driver::resumed("--timesteps", args.timesteps, r.timesteps)?;
            let saved = if r.optimizer == "sgd" {
                OptimizerKind::Sgd
            } else {
                OptimizerKind::Adam
            };
            optimizer = driver::resumed("--optimizer", optimizer_flag, saved)?;
            train_limit =
                driver::resumed("--train-limit", args.train_limit.map(Some), r.train_limit)?;
            test_limit = driver::resumed("--test-limit", args.test_limit.map(Some), r.test_limit)?;
        }
    }
    let d = conversion::ConversionConfig::default();
    let conversion = conversion::ConversionConfig {
        balance: args.balance.unwrap_or(d.balance),
        balance_images: args.balance_images.map_or(d.balance_images, |n| n as usize),
        balance_steps: args.balance_steps.map_or(d.balance_steps, |n| n as usize),
        reset: match args.reset {
            Some(ResetArg::Zero) => Reset::Zero,
            _ => Reset::Subtract,
        },
        eval_timesteps: validate::conversion_eval_timesteps(net, args.eval_timesteps.as_deref()),
        batch: args.batch.unwrap_or(d.batch),
        seed,
        progress: true,
        ..d
    };
    let train = TrainConfig {
        method,
        epochs,
        schedule: match args.lr_schedule {
            Some(ScheduleArg::Cosine) => LrSchedule::Cosine { total: epochs },
            _ => LrSchedule::Constant,
        },
        timesteps,
        batch,
        lr: args.lr.unwrap_or(defaults::LR),
        optimizer,
        momentum: args.momentum.unwrap_or(defaults::MOMENTUM),
        weight_decay: args.weight_decay.unwrap_or(defaults::WEIGHT_DECAY),
        seed,
        out: args.out.clone(),
        resume: args.resume,
        progress: true,
        conversion,
        stdp: stdp_config(args, net)?,
        describe: serde_json::Map::new(),
        train_limit,
        test_limit,
    };
    Ok(RunConfig {
        train,
        data: args.data.clone(),
        train_limit,
        test_limit,
        source: std::fs::read_to_string(&args.file).ok(),
    })
}

/// `--stdp-images` > `[train.stdp]` > the file's `stdp(...)` > defaults (T, seed and
/// progress are the run's).
fn stdp_config(
    args: &TrainArgs,
    net: &Network,
) -> Result<crate::train::stdp::StdpConfig, TrainError> {
    crate::train::stdp::StdpConfig::resolve(
        &net.settings.stdp,
        args.stdp.as_deref(),
        args.stdp_images.map(|n| n as usize),
    )
    .map_err(TrainError::Config)
}

/// Why `--device cuda` is refused, by build: without the `cuda` feature, or with it (the
/// training driver places its model on the CPU either way).
fn device_refusal() -> String {
    let why = if cfg!(feature = "cuda") {
        "this snnc is built with the `cuda` feature, but the training driver runs on the CPU \
         only"
    } else {
        "this snnc is built without CUDA (the `cuda` feature), and the training driver runs on \
         the CPU only"
    };
    format!("--device cuda: {why}; use --device cpu (the default) [snnc::train::device]")
}

pub(crate) fn print_activity(activity: &[ActivityRecord]) {
    if activity.is_empty() {
        return;
    }
    println!("spike activity (spikes per neuron per step):");
    for a in activity {
        println!("  {:<12} step {:>2}  {:.4}", a.layer, a.step, a.spike_rate);
    }
}
