//! The plots (`snnc::train::plot`) and per-batch records (`snnc::train::records`): the SVG
//! files are read back and what was drawn is counted (markers, line points, legend texts,
//! tick labels), and the JSON Lines records round-trip into the training plot.

use std::collections::BTreeMap;
use std::path::Path;

use snnc::train::plot::{
    plot_accuracy_vs_t, plot_activity, plot_raster, plot_training, SpikeTrain, TPoint,
    TRAINING_SERIES,
};
use snnc::train::records::{read_batches, BatchLog, BatchRecord};
use snnc::train::report::{ActivityRecord, EpochRecord};

/// One `<text>` element: its `x` attribute, anchor and content.
struct Text {
    x: String,
    anchor: String,
    content: String,
}

fn attr(tag: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    tag.split(&key)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

fn texts(svg: &str) -> Vec<Text> {
    svg.split("<text")
        .skip(1)
        .map(|chunk| {
            let (tag, rest) = chunk.split_once('>').unwrap();
            let content = rest.split("</text>").next().unwrap().trim().to_string();
            Text {
                x: attr(tag, "x"),
                anchor: attr(tag, "text-anchor"),
                content,
            }
        })
        .collect()
}

fn count(svg: &str, tag: &str) -> usize {
    svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}/")).count()
}

/// The number of points of every `<polyline>`.
fn polyline_lengths(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|chunk| {
            attr(chunk.split('>').next().unwrap(), "points")
                .split_whitespace()
                .count()
        })
        .collect()
}

/// The y-axis tick labels of each panel: numeric texts anchored at the end ("right-aligned
/// against the axis"), grouped by their x position.
fn y_tick_groups(svg: &str) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in texts(svg) {
        if t.anchor == "end" && t.content.parse::<f64>().is_ok() {
            groups.entry(t.x).or_default().push(t.content);
        }
    }
    groups.into_values().collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn epoch(e: usize, loss: f64, train: f64, test: f64) -> EpochRecord {
    EpochRecord {
        test_loss: None,
        epoch: e,
        loss,
        train_accuracy: train,
        test_accuracy: test,
        loss_terms: None,
    }
}

fn batch(epoch: usize, batch: usize, loss: f64) -> BatchRecord {
    BatchRecord {
        epoch,
        batch,
        images_seen: 32 * (4 * (epoch - 1) + batch),
        loss,
        accuracy: 0.1 * batch as f64,
        lr: 1e-3,
        ..BatchRecord::default()
    }
}

#[test]
fn training_plot_draws_every_point_and_legend_from_round_tripped_records() {
    let dir = tempfile::tempdir().unwrap();
    // 3 epochs × 4 batches, written and read back through batches.jsonl.
    let jsonl = dir.path().join("batches.jsonl");
    let mut log = BatchLog::create(&jsonl).unwrap();
    let written: Vec<BatchRecord> = (1..=3)
        .flat_map(|e| (1..=4).map(move |b| batch(e, b, 2.0 / (e * b) as f64)))
        .collect();
    for b in &written {
        log.append(b).unwrap();
    }
    let batches = read_batches(&jsonl).unwrap();
    assert_eq!(batches, written);

    let epochs = [
        epoch(1, 1.5, 0.4, 0.35),
        epoch(2, 0.9, 0.6, 0.55),
        epoch(3, 0.7, 0.7, 0.6),
    ];
    let path = dir.path().join("training.svg");
    plot_training(&epochs, &[1.6, 1.0, 0.8], &batches, &path).unwrap();
    let svg = read(&path);
    // A circle per epoch for train loss, test loss, train accuracy, test accuracy.
    assert_eq!(count(&svg, "circle"), 4 * 3);
    let lines = polyline_lengths(&svg);
    // Per-batch loss and accuracy: 12 points each; per-epoch series: 3 points each (4 of
    // them).
    assert_eq!(lines.iter().filter(|&&n| n == 12).count(), 2, "{lines:?}");
    assert_eq!(lines.iter().filter(|&&n| n == 3).count(), 4, "{lines:?}");
    let contents: Vec<String> = texts(&svg).into_iter().map(|t| t.content).collect();
    for name in TRAINING_SERIES {
        assert!(
            contents.iter().any(|c| c == name),
            "legend {name:?} in {contents:?}"
        );
    }
    for label in ["epoch", "loss", "accuracy"] {
        assert!(contents.iter().any(|c| c == label), "axis label {label}");
    }

    // A missing (NaN) test loss is left out: one circle fewer, no error.
    plot_training(&epochs, &[1.6, f64::NAN], &batches, &path).unwrap();
    assert_eq!(count(&read(&path), "circle"), 4 * 3 - 2);
}

