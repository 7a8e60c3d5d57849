//! A minimal stand-in, built from plain candle ops, for the fused spiking kernel that
//! `neuron.rs` owns (`neuron::{lif_scan, NeuronParams, spike}`). It follows the documented
//! signature so the model can switch to the real one when it lands; nothing outside
//! `model.rs` (and tests comparing against it) should call it.
//!
//! Invariants: tensors are `f32`; the surrogate derivative is Eq. 4 of the paper.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use crate::ir::Reset;

/// Parameters of a spiking neuron layer for one threshold slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuronParams {
    pub leak: f32,
    pub threshold: f32,
    pub reset: Reset,
    /// γ of the linear surrogate derivative (Eq. 4).
    pub gamma: f32,
}

/// Heaviside spike of a membrane potential with the linear surrogate derivative of Eq. 4:
/// dS/dV = γ·max(0, 1 − |V − v|/v).
struct Spike {
    threshold: f32,
    gamma: f32,
}

impl CustomOp1 for Spike {
    fn name(&self) -> &'static str {
        "snnc-spike"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("spike: input not contiguous".into()))?;
        let th = self.threshold;
        let out: Vec<f32> = data[start..end]
            .iter()
            .map(|&v| if v >= th { 1.0 } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let th = self.threshold as f64;
        let sur = ((arg - th)?.abs()? / th)?;
        let sur = (sur.neg()? + 1.0)?.relu()?;
        Ok(Some((grad_res * (sur * self.gamma as f64)?)?))
    }
}

/// S = Θ(V − v) with the surrogate derivative of Eq. 4.
pub fn spike(v: &Tensor, threshold: f32, gamma: f32) -> Result<Tensor> {
    v.contiguous()?.apply_op1(Spike { threshold, gamma })
}

/// LIF over time: `current` is `[T, N]`; returns the spikes `[T, N]`.
/// V[t] = leak·V[t−1] + I[t]; S[t] = Θ(V[t] − v); reset by subtraction of v or to zero
/// (the reset is detached from the graph, as in snnTorch).
pub fn lif_scan(current: &Tensor, p: NeuronParams) -> Result<Tensor> {
    let (t, n) = current.dims2()?;
    let mut v = Tensor::zeros(n, DType::F32, current.device())?;
    let mut out = Vec::with_capacity(t);
    for i in 0..t {
        let it = current.get(i)?;
        v = if p.leak == 1.0 {
            (v + it)?
        } else {
            ((v * p.leak as f64)? + it)?
        };
        let s = spike(&v, p.threshold, p.gamma)?;
        let sd = s.detach();
        v = match p.reset {
            Reset::Subtract => (v - (sd * p.threshold as f64)?)?,
            Reset::Zero => (v * (sd.neg()? + 1.0)?)?,
        };
        out.push(s);
    }
    Tensor::stack(&out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn lif_scan_hand_computed() -> Result<()> {
        // leak 0.5, threshold 1: I = 0.6, 0.6, 0.6, 2.0
        // V: 0.6 → 0.9 → 1.05 (spike, −1 → 0.05) → 2.025 (spike)
        let i = Tensor::new(&[[0.6f32], [0.6], [0.6], [2.0]], &Device::Cpu)?;
        let p = NeuronParams {
            leak: 0.5,
            threshold: 1.0,
            reset: Reset::Subtract,
            gamma: 0.3,
        };
        let s = lif_scan(&i, p)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(s, vec![0.0, 0.0, 1.0, 1.0]);
        Ok(())
    }

    #[test]
    fn spike_surrogate_matches_eq4() -> Result<()> {
        let v = candle_core::Var::new(&[0.5f32, 1.0, 1.5, 2.5], &Device::Cpu)?;
        let s = spike(v.as_tensor(), 1.0, 0.3)?;
        let g = s.sum_all()?.backward()?;
        let g = g.get(v.as_tensor()).unwrap().to_vec1::<f32>()?;
        let want = [0.15f32, 0.3, 0.15, 0.0];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{g:?}");
        }
        Ok(())
    }
}
