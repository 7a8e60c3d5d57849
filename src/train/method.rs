//! Training methods as plugins: the [`TrainingMethod`] trait and the registry [`METHODS`]
//! that `snnc train --method`, the network file's `method` and a checkpoint's `meta.method`
//! all go through. Adding a method is one file (or folder) under `train/` implementing the
//! trait, plus one line in [`METHODS`].
//!
//! The driver (`train::driver`) owns everything methods share (data, epochs, checkpoints,
//! resume, reports, progress); a method says how the gradient phase runs the network, what
//! happens after it, and how its checkpoints are evaluated.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::backend::candle::model::{ForwardOptions, Model};
use crate::data::Dataset;
use crate::ir::Network;
use crate::train::checkpoint::Meta;
use crate::train::driver::{self, EvalConfig, EvalOutcome, RunConfig, RunOutcome, TrainConfig};
use crate::train::error::TrainError;
use crate::train::report::Report;
use crate::train::{agd, ann, conversion, stdp};

/// One way of obtaining a network's weights and thresholds.
pub trait TrainingMethod: Sync + Send {
    /// The name in `--method`, in a network's `method` and in checkpoints' `meta.method`.
    fn name(&self) -> &'static str;

    /// A one-line description for help texts.
    fn about(&self) -> &'static str;

    /// How the gradient phase runs the network at T = `timesteps` (training or evaluation).
    fn forward_options(&self, timesteps: usize, train: bool) -> ForwardOptions;

    /// T the gradient phase actually runs at (an ANN: 1).
    fn training_timesteps(&self, timesteps: usize) -> usize {
        timesteps
    }

    /// The method recorded in the gradient phase's checkpoints and report (conversion's
    /// gradient phase trains, and checkpoints, an ANN).
    fn checkpoint_method(&self) -> &'static str {
        self.name()
    }

    /// Refuses settings this method cannot use.
    fn validate(&self, _cfg: &TrainConfig) -> Result<(), TrainError> {
        Ok(())
    }

    /// Refuses a network (final IR) this method cannot train, before any training.
    fn check_network(&self, _net: &Network) -> Result<(), TrainError> {
        Ok(())
    }

    /// A method that owns its whole run (no gradient phase of the driver: STDP) runs it here,
    /// after [`Self::validate`] and [`Self::check_network`], and returns its outcome; `None`
    /// (the default): the driver runs the gradient phase, then [`Self::after_training`].
    fn run(&self, _net: &Network, _cfg: &RunConfig) -> Result<Option<RunOutcome>, TrainError> {
        Ok(None)
    }

    /// Runs after the gradient phase, with the trained model; may rewrite the report and the
    /// checkpoint in `out`. Returns lines to show the user.
    fn after_training(
        &self,
        _model: &mut Model,
        _data: &Dataset,
        _cfg: &TrainConfig,
        _report: &mut Report,
        _out: &Path,
    ) -> Result<Vec<String>, TrainError> {
        Ok(Vec::new())
    }

    /// Evaluates a checkpoint of this method (already loaded into `model`) on the test set.
    fn evaluate_checkpoint(
        &self,
        model: &Model,
        _tensors: &HashMap<String, Tensor>,
        meta: &Meta,
        cfg: &EvalConfig,
    ) -> Result<EvalOutcome, TrainError> {
        driver::evaluate_batched(model, self.as_dyn(), meta, cfg)
    }

    /// `self` as a trait object (for the provided methods).
    fn as_dyn(&self) -> &dyn TrainingMethod;
}

impl std::fmt::Debug for dyn TrainingMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrainingMethod({})", self.name())
    }
}

/// AGD: surrogate-gradient BPTT of the SNN.
pub const AGD: &dyn TrainingMethod = &agd::Agd;
/// The ANN baseline: the same topology with ReLU and T = 1.
pub const ANN: &dyn TrainingMethod = &ann::Ann;
/// ANN-to-SNN conversion: the ANN, then balanced IF thresholds.
pub const CONVERSION: &dyn TrainingMethod = &conversion::ConversionMethod;
/// Layerwise unsupervised STDP of the spiking convolutions, then the classifier.
pub const STDP: &dyn TrainingMethod = &stdp::method::StdpMethod;

/// The registry: every method `snnc train` offers, one line each.
pub static METHODS: &[&dyn TrainingMethod] = &[AGD, ANN, CONVERSION, STDP];

/// The method named `name`.
pub fn find(name: &str) -> Result<&'static dyn TrainingMethod, TrainError> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name() == name)
        .ok_or_else(|| TrainError::UnknownMethod(name.to_string()))
}

/// The names of every method, in registry order.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name()).collect()
}

/// A method name for clap's `--method` (checked against the registry).
pub fn parse_name(s: &str) -> Result<String, String> {
    find(s)
        .map(|m| m.name().to_string())
        .map_err(|_| format!("expected one of: {}", names().join(", ")))
}

/// The method a network file asks for (`method agd|conversion|stdp`).
pub fn for_network(net: &crate::ir::Network) -> Result<&'static dyn TrainingMethod, TrainError> {
    let name = match net.settings.method {
        crate::ir::Method::Agd => "agd",
        crate::ir::Method::Conversion => "conversion",
        crate::ir::Method::Stdp => "stdp",
    };
    find(name).map_err(|_| {
        TrainError::Config(format!(
            "network `{}` asks for method {name}, which `snnc train` does not offer yet; pass --method {}",
            net.name,
            names().join(", ")
        ))
    })
}
