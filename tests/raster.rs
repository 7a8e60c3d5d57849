//! The spike raster (issue 13.5) and live epoch lines (issue 13.2 of the review): the
//! raster observer records exactly the hand-computed spike times of a tiny IF network, the
//! SVG draws one mark per recorded spike, and a run's epoch line reaches its sink before the
//! next epoch trains.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{Device, Tensor};
use snnc::backend::candle::model::Model;
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::backend::candle::step::Simulator;
use snnc::data::{Dataset, Split};
use snnc::ir::{Activation, Encoding, Network, Reset, Shape};
use snnc::train::driver::{self, TrainConfig};
use snnc::train::plot::{plot_rasters, SpikeTrain};
use snnc::train::progress;
use snnc::train::raster::{record_steps, RasterRecorder};
use snnc::train::report::Report;

type R = Result<(), Box<dyn std::error::Error>>;

/// Input 1×1×2 (direct: the pixels are the current every step) → FC1(2,3) IF, θ = 1 →
/// FC2(3,2) (no activation, the output).
fn tiny() -> Network {
    let b = NetBuilder::new("tiny", Shape::new(1, 1, 2), 8).encoding(Encoding::Direct);
    let lif = b.lif();
    b.fc("FC1", 2, 3, lif)
        .fc("FC2", 3, 2, Activation::None)
        .build()
}

/// FC1's weights: currents `0.5·x0 + 0.5·x1`, `0.25·x0`, `−x0`.
fn tiny_sim() -> Result<Simulator, Box<dyn std::error::Error>> {
    let net = tiny();
    let dev = Device::Cpu;
    let w1 = Tensor::from_vec(vec![0.5f32, 0.5, 0.25, 0.0, -1.0, 0.0], (3, 2), &dev)?;
    let w2 = Tensor::ones((2, 3), candle_core::DType::F32, &dev)?;
    let slots = net.thresholds.len();
    assert_eq!(slots, 1, "one spiking layer, one slot");
    let mut sim = Simulator::from_parts(
        net,
        vec![w1, w2],
        vec![1.0; slots],
        Reset::Subtract,
        Default::default(),
        &dev,
    )?;
    // The hand-computed times below are IF's (leak 1), as conversion runs it.
    sim.set_if_neurons(true);
    Ok(sim)
}

/// The 1-based steps at which `neuron` of `train` spiked.
fn times(train: &SpikeTrain, neuron: usize) -> Vec<usize> {
    train
        .spikes
        .iter()
        .enumerate()
        .filter(|(_, row)| row[neuron])
        .map(|(t, _)| t + 1)
        .collect()
}

#[test]
fn recorder_sees_the_hand_computed_spike_times() -> R {
    let sim = tiny_sim()?;
    // Image 1: x = (1, 0.5) → currents 0.75, 0.25, −1; image 2: x = (0, 1) → 0.5, 0, 0.
    let x = Tensor::from_vec(vec![1.0f32, 0.5, 0.0, 1.0], (2, 1, 1, 2), &Device::Cpu)?;
    let trains = record_steps(&sim, &x, 8, 1)?;
    assert_eq!(trains.len(), 2);
    for t in &trains {
        // Direct input: no input band; one spiking layer, 8 steps of 3 neurons.
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].layer, "FC1");
        assert_eq!(t[0].spikes.len(), 8);
        assert!(t[0].spikes.iter().all(|r| r.len() == 3));
    }
    // IF with subtraction, θ = 1 (exact in binary):
    // I = 0.75: V = .75, 1.5↑.5, 1.25↑.25, 1↑0, .75, 1.5↑.5, 1.25↑.25, 1↑0.
    assert_eq!(times(&trains[0][0], 0), [2, 3, 4, 6, 7, 8]);
    // I = 0.25: a spike every 4th step.
    assert_eq!(times(&trains[0][0], 1), [4, 8]);
    // I = −1: never.
    assert!(times(&trains[0][0], 2).is_empty());
    // I = 0.5: every 2nd step; I = 0: never.
    assert_eq!(times(&trains[1][0], 0), [2, 4, 6, 8]);
    assert!(times(&trains[1][0], 1).is_empty());
    assert!(times(&trains[1][0], 2).is_empty());
    Ok(())
}

#[test]
fn recorder_splits_time_major_rows_and_names_unroll_steps() -> R {
    use snnc::backend::candle::observe::{Application, Observer};
    use snnc::ir::SlotId;
    // A batched tensor [T·B, 2] with T = 2, B = 2: row t·B + b.
    let s = Tensor::from_vec(
        vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0],
        (4, 2),
        &Device::Cpu,
    )?;
    let mut rec = RasterRecorder::new(2);
    let app = Application {
        node: petgraph::graph::NodeIndex::new(3),
        layer: "Conv2",
        step: 2,
        slot: SlotId(1),
        time: None,
    };
    rec.spikes(&app, &s)?;
    let t = rec.trains();
    assert_eq!(t[0][0].layer, "Conv2@2");
    assert_eq!(t[0][0].spikes, [vec![true, false], vec![true, true]]);
    assert_eq!(t[1][0].spikes, [vec![false, false], vec![false, true]]);
    // Rows that are not a whole number of batches are an error, not a panic.
    let mut three = RasterRecorder::new(3);
    assert!(three.spikes(&app, &s).is_err());
    Ok(())
}

