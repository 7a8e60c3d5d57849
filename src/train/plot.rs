//! The plots of a run (SVG): training curves, spiking activity, conversion accuracy and
//! energy efficiency against T, and spike rasters.
//!
//! Owns: [`plot_training`], [`plot_activity`], [`plot_accuracy_vs_t`], [`plot_raster`] and
//! [`PlotError`]. Callers pass plain records; nothing here runs a model.
//!
//! Invariants:
//! - non-finite values are left out of a plot, never drawn at 0 and never an error;
//! - no input is an error except an unwritable file: empty input gives empty axes;
//! - a y-axis range is never empty and its tick labels carry enough decimals to differ
//!   (a 1-epoch run gets a padded range, not five ticks that all read `0.50`);
//! - plots use plotters' SVG backend with its built-in text layout: no system fonts needed;
//! - markers are circles, one per plotted point (rasters: one per spike drawn), and every
//!   series has a legend entry, so a test can count what was drawn.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::records::BatchRecord;
use super::report::{ActivityRecord, EpochRecord};

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

/// `[lo, hi]` of the finite values, padded by 5 % of the span on each side, and by 5 % of
/// the magnitude (at least 0.05) when all values are equal, so that it is never empty and
/// its ticks differ. No finite value gives `[0, 1]`.
pub(crate) fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 1e-9 * hi.abs().max(lo.abs()).max(1.0) {
        span * 0.05
    } else {
        (0.05 * hi.abs()).max(0.05)
    };
    (lo - pad, hi + pad)
}

/// Decimals needed for tick labels of a range `[lo, hi]` with about `ticks` labels to read
/// differently: one more than the leading digit of the tick step.
fn decimals_for(lo: f64, hi: f64, ticks: usize) -> usize {
    let step = (hi - lo) / ticks.max(1) as f64;
    if !(step.is_finite() && step > 0.0) {
        return 2;
    }
    (1.0 - step.log10().floor()).clamp(0.0, 12.0) as usize
}

/// Number of y ticks on the line charts.
const Y_TICKS: usize = 6;

/// A legend line sample for a series of `color`.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
}

/// One line series with a circle per point.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Circles at the points (off for dense per-batch curves).
    markers: bool,
}

/// Draws `series` on a chart with `caption`, axis descriptions and an x range; the y range
/// is `y_range` or, if `None`, the padded range of the finite y values. Legends in the
/// `legend` corner.
#[allow(clippy::too_many_arguments)]
fn line_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    (x_lo, x_hi): (f64, f64),
    y_range: Option<(f64, f64)>,
    series: &[Series],
    legend: SeriesLabelPosition,
    path: &Path,
) -> Result<(), PlotError> {
    let err = plot_err(path);
    let (y_lo, y_hi) = y_range
        .unwrap_or_else(|| finite_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))));
    let decimals = decimals_for(y_lo, y_hi, Y_TICKS);
    let y_fmt = move |v: &f64| format!("{v:.decimals$}");
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .y_labels(Y_TICKS)
        .y_label_formatter(&y_fmt)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(&err)?;
    for s in series {
        let color = s.color;
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color))
            .map_err(&err)?
            .label(s.name.as_str())
            .legend(legend_line(color));
        if s.markers {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(&err)?;
        }
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(legend)
            .draw()
            .map_err(&err)?;
    }
    Ok(())
}

/// The x position of each batch on an epoch axis: batch `b` of `n` batches in epoch `e`
/// sits at `e - 1 + b / n`, so the last batch of epoch `e` meets that epoch's point at `e`.
/// `n` is the largest batch number recorded for the epoch.
fn batch_x(batches: &[BatchRecord]) -> Vec<f64> {
    batches
        .iter()
        .map(|b| {
            let n = batches
                .iter()
                .filter(|o| o.epoch == b.epoch)
                .map(|o| o.batch)
                .max()
                .unwrap_or(1)
                .max(1);
            b.epoch.saturating_sub(1) as f64 + b.batch as f64 / n as f64
        })
        .collect()
}

