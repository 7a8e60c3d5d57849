//! STDP as a training method of the registry (`train::method`): `--method stdp`, a network's
//! `method stdp` and a checkpoint's `meta.method = "stdp"` all come here.
//!
//! Owner: the STDP helper. Invariants: STDP owns its whole run ([`TrainingMethod::run`]: the
//! driver runs no gradient phase of the SNN); its checkpoints are evaluated on the step
//! runtime (reset by subtraction) with each layer's declared neuron, as STDP trained them
//! (conversion's evaluation, without its IF override).

use std::collections::HashMap;

use candle_core::Tensor;

use super::{run, StdpConfig};
use crate::backend::candle::model::{ForwardOptions, Model};
use crate::ir::{Method, Network};
use crate::train::checkpoint::Meta;
use crate::train::defaults;
use crate::train::driver::{self, EvalConfig, EvalOutcome, RunConfig, RunOutcome, TrainConfig};
use crate::train::error::TrainError;
use crate::train::method::TrainingMethod;

/// The STDP method: layerwise STDP of the spiking convolutions (`cfg.stdp`, T and seed of
/// the run), then the classifier behind the SNN→ANN boundary trained with backprop on their
/// spike rates (the run's epochs, batch, learning rate). Writes `weights.safetensors`,
/// `report.json` (with `stdp`, `ee_conv`, `ee_full`), `kernels.svg`, `training.svg`,
/// `activity.svg` in OUT.
#[derive(Debug, Clone, Copy)]
pub struct StdpMethod;

impl StdpMethod {
    /// The STDP phase's settings of a run: `cfg.stdp` with the run's T, seed and progress.
    fn stdp_config(cfg: &TrainConfig) -> StdpConfig {
        StdpConfig {
            timesteps: cfg.timesteps,
            seed: cfg.seed,
            progress: cfg.progress,
            ..cfg.stdp.clone()
        }
    }
}

impl TrainingMethod for StdpMethod {
    fn name(&self) -> &'static str {
        "stdp"
    }

    fn about(&self) -> &'static str {
        "layerwise unsupervised STDP of the spiking convolutions, then the classifier on their spike rates"
    }

    /// Only the classifier phase is trained with gradients, as an ANN on spike rates.
    fn forward_options(&self, _timesteps: usize, train: bool) -> ForwardOptions {
        ForwardOptions::ann(train)
    }

    /// Errors: `TrainError::Config` when a constant of `[train.stdp]` is out of range.
    fn validate(&self, cfg: &TrainConfig) -> Result<(), TrainError> {
        Self::stdp_config(cfg)
            .validate()
            .map_err(TrainError::Config)
    }

    fn run(&self, net: &Network, cfg: &RunConfig) -> Result<Option<RunOutcome>, TrainError> {
        let t = &cfg.train;
        let sc = Self::stdp_config(t);
        let out = t
            .out
            .clone()
            .unwrap_or_else(|| driver::default_out(net, self));
        let data = driver::load_data(cfg.data.as_deref(), cfg.train_limit, cfg.test_limit)?;
        let tc = TrainConfig {
            out: Some(out.clone()),
            train_limit: cfg.train_limit,
            test_limit: cfg.test_limit,
            describe: driver::describe(net, cfg, &data, cfg.source.as_deref()),
            ..t.clone()
        };
        if t.progress {
            eprintln!(
                "STDP `{}`: {} images per conv layer, T = {}; classifier on {} images, test {} → {}",
                net.name,
                sc.images,
                sc.timesteps,
                data.train.len(),
                data.test.len(),
                out.display()
            );
        }
        let report = run::run(net, &data, &sc, &tc, &out).map_err(TrainError::Stdp)?;
        let plot_err = |e: crate::train::report::PlotError| {
            TrainError::Io(std::io::Error::other(e.to_string()))
        };
        crate::train::report::plot_training(&report.epochs, &out.join("training.svg"))
            .map_err(plot_err)?;
        crate::train::report::plot_activity(&report.activity, &out.join("activity.svg"))
            .map_err(plot_err)?;
        let mut summary = Vec::new();
        if let Some(layers) = report.extra.get("stdp") {
            summary.push(format!("stdp: {layers}"));
        }
        let g = |k: &str| {
            report
                .extra
                .get(k)
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN)
        };
        summary.push(format!(
            "STDP energy: EE_Full = {:.2}, EE_Conv = {:.2}",
            g("ee_full"),
            g("ee_conv")
        ));
        let raster = crate::train::raster::raster_path(&out);
        if raster.exists() {
            let n = crate::train::raster::RASTER_IMAGES.min(data.test.len());
            summary.push(crate::train::raster::raster_line(&raster, n));
        }
        Ok(Some(RunOutcome {
            report,
            summary,
            out,
        }))
    }

    /// The SNN with its STDP kernels, adapted thresholds and classifier on the IF step
    /// runtime (as conversion's checkpoints), at T (default: the network's `timesteps`, else
    /// STDP's default T).
    fn evaluate_checkpoint(
        &self,
        model: &Model,
        tensors: &HashMap<String, Tensor>,
        meta: &Meta,
        cfg: &EvalConfig,
    ) -> Result<EvalOutcome, TrainError> {
        let cfg = EvalConfig {
            timesteps: Some(defaults::timesteps(
                model.network(),
                cfg.timesteps,
                crate::ir::defaults::timesteps(Method::Stdp),
            )),
            ..cfg.clone()
        };
        // The declared neurons (a LIF layer leaks), as STDP trained and measured them.
        crate::train::conversion::evaluate_steps(
            model,
            tensors,
            meta,
            &cfg,
            crate::train::conversion::StepNeurons::Declared,
        )
    }

    fn as_dyn(&self) -> &dyn TrainingMethod {
        self
    }
}
