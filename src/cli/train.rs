//! `snnc train`: compile a network, train it (AGD or the ANN baseline), write
//! `DIR/weights.safetensors`, `DIR/report.json`, `DIR/training.svg`, `DIR/activity.svg`.
//!
//! Settings come from flags, then the `[train]` table of `--config FILE.toml` (same keys,
//! kebab- or snake-case), then defaults. Exit status: 0 ok, 1 errors in the input (the
//! network, a shape mismatch with the data, a diverging loss), 2 usage or I/O.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::Device;
use serde::Deserialize;

use crate::backend::candle::model::Model;
use crate::data::{self, DataSpec, Dataset};
use crate::ir::{Method, Network, Reset};
use crate::train::agd::{self, OptimizerKind, TrainConfig, TrainError, TrainMethod};
use crate::train::checkpoint;
use crate::train::conversion;
use crate::train::optim::LrSchedule;
use crate::train::report::{self, ActivityRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodArg {
    Agd,
    Ann,
    /// Train the ANN, then balance IF thresholds and evaluate the SNN.
    Conversion,
    /// Layerwise unsupervised STDP of the spiking convolutions, then the classifier behind
    /// the SNN→ANN boundary with backprop on their spike rates.
    Stdp,
}

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

#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainArgs {
    /// The .snn file.
    #[serde(skip)]
    pub file: PathBuf,
    /// Which network of the file (default: the only one, or the first).
    #[arg(long)]
    pub network: Option<String>,
    /// agd (surrogate gradients), ann (the same topology with ReLU and T = 1) or conversion
    /// (the ANN, then balanced IF thresholds).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// The data set: fashion-mnist[:DIR], mnist:DIR, cifar10:DIR or embedded (default:
    /// Debian's Fashion-MNIST if installed, else the embedded slice).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Time steps T (default: the network's `timesteps`, else 10).
    #[arg(long)]
    pub timesteps: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum)]
    #[serde(alias = "lr_schedule")]
    pub lr_schedule: Option<ScheduleArg>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    #[arg(long)]
    #[serde(alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use the first N training images.
    #[arg(long)]
    #[serde(alias = "train_limit")]
    pub train_limit: Option<usize>,
    /// Use the first N test images.
    #[arg(long)]
    #[serde(alias = "test_limit")]
    pub test_limit: Option<usize>,
    /// Output folder (default: runs/<network>-<method>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from OUT/weights.safetensors.
    #[arg(long)]
    #[serde(default)]
    pub resume: bool,
    /// Conversion: training images presented while balancing thresholds (default 256).
    #[arg(long)]
    #[serde(alias = "balance_images")]
    pub balance_images: Option<u32>,
    /// Conversion: time steps of each balancing run (default 100).
    #[arg(long)]
    #[serde(alias = "balance_steps")]
    pub balance_steps: Option<u32>,
    /// Conversion: `max` (largest input, Sengupta et al.) or `percentile[:P]` (Rueckauer
    /// et al., default P = 99.9).
    #[arg(long)]
    pub balance: Option<conversion::Balance>,
    /// Conversion: reset of the IF neurons (default subtract).
    #[arg(long, value_enum)]
    pub reset: Option<ResetArg>,
    /// Conversion: latencies T at which the SNN is evaluated (default 50,100,250,500).
    #[arg(long, value_delimiter = ',')]
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
    pub stdp: Option<Box<crate::train::stdp::StdpConfig>>,
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

