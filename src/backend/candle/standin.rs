//! Minimal stand-ins, built from plain candle ops, for kernels that other modules own
//! (`neuron::lif_scan`, `encode::{poisson, direct, dropout_mask}`, `classifier::Stochmax`).
//! They follow the documented signatures so the model can switch to the real ones when
//! they land; nothing outside `model.rs` should call them.
//!
//! Invariants: every random draw comes from the caller's [`SeededRng`], so one seed gives
//! the same numbers; tensors are `f32`.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, D};
use rand::{Rng, SeedableRng};

use crate::ir::Reset;

/// The RNG every random draw of the runtime comes from.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// A fresh RNG for one purpose, derived from a seed and stream numbers.
pub fn derive_rng(seed: u64, stream: u64) -> SeededRng {
    let mut rng = SeededRng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

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

fn uniform(n: usize, rng: &mut SeededRng) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>()).collect()
}

/// Rate coding: `x` `[B, ...]` with intensities in [0, 1] → spikes `[T·B, ...]`, a spike
/// with probability x at every step.
pub fn poisson(x: &Tensor, timesteps: usize, rng: &mut SeededRng) -> Result<Tensor> {
    let rep = direct(x, timesteps)?;
    let u = Tensor::from_vec(uniform(rep.elem_count(), rng), rep.shape(), x.device())?;
    rep.gt(&u)?.to_dtype(DType::F32)
}

/// Direct coding: the real-valued input at every step, `[B, ...]` → `[T·B, ...]`.
pub fn direct(x: &Tensor, timesteps: usize) -> Result<Tensor> {
    if timesteps == 1 {
        return Ok(x.clone());
    }
    let dims = x.dims();
    let mut rep = vec![timesteps];
    rep.extend(std::iter::repeat_n(1, dims.len() - 1));
    let x = x.unsqueeze(0)?.repeat(rep.as_slice())?;
    let mut out = vec![timesteps * dims[0]];
    out.extend_from_slice(&dims[1..]);
    x.reshape(out)
}

/// An inverted-dropout mask of `shape`: 0 with probability p, 1/(1−p) otherwise.
pub fn dropout_mask(shape: &[usize], p: f32, rng: &mut SeededRng, dev: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let keep = 1.0 / (1.0 - p);
    let v: Vec<f32> = (0..n)
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_vec(v, shape, dev)
}

/// Mean softmax cross-entropy (Eq. 6) of `logits` `[B, K]` against `labels` `[B]` (u32).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// Stochmax (Eq. 7): classes dropped by Bernoulli draws z_k ~ Ber(ρ_k), ρ = σ(W_ψ h + b_ψ).
/// To let ψ learn, the draws are relaxed (binary concrete, temperature 0.5); ε = 1e−4.
/// At evaluation the plain logits are used (softmax).
pub fn stochmax_loss(
    logits: &Tensor,
    h: &Tensor,
    w_psi: &Tensor,
    b_psi: &Tensor,
    labels: &Tensor,
    rng: &mut SeededRng,
) -> Result<Tensor> {
    const EPS: f64 = 1e-4;
    const TEMP: f64 = 0.5;
    let a = h.matmul(&w_psi.t()?)?.broadcast_add(b_psi)?; // logit of ρ
    let u: Vec<f32> = uniform(a.elem_count(), rng)
        .into_iter()
        .map(|u| u.clamp(1e-6, 1.0 - 1e-6))
        .collect();
    let u = Tensor::from_vec(u, a.shape(), a.device())?;
    let noise = (u.log()? - (u.neg()? + 1.0)?.log()?)?;
    let z = candle_nn::ops::sigmoid(&((a + noise)? / TEMP)?)?;
    let logz = (z + EPS)?.log()?;
    let s = (logits + logz)?;
    let lse = s.log_sum_exp(D::Minus1)?;
    let picked = s.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    (lse - picked)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
