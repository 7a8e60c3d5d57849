//! `snnc eval`: load trained weights into a network and report test accuracy and the spike
//! activity per layer and unroll step. The checkpoint's `meta.method` decides whether the
//! network runs as an SNN (`agd`), as its ANN baseline (`ann`), or as the converted SNN with
//! its balanced thresholds (`conversion`). Exit status as for `train`.

use std::path::PathBuf;
use std::process::ExitCode;

use candle_core::Device;

use super::train::{load_data, load_network, print_activity, Fail};
use crate::backend::candle::model::Model;
use crate::train::agd::{self, TrainMethod};
use crate::train::checkpoint;

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
    /// Time steps T (default: the network's `timesteps`, else 10).
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// The data set: fashion-mnist[:DIR], mnist:DIR, cifar10:DIR or embedded.
    #[arg(long)]
    pub data: Option<String>,
    /// Use the first N test images.
    #[arg(long)]
    pub test_limit: Option<usize>,
    #[arg(long, default_value_t = 100)]
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
    let (map, meta) = checkpoint::load(&args.weights).map_err(|e| Fail(e.to_string(), 2))?;
    let mut model = Model::new(&net, &Device::Cpu, 0).map_err(|e| Fail(e.to_string(), 1))?;
    model.load(&map).map_err(|e| {
        Fail(
            format!(
                "{} does not fit `{}`: {e}",
                args.weights.display(),
                net.name
            ),
            1,
        )
    })?;
    // STDP runs on the same IF step runtime (reset by subtraction) as conversion.
    if meta.method == "conversion" || meta.method == "stdp" {
        return eval_conversion(&model, &map, &meta, &args, &net.name);
    }
    let method = if meta.method == "ann" {
        TrainMethod::Ann
    } else {
        TrainMethod::Agd
    };
    let t = args
        .timesteps
        .or(net.settings.timesteps.map(|t| t as usize))
        .unwrap_or(10);
    if t == 0 || args.batch == 0 {
        return Err(Fail("--timesteps and --batch must be at least 1".into(), 2));
    }
    let data = load_data(args.data.as_deref(), Some(0), args.test_limit)?;
    agd::check_data(&model, &data).map_err(|e| Fail(e.to_string(), 1))?;
    let test = &data.test;
    let opts = method.options(t, false);
    let ev = agd::evaluate(&model, test, data.shape, opts, args.batch, meta.seed)
        .map_err(|e| Fail(e.to_string(), 1))?;
    println!(
        "`{}` ({}, T = {}): accuracy {:.2}% on {} test images, loss {:.4}, {:.1} images/s",
        net.name,
        method.name(),
        if method == TrainMethod::Ann { 1 } else { t },
        100.0 * ev.accuracy,
        test.len(),
        ev.loss,
        ev.images_per_s
    );
    print_activity(&ev.activity);
    Ok(())
}

/// A conversion checkpoint: the SNN with its balanced thresholds and IF neurons, step by
/// step (no balancing again).
fn eval_conversion(
    model: &Model,
    map: &std::collections::HashMap<String, candle_core::Tensor>,
    meta: &checkpoint::Meta,
    args: &EvalArgs,
    name: &str,
) -> Result<(), Fail> {
    use crate::backend::candle::event::PathPolicy;
    use crate::train::conversion::{self, Simulator, SplitImages};
    let t = args
        .timesteps
        .or(model.network().settings.timesteps.map(|t| t as usize))
        .unwrap_or(100);
    if t == 0 || args.batch == 0 {
        return Err(Fail("--timesteps and --batch must be at least 1".into(), 2));
    }
    let data = load_data(args.data.as_deref(), Some(0), args.test_limit)?;
    agd::check_data(model, &data).map_err(|e| Fail(e.to_string(), 1))?;
    let reset = conversion::checkpoint_reset(map).map_err(|e| Fail(e.to_string(), 1))?;
    let sim =
        Simulator::new(model, reset, PathPolicy::default()).map_err(|e| Fail(e.to_string(), 1))?;
    let test = SplitImages::new(&data.test, data.shape);
    let ev = conversion::evaluate_snn(&sim, &test, &[t], args.batch, meta.seed, true)
        .map_err(|e| Fail(e.to_string(), 1))?;
    let r = &ev.results[0];
    println!(
        "`{name}` ({}, IF, T = {t}): accuracy {:.2}% on {} test images, {:.1} images/s",
        meta.method,
        100.0 * r.test_accuracy,
        ev.images,
        ev.images as f64 / ev.seconds.max(1e-9)
    );
    print_activity(&r.activity);
    println!(
        "energy: E_ANN {:.3e} pJ, E_SNN {:.3e} pJ, EE = {:.2}",
        r.e_ann_pj, r.e_snn_pj, r.ee
    );
    Ok(())
}
