//! Input encoders (image → input over T time steps) and the seeded randomness they use.
//!
//! Owns: [`SeededRng`], the one source of training noise (candle's CPU RNG cannot be
//! seeded), Poisson rate coding, direct coding and dropout masks.
//!
//! Invariants:
//! - every output is laid out `[T, B, ...]`: time first, then the batch shape of the input;
//! - the same seed and the same calls give bit-identical results on every device, since all
//!   noise is drawn on the host from a ChaCha8 stream and only then moved to the device;
//! - pixels are probabilities: values below 0 (and NaN) never spike, values above 1 always do;
//! - per-image noise (issue 11.7): once [`SeededRng::set_images`] names the data-set index of
//!   every image of the batch, Poisson spikes and dropout masks are a function of (the
//!   stream's seed and number, the image index, the step) alone — not of the batch size,
//!   the batch order or how many steps other calls drew. Image `k`'s Poisson draw at step
//!   `t` is word `t·n + j` (pixel `j` of `n`) of the ChaCha8 stream `k` under a key derived
//!   from (seed, stream, purpose); so a run for T steps reads the first T steps of a longer
//!   run's input exactly. Without `set_images` the draws are sequential, as before.

use candle_core::{bail, DType, Device, Result, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A seeded, reproducible random stream (ChaCha8), optionally keyed per image (see the
/// module docs): field 0 is the sequential stream, used for every draw that is not keyed.
#[derive(Debug, Clone)]
pub struct SeededRng(pub ChaCha8Rng, Option<ImageKeys>);

/// The data-set indices of a batch's images and the count of dropout sites drawn so far.
#[derive(Debug, Clone)]
struct ImageKeys {
    indices: Vec<u64>,
    dropout_site: u64,
}

/// Purposes of keyed draws (distinct key derivations).
const PURPOSE_POISSON: u64 = 1;
const PURPOSE_DROPOUT: u64 = 2;

/// SplitMix64 finaliser: a bijective mix of 64 bits.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SeededRng {
    /// The stream for `seed`: equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        SeededRng(ChaCha8Rng::seed_from_u64(seed), None)
    }

    /// Wraps a ChaCha8 stream (sequential draws until [`SeededRng::set_images`]).
    pub fn from_chacha(rng: ChaCha8Rng) -> Self {
        SeededRng(rng, None)
    }

    /// Keys Poisson and dropout noise by image from now on: `indices[b]` is the index in its
    /// data set of image `b` of every following batch `[B, ...]` (B = `indices.len()`, else
    /// the draw is an error). Resets the dropout-site count.
    pub fn set_images(&mut self, indices: impl IntoIterator<Item = usize>) {
        self.1 = Some(ImageKeys {
            indices: indices.into_iter().map(|i| i as u64).collect(),
            dropout_site: 0,
        });
    }

    /// Starts a new forward pass over the same images: dropout sites count from 0 again.
    pub fn begin_pass(&mut self) {
        if let Some(k) = &mut self.1 {
            k.dropout_site = 0;
        }
    }

    /// The per-image generators of a keyed draw of `batch` images for `purpose`, or `None`
    /// when the stream is not keyed.
    fn keyed(&self, purpose: u64, batch: usize) -> Result<Option<Vec<ChaCha8Rng>>> {
        let Some(keys) = &self.1 else {
            return Ok(None);
        };
        if keys.indices.len() != batch {
            bail!(
                "per-image noise: {} image indices for a batch of {batch}",
                keys.indices.len()
            );
        }
        let mut seed = self.0.get_seed();
        let words = [self.0.get_stream(), purpose, 0x736e_6e63_6e6f_6973];
        for (i, w) in words.iter().enumerate() {
            let m = mix64(w ^ mix64(i as u64)).to_le_bytes();
            for (s, b) in seed[i * 8..i * 8 + 8].iter_mut().zip(m) {
                *s ^= b;
            }
        }
        Ok(Some(
            keys.indices
                .iter()
                .map(|&k| {
                    let mut r = ChaCha8Rng::from_seed(seed);
                    r.set_stream(k);
                    r
                })
                .collect(),
        ))
    }

    /// A uniform draw from the open interval (0, 1) (never exactly 0 or 1, so that
    /// `log u` and `log(1 − u)` are finite).
    pub fn uniform_open(&mut self) -> f32 {
        // 23 random bits, centred in their cell: (2k + 1) / 2^24 ∈ [2^-24, 1 − 2^-24],
        // every value exact in f32.
        let k = self.0.next_u32() >> 9;
        (2 * k + 1) as f32 * (1.0 / 16_777_216.0)
    }

    /// `n` uniform draws from (0, 1), see [`SeededRng::uniform_open`].
    pub fn uniform_open_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform_open()).collect()
    }
}

