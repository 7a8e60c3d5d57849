//! The training report (JSON) and its plots (SVG).
//!
//! Owns: [`Report`] and its records, their atomic JSON file, [`plot_training`] and
//! [`plot_activity`].
//!
//! Invariants:
//! - accuracies and spike rates are fractions in `[0, 1]`;
//! - a report file is replaced atomically (written to a temporary file in the same folder,
//!   then renamed), so a reader never sees a half-written report;
//! - non-finite numbers (JSON has none) are written as `null` and read back as NaN;
//! - keys a report does not know are kept in [`Report::extra`] and written back;
//! - plots use plotters' SVG backend with its built-in text layout: no system fonts needed.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use plotters::prelude::*;
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

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot {path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `[lo, hi]` of the finite values, widened so that it is never empty.
fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

/// The finite `(x, y)` points of a series.
fn finite_points<'a>(
    epochs: &'a [EpochRecord],
    y: impl Fn(&EpochRecord) -> f64 + 'a,
) -> impl Iterator<Item = (f64, f64)> + 'a {
    epochs
        .iter()
        .map(move |e| (e.epoch as f64, y(e)))
        .filter(|(_, y)| y.is_finite())
}

/// Which accuracy of an epoch a series shows.
type Accuracy = fn(&EpochRecord) -> f64;

/// Plots loss (left) and train/test accuracy (right) per epoch into an SVG file.
/// Non-finite values are left out; no epochs give empty axes.
pub fn plot_training(epochs: &[EpochRecord], path: &Path) -> Result<(), PlotError> {
    let err = plot_err(path);
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (left, right) = root.split_horizontally(480);
    let (x_lo, x_hi) = finite_range(epochs.iter().map(|e| e.epoch as f64));
    let (x_lo, x_hi) = (x_lo.min(0.0), x_hi.max(1.0));

    let (l_lo, l_hi) = finite_range(epochs.iter().map(|e| e.loss));
    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x_lo..x_hi, l_lo..l_hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()
        .map_err(&err)?;
    let loss: Vec<_> = finite_points(epochs, |e| e.loss).collect();
    chart
        .draw_series(LineSeries::new(loss.iter().copied(), &RED))
        .map_err(&err)?
        .label("loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart
        .draw_series(loss.iter().map(|&p| Circle::new(p, 3, RED.filled())))
        .map_err(&err)?;

    let mut chart = ChartBuilder::on(&right)
        .caption("accuracy", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x_lo..x_hi, 0.0..1.0)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
        .draw()
        .map_err(&err)?;
    let series: [(&str, RGBColor, Accuracy); 2] = [
        ("train", BLUE, |e| e.train_accuracy),
        ("test", GREEN, |e| e.test_accuracy),
    ];
    for (name, color, y) in series {
        let points: Vec<_> = finite_points(epochs, move |e| y(e).clamp(0.0, 1.0)).collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &color))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)
}

/// Plots the spike rate of every layer application as a bar, in the order of the records,
/// labelled `layer@step` and coloured by unroll step, into an SVG file.
pub fn plot_activity(activity: &[ActivityRecord], path: &Path) -> Result<(), PlotError> {
    let err = plot_err(path);
    let width = (120 + 40 * activity.len()).clamp(480, 4000) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let y_hi = activity
        .iter()
        .map(|a| a.spike_rate)
        .filter(|r| r.is_finite())
        .fold(0.0f64, f64::max)
        .clamp(0.05, 1.0)
        * 1.1;
    let n = activity.len().max(1);
    let labels: Vec<String> = activity
        .iter()
        .map(|a| {
            // `Conv2@1`, `Conv2@2` for a layer applied more than once; the bare name otherwise.
            let repeated = activity
                .iter()
                .any(|b| b.layer == a.layer && b.step != a.step);
            if repeated {
                format!("{}@{}", a.layer, a.step)
            } else {
                a.layer.clone()
            }
        })
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("spike rate per layer and unroll step", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(60)
        .y_label_area_size(55)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..y_hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("layer")
        .y_desc("spikes per neuron per step")
        .draw()
        .map_err(&err)?;
    chart
        .draw_series(activity.iter().enumerate().map(|(i, a)| {
            let rate = if a.spike_rate.is_finite() {
                a.spike_rate.clamp(0.0, y_hi)
            } else {
                0.0
            };
            let color = Palette99::pick(a.step.saturating_sub(1) as usize).filled();
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), rate),
                ],
                color,
            );
            bar.set_margin(0, 0, 4, 4);
            bar
        }))
        .map_err(&err)?;
    root.present().map_err(&err)
}
