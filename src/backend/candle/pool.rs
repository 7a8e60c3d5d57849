//! 2-D pooling with gradients for any square window and stride (no padding).
//!
//! Candle 0.11 computes pooling forward for any stride, but its backward bails when the
//! window differs from the stride, and it maps gradients with `upsample_nearest2d`, which
//! is wrong when the stride does not divide the input (trailing rows are dropped by the
//! pool but not by the upsampling), and its forward runs on one core. So on the CPU both
//! poolings use the custom ops below, parallel over the planes; where candle's average pool
//! is defined (`window == stride` dividing H and W) they compute the same sums in the same
//! order, and other devices use candle's op there. Max pooling sends the gradient of each
//! window to the first maximal element (row-major), PyTorch's convention; candle would split
//! it over ties, which are common on 0/1 spike maps, so one rule is kept for every shape.
//!
//! Invariants: `[N, C, H, W]` f32 on the CPU; window ≥ 1, stride ≥ 1, window ≤ H and W;
//! output `HO = (H − window)/stride + 1`. Bad shapes are `Err`, never panics.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::neuron::f32_slice;
use crate::ir::PoolKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    planes: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: &Tensor, k: usize, s: usize) -> Result<Self> {
        let (n, c, h, w) = x.dims4()?;
        if k == 0 || s == 0 {
            bail!("pool: window and stride must be at least 1, got {k}x{k}/{s}")
        }
        if k > h || k > w {
            bail!("pool: window {k}x{k} larger than the input {h}x{w}")
        }
        Ok(Geom {
            planes: n * c,
            n,
            c,
            h,
            w,
            k,
            s,
            ho: (h - k) / s + 1,
            wo: (w - k) / s + 1,
        })
    }

    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.ho * self.wo
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.ho, self.wo))
    }

    fn in_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.h, self.w))
    }

    /// Index in the input plane of the top-left corner of output pixel (oy, ox).
    #[inline(always)]
    fn corner(&self, oy: usize, ox: usize) -> usize {
        oy * self.s * self.w + ox * self.s
    }

    fn empty(&self) -> bool {
        self.planes == 0 || self.out_plane() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Avg,
    Max,
}

/// Forward pooling of one kind; backward by `AvgBwd` or `MaxBwd`.
struct Pool(Kind, Geom);

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Avg => "snnc-avg-pool2d",
            Kind::Max => "snnc-max-pool2d",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.1;
        let x = f32_slice(storage, layout, self.name())?;
        let mut out = vec![0f32; g.planes * g.out_plane()];
        if !g.empty() {
            let scale = 1.0 / (g.k * g.k) as f32;
            let kind = self.0;
            out.par_chunks_mut(g.out_plane())
                .zip(x.par_chunks(g.in_plane()))
                .for_each(|(o, x)| {
                    for oy in 0..g.ho {
                        for ox in 0..g.wo {
                            let base = g.corner(oy, ox);
                            let rows = (0..g.k).map(|ky| &x[base + ky * g.w..][..g.k]);
                            o[oy * g.wo + ox] = match kind {
                                Kind::Avg => rows.flatten().sum::<f32>() * scale,
                                Kind::Max => rows.flatten().fold(f32::NEG_INFINITY, |m, &v| {
                                    if v > m {
                                        v
                                    } else {
                                        m
                                    }
                                }),
                            };
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), g.out_shape()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let g = match self.0 {
            Kind::Avg => grad.apply_op1_no_bwd(&AvgBwd(self.1))?,
            Kind::Max => arg.apply_op2_no_bwd(&grad, &MaxBwd(self.1))?,
        };
        Ok(Some(g))
    }
}

/// Spreads each output gradient evenly over its window (overlaps add up).
struct AvgBwd(Geom);

impl CustomOp1 for AvgBwd {
    fn name(&self) -> &'static str {
        "snnc-avg-pool2d-bwd"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let dy = f32_slice(storage, layout, self.name())?;
        let mut dx = vec![0f32; g.planes * g.in_plane()];
        if !g.empty() {
            let scale = 1.0 / (g.k * g.k) as f32;
            dx.par_chunks_mut(g.in_plane())
                .zip(dy.par_chunks(g.out_plane()))
                .for_each(|(dx, dy)| {
                    for oy in 0..g.ho {
                        for ox in 0..g.wo {
                            let d = dy[oy * g.wo + ox] * scale;
                            let base = g.corner(oy, ox);
                            for ky in 0..g.k {
                                for v in &mut dx[base + ky * g.w..][..g.k] {
                                    *v += d;
                                }
                            }
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dx), g.in_shape()))
    }
}

/// Sends each output gradient to the first maximal element of its window.
struct MaxBwd(Geom);

impl CustomOp2 for MaxBwd {
    fn name(&self) -> &'static str {
        "snnc-max-pool2d-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let mut dx = vec![0f32; g.planes * g.in_plane()];
        if !g.empty() {
            dx.par_chunks_mut(g.in_plane())
                .zip(x.par_chunks(g.in_plane()))
                .zip(dy.par_chunks(g.out_plane()))
                .for_each(|((dx, x), dy)| {
                    for oy in 0..g.ho {
                        for ox in 0..g.wo {
                            let base = g.corner(oy, ox);
                            let mut best = base;
                            for ky in 0..g.k {
                                let row = base + ky * g.w;
                                for i in row..row + g.k {
                                    if x[i] > x[best] {
                                        best = i;
                                    }
                                }
                            }
                            dx[best] += dy[oy * g.wo + ox];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dx), g.in_shape()))
    }
}

/// Average pooling, square `window`, `stride`, no padding: `[N, C, H, W]` → `[N, C, HO, WO]`.
pub fn avg_pool2d(x: &Tensor, window: usize, stride: usize) -> Result<Tensor> {
    let g = Geom::new(x, window, stride)?;
    if !x.device().is_cpu() && window == stride && g.h % stride == 0 && g.w % stride == 0 {
        return x.avg_pool2d_with_stride(window, stride);
    }
    x.contiguous()?.apply_op1(Pool(Kind::Avg, g))
}

/// Max pooling, square `window`, `stride`, no padding: `[N, C, H, W]` → `[N, C, HO, WO]`.
/// The gradient of each window goes to its first maximal element.
pub fn max_pool2d(x: &Tensor, window: usize, stride: usize) -> Result<Tensor> {
    let g = Geom::new(x, window, stride)?;
    x.contiguous()?.apply_op1(Pool(Kind::Max, g))
}

/// Pooling of the IR's kind `kind` (the one dispatch the batched model and the step-by-step
/// simulator share): [`avg_pool2d`] or [`max_pool2d`], `[N, C, H, W]` → `[N, C, HO, WO]`.
pub fn pool2d(x: &Tensor, kind: PoolKind, window: usize, stride: usize) -> Result<Tensor> {
    match kind {
        PoolKind::Avg => avg_pool2d(x, window, stride),
        PoolKind::Max => max_pool2d(x, window, stride),
    }
}