fn check_timesteps(timesteps: usize, what: &str) -> Result<()> {
    if timesteps == 0 {
        bail!("{what} coding needs at least one time step (got timesteps = 0)");
    }
    Ok(())
}

/// `[T, B, ...]` from the shape `[B, ...]` of `images`.
fn time_major_dims(images: &Tensor, timesteps: usize, what: &str) -> Result<Vec<usize>> {
    check_timesteps(timesteps, what)?;
    if images.rank() == 0 {
        bail!("{what} coding needs a batch of images [B, ...], got a scalar");
    }
    let mut dims = Vec::with_capacity(images.rank() + 1);
    dims.push(timesteps);
    dims.extend_from_slice(images.dims());
    Ok(dims)
}

/// The spike threshold of a pixel on the 32-bit scale: a draw `u` spikes iff `u < threshold`,
/// so `P(spike) = threshold / 2^32 = clamp(pixel, 0, 1)` (to within 2^-32).
fn spike_threshold(pixel: f32) -> u64 {
    // `as u64` saturates and maps NaN to 0: NaN and negative pixels never spike.
    (f64::from(pixel.clamp(0.0, 1.0)) * 4_294_967_296.0) as u64
}

/// One Bernoulli draw: a spike (1) iff the 32-bit word is below the pixel's threshold
/// ([`spike_threshold`]). Every Poisson spike of this module, batched or step by step, keyed
/// or sequential, is this one draw of one word per pixel and step.
#[inline]
fn bernoulli(word: u32, threshold: u64) -> f32 {
    if u64::from(word) < threshold {
        1.0
    } else {
        0.0
    }
}

/// Step `step` of one image's keyed Poisson draw: from a copy of the image's stream `g` sought
/// to word `step·P`, one word per pixel in order (`th`: the pixels' [`spike_threshold`]s,
/// `out`: their spikes, both `P` long). Shared by [`poisson`] and [`poisson_step`], so both
/// draw the same spikes.
fn keyed_step(g: &ChaCha8Rng, step: usize, th: &[u64], out: &mut [f32]) {
    let mut g = g.clone();
    g.set_word_pos(step as u128 * th.len() as u128);
    for (s, &th) in out.iter_mut().zip(th) {
        *s = bernoulli(g.next_u32(), th);
    }
}

/// Poisson rate coding: images `[B, ...]` in `[0, 1]` → spikes `[T, B, ...]` (values 0 or 1, in
/// the dtype and on the device of `images`) where every pixel spikes at every step
/// independently with probability equal to its value (a Bernoulli draw per step).
pub fn poisson(images: &Tensor, timesteps: usize, rng: &mut SeededRng) -> Result<Tensor> {
    let dims = time_major_dims(images, timesteps, "Poisson")?;
    let pixels = images
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let thresholds: Vec<u64> = pixels.iter().map(|&p| spike_threshold(p)).collect();
    let n = thresholds.len();
    let total = n
        .checked_mul(timesteps)
        .ok_or_else(|| candle_core::Error::Msg("Poisson coding: output too large".into()))?;
    let mut spikes = vec![0f32; total];
    let batch = images.dims()[0];
    if let Some(gens) = rng.keyed(PURPOSE_POISSON, batch)? {
        // Image b, step t, pixel j: word t·per + j of image b's stream. Each (t, b) block
        // seeks its own copy of the stream, so the blocks are drawn on all cores and the
        // spikes do not depend on the thread count.
        let per = n / batch.max(1);
        if per > 0 {
            spikes
                .par_chunks_mut(per)
                .enumerate()
                .with_min_len(8)
                .for_each(|(i, out)| {
                    let (t, b) = (i / batch, i % batch);
                    keyed_step(&gens[b], t, &thresholds[b * per..(b + 1) * per], out);
                });
        }
        return Tensor::from_vec(spikes, dims, images.device())?.to_dtype(images.dtype());
    }
    for step in spikes.chunks_exact_mut(n.max(1)) {
        for (s, &t) in step.iter_mut().zip(&thresholds) {
            *s = bernoulli(rng.0.next_u32(), t);
        }
    }
    Tensor::from_vec(spikes, dims, images.device())?.to_dtype(images.dtype())
}

/// Direct coding: the real-valued image at every step, `[T, B, ...]`. The result is a
/// broadcast view of `images` (stride 0 over time): no copy is made until one is needed.
pub fn direct(images: &Tensor, timesteps: usize) -> Result<Tensor> {
    let dims = time_major_dims(images, timesteps, "direct")?;
    images.unsqueeze(0)?.broadcast_as(dims)
}