/// The legend names of [`plot_training`]'s series, in drawing order: the loss panel then the
/// accuracy panel. Series without a finite point are still listed (drawn empty).
pub const TRAINING_SERIES: [&str; 6] = [
    "train loss (per batch)",
    "train loss (epoch mean)",
    "test loss",
    "train accuracy (per batch)",
    "train accuracy (epoch)",
    "test accuracy",
];

/// Plots a run's training curves into an SVG file (1280×440 px): on the left, loss against
/// epoch — the per-batch training loss from `batches` as a thin line (batch `b` of `n` at
/// `epoch - 1 + b/n`), the per-epoch mean training loss and, where `test_losses[i]` is
/// finite, the test loss of `epochs[i]` as lines with a circle per epoch; on the right,
/// accuracy (fraction in [0, 1]) likewise per batch and per epoch (train and test). Legends
/// name each series ([`TRAINING_SERIES`]).
///
/// `test_losses` is parallel to `epochs` (missing entries are "not measured"); the report's
/// [`EpochRecord`] has no test-loss field yet, so today's callers pass `&[]`.
/// Errors: the file cannot be written.
pub fn plot_training(
    epochs: &[EpochRecord],
    test_losses: &[f64],
    batches: &[BatchRecord],
    path: &Path,
) -> Result<(), PlotError> {
    let err = plot_err(path);
    let root = SVGBackend::new(path, (1280, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (left, right) = root.split_horizontally(640);
    let xs = batch_x(batches);
    let (x_lo, x_hi) = (
        0.0,
        epochs
            .iter()
            .map(|e| e.epoch as f64)
            .chain(xs.iter().copied())
            .fold(1.0f64, f64::max),
    );
    let epoch_points = |y: &dyn Fn(usize, &EpochRecord) -> f64| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.epoch as f64, y(i, e)))
            .collect()
    };
    let batch_points = |y: &dyn Fn(&BatchRecord) -> f64| -> Vec<(f64, f64)> {
        xs.iter().zip(batches).map(|(&x, b)| (x, y(b))).collect()
    };
    let light = |c: RGBColor| RGBColor(c.0 / 2 + 128, c.1 / 2 + 128, c.2 / 2 + 128);
    let loss = [
        Series {
            name: TRAINING_SERIES[0].into(),
            color: light(RED),
            points: batch_points(&|b| b.loss),
            markers: false,
        },
        Series {
            name: TRAINING_SERIES[1].into(),
            color: RED,
            points: epoch_points(&|_, e| e.loss),
            markers: true,
        },
        Series {
            name: TRAINING_SERIES[2].into(),
            color: RGBColor(230, 120, 0),
            points: epoch_points(&|i, _| test_losses.get(i).copied().unwrap_or(f64::NAN)),
            markers: true,
        },
    ];
    line_chart(
        &left,
        "loss",
        "epoch",
        "loss",
        (x_lo, x_hi),
        None,
        &loss,
        SeriesLabelPosition::UpperRight,
        path,
    )?;
    let accuracy = [
        Series {
            name: TRAINING_SERIES[3].into(),
            color: light(BLUE),
            points: batch_points(&|b| b.accuracy.clamp(0.0, 1.0)),
            markers: false,
        },
        Series {
            name: TRAINING_SERIES[4].into(),
            color: BLUE,
            points: epoch_points(&|_, e| e.train_accuracy.clamp(0.0, 1.0)),
            markers: true,
        },
        Series {
            name: TRAINING_SERIES[5].into(),
            color: RGBColor(0, 150, 0),
            points: epoch_points(&|_, e| e.test_accuracy.clamp(0.0, 1.0)),
            markers: true,
        },
    ];
    line_chart(
        &right,
        "accuracy",
        "epoch",
        "accuracy",
        (x_lo, x_hi),
        Some((0.0, 1.0)),
        &accuracy,
        SeriesLabelPosition::LowerRight,
        path,
    )?;
    root.present().map_err(&err)
}

