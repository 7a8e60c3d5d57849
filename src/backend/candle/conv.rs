//! 2-D convolution for the layers of a network, run over all T·B images at once.
//!
//! `conv2d_im2col` unfolds the input into patch rows (`Im2Col`, a custom op whose backward is
//! `Col2Im`, a scatter-add) and multiplies them with the weights in one candle matmul over
//! the whole batch, so autograd gives dW through the matmul and dX through col2im. Candle
//! only calls a custom op's backward when its argument tracks gradients, so for the
//! network's input image (a plain tensor) no col2im runs at all. This avoids candle 0.11's
//! own conv2d backward, whose input gradient is `conv_transpose2d` (plain loops on CPU) and
//! whose weight gradient is a convolution with an output-sized kernel.
//!
//! Invariants: inputs `[N, C, H, W]`, weights `[O, C, KH, KW]`, f32, CPU; stride ≥ 1;
//! the padded input is at least one kernel wide. Shape errors are `Err`, never panics.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::neuron::f32_slice;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(
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

    /// Visits every (row-element j of the patch of output pixel (oy, ox), input index or
    /// None for padding) of one image, in patch-matrix order.
    #[inline(always)]
    fn for_each_tap(&self, mut f: impl FnMut(usize, Option<usize>)) {
        let (h, w, kh, kw) = (self.h as isize, self.w as isize, self.kh, self.kw);
        let patch = self.patch();
        for oy in 0..self.ho {
            let iy0 = (oy * self.stride) as isize - self.pad as isize;
            for ox in 0..self.wo {
                let ix0 = (ox * self.stride) as isize - self.pad as isize;
                let mut j = (oy * self.wo + ox) * patch;
                let inside_x = ix0 >= 0 && ix0 + kw as isize <= w;
                for c in 0..self.c {
                    let plane = c * self.h * self.w;
                    for ky in 0..kh {
                        let iy = iy0 + ky as isize;
                        if iy < 0 || iy >= h {
                            for _ in 0..kw {
                                f(j, None);
                                j += 1;
                            }
                            continue;
                        }
                        let rowbase = plane + iy as usize * self.w;
                        if inside_x {
                            let base = rowbase + ix0 as usize;
                            for kx in 0..kw {
                                f(j, Some(base + kx));
                                j += 1;
                            }
                        } else {
                            for kx in 0..kw {
                                let ix = ix0 + kx as isize;
                                f(j, (ix >= 0 && ix < w).then(|| rowbase + ix as usize));
                                j += 1;
                            }
                        }
                    }
                }
            }
        }
    }
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
        let per = g.cols_per_image();
        let mut out = vec![0f32; per * g.n];
        if per > 0 && g.image() > 0 {
            out.par_chunks_mut(per)
                .zip(x.par_chunks(g.image()))
                .for_each(|(o, x)| g.for_each_tap(|j, i| o[j] = i.map_or(0.0, |i| x[i])));
        }
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
        let mut out = vec![0f32; g.image() * g.n];
        if per > 0 && g.image() > 0 {
            out.par_chunks_mut(g.image())
                .zip(cols.par_chunks(per))
                .for_each(|(o, cols)| {
                    g.for_each_tap(|j, i| {
                        if let Some(i) = i {
                            o[i] += cols[j]
                        }
                    })
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

fn check_shapes(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Geom> {
    let dims = x.dims4()?;
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

/// Convolution by im2col and one matmul over the whole batch (see the module docs).
/// `x`: `[N, C, H, W]`, `w`: `[O, C, KH, KW]`; returns `[N, O, HO, WO]`.
pub fn conv2d_im2col(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let g = check_shapes(x, w, stride, pad)?;
    let o = w.dim(0)?;
    let cols = x.contiguous()?.apply_op1(Im2Col(g))?;
    let w2 = w.reshape((o, g.patch()))?;
    let out = cols.matmul(&w2.t()?)?; // [N·HO·WO, O]
    out.reshape((g.n, g.ho, g.wo, o))?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// 2-D convolution, no bias: `x` `[N, C, H, W]`, `w` `[O, C, K, K]` → `[N, O, HO, WO]` with
/// `HO = (H + 2·pad − K)/stride + 1`. Gradients flow to both `x` and `w`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    conv2d_im2col(x, w, stride, pad)
}
