//! The STDP rule of the paper (Eq. 5) for convolution kernels shared across positions.
//!
//! Δw = η · (exp(−(t_post − t_pre)/τ) − offset), applied when a post-neuron fires, with
//! t_pre the last spike of the pre-neuron at or before t_post. The pre-synaptic spike time
//! comes from a per-input [`Trace`] x = exp(−(t − t_pre)/τ) (x = 0 when the input never
//! fired, i.e. t_pre = −∞), so Eq. 5 is η · (x − offset) at the post spike: a pre spike
//! shortly before (or at) the post spike potentiates, a distant or missing one depresses.
//!
//! Mini-batch STDP (Srinivasan & Roy, the paper's [25]): at one time step, the updates of
//! one kernel from all its post spikes in the mini-batch (all images b, all positions p)
//! are averaged, per weight, over the events whose synapse exists (zero padding has none),
//! and that mean is one update; a layer receives k ≤ T such updates per presentation.
//!
//! Owner: the STDP helper (`train::stdp`). Invariants: weights stay in [w_min, w_max];
//! nothing here panics on bad lengths (mismatches are errors).

use rayon::prelude::*;

/// The constants of Eq. 5 and the weight bounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdpParams {
    /// η, the learning rate (weight units per update).
    pub eta: f32,
    /// τ, the STDP time constant (time steps).
    pub tau: f32,
    /// STDP_offset: the post-pre correlation below which a pair depresses (0 ≤ offset < 1).
    pub offset: f32,
    /// Lower weight bound.
    pub w_min: f32,
    /// Upper weight bound.
    pub w_max: f32,
}

impl Default for StdpParams {
    /// η = 0.01: with Kaiming-initialised 3×3 kernels (std ≈ 0.47 for one input channel) a
    /// kernel moves by ~η per update, so a few hundred updates reshape it without one batch
    /// dominating. τ = 5 steps: a pre spike within ~5 steps of the post spike counts as
    /// causal at the Poisson rates of [0, 1] images over T = 20–50. offset = 0.4: pairs
    /// further apart than τ·ln(1/0.4) ≈ 4.6 steps (or with no pre spike) depress, as [15]
    /// uses offsets of 0.3–0.5. Bounds ±1: a kernel weight above 1 would let one input spike
    /// fire a threshold-1 neuron alone.
    fn default() -> Self {
        StdpParams {
            eta: 0.01,
            tau: 5.0,
            offset: 0.4,
            w_min: -1.0,
            w_max: 1.0,
        }
    }
}

impl StdpParams {
    /// Checks the constants: η ≥ 0 and τ > 0 finite, 0 ≤ offset ≤ 1, w_min < w_max.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [self.eta, self.tau, self.offset, self.w_min, self.w_max]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err("STDP constants must be finite numbers".into());
        }
        if self.eta < 0.0 || self.tau <= 0.0 {
            return Err(format!(
                "STDP needs η ≥ 0 and τ > 0 (got η = {}, τ = {})",
                self.eta, self.tau
            ));
        }
        if !(0.0..=1.0).contains(&self.offset) {
            return Err(format!("STDP offset {} is outside [0, 1]", self.offset));
        }
        if self.w_min >= self.w_max {
            return Err(format!(
                "STDP weight bounds [{}, {}] are empty",
                self.w_min, self.w_max
            ));
        }
        Ok(())
    }

    /// Eq. 5 for one post spike: `dt` = t_post − t_pre ≥ 0 in steps, `None` when the
    /// pre-neuron has not fired (t_pre = −∞).
    pub fn delta(&self, dt: Option<f32>) -> f32 {
        let corr = dt.map_or(0.0, |d| (-d / self.tau).exp());
        self.delta_from_trace(corr)
    }

    /// Eq. 5 from the pre-neuron's trace x = exp(−(t_post − t_pre)/τ): η · (x − offset).
    pub fn delta_from_trace(&self, x: f32) -> f32 {
        self.eta * (x - self.offset)
    }

    /// `w` kept in [w_min, w_max].
    pub fn clamp(&self, w: f32) -> f32 {
        w.clamp(self.w_min, self.w_max)
    }
}

/// Per-input traces of the last spike time: x ← x · e^(−1/τ) every step, x = 1 at a spike.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    decay: f32,
    values: Vec<f32>,
}

impl Trace {
    /// `len` inputs that have never fired, time constant `tau` (steps).
    pub fn new(len: usize, tau: f32) -> Self {
        Trace {
            decay: (-1.0 / tau).exp(),
            values: vec![0.0; len],
        }
    }

    /// One time step with this step's input `spikes` (0/1, same length as the trace).
    pub fn step(&mut self, spikes: &[f32]) -> Result<(), String> {
        if spikes.len() != self.values.len() {
            return Err(format!(
                "a trace of {} inputs got {} spikes",
                self.values.len(),
                spikes.len()
            ));
        }
        for (x, &s) in self.values.iter_mut().zip(spikes) {
            *x = if s > 0.0 { 1.0 } else { *x * self.decay };
        }
        Ok(())
    }

