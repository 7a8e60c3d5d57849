//! `snnc eval`: load trained weights into a network and report test accuracy and the spike
//! activity per layer and unroll step. The checkpoint's `meta.method` picks the method from
//! the registry, which decides how the network runs: as an SNN (`agd`), as its ANN baseline
//! (`ann`), or as the converted SNN with its balanced thresholds (`conversion`). This file
//! maps flags onto `train::driver::EvalConfig`. Exit status as for `train`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::train::{fail, load_network, print_activity, Fail};
use crate::train::{defaults, driver};

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
    /// Time steps T (default: the network's `timesteps`, else 10; 500 for a conversion checkpoint).
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// The data set: fashion-mnist[:DIR], mnist:DIR, cifar10:DIR or embedded.
    #[arg(long)]
    pub data: Option<String>,
    /// Use the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
    #[arg(long, default_value_t = defaults::EVAL_BATCH)]
    pub batch: usize,
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
    let cfg = driver::EvalConfig {
        timesteps: args.timesteps,
        batch: args.batch,
        data: args.data.clone(),
        test_limit: args.test_limit,
        progress: true,
    };
    let ev = driver::evaluate_checkpoint(&net, &args.weights, &cfg).map_err(fail)?;
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
    Ok(())
}
