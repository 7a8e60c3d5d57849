//! `snnc eval`: load trained weights into a network and report test accuracy and the spike
//! activity per layer and unroll step. The checkpoint's `meta.method` picks the method from
//! the registry, which decides how the network runs: as an SNN (`agd`), as its ANN baseline
//! (`ann`), or as the converted SNN with its balanced thresholds (`conversion`). Settings not
//! given as flags come from the checkpoint's record of its run, announced on stderr
//! ("note: T = 4 from the checkpoint"). Writes `eval-report.json` beside the weights (the
//! training report's format, with the resolved settings under `config`). This file maps
//! flags onto `train::driver::EvalFlags`. Exit status as for `train`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::train::{fail, load_network, print_activity, Fail};
use crate::backend::candle::event::PathPolicy;
use crate::train::conversion::SimPath;
use crate::train::driver;
use crate::train::report::{EnergyRecord, Report};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The .snn file.
    pub file: PathBuf,
    /// The trained weights (a `weights.safetensors` written by `snnc train`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Which network of the file (default: the first).
    #[arg(long)]
    pub network: Option<String>,
    /// Time steps T (default: the checkpoint's training T, else the network's `timesteps`,
    /// else the method's default: AGD/ANN 10, STDP 100; a converted checkpoint: the network's
    /// `timesteps`, else 500).
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// The data set: fashion-mnist[:DIR], mnist:DIR, cifar10:DIR or embedded.
    #[arg(long)]
    pub data: Option<String>,
    /// Use the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Images per batch (default: the checkpoint's training batch, else 100).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed of Poisson and dropout noise (default: the checkpoint's seed, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A converted checkpoint: how conv/FC layers accumulate their inputs at each step —
    /// `auto` (event-driven below the measured input-density crossovers, the default),
    /// `event` (only the weights of non-zero inputs) or `dense` (im2col/matmul); the
    /// results agree up to f32 summation order. `ann` runs the source ANN instead (ReLU, one
    /// pass, same weights) for its inference time. For benchmarks; overrides `SNNC_SIM_PATH`.
    #[arg(long, value_enum)]
    pub sim_path: Option<SimPathArg>,
}

/// The accumulation path of the step-by-step runtime (`--sim-path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimPathArg {
    Auto,
    Event,
    Dense,
    Ann,
}

impl SimPathArg {
    fn path(self) -> SimPath {
        match self {
            SimPathArg::Auto => SimPath::Snn(PathPolicy::default()),
            SimPathArg::Event => SimPath::Snn(PathPolicy::Event),
            SimPathArg::Dense => SimPath::Snn(PathPolicy::Dense),
            SimPathArg::Ann => SimPath::Ann,
        }
    }
}

pub fn run(args: EvalArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn run_inner(args: EvalArgs) -> Result<(), Fail> {
    crate::backend::candle::alloc::tune_malloc();
    let net = load_network(&args.file, args.network.as_deref())?;
    if let Some(p) = args.sim_path {
        crate::train::conversion::set_sim_path(Some(p.path()));
    }
    let flags = driver::EvalFlags {
        timesteps: args.timesteps,
        batch: args.batch,
        seed: args.seed,
        data: args.data.clone(),
        test_limit: args.test_limit,
        progress: true,
    };
    let prepared = driver::prepare_eval(&net, &args.weights, &flags).map_err(fail)?;
    for note in &prepared.notes {
        eprintln!("{note}");
    }
    let ev = driver::run_eval(&prepared).map_err(fail)?;
    let loss = ev
        .loss
        .map(|l| format!(", loss {l:.4}"))
        .unwrap_or_default();
    println!(
        "`{}` ({}, T = {}): accuracy {:.2}% on {} test images{loss}, {:.1} images/s",
        net.name,
        ev.label,
        ev.timesteps,
        100.0 * ev.accuracy,
        ev.images,
        ev.images_per_s
    );
    print_activity(&ev.activity);
    if let Some(en) = &ev.energy {
        println!(
            "energy: E_ANN {:.3e} pJ, E_SNN {:.3e} pJ, EE = {:.2}",
            en.e_ann_pj, en.e_snn_pj, en.ee
        );
    }
    let path = args
        .weights
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("eval-report.json");
    // The result is printed already: a folder that cannot be written is a warning, not a failure.
    match eval_report(&net.name, &args, &prepared, &ev).write_json(&path) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!(
            "warning[snnc::train::io]: cannot write {}: {e}",
            path.display()
        ),
    }
    Ok(())
}

/// The evaluation as a `Report` (the training report's format, no epochs): accuracy,
/// activity and energy (null where the method has none), and under `config` the resolved
/// settings it ran with and the checkpoint it read.
fn eval_report(
    network: &str,
    args: &EvalArgs,
    p: &driver::PreparedEval,
    ev: &driver::EvalOutcome,
) -> Report {
    let mut r = Report::new(&ev.label, network, ev.timesteps);
    r.test_accuracy = ev.accuracy;
    r.infer_images_per_s = ev.images_per_s;
    r.train_images_per_s = f64::NAN;
    r.wall_s = f64::NAN;
    r.activity = ev.activity.clone();
    r.energy = ev.energy.clone().unwrap_or(EnergyRecord {
        e_ann_pj: f64::NAN,
        e_snn_pj: f64::NAN,
        ee: f64::NAN,
    });
    r.extra.insert(
        "config".into(),
        serde_json::json!({
            "command": "eval",
            "weights": args.weights.display().to_string(),
            "method": p.method.name(),
            "network": network,
            "data_spec": args.data,
            "test_images": ev.images,
            "test_limit": args.test_limit,
            "timesteps": ev.timesteps,
            "batch": p.config.batch,
            "seed": p.meta.seed,
            "trained_epochs": p.meta.epoch,
        }),
    );
    if let Some(l) = ev.loss {
        r.extra.insert("test_loss".into(), l.into());
    }
    r.extra
        .insert("snnc_version".into(), env!("CARGO_PKG_VERSION").into());
    r
}