/// An inverted-dropout mask of the shape of one time step: each element is 0 with
/// probability `p` and `1 / (1 − p)` otherwise, so the mask has mean 1. It is drawn once
/// and held over all T steps by the caller. `p` must lie in `[0, 1)`.
pub fn dropout_mask(
    shape: &[usize],
    p: f32,
    rng: &mut SeededRng,
    device: &Device,
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        bail!("dropout probability must lie in [0, 1), got {p}");
    }
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| candle_core::Error::Msg("dropout mask: shape too large".into()))?;
    let scale = 1.0 / (1.0 - p);
    // Drop iff u < p · 2^32, i.e. with probability p.
    let drop_below = spike_threshold(p);
    let batch = shape.first().copied().unwrap_or(1);
    let site = match &mut rng.1 {
        Some(k) => {
            k.dropout_site += 1;
            k.dropout_site
        }
        None => 0,
    };
    if let Some(gens) = rng.keyed(PURPOSE_DROPOUT + (site << 8), batch)? {
        // One mask per image (and dropout site), word j of image b's stream.
        let mask: Vec<f32> = gens
            .into_iter()
            .flat_map(|mut g| {
                (0..n / batch.max(1))
                    .map(|_| {
                        if u64::from(g.next_u32()) < drop_below {
                            0.0
                        } else {
                            scale
                        }
                    })
                    .collect::<Vec<f32>>()
            })
            .collect();
        return Tensor::from_vec(mask, shape, device);
    }
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if u64::from(rng.0.next_u32()) < drop_below {
                0.0
            } else {
                scale
            }
        })
        .collect();
    Tensor::from_vec(mask, shape, device)
}

/// One step of Poisson rate coding for the step-by-step runtime: images `[B, ...]` →
/// spikes `[B, ...]`, by the same single draw per pixel as [`poisson`] (one 32-bit word per
/// pixel, in order, compared with `clamp(pixel, 0, 1)·2³²`). With per-image keys
/// ([`SeededRng::set_images`]) the spikes of step `step` (0-based) are exactly step `step` of
/// [`poisson`]; without them, successive calls read the sequential stream as [`poisson`]
/// does, so `poisson_step` called for steps 0..T equals [`poisson`] over T steps.
pub fn poisson_step(images: &Tensor, step: usize, rng: &mut SeededRng) -> Result<Tensor> {
    let v = images.flatten_all()?.to_vec1::<f32>()?;
    let batch = images.dims().first().copied().unwrap_or(1);
    if let Some(gens) = rng.keyed(PURPOSE_POISSON, batch)? {
        let per = v.len() / batch.max(1);
        let thresholds: Vec<u64> = v.iter().map(|&p| spike_threshold(p)).collect();
        let mut s = vec![0f32; v.len()];
        if per > 0 {
            for (b, (g, out)) in gens.iter().zip(s.chunks_exact_mut(per)).enumerate() {
                keyed_step(g, step, &thresholds[b * per..(b + 1) * per], out);
            }
        }
        return Tensor::from_vec(s, images.shape(), images.device());
    }
    let s: Vec<f32> = v
        .iter()
        .map(|&p| bernoulli(rng.0.next_u32(), spike_threshold(p)))
        .collect();
    Tensor::from_vec(s, images.shape(), images.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step-by-step Poisson coding is the batched one, draw for draw: sequentially (no image
    /// keys) T calls of `poisson_step` read the same words as one `poisson` over T steps, and
    /// keyed calls equal the keyed batch at every step.
    #[test]
    fn poisson_step_is_one_step_of_poisson() -> Result<()> {
        let px: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37) % 1.2 - 0.1).collect();
        let img = Tensor::from_vec(px, (3, 2, 4), &Device::Cpu)?;
        let t = 6;
        let batched = poisson(&img, t, &mut SeededRng::new(5))?;
        let mut rng = SeededRng::new(5);
        for step in 0..t {
            let s = poisson_step(&img, step, &mut rng)?;
            assert_eq!(
                s.flatten_all()?.to_vec1::<f32>()?,
                batched.get(step)?.flatten_all()?.to_vec1::<f32>()?,
                "sequential step {step}"
            );
        }
        let mut keyed = SeededRng::new(9);
        keyed.set_images([4, 0, 7]);
        let batched = poisson(&img, t, &mut keyed.clone())?;
        for step in (0..t).rev() {
            let s = poisson_step(&img, step, &mut keyed)?;
            assert_eq!(
                s.flatten_all()?.to_vec1::<f32>()?,
                batched.get(step)?.flatten_all()?.to_vec1::<f32>()?,
                "keyed step {step}"
            );
        }
        // Pixels ≤ 0 never spike, pixels ≥ 1 always do.
        let v = batched.flatten_all()?.to_vec1::<f32>()?;
        let p = img.flatten_all()?.to_vec1::<f32>()?;
        for (i, s) in v.iter().enumerate() {
            let q = p[i % p.len()];
            if q <= 0.0 {
                assert_eq!(*s, 0.0);
            } else if q >= 1.0 {
                assert_eq!(*s, 1.0);
            }
        }
        Ok(())
    }
}
