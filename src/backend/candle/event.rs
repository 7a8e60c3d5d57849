//! Event-driven accumulation for conv and FC layers fed by sparse (spike) inputs.
//!
//! The dense path (candle's im2col + matmul) costs the same whatever the input; the event
//! path visits only the non-zero inputs and, for each, adds its weight column (FC) or its
//! kernel slice (conv) into the outputs it reaches, so its cost follows the number of input
//! spikes. [`PathPolicy`] picks one per layer and step from the measured input density.
//!
//! Invariants: weights are copied once, at construction, into the layouts the event path
//! reads (`[X, Y]` for FC, `[C, K, K, O]` for conv); both paths compute the same function
//! (cross-correlation, zero padding, no bias), up to f32 summation order; inputs and outputs
//! are contiguous row-major `[B, X]` / `[B, Y]` and `[B, C, H, W]` / `[B, O, OH, OW]`.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::alloc::par_zeros;
use super::err;

/// Which accumulation path a layer uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PathPolicy {
    /// Always im2col/matmul.
    Dense,
    /// Always event-driven.
    Event,
    /// Event-driven when the input's fraction of non-zero entries is at most `conv` (conv
    /// layers) or `fc` (FC layers).
    Auto { conv: f32, fc: f32 },
}

impl PathPolicy {
    /// The crossovers measured on this project's CPU (`examples/conversion_bench.rs`, see
    /// `docs/performance.md`): below these input densities the event path is faster. Conv:
    /// the event kernel wins up to 0.5–0.7 on the VGG layers (3×3, 32–64 channels) and on
    /// every density for a one-channel first layer; FC (3136→256): up to about 0.15–0.2.
    pub const CONV_CROSSOVER: f32 = 0.6;
    pub const FC_CROSSOVER: f32 = 0.15;

    /// Whether an input of `density` (non-zero fraction) to a conv (`conv`) or FC layer
    /// takes the event path.
    pub fn use_event(self, density: f32, conv: bool) -> bool {
        match self {
            PathPolicy::Dense => false,
            PathPolicy::Event => true,
            PathPolicy::Auto { conv: c, fc } => density <= if conv { c } else { fc },
        }
    }
}

impl std::str::FromStr for PathPolicy {
    type Err = String;

    /// `auto` (the measured crossovers, [`PathPolicy::default`]), `event` or `dense`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PathPolicy::default()),
            "event" => Ok(PathPolicy::Event),
            "dense" => Ok(PathPolicy::Dense),
            other => Err(format!(
                "unknown simulation path `{other}` (expected auto, event or dense)"
            )),
        }
    }
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy::Auto {
            conv: Self::CONV_CROSSOVER,
            fc: Self::FC_CROSSOVER,
        }
    }
}

/// The fraction of non-zero entries of `x` (0 for an empty slice).
pub fn density(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().filter(|&&v| v != 0.0).count() as f32 / x.len() as f32
}

/// A fully connected layer `y = W x`, `W` `[Y, X]`, prepared for event-driven accumulation.
#[derive(Debug, Clone)]
pub struct FcEvent {
    /// `W` transposed, `[X, Y]`: the column of input i is contiguous.
    wt: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl FcEvent {
    /// From weights `[Y, X]`.
    pub fn new(w: &Tensor) -> Result<Self> {
        let (outputs, inputs) = w.dims2()?;
        let wt = w
            .to_device(&Device::Cpu)?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(FcEvent {
            wt,
            inputs,
            outputs,
        })
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `x` `[B, X]` row-major → `[B, Y]`: for every non-zero x[b, i], y[b, :] += x[b, i]·W[:, i].
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        if self.inputs == 0 || x.len() % self.inputs != 0 {
            return Err(err(format!(
                "event FC: input of {} values is not a multiple of {} features",
                x.len(),
                self.inputs
            )));
        }
        let b = x.len() / self.inputs;
        let mut y = par_zeros(b * self.outputs);
        // One image per task: images are independent, so both cores work on a batch.
        y.par_chunks_mut(self.outputs.max(1))
            .zip(x.par_chunks(self.inputs))
            .for_each(|(out, row)| self.forward_row(row, out));
        Ok(y)
    }

    /// One image: `out` (zeroed, `[Y]`) += Σ over non-zero `row[i]` of `row[i]`·W[:, i].
    fn forward_row(&self, row: &[f32], out: &mut [f32]) {
        for (i, &v) in row.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let col = &self.wt[i * self.outputs..(i + 1) * self.outputs];
            if v == 1.0 {
                for (o, &w) in out.iter_mut().zip(col) {
                    *o += w;
                }
            } else {
                for (o, &w) in out.iter_mut().zip(col) {
                    *o += v * w;
                }
            }
        }
    }
}

