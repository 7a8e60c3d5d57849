//! The fully connected layer of the training graph as one node: `linear(x, w)` is
//! `x.flatten_from(1).matmul(&w.t())`, with the same products in forward and backward, but
//! without the two view nodes that expression puts into candle's graph (the flatten's reshape
//! and the weight's transpose). candle's backprop gives every node a fresh zeroed gradient and
//! adds into it, so each view node cost a zero-fill and an add of its full size per batch (for
//! the AGD convnet's FC1: its 320 × 3,136 input and its 256 × 3,136 weights, mostly on the
//! calling thread while the workers waited).
//!
//! Invariants: `x` is `[N, ...]` (rank ≥ 2, flattened from dimension 1 to `I`), `w` is
//! `[O, I]`, both f32 on the CPU; the result is `[N, O]`. The forward calls candle's own CPU
//! matmul with the layouts the expression gives it, and the backward makes candle's own
//! matmul calls of `Op::Matmul`'s backward, so values and gradients are bit for bit those of
//! the expression (`tests::matches_the_expression_bit_for_bit`).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `x` `[N, ...]` · `w` `[O, I]`ᵀ → `[N, O]`, one graph node (see the module doc). Errors:
/// `x` of rank < 2, `I` not equal to `x`'s elements per row, tensors not f32 on the CPU.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (o, i) = w.dims2()?;
    let dims = x.dims();
    if dims.len() < 2 {
        bail!("linear: input of rank {} (need at least 2)", dims.len())
    }
    let n = dims[0];
    let per_row: usize = dims[1..].iter().product();
    if per_row != i {
        bail!("linear: {per_row} input features per row, weights take {i}")
    }
    let op = LinearOp {
        n,
        i,
        o,
        x_dims: dims.to_vec(),
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

struct LinearOp {
    n: usize,
    i: usize,
    o: usize,
    /// `x`'s dimensions, for the shape of its gradient.
    x_dims: Vec<usize>,
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "snnc-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, i, o) = (self.n, self.i, self.o);
        if !l1.is_contiguous() || l2.dims() != [o, i] {
            bail!("{}: unexpected input layouts", self.name())
        }
        let shape = Shape::from((n, o));
        if n * o == 0 || i == 0 {
            return Ok((CpuStorage::F32(vec![0f32; n * o]), shape));
        }
        // The layouts `x.flatten_from(1)` and `w.t()` hand to candle's matmul.
        let x2 = Layout::contiguous_with_offset((n, i), l1.start_offset());
        let wt = l2.transpose(0, 1)?;
        Ok((s1.matmul(s2, (1, n, o, i), &x2, &wt)?, shape))
    }

    /// `Op::Matmul`'s backward on (`x` flattened, `w` transposed), then the views' own:
    /// dX = G·W (reshaped to `x`'s dimensions), dW = (X_flatᵀ·G)ᵀ; each only when that
    /// argument tracks gradients.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            // `rhs.t()` of the matmul node is `w.t().t()`: `w`'s own layout.
            Some(grad.matmul(&w.detach())?.reshape(&self.x_dims[..])?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let xf = x.detach().flatten_from(1)?;
            Some(xf.t()?.matmul(grad)?.t()?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Values and both gradients equal `x.flatten_from(1).matmul(&w.t())`'s bit for bit, for
    /// map inputs (rank 4) and row inputs (rank 2), sizes large enough for candle's parallel
    /// gemm and small ones; without an input gradient when `x` does not track.
    #[test]
    fn matches_the_expression_bit_for_bit() {
        let dev = Device::Cpu;
        for (xd, o) in [
            (vec![320, 64, 7, 7], 256),
            (vec![3, 5], 4),
            (vec![40, 2, 3, 3], 9),
        ] {
            let i: usize = xd[1..].iter().product();
            let x = Var::from_tensor(&Tensor::rand(0f32, 1f32, &xd[..], &dev).unwrap()).unwrap();
            let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, i), &dev).unwrap()).unwrap();
            let g = Tensor::randn(0f32, 1f32, (xd[0], o), &dev).unwrap();
            let ours = linear(x.as_tensor(), w.as_tensor()).unwrap();
            let want = x
                .as_tensor()
                .flatten_from(1)
                .unwrap()
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap();
            assert_eq!(ours.dims(), want.dims());
            assert_eq!(flat(&ours), flat(&want), "{xd:?} values");
            let go = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = (&want * &g).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("dx", &x), ("dw", &w)] {
                let (a, b) = (
                    go.get(v.as_tensor()).unwrap(),
                    gw.get(v.as_tensor()).unwrap(),
                );
                assert_eq!(a.dims(), b.dims(), "{xd:?} {name}");
                assert!(flat(b).iter().any(|&v| v != 0.0), "{xd:?} {name}: zero");
                assert_eq!(flat(a), flat(b), "{xd:?} {name}");
            }
            // An input that tracks nothing gets no gradient.
            let plain = x.as_tensor().detach();
            let y = linear(&plain, w.as_tensor()).unwrap();
            let gs = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(gs.get(&plain).is_none());
            assert_eq!(
                flat(gs.get(w.as_tensor()).unwrap()),
                flat(gw.get(w.as_tensor()).unwrap())
            );
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((4, 6), candle_core::DType::F32, &dev).unwrap();
        assert!(linear(
            &Tensor::zeros((2, 5), candle_core::DType::F32, &dev).unwrap(),
            &w
        )
        .is_err());
        assert!(linear(
            &Tensor::zeros(6, candle_core::DType::F32, &dev).unwrap(),
            &w
        )
        .is_err());
        let y = linear(
            &Tensor::zeros((0, 2, 3), candle_core::DType::F32, &dev).unwrap(),
            &w,
        )
        .unwrap();
        assert_eq!(y.dims(), [0, 4]);
    }
}
