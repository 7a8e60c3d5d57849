//! A checked, single-threaded f32 matrix product on the `gemm` crate, the kernel candle's CPU
//! matmul calls, for kernels that work on their own buffers: the product is written straight
//! into a caller's slice (no fresh zero-filled tensor), operands are read through strides
//! (a transpose costs nothing), and the product can be added onto the destination.
//! `matmul_wt_rows` is the one tensor-level product here: inference's FC layers, rows split
//! over the cores, each block one `sgemm`.
//!
//! Invariant: before the one `unsafe` call, every index the strides reach is checked to lie
//! inside its slice, and the destination is a `&mut` slice that no operand can alias, so the
//! kernel never reads or writes out of bounds. Callers parallelise over their own blocks;
//! each call runs on the calling thread. `gemm` picks its kernels at run time: AVX-512 where
//! the CPU has AVX-512F (the `x86-v4` feature in `Cargo.toml`), else AVX2/FMA; the two sum
//! in different orders, so results agree to f32 rounding, not bit for bit, across CPUs.

use candle_core::{bail, Result};

use super::conv::with_cpu_data;

/// How a matrix lies in its slice: element `(i, j)` at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strides {
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl Strides {
    /// Row-major with `ld` elements between rows.
    pub(crate) fn rows(ld: usize) -> Self {
        Strides { rs: ld, cs: 1 }
    }

    /// The transpose of a row-major matrix with `ld` elements between rows (column-major).
    pub(crate) fn cols(ld: usize) -> Self {
        Strides { rs: 1, cs: ld }
    }

    /// One past the largest index an `r`×`c` matrix reaches (0 when empty), or `None` on
    /// overflow.
    fn reach(&self, r: usize, c: usize) -> Option<usize> {
        if r == 0 || c == 0 {
            return Some(0);
        }
        (r - 1)
            .checked_mul(self.rs)?
            .checked_add((c - 1).checked_mul(self.cs)?)?
            .checked_add(1)
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), with `lhs` `m`×`k`, `rhs`
/// `k`×`n` and `dst` `m`×`n` row-major with `ld` ≥ `n` elements between rows; on the calling
/// thread. Errors (never panics) when a stride reaches outside its slice or `ld < n`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    ld: usize,
    (lhs, ls): (&[f32], Strides),
    (rhs, rs): (&[f32], Strides),
    accumulate: bool,
) -> Result<()> {
    let ds = Strides::rows(ld);
    let fits = |s: &Strides, r, c, len: usize| s.reach(r, c).is_some_and(|e| e <= len);
    if ld < n || !fits(&ds, m, n, dst.len()) {
        bail!("sgemm: destination {m}x{n} (row stride {ld}) does not fit its buffer")
    }
    if !fits(&ls, m, k, lhs.len()) || !fits(&rs, k, n, rhs.len()) {
        bail!("sgemm: an operand of the {m}x{k} · {k}x{n} product does not fit its buffer")
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(ld).take(m) {
                row[..n].fill(0.0);
            }
        }
        return Ok(());
    }
    let as_isize = |v: usize| {
        isize::try_from(v).map_err(|_| candle_core::Error::Msg("sgemm: stride too large".into()))
    };
    let (d_rs, l_rs, l_cs, r_rs, r_cs) = (
        as_isize(ld)?,
        as_isize(ls.rs)?,
        as_isize(ls.cs)?,
        as_isize(rs.rs)?,
        as_isize(rs.cs)?,
    );
    // SAFETY: the checks above put every index the kernel touches, (i, j) ↦ i·rs + j·cs over
    // the given sizes, inside the slices; `dst` is exclusively borrowed, so it aliases neither
    // operand; `Parallelism::None` keeps the kernel on this thread, inside these borrows.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            d_rs,
            accumulate,
            lhs.as_ptr(),
            l_cs,
            l_rs,
            rhs.as_ptr(),
            r_cs,
            r_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// `x · wᵀ` for `x` `[N, K]` and `w` `[O, K]` as a new `[N, O]` tensor
