//! 2-D convolution for the layers of a network, run over all T·B images at once.
//!
//! `conv2d` is one custom op of (x, w). Forward multiplies the patch matrix of x (im2col)
//! with the weights chunk by chunk (`conv_rows`): a few images at a time (about 512 KiB of
//! patches, one core's L2), each chunk's patches built in a per-thread buffer and multiplied
//! at once by the `gemm` kernel (`sgemm`), chunks in parallel, so the full patch matrix (72 MB
//! for a 32→64 convolution over T·B = 320 images of 14×14) never goes to memory. Patches are
//! channel-last (columns in (ky, kx, c) order, the image moved to `[H, W, C]` first): each
//! kernel row is one contiguous copy of `kx·C` values. Backward rebuilds each chunk's patches
//! for `dW = Gᵀ·cols` (summed in fixed groups, so the result does not depend on the thread
//! count) and, only when x tracks gradients, gives `dX = col2im(G·W)` chunk by chunk — for
//! the network's input image no dX work is done at all. `im2col` is also offered as its own
//! differentiable op (backward col2im).
//! `conv2d_lif` fuses a spiking layer: the convolution, the LIF/IF scan over T and
//! optionally the pool that follows, as one node, run sample by sample (one gemm over a
//! sample's T images, then its scan and pool while they are in cache; backward the reverse
//! sweep and one gemm each for the sample's dW share and dX), so the layer's unpooled spikes
//! and its dL/dy never go through memory (see `conv_lif_forward`, `conv_lif_backward`).
//! Between two fused layers the map may stay channel-last (`MapLayout`, chosen by the model
//! for a map that only fused convolutions read): the pool then stores 16 channels at once,
//! the next layer's patches are copied without a transpose, and backward reads the pooled
//! gradient and writes dX without one either.
//!
//! Narrow patches (`C·KH·KW` ≤ `DIRECT_PATCH`, the network's first layer 1 → 32 3×3 above
//! all) skip im2col and gemm: a gemm over 9 taps loads and stores its output tile around 9
//! multiply-adds and each patch row is a copy of 3 floats. `conv_image_direct` reads the taps
//! from a zero-padded channel-last copy of the image and keeps 32 channels of 4 pixels in
//! registers (sums over the taps in order from zero, mul then add: the same on every CPU);
//! the weight gradient keeps each tap's 16-channel sum in a register over the image
//! (`dw_image_direct`). `conv2d` (and through it the step runtime's dense path) takes the
//! same direct path, so a layer's currents are the same in both runtimes.
//!
//! Sparse input (spikes or pooled spikes, at most `EVENT_DENSITY` non-zero over a sample's T
//! images) skips im2col and gemm in the fused forward: each output pixel gathers the filter
//! rows of its window's non-zero inputs (`conv_events`): the dense sum without its zero
//! terms, in the same tap order (bit for bit the gemm's where `gemm` sums the patch in one
//! pass of fused multiply-adds, else equal up to f32 rounding). Layers of at least
//! `EVENT_MIN_OUT` output channels only (the gather works on 64 channels at a time).
//! Measured (`examples/bench_kernels events`, quiet machine, see docs/performance.md): 1.6×
//! faster than im2col + gemm on the 32 → 64 layer at 0.34 non-zero, 2.1× at 0.19.
//!
//! CPU dispatch: the four drivers (`conv_rows`, `conv_rows_backward`, `conv_lif_forward`,
//! `conv_lif_backward`) are compiled three times by `multiversion` — AVX-512, AVX2+FMA and
//! baseline x86-64 — and the widest the CPU has is picked at run time (multiversion's
//! AVX-512 copy asks for the Ice Lake set, VBMI2/VNNI/BITALG/GFNI and the rest, so older
//! AVX-512 CPUs, whose wide units slow the clock, run the AVX2 copy); the
//! per-sample closures and the `#[inline(always)]` helpers they call (im2col, the neuron step,
//! pool, max, count) are compiled inside each copy. Rust never contracts `a * b + c` into an
//! FMA, so the three copies compute bit-identical results.
//!
//! Candle 0.11 facts this is designed around (read in candle-core's cpu backend and
//! backprop.rs): conv2d's input gradient is `conv_transpose2d`, plain loops on CPU, and is
//! computed even when the input needs no gradient; its weight gradient is a conv2d with an
//! output-sized kernel; its backward mis-sizes dX for non-square inputs (tests use square
//! ones against it); a custom op's `bwd` runs only when one of its arguments tracks
//! gradients; and backprop adds every node's gradient into a fresh zero tensor, so one
//! node instead of im2col → matmul → reshape → permute → copy saves several full passes.
//! Measured (`examples/bench_kernels`, release, 2 shared cores, median of 3 runs, before the
//! chunking, which made AGD training faster still; see docs/performance.md):
//! forward+backward 2.0–2.4× and forward 1.7–2.3× faster than candle's conv2d on
//! 1→32 28², 32→64 14² (N = 320) and 64→64 32² (N = 32), so every shape uses this path.
//!
//! Invariants: inputs `[N, C, H, W]`, weights `[O, C, KH, KW]`, f32, CPU; stride ≥ 1;
//! the padded input is at least one kernel wide. Shape errors are `Err`, never panics.

