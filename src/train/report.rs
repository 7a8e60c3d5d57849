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
    /// Mean test loss after the epoch (`None` in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// What `loss` is made of when it is more than one cross-entropy (stochmax): the
    /// epoch means of its terms; `None` for softmax, whose loss is the cross-entropy alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_terms: Option<LossTerms>,
}

/// The terms of stochmax's training loss (Eq. 7 with DropMax's regularisers), each a mean
/// over the epoch's images: `loss = ce + kl + aux + neg_entropy`. Only `ce` is a
/// cross-entropy; `neg_entropy` is ≤ 0, which is why the total can be negative.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LossTerms {
    /// Cross-entropy of the masked logits `log(z + ε) + o`, in nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub ce: f64,
    /// `KL(q ‖ ρ)` summed over classes.
    #[serde(deserialize_with = "nan_if_null")]
    pub kl: f64,
    /// Binary cross-entropy of the auxiliary head against the one-hot label.
    #[serde(deserialize_with = "nan_if_null")]
    pub aux: f64,
    /// Minus the entropy of the retain probabilities ρ (≤ 0).
    #[serde(deserialize_with = "nan_if_null")]
    pub neg_entropy: f64,
}

impl LossTerms {
    /// `ce + kl + aux + neg_entropy`.
    pub fn total(&self) -> f64 {
        self.ce + self.kl + self.aux + self.neg_entropy
    }

    /// `CE 1.2300 + KL 0.1000 + aux 0.2000 − entropy 1.9600`: what a loss is made of.
    pub fn describe(&self) -> String {
        format!(
            "CE {:.4} + KL {:.4} + aux {:.4} − entropy {:.4}",
            self.ce, self.kl, self.aux, -self.neg_entropy
        )
    }

    fn add_scaled(&mut self, other: &LossTerms, w: f64) {
        self.ce += other.ce * w;
        self.kl += other.kl * w;
        self.aux += other.aux * w;
        self.neg_entropy += other.neg_entropy * w;
    }

    /// Running sum for an epoch mean: adds a batch's terms weighted by its size `w`.
    pub fn accumulate(sum: &mut Option<LossTerms>, batch: &LossTerms, w: f64) {
        sum.get_or_insert_with(LossTerms::default)
            .add_scaled(batch, w);
    }

    /// The terms divided by `n` (the images summed over).
    pub fn mean(&self, n: f64) -> LossTerms {
        let mut m = LossTerms::default();
        m.add_scaled(self, 1.0 / n);
        m
    }
}

/// The line a run prints for one epoch; a stochmax loss is followed by its terms and the
/// note that only the CE term is a cross-entropy.
pub fn epoch_line(e: &EpochRecord) -> String {
    let mut line = format!(
        "epoch {:>3}  train loss {:.4}  train acc {:6.2}%  test acc {:6.2}%",
        e.epoch,
        e.loss,
        100.0 * e.train_accuracy,
        100.0 * e.test_accuracy,
    );
    if let Some(t) = &e.loss_terms {
        line.push_str(&format!(
            "\n           stochmax loss = {} (only CE is a cross-entropy; the entropy term can make the total negative)",
            t.describe()
        ));
    }
    line
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
