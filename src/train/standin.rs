//! Minimal stand-ins for pieces other modules own (`data::Dataset` and loaders,
//! `train::optim::{Adam, Sgd}`, `train::report::Report` and its records), written against
//! their documented roles so `agd` can switch to the real ones when they land.
//!
//! Invariants: dataset images are `f32` in [0, 1], `images.len() == len·C·H·W`, labels are
//! below `classes`; optimiser state is named `opt.<param>.m|v` and `opt.step`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::backend::candle::standin::SeededRng;
use crate::ir::Shape;
use rand::Rng;

/// Images and labels in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub shape: Shape,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` examples.
    pub fn truncate(&mut self, n: usize) {
        let per = self.per_image();
        self.labels.truncate(n);
        self.images.truncate(n * per);
    }

    fn per_image(&self) -> usize {
        (self.shape.c * self.shape.h * self.shape.w) as usize
    }

    /// Images `[B, C, H, W]` and labels `[B]` (u32) of the examples `idx`.
    pub fn batch(&self, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor)> {
        let per = self.per_image();
        let mut x = Vec::with_capacity(idx.len() * per);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.images[i * per..(i + 1) * per]);
            y.push(self.labels[i] as u32);
        }
        let s = self.shape;
        let x = Tensor::from_vec(
            x,
            (idx.len(), s.c as usize, s.h as usize, s.w as usize),
            dev,
        )?;
        Ok((x, Tensor::new(y, dev)?))
    }

    /// A synthetic 4-class set of 1×8×8 images: class k lights quadrant k (intensity
    /// 0.6–1.0) over background noise (0–0.3). Learnable in seconds; for tests.
    pub fn synthetic(n: usize, rng: &mut SeededRng) -> Dataset {
        let mut images = Vec::with_capacity(n * 64);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let k = rng.random_range(0..4u8);
            for y in 0..8 {
                for x in 0..8 {
                    let q = (y / 4) * 2 + x / 4;
                    let v = if q == k as usize {
                        0.6 + 0.4 * rng.random::<f32>()
                    } else {
                        0.3 * rng.random::<f32>()
                    };
                    images.push(v);
                }
            }
            labels.push(k);
        }
        Dataset {
            images,
            labels,
            shape: Shape::new(1, 8, 8),
            classes: 4,
        }
    }
}

/// Where Debian's `fashion-mnist` data package installs the set.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

fn read_gz(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut d = flate2::read::GzDecoder::new(f);
    let mut out = Vec::new();
    d.read_to_end(&mut out)?;
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> std::io::Result<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| std::io::Error::other("IDX file too short"))
}

/// Reads an IDX (MNIST-format) image/label pair, gzip-compressed.
pub fn load_idx(images: &Path, labels: &Path) -> std::io::Result<Dataset> {
    let im = read_gz(images)?;
    let lb = read_gz(labels)?;
    if be32(&im, 0)? != 0x0803 || be32(&lb, 0)? != 0x0801 {
        return Err(std::io::Error::other("not an IDX image/label file"));
    }
    let (n, h, w) = (be32(&im, 4)?, be32(&im, 8)?, be32(&im, 12)?);
    let nl = be32(&lb, 4)?;
    let per = h
        .checked_mul(w)
        .ok_or_else(|| std::io::Error::other("IDX image too large"))?;
    let pixels = im
        .get(16..)
        .filter(|p| n == nl && Some(p.len()) == n.checked_mul(per))
        .ok_or_else(|| std::io::Error::other("IDX sizes disagree"))?;
    let labels = lb
        .get(8..8 + n)
        .ok_or_else(|| std::io::Error::other("IDX labels truncated"))?
        .to_vec();
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(1);
    Ok(Dataset {
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels,
        shape: Shape::new(1, h as u64, w as u64),
        classes,
    })
}

