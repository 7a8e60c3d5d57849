//! The fused spiking convolution's event path (`conv::conv2d_lif` and its inference twin):
//! each output pixel gathers the filter rows of the non-zero inputs in its window, so the cost
//! follows the input's spikes, not its size.
//!
//! A spiking layer's input is spikes, or pooled spikes (multiples of 1/k² for an average pool),
//! mostly zero. The dense path multiplies every patch entry; this one lists each input pixel's
//! non-zero channels once per image ([`InputEvents`]) and, for every output pixel and block
//! of [`BLOCK`] output channels, adds `x·w` for each listed input of the window, taps in
//! (ky, kx, c) order, one fused multiply-add per product (AVX2 + FMA; the caller keeps the
//! dense path on other CPUs). That is the dense sum with its zero terms left out, in the dense
//! path's tap order (a zero term adds ±0, which changes no sum that started at +0): where
//! `gemm` also sums the 288 taps of a 3×3×32 patch in one pass of fused multiply-adds, as on
//! the Zen 4 this project measures on, the two paths agree bit for bit (AGD training and
//! inference of `networks/fashion-mnist/agd/convnet.snn` give the same weights and
//! accuracy); elsewhere they agree up to f32 summation order.
//!
//! One output row is summed tap by tap (`row`, `[WO, BLOCK]`), so one tap's `C` filter rows
//! (8 KB for 32 → 64 channels) stay in L1 while the row's pixels read them; 64 channels give
//! eight independent 8-lane sums per event, enough to hide the multiply-add latency.
//!
//! Invariants: filters are channel-last `[O, KH·KW·C]` on the way in and kept as
//! `[⌈O/BLOCK⌉, KH·KW·C, BLOCK]` (zero lanes past O); images are `[H, W, C]` or `[C, H, W]`;
//! outputs pixel-major `[HO·WO, O]`. Only finite filters are taken (a zero input times an
//! infinite weight is NaN in the dense sum); the caller checks [`EventFilters::new`]'s `None`.

use super::conv::Geom;

/// Output channels gathered together: eight 8-lane accumulators, so that every event starts
/// eight independent multiply-adds (enough to cover the FMA latency) from one 256-byte filter row.
pub(super) const BLOCK: usize = 64;

/// Filters in the layout the gather reads: `[⌈O/BLOCK⌉, K, BLOCK]`, `K = KH·KW·C`.
pub(super) struct EventFilters {
    wb: Vec<f32>,
    k: usize,
    o: usize,
}

impl EventFilters {
    /// From channel-last filters `wh` (`[O, K]`). `None` when a weight is not finite or the
    /// sizes do not match.
    pub(super) fn new(wh: &[f32], o: usize, k: usize) -> Option<Self> {
        if k == 0 || o == 0 || wh.len() != o * k || !wh.iter().all(|w| w.is_finite()) {
            return None;
        }
        let blocks = o.div_ceil(BLOCK);
        let mut wb = vec![0f32; blocks * k * BLOCK];
        for (oc, row) in wh.chunks_exact(k).enumerate() {
            let (ob, lane) = (oc / BLOCK, oc % BLOCK);
            let dst = &mut wb[ob * k * BLOCK..][..k * BLOCK];
            for (ki, &w) in row.iter().enumerate() {
                dst[ki * BLOCK + lane] = w;
            }
        }
        Some(EventFilters { wb, k, o })
    }
}

/// One image's non-zero inputs, pixel by pixel: the entries `start[i]..start[i + 1]` of
/// `off` (the channel's row in a filter block, `c·BLOCK`) and `val` belong to input pixel `i`
/// (row-major over H×W), channels in increasing order.
#[derive(Default)]
pub(super) struct InputEvents {
    start: Vec<u32>,
    off: Vec<u32>,
    val: Vec<f32>,
    /// One output row's sums (`[WO, BLOCK]`), scratch for the gather.
    row: Vec<f32>,
}

impl InputEvents {
    /// Lists the non-zero entries of `img` (`[H, W, C]` with `hwc`, else `[C, H, W]`).
    #[inline(always)]
    pub(super) fn fill(&mut self, g: &Geom, (img, hwc): (&[f32], bool)) {
        let (hw, c) = (g.h * g.w, g.c);
        self.start.resize(hw + 1, 0);
        // Every entry is written, the cursor only moves past the non-zero ones.
        self.off.resize(hw * c + 1, 0);
        self.val.resize(hw * c + 1, 0.0);
        let mut n = 0usize;
        self.start[0] = 0;
        for i in 0..hw {
            for ci in 0..c {
                let v = if hwc {
                    img[i * c + ci]
                } else {
                    img[ci * hw + i]
                };
                self.off[n] = (ci * BLOCK) as u32;
                self.val[n] = v;
                n += usize::from(v != 0.0);
            }
            self.start[i + 1] = n as u32;
        }
    }
}