    /// exp(−(t − t_pre)/τ) per input (0 for inputs that never fired).
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

/// The geometry of one convolution application: input `[batch, in_ch, in_h, in_w]`,
/// output `[batch, out_ch, out_h, out_w]`, square kernel, stride, zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_ch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_ch: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    /// The geometry of a conv with the given input and kernel; the output size is
    /// ⌊(in + 2·pad − kernel)/stride⌋ + 1 (an error when the kernel does not fit).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        in_ch: usize,
        in_h: usize,
        in_w: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self, String> {
        let out = |n: usize| {
            (n + 2 * pad)
                .checked_sub(kernel)
                .filter(|_| stride > 0 && kernel > 0)
                .map(|d| d / stride + 1)
                .ok_or_else(|| format!("a {kernel}×{kernel}/{stride} kernel does not fit {n}"))
        };
        Ok(ConvGeometry {
            batch,
            in_ch,
            in_h,
            in_w,
            out_ch,
            out_h: out(in_h)?,
            out_w: out(in_w)?,
            kernel,
            stride,
            pad,
        })
    }

    /// Number of weights `[out_ch, in_ch, k, k]`.
    pub fn weights_len(&self) -> usize {
        self.out_ch * self.in_ch * self.kernel * self.kernel
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_ch * self.in_h * self.in_w
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_ch * self.out_h * self.out_w
    }
}

/// The updates of one kernel set accumulated over a presentation (`[out_ch, in_ch, k, k]`).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelUpdates {
    /// Σ over updates of the per-update mean Δw.
    pub delta: Vec<f32>,
    /// Kernel updates made: (step, kernel) pairs with at least one learning post spike.
    pub updates: usize,
}

impl KernelUpdates {
    /// No update yet for `len` weights.
    pub fn new(len: usize) -> Self {
        KernelUpdates {
            delta: vec![0.0; len],
            updates: 0,
        }
    }

    /// One time step of mini-batch STDP. `trace` `[batch, in_ch, in_h, in_w]` holds the
    /// pre-synaptic traces (this step's input spikes included), `post` `[batch, out_ch,
    /// out_h, out_w]` the post spikes that learn (after competition), `learn` per kernel
    /// whether it may learn (dropout). For every kernel o with post spikes, the mean over
    /// those spikes (b, y, x) of η · (x_pre − offset) per weight is added to `delta`.
    /// Returns the number of kernels updated.
    pub fn add_step(
        &mut self,
        p: &StdpParams,
        g: &ConvGeometry,
        trace: &[f32],
        post: &[f32],
        learn: &[bool],
    ) -> Result<usize, String> {
        if trace.len() != g.input_len()
            || post.len() != g.output_len()
            || learn.len() != g.out_ch
            || self.delta.len() != g.weights_len()
        {
            return Err("STDP update: traces, spikes or kernels do not match the layer".into());
        }
        let k = g.kernel;
        let per_kernel = g.in_ch * k * k;
        let plane = g.out_h * g.out_w;
        // Kernels are independent: one task per kernel, on all cores; each sums in the
        // order the sequential loop did, so the result does not depend on the threads.
        let updated = self
            .delta
            .par_chunks_mut(per_kernel.max(1))
            .zip(learn.par_iter())
            .enumerate()
            .filter(|(_, (_, &l))| l)
            .map(|(o, (dst, _))| {
                let mut sum = vec![0.0f32; per_kernel];
                let mut count = vec![0u32; per_kernel];
                let mut any = false;
                for b in 0..g.batch {
                    let base = (b * g.out_ch + o) * plane;
                    for (pos, &s) in post[base..base + plane].iter().enumerate() {
                        if s <= 0.0 {
                            continue;
                        }
                        any = true;
                        let (oy, ox) = (pos / g.out_w, pos % g.out_w);
                        for c in 0..g.in_ch {
                            let tb = (b * g.in_ch + c) * g.in_h * g.in_w;
                            for ky in 0..k {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                if iy < 0 || iy as usize >= g.in_h {
                                    continue;
                                }
                                for kx in 0..k {
                                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if ix < 0 || ix as usize >= g.in_w {
                                        continue;
                                    }
                                    let x = trace[tb + iy as usize * g.in_w + ix as usize];
                                    let wi = (c * k + ky) * k + kx;
                                    sum[wi] += p.delta_from_trace(x);
                                    count[wi] += 1;
                                }
                            }
                        }
                    }
                }
                if !any {
                    return 0;
                }
                for ((d, &s), &n) in dst.iter_mut().zip(&sum).zip(&count) {
                    if n > 0 {
                        *d += s / n as f32;
                    }
                }
                1
            })
            .sum::<usize>();
        self.updates += updated;
        Ok(updated)
    }

    /// `weights` + the accumulated updates, kept in the bounds.
    pub fn apply(&self, p: &StdpParams, weights: &mut [f32]) -> Result<(), String> {
        if weights.len() != self.delta.len() {
            return Err("STDP update: weights do not match the layer".into());
        }
        for (w, d) in weights.iter_mut().zip(&self.delta) {
            *w = p.clamp(*w + d);
        }
        Ok(())
    }
}
