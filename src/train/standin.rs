//! A minimal stand-in for the data sets `crate::data` owns (`Dataset`, IDX loading of
//! Fashion-MNIST), so `agd` and the CLI can run until the real module lands.
//!
//! Invariants: images are `f32` in [0, 1], `images.len() == len·C·H·W`, labels are below
//! `classes`.

use std::io::Read;
use std::path::Path;

use candle_core::{Device, Result, Tensor};
use rand::Rng;

use crate::backend::candle::encode::SeededRng;
use crate::ir::Shape;

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
            let k = rng.0.random_range(0..4u8);
            for y in 0..8 {
                for x in 0..8 {
                    let q = (y / 4) * 2 + x / 4;
                    let v = if q == k as usize {
                        0.6 + 0.4 * rng.0.random::<f32>()
                    } else {
                        0.3 * rng.0.random::<f32>()
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