#[test]
fn one_epoch_run_has_distinct_y_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training.svg");
    // One epoch, no batches: every loss series has a single value.
    plot_training(&[epoch(1, 0.4321, 0.5, 0.5)], &[0.4321], &[], &path).unwrap();
    let svg = read(&path);
    let groups = y_tick_groups(&svg);
    assert_eq!(groups.len(), 2, "one y-axis per panel: {groups:?}");
    for ticks in &groups {
        assert!(ticks.len() >= 3, "{ticks:?}");
        let mut distinct = ticks.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ticks.len(),
            "repeated tick labels {ticks:?}"
        );
    }
    // The loss axis brackets the single value 0.4321 (padded by max(5 %, 0.05): [0.3821,
    // 0.4821]), with ticks 0.400, 0.420, ..., 0.480.
    let loss_axis: Vec<f64> = groups
        .iter()
        .find(|g| {
            g.iter()
                .any(|t| t.parse::<f64>().unwrap() > 0.41 && t.len() > 4)
        })
        .expect("a loss axis with fine ticks")
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        loss_axis.iter().all(|&v| (0.3821..0.4821).contains(&v)) && loss_axis.len() >= 4,
        "{loss_axis:?} {groups:?}"
    );
    assert!(loss_axis.iter().any(|&v| v < 0.4321) && loss_axis.iter().any(|&v| v > 0.4321));
}

#[test]
fn activity_plot_tells_unroll_steps_apart() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |layer: &str, step, spike_rate| ActivityRecord {
        layer: layer.into(),
        step,
        spike_rate,
    };
    let activity = [
        rec("Conv1", 1, 0.12),
        rec("Conv2", 1, 0.08),
        rec("Conv2", 2, 0.05),
        rec("FC1", 1, 0.2),
    ];
    let path = dir.path().join("activity.svg");
    plot_activity(&activity, &path).unwrap();
    let contents: Vec<String> = texts(&read(&path)).into_iter().map(|t| t.content).collect();
    for label in [
        "Conv1",
        "Conv2@1",
        "Conv2@2",
        "FC1",
        "unroll step 1",
        "unroll step 2",
        "layer application",
        "spikes per neuron per step",
    ] {
        assert!(
            contents.iter().any(|c| c == label),
            "{label:?} in {contents:?}"
        );
    }
    // No unrolled layer: bare names and no step legend.
    plot_activity(&[rec("Conv1", 1, 0.1), rec("FC1", 1, 0.2)], &path).unwrap();
    let svg = read(&path);
    let contents: Vec<String> = texts(&svg).into_iter().map(|t| t.content).collect();
    assert!(
        !contents
            .iter()
            .any(|c| c.starts_with("unroll step") || c.contains('@')),
        "{contents:?}"
    );
}