#[test]
fn raster_svg_draws_one_mark_per_spike() -> R {
    let sim = tiny_sim()?;
    let x = Tensor::from_vec(vec![1.0f32, 0.5, 0.0, 1.0], (2, 1, 1, 2), &Device::Cpu)?;
    let trains = record_steps(&sim, &x, 8, 1)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raster.svg");
    let panels: Vec<(String, Vec<SpikeTrain>)> = trains
        .into_iter()
        .enumerate()
        .map(|(b, t)| (format!("test image {}", b + 1), t))
        .collect();
    plot_rasters(&panels, 64, &path)?;
    let svg = std::fs::read_to_string(&path)?;
    // 6 + 2 spikes of image 1, 4 of image 2, all 3 neurons drawn.
    assert_eq!(svg.matches("<circle").count(), 12, "{svg}");
    assert!(svg.contains("FC1 (3 of 3 neurons)"), "{svg}");
    assert!(svg.contains("at most 64 neurons per layer"), "{svg}");
    // Sampled down to 2 of 3 neurons (0 and 1): neuron 2 never spiked, still 12 marks.
    plot_rasters(&panels, 2, &path)?;
    let svg = std::fs::read_to_string(&path)?;
    assert_eq!(svg.matches("<circle").count(), 12);
    assert!(svg.contains("FC1 (2 of 3 neurons)"), "{svg}");
    // To 1 neuron (neuron 0): 6 + 4 marks.
    plot_rasters(&panels, 1, &path)?;
    let svg = std::fs::read_to_string(&path)?;
    assert_eq!(svg.matches("<circle").count(), 10);
    Ok(())
}

/// 64 synthetic 1×8×8 images of 4 classes (a bright quadrant).
fn quadrants(n: usize) -> Split {
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = (i % 4) as u8;
        for y in 0..8 {
            for x in 0..8 {
                let q = (y / 4) * 2 + x / 4;
                images.push(if q == k as usize { 0.9 } else { 0.1 });
            }
        }
        labels.push(k);
    }
    Split { images, labels }
}

/// What the sink saw: the report's epoch count, the line, the batch log's epochs.
type Handed = (usize, String, Vec<usize>);

#[test]
fn each_epoch_line_is_handed_over_before_the_next_epoch_trains() -> R {
    let b = NetBuilder::new("tiny", Shape::new(1, 8, 8), 2);
    let lif = b.lif();
    let net = b
        .fc("FC1", 64, 8, lif)
        .fc("FC2", 8, 4, Activation::None)
        .build();
    let data = Dataset {
        name: "quadrants".into(),
        shape: [1, 8, 8],
        classes: 4,
        train: quadrants(64),
        test: quadrants(16),
    };
    let dir = tempfile::tempdir()?;
    let cfg = TrainConfig {
        epochs: 3,
        timesteps: 2,
        batch: 16,
        seed: 3,
        out: Some(dir.path().to_path_buf()),
        ..TrainConfig::default()
    };
    let log = snnc::train::records::path_beside(&dir.path().join("report.json"));
    // For each epoch line: its epoch, the line, and the epochs of the batch records written
    // so far (the batch log is flushed per batch).
    let seen: Rc<RefCell<Vec<Handed>>> = Rc::default();
    let sink = seen.clone();
    let guard = progress::on_epoch(Box::new(move |r: &Report| {
        let batches = snnc::train::records::read_batches(&log).unwrap_or_default();
        sink.borrow_mut().push((
            r.epochs.len(),
            progress::epoch_summary(r).unwrap_or_default(),
            batches.iter().map(|b| b.epoch).collect(),
        ));
    }));
    let mut model = Model::new(&net, &Device::Cpu, 3)?;
    let report = driver::train(&mut model, &data, &cfg)?;
    drop(guard);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 3);
    for (i, (epoch, line, batches)) in seen.iter().enumerate() {
        assert_eq!(*epoch, i + 1);
        assert!(
            line.starts_with(&format!("epoch {:>3}  train loss", i + 1)),
            "{line}"
        );
        assert!(line.contains("images/s training"), "{line}");
        // 64 images / 16 = 4 batches per epoch: all of this epoch's, none of the next.
        assert_eq!(batches.len(), 4 * (i + 1), "{batches:?}");
        assert!(batches.iter().all(|&e| e <= i + 1), "{batches:?}");
        // The line is the record the report keeps for that epoch.
        let e = &report.epochs[i];
        assert!(line.contains(&format!("test acc {:6.2}%", 100.0 * e.test_accuracy)));
    }
    // With the guard dropped, a run hands nothing over.
    let mut model = Model::new(&net, &Device::Cpu, 3)?;
    let cfg = TrainConfig {
        epochs: 1,
        out: None,
        ..cfg
    };
    driver::train(&mut model, &data, &cfg)?;
    assert_eq!(seen.len(), 3);
    Ok(())
}