/// A 2-D convolution (no bias, zero padding) prepared for event-driven accumulation.
#[derive(Debug, Clone)]
pub struct ConvEvent {
    /// Weights as `[C, K, K, O]`: the O outputs one input pixel feeds through (ky, kx) are
    /// contiguous.
    w: Vec<f32>,
    /// Stride 1 only: `[C, K, K, O]` with the kernel columns reversed, so the K·O values
    /// one input pixel adds to K neighbouring outputs of a row (channels-last) are one
    /// contiguous run. Empty for other strides.
    w_rev: Vec<f32>,
    /// Other strides: for each input column, the (kernel column, output column) pairs it
    /// reaches. Empty for stride 1.
    reach: Vec<Vec<(usize, usize)>>,
    c: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    h: usize,
    wd: usize,
    oh: usize,
    ow: usize,
}

impl ConvEvent {
    /// From weights `[O, C, K, K]` applied with `stride` and `pad` to `h × w` inputs.
    pub fn new(w: &Tensor, stride: usize, pad: usize, h: usize, wd: usize) -> Result<Self> {
        let (o, c, k, k2) = w.dims4()?;
        if k != k2 || stride == 0 {
            return Err(err("event conv: square kernels and stride ≥ 1 only"));
        }
        let hp = h + 2 * pad;
        let wp = wd + 2 * pad;
        if hp < k || wp < k {
            return Err(err("event conv: kernel larger than the padded input"));
        }
        let oh = (hp - k) / stride + 1;
        let ow = (wp - k) / stride + 1;
        let w = w
            .to_device(&Device::Cpu)?
            .permute((1, 2, 3, 0))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let w_rev = if stride == 1 {
            let mut r = Vec::with_capacity(w.len());
            for row in w.chunks_exact((k * o).max(1)) {
                for kx in (0..k).rev() {
                    r.extend_from_slice(&row[kx * o..(kx + 1) * o]);
                }
            }
            r
        } else {
            Vec::new()
        };
        let reach = if stride == 1 {
            Vec::new()
        } else {
            (0..wd)
                .map(|xi| {
                    (0..k)
                        .filter_map(|kx| {
                            let num = (xi + pad).checked_sub(kx)?;
                            let ox = num / stride;
                            (num % stride == 0 && ox < ow).then_some((kx, ox))
                        })
                        .collect()
                })
                .collect()
        };
        Ok(ConvEvent {
            w,
            w_rev,
            reach,
            c,
            o,
            k,
            stride,
            pad,
            h,
            wd,
            oh,
            ow,
        })
    }

    /// Output `(O, OH, OW)`.
    pub fn out_dims(&self) -> (usize, usize, usize) {
        (self.o, self.oh, self.ow)
    }