/// Fashion-MNIST from `dir` (the `train-*` and `t10k-*` IDX gz files): (train, test).
pub fn load_fashion_mnist(dir: &Path) -> std::io::Result<(Dataset, Dataset)> {
    let train = load_idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )?;
    let test = load_idx(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )?;
    Ok((train, test))
}

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Adam (β = 0.9, 0.999, ε = 1e−8) or SGD with momentum; L2 weight decay added to the
/// gradient.
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    step: u64,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, vars: Vec<(String, Var)>, lr: f64) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Optimizer {
            kind,
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
            step: 0,
            vars,
            m,
            v,
        })
    }

    /// One update; a parameter without a gradient is an error.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let g = grads.get(var.as_tensor()).ok_or_else(|| {
                candle_core::Error::Msg(format!("parameter `{name}` received no gradient"))
            })?;
            let g = if self.weight_decay != 0.0 {
                (g + (var.as_tensor() * self.weight_decay)?)?
            } else {
                g.clone()
            };
            match self.kind {
                OptimizerKind::Adam => {
                    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
                    let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
                    let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                    let mh = (&m / (1.0 - f64::powi(b1, t)))?;
                    let vh = (&v / (1.0 - f64::powi(b2, t)))?;
                    let upd = (mh / (vh.sqrt()? + eps)?)?;
                    var.set(&(var.as_tensor() - (upd * self.lr)?)?)?;
                    self.m[i] = m;
                    self.v[i] = v;
                }
                OptimizerKind::Sgd => {
                    let m = ((&self.m[i] * self.momentum)? + &g)?;
                    var.set(&(var.as_tensor() - (&m * self.lr)?)?)?;
                    self.m[i] = m;
                }
            }
        }
        Ok(())
    }

    /// Moments and step count, named `opt.<param>.m|v` and `opt.step`.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("opt.{name}.m"), self.m[i].clone());
            out.insert(format!("opt.{name}.v"), self.v[i].clone());
        }
        let dev = self
            .m
            .first()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        out.insert("opt.step".into(), Tensor::new(&[self.step as i64], &dev)?);
        Ok(out)
    }

    /// Restores what [`Optimizer::state`] saved (missing entries keep their zeros).
    pub fn load_state(&mut self, map: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (key, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                if let Some(t) = map.get(&format!("opt.{name}.{key}")) {
                    if t.dims() == var.dims() {
                        *slot = t.clone();
                    }
                }
            }
        }
        if let Some(t) = map.get("opt.step") {
            let v = t.flatten_all()?.to_vec1::<i64>()?;
            self.step = v.first().copied().unwrap_or(0).max(0) as u64;
        }
        Ok(())
    }
}

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub lr: f64,
    pub train_images_per_s: f64,
    pub inference_images_per_s: f64,
}

/// Spike rate of one layer application, measured on the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub layer: String,
    pub step: u32,
    pub spike_rate: f64,
}

/// Energy from measured activity (Eq. 10, 11; Table I: MAC 3.2 pJ, AC 0.1 pJ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyRecord {
    pub e_ann_pj: f64,
    pub e_snn_pj: f64,
    pub efficiency: f64,
}

/// What `snnc train` writes to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub network: String,
    pub method: String,
    pub timesteps: usize,
    pub batch: usize,
    pub seed: u64,
    pub epochs: Vec<EpochRecord>,
    pub activity: Vec<ActivityRecord>,
    pub energy: Option<EnergyRecord>,
}

fn plot_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Loss and accuracy per epoch, as an SVG.
pub fn plot_training(report: &Report, path: &Path) -> std::io::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (left, right) = root.split_horizontally(400);
    let n = report.epochs.len().max(1) as f64;
    let max_loss = report
        .epochs
        .iter()
        .flat_map(|e| [e.train_loss, e.test_loss])
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max);
    let mut c = ChartBuilder::on(&left)
        .caption("loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..n, 0f64..max_loss * 1.05)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(plot_err)?;
    let train: Vec<(f64, f64)> = report
        .epochs
        .iter()
        .map(|e| (e.epoch as f64, e.train_loss))
        .collect();
    let test: Vec<(f64, f64)> = report
        .epochs
        .iter()
        .map(|e| (e.epoch as f64, e.test_loss))
        .collect();
    c.draw_series(LineSeries::new(train, &BLUE))
        .map_err(plot_err)?
        .label("train");
    c.draw_series(LineSeries::new(test, &RED))
        .map_err(plot_err)?
        .label("test");
    let mut c = ChartBuilder::on(&right)
        .caption("accuracy", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..n, 0f64..1f64)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(plot_err)?;
    let train: Vec<(f64, f64)> = report
        .epochs
        .iter()
        .map(|e| (e.epoch as f64, e.train_accuracy))
        .collect();
    let test: Vec<(f64, f64)> = report
        .epochs
        .iter()
        .map(|e| (e.epoch as f64, e.test_accuracy))
        .collect();
    c.draw_series(LineSeries::new(train, &BLUE))
        .map_err(plot_err)?;
    c.draw_series(LineSeries::new(test, &RED))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Spike rate per layer application, as an SVG bar chart.
pub fn plot_activity(report: &Report, path: &Path) -> std::io::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let n = report.activity.len().max(1);
    let top = report
        .activity
        .iter()
        .map(|a| a.spike_rate)
        .fold(0.01f64, f64::max);
    let labels: Vec<String> = report
        .activity
        .iter()
        .map(|a| format!("{}@{}", a.layer, a.step))
        .collect();
    let mut c = ChartBuilder::on(&root)
        .caption(
            "spike activity per layer and unroll step",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n).into_segmented(), 0f64..top * 1.1)
        .map_err(plot_err)?;
    c.configure_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("spikes / neuron / step")
        .draw()
        .map_err(plot_err)?;
    c.draw_series(
        Histogram::vertical(&c).style(BLUE.filled()).margin(5).data(
            report
                .activity
                .iter()
                .enumerate()
                .map(|(i, a)| (i, a.spike_rate)),
        ),
    )
    .map_err(plot_err)?;
    root.present().map_err(plot_err)
}