/// that tracks no gradient, equal bit for bit to candle's `x.matmul(&w.t())`. For inference.
/// Wide products (O > 64, at least `2·ROW_BLOCK` rows) run as one block of rows per thread,
/// each block one [`sgemm`] on its thread, so the rows are packed on every core too
/// (candle's matmul packs them on the calling thread). The blocks start at multiples of 64
/// rows, the height of `gemm`'s largest tile, so every row goes through the same tile and
/// kernel, summing over K in the same order, as in one product; narrower products, where
/// `gemm` picks other block sizes, and tensors that are not f32 on the CPU go to candle
/// unchanged.
pub(crate) fn matmul_wt_rows(
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
) -> Result<candle_core::Tensor> {
    use rayon::prelude::*;
    let ((n, k), (o, kw)) = (x.dims2()?, w.dims2()?);
    if k != kw {
        bail!("matmul: [{n}, {k}] times the transpose of [{o}, {kw}]")
    }
    const ROW_BLOCK: usize = 64;
    let (x, w) = (x.detach(), w.detach());
    let f32_cpu =
        |t: &candle_core::Tensor| t.dtype() == candle_core::DType::F32 && t.device().is_cpu();
    if o <= 64 || n < 2 * ROW_BLOCK || !f32_cpu(&x) || !f32_cpu(&w) {
        return x.matmul(&w.t()?);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let mut out = vec![0f32; n * o];
    let threads = rayon::current_num_threads().max(1);
    let rows = n.div_ceil(threads).next_multiple_of(ROW_BLOCK);
    if k > 0 {
        let name = "snnc-matmul";
        with_cpu_data(&x, name, |xs| {
            with_cpu_data(&w, name, |ws| {
                out.par_chunks_mut(rows * o)
                    .zip(xs.par_chunks(rows * k))
                    .try_for_each(|(dst, xb)| {
                        let r = dst.len() / o;
                        sgemm(
                            (r, o, k),
                            dst,
                            o,
                            (xb, Strides::rows(k)),
                            (ws, Strides::cols(k)),
                            false,
                        )
                    })
            })
        })???;
    }
    candle_core::Tensor::from_vec(out, (n, o), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-parallel product against candle's `x.matmul(&w.t())`, bit for bit, at shapes
    /// whose rows do not split evenly, narrow ones (candle's path) and the empty cases.
    #[test]
    fn matmul_wt_rows_matches_candle() -> Result<()> {
        let cpu = candle_core::Device::Cpu;
        let shapes = [
            (7, 5, 3),
            (320, 3136, 256),
            (330, 600, 100),
            (200, 16, 65),
            (320, 300, 26),
            (33, 1, 17),
            (0, 4, 3),
            (300, 0, 80),
            (4, 6, 0),
        ];
        for (n, k, o) in shapes {
            let x = candle_core::Tensor::randn(0f32, 1., (n, k), &cpu)?;
            let w = candle_core::Tensor::randn(0f32, 1., (o, k), &cpu)?;
            let got = matmul_wt_rows(&x, &w)?;
            assert_eq!(got.dims(), &[n, o]);
            let want = x.matmul(&w.t()?)?;
            let (g, e) = (
                got.flatten_all()?.to_vec1::<f32>()?,
                want.flatten_all()?.to_vec1::<f32>()?,
            );
            // Bit for bit: evaluation must not depend on the batch size (how rows split).
            assert_eq!(g, e, "{n}x{k}x{o}");
        }
        let bad = matmul_wt_rows(
            &candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &cpu)?,
            &candle_core::Tensor::zeros((4, 5), candle_core::DType::F32, &cpu)?,
        );
        assert!(bad.is_err());
        Ok(())
    }

    /// The plain triple loop.
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        sa: Strides,
        b: &[f32],
        sb: Strides,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| a[i * sa.rs + p * sa.cs] * b[p * sb.rs + j * sb.cs])
                    .sum();
            }
        }
        out
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn products_match_the_triple_loop_in_every_layout() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 5, 3),
            (33, 17, 65),
            (64, 288, 196),
            (0, 4, 3),
            (3, 4, 0),
        ] {
            let a = data(m * k, 1);
            let b = data(k * n, 2);
            for (sa, sb) in [
                (Strides::rows(k), Strides::rows(n)),
                (Strides::cols(m), Strides::rows(n)),
                (Strides::rows(k), Strides::cols(k)),
                (Strides::cols(m), Strides::cols(k)),
            ] {
                let want = naive(m, n, k, &a, sa, &b, sb);
                let mut got = vec![f32::NAN; m * n];
                sgemm((m, n, k), &mut got, n, (&a, sa), (&b, sb), false).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{m}x{n}x{k}: {g} vs {w}"
                    );
                }
                // Accumulating adds the product onto what is there.
                let mut acc = vec![1f32; m * n];
                sgemm((m, n, k), &mut acc, n, (&a, sa), (&b, sb), true).unwrap();
                for (g, w) in acc.iter().zip(&want) {
                    assert!((g - (w + 1.0)).abs() <= 1e-5 * (w + 1.0).abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn a_wider_destination_keeps_its_padding() {
        let (m, n, k) = (4, 3, 5);
        let (a, b) = (data(m * k, 3), data(k * n, 4));
        let mut got = vec![9f32; m * (n + 2)];
        sgemm(
            (m, n, k),
            &mut got,
            n + 2,
            (&a, Strides::rows(k)),
            (&b, Strides::rows(n)),
            false,
        )
        .unwrap();
        let want = naive(m, n, k, &a, Strides::rows(k), &b, Strides::rows(n));
        for i in 0..m {
            assert_eq!(&got[i * (n + 2) + n..][..2], &[9.0, 9.0]);
            for j in 0..n {
                assert!((got[i * (n + 2) + j] - want[i * n + j]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn out_of_bounds_strides_are_errors() {
        let a = vec![0f32; 6];
        let mut d = vec![0f32; 4];
        // lhs 2x4 does not fit 6 elements.
        assert!(sgemm(
            (2, 2, 4),
            &mut d,
            2,
            (&a, Strides::rows(4)),
            (&a, Strides::rows(2)),
            false
        )
        .is_err());
        // destination 3x2 does not fit 4 elements.
        assert!(sgemm(
            (3, 2, 1),
            &mut d,
            2,
            (&a, Strides::rows(1)),
            (&a, Strides::rows(2)),
            false
        )
        .is_err());
        // a row stride shorter than a row.
        assert!(sgemm(
            (1, 2, 1),
            &mut d,
            1,
            (&a, Strides::rows(1)),
            (&a, Strides::rows(2)),
            false
        )
        .is_err());
    }
}
