//! Spiking neurons on candle: the surrogate spike (`spike`) and the fused LIF/IF scan over
//! time (`lif_scan`), plus `lif_scan_reference`, the same dynamics as a loop of plain candle
//! ops that the tests hold the fused kernel to.
//!
//! Dynamics (Eq. 2–4 of the paper), per neuron, with `v[−1] = 0`:
//! `v[t] = leak·u[t−1] + x[t]`, `s[t] = Θ(v[t] − θ)` with `Θ(0) = 1` (a neuron that reaches
//! the threshold fires), then the reset gives the carried membrane `u[t]`:
//! subtract `u[t] = v[t] − θ·s[t]`, zero `u[t] = v[t]·(1 − s[t])`.
//!
//! Backward: BPTT through the membrane with the surrogate of Eq. 4,
//! `dS/dv = γ·max(0, 1 − |v − θ|/θ)`. The reset is detached: `s[t]` inside the reset is
//! a constant in backward, so `du/dv = 1` (subtract) or `1 − s[t]` (zero), and no gradient
//! flows through the reset term into the spike. Hence
//! `dL/dv[t] = g[t]·σ'(v[t]) + leak·r[t]·dL/dv[t+1]` and `dL/dx[t] = dL/dv[t]`.
//!
//! Invariants: f32 only; CPU only (other devices return an error); the fused op keeps no
//! per-step tensors — its backward recomputes the membrane trajectory from `x` into the
//! gradient buffer and then sweeps it backwards in place. Parameters are validated
//! (finite, threshold > 0) and invalid ones are errors, never panics.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::ir::{NeuronKind, NeuronSpec, Reset};

/// Parameters of a spiking neuron as the kernels see them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeuronParams {
    /// α, the membrane decay per step; 1 for IF.
    pub leak: f32,
    /// θ > 0.
    pub threshold: f32,
    pub reset: Reset,
    /// γ, the damping factor of the surrogate (Eq. 4; the paper uses 0.3).
    pub gamma: f32,
}

impl NeuronParams {
    /// The kernel parameters of an IR neuron, with surrogate damping `gamma`.
    /// IF neurons get leak 1 whatever the spec says.
    pub fn from_spec(spec: &NeuronSpec, gamma: f32) -> Self {
        let leak = match spec.kind {
            NeuronKind::If => 1.0,
            _ => spec.leak,
        };
        NeuronParams {
            leak,
            threshold: spec.threshold,
            reset: spec.reset,
            gamma,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_surrogate(self.threshold, self.gamma)?;
        if !self.leak.is_finite() {
            bail!("neuron leak must be finite, got {}", self.leak)
        }
        Ok(())
    }
}

fn validate_surrogate(threshold: f32, gamma: f32) -> Result<()> {
    if !(threshold.is_finite() && threshold > 0.0) {
        bail!("neuron threshold must be finite and > 0, got {threshold}")
    }
    if !gamma.is_finite() {
        bail!("surrogate gamma must be finite, got {gamma}")
    }
    Ok(())
}

/// Below this many neurons per step the scans run on one thread (rayon's overhead wins).
const PAR_MIN: usize = 1 << 15;
/// Neurons per rayon task.
const PAR_CHUNK: usize = 1 << 13;

#[inline(always)]
pub(crate) fn surrogate(v: f32, threshold: f32, gamma: f32) -> f32 {
    gamma * (1.0 - (v - threshold).abs() / threshold).max(0.0)
}

#[inline(always)]
pub(crate) fn heaviside(v: f32, threshold: f32) -> f32 {
    if v >= threshold {
        1.0
    } else {
        0.0
    }
}

/// The contiguous f32 data of a CPU storage, or an error (shared by the kernels of this
/// folder).
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(d) => d.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expected a contiguous input"),
    }
}

/// Runs `f(a, b, c)` over equal-length chunks of three slices, in parallel when they are large.
fn zip3_chunks<F>(a: &mut [f32], b: &mut [f32], c: &[f32], f: F)
where
    F: Fn(&mut [f32], &mut [f32], &[f32]) + Sync + Send,
{
    if a.len() < PAR_MIN {
        f(a, b, c);
    } else {
        a.par_chunks_mut(PAR_CHUNK)
            .zip(b.par_chunks_mut(PAR_CHUNK))
            .zip(c.par_chunks(PAR_CHUNK))
            .for_each(|((a, b), c)| f(a, b, c));
    }
}

// ---------------------------------------------------------------------------------------
// The surrogate spike.

struct Spike {
    threshold: f32,
    gamma: f32,
}

impl CustomOp1 for Spike {
    fn name(&self) -> &'static str {
        "snnc-spike"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = f32_slice(storage, layout, self.name())?;
        let th = self.threshold;
        let out: Vec<f32> = v.iter().map(|&v| heaviside(v, th)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let g = arg.apply_op2_no_bwd(
            &grad,
            &SpikeBwd {
                threshold: self.threshold,
                gamma: self.gamma,
            },
        )?;
        Ok(Some(g))
    }
}