/// The number of non-zero entries of `x`, counted so that it vectorises.
#[inline(always)]
pub(super) fn count_nonzero(x: &[f32]) -> usize {
    x.chunks(1 << 20)
        .map(|c| c.iter().map(|&v| u32::from(v != 0.0)).sum::<u32>() as usize)
        .sum()
}

/// The convolution of one image, given by its events `ev`, into `y` (`[HO·WO, O]`): block by
/// block of output channels, every output pixel gathers its window's events. Returns false,
/// writing nothing, on a CPU without AVX2 and FMA (the caller then takes the dense path).
pub(super) fn conv_image_events(
    g: &Geom,
    ev: &mut InputEvents,
    f: &EventFilters,
    y: &mut [f32],
) -> bool {
    #[cfg(test)]
    if let Ok(mut seen) = IMAGES.lock() {
        seen.push((g.c, f.o));
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX2 and FMA (`available`), the only requirements of
        // `x86::conv_image_events`'s target features; it reads memory only through slices.
        unsafe { x86::conv_image_events(g, ev, f, y) };
        return true;
    }
    let _ = (g, ev, f, y);
    false
}

/// The (input channels, output channels) of every image [`conv_image_events`] was asked
/// for (tests check that a layer took the path).
#[cfg(test)]
static IMAGES: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

/// How many images of `c` → `o` channels went through [`conv_image_events`] so far.
#[cfg(test)]
pub(super) fn images_of(c: usize, o: usize) -> usize {
    IMAGES
        .lock()
        .map(|v| v.iter().filter(|&&s| s == (c, o)).count())
        .unwrap_or(0)
}