#[test]
fn accuracy_vs_t_plots_each_t_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accuracy_vs_t.svg");
    let p = |timesteps, accuracy, ee| TPoint {
        timesteps,
        accuracy,
        ee,
    };
    // Out of order on purpose; the lines run in order of T.
    let points = [
        p(32, 0.8, 4.0),
        p(8, 0.5, 12.0),
        p(16, 0.7, 8.0),
        p(64, 0.85, 2.0),
    ];
    plot_accuracy_vs_t(&points, Some(0.9), &path).unwrap();
    let svg = read(&path);
    assert_eq!(count(&svg, "circle"), 2 * 4, "accuracy and EE markers");
    let four: Vec<&str> = svg
        .split("<polyline")
        .skip(1)
        .map(|c| c.split('>').next().unwrap())
        .filter(|tag| attr(tag, "points").split_whitespace().count() == 4)
        .collect();
    assert_eq!(four.len(), 2, "accuracy and EE lines");
    for tag in four {
        let xs: Vec<f64> = attr(tag, "points")
            .split_whitespace()
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "in order of T: {xs:?}");
    }
    let contents: Vec<String> = texts(&svg).into_iter().map(|t| t.content).collect();
    for label in [
        "SNN test accuracy",
        "ANN test accuracy",
        "EE = E_ANN / E_SNN",
        "time steps T",
    ] {
        assert!(
            contents.iter().any(|c| c == label),
            "{label:?} in {contents:?}"
        );
    }
    // Without the ANN reference there is no such legend; empty input is still a plot.
    plot_accuracy_vs_t(&points, None, &path).unwrap();
    assert!(!read(&path).contains("ANN test accuracy"));
    plot_accuracy_vs_t(&[], None, &path).unwrap();
    assert_eq!(count(&read(&path), "circle"), 0);
}

#[test]
fn raster_draws_one_dot_per_spike_of_the_sampled_neurons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raster.svg");
    // Layer A: 10 neurons, 5 steps, neuron i spikes at step t when (i + t) % 3 == 0.
    let a: Vec<Vec<bool>> = (0..5)
        .map(|t| (0..10).map(|i| (i + t) % 3 == 0).collect())
        .collect();
    // Layer B: 3 neurons, all spike at every even step (0, 2, 4).
    let b: Vec<Vec<bool>> = (0..5).map(|t| vec![t % 2 == 0; 3]).collect();
    let trains = [
        SpikeTrain {
            layer: "Conv1".into(),
            spikes: a,
        },
        SpikeTrain {
            layer: "FC1".into(),
            spikes: b,
        },
    ];
    plot_raster(&trains, 4, "test image 0", &path).unwrap();
    let svg = read(&path);
    // Conv1 sampled neurons 0, 2, 5, 7 (even spacing of 4 out of 10):
    //   neuron 0 spikes at t = 0, 3; neuron 2 at t = 1, 4; neuron 5 at t = 1, 4;
    //   neuron 7 at t = 2 → 7 dots. FC1: all 3 neurons × 3 steps → 9 dots.
    assert_eq!(count(&svg, "circle"), 7 + 9);
    let contents: Vec<String> = texts(&svg).into_iter().map(|t| t.content).collect();
    for label in [
        "Conv1 (4 of 10 neurons)",
        "FC1 (3 of 3 neurons)",
        "time step t",
        "spike raster: test image 0",
    ] {
        assert!(
            contents.iter().any(|c| c == label),
            "{label:?} in {contents:?}"
        );
    }
    // All neurons when the cap is large: Conv1 has sum over t of |{i : (i+t)%3==0}|.
    plot_raster(&trains, 100, "all", &path).unwrap();
    // t=0: 0,3,6,9 (4); t=1: 2,5,8 (3); t=2: 1,4,7 (3); t=3: 0,3,6,9 (4); t=4: 2,5,8 (3).
    assert_eq!(count(&read(&path), "circle"), 17 + 9);
    // Ragged and empty input is drawn, not refused.
    let ragged = [SpikeTrain {
        layer: "X".into(),
        spikes: vec![vec![true], vec![], vec![true, true]],
    }];
    plot_raster(&ragged, 4, "ragged", &path).unwrap();
    assert_eq!(count(&read(&path), "circle"), 3);
    plot_raster(&[], 4, "none", &path).unwrap();
    assert_eq!(count(&read(&path), "circle"), 0);
}

#[test]
fn unwritable_paths_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no/such/dir/p.svg");
    assert!(plot_training(&[], &[], &[], &bad).is_err());
    assert!(plot_activity(&[], &bad).is_err());
    assert!(plot_accuracy_vs_t(&[], None, &bad).is_err());
    let err = plot_raster(&[], 4, "x", &bad).unwrap_err();
    assert!(err.to_string().contains("p.svg"), "{err}");
}