use std::sync::Mutex;

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use super::alloc::{par_zeros, ScratchPool};
use super::conv_events::{self, conv_image_events, count_nonzero, EventFilters, InputEvents};
use super::neuron::{f32_slice, heaviside, step_fwd, surrogate, NeuronParams};
use super::sgemm::{sgemm, Strides};
use crate::ir::Reset;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Geom {
    pub(super) fn new(
        (n, c, h, w): (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if stride == 0 {
            bail!("conv2d: stride must be at least 1")
        }
        if kh == 0 || kw == 0 {
            bail!("conv2d: empty kernel {kh}x{kw}")
        }
        let hp = h.checked_add(pad.saturating_mul(2));
        let wp = w.checked_add(pad.saturating_mul(2));
        let (hp, wp) = match (hp, wp) {
            (Some(hp), Some(wp)) if hp >= kh && wp >= kw => (hp, wp),
            _ => bail!("conv2d: kernel {kh}x{kw} larger than the padded input {h}x{w} (pad {pad})"),
        };
        let g = Geom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            ho: (hp - kh) / stride + 1,
            wo: (wp - kw) / stride + 1,
        };
        // Sizes of the column matrix must fit in memory arithmetic.
        let cols = g
            .patch()
            .checked_mul(g.ho)
            .and_then(|v| v.checked_mul(g.wo))
            .and_then(|v| v.checked_mul(g.n));
        if cols.is_none() {
            bail!("conv2d: sizes overflow")
        }
        Ok(g)
    }

    /// The geometry without its image count, which no per-sample buffer depends on (the key
    /// of a scratch set).
    fn per_sample(&self) -> Self {
        Geom { n: 0, ..*self }
    }

    /// Columns of the patch matrix: C·KH·KW.
    fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Patch-matrix elements per image.
    fn cols_per_image(&self) -> usize {
        self.ho * self.wo * self.patch()
    }

    /// Visits the in-bounds taps of one image as contiguous runs: `f(j, i, len)` means
    /// patch-matrix elements `j..j+len` read input elements `i..i+len` (one kernel row of
    /// one channel under one output pixel). Padding taps are skipped, so they stay zero.
    /// Common kernel widths get a copy of the loop in which the run length is a constant.
    #[inline(always)]
    fn for_each_run(&self, f: impl FnMut(usize, usize, usize)) {
        match self.kw {
            1 => self.runs::<1>(f),
            2 => self.runs::<2>(f),
            3 => self.runs::<3>(f),
            5 => self.runs::<5>(f),
            _ => self.runs::<0>(f),
        }
    }

    /// `for_each_run` for kernel width `KW` (0: any width, read from `self`).
    #[inline(always)]
    fn runs<const KW: usize>(&self, mut f: impl FnMut(usize, usize, usize)) {
        let kw = if KW > 0 { KW } else { self.kw };
        let (h, w, kh) = (self.h as isize, self.w as isize, self.kh);
        let patch = self.patch();
        for oy in 0..self.ho {
            let iy0 = (oy * self.stride) as isize - self.pad as isize;
            // Kernel rows ky in ky_lo..ky_hi fall inside the image.
            let ky_lo = (-iy0).clamp(0, kh as isize) as usize;
            let ky_hi = (h - iy0).clamp(0, kh as isize) as usize;
            for ox in 0..self.wo {
                let ix0 = (ox * self.stride) as isize - self.pad as isize;
                // Taps kx in lo..hi fall inside the row.
                let lo = (-ix0).clamp(0, kw as isize) as usize;
                let hi = (w - ix0).clamp(0, kw as isize) as usize;
                if lo >= hi {
                    continue;
                }
                let j_pixel = (oy * self.wo + ox) * patch;
                let i_pixel = (ix0 + lo as isize) as usize;
                if lo == 0 && hi == kw {
                    for c in 0..self.c {
                        let plane = c * self.h * self.w + i_pixel;
                        for ky in ky_lo..ky_hi {
                            let iy = (iy0 + ky as isize) as usize;
                            f(j_pixel + (c * kh + ky) * kw, plane + iy * self.w, kw);
                        }
                    }
                } else {
                    for c in 0..self.c {
                        let plane = c * self.h * self.w + i_pixel;
                        for ky in ky_lo..ky_hi {
                            let iy = (iy0 + ky as isize) as usize;
                            f(
                                j_pixel + (c * kh + ky) * kw + lo,
                                plane + iy * self.w,
                                hi - lo,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Writes the patch matrix of one image `x` (`[C, H, W]`) into `out` (`[HO·WO, C·KH·KW]`,
/// row-major). Padding taps are not written: `out` must hold zeros there (a buffer that only
/// this function writes, for one geometry, keeps them).
#[inline]
fn im2col_image(g: &Geom, x: &[f32], out: &mut [f32]) {
    g.for_each_run(|j, i, len| {
        for (d, s) in out[j..j + len].iter_mut().zip(&x[i..i + len]) {
            *d = *s;
        }
    })
}

/// Adds the patch matrix of one image `cols` (`[HO·WO, C·KH·KW]`) back onto the pixels it
/// was read from, `out` (`[C, H, W]`): the adjoint of [`im2col_image`].
#[inline]
fn col2im_image(g: &Geom, cols: &[f32], out: &mut [f32]) {
    g.for_each_run(|j, i, len| {
        for (d, s) in out[i..i + len].iter_mut().zip(&cols[j..j + len]) {
            *d += *s;
        }
    })
}

/// The patch matrix of the images `x` (`[N, C, H, W]`, contiguous), row-major.
fn im2col_vec(g: &Geom, x: &[f32]) -> Vec<f32> {
    let per = g.cols_per_image();
    let mut out = par_zeros(per * g.n);
    if per > 0 && g.image() > 0 {
        out.par_chunks_mut(per)
            .zip(x.par_chunks(g.image()))
            .for_each(|(o, x)| im2col_image(g, x, o));
    }
    out
}

/// `[N, C, H, W]` → `[N·HO·WO, C·KH·KW]`, each row the (zero-padded) patch under one output
/// pixel, columns in the weight order (c, ky, kx).
struct Im2Col(Geom);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "snnc-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = f32_slice(storage, layout, self.name())?;
        if layout.shape().dims() != [g.n, g.c, g.h, g.w] {
            bail!("{}: unexpected input shape", self.name())
        }
        let out = im2col_vec(&g, x);
        Ok((
            CpuStorage::F32(out),
            Shape::from((g.n * g.ho * g.wo, g.patch())),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

/// The adjoint of `Im2Col`: `[N·HO·WO, C·KH·KW]` → `[N, C, H, W]`, summing every patch
/// element back onto the input pixel it was read from.
struct Col2Im(Geom);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "snnc-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = f32_slice(storage, layout, self.name())?;
        if layout.shape().dims() != [g.n * g.ho * g.wo, g.patch()] {
            bail!("{}: unexpected input shape", self.name())
        }
        let per = g.cols_per_image();
        let mut out = par_zeros(g.image() * g.n);
        if per > 0 && g.image() > 0 {
            out.par_chunks_mut(g.image())
                .zip(cols.par_chunks(per))
                .for_each(|(o, cols)| col2im_image(&g, cols, o));
        }
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

/// Channel-last patches for the chunked convolution: the patch matrix columns in the order
/// (ky, kx, c), read from an image in `[H, W, C]` layout, so every in-bounds kernel row is one
/// contiguous run of `(kx range)·C` elements (96 for a 3×3 kernel over 32 channels) instead of
/// `C` runs of 3.
impl Geom {
    /// `f(j, i, len)`: patch elements `j..j+len` (order (ky, kx, c)) read `[H, W, C]` input
    /// elements `i..i+len`. Padding taps are skipped, so they stay zero.
    #[inline(always)]
    fn for_each_run_hwc(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (h, w, c) = (self.h as isize, self.w as isize, self.c);
        let (kh, kw, patch) = (self.kh as isize, self.kw as isize, self.patch());
        for oy in 0..self.ho {
            let iy0 = (oy * self.stride) as isize - self.pad as isize;
            let ky_lo = (-iy0).clamp(0, kh) as usize;
            let ky_hi = (h - iy0).clamp(0, kh) as usize;
            for ox in 0..self.wo {
                let ix0 = (ox * self.stride) as isize - self.pad as isize;
                let lo = (-ix0).clamp(0, kw) as usize;
                let hi = (w - ix0).clamp(0, kw) as usize;
                if lo >= hi {
                    continue;
                }
                let j_pixel = (oy * self.wo + ox) * patch;
                let i_col = (ix0 + lo as isize) as usize;
                for ky in ky_lo..ky_hi {
                    let iy = (iy0 + ky as isize) as usize;
                    f(
                        j_pixel + (ky * self.kw + lo) * c,
                        (iy * self.w + i_col) * c,
                        (hi - lo) * c,
                    );
                }
            }
        }
    }
}

/// `[C, H·W]` → `[H·W, C]` for one image (`c` ≥ 1).
#[inline(always)]
fn to_hwc(x: &[f32], c: usize, out: &mut [f32]) {
    let hw = x.len() / c;
    for (ci, plane) in x.chunks_exact(hw).enumerate() {
        for (pi, &v) in plane.iter().enumerate() {
            out[pi * c + ci] = v;
        }
    }
}

/// `[H·W, C]` → `[C, H·W]` for one image (`c` ≥ 1).
#[inline(always)]
fn to_chw(x: &[f32], c: usize, out: &mut [f32]) {
    let hw = x.len() / c;
    for (ci, plane) in out.chunks_exact_mut(hw).enumerate() {
        for (pi, v) in plane.iter_mut().enumerate() {
            *v = x[pi * c + ci];
        }
    }
}

/// Filters `[O, C, KH, KW]` → `[O, KH, KW, C]`, or back with `back` (`C·KH·KW` ≥ 1).
fn filters_hwc(g: &Geom, w: &[f32], back: bool) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for (src, dst) in w
        .chunks_exact(g.patch())
        .zip(out.chunks_exact_mut(g.patch()))
    {
        if back {
            to_chw(src, g.c, dst);
        } else {
            to_hwc(src, g.c, dst);
        }
    }
    out
}

/// The channel-last patch matrix of one `[H, W, C]` image into `out` (`[HO·WO, KH·KW·C]`),
/// whose padding taps must hold zeros (as in [`im2col_image`]).
#[inline(always)]
fn im2col_image_hwc(g: &Geom, x: &[f32], out: &mut [f32]) {
    g.for_each_run_hwc(|j, i, len| out[j..j + len].copy_from_slice(&x[i..i + len]))
}

/// The adjoint of [`im2col_image_hwc`]: adds `cols` back onto the `[H, W, C]` image `out`.
#[inline(always)]
fn col2im_image_hwc(g: &Geom, cols: &[f32], out: &mut [f32]) {
    g.for_each_run_hwc(|j, i, len| {
        for (d, s) in out[i..i + len].iter_mut().zip(&cols[j..j + len]) {
            *d += *s;
        }
    })
}

/// The channel-last patch matrix (`[HO·WO, KH·KW·C]`, padding taps already zero) of one
/// `[C, H, W]` image, through its `[H, W, C]` copy in `xh`.
#[inline(always)]
fn patches_of(g: &Geom, img: &[f32], xh: &mut [f32], cols: &mut [f32]) {
    to_hwc(img, g.c, xh);
    im2col_image_hwc(g, xh, cols);
}

/// [`patches_of`] for an image in either layout: with `hwc` the image is already `[H, W, C]`
/// and `xh` is not used.
#[inline(always)]
fn patches_in(g: &Geom, (img, hwc): (&[f32], bool), xh: &mut [f32], cols: &mut [f32]) {
    if hwc {
        im2col_image_hwc(g, img, cols);
    } else {
        patches_of(g, img, xh, cols);
    }
}

/// [`image_grad_of`] into an image in either layout: with `hwc` `dx` is `[H, W, C]`, summed
/// into directly, and `xh` is not used.
#[inline(always)]
fn image_grad_in(g: &Geom, dcols: &[f32], xh: &mut [f32], (dx, hwc): (&mut [f32], bool)) {
    if hwc {
        dx.fill(0.0);
        col2im_image_hwc(g, dcols, dx);
    } else {
        image_grad_of(g, dcols, xh, dx);
    }
}

/// The gradient of one `[C, H, W]` image (`dx`, overwritten) from the gradient of its
/// channel-last patches, through the `[H, W, C]` scratch `xh`.
#[inline(always)]
fn image_grad_of(g: &Geom, dcols: &[f32], xh: &mut [f32], dx: &mut [f32]) {
    xh.fill(0.0);
    col2im_image_hwc(g, dcols, xh);
    to_chw(xh, g.c, dx);
}

/// The weight gradient `[O, C, KH, KW]` from the per-group partial sums (channel-last, each
/// `[O, KH·KW·C]`), added in group order so the result does not depend on the thread count.
fn sum_dw_groups(g: &Geom, partials: Vec<Option<Vec<f32>>>, len: usize) -> Vec<f32> {
    let mut acc = vec![0f32; len];
    for part in partials.into_iter().flatten() {
        for (a, v) in acc.iter_mut().zip(part) {
            *a += v;
        }
    }
    filters_hwc(g, &acc, true)
}

/// Target size of one chunk's patch matrix in f32 elements (512 KiB, about one core's L2).
const CHUNK_ELEMS: usize = 1 << 17;

/// The weight gradient is summed over at most this many groups of chunks, each summed in
/// order on one thread, then the groups in order: the same result whatever the thread count.
const DW_GROUPS: usize = 16;

impl Geom {
    /// Images per chunk of [`conv_rows`]: as many as keep a chunk's patch matrix within
    /// `CHUNK_ELEMS`, at least one. Independent of the thread count, so results are too.
    fn images_per_chunk(&self) -> usize {
        (CHUNK_ELEMS / self.cols_per_image().max(1)).max(1)
    }
}

/// The convolution of `x` (`[N, C, H, W]`) with `w` (`[O, C·KH·KW]`) as `[N·HO·WO, O]`,
/// pixel-major (row `n·P + p` holds the `O` outputs at pixel `p` of image `n`): im2col(x)·Wᵀ,
/// computed chunk by chunk in parallel. Each chunk's patch matrix is built in a per-thread
/// buffer of about `CHUNK_ELEMS` that stays in cache and is multiplied right away, so the
/// full patch matrix (72 MB for a 32→64 convolution over T·B = 320 images of 14×14) is never
/// written to memory. Errors only on inconsistent sizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn conv_rows(g: &Geom, x: &[f32], w: &[f32], o: usize) -> Result<Vec<f32>> {
    let (p, patch, per, img) = (g.ho * g.wo, g.patch(), g.cols_per_image(), g.image());
    if x.len() != g.n * img || w.len() != o * patch {
        bail!("conv2d: input or weights do not match the geometry")
    }
    let mut y = par_zeros(g.n * p * o);
    if y.is_empty() || per == 0 {
        return Ok(y);
    }
    let wh = filters_hwc(g, w, false);
    if direct(g) {
        // Narrow patches: the direct convolution, image by image (the fused spiking layer's
        // arithmetic, so both give the same currents).
        let (taps, wt) = (DirectTaps::new(g), DirectFilters::new(g, &wh, o, true));
        y.par_chunks_mut(p * o)
            .zip(x.par_chunks(img))
            .for_each_init(
                || vec![0f32; taps.padded_len(g)],
                |xp, (yi, xi)| {
                    taps.pad_image(g, xi, xp);
                    conv_image_direct(g, (&taps, xp), (&wt, o), yi);
                },
            );
        return Ok(y);
    }
    let ipc = g.images_per_chunk();
    y.par_chunks_mut(ipc * p * o)
        .zip(x.par_chunks(ipc * img))
        .try_for_each_init(
            || (vec![0f32; ipc * per], vec![0f32; img]),
            |(cols, xh), (yc, xc)| {
                let imgs = xc.len() / img;
                for (xi, ci) in xc.chunks_exact(img).zip(cols.chunks_exact_mut(per)) {
                    patches_of(g, xi, xh, ci);
                }
                let a = (&cols[..imgs * per], Strides::rows(patch));
                sgemm(
                    (imgs * p, o, patch),
                    yc,
                    o,
                    a,
                    (&wh, Strides::cols(patch)),
                    false,
                )
            },
        )?;
    Ok(y)
}

/// `(dW, dX)` of [`conv_rows_backward`], each computed only when asked for.
type RowGrads = (Option<Vec<f32>>, Option<Vec<f32>>);

/// The gradients of [`conv_rows`] from `gy` = dL/dy (`[N·HO·WO, O]`, pixel-major): with
/// `want_dw`, dW = Σ gyᵀ·cols (`[O, C·KH·KW]`, the patch matrix rebuilt chunk by chunk, in
/// cache); with `want_dx`, dX = col2im(gy·W) (`[N, C, H, W]`), chunk by chunk. Chunks run in
/// parallel in `DW_GROUPS` fixed groups (see there). Errors only on inconsistent sizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn conv_rows_backward(
    g: &Geom,
    (x, w, gy): (&[f32], &[f32], &[f32]),
    o: usize,
    (want_dw, want_dx): (bool, bool),
) -> Result<RowGrads> {
    let (p, patch, per, img) = (g.ho * g.wo, g.patch(), g.cols_per_image(), g.image());
    if x.len() != g.n * img || w.len() != o * patch || gy.len() != g.n * p * o {
        bail!("conv2d backward: input, weights or gradient do not match the geometry")
    }
    let mut dx = want_dx.then(|| par_zeros(g.n * img));
    if g.n == 0 || per == 0 || o == 0 || img == 0 {
        return Ok((want_dw.then(|| vec![0f32; o * patch]), dx));
    }
    let ipc = g.images_per_chunk();
    let group = g.n.div_ceil(ipc).div_ceil(DW_GROUPS) * ipc; // images per group
    let groups = g.n.div_ceil(group);
    let wh = filters_hwc(g, w, false);
    let dx_groups: Vec<Option<&mut [f32]>> = match dx.as_mut() {
        Some(d) => d.chunks_mut(group * img).map(Some).collect(),
        None => (0..groups).map(|_| None).collect(),
    };
    let partials = dx_groups
        .into_par_iter()
        .enumerate()
        .map(|(gi, mut dxg)| -> Result<Option<Vec<f32>>> {
            let mut dw = want_dw.then(|| vec![0f32; o * patch]);
            let mut cols = vec![0f32; if want_dw { ipc * per } else { 0 }];
            let mut dcols = vec![0f32; if want_dx { ipc * per } else { 0 }];
            let mut xh = vec![0f32; img];
            let (first, last) = (gi * group, ((gi + 1) * group).min(g.n));
            for c0 in (first..last).step_by(ipc) {
                let imgs = ipc.min(last - c0);
                let rows = imgs * p;
                let gyc = &gy[c0 * p * o..][..rows * o];
                if let Some(dw) = dw.as_mut() {
                    let xc = &x[c0 * img..][..imgs * img];
                    for (xi, ci) in xc.chunks_exact(img).zip(cols.chunks_exact_mut(per)) {
                        patches_of(g, xi, &mut xh, ci);
                    }
                    let b = (&cols[..rows * patch], Strides::rows(patch));
                    sgemm(
                        (o, patch, rows),
                        dw,
                        patch,
                        (gyc, Strides::cols(o)),
                        b,
                        true,
                    )?;
                }
                if let Some(dxg) = dxg.as_deref_mut() {
                    let a = (gyc, Strides::rows(o));
                    let dc = &mut dcols[..rows * patch];
                    sgemm(
                        (rows, patch, o),
                        dc,
                        patch,
                        a,
                        (&wh, Strides::rows(patch)),
                        false,
                    )?;
                    let dxc = &mut dxg[(c0 - first) * img..][..imgs * img];
                    for (di, ci) in dxc.chunks_exact_mut(img).zip(dc.chunks_exact(per)) {
                        image_grad_of(g, ci, &mut xh, di);
                    }
                }
            }
            Ok(dw)
        })
        .collect::<Result<Vec<_>>>()?;
    let dw = want_dw.then(|| sum_dw_groups(g, partials, o * patch));
    Ok((dw, dx))
}

fn check_shapes(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Geom> {
    check_shapes_in(x, w, (stride, pad), false)
}

/// [`check_shapes`] for an input in either layout (`hwc`: `[N, H, W, C]`).
fn check_shapes_in(
    x: &Tensor,
    w: &Tensor,
    (stride, pad): (usize, usize),
    hwc: bool,
) -> Result<Geom> {
    let dims = match x.dims4()? {
        (n, h, w, c) if hwc => (n, c, h, w),
        dims => dims,
    };
    let (o, c, kh, kw) = w.dims4()?;
    if c != dims.1 {
        bail!(
            "conv2d: weights expect {c} input channels, input has {}",
            dims.1
        )
    }
    if o == 0 {
        bail!("conv2d: zero output channels")
    }
    Geom::new(dims, (kh, kw), stride, pad)
}

/// The patch matrix of `x` `[N, C, H, W]` for a `kh`×`kw` kernel: `[N·HO·WO, C·KH·KW]`, one
/// row per output pixel (row-major over n, oy, ox), columns in weight order (c, ky, kx),
/// padding taps zero. Differentiable (its backward is col2im).
pub fn im2col(x: &Tensor, (kh, kw): (usize, usize), stride: usize, pad: usize) -> Result<Tensor> {
    let g = Geom::new(x.dims4()?, (kh, kw), stride, pad)?;
    x.contiguous()?.apply_op1(Im2Col(g))
}

/// The convolution as one custom op of (x, w): forward [`conv_rows`] (im2col and gemm chunk
/// by chunk) and a transpose into NCHW; backward [`conv_rows_backward`]: `dW = Gᵀ·cols` and,
/// only when `x` tracks gradients, `dX = col2im(G·W)`, with `G` the output gradient as
/// `[N·HO·WO, O]`. One graph node: candle adds every node's gradient into a fresh zero
/// tensor, which costs a full pass per intermediate on these sizes.
struct ConvOp {
    g: Geom,
    o: usize,
}

/// `[N, P, O]` (pixel-major) → `[N, O, P]`, in parallel over images.
fn pixels_to_channels(y: &[f32], n: usize, p: usize, o: usize) -> Vec<f32> {
    let mut out = par_zeros(n * p * o);
    if n * p * o > 0 {
        out.par_chunks_mut(p * o)
            .zip(y.par_chunks(p * o))
            .for_each(|(dst, src)| to_planes(src, o, dst));
    }
    out
}

/// `[N, O, P]` → `[N, P, O]`, in parallel over images.
fn channels_to_pixels(y: &[f32], n: usize, p: usize, o: usize) -> Vec<f32> {
    let mut out = par_zeros(n * p * o);
    if n * p * o > 0 {
        out.par_chunks_mut(p * o)
            .zip(y.par_chunks(p * o))
            .for_each(|(dst, src)| {
                for (oc, plane) in src.chunks_exact(p).enumerate() {
                    for (pi, &v) in plane.iter().enumerate() {
                        dst[pi * o + oc] = v;
                    }
                }
            });
    }
    out
}

/// The largest entry of `x` (−∞ when empty), reduced on every core.
pub(super) fn par_max(x: &[f32]) -> f32 {
    x.par_chunks(1 << 14)
        .map(max_f32)
        .reduce(|| f32::NEG_INFINITY, f32::max)
}

/// The largest entry of `x` (−∞ when empty; NaNs are skipped, as by `f32::max`), in 16
/// independent lanes so that it compiles to vector maxima.
#[inline(always)]
pub(super) fn max_f32(x: &[f32]) -> f32 {
    const L: usize = 16;
    let mut m = [f32::NEG_INFINITY; L];
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let tail = chunks.remainder().iter().copied();
    m.into_iter().chain(tail).fold(f32::NEG_INFINITY, f32::max)
}

/// The number of positive entries of `x` (spikes are 0 or 1), counted so that it vectorises.
#[inline(always)]
fn count_positive(x: &[f32]) -> u64 {
    x.chunks(1 << 20)
        .map(|c| u64::from(c.iter().map(|&v| u32::from(v > 0.0)).sum::<u32>()))
        .sum()
}

/// The data of a contiguous f32 CPU tensor, passed to `f`.
pub(super) fn with_cpu_data<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cs) => Ok(f(f32_slice(cs, layout, op)?)),
        _ => bail!("{op}: expected a CPU tensor"),
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "snnc-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.g;
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        if l1.shape().dims() != [g.n, g.c, g.h, g.w] || w.len() != self.o * g.patch() {
            bail!("{}: unexpected input shapes", self.name())
        }
        let y = conv_rows(&g, x, w, self.o)?; // [N·HO·WO, O]
        let out = pixels_to_channels(&y, g.n, g.ho * g.wo, self.o);
        Ok((CpuStorage::F32(out), Shape::from((g.n, self.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.g;
        let grad = grad.contiguous()?;
        let gy = with_cpu_data(&grad, self.name(), |d| {
            channels_to_pixels(d, g.n, g.ho * g.wo, self.o)
        })?;
        conv_grads(&g, (x, w), &gy, self.o, self.name())
    }
}

/// Runs [`conv_rows_backward`] on the tensors of a custom op's backward (contiguous CPU f32,
/// as the forward took them) and wraps its results as `(dX, dW)` tensors; dW only when `w`
/// tracks gradients, dX only when `x` does.
fn conv_grads(
    g: &Geom,
    (x, w): (&Tensor, &Tensor),
    gy: &[f32],
    o: usize,
    name: &str,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let want = (w.track_op(), x.track_op());
    let (dw, dx) = with_cpu_data(&x, name, |xd| {
        with_cpu_data(&w, name, |wd| conv_rows_backward(g, (xd, wd, gy), o, want))
    })???;
    let dx = dx
        .map(|d| Tensor::from_vec(d, (g.n, g.c, g.h, g.w), x.device()))
        .transpose()?;
    let dw = dw
        .map(|d| Tensor::from_vec(d, w.shape(), w.device()))
        .transpose()?;
    Ok((dx, dw))
}

/// Convolution by im2col and one matmul over the whole batch (see the module docs).
/// `x`: `[N, C, H, W]`, `w`: `[O, C, KH, KW]`; returns `[N, O, HO, WO]`.
pub fn conv2d_im2col(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let g = check_shapes(x, w, stride, pad)?;
    let op = ConvOp { g, o: w.dim(0)? };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

/// 2-D convolution, no bias: `x` `[N, C, H, W]`, `w` `[O, C, K, K]` → `[N, O, HO, WO]` with
/// `HO = (H + 2·pad − K)/stride + 1`. Gradients flow to both `x` and `w`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    conv2d_im2col(x, w, stride, pad)
}

// ---------------------------------------------------------------------------------------
// Convolution fused with the spiking scan.

/// The image-sized blocks of `buf` (`[T·B, per]`, time-major) grouped by sample: entry `b`
/// holds the blocks of steps `0..T` of sample `b`, in order.
fn blocks_by_sample(buf: &mut [f32], b: usize, per: usize) -> Vec<Vec<&mut [f32]>> {
    let mut by_b: Vec<Vec<&mut [f32]>> = (0..b).map(|_| Vec::new()).collect();
    if per > 0 {
        for (i, blk) in buf.chunks_exact_mut(per).enumerate() {
            by_b[i % b].push(blk);
        }
    }
    by_b
}

/// The membrane after the reset, from the pre-reset membrane `v` (exactly the scan's rule).
#[inline(always)]
fn reset(p: &NeuronParams, v: f32) -> f32 {
    match p.reset {
        Reset::Subtract => v - p.threshold * heaviside(v, p.threshold),
        Reset::Zero => {
            if v >= p.threshold {
                0.0
            } else {
                v
            }
        }
    }
}

/// Pooling applied to the spikes inside the fused op: square `k`×`k` windows at stride `s`
/// over the `h`×`w` output planes, no padding (the rules of `pool`: max sends the gradient to
/// the first maximal element of a window, row-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikePool {
    /// Max pooling (else average).
    pub max: bool,
    pub k: usize,
    pub s: usize,
}

/// Memory order of the maps a fused spiking convolution reads and writes. NCHW (`false`) is
/// the layout of every other op; channel-last (`true`, NHWC: `[N, H, W, C]`, the channels of a
/// pixel contiguous) is the kernel's own order (patches, pixel-major currents and spikes), so
/// between two fused layers it saves the pool's strided stores and the next layer's transpose
/// back to channel-last, and in backward the strided gradient loads and the transpose of dX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapLayout {
    /// The input `x` is `[T·B, H, W, C]`.
    pub input_hwc: bool,
    /// The spikes (pooled or not) are `[T·B, HO, WO, O]`.
    pub output_hwc: bool,
}

#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    max: bool,
    k: usize,
    s: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

impl PoolGeom {
    fn new(p: SpikePool, h: usize, w: usize) -> Result<Self> {
        if p.k == 0 || p.s == 0 {
            bail!(
                "pool: window and stride must be at least 1, got {0}x{0}/{1}",
                p.k,
                p.s
            )
        }
        if p.k > h || p.k > w {
            bail!("pool: window {0}x{0} larger than the input {h}x{w}", p.k)
        }
        if h.checked_mul(w).is_none_or(|hw| hw > u32::MAX as usize) {
            bail!("pool: {h}x{w} pixels do not fit the 32-bit window indices")
        }
        Ok(PoolGeom {
            max: p.max,
            k: p.k,
            s: p.s,
            w,
            ho: (h - p.k) / p.s + 1,
            wo: (w - p.k) / p.s + 1,
        })
    }

    /// Pools pixel-major maps `x` (`[h·w, o]`: the `o` channels of a pixel contiguous) into
    /// `out` (`[o, ho, wo]`, NCHW, or with `hwc` `[ho, wo, o]`). NCHW goes through `tmp`
    /// (at least `ho·wo·o` floats): pooled channel-last there, then copied plane by plane, so
    /// that the stores into `out` are contiguous.
    #[inline(always)]
    fn forward(&self, x: &[f32], o: usize, out: &mut [f32], (hwc, tmp): (bool, &mut [f32])) {
        if hwc {
            return self.forward_hwc(x, o, out);
        }
        let pout = self.ho * self.wo;
        let tmp = &mut tmp[..pout * o];
        self.forward_hwc(x, o, tmp);
        to_planes(tmp, o, out);
    }

    /// [`PoolGeom::forward`] into channel-last `out` (`[ho, wo, o]`), `LANES` channels of a
    /// window at a time in registers.
    #[inline(always)]
    fn forward_hwc(&self, x: &[f32], o: usize, out: &mut [f32]) {
        let scale = 1.0 / (self.k * self.k) as f32;
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let (pi, corner) = (oy * self.wo + ox, oy * self.s * self.w + ox * self.s);
                let mut c0 = 0;
                while c0 < o {
                    let len = LANES.min(o - c0);
                    // A constant length for whole chunks, so the window loop is vector code.
                    let m = if len == LANES {
                        self.window(x, o, corner, (c0, LANES))
                    } else {
                        self.window(x, o, corner, (c0, len))
                    };
                    let dst = &mut out[pi * o + c0..][..len];
                    for (d, &a) in dst.iter_mut().zip(&m) {
                        *d = if self.max { a } else { a * scale };
                    }
                    c0 += len;
                }
            }
        }
    }

    /// The max (or sum) of channels `c0..c0+len` (`len` ≤ `LANES`) over the window whose first
    /// pixel is `corner`, pixels in row-major order: max keeps `if v > m { v } else { m }`
    /// from −∞, the sum adds from zero, so the first pixel's values come through exactly.
    #[inline(always)]
    fn window(
        &self,
        x: &[f32],
        o: usize,
        corner: usize,
        (c0, len): (usize, usize),
    ) -> [f32; LANES] {
        let mut m = [if self.max { f32::NEG_INFINITY } else { 0.0 }; LANES];
        for ky in 0..self.k {
            let row = corner + ky * self.w;
            for px in row..row + self.k {
                let xs = &x[px * o + c0..][..len];
                if self.max {
                    for (m, &v) in m.iter_mut().zip(xs) {
                        *m = if v > *m { v } else { *m };
                    }
                } else {
                    for (m, &v) in m.iter_mut().zip(xs) {
                        *m += v;
                    }
                }
            }
        }
        m
    }

    /// Adds the gradient of the pooled output `dy` (`[o, ho, wo]`, or with `hwc` `[ho, wo, o]`)
    /// onto `dx` (pixel-major `[h·w, o]`, zero on entry); `x` is the pooled input,
    /// pixel-major. Max pooling sends each window's gradient to its first maximal element
    /// (row-major); `LANES` channels of a window at a time in registers.
    #[inline(always)]
    fn backward(&self, x: &[f32], dy: &[f32], o: usize, dx: &mut [f32], hwc: bool) {
        let scale = 1.0 / (self.k * self.k) as f32;
        let pout = self.ho * self.wo;
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let (pi, corner) = (oy * self.wo + ox, oy * self.s * self.w + ox * self.s);
                let mut c0 = 0;
                while c0 < o {
                    let len = LANES.min(o - c0);
                    let mut d = [0f32; LANES];
                    if hwc {
                        d[..len].copy_from_slice(&dy[pi * o + c0..][..len]);
                    } else {
                        for (d, oc) in d.iter_mut().zip(c0..c0 + len) {
                            *d = dy[oc * pout + pi];
                        }
                    }
                    if self.max {
                        let best = if len == LANES {
                            self.first_max(x, o, corner, (c0, LANES))
                        } else {
                            self.first_max(x, o, corner, (c0, len))
                        };
                        for ((oc, &b), &d) in (c0..c0 + len).zip(&best).zip(&d) {
                            dx[b as usize * o + oc] += d;
                        }
                    } else {
                        for ky in 0..self.k {
                            let row = corner + ky * self.w;
                            for px in row..row + self.k {
                                let g = &mut dx[px * o + c0..][..len];
                                for (g, &d) in g.iter_mut().zip(&d) {
                                    *g += d * scale;
                                }
                            }
                        }
                    }
                    c0 += len;
                }
            }
        }
    }

    /// For channels `c0..c0+len` (`len` ≤ `LANES`): the pixel of the first maximal element of
    /// the window at `corner` (row-major; pixel indices fit u32, checked by the caller).
    #[inline(always)]
    fn first_max(
        &self,
        x: &[f32],
        o: usize,
        corner: usize,
        (c0, len): (usize, usize),
    ) -> [u32; LANES] {
        let mut best = [corner as u32; LANES];
        let mut bestv = [f32::NEG_INFINITY; LANES];
        bestv[..len].copy_from_slice(&x[corner * o + c0..][..len]);
        for ky in 0..self.k {
            let row = corner + ky * self.w;
            for px in row..row + self.k {
                let xs = &x[px * o + c0..][..len];
                for ((b, bv), &v) in best.iter_mut().zip(bestv.iter_mut()).zip(xs) {
                    let better = v > *bv;
                    *bv = if better { v } else { *bv };
                    *b = if better { px as u32 } else { *b };
                }
            }
        }
        best
    }
}

/// One backward step over a block in one layout: `a` holds dL/dv[t+1] on entry and
/// dL/dv[t] on exit, `d` holds v[t] on entry and dL/dx[t] on exit, `g` is dL/ds[t].
#[inline(always)]
fn scan_back(p: &NeuronParams, a: &mut [f32], d: &mut [f32], g: &[f32]) {
    let (leak, th, ga) = (p.leak, p.threshold, p.gamma);
    match p.reset {
        Reset::Subtract => {
            for ((a, d), &g) in a.iter_mut().zip(d.iter_mut()).zip(g) {
                let grad = g * surrogate(*d, th, ga) + leak * *a;
                *a = grad;
                *d = grad;
            }
        }
        Reset::Zero => {
            for ((a, d), &g) in a.iter_mut().zip(d.iter_mut()).zip(g) {
                let v = *d;
                let carry = if v >= th { 0.0 } else { leak * *a };
                let grad = g * surrogate(v, th, ga) + carry;
                *a = grad;
                *d = grad;
            }
        }
    }
}

/// The convolution of the `t` images of sample `bi` (rows `ti·B + bi` of `x`, `[T·B, C, H, W]`,
/// or `[T·B, H, W, C]` with `hwc`) into `y` (`[T, P, O]`, pixel-major) with the channel-last
/// filters `wh` (`[O, KH·KW·C]`), as gemms over a few steps' patches at a time; `xh`
/// (`C·H·W`) and `cols` ([`patch_steps`] steps of `P·C·KH·KW`, zero at the padding taps) are
/// scratch.
#[inline(always)]
fn conv_sample(
    g: &Geom,
    (x, hwc): (&[f32], bool),
    (t, b, bi): (usize, usize, usize),
    (wh, o): (&[f32], usize),
    (xh, cols): (&mut [f32], &mut [f32]),
    y: &mut [f32],
) -> Result<()> {
    let (pix, patch, per, img) = (g.ho * g.wo, g.patch(), g.cols_per_image(), g.image());
    if patch == 0 || per == 0 {
        y.fill(0.0);
        return Ok(());
    }
    // A few steps at a time, so that their patches are still in L2 when the gemm reads them
    // (each output row's sum does not depend on how many rows one gemm takes).
    let steps = patch_steps(per, t);
    for t0 in (0..t).step_by(steps) {
        let n = steps.min(t - t0);
        for (ti, ci) in (t0..t0 + n).zip(cols.chunks_exact_mut(per)) {
            patches_in(g, (&x[(ti * b + bi) * img..][..img], hwc), xh, ci);
        }
        sgemm(
            (n * pix, o, patch),
            &mut y[t0 * pix * o..][..n * pix * o],
            o,
            (&cols[..n * per], Strides::rows(patch)),
            (wh, Strides::cols(patch)),
            false,
        )?;
    }
    Ok(())
}

/// Patch floats [`conv_sample`] builds before each gemm (512 KiB, half a Zen 4 L2).
const PATCH_CHUNK: usize = 128 * 1024;

/// How many steps' patches (`per` floats each) [`conv_sample`] builds before each gemm.
fn patch_steps(per: usize, t: usize) -> usize {
    (PATCH_CHUNK / per.max(1)).clamp(1, t.max(1))
}

/// The spikes of one step (`spk`, pixel-major `[P, O]`) into `dst`: pooled (`[O, PH, PW]`)
/// or moved to NCHW (`[O, P]`); with `hwc` pooled `[PH, PW, O]` or copied as they are. `tmp`
/// (`P·O` floats) is scratch for NCHW pooling.
#[inline(always)]
fn emit_spikes(
    pool: Option<PoolGeom>,
    spk: &[f32],
    (o, pix, hwc): (usize, usize, bool),
    (dst, tmp): (&mut [f32], &mut [f32]),
) {
    match pool {
        Some(q) => q.forward(spk, o, dst, (hwc, tmp)),
        None if hwc => dst.copy_from_slice(spk),
        None => to_planes(&spk[..pix * o], o, dst),
    }
}

/// Pixel-major `x` (`[P, O]`) → channel planes `out` (`[O, P]`), plane by plane: contiguous
/// stores, strided loads from a buffer that is still in cache.
#[inline(always)]
fn to_planes(x: &[f32], o: usize, out: &mut [f32]) {
    let p = x.len() / o.max(1);
    for (oc, plane) in out.chunks_exact_mut(p.max(1)).take(o).enumerate() {
        for (d, &v) in plane.iter_mut().zip(x[oc..].iter().step_by(o)) {
            *d = v;
        }
    }
}

/// The widest patch (`C·KH·KW`) the fused spiking convolution computes directly instead of by
/// im2col and gemm: with so few taps a gemm's output tile is loaded and stored around a handful
/// of multiply-adds, and each patch row is a copy of a few floats.
const DIRECT_PATCH: usize = 32;

/// Output channels per accumulator of the direct convolution and the pool (one AVX-512
/// register).
const LANES: usize = 16;

/// Set by [`force_im2col`].
static FORCE_IM2COL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For benchmarks only: with `on`, the fused spiking convolution takes im2col and gemm for
/// every layer, so both paths can be timed side by side in one process
/// (`examples/bench_kernels.rs fused`). Process-wide; off by default.
#[doc(hidden)]
pub fn force_im2col(on: bool) {
    FORCE_IM2COL.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Set by [`force_dense_events`].
static FORCE_DENSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For benchmarks and tests only: with `on`, the fused spiking convolution never takes the
/// event path, so both can be timed or compared in one process. Process-wide; off by default.
#[doc(hidden)]
pub fn force_dense_events(on: bool) {
    FORCE_DENSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The largest fraction of non-zero inputs (over one sample's T images) for which the
/// fused spiking convolution (training's forward and inference) gathers events instead of
/// running im2col and gemm.
const EVENT_DENSITY: f64 = 0.45;

/// The fewest output channels for which the event path runs: it sums 64 channels at a time
/// (`conv_events::BLOCK`), so narrower layers would mostly add zero lanes; the crossover
/// above was measured on 64.
const EVENT_MIN_OUT: usize = 32;

/// Whether the event path may run: not forced off, and the CPU has its kernel (AVX2, FMA).
fn event_path_on() -> bool {
    !FORCE_DENSE.load(std::sync::atomic::Ordering::Relaxed) && conv_events::available()
}

/// Whether the fused spiking convolution takes the direct path for `g`.
fn direct(g: &Geom) -> bool {
    g.patch() <= DIRECT_PATCH && !FORCE_IM2COL.load(std::sync::atomic::Ordering::Relaxed)
}

/// How the direct path reads patches: from a zero-padded channel-last copy of the image
/// (`[(H + 2·pad)·(W + 2·pad)·C]`), tap k of output pixel (oy, ox) is element
/// `base(oy, ox) + off[k]`, with taps in (ky, kx, c) order like the channel-last filters.
struct DirectTaps {
    /// Offset of each tap from the pixel's window corner.
    off: Vec<usize>,
    /// Width of the padded image.
    wp: usize,
}

impl DirectTaps {
    fn new(g: &Geom) -> Self {
        let wp = g.w + 2 * g.pad;
        let mut off = Vec::with_capacity(g.patch());
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                off.extend((0..g.c).map(|ci| (ky * wp + kx) * g.c + ci));
            }
        }
        DirectTaps { off, wp }
    }

    /// Elements of the padded image.
    fn padded_len(&self, g: &Geom) -> usize {
        (g.h + 2 * g.pad) * self.wp * g.c
    }

    /// Where output pixel (`oy`, `ox`)'s window starts in the padded image.
    #[inline(always)]
    fn base(&self, g: &Geom, oy: usize, ox: usize) -> usize {
        (oy * g.stride * self.wp + ox * g.stride) * g.c
    }

    /// Copies the image (`[C, H, W]`, or `[H, W, C]` with `hwc`: one copy per row) into the
    /// interior of `xp`, whose border stays zero (it is never written).
    #[inline(always)]
    fn pad_image_in(&self, g: &Geom, (img, hwc): (&[f32], bool), xp: &mut [f32]) {
        if !hwc {
            return self.pad_image(g, img, xp);
        }
        let row = g.w * g.c;
        for (iy, src) in img.chunks_exact(row).enumerate() {
            let at = ((iy + g.pad) * self.wp + g.pad) * g.c;
            xp[at..at + row].copy_from_slice(src);
        }
    }

    /// Copies the `[C, H, W]` image into the interior of `xp`, whose border stays zero (it is
    /// never written).
    #[inline(always)]
    fn pad_image(&self, g: &Geom, img: &[f32], xp: &mut [f32]) {
        let (hw, c) = (g.h * g.w, g.c);
        for (ci, plane) in img.chunks_exact(hw).enumerate() {
            for (iy, row) in plane.chunks_exact(g.w).enumerate() {
                let at = ((iy + g.pad) * self.wp + g.pad) * c + ci;
                for (ix, &v) in row.iter().enumerate() {
                    xp[at + ix * c] = v;
                }
            }
        }
    }
}

/// `PX` neighbouring output pixels (windows at `bases` of the padded image `xp`) of the
/// direct convolution into `y` (`PX` pixel-major rows of `O`): each output is
/// `Σ_k xp[base + off[k]]·wt[k·O + oc]`, summed over k in (ky, kx, c) order from zero.
/// `2·LANES` channels of `PX` pixels at a time in registers (each tap's input read once for
/// both channel blocks), then `LANES`, then the rest one by one: the same sums either way.
#[inline(always)]
fn direct_pixels<const PX: usize>(
    g: &Geom,
    (xp, bases, wp): (&[f32], [usize; PX], usize),
    (wt, o): (&[f32], usize),
    y: &mut [f32],
) {
    let mut c0 = 0;
    while c0 + 2 * LANES <= o {
        direct_block::<PX, 2>(g, (xp, bases, wp), (wt, o, c0), y);
        c0 += 2 * LANES;
    }
    if c0 + LANES <= o {
        direct_block::<PX, 1>(g, (xp, bases, wp), (wt, o, c0), y);
        c0 += LANES;
    }
    let kwc = g.kw * g.c;
    for oc in c0..o {
        for (j, &b) in bases.iter().enumerate() {
            let mut a = 0f32;
            for ky in 0..g.kh {
                let row = &xp[b + ky * wp * g.c..][..kwc];
                for (q, &xv) in row.iter().enumerate() {
                    a += xv * wt[(ky * kwc + q) * o + oc];
                }
            }
            y[j * o + oc] = a;
        }
    }
}

/// Channels `c0..c0 + CB·LANES` of [`direct_pixels`]: `PX·CB` accumulators of `LANES`, the
/// taps of window row `ky` read as one slice per pixel (no per-tap index checks).
#[inline(always)]
fn direct_block<const PX: usize, const CB: usize>(
    g: &Geom,
    (xp, bases, wp): (&[f32], [usize; PX], usize),
    (wt, o, c0): (&[f32], usize, usize),
    y: &mut [f32],
) {
    let kwc = g.kw * g.c;
    let mut acc = [[[0f32; LANES]; CB]; PX];
    for ky in 0..g.kh {
        let mut rows = [&xp[..0]; PX];
        for (r, &b) in rows.iter_mut().zip(&bases) {
            *r = &xp[b + ky * wp * g.c..][..kwc];
        }
        for q in 0..kwc {
            let k = ky * kwc + q;
            let mut wk = [&wt[..0]; CB];
            for (cb, w) in wk.iter_mut().enumerate() {
                *w = &wt[k * o + c0 + cb * LANES..][..LANES];
            }
            for (a, row) in acc.iter_mut().zip(&rows) {
                let xv = row[q];
                for (a, wk) in a.iter_mut().zip(&wk) {
                    for (a, &w) in a.iter_mut().zip(wk.iter()) {
                        *a += xv * w;
                    }
                }
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        for (cb, a) in a.iter().enumerate() {
            y[j * o + c0 + cb * LANES..][..LANES].copy_from_slice(a);
        }
    }
}

/// Widest single-channel window whose binary patterns [`DirectFilters`] tabulates (2^10 sums).
const TABLE_TAPS: usize = 10;

/// The direct path's filters: `wt` as `[C·KH·KW, O]`, and for a single-channel window of at
/// most [`TABLE_TAPS`] taps on an image at most 64 wide and high (padded), with finite weights,
/// `table`: for every binary window pattern `m` (bit k set iff tap k, in (ky, kx) order,
/// is 1), the `O` sums `Σ_{k ∈ m} wt[k·O + oc]` in increasing k from zero (`[2^K, O]`).
///
/// The table gives exactly the dense sum of a binary window: the dense sum adds
/// `x_k·w_k`, which is `w_k` for a 1 and ±0 for a 0, and adding ±0 to a sum that started at
/// +0 leaves it unchanged, so only the 1 taps' weights are added, in the same order. Poisson
/// spikes are binary, so a network's first layer reads one table row per output pixel instead
/// of `K·O` multiply-adds.
struct DirectFilters {
    wt: Vec<f32>,
    table: Option<Vec<f32>>,
}

impl DirectFilters {
    /// From the channel-last filters `wh` (`[O, KH·KW·C]`); `None` off the direct path.
    fn new(g: &Geom, wh: &[f32], o: usize, direct: bool) -> Self {
        if !direct {
            return DirectFilters {
                wt: Vec::new(),
                table: None,
            };
        }
        let k = g.patch();
        let wt = transpose(wh, (o, k));
        let fits = g.c == 1
            && (1..=TABLE_TAPS).contains(&k)
            && g.h + 2 * g.pad <= 64
            && g.w + 2 * g.pad <= 64;
        let table = (fits && wt.iter().all(|w| w.is_finite())).then(|| {
            let mut t = vec![0f32; (1 << k) * o];
            for m in 1..1usize << k {
                // The highest tap is added last onto the sum of the lower ones.
                let hi = (usize::BITS - 1 - m.leading_zeros()) as usize;
                let (lower, rest) = t.split_at_mut(m * o);
                let prev = &lower[(m & !(1 << hi)) * o..][..o];
                for ((d, &a), &w) in rest[..o].iter_mut().zip(prev).zip(&wt[hi * o..][..o]) {
                    *d = a + w;
                }
            }
            t
        });
        DirectFilters { wt, table }
    }
}

/// The direct convolution of one image, already padded into `xp` (see [`DirectTaps`]), into
/// `y` (`[P, O]`, pixel-major), with the filters `f`. A binary image with a table (see
/// [`DirectFilters`]) reads one table row per pixel; otherwise four pixels of a row at a
/// time, the row's rest two and one at a time.
#[inline(always)]
fn conv_image_direct(
    g: &Geom,
    (taps, xp): (&DirectTaps, &[f32]),
    (f, o): (&DirectFilters, usize),
    y: &mut [f32],
) {
    if let Some(table) = &f.table {
        if conv_image_binary(g, (taps, xp), (table, o), y) {
            return;
        }
    }
    let (wp, wt) = (taps.wp, &f.wt[..]);
    // Neighbouring output pixels' windows start `stride·C` apart.
    let step = g.stride * g.c;
    for oy in 0..g.ho {
        let row = &mut y[oy * g.wo * o..][..g.wo * o];
        let mut ox = 0;
        while ox + 4 <= g.wo {
            let b0 = taps.base(g, oy, ox);
            let bases = [b0, b0 + step, b0 + 2 * step, b0 + 3 * step];
            direct_pixels::<4>(g, (xp, bases, wp), (wt, o), &mut row[ox * o..]);
            ox += 4;
        }
        if ox + 2 <= g.wo {
            let b0 = taps.base(g, oy, ox);
            direct_pixels::<2>(g, (xp, [b0, b0 + step], wp), (wt, o), &mut row[ox * o..]);
            ox += 2;
        }
        if ox < g.wo {
            let bases = [taps.base(g, oy, ox)];
            direct_pixels::<1>(g, (xp, bases, wp), (wt, o), &mut row[ox * o..]);
        }
    }
}

/// [`conv_image_direct`] by table for a single-channel padded image `xp` whose values are
/// all 0 or 1: each padded row becomes a bit mask, each output pixel's window pattern is cut
/// from `KH` masks, and its `O` currents are that pattern's table row. Returns false, writing
/// nothing, when a value is neither 0 nor 1.
#[inline(always)]
fn conv_image_binary(
    g: &Geom,
    (taps, xp): (&DirectTaps, &[f32]),
    (table, o): (&[f32], usize),
    y: &mut [f32],
) -> bool {
    let (wp, hp) = (taps.wp, g.h + 2 * g.pad);
    let mut masks = [0u64; 64];
    let mut other = false;
    for (m, row) in masks.iter_mut().zip(xp.chunks_exact(wp)).take(hp) {
        let (mut bits, mut odd) = (0u64, false);
        for (i, &v) in row.iter().enumerate() {
            bits |= u64::from(v == 1.0) << i;
            odd |= v != 0.0 && v != 1.0;
        }
        *m = bits;
        other |= odd;
    }
    if other {
        return false;
    }
    let window = (1u64 << g.kw) - 1;
    for oy in 0..g.ho {
        let rows = &masks[oy * g.stride..][..g.kh];
        for ox in 0..g.wo {
            let mut pat = 0usize;
            for (ky, &m) in rows.iter().enumerate() {
                pat |= (((m >> (ox * g.stride)) & window) as usize) << (ky * g.kw);
            }
            let src = &table[pat * o..][..o];
            let dst = &mut y[(oy * g.wo + ox) * o..][..o];
            let mut dc = dst.chunks_exact_mut(LANES);
            let mut sc = src.chunks_exact(LANES);
            for (d, s) in (&mut dc).zip(&mut sc) {
                d.copy_from_slice(s);
            }
            for (d, &s) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
                *d = s;
            }
        }
    }
    true
}

/// Adds one image's share of the weight gradient on the direct path:
/// `dwt[k·O + oc] += Σ_p xp[base_p + off[k]]·gy[p·O + oc]`, with `xp` the padded image, `gy`
/// its dL/dy (`[P, O]`, pixel-major) and `dwt` as `[C·KH·KW, O]`. The image's sum runs over
/// pixels in order from zero and is then added onto `dwt`; 3×3 single-channel filters keep
/// all nine taps' sums of `LANES` channels in registers, other widths one tap's at a time.
#[inline(always)]
fn dw_image_direct(
    g: &Geom,
    (taps, xp): (&DirectTaps, &[f32]),
    (gy, o): (&[f32], usize),
    dwt: &mut [f32],
) {
    match taps.off.len() {
        9 => {
            let off: [usize; 9] = std::array::from_fn(|k| taps.off[k]);
            dw_image_taps(g, (taps, xp, off), (gy, o), dwt)
        }
        // Any other width: tap by tap, each tap's sum the same way.
        _ => {
            for (k, &of) in taps.off.iter().enumerate() {
                dw_image_taps(g, (taps, xp, [of]), (gy, o), &mut dwt[k * o..]);
            }
        }
    }
}

/// [`dw_image_direct`] for the `K` taps at `off`, onto rows `0..K` of `dwt`, each tap's sum of
/// `LANES` channels in a register.
#[inline(always)]
fn dw_image_taps<const K: usize>(
    g: &Geom,
    (taps, xp, off): (&DirectTaps, &[f32], [usize; K]),
    (gy, o): (&[f32], usize),
    dwt: &mut [f32],
) {
    let mut c0 = 0;
    while c0 < o {
        let len = LANES.min(o - c0);
        // A constant length for whole chunks, so the sums stay in registers.
        let acc = if len == LANES {
            dw_chunk::<K>(g, (taps, xp, &off), (gy, o), (c0, LANES))
        } else {
            dw_chunk::<K>(g, (taps, xp, &off), (gy, o), (c0, len))
        };
        for (k, a) in acc.iter().enumerate() {
            for (d, &v) in dwt[k * o + c0..][..len].iter_mut().zip(a) {
                *d += v;
            }
        }
        c0 += len;
    }
}

/// The image's weight-gradient sums of channels `c0..c0+len` (`len` ≤ `LANES`) for `K` taps.
#[inline(always)]
fn dw_chunk<const K: usize>(
    g: &Geom,
    (taps, xp, off): (&DirectTaps, &[f32], &[usize; K]),
    (gy, o): (&[f32], usize),
    (c0, len): (usize, usize),
) -> [[f32; LANES]; K] {
    let mut acc = [[0f32; LANES]; K];
    for (pi, gp) in gy.chunks_exact(o).enumerate() {
        let b = taps.base(g, pi / g.wo, pi % g.wo);
        let gc = &gp[c0..][..len];
        for (a, &of) in acc.iter_mut().zip(off) {
            let xv = xp[b + of];
            for (a, &gv) in a.iter_mut().zip(gc) {
                *a += xv * gv;
            }
        }
    }
    acc
}

/// `[R, Cn]` → `[Cn, R]` (row-major both).
fn transpose(x: &[f32], (r, cn): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, row) in x.chunks_exact(cn).take(r).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * r + i] = v;
        }
    }
    out
}

/// One sample's image-sized blocks of a buffer, when the buffer is there.
type SampleBlocks<'a> = Option<Vec<&'a mut [f32]>>;

/// What [`conv_lif_forward`] computes.
struct FusedForward {
    /// Spikes `[T·B, O, P]` (NCHW) or pooled `[T·B, O, PH, PW]`.
    out: Vec<f32>,
    /// The pre-activation, sample-major `[B, T, P, O]` (pixel-major), when asked to keep it.
    y: Option<Vec<f32>>,
    /// Spikes before pooling (counted only when asked).
    spikes: u64,
    /// The largest pre-activation (−∞ when there is none).
    max_current: f32,
}

/// The spiking convolution forward, sample by sample in parallel: for each step t of a
/// sample, the convolution of its image (`conv_image`, in cache), the neuron step
/// (`neuron::step_fwd`) and the pool or NCHW move of the spikes, so neither the layer's
/// pre-activation nor its unpooled spikes go through memory unless `save` keeps the
/// pre-activation for the backward. `x`: `[T·B, C, H, W]` time-major, `w`: `[O, C·KH·KW]`.
/// `count`: count the spikes. Errors only on inconsistent sizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn conv_lif_forward(
    g: &Geom,
    (x, w, o): (&[f32], &[f32], usize),
    (t, p, pool): (usize, &NeuronParams, Option<PoolGeom>),
    (save, count): (bool, bool),
    lay: MapLayout,
) -> Result<FusedForward> {
    let (pix, patch, per, img) = (g.ho * g.wo, g.patch(), g.cols_per_image(), g.image());
    if x.len() != g.n * img || w.len() != o * patch || t == 0 || g.n % t != 0 {
        bail!("conv2d_lif: input, weights or steps do not match the geometry")
    }
    let b = g.n / t;
    let out_per = pool.map_or(pix * o, |q| q.ho * q.wo * o);
    let mut out = par_zeros(g.n * out_per);
    let mut y = save.then(|| par_zeros(g.n * pix * o));
    if out_per == 0 || pix * o == 0 || b == 0 {
        return Ok(FusedForward {
            out,
            y,
            spikes: 0,
            max_current: f32::NEG_INFINITY,
        });
    }
    let wh = if patch > 0 {
        filters_hwc(g, w, false)
    } else {
        Vec::new()
    };
    let direct = direct(g);
    // The direct path's filters and its taps.
    let wt = DirectFilters::new(g, &wh, o, direct);
    let taps = DirectTaps::new(g);
    // The event path's filters (on the gemm path only; the events' u32 offsets must fit).
    let fits =
        img < u32::MAX as usize && patch.saturating_mul(conv_events::BLOCK) < u32::MAX as usize;
    let events = (!direct && o >= EVENT_MIN_OUT && fits && event_path_on())
        .then(|| EventFilters::new(&wh, o, patch))
        .flatten();
    let n_s = t * pix * o; // one sample's pre-activation
    let y_blocks: Vec<Option<&mut [f32]>> = match y.as_mut() {
        Some(y) => y.chunks_mut(n_s).map(Some).collect(),
        None => (0..b).map(|_| None).collect(),
    };
    let (spikes, max_current) = blocks_by_sample(&mut out, b, out_per)
        .into_par_iter()
        .zip(y_blocks)
        .enumerate()
        // Pieces as small as rayon makes them, so a core that finishes early takes samples
        // from the other: the scratch is leased from `FWD_SCRATCH`, not made per piece.
        .map_init(
            // Scratch per piece, reused across samples and calls: every buffer is overwritten
            // before it is read, except `u` (reset per sample), the padding taps of `cols` and
            // the border of the padded image, which only depend on the key's geometry (the
            // event lists are rebuilt per image and read only up to their cursor).
            // The direct path needs no patches, holds its padded image (`DirectTaps`) in the
            // image buffer, and without `save` only one step's pre-activation.
            || {
                FWD_SCRATCH.lease((g.per_sample(), o, t, direct, save), || {
                    let n = pix * o;
                    let step_y = if direct { n } else { n_s };
                    (
                        vec![0f32; if direct { taps.padded_len(g) } else { img }],
                        vec![0f32; if direct { 0 } else { patch_steps(per, t) * per }],
                        vec![0f32; if save { 0 } else { step_y }],
                        vec![0f32; n],
                        vec![0f32; n],
                        vec![0f32; n],
                        InputEvents::default(),
                    )
                })
            },
            |lease, (bi, (outs, ys))| -> Result<(u64, f32)> {
                let (xh, cols, yt, u, spk, pooled, ev) = &mut **lease;
                let p = *p;
                if direct {
                    // Step by step: each step's pre-activation is made, scanned and pooled
                    // while it is in cache (into the saved buffer when there is one).
                    u.fill(0.0);
                    let (mut fired, mut mx) = (0u64, f32::NEG_INFINITY);
                    let mut ys = ys;
                    for (ti, dst) in outs.into_iter().enumerate() {
                        let yi: &mut [f32] = match ys.as_mut() {
                            Some(v) => &mut v[ti * pix * o..][..pix * o],
                            None => &mut yt[..],
                        };
                        taps.pad_image_in(g, (&x[(ti * b + bi) * img..][..img], lay.input_hwc), xh);
                        conv_image_direct(g, (&taps, xh), (&wt, o), yi);
                        mx = mx.max(max_f32(yi));
                        step_fwd(&p, u, spk, yi);
                        if count {
                            fired += count_positive(spk);
                        }
                        emit_spikes(pool, spk, (o, pix, lay.output_hwc), (dst, pooled));
                    }
                    return Ok((fired, mx));
                }
                let ys: &mut [f32] = match ys {
                    Some(v) => v,
                    None => yt,
                };
                let sample_events = events.as_ref().filter(|_| {
                    let nz = (0..t)
                        .map(|ti| count_nonzero(&x[(ti * b + bi) * img..][..img]))
                        .sum::<usize>();
                    (nz as f64) <= EVENT_DENSITY * (t * img) as f64
                });
                if let Some(f) = sample_events {
                    for (ti, yi) in ys.chunks_exact_mut(pix * o).enumerate() {
                        ev.fill(g, (&x[(ti * b + bi) * img..][..img], lay.input_hwc));
                        if !conv_image_events(g, ev, f, yi) {
                            bail!("conv2d_lif: the event path ran on a CPU without it");
                        }
                    }
                } else {
                    conv_sample(g, (x, lay.input_hwc), (t, b, bi), (&wh, o), (xh, cols), ys)?;
                }
                let mx = max_f32(ys);
                u.fill(0.0);
                let mut fired = 0u64;
                for (yi, dst) in ys.chunks_exact(pix * o).zip(outs) {
                    step_fwd(&p, u, spk, yi);
                    if count {
                        fired += count_positive(spk);
                    }
                    emit_spikes(pool, spk, (o, pix, lay.output_hwc), (dst, pooled));
                }
                Ok((fired, mx))
            },
        )
        .try_reduce(
            || (0, f32::NEG_INFINITY),
            |a, b| Ok((a.0 + b.0, a.1.max(b.1))),
        )?;
    Ok(FusedForward {
        out,
        y,
        spikes,
        max_current,
    })
}

/// [`conv_lif_forward`]'s scratch sets (image, patches, one step's or one sample's
/// pre-activation, membrane, spikes, one step's pooled NCHW spikes before their transpose,
/// the event path's lists), by (geometry without N, output channels, T, direct path, saving
/// the pre-activation): everything their sizes and kept contents depend on.
type FwdScratch = (
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    InputEvents,
);
type FwdKey = (Geom, usize, usize, bool, bool);
static FWD_SCRATCH: ScratchPool<FwdKey, FwdScratch> = ScratchPool::new(8);

/// [`conv_lif_backward`]'s scratch sets, by (geometry without N, output channels, T, dW wanted,
/// dX wanted, direct path).
type BackKey = (Geom, usize, usize, bool, bool, bool);
static BACK_SCRATCH: ScratchPool<BackKey, BackScratch> = ScratchPool::new(8);

/// One worker's scratch in [`conv_lif_backward`]: v[t] then dL/dy[t] of one sample (`vs`),
/// the carried membrane gradient, the step's spikes and their gradient, and one image's
/// `[H, W, C]` copy, patches and patch gradients.
struct BackScratch {
    vs: Vec<f32>,
    u: Vec<f32>,
    spk: Vec<f32>,
    gs: Vec<f32>,
    xh: Vec<f32>,
    cols: Vec<f32>,
    dcols: Vec<f32>,
    /// The direct path's padded image (see [`DirectTaps`]).
    xp: Vec<f32>,
}

/// The spiking convolution backward from the saved pre-activation `y` (`[T·B·P, O]`; `None`
/// on the direct path, which recomputes each sample's from `x`) and the output gradient `gout` (dL/ds `[T·B, O, P]`, or with `pool` the pooled gradient), sample
/// by sample: recompute v[t], then sweep t backwards (the detached-reset BPTT of
/// `neuron::lif_scan`; the pool's gradient is spread onto the spikes of step t, recomputed
/// from v[t]), and with each step's dL/dy, still in cache, add its share of dW (`gyᵀ·cols`,
/// the image's patches rebuilt) and, with `want_dx`, write that image's dX (`col2im(gy·W)`).
/// dW is summed per fixed group of samples, then the groups in order (`DW_GROUPS`), so it
/// does not depend on the thread count. Errors only on inconsistent sizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn conv_lif_backward(
    g: &Geom,
    (x, w, o): (&[f32], &[f32], usize),
    (y, gout): (Option<&[f32]>, &[f32]),
    (t, p, pool): (usize, &NeuronParams, Option<PoolGeom>),
    (want_dw, want_dx): (bool, bool),
    lay: MapLayout,
) -> Result<RowGrads> {
    let (pix, patch, per, img) = (g.ho * g.wo, g.patch(), g.cols_per_image(), g.image());
    let per_n = pix * o;
    let g_per = pool.map_or(per_n, |q| q.ho * q.wo * o);
    if x.len() != g.n * img
        || w.len() != o * patch
        || t == 0
        || g.n % t != 0
        || y.is_some_and(|y| y.len() != g.n * per_n)
        || (y.is_none() && !direct(g))
        || gout.len() != g.n * g_per
    {
        bail!("conv2d_lif backward: input, weights, state or gradient do not match the geometry")
    }
    let b = g.n / t;
    let mut dx = want_dx.then(|| par_zeros(g.n * img));
    if b == 0 || per_n == 0 || patch == 0 {
        return Ok((want_dw.then(|| vec![0f32; o * patch]), dx));
    }
    let wh = filters_hwc(g, w, false);
    let (direct, taps) = (direct(g), DirectTaps::new(g));
    let wt = DirectFilters::new(g, &wh, o, direct);
    let group = b.div_ceil(DW_GROUPS); // samples per group
    let mut groups: Vec<Vec<(usize, SampleBlocks)>> =
        (0..b.div_ceil(group)).map(|_| Vec::new()).collect();
    let dx_blocks: Vec<SampleBlocks> = match dx.as_mut() {
        Some(d) => blocks_by_sample(d, b, img).into_iter().map(Some).collect(),
        None => (0..b).map(|_| None).collect(),
    };
    for (bi, blk) in dx_blocks.into_iter().enumerate() {
        groups[bi / group].push((bi, blk));
    }
    let partials = groups
        .into_par_iter()
        // Pieces as small as rayon makes them, as in the forward (scratch from BACK_SCRATCH).
        .map_init(
            // Scratch per piece, reused across groups and calls: every buffer is overwritten
            // before it is read, except the padding taps of `cols` (only im2col writes it) and
            // the padded image's border, which only depend on the key's geometry.
            || {
                let key = (g.per_sample(), o, t, want_dw, want_dx, direct);
                BACK_SCRATCH.lease(key, || BackScratch {
                    vs: vec![0f32; t * per_n],
                    u: vec![0f32; per_n],
                    spk: vec![0f32; per_n],
                    gs: vec![0f32; per_n],
                    xh: vec![0f32; img],
                    cols: vec![0f32; if want_dw && !direct { t * per } else { 0 }],
                    dcols: vec![0f32; if want_dx { t * per } else { 0 }],
                    xp: vec![0f32; if direct { taps.padded_len(g) } else { 0 }],
                })
            },
            |lease, samples| -> Result<Option<Vec<f32>>> {
                let sc: &mut BackScratch = lease;
                let p = *p;
                let mut dw = want_dw.then(|| vec![0f32; o * patch]);
                let BackScratch {
                    vs,
                    u,
                    spk,
                    gs,
                    xh,
                    cols,
                    dcols,
                    xp,
                } = sc;
                for (bi, mut dxs) in samples {
                    u.fill(0.0);
                    match y {
                        Some(y) => {
                            let y_s = &y[bi * t * per_n..][..t * per_n];
                            let steps = vs.chunks_exact_mut(per_n).zip(y_s.chunks_exact(per_n));
                            for (v_t, src) in steps {
                                for ((u, d), &x) in u.iter_mut().zip(v_t.iter_mut()).zip(src) {
                                    let v = p.leak * *u + x;
                                    *d = v;
                                    *u = reset(&p, v);
                                }
                            }
                        }
                        // Not saved: the direct path recomputes y[t] (the forward's values).
                        None => {
                            for (ti, v_t) in vs.chunks_exact_mut(per_n).enumerate() {
                                let xi = &x[(ti * b + bi) * img..][..img];
                                taps.pad_image_in(g, (xi, lay.input_hwc), xp);
                                conv_image_direct(g, (&taps, xp), (&wt, o), v_t);
                                for (u, d) in u.iter_mut().zip(v_t.iter_mut()) {
                                    let v = p.leak * *u + *d;
                                    *d = v;
                                    *u = reset(&p, v);
                                }
                            }
                        }
                    }
                    let a = &mut u[..];
                    a.fill(0.0);
                    for (ti, gy) in vs.chunks_exact_mut(per_n).enumerate().rev() {
                        let g_t = &gout[(ti * b + bi) * g_per..][..g_per];
                        match pool {
                            Some(q) => {
                                for (s, &v) in spk.iter_mut().zip(gy.iter()) {
                                    *s = heaviside(v, p.threshold);
                                }
                                gs.fill(0.0);
                                q.backward(spk, g_t, o, &mut gs[..], lay.output_hwc);
                            }
                            None if lay.output_hwc => gs.copy_from_slice(g_t),
                            None => {
                                for (pi, gs) in gs.chunks_exact_mut(o).enumerate() {
                                    for (oc, gs) in gs.iter_mut().enumerate() {
                                        *gs = g_t[oc * pix + pi];
                                    }
                                }
                            }
                        }
                        scan_back(&p, a, gy, gs); // gy: v[t] in, dL/dy[t] out
                    }
                    // vs now holds the sample's dL/dy `[T·P, O]`: one gemm each for dW and dX.
                    // dW is `[C·KH·KW, O]` here on both paths, turned into `[O, C·KH·KW]` after
                    // the group.
                    if let (Some(dwt), true) = (dw.as_mut(), direct) {
                        for (ti, gy) in vs.chunks_exact(per_n).enumerate() {
                            let xi = &x[(ti * b + bi) * img..][..img];
                            taps.pad_image_in(g, (xi, lay.input_hwc), xp);
                            dw_image_direct(g, (&taps, xp), (gy, o), dwt);
                        }
                    } else if let Some(dwt) = dw.as_mut() {
                        for (ti, ci) in cols.chunks_exact_mut(per).enumerate() {
                            let xi = &x[(ti * b + bi) * img..][..img];
                            patches_in(g, (xi, lay.input_hwc), xh, ci);
                        }
                        // colsᵀ·dL/dy: each entry the same sum over the sample's T·P rows as
                        // dL/dyᵀ·cols, but `gemm` then packs dL/dy (T·P·O floats) instead of
                        // the patches (T·P·C·KH·KW) and dL/dy both.
                        let (a, c) = (
                            (&cols[..], Strides::cols(patch)),
                            (&vs[..], Strides::rows(o)),
                        );
                        sgemm((patch, o, t * pix), dwt, o, a, c, true)?;
                    }
                    if let Some(dxs) = dxs.as_mut() {
                        let (a, c) = ((&vs[..], Strides::rows(o)), (&wh[..], Strides::rows(patch)));
                        sgemm((t * pix, patch, o), &mut dcols[..], patch, a, c, false)?;
                        for (dci, dxi) in dcols.chunks_exact(per).zip(dxs.iter_mut()) {
                            image_grad_in(g, dci, xh, (dxi, lay.input_hwc));
                        }
                    }
                }
                Ok(dw.map(|dwt| transpose(&dwt, (patch, o))))
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let dw = want_dw.then(|| sum_dw_groups(g, partials, o * patch));
    Ok((dw, dx))
}

/// Convolution then the LIF/IF scan over T as one custom op of (x, w) → spikes (see
/// [`conv2d_lif`]). Keeps the pre-activation of the last forward for the backward, except on
/// the direct path (narrow patches), whose backward recomputes it.
struct ConvLifOp {
    g: Geom,
    o: usize,
    t: usize,
    p: NeuronParams,
    pool: Option<PoolGeom>,
    lay: MapLayout,
    /// The pre-activation `[N·P, O]` of the last forward, taken by the backward.
    saved: Mutex<Option<Vec<f32>>>,
}

impl ConvLifOp {
    /// The input's dimensions in this op's layout.
    fn input_dims(&self) -> [usize; 4] {
        let g = self.g;
        if self.lay.input_hwc {
            [g.n, g.h, g.w, g.c]
        } else {
            [g.n, g.c, g.h, g.w]
        }
    }
}

/// The dimensions of a fused layer's spikes `(n, o, h, w)` in its output layout.
fn output_dims(lay: MapLayout, (n, o, h, w): (usize, usize, usize, usize)) -> Shape {
    if lay.output_hwc {
        Shape::from((n, h, w, o))
    } else {
        Shape::from((n, o, h, w))
    }
}

impl CustomOp2 for ConvLifOp {
    fn name(&self) -> &'static str {
        "snnc-conv2d-lif"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.g;
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        if l1.shape().dims() != self.input_dims() || w.len() != self.o * g.patch() {
            bail!("{}: unexpected input shapes", self.name())
        }
        let neuron = (self.t, &self.p, self.pool);
        // The direct path's backward recomputes the pre-activation, which costs less than
        // writing it out here and reading it back (32 MB per batch for the first layer).
        let f = conv_lif_forward(&g, (x, w, self.o), neuron, (!direct(&g), false), self.lay)?;
        if let Ok(mut saved) = self.saved.lock() {
            *saved = f.y;
        }
        let out = f.out;
        let (ho, wo) = self.pool.map_or((g.ho, g.wo), |q| (q.ho, q.wo));
        let shape = output_dims(self.lay, (g.n, self.o, ho, wo));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.g;
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        let want = (w.track_op(), x.track_op());
        let (name, neuron) = (self.name(), (self.t, &self.p, self.pool));
        let saved = self.saved.lock().ok().and_then(|mut c| c.take());
        let (dw, dx) = with_cpu_data(&x, name, |xd| {
            with_cpu_data(&w, name, |wd| {
                with_cpu_data(&grad, name, |gd| {
                    let y = match saved {
                        Some(y) => Some(y),
                        None if direct(&g) => None,
                        // Recompute (only when a backward runs twice over one forward).
                        None => {
                            let (xw, lay) = ((xd, wd, self.o), self.lay);
                            conv_lif_forward(&g, xw, neuron, (true, false), lay)?.y
                        }
                    };
                    let (xw, yg) = ((xd, wd, self.o), (y.as_deref(), gd));
                    conv_lif_backward(&g, xw, yg, neuron, want, self.lay)
                })
            })
        })????;
        let dx = dx
            .map(|d| Tensor::from_vec(d, &self.input_dims()[..], x.device()))
            .transpose()?;
        let dw = dw
            .map(|d| Tensor::from_vec(d, w.shape(), w.device()))
            .transpose()?;
        Ok((dx, dw))
    }
}

/// The checks both fused entry points make: valid neuron parameters, shapes in layout `lay`,
/// a leading dimension that is a multiple of `t`, a pool that fits; the geometry and the pool's.
fn fused_geometry(
    x: &Tensor,
    w: &Tensor,
    conv: (usize, usize),
    (t, p, pool): (usize, &NeuronParams, Option<SpikePool>),
    lay: MapLayout,
) -> Result<(Geom, Option<PoolGeom>)> {
    p.validate()?;
    let g = check_shapes_in(x, w, conv, lay.input_hwc)?;
    if t == 0 || g.n % t != 0 {
        bail!(
            "conv2d_lif: leading dimension {} is not a multiple of T = {t}",
            g.n
        )
    }
    let pool = match pool {
        Some(q) => Some(PoolGeom::new(q, g.ho, g.wo)?),
        None => None,
    };
    Ok((g, pool))
}

/// A convolution layer with a spiking activation, fused: `conv2d(x, w, stride, pad)` followed
/// by the LIF/IF scan of `neuron::lif_scan_steps` over `t` steps and, with `pool`, the pooling
/// of the spikes (`pool::{max,avg}_pool2d` rules), as one graph node.
/// `x`: `[T·B, C, H, W]` time-major (row `t·B + b` is step `t` of sample `b`), `w`:
/// `[O, C, K, K]`; returns the spikes `[T·B, O, HO, WO]` (0/1), or pooled `[T·B, O, PH, PW]`.
/// The same values as the ops in sequence (same products per output, same scan arithmetic)
/// and the same gradients up to summation order; it saves the gradient nodes of the conv
/// output and of the spikes (each a zeroed tensor and an add in candle's backprop), both NCHW
/// transposes and the full-size spike tensor, and runs in parallel over samples. Errors: shapes as [`conv2d`], a pool window larger than
/// the output, a leading dimension that is not a multiple of `t`, invalid neuron parameters.
pub fn conv2d_lif(
    x: &Tensor,
    w: &Tensor,
    conv: (usize, usize),
    t: usize,
    p: &NeuronParams,
    pool: Option<SpikePool>,
) -> Result<Tensor> {
    conv2d_lif_in(x, w, conv, (t, p, pool), MapLayout::default())
}

/// [`conv2d_lif`] with the input and the spikes in the layouts `lay` says (channel-last:
/// `x` `[T·B, H, W, C]`, spikes `[T·B, HO, WO, O]` or pooled `[T·B, PH, PW, O]`): the same
/// values and gradients, element for element, in the other order.
pub fn conv2d_lif_in(
    x: &Tensor,
    w: &Tensor,
    (stride, pad): (usize, usize),
    (t, p, pool): (usize, &NeuronParams, Option<SpikePool>),
    lay: MapLayout,
) -> Result<Tensor> {
    let (g, pool) = fused_geometry(x, w, (stride, pad), (t, p, pool), lay)?;
    let op = ConvLifOp {
        g,
        o: w.dim(0)?,
        t,
        p: *p,
        pool,
        lay,
        saved: Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

/// What [`conv2d_lif_infer`] computes.
#[derive(Debug, Clone)]
pub struct ConvLifInference {
    /// The spikes `[T·B, O, HO, WO]` (0/1), or pooled `[T·B, O, PH, PW]` (channel-last
    /// `[T·B, HO, WO, O]` / `[T·B, PH, PW, O]` when the layout says); not tracked.
    pub out: Tensor,
    /// The largest element of the convolution output (the neurons' input current).
    pub max_current: f32,
    /// Spikes emitted before any pooling, and the neuron·steps they were counted over
    /// (`T·B·O·HO·WO`).
    pub spikes: u64,
    pub neuron_steps: u64,
}

/// [`conv2d_lif`] for inference: the same values (same im2col, gemm and scan arithmetic),
/// but no graph node (the result tracks no gradient, `w` is read detached), nothing kept for
/// a backward, and the summary an observer needs (maximum current, spike count) measured on
/// the way. Shapes and errors as [`conv2d_lif`].
pub fn conv2d_lif_infer(
    x: &Tensor,
    w: &Tensor,
    conv: (usize, usize),
    t: usize,
    p: &NeuronParams,
    pool: Option<SpikePool>,
) -> Result<ConvLifInference> {
    conv2d_lif_infer_in(x, w, conv, (t, p, pool), MapLayout::default())
}

/// [`conv2d_lif_infer`] with the input and the spikes in the layouts `lay` says (see
/// [`conv2d_lif_in`]).
pub fn conv2d_lif_infer_in(
    x: &Tensor,
    w: &Tensor,
    (stride, pad): (usize, usize),
    (t, p, pool): (usize, &NeuronParams, Option<SpikePool>),
    lay: MapLayout,
) -> Result<ConvLifInference> {
    let (x, w) = (x.detach().contiguous()?, w.detach().contiguous()?);
    let (g, pool) = fused_geometry(&x, &w, (stride, pad), (t, p, pool), lay)?;
    let o = w.dim(0)?;
    let name = "snnc-conv2d-lif-infer";
    let cpu = Device::Cpu;
    let rows = g.n * g.ho * g.wo;
    let f = with_cpu_data(&x, name, |xd| {
        with_cpu_data(&w, name, |wd| {
            conv_lif_forward(&g, (xd, wd, o), (t, p, pool), (false, true), lay)
        })
    })???;
    let (out, max_current, spikes) = (f.out, f.max_current, f.spikes);
    let (ho, wo) = pool.map_or((g.ho, g.wo), |q| (q.ho, q.wo));
    Ok(ConvLifInference {
        out: Tensor::from_vec(out, output_dims(lay, (g.n, o, ho, wo)), &cpu)?,
        max_current,
        spikes,
        neuron_steps: (rows * o) as u64,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::backend::candle::neuron::lif_scan_reference;
    use crate::backend::candle::pool;

    fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// `|got − want| ≤ tol·max(1, |want|)` element by element.
    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths differ");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * 1f32.max(w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    /// The reference: candle's conv2d, the scan built from plain candle ops, then the pool.
    fn reference(
        x: &Tensor,
        w: &Tensor,
        (s, pad): (usize, usize),
        t: usize,
        p: &NeuronParams,
        q: Option<SpikePool>,
    ) -> Tensor {
        let y = x.conv2d(w, pad, s, 1, 1).unwrap();
        let dims = y.dims().to_vec();
        let spikes = lif_scan_reference(&y.reshape((t, ())).unwrap(), p)
            .unwrap()
            .reshape(dims)
            .unwrap();
        match q {
            None => spikes,
            Some(q) if q.max => pool::max_pool2d(&spikes, q.k, q.s).unwrap(),
            // Candle's own average pooling (window = stride) where pool.rs would use it.
            Some(q) => spikes.avg_pool2d_with_stride(q.k, q.s).unwrap(),
        }
    }

    struct Case {
        t: usize,
        b: usize,
        c: usize,
        hw: usize,
        o: usize,
        conv: (usize, usize),
    }

    fn case(k: &Case, p: NeuronParams, q: Option<SpikePool>) {
        let Case {
            t,
            b,
            c,
            hw,
            o,
            conv,
        } = *k;
        let seed = (t * 1000 + b * 100 + c * 10 + conv.0 + conv.1 * 7) as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[t * b, c, hw, hw], 0.0, 1.0)).unwrap();
        // Weights scaled by 2/C: the mean input current stays near 1.35 θ for every C.
        let sc = 2.0 / c as f32;
        let w = rand_tensor(&mut rng, &[o, c, 3, 3], -0.6 * sc, 0.9 * sc);
        let w = Var::from_tensor(&w).unwrap();
        let what = format!("conv_lif t{t} b{b} c{c} {hw} o{o} {conv:?} {p:?} {q:?}");
        let ours = conv2d_lif(x.as_tensor(), w.as_tensor(), conv, t, &p, q).unwrap();
        let want = reference(x.as_tensor(), w.as_tensor(), conv, t, &p, q);
        assert_eq!(ours.dims(), want.dims(), "{what}");
        let (fo, fw) = (flat(&ours), flat(&want));
        assert_close(&fo, &fw, 1e-5, &what);
        let rate = fo.iter().sum::<f32>() / fo.len() as f32;
        // Max pooling of busy maps may saturate; the spikes themselves must not.
        assert!(
            rate > 0.02 && (q.is_some_and(|q| q.max) || rate < 0.98),
            "{what}: output mean {rate}"
        );
        grads_match((&ours, &want), (&x, &w), &mut rng, &what);
    }

    /// dX and dW of `ours` and `want` (outputs of the same `x`, `w`) under one random output
    /// gradient: equal to 1e-5, and not all zero.
    fn grads_match(
        (ours, want): (&Tensor, &Tensor),
        (x, w): (&Var, &Var),
        rng: &mut ChaCha8Rng,
        what: &str,
    ) {
        let g = rand_tensor(rng, ours.dims(), -1.0, 1.0);
        let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (want * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("dx", x), ("dw", w)] {
            let a = flat(go.get(v.as_tensor()).unwrap());
            let r = flat(gw.get(v.as_tensor()).unwrap());
            assert!(r.iter().any(|&v| v != 0.0), "{what} {name}: zero gradient");
            assert_close(&a, &r, 1e-5, &format!("{what} {name}"));
        }
    }

    fn lif(leak: f32, reset: Reset) -> NeuronParams {
        NeuronParams {
            leak,
            threshold: 1.0,
            reset,
            gamma: 0.3,
        }
    }

    const CASES: [Case; 6] = [
        // The direct path (C·KH·KW ≤ DIRECT_PATCH) with whole 8-pixel groups and a rest, a
        // full 16-channel accumulator and a rest; then at stride 2.
        Case {
            t: 2,
            b: 2,
            c: 1,
            hw: 12,
            o: 20,
            conv: (1, 1),
        },
        Case {
            t: 2,
            b: 3,
            c: 2,
            hw: 21,
            o: 17,
            conv: (2, 1),
        },
        Case {
            t: 3,
            b: 2,
            c: 2,
            hw: 6,
            o: 4,
            conv: (1, 1),
        },
        Case {
            t: 4,
            b: 3,
            c: 3,
            hw: 9,
            o: 5,
            conv: (2, 0),
        },
        Case {
            t: 1,
            b: 2,
            c: 1,
            hw: 7,
            o: 3,
            conv: (1, 0),
        },
        // Many chunks (two 32-channel 14×14 images per chunk), the last one partial.
        Case {
            t: 5,
            b: 3,
            c: 32,
            hw: 14,
            o: 6,
            conv: (1, 1),
        },
    ];

    #[test]
    fn conv_lif_matches_conv_then_scan() {
        for p in [
            lif(0.8, Reset::Subtract),
            lif(0.9, Reset::Zero),
            lif(1.0, Reset::Subtract),
        ] {
            for k in &CASES {
                case(k, p, None);
            }
        }
    }

    /// The inference variant: bit-identical output to the differentiable op (pooled or
    /// not), no gradient tracking, the maximum of the plain convolution's output as the
    /// current (to rounding), and the spike count of the unpooled spikes.
    #[test]
    fn conv_lif_infer_matches_conv_lif() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let pool = SpikePool {
            max: true,
            k: 2,
            s: 2,
        };
        for (k, q) in CASES.iter().flat_map(|k| [(k, None), (k, Some(pool))]) {
            let p = lif(0.8, Reset::Subtract);
            let x = rand_tensor(&mut rng, &[k.t * k.b, k.c, k.hw, k.hw], 0.0, 1.0);
            let sc = 2.0 / k.c as f32; // as in `case`: busy but not saturated
            let w = rand_tensor(&mut rng, &[k.o, k.c, 3, 3], -0.6 * sc, 0.9 * sc);
            let w = Var::from_tensor(&w).unwrap();
            let r = conv2d_lif_infer(&x, &w, k.conv, k.t, &p, q).unwrap();
            assert!(!r.out.track_op(), "inference output tracks gradients");
            let want = conv2d_lif(&x, &w, k.conv, k.t, &p, q).unwrap();
            assert_eq!(flat(&r.out), flat(&want), "fused inference output");
            // The plain convolution's maximum, up to rounding: narrow patches are convolved
            // directly by the fused op, in another summation order than `conv2d`'s gemm.
            let cur = conv2d(&x, &w, k.conv.0, k.conv.1).unwrap();
            let want_max = cur.max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_close(&[r.max_current], &[want_max], 1e-6, "max current");
            let s = conv2d_lif(&x, &w, k.conv, k.t, &p, None).unwrap();
            let count = flat(&s).iter().filter(|&&v| v > 0.0).count() as u64;
            assert_eq!((r.spikes, r.neuron_steps), (count, s.elem_count() as u64));
            assert!(r.spikes > 0 && r.spikes < r.neuron_steps, "degenerate case");
        }
    }

    /// Binary single-channel images take the pattern table (`DirectFilters`), and its
    /// currents are bit for bit the multiply-add path's, at input densities 0, 0.01, 0.5 and
    /// 1, for 3×3 (padded, stride 1 and 2), 2×3 and 1×1 windows and channel counts below, at
    /// and beyond the 16- and 32-channel blocks; an image with a value other than 0 and 1
    /// falls back to the multiply-adds.
    #[test]
    fn binary_images_take_the_table_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (hw, (kh, kw), stride, pad, o) in [
            (12, (3, 3), 1, 1, 20),
            (28, (3, 3), 1, 1, 32),
            (13, (3, 3), 2, 1, 37),
            (9, (2, 3), 1, 0, 5),
            (7, (1, 1), 1, 0, 16),
        ] {
            let g = Geom::new((1, 1, hw, hw), (kh, kw), stride, pad).unwrap();
            let k = kh * kw;
            let wh: Vec<f32> = (0..o * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let with = DirectFilters::new(&g, &wh, o, true);
            assert!(with.table.is_some(), "{hw} {kh}x{kw}: no table");
            let without = DirectFilters {
                wt: with.wt.clone(),
                table: None,
            };
            let taps = DirectTaps::new(&g);
            let mut xp = vec![0f32; taps.padded_len(&g)];
            let n = g.ho * g.wo * o;
            for density in [0.0, 0.01, 0.5, 1.0] {
                let mut img: Vec<f32> = (0..hw * hw)
                    .map(|_| f32::from(u8::from(rng.random::<f64>() < density)))
                    .collect();
                for odd in [false, true] {
                    if odd {
                        img[hw * hw / 2] = 0.5;
                    }
                    taps.pad_image(&g, &img, &mut xp);
                    let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                    conv_image_direct(&g, (&taps, &xp), (&with, o), &mut a);
                    conv_image_direct(&g, (&taps, &xp), (&without, o), &mut b);
                    let mut c = vec![f32::NAN; n];
                    let table = with.table.as_deref().unwrap();
                    let took = conv_image_binary(&g, (&taps, &xp), (table, o), &mut c);
                    assert_eq!(took, !odd, "{hw} {kh}x{kw} d{density}: table taken");
                    let what = format!("{hw} {kh}x{kw}/{stride} o{o} d{density} odd {odd}");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "{what}");
                    if took {
                        assert_eq!(bits(&c), bits(&b), "{what}: table path");
                    }
                }
            }
        }
        // Wider than 10 taps, more than one channel or non-finite weights: no table.
        let g = Geom::new((1, 1, 8, 8), (4, 4), 1, 0).unwrap();
        assert!(DirectFilters::new(&g, &[0.5; 16], 1, true).table.is_none());
        let g = Geom::new((1, 2, 8, 8), (2, 2), 1, 0).unwrap();
        assert!(DirectFilters::new(&g, &[0.5; 8], 1, true).table.is_none());
        let g = Geom::new((1, 1, 8, 8), (3, 3), 1, 1).unwrap();
        let mut w = [0.5f32; 9];
        w[4] = f32::INFINITY;
        assert!(DirectFilters::new(&g, &w, 1, true).table.is_none());
    }

    /// The fused spiking convolution on binary (Poisson-like) input, which takes the table in
    /// the forward and in the backward's recomputation, against the plain candle reference:
    /// spikes, dX and dW.
    #[test]
    fn conv_lif_on_binary_input_matches_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (t, b, hw, o) = (3, 2, 10, 20);
        let x: Vec<f32> = (0..t * b * hw * hw)
            .map(|_| f32::from(u8::from(rng.random::<f64>() < 0.3)))
            .collect();
        let x = Var::from_tensor(&Tensor::from_vec(x, (t * b, 1, hw, hw), &Device::Cpu).unwrap())
            .unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, 1, 3, 3], -0.8, 1.6)).unwrap();
        let p = lif(0.9, Reset::Subtract);
        let q = Some(SpikePool {
            k: 2,
            s: 2,
            max: false,
        });
        let ours = conv2d_lif(x.as_tensor(), w.as_tensor(), (1, 1), t, &p, q).unwrap();
        let want = reference(x.as_tensor(), w.as_tensor(), (1, 1), t, &p, q);
        let (fo, fw) = (flat(&ours), flat(&want));
        assert_close(&fo, &fw, 1e-5, "binary conv_lif");
        assert!(fo.iter().any(|&v| v > 0.0), "no spikes");
        grads_match((&ours, &want), (&x, &w), &mut rng, "binary conv_lif");
    }

    /// A 32-channel layer fed by sparse average-pooled spikes (below the event path's
    /// density) takes the event path, in training and in inference, and matches the candle
    /// reference: spikes, dX and dW; the inference op's spikes equal the training op's.
    #[test]
    fn conv_lif_on_sparse_pooled_input_matches_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let (t, b, c, hw, o) = (3, 2, 32, 8, 70);
        let x = conv_events::tests::pooled_image(&mut rng, t * b * c * hw * hw, 0.2);
        let x = Var::from_tensor(&Tensor::from_vec(x, (t * b, c, hw, hw), &Device::Cpu).unwrap())
            .unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, c, 3, 3], -0.1, 0.2)).unwrap();
        let p = lif(0.9, Reset::Subtract);
        let q = Some(SpikePool {
            k: 2,
            s: 2,
            max: false,
        });
        // Images of this layer's shape (32 → 70 channels, which no other test uses) that
        // went through the event path.
        let ran = || conv_events::images_of(c, o);
        let before = ran();
        let ours = conv2d_lif(x.as_tensor(), w.as_tensor(), (1, 1), t, &p, q).unwrap();
        let inf = conv2d_lif_infer(x.as_tensor(), w.as_tensor(), (1, 1), t, &p, q).unwrap();
        if event_path_on() {
            assert_eq!(ran(), before + 2 * t * b, "the event path did not run");
        }
        let want = reference(x.as_tensor(), w.as_tensor(), (1, 1), t, &p, q);
        let (fo, fw) = (flat(&ours), flat(&want));
        assert_close(&fo, &fw, 1e-5, "sparse conv_lif");
        assert_eq!(flat(&inf.out), fo, "inference against training");
        assert!(fo.iter().any(|&v| v > 0.0), "no spikes");
        grads_match((&ours, &want), (&x, &w), &mut rng, "sparse conv_lif");
    }

    /// Layers that differ only in their output channels (or T) get scratch sets of their own
    /// from the pools: each still matches the reference, forward and backward, whatever ran
    /// before it (on the direct and the im2col path).
    #[test]
    fn leased_scratch_follows_the_output_width() {
        let p = lif(0.8, Reset::Subtract);
        for c in [1, 8] {
            for (t, o) in [(2, 4), (2, 21), (3, 4), (2, 4)] {
                let k = Case {
                    t,
                    b: 2,
                    c,
                    hw: 9,
                    o,
                    conv: (1, 1),
                };
                case(&k, p, None);
            }
        }
    }

    /// Channel-last input and output (`MapLayout`): element for element the NCHW op's
    /// spikes, dX and dW (the same sums in the same order), on the direct and the im2col
    /// path, pooled (max, average, windows that leave a rest) or not, in training and in
    /// inference; also the mixed layouts two chained layers use at their ends.
    #[test]
    fn channel_last_layouts_match_nchw_exactly() {
        let nhwc = |t: &Tensor| t.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let pools = [
            None,
            Some(SpikePool {
                max: true,
                k: 2,
                s: 2,
            }),
            Some(SpikePool {
                max: false,
                k: 3,
                s: 2,
            }),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let layouts = [(false, true), (true, false), (true, true)];
        for (k, q) in CASES.iter().flat_map(|k| pools.map(|q| (k, q))) {
            let p = lif(0.8, Reset::Subtract);
            let x = rand_tensor(&mut rng, &[k.t * k.b, k.c, k.hw, k.hw], 0.0, 1.0);
            let sc = 2.0 / k.c as f32;
            let w = rand_tensor(&mut rng, &[k.o, k.c, 3, 3], -0.6 * sc, 0.9 * sc);
            let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let neuron = (k.t, &p, q);
            let want = conv2d_lif_in(
                xv.as_tensor(),
                wv.as_tensor(),
                k.conv,
                neuron,
                MapLayout::default(),
            )
            .unwrap();
            if q.is_some_and(|q| q.k > want.dim(2).unwrap_or(0)) {
                continue;
            }
            let g = rand_tensor(&mut rng, want.dims(), -1.0, 1.0);
            let gw = (&want * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let (want_dx, want_dw) = (
                gw.get(xv.as_tensor()).unwrap().clone(),
                gw.get(wv.as_tensor()).unwrap().clone(),
            );
            for (input_hwc, output_hwc) in layouts {
                let lay = MapLayout {
                    input_hwc,
                    output_hwc,
                };
                let what = format!(
                    "t{} c{} hw{} o{} {:?} {q:?} {lay:?}",
                    k.t, k.c, k.hw, k.o, k.conv
                );
                let xin = if input_hwc { nhwc(&x) } else { x.clone() };
                let xin = Var::from_tensor(&xin).unwrap();
                let ours =
                    conv2d_lif_in(xin.as_tensor(), wv.as_tensor(), k.conv, neuron, lay).unwrap();
                let back = if output_hwc {
                    ours.permute((0, 3, 1, 2)).unwrap()
                } else {
                    ours.clone()
                };
                assert_eq!(flat(&back), flat(&want), "{what}: spikes");
                let inf = conv2d_lif_infer_in(&xin, &w, k.conv, neuron, lay).unwrap();
                assert_eq!(flat(&inf.out), flat(&ours), "{what}: inference spikes");
                let gl = if output_hwc { nhwc(&g) } else { g.clone() };
                let go = (&ours * &gl)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let dx = go.get(xin.as_tensor()).unwrap();
                let dx = if input_hwc {
                    dx.permute((0, 3, 1, 2)).unwrap()
                } else {
                    dx.clone()
                };
                assert_eq!(flat(&dx), flat(&want_dx), "{what}: dx");
                let dw = go.get(wv.as_tensor()).unwrap();
                assert_eq!(flat(dw), flat(&want_dw), "{what}: dw");
            }
            assert!(flat(&want_dx).iter().any(|&v| v != 0.0), "zero dx");
        }
    }

    #[test]
    fn conv_lif_pool_matches_conv_scan_pool() {
        let pools = [
            SpikePool {
                max: true,
                k: 2,
                s: 2,
            },
            SpikePool {
                max: true,
                k: 3,
                s: 2,
            },
            SpikePool {
                max: true,
                k: 2,
                s: 1,
            },
            SpikePool {
                max: false,
                k: 2,
                s: 2,
            },
        ];
        for p in [lif(0.8, Reset::Subtract), lif(0.9, Reset::Zero)] {
            // Even output sizes only: candle's average-pool backward (the reference) spreads
            // the gradient by nearest upsampling, which is wrong when a pool drops a row.
            for q in pools {
                for k in [&CASES[0], &CASES[2], &CASES[3]] {
                    case(k, p, Some(q));
                }
            }
        }
        // Wide maps (36×36: 18 or 35 pooled windows a row; 18 channels, a whole 16-lane chunk
        // and a rest) on the direct path (3 input channels) and the gemm path (4).
        for c in [3, 4] {
            let wide = Case {
                t: 2,
                b: 1,
                c,
                hw: 36,
                o: 18,
                conv: (1, 1),
            };
            for q in [pools[0], pools[2], pools[3]] {
                case(&wide, lif(0.8, Reset::Subtract), Some(q));
            }
        }
        // Average pooling with overlapping windows: pool.rs's own kernel as reference.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let p = lif(0.8, Reset::Subtract);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[4, 2, 7, 7], 0.0, 1.0)).unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[3, 2, 3, 3], -0.6, 0.9)).unwrap();
        let q = SpikePool {
            max: false,
            k: 3,
            s: 2,
        };
        let ours = conv2d_lif(x.as_tensor(), w.as_tensor(), (1, 1), 2, &p, Some(q)).unwrap();
        let spikes = reference(x.as_tensor(), w.as_tensor(), (1, 1), 2, &p, None);
        let want = pool::avg_pool2d(&spikes, 3, 2).unwrap();
        assert_close(&flat(&ours), &flat(&want), 1e-5, "avg 3/2");
        let g = rand_tensor(&mut rng, ours.dims(), -1.0, 1.0);
        let go = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (&want * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let r = flat(gw.get(v.as_tensor()).unwrap());
            assert!(r.iter().any(|&v| v != 0.0));
            assert_close(
                &flat(go.get(v.as_tensor()).unwrap()),
                &r,
                1e-5,
                "avg 3/2 grad",
            );
        }
    }

    #[test]
    fn conv_lif_without_input_gradient() {
        // The network's input image: no dX is asked for; dW still matches.
        let p = lif(0.8, Reset::Subtract);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = rand_tensor(&mut rng, &[6, 1, 6, 6], 0.0, 1.0);
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[4, 1, 3, 3], -0.6, 1.2)).unwrap();
        let q = Some(SpikePool {
            max: true,
            k: 2,
            s: 2,
        });
        let ours = conv2d_lif(&x, w.as_tensor(), (1, 1), 3, &p, q).unwrap();
        let want = reference(&x, w.as_tensor(), (1, 1), 3, &p, q);
        assert_close(&flat(&ours), &flat(&want), 1e-5, "fwd");
        let g = rand_tensor(&mut rng, ours.dims(), -1.0, 1.0);
        let go = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (&want * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(go.get(&x).is_none());
        assert_close(
            &flat(go.get(w.as_tensor()).unwrap()),
            &flat(gw.get(w.as_tensor()).unwrap()),
            1e-5,
            "dw",
        );
    }

    #[test]
    fn conv_lif_rejects_bad_arguments() {
        let x = Tensor::zeros((5, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let p = lif(0.8, Reset::Subtract);
        assert!(conv2d_lif(&x, &w, (1, 0), 2, &p, None).is_err());
        assert!(conv2d_lif(&x, &w, (1, 0), 0, &p, None).is_err());
        let bad = NeuronParams {
            threshold: 0.0,
            ..p
        };
        assert!(conv2d_lif(&x, &w, (1, 0), 5, &bad, None).is_err());
        let big = SpikePool {
            max: true,
            k: 3,
            s: 1,
        };
        assert!(conv2d_lif(&x, &w, (1, 0), 5, &p, Some(big)).is_err());
        let zero = SpikePool {
            max: true,
            k: 1,
            s: 0,
        };
        assert!(conv2d_lif(&x, &w, (1, 0), 5, &p, Some(zero)).is_err());
        // All-zero input: no spikes at all.
        let s = conv2d_lif(&x, &w, (1, 0), 5, &p, None).unwrap();
        assert_eq!(s.dims(), &[5, 2, 2, 2]);
        assert!(flat(&s).iter().all(|&v| v == 0.0));
    }

    /// The vectorised reductions equal the plain ones: lengths around the 16-lane width,
    /// NaNs skipped like `f32::max`, −∞ for an empty slice.
    #[test]
    fn max_and_count_match_plain_folds() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [0usize, 1, 15, 16, 17, 33, 1000] {
            let mut x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..2.0)).collect();
            if n > 3 {
                x[n / 2] = f32::NAN;
            }
            let want = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max_f32(&x), want, "max of {n}");
            assert_eq!(par_max(&x), want, "par_max of {n}");
            let spikes: Vec<f32> = x.iter().map(|&v| f32::from(u8::from(v > 0.5))).collect();
            let count = spikes.iter().filter(|&&v| v > 0.0).count() as u64;
            assert_eq!(count_positive(&spikes), count, "count of {n}");
        }
    }
}