/// Whether [`conv_image_events`] runs on this CPU.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    use super::{EventFilters, Geom, InputEvents, BLOCK};

    /// [`super::conv_image_events`] with eight 8-lane accumulators per block of 64 channels.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn conv_image_events(
        g: &Geom,
        ev: &mut InputEvents,
        f: &EventFilters,
        y: &mut [f32],
    ) {
        let (k, o) = (f.k, f.o);
        let (h, w) = (g.h as isize, g.w as isize);
        let mut row = std::mem::take(&mut ev.row);
        row.resize(g.wo * BLOCK, 0.0);
        for (ob, wb) in f.wb.chunks_exact(k * BLOCK).enumerate() {
            let lanes = BLOCK.min(o - ob * BLOCK);
            for oy in 0..g.ho {
                let iy0 = (oy * g.stride) as isize - g.pad as isize;
                let ky_lo = (-iy0).clamp(0, g.kh as isize) as usize;
                let ky_hi = (h - iy0).clamp(0, g.kh as isize) as usize;
                row.fill(0.0);
                // Tap by tap over the row, so that one tap's filters (C rows) stay in
                // L1; each pixel still adds its taps in (ky, kx, c) order.
                for ky in ky_lo..ky_hi {
                    let iy = (iy0 + ky as isize) as usize;
                    for kx in 0..g.kw {
                        let tap = &wb[(ky * g.kw + kx) * g.c * BLOCK..];
                        for (ox, sums) in row.chunks_exact_mut(BLOCK).enumerate() {
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            if ix < 0 || ix >= w {
                                continue;
                            }
                            let i = iy * g.w + ix as usize;
                            let (s, e) = (ev.start[i] as usize, ev.start[i + 1] as usize);
                            if s == e {
                                continue;
                            }
                            let mut acc: [__m256; BLOCK / 8] = [_mm256_setzero_ps(); BLOCK / 8];
                            for (a, d) in acc.iter_mut().zip(sums.chunks_exact(8)) {
                                // SAFETY: `d` holds `8` floats.
                                *a = unsafe { _mm256_loadu_ps(d.as_ptr()) };
                            }
                            for (&off, &v) in ev.off[s..e].iter().zip(&ev.val[s..e]) {
                                let wr: &[f32; BLOCK] = match tap[off as usize..].first_chunk() {
                                    Some(r) => r,
                                    None => continue,
                                };
                                let vv = _mm256_set1_ps(v);
                                for (a, wl) in acc.iter_mut().zip(wr.chunks_exact(8)) {
                                    // SAFETY: `wl` holds `8` floats.
                                    let wv = unsafe { _mm256_loadu_ps(wl.as_ptr()) };
                                    *a = _mm256_fmadd_ps(vv, wv, *a);
                                }
                            }
                            for (a, d) in acc.iter().zip(sums.chunks_exact_mut(8)) {
                                // SAFETY: `d` holds `8` floats.
                                unsafe { _mm256_storeu_ps(d.as_mut_ptr(), *a) };
                            }
                        }
                    }
                }
                for (ox, sums) in row.chunks_exact(BLOCK).enumerate() {
                    let at = (oy * g.wo + ox) * o + ob * BLOCK;
                    y[at..at + lanes].copy_from_slice(&sums[..lanes]);
                }
            }
        }
        ev.row = row;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A `[C, H, W]` image whose entries are non-zero with probability `density`, valued
    /// like average-pooled spikes (k/4, k = 1..4).
    pub(in crate::backend::candle) fn pooled_image(
        rng: &mut ChaCha8Rng,
        n: usize,
        density: f64,
    ) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if rng.random::<f64>() < density {
                    rng.random_range(1..=4) as f32 / 4.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The gather against candle's conv2d (relative tolerance 1e-5) at input densities 0,
    /// 0.01, 0.5 and 1, for both image layouts, on geometries with one, two and a partial
    /// block of output channels, strides 1 and 2, padding 0 and 1, non-square windows.
    #[test]
    fn events_match_candle_conv2d_at_every_density() {
        if !available() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // (c, h, w, o, kh, kw, stride, pad): the largest first, so that one reused
        // `InputEvents` and its row buffer carry longer lists into the later cases.
        let cases = [
            (32, 14, 14, 64, 3, 3, 1, 1),
            (5, 9, 7, 70, 3, 3, 2, 1),
            (3, 8, 11, 19, 2, 3, 1, 0),
            (4, 7, 9, 33, 3, 2, 2, 1),
            (1, 6, 6, 130, 3, 3, 1, 1),
        ];
        let mut ev = InputEvents::default();
        for (c, h, w, o, kh, kw, stride, pad) in cases {
            let g = Geom::new((1, c, h, w), (kh, kw), stride, pad).unwrap();
            let wts: Vec<f32> = (0..o * c * kh * kw)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let wt = Tensor::from_vec(wts.clone(), (o, c, kh, kw), &Device::Cpu).unwrap();
            // Channel-last filters, as the fused convolution hands them over.
            let mut wh = vec![0f32; wts.len()];
            let k = c * kh * kw;
            for oc in 0..o {
                for ci in 0..c {
                    for t in 0..kh * kw {
                        wh[oc * k + t * c + ci] = wts[oc * k + ci * kh * kw + t];
                    }
                }
            }
            let f = EventFilters::new(&wh, o, k).unwrap();
            for density in [0.0, 0.01, 0.5, 1.0] {
                let img = pooled_image(&mut rng, c * h * w, density);
                let xt = Tensor::from_vec(img.clone(), (1, c, h, w), &Device::Cpu).unwrap();
                let want = xt.conv2d(&wt, pad, stride, 1, 1).unwrap();
                // [1, O, HO, WO] → pixel-major [HO·WO, O]
                let want: Vec<f32> = want
                    .squeeze(0)
                    .unwrap()
                    .permute((1, 2, 0))
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut hwc = vec![0f32; img.len()];
                for ci in 0..c {
                    for i in 0..h * w {
                        hwc[i * c + ci] = img[ci * h * w + i];
                    }
                }
                for (layout, is_hwc) in [(&img, false), (&hwc, true)] {
                    let what = format!(
                        "c{c} {h}x{w} o{o} {kh}x{kw}/{stride} pad {pad} d {density} hwc {is_hwc}"
                    );
                    ev.fill(&g, (layout, is_hwc));
                    let mut got = vec![f32::NAN; g.ho * g.wo * o];
                    assert!(conv_image_events(&g, &mut ev, &f, &mut got), "{what}");
                    assert_eq!(got.len(), want.len(), "{what}");
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                            "{what}[{i}]: {a} vs {b}"
                        );
                    }
                    if density == 0.0 {
                        assert!(got.iter().all(|&v| v == 0.0), "{what}: zero input");
                    }
                }
            }
        }
    }

    /// Filters with a non-finite weight are refused (a zero input times ∞ is NaN in the
    /// dense sum, which the gather would leave out); so are mismatched sizes.
    #[test]
    fn non_finite_or_mismatched_filters_are_refused() {
        assert!(EventFilters::new(&[1.0, f32::INFINITY], 1, 2).is_none());
        assert!(EventFilters::new(&[1.0, f32::NAN], 2, 1).is_none());
        assert!(EventFilters::new(&[1.0, 2.0, 3.0], 2, 2).is_none());
        assert!(EventFilters::new(&[1.0, 2.0], 2, 1).is_some());
        assert!(EventFilters::new(&[], 0, 3).is_none());
        assert!(EventFilters::new(&[], 3, 0).is_none());
    }

    /// The count the dispatch decides by.
    #[test]
    fn count_nonzero_counts_every_non_zero() {
        assert_eq!(count_nonzero(&[0.0, -0.0, 0.25, -1.0, f32::NAN, 0.0]), 3);
        assert_eq!(count_nonzero(&[]), 0);
        // Across the 2^20-element chunks it counts in.
        let mut long = vec![0f32; (1 << 20) + 3];
        long[(1 << 20) - 1] = 1.0;
        long[1 << 20] = 2.0;
        assert_eq!(count_nonzero(&long), 2);
    }
}