    /// `x` `[B, C, H, W]` row-major → `[B, O, OH, OW]`.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let per = self.c * self.h * self.wd;
        if per == 0 || x.len() % per != 0 {
            return Err(err(format!(
                "event conv: input of {} values is not a multiple of {}×{}×{}",
                x.len(),
                self.c,
                self.h,
                self.wd
            )));
        }
        let b = x.len() / per;
        let hw = self.oh * self.ow;
        let o = self.o;
        let mut y = par_zeros(b * hw * o);
        // One image per task (both cores on a batch); each has its own accumulator.
        y.par_chunks_mut((hw * o).max(1))
            .zip(x.par_chunks(per))
            .for_each(|(dst, img)| self.forward_image(img, dst));
        Ok(y)
    }

    /// One image `[C, H, W]` → `dst` `[O, OH·OW]` (overwritten): the AVX2 build where
    /// the CPU has it, else the portable one; both compute the same sums in the same order.
    fn forward_image(&self, img: &[f32], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
            // `forward_image_avx2`'s target feature.
            unsafe { self.forward_image_avx2(img, dst) };
            return;
        }
        self.forward_image_any(img, dst);
    }

    /// [`Self::forward_image_any`] compiled for AVX2 (8-wide vector adds; the same
    /// additions in the same order, so the same result bit for bit).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_image_avx2(&self, img: &[f32], dst: &mut [f32]) {
        self.forward_image_any(img, dst);
    }

    /// [`Self::forward_image`] for any CPU.
    ///
    /// The non-zero inputs are listed row by row first; then each output row is accumulated
    /// in a channels-last buffer `[OW, O]` small enough to stay in the L1 cache, from the K
    /// input rows it reads (each input row is read by at most K output rows). The work is
    /// proportional to the non-zero inputs: K·K weight vectors of length O added per input
    /// (fewer at the borders), plus one pass over the image to find them.
    #[inline(always)]
    fn forward_image_any(&self, img: &[f32], dst: &mut [f32]) {
        let (o, oh, ow, k) = (self.o, self.oh, self.ow, self.k);
        let hw = oh * ow;
        let rows = self.c * self.h;
        // The non-zeros of input row r (= ci·H + yi) are nz[starts[r]..starts[r + 1]].
        let mut starts = Vec::with_capacity(rows + 1);
        let mut nz: Vec<(usize, f32)> = Vec::new();
        starts.push(0);
        for row in img.chunks_exact(self.wd.max(1)).take(rows) {
            nz.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0.0)
                    .map(|(xi, &v)| (xi, v)),
            );
            starts.push(nz.len());
        }
        let mut acc = vec![0f32; ow * o];
        for oy in 0..oh {
            acc.fill(0.0);
            for ky in 0..k {
                // Input row yi = oy·stride + ky − pad, when inside the image.
                let Some(yi) = (oy * self.stride + ky).checked_sub(self.pad) else {
                    continue;
                };
                if yi >= self.h {
                    continue;
                }
                for ci in 0..self.c {
                    let r = ci * self.h + yi;
                    let (a, b) = (starts[r], starts[r + 1]);
                    if a == b {
                        continue;
                    }
                    // Weights of (ci, ky): [K (kx), O].
                    let wbase = (ci * k + ky) * k * o;
                    if self.stride == 1 {
                        // Input column xi reaches output columns xi + pad − kx: with the
                        // kernel columns reversed (kr = K − 1 − kx) that is the run
                        // first + kr, kr = 0..K, clipped to the output row.
                        let wrev = &self.w_rev[wbase..wbase + k * o];
                        for &(xi, v) in &nz[a..b] {
                            let first = (xi + self.pad) as isize - (k as isize - 1);
                            let lo = (-first).max(0) as usize;
                            let hi = (ow as isize - first).clamp(0, k as isize) as usize;
                            if lo >= hi {
                                continue;
                            }
                            let start = (first + lo as isize) as usize * o;
                            let dv = &mut acc[start..start + (hi - lo) * o];
                            for (d, &w) in dv.iter_mut().zip(&wrev[lo * o..hi * o]) {
                                *d += v * w;
                            }
                        }
                        continue;
                    }
                    let wrow = &self.w[wbase..wbase + k * o];
                    for &(xi, v) in &nz[a..b] {
                        for &(kx, ox) in &self.reach[xi] {
                            let wv = &wrow[kx * o..(kx + 1) * o];
                            let dv = &mut acc[ox * o..(ox + 1) * o];
                            for (d, &w) in dv.iter_mut().zip(wv) {
                                *d += v * w;
                            }
                        }
                    }
                }
            }
            // [OW, O] → dst[oc, oy, ·].
            for (ox, src) in acc.chunks_exact(o.max(1)).enumerate() {
                for (oc, &v) in src.iter().enumerate() {
                    dst[oc * hw + oy * ow + ox] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle::encode::SeededRng;

    /// `n` inputs, each non-zero with probability `p`: 1 (spikes) or uniform in [-0.5, 1.5).
    fn random_input(n: usize, p: f32, spikes: bool, seed: u64) -> Vec<f32> {
        let mut r = SeededRng::new(seed);
        (0..n)
            .map(|_| {
                if r.uniform_open() < p {
                    if spikes {
                        1.0
                    } else {
                        2.0 * r.uniform_open() - 0.5
                    }
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// |got − want| ≤ 1e-5 · max(1, max |want|), element by element.
    fn assert_close(got: &[f32], want: &Tensor, what: &str) {
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * scale,
                "{what}: element {i}: event {g} vs dense {w} (scale {scale})"
            );
        }
    }

    const DENSITIES: [f32; 4] = [0.0, 0.01, 0.5, 1.0];

    /// The event FC equals candle's matmul on batches of spikes and of real values at
    /// input densities 0, 0.01, 0.5 and 1 (relative tolerance 1e-5).
    #[test]
    fn fc_event_matches_candle_matmul() {
        let dev = Device::Cpu;
        let (b, x, y) = (7usize, 300usize, 33usize);
        let w = Tensor::from_vec(random_input(y * x, 1.0, false, 1), (y, x), &dev).unwrap();
        let ev = FcEvent::new(&w).unwrap();
        for (k, &p) in DENSITIES.iter().enumerate() {
            for spikes in [true, false] {
                let xs = random_input(b * x, p, spikes, 10 + k as u64);
                let d = density(&xs);
                assert!((d - p).abs() < 0.05, "density {d} for {p}");
                let xt = Tensor::from_vec(xs.clone(), (b, x), &dev).unwrap();
                let want = xt.matmul(&w.t().unwrap()).unwrap();
                let got = ev.forward(&xs).unwrap();
                assert_close(&got, &want, &format!("fc p={p} spikes={spikes}"));
            }
        }
        assert!(ev.forward(&[0.0; 5]).is_err());
        assert_eq!(ev.forward(&[]).unwrap(), Vec::<f32>::new());
    }

    /// The event conv equals candle's conv2d (strides, paddings, kernel sizes) on batches of
    /// spikes and of real values at input densities 0, 0.01, 0.5 and 1.
    #[test]
    fn conv_event_matches_candle_conv2d() {
        let dev = Device::Cpu;
        let b = 5usize;
        for (case, &(c, o, k, s, pad, h, wd)) in [
            (3usize, 8usize, 3usize, 1usize, 1usize, 12usize, 11usize),
            (4, 6, 3, 2, 1, 13, 13),
            (2, 5, 5, 1, 2, 9, 10),
            (3, 4, 1, 1, 0, 6, 6),
            (2, 9, 3, 1, 0, 7, 8),
        ]
        .iter()
        .enumerate()
        {
            let w = Tensor::from_vec(
                random_input(o * c * k * k, 1.0, false, 100 + case as u64),
                (o, c, k, k),
                &dev,
            )
            .unwrap();
            let ev = ConvEvent::new(&w, s, pad, h, wd).unwrap();
            for (j, &p) in DENSITIES.iter().enumerate() {
                for spikes in [true, false] {
                    let xs = random_input(b * c * h * wd, p, spikes, 200 + j as u64);
                    let xt = Tensor::from_vec(xs.clone(), (b, c, h, wd), &dev).unwrap();
                    let want = xt.conv2d(&w, pad, s, 1, 1).unwrap();
                    let (oo, oh, ow) = ev.out_dims();
                    assert_eq!(want.dims(), &[b, oo, oh, ow]);
                    let got = ev.forward(&xs).unwrap();
                    assert_close(&got, &want, &format!("conv case {case} p={p} {spikes}"));
                }
            }
        }
    }
}