/// [`plot_training`] with per-epoch records only (no per-batch records, no test loss): the
/// form the report's `plot_training` had before per-batch records existed.
pub fn plot_epochs(epochs: &[EpochRecord], path: &Path) -> Result<(), PlotError> {
    plot_training(epochs, &[], &[], path)
}

/// Plots the spike rate (spikes per neuron per time step, in [0, 1]) of every layer
/// application as a bar, in the order of the records, labelled `layer@step` for layers
/// applied more than once (BackRes `Conv2@1`, `Conv2@2`) and the bare name otherwise,
/// coloured by unroll step, into an SVG file. When some layer is unrolled, a legend names
/// the colours `unroll step 1`, `unroll step 2`, ... Errors: the file cannot be written.
pub fn plot_activity(activity: &[ActivityRecord], path: &Path) -> Result<(), PlotError> {
    let err = plot_err(path);
    let width = (120 + 40 * activity.len()).clamp(480, 4000) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let y_hi = activity
        .iter()
        .map(|a| a.spike_rate)
        .filter(|r| r.is_finite())
        .fold(0.0f64, f64::max)
        .clamp(0.05, 1.0)
        * 1.25;
    let n = activity.len().max(1);
    let labels: Vec<String> = activity
        .iter()
        .map(|a| {
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
        .y_label_area_size(60)
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
        .x_desc("layer application")
        .y_desc("spikes per neuron per step")
        .draw()
        .map_err(&err)?;
    let mut steps: Vec<u32> = activity.iter().map(|a| a.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let color_of = |step: u32| Palette99::pick(step.saturating_sub(1) as usize);
    for &step in &steps {
        let bars = activity
            .iter()
            .enumerate()
            .filter(|(_, a)| a.step == step)
            .map(|(i, a)| {
                let rate = if a.spike_rate.is_finite() {
                    a.spike_rate.clamp(0.0, y_hi)
                } else {
                    0.0
                };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), rate),
                    ],
                    color_of(step).filled(),
                );
                bar.set_margin(0, 0, 4, 4);
                bar
            });
        let drawn = chart.draw_series(bars).map_err(&err)?;
        if steps.len() > 1 {
            let color = color_of(step);
            drawn
                .label(format!("unroll step {step}"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
    }
    if steps.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)
}

/// One simulation length of a converted network: its accuracy and energy efficiency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TPoint {
    /// Time steps T of the simulation.
    pub timesteps: usize,
    /// Test accuracy at this T, a fraction in [0, 1].
    pub accuracy: f64,
    /// Energy efficiency `E_ANN / E_SNN` at this T (the paper's EE, eq. 14), unitless.
    pub ee: f64,
}

/// Plots a conversion sweep into an SVG file (1280×440 px): test accuracy against T on the
/// left (with `ann_accuracy`, the source ANN's accuracy, as a dashed reference line when
/// given and finite) and energy efficiency EE = E_ANN / E_SNN against T on the right, each a
/// line with a circle per point, in order of T. Errors: the file cannot be written.
pub fn plot_accuracy_vs_t(
    points: &[TPoint],
    ann_accuracy: Option<f64>,
    path: &Path,
) -> Result<(), PlotError> {
    let err = plot_err(path);
    let root = SVGBackend::new(path, (1280, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (left, right) = root.split_horizontally(640);
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.timesteps);
    let t_hi = sorted.last().map_or(1, |p| p.timesteps).max(1) as f64;
    let x = (0.0, t_hi * 1.05);
    let accuracy = Series {
        name: "SNN test accuracy".into(),
        color: BLUE,
        points: sorted
            .iter()
            .map(|p| (p.timesteps as f64, p.accuracy.clamp(0.0, 1.0)))
            .collect(),
        markers: true,
    };
    let mut acc_series = vec![accuracy];
    if let Some(a) = ann_accuracy.filter(|a| a.is_finite()) {
        acc_series.push(Series {
            name: "ANN test accuracy".into(),
            color: RGBColor(120, 120, 120),
            points: vec![(0.0, a.clamp(0.0, 1.0)), (x.1, a.clamp(0.0, 1.0))],
            markers: false,
        });
    }
    line_chart(
        &left,
        "accuracy vs T",
        "time steps T",
        "test accuracy",
        x,
        Some((0.0, 1.0)),
        &acc_series,
        SeriesLabelPosition::LowerRight,
        path,
    )?;
    let ee = Series {
        name: "EE = E_ANN / E_SNN".into(),
        color: RGBColor(200, 0, 150),
        points: sorted.iter().map(|p| (p.timesteps as f64, p.ee)).collect(),
        markers: true,
    };
    let (lo, hi) = finite_range(ee.points.iter().map(|p| p.1));
    line_chart(
        &right,
        "energy efficiency vs T",
        "time steps T",
        "EE (x)",
        x,
        Some((lo.min(0.0), hi)),
        &[ee],
        SeriesLabelPosition::UpperRight,
        path,
    )?;
    root.present().map_err(&err)
}

/// A tick label for an integer axis (steps, neuron rows): the integer, or nothing for a
/// tick between two integers (so that no two labels read the same).
fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{:.0}", v.round() + 0.0)
    } else {
        String::new()
    }
}