/// Loads the data set `spec` (default: `data::default_spec()`), keeping the first
/// `train_limit`/`test_limit` images of each split.
pub(crate) fn load_data(
    spec: Option<&str>,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, Fail> {
    let spec = match spec {
        Some(s) => s
            .parse::<DataSpec>()
            .map_err(|e| Fail::usage(diagnostic_text(&e)))?,
        None => data::default_spec(),
    };
    data::load(&spec, train_limit, test_limit).map_err(|e| Fail::usage(diagnostic_text(&e)))
}

/// An error with its help line, when it has one.
fn diagnostic_text(e: &dyn miette::Diagnostic) -> String {
    match e.help() {
        Some(h) => format!("{e}\nhelp: {h}"),
        None => e.to_string(),
    }
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
    let net = load_network(&args.file, args.network.as_deref())?;
    if matches!(
        (args.method, net.settings.method),
        (Some(MethodArg::Stdp), _) | (None, Method::Stdp)
    ) {
        return run_stdp(&args, &net);
    }
    let conversion = matches!(
        (args.method, net.settings.method),
        (Some(MethodArg::Conversion), _) | (None, Method::Conversion)
    );
    let method = match (args.method, net.settings.method) {
        (Some(MethodArg::Ann | MethodArg::Conversion), _) | (None, Method::Conversion) => {
            TrainMethod::Ann
        }
        (Some(MethodArg::Agd), _) | (None, Method::Agd) => TrainMethod::Agd,
        (Some(MethodArg::Stdp), _) => unreachable_stdp()?,
        (None, m) => {
            return Err(Fail::usage(format!(
                "network `{}` asks for method {m:?}, which `snnc train` does not offer yet; pass --method agd, ann or conversion",
                net.name
            )))
        }
    };
    let timesteps = args
        .timesteps
        .or(net.settings.timesteps.map(|t| t as usize))
        .unwrap_or(10);
    if timesteps == 0 || args.batch == Some(0) {
        return Err(Fail::usage("--timesteps and --batch must be at least 1"));
    }
    let conv_cfg = if conversion {
        Some(conversion_config(&args)?)
    } else {
        None
    };
    let method_name = if conversion {
        "conversion"
    } else {
        method.name()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", net.name, method_name)));
    let epochs = args.epochs.unwrap_or(1);
    let cfg = TrainConfig {
        method,
        epochs,
        schedule: match args.lr_schedule {
            Some(ScheduleArg::Cosine) => LrSchedule::Cosine { total: epochs },
            _ => LrSchedule::Constant,
        },
        timesteps,
        batch: args.batch.unwrap_or(32),
        lr: args.lr.unwrap_or(1e-3),
        optimizer: match args.optimizer {
            Some(OptimizerArg::Sgd) => OptimizerKind::Sgd,
            _ => OptimizerKind::Adam,
        },
        momentum: args.momentum.unwrap_or(0.9),
        weight_decay: args.weight_decay.unwrap_or(0.0),
        seed: args.seed.unwrap_or(0),
        out: Some(out.clone()),
        resume: args.resume,
        progress: true,
    };
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Fail::usage("--lr must be a positive number"));
    }
    let device = Device::Cpu;
    let mut model = Model::new(&net, &device, cfg.seed)
        .map_err(|e| Fail::input(format!("cannot lower `{}`: {e}", net.name)))?;
    let data = load_data(args.data.as_deref(), args.train_limit, args.test_limit)?;
    agd::check_data(&model, &data).map_err(|e| Fail::input(e.to_string()))?;
    std::fs::create_dir_all(&out)
        .map_err(|e| Fail::usage(format!("cannot create {}: {e}", out.display())))?;
    eprintln!(
        "training `{}` ({}) on {} images, testing on {}, T = {}, batch {}, {} epoch(s) → {}",
        net.name,
        method.name(),
        data.train.len(),
        data.test.len(),
        if method == TrainMethod::Ann {
            1
        } else {
            timesteps
        },
        cfg.batch,
        cfg.epochs,
        out.display()
    );
    let mut report = agd::train(&mut model, &data, &cfg).map_err(|e| match e {
        TrainError::Io(e) => Fail::usage(e.to_string()),
        e @ (TrainError::NonFinite { .. } | TrainError::Data(_) | TrainError::NoGradient(_)) => {
            Fail::input(e.to_string())
        }
        e => Fail::usage(e.to_string()),
    })?;
    if let Some(cc) = &conv_cfg {
        convert(&mut model, &data, cc, &mut report, &out)?;
    }
    report::plot_training(&report.epochs, &out.join("training.svg"))
        .map_err(|e| Fail::usage(e.to_string()))?;
    report::plot_activity(&report.activity, &out.join("activity.svg"))
        .map_err(|e| Fail::usage(e.to_string()))?;
    for e in &report.epochs {
        println!(
            "epoch {:>3}  train loss {:.4}  train acc {:6.2}%  test acc {:6.2}%",
            e.epoch,
            e.loss,
            100.0 * e.train_accuracy,
            100.0 * e.test_accuracy,
        );
    }
    println!(
        "speed: training {:.1} images/s, inference {:.1} images/s (last epoch)",
        report.train_images_per_s, report.infer_images_per_s
    );
    print_activity(&report.activity);
    let en = &report.energy;
    println!(
        "energy: E_ANN {:.3e} pJ, E_SNN {:.3e} pJ, EE = {:.2}",
        en.e_ann_pj, en.e_snn_pj, en.ee
    );
    println!("wrote {}", out.display());
    Ok(())
}

fn unreachable_stdp() -> Result<TrainMethod, Fail> {
    Err(Fail::usage(
        "internal: STDP is dispatched before this point",
    ))
}