/// `grad · σ'(v)`, elementwise.
struct SpikeBwd {
    threshold: f32,
    gamma: f32,
}

impl CustomOp2 for SpikeBwd {
    fn name(&self) -> &'static str {
        "snnc-spike-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let v = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        if v.len() != g.len() {
            bail!("{}: shape mismatch", self.name())
        }
        let (th, ga) = (self.threshold, self.gamma);
        let out: Vec<f32> = v
            .iter()
            .zip(g)
            .map(|(&v, &g)| g * surrogate(v, th, ga))
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Surrogate spike, elementwise: forward Θ(v − θ) (1.0/0.0 as f32, Θ(0) = 1), backward
/// Eq. 4: dS/dv = γ·max(0, 1 − |v − θ|/θ). `v` must be f32 on the CPU.
pub fn spike(v: &Tensor, threshold: f32, gamma: f32) -> Result<Tensor> {
    validate_surrogate(threshold, gamma)?;
    v.contiguous()?.apply_op1(Spike { threshold, gamma })
}

// ---------------------------------------------------------------------------------------
// The fused scan.

/// `(T, neurons per step)` of a `[T, ...]` tensor.
fn time_split(shape: &Shape) -> Result<(usize, usize)> {
    let dims = shape.dims();
    if dims.is_empty() {
        bail!("lif_scan: input needs a leading time dimension, got a scalar")
    }
    let t = dims[0];
    let n = shape.elem_count().checked_div(t).unwrap_or(0);
    Ok((t, n))
}

/// One forward step over a block of neurons: updates the membrane `u` in place (carried,
/// post-reset), writes the spikes to `s` and, when `v_out` is given, the pre-reset membrane.
#[inline(always)]
pub(crate) fn step_fwd(p: &NeuronParams, u: &mut [f32], s: &mut [f32], x: &[f32]) {
    let (leak, th) = (p.leak, p.threshold);
    match p.reset {
        Reset::Subtract => {
            for ((u, s), &x) in u.iter_mut().zip(s.iter_mut()).zip(x) {
                let v = leak * *u + x;
                let sp = heaviside(v, th);
                *s = sp;
                *u = v - th * sp;
            }
        }
        Reset::Zero => {
            for ((u, s), &x) in u.iter_mut().zip(s.iter_mut()).zip(x) {
                let v = leak * *u + x;
                let sp = heaviside(v, th);
                *s = sp;
                *u = if sp > 0.0 { 0.0 } else { v };
            }
        }
    }
}

/// One time step of a layer of neurons, for runtimes that advance one step at a time (the
/// step-by-step simulator, STDP): the membrane `u` (post-reset, carried) is updated in place
/// from the input current `x` by exactly the step the fused scan runs (`v = leak·u + x`,
/// `s = Θ(v − θ)`, reset). Returns the spikes (0/1) and their number; lengths must agree.
pub fn lif_step(p: &NeuronParams, u: &mut [f32], x: &[f32]) -> Result<(Vec<f32>, usize)> {
    let mut s = vec![0f32; x.len()];
    let count = lif_step_into(p, u, x, &mut s)?;
    Ok((s, count))
}

/// [`lif_step`] writing the spikes into `s` (every entry overwritten) instead of a new
/// vector, so a caller can split a layer into chunks and run them on several cores. Returns
/// the number of spikes; `u`, `x` and `s` must have the same length.
pub fn lif_step_into(p: &NeuronParams, u: &mut [f32], x: &[f32], s: &mut [f32]) -> Result<usize> {
    p.validate()?;
    if u.len() != x.len() || s.len() != x.len() {
        bail!(
            "lif_step: {} membranes, {} inputs and {} spike slots",
            u.len(),
            x.len(),
            s.len()
        )
    }
    step_fwd(p, u, s, x);
    Ok(s.iter().filter(|&&v| v > 0.0).count())
}

/// The forward step that records the pre-reset membrane `v[t]` in `v_out` (for backward).
/// Must compute exactly what `step_fwd` computes.
#[inline(always)]
fn step_fwd_record(p: &NeuronParams, u: &mut [f32], v_out: &mut [f32], x: &[f32]) {
    let (leak, th) = (p.leak, p.threshold);
    match p.reset {
        Reset::Subtract => {
            for ((u, vo), &x) in u.iter_mut().zip(v_out.iter_mut()).zip(x) {
                let v = leak * *u + x;
                *vo = v;
                *u = v - th * heaviside(v, th);
            }
        }
        Reset::Zero => {
            for ((u, vo), &x) in u.iter_mut().zip(v_out.iter_mut()).zip(x) {
                let v = leak * *u + x;
                *vo = v;
                *u = if v >= th { 0.0 } else { v };
            }
        }
    }
}

