//! The training report (JSON).
//!
//! Owns: [`Report`] and its records and their atomic JSON file. The plots live in
//! [`super::plot`] (re-exported here for existing callers; [`plot_training`] here is the
//! per-epoch-only form, [`super::plot::plot_epochs`]).
//!
//! Invariants:
//! - accuracies and spike rates are fractions in `[0, 1]`;
//! - a report file is replaced atomically (written to a temporary file in the same folder,
//!   then renamed), so a reader never sees a half-written report;
//! - non-finite numbers (JSON has none) are written as `null` and read back as NaN;
//! - keys a report does not know are kept in [`Report::extra`] and written back.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Reads a number that may have been written as `null` (a non-finite value) as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One training run: what was trained, how well, how fast, and its per-epoch history,
/// spiking activity and energy estimate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// The training method (`agd`, `conversion`, ...).
    pub method: String,
    /// The network's name (usually its file).
    pub network: String,
    /// Time steps T per input.
    pub timesteps: usize,
    /// Final test accuracy, a fraction in [0, 1].
    #[serde(deserialize_with = "nan_if_null")]
    pub test_accuracy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_images_per_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub infer_images_per_s: f64,
    /// Wall-clock seconds of the whole run.
    #[serde(deserialize_with = "nan_if_null")]
    pub wall_s: f64,
    pub epochs: Vec<EpochRecord>,
    pub activity: Vec<ActivityRecord>,
    pub energy: EnergyRecord,
    /// Anything else a method wants to record (kept through a read/write round trip).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_accuracy: f64,
}

/// The spike rate of one layer application (a layer at one unroll step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub layer: String,
    /// 1-based unroll step (1 for layers applied once).
    pub step: u32,
    /// Spikes per neuron per time step, in [0, 1].
    #[serde(deserialize_with = "nan_if_null")]
    pub spike_rate: f64,
}

/// The energy estimate: ANN and SNN energy per inference and their ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EnergyRecord {
    #[serde(deserialize_with = "nan_if_null")]
    pub e_ann_pj: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub e_snn_pj: f64,
    /// Energy efficiency `e_ann_pj / e_snn_pj`.
    #[serde(deserialize_with = "nan_if_null")]
    pub ee: f64,
}

/// A temporary file next to `path`, for an atomic replace.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

impl Report {
    /// An empty report for `method` on `network` with `timesteps` steps (numbers zero,
    /// histories empty), to be filled in as training goes.
    pub fn new(method: &str, network: &str, timesteps: usize) -> Report {
        Report {
            method: method.to_string(),
            network: network.to_string(),
            timesteps,
            ..Report::default()
        }
    }

    /// Writes the report as pretty JSON, atomically: to a temporary file in the same folder,
    /// flushed to disk, then renamed over `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        let tmp = temp_path(path);
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Reads a report written by [`Report::write_json`]; malformed JSON is
    /// `io::ErrorKind::InvalidData`.
    pub fn read_json(path: &Path) -> io::Result<Report> {
        let text = fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

pub use super::plot::{plot_activity, plot_epochs as plot_training, PlotError};