/// The spikes of one layer application for one input: `spikes[step][neuron]` (flattened
/// neurons, e.g. C×H×W), every step the same length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpikeTrain {
    /// The layer's name (`Conv2@2` for the second application of an unrolled layer).
    pub layer: String,
    /// `spikes[t][i]`: whether neuron `i` spiked at time step `t` (0-based).
    pub spikes: Vec<Vec<bool>>,
}

/// `k` neuron indices out of `n`, evenly spaced (`i * n / k`), all of them when `n <= k`.
pub fn sample_neurons(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

/// Plots a spike raster for one input into an SVG file: time step on x, and on y one band
/// per layer (first layer at the bottom) of at most `max_neurons` neurons sampled evenly
/// ([`sample_neurons`]); a dot (a circle, the only circles drawn) per spike of a sampled
/// neuron at its 1-based time step t (`spikes[t - 1]`), coloured by layer, with a legend
/// `layer (k of n neurons)`. A step shorter than the layer's neuron count is read as "no
/// spike" for the missing neurons. `title` names the
/// input (e.g. `test image 3, label 7`). Errors: the file cannot be written.
pub fn plot_raster(
    trains: &[SpikeTrain],
    max_neurons: usize,
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    plot_rasters(
        &[(format!("spike raster: {title}"), trains.to_vec())],
        max_neurons,
        path,
    )
}

/// Plots the rasters of several inputs into one SVG file, one panel per input (`(title,
/// trains)`, as [`plot_raster`] draws one), side by side in rows of at most two; the caption
/// states the sampling (`at most K neurons per layer, evenly spaced`). `train::raster`
/// records the trains with an observer over a few test images and calls this for
/// `raster.svg`. No input gives an empty figure with its caption. Errors: the file cannot
/// be written.
pub fn plot_rasters(
    panels: &[(String, Vec<SpikeTrain>)],
    max_neurons: usize,
    path: &Path,
) -> Result<(), PlotError> {
    let err = plot_err(path);
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (560 * cols as u32, 420 * rows as u32 + 30);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root
        .titled(
            &format!(
                "spike rasters: at most {max_neurons} neurons per layer, evenly spaced (legend: drawn of total)"
            ),
            ("sans-serif", 16),
        )
        .map_err(&err)?;
    let areas = root.split_evenly((rows, cols));
    for ((title, trains), area) in panels.iter().zip(&areas) {
        draw_raster(area, trains, max_neurons, title, path)?;
    }
    root.present().map_err(&err)
}

fn draw_raster(
    area: &DrawingArea<SVGBackend, Shift>,
    trains: &[SpikeTrain],
    max_neurons: usize,
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    let err = plot_err(path);
    let steps = trains
        .iter()
        .map(|t| t.spikes.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let sampled: Vec<(usize, Vec<usize>)> = trains
        .iter()
        .map(|t| {
            let n = t.spikes.iter().map(Vec::len).max().unwrap_or(0);
            (n, sample_neurons(n, max_neurons))
        })
        .collect();
    let rows: usize = sampled.iter().map(|(_, s)| s.len()).sum::<usize>().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(
            0.5..(steps as f64 + 0.5),
            -0.5..(rows as f64 + rows as f64 * 0.25),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("time step t")
        .y_desc("neuron (sampled, by layer)")
        .x_label_formatter(&integer_label)
        .y_label_formatter(&integer_label)
        .draw()
        .map_err(&err)?;
    let mut base = 0usize;
    for (li, (train, (n, sample))) in trains.iter().zip(&sampled).enumerate() {
        let color = Palette99::pick(li);
        let dots: Vec<(f64, f64)> = train
            .spikes
            .iter()
            .enumerate()
            .flat_map(|(t, row)| {
                sample.iter().enumerate().filter_map(move |(r, &i)| {
                    row.get(i)
                        .copied()
                        .unwrap_or(false)
                        .then_some((t as f64 + 1.0, (base + r) as f64))
                })
            })
            .collect();
        chart
            .draw_series(dots.into_iter().map(|p| Circle::new(p, 2, color.filled())))
            .map_err(&err)?
            .label(format!(
                "{} ({} of {} neurons)",
                train.layer,
                sample.len(),
                n
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 8, y + 4)], color.filled()));
        base += sample.len();
        if li + 1 < trains.len() {
            let y = base as f64 - 0.5;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.5, y), (steps as f64 + 0.5, y)],
                    BLACK.mix(0.3),
                )))
                .map_err(&err)?;
        }
    }
    if !trains.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(&err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_range_pads_a_single_value_visibly() {
        let (lo, hi) = finite_range([0.5].into_iter());
        assert!((lo - 0.45).abs() < 1e-12 && (hi - 0.55).abs() < 1e-12);
        let (lo, hi) = finite_range([100.0].into_iter());
        assert!((lo - 95.0).abs() < 1e-12 && (hi - 105.0).abs() < 1e-12);
        let (lo, hi) = finite_range([0.0, 0.0].into_iter());
        assert!((lo + 0.05).abs() < 1e-12 && (hi - 0.05).abs() < 1e-12);
        let (lo, hi) = finite_range([1.0, 3.0, f64::NAN].into_iter());
        assert!((lo - 0.9).abs() < 1e-12 && (hi - 3.1).abs() < 1e-12);
        assert_eq!(finite_range([f64::NAN].into_iter()), (0.0, 1.0));
    }

    #[test]
    fn decimals_follow_tick_step() {
        // step 0.05/6 ≈ 0.0083 → leading digit at 1e-3 → 4 decimals
        assert_eq!(decimals_for(0.475, 0.525, 6), 4);
        // step 1/6 ≈ 0.167 → 2 decimals
        assert_eq!(decimals_for(0.0, 1.0, 6), 2);
        // step 100/6 ≈ 16.7 → 0 decimals
        assert_eq!(decimals_for(0.0, 100.0, 6), 0);
        assert_eq!(decimals_for(1.0, 1.0, 6), 2);
    }

    #[test]
    fn batch_positions_end_at_their_epoch() {
        let b = |epoch, batch| BatchRecord {
            epoch,
            batch,
            ..BatchRecord::default()
        };
        let xs = batch_x(&[b(1, 1), b(1, 2), b(1, 3), b(1, 4), b(2, 1), b(2, 2)]);
        assert_eq!(xs, [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn integer_labels_only_at_integers() {
        assert_eq!(integer_label(&5.0), "5");
        assert_eq!(integer_label(&-0.0), "0");
        assert_eq!(integer_label(&0.5), "");
        assert_eq!(integer_label(&2.9999999), "3");
    }

    #[test]
    fn sampling_is_even_and_bounded() {
        assert_eq!(sample_neurons(10, 4), [0, 2, 5, 7]);
        assert_eq!(sample_neurons(3, 4), [0, 1, 2]);
        assert!(sample_neurons(0, 4).is_empty());
        assert!(sample_neurons(5, 0).is_empty());
    }
}