/// `--method stdp` (`train::stdp::run`): STDP, then the classifier; writes OUT.
fn run_stdp(args: &TrainArgs, net: &crate::ir::Network) -> Result<(), Fail> {
    use crate::train::stdp::{run, StdpConfig};
    let d = args.stdp.as_deref().cloned().unwrap_or_default();
    let timesteps = args
        .timesteps
        .or(net.settings.timesteps.map(|t| t as usize))
        .unwrap_or(d.timesteps);
    let cfg = StdpConfig {
        images: args.stdp_images.map_or(d.images, |n| n as usize),
        timesteps,
        seed: args.seed.unwrap_or(d.seed),
        progress: true,
        ..d
    };
    cfg.validate().map_err(Fail::usage)?;
    let tc = TrainConfig {
        method: TrainMethod::Ann,
        epochs: args.epochs.unwrap_or(1),
        batch: args.batch.unwrap_or(32),
        lr: args.lr.unwrap_or(1e-3),
        seed: args.seed.unwrap_or(0),
        resume: args.resume,
        progress: true,
        ..TrainConfig::default()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-stdp", net.name)));
    let data = load_data(args.data.as_deref(), args.train_limit, args.test_limit)?;
    eprintln!(
        "STDP `{}`: {} images per conv layer, T = {timesteps}; classifier on {} images, test {} → {}",
        net.name,
        cfg.images,
        data.train.len(),
        data.test.len(),
        out.display()
    );
    let report = run::run(net, &data, &cfg, &tc, &out).map_err(Fail::input)?;
    if let Some(layers) = report.extra.get("stdp") {
        println!("stdp: {layers}");
    }
    for e in &report.epochs {
        println!(
            "classifier epoch {:>3}  loss {:.4}  train acc {:6.2}%  test acc {:6.2}%",
            e.epoch,
            e.loss,
            100.0 * e.train_accuracy,
            100.0 * e.test_accuracy
        );
    }
    print_activity(&report.activity);
    let g = |k: &str| {
        report
            .extra
            .get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN)
    };
    println!(
        "energy: E_ANN {:.3e} pJ, E_SNN {:.3e} pJ, EE_Full = {:.2}, EE_Conv = {:.2}",
        report.energy.e_ann_pj,
        report.energy.e_snn_pj,
        g("ee_full"),
        g("ee_conv")
    );
    println!("wrote {}", out.display());
    Ok(())
}

/// The conversion settings from the flags.
fn conversion_config(args: &TrainArgs) -> Result<conversion::ConversionConfig, Fail> {
    let d = conversion::ConversionConfig::default();
    let balance = args.balance.unwrap_or(d.balance);
    let c = conversion::ConversionConfig {
        balance,
        balance_images: args.balance_images.map_or(d.balance_images, |n| n as usize),
        balance_steps: args.balance_steps.map_or(d.balance_steps, |n| n as usize),
        reset: match args.reset {
            Some(ResetArg::Zero) => Reset::Zero,
            _ => Reset::Subtract,
        },
        eval_timesteps: args.eval_timesteps.clone().unwrap_or(d.eval_timesteps),
        batch: args.batch.unwrap_or(d.batch),
        seed: args.seed.unwrap_or(0),
        progress: true,
        ..d
    };
    if c.balance_images == 0 || c.balance_steps == 0 || c.eval_timesteps.contains(&0) {
        return Err(Fail::usage(
            "--balance-images, --balance-steps and --eval-timesteps must be at least 1",
        ));
    }
    Ok(c)
}

/// Conversion after the ANN phase: balance, evaluate the SNN, write the checkpoint (ANN
/// weights + thresholds) and the report.
fn convert(
    model: &mut Model,
    data: &Dataset,
    cc: &conversion::ConversionConfig,
    report: &mut report::Report,
    out: &Path,
) -> Result<(), Fail> {
    let train = conversion::SplitImages::new(&data.train, data.shape);
    let test = conversion::SplitImages::new(&data.test, data.shape);
    eprintln!(
        "balancing thresholds ({}, {} images × {} steps), then the SNN at T = {:?}",
        cc.balance, cc.balance_images, cc.balance_steps, cc.eval_timesteps
    );
    let conv =
        conversion::convert(model, &train, &test, cc).map_err(|e| Fail::input(e.to_string()))?;
    let meta = checkpoint::Meta {
        epoch: report.epochs.len(),
        seed: cc.seed,
        network: report.network.clone(),
        method: "conversion".into(),
    };
    conversion::save_checkpoint(model, cc.reset, &checkpoint::weights_path(out), &meta)
        .map_err(|e| Fail::usage(e.to_string()))?;
    conversion::apply_to_report(report, &conv);
    report
        .write_json(&out.join("report.json"))
        .map_err(|e| Fail::usage(e.to_string()))?;
    println!("ANN test accuracy {:.2}%", 100.0 * conv.ann_test_accuracy);
    for t in &conv.thresholds {
        println!(
            "  v_thresh {:<10} step {:>2}  {:.4}",
            t.layer, t.step, t.threshold
        );
    }
    for (l, inc) in &conv.backres_increasing {
        println!("  {l}: v_thresh,1 < v_thresh,2 < … holds: {inc}");
    }
    for r in &conv.snn.results {
        println!(
            "SNN T = {:>4}: accuracy {:6.2}% (conversion loss {:+.2} points), E_SNN {:.3e} pJ, EE = {:.2}",
            r.timesteps,
            100.0 * r.test_accuracy,
            100.0 * (conv.ann_test_accuracy - r.test_accuracy),
            r.e_snn_pj,
            r.ee
        );
    }
    Ok(())
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