/// One backward step: `a` holds dL/dv[t+1] on entry and dL/dv[t] on exit; `buf` holds
/// v[t] on entry and dL/dx[t] on exit; `g` is dL/ds[t].
#[inline(always)]
fn step_bwd(p: &NeuronParams, a: &mut [f32], buf: &mut [f32], g: &[f32]) {
    let (leak, th, ga) = (p.leak, p.threshold, p.gamma);
    match p.reset {
        Reset::Subtract => {
            for ((a, b), &g) in a.iter_mut().zip(buf.iter_mut()).zip(g) {
                let v = *b;
                let d = g * surrogate(v, th, ga) + leak * *a;
                *a = d;
                *b = d;
            }
        }
        Reset::Zero => {
            for ((a, b), &g) in a.iter_mut().zip(buf.iter_mut()).zip(g) {
                let v = *b;
                let carry = if v >= th { 0.0 } else { leak * *a };
                let d = g * surrogate(v, th, ga) + carry;
                *a = d;
                *b = d;
            }
        }
    }
}

struct LifScan(NeuronParams);

impl CustomOp1 for LifScan {
    fn name(&self) -> &'static str {
        "snnc-lif-scan"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let (t_len, n) = time_split(layout.shape())?;
        let mut out = vec![0f32; x.len()];
        if n > 0 {
            let mut u = vec![0f32; n];
            let p = &self.0;
            for (s_t, x_t) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)).take(t_len) {
                zip3_chunks(&mut u, s_t, x_t, |u, s, x| step_fwd(p, u, s, x));
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &LifScanBwd(self.0))?))
    }
}

/// dL/dx of the scan from `x` and dL/ds: recompute v[t] into the result buffer, then sweep
/// backwards over t replacing v[t] by dL/dx[t].
struct LifScanBwd(NeuronParams);

impl CustomOp2 for LifScanBwd {
    fn name(&self) -> &'static str {
        "snnc-lif-scan-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        if l1.shape() != l2.shape() {
            bail!("{}: gradient shape differs from input shape", self.name())
        }
        let (t_len, n) = time_split(l1.shape())?;
        let mut buf = vec![0f32; x.len()];
        if n > 0 {
            let p = &self.0;
            let mut state = vec![0f32; n];
            for (v_t, x_t) in buf.chunks_exact_mut(n).zip(x.chunks_exact(n)).take(t_len) {
                zip3_chunks(&mut state, v_t, x_t, |u, v, x| step_fwd_record(p, u, v, x));
            }
            state.fill(0.0);
            for (b_t, g_t) in buf.chunks_exact_mut(n).zip(g.chunks_exact(n)).rev() {
                zip3_chunks(&mut state, b_t, g_t, |a, b, g| step_bwd(p, a, b, g));
            }
        }
        Ok((CpuStorage::F32(buf), l1.shape().clone()))
    }
}

/// Fused LIF/IF scan. `x`: input currents `[T, ...]` (f32; any trailing shape). Returns the
/// spikes `[T, ...]` (0.0/1.0). See the module docs for the dynamics and the (detached-reset)
/// backward. One custom op with a hand-written backward that recomputes the membrane.
pub fn lif_scan(x: &Tensor, p: &NeuronParams) -> Result<Tensor> {
    p.validate()?;
    time_split(x.shape())?;
    x.contiguous()?.apply_op1(LifScan(*p))
}

/// [`lif_scan`] on a layer output laid out `[T·B, ...]`, time-major (row `t·B + b` is step
/// `t` of sample `b`), as the lowering runs every layer on all steps at once. Returns the
/// spikes in the same shape. Errors when the leading dimension is not a multiple of `t`.
pub fn lif_scan_steps(x: &Tensor, t: usize, p: &NeuronParams) -> Result<Tensor> {
    let dims = x.dims();
    match dims.first() {
        Some(&tb) if t > 0 && tb % t == 0 => {}
        _ => bail!("lif_scan_steps: leading dimension of {dims:?} is not a multiple of T = {t}"),
    }
    lif_scan(&x.reshape((t, ()))?, p)?.reshape(dims)
}

/// The same dynamics built from plain candle ops and [`spike`] in a loop over T (the reset
/// uses the detached spike): the reference the fused scan is tested against.
pub fn lif_scan_reference(x: &Tensor, p: &NeuronParams) -> Result<Tensor> {
    p.validate()?;
    let (t_len, _) = time_split(x.shape())?;
    if t_len == 0 {
        return x.zeros_like();
    }
    let mut v = x.get(0)?.zeros_like()?;
    let mut spikes = Vec::with_capacity(t_len);
    for t in 0..t_len {
        v = (v.affine(p.leak as f64, 0.0)? + x.get(t)?)?;
        let s = spike(&v, p.threshold, p.gamma)?;
        let held = s.detach();
        v = match p.reset {
            Reset::Subtract => (v - held.affine(p.threshold as f64, 0.0)?)?,
            Reset::Zero => (v * held.affine(-1.0, 1.0)?)?,
        };
        spikes.push(s);
    }
    Tensor::stack(&spikes, 0)
}
