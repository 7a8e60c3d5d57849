//! Optimisers (Adam, SGD with momentum) over named candle `Var`s, and learning-rate schedules.
//!
//! Owns: [`Adam`], [`Sgd`], the [`Optimizer`] trait they share, [`StepStats`] and
//! [`LrSchedule`]. The update rules are PyTorch's (`torch.optim.Adam`, `torch.optim.SGD` with
//! dampening 0): weight decay is an L2 term `wd · w` added to the gradient before the update.
//!
//! Invariants:
//! - parameter names are unique; every parameter must receive a gradient at every step: a
//!   missing one is an error naming it, and then no parameter has been updated;
//! - optimiser state is plain named tensors (`state_tensors`/`load_state`), so it can be
//!   stored next to the weights in a safetensors checkpoint; a loaded state must name every
//!   parameter with the parameter's shape;
//! - hyper-parameters are validated at construction and by `set_lr`: no NaN, no negative
//!   learning rate, `β ∈ [0, 1)`, `ε > 0`, `momentum ∈ [0, 1)`.

use crate::train::checkpoint::{
    adam_m_key, adam_v_key, sgd_momentum_key, ADAM_STEP_KEY, SGD_STEP_KEY,
};
use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{bail, DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// What one optimiser step did (for logging).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The number of steps taken so far, this one included.
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// The global L2 norm of the raw gradients (before weight decay).
    pub grad_norm: f64,
    /// The global L2 norm of the parameter change.
    pub update_norm: f64,
}

/// What every optimiser offers the training loops.
pub trait Optimizer {
    /// Updates every parameter from its gradient in `grads`.
    fn step(&mut self, grads: &GradStore) -> Result<StepStats>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (finite and ≥ 0).
    fn set_lr(&mut self, lr: f64) -> Result<()>;
    /// The named parameters being optimised.
    fn vars(&self) -> &[(String, Var)];
    /// The optimiser state as named tensors (moments, step count).
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores a state written by `state_tensors` (moved to the parameters' device/dtype).
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

fn check_lr(lr: f64) -> Result<()> {
    if !lr.is_finite() || lr < 0.0 {
        bail!("learning rate must be finite and non-negative, got {lr}");
    }
    Ok(())
}

fn check_unit(value: f64, what: &str) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{what} must lie in [0, 1), got {value}");
    }
    Ok(())
}

fn check_vars(vars: &[(String, Var)]) -> Result<()> {
    let mut seen = HashSet::new();
    for (name, var) in vars {
        if !seen.insert(name.as_str()) {
            bail!("parameter `{name}` is listed twice");
        }
        if !var.dtype().is_float() {
            bail!("parameter `{name}` has non-float dtype {:?}", var.dtype());
        }
    }
    Ok(())
}

/// The gradient of every parameter, detached, or an error naming the first one without.
fn gather_grads(vars: &[(String, Var)], grads: &GradStore) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|(name, var)| match grads.get(var) {
            Some(g) if g.dims() == var.dims() => Ok(g.detach()),
            Some(g) => bail!(
                "gradient of parameter `{name}` has shape {:?}, expected {:?}",
                g.dims(),
                var.dims()
            ),
            None => bail!("parameter `{name}` received no gradient"),
        })
        .collect()
}

/// Adam's constants for one step, each rounded from f64 to f32 as candle's `affine` does.
#[derive(Debug, Clone, Copy)]
struct AdamConsts {
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    ib1: f32,
    ib2: f32,
    eps: f32,
    lr: f32,
    wd: f32,
    decay: bool,
}

impl AdamConsts {
    fn new(c: &AdamConfig, (bias1, bias2): (f64, f64)) -> Self {
        AdamConsts {
            b1: c.beta1 as f32,
            omb1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            omb2: (1.0 - c.beta2) as f32,
            ib1: (1.0 / bias1) as f32,
            ib2: (1.0 / bias2) as f32,
            eps: c.eps as f32,
            lr: c.lr as f32,
            wd: c.weight_decay as f32,
            decay: c.weight_decay > 0.0,
        }
    }
}

/// One Adam step of one f32 parameter in place, in parallel chunks of fixed size, with
/// exactly the f32 arithmetic of the tensor path (candle's `x * k` and `x / k` are
/// `affine(k or 1/k, 0)`, `x + ε` is `affine(1, ε)`): overwrites `w`, `m` and `v` (all of
/// `g`'s length) and returns `(Σ g², Σ Δw²)` in f64. Each chunk ([`adam_chunk`]) sums its
/// elements into [`ADAM_LANES`] partial sums (so the loop is vector code) and adds them in
/// order; the chunks' sums are added in chunk order, so the result does not depend on the
/// thread count.
fn adam_in_place(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: &AdamConsts,
) -> (f64, f64) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let sums: Vec<(f64, f64)> = w
        .par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .map(|(((w, g), m), v)| adam_chunk(w, g, m, v, k))
        .collect();
    sums.iter()
        .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d))
}

/// Partial sums per chunk in [`adam_in_place`]: element i of a chunk goes into partial
/// i mod `ADAM_LANES`.
const ADAM_LANES: usize = 16;

/// One element's Adam update (see [`adam_in_place`]); returns the update Δw.
#[inline(always)]
fn adam_one(w: &mut f32, g: f32, m: &mut f32, v: &mut f32, k: &AdamConsts) -> f32 {
    let gi = if k.decay { g + (*w * k.wd + 0.0) } else { g };
    *m = (*m * k.b1 + 0.0) + (gi * k.omb1 + 0.0);
    *v = (*v * k.b2 + 0.0) + ((gi * gi) * k.omb2 + 0.0);
    let denom = (*v * k.ib2 + 0.0).sqrt() * 1.0 + k.eps;
    let up = ((*m * k.ib1 + 0.0) / denom) * k.lr + 0.0;
    *w -= up;
    up
}

/// One chunk of [`adam_in_place`]: whole blocks of `ADAM_LANES` elements as fixed-length
/// arrays (vector code; compiled for AVX-512, AVX2 and baseline x86-64, the widest the CPU
/// has picked at run time: the same IEEE operations on every path, so the same results),
/// then the chunk's rest. Returns the chunk's `(Σ g², Σ Δw²)`.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn adam_chunk(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    k: &AdamConsts,
) -> (f64, f64) {
    const L: usize = ADAM_LANES;
    let (mut g_sq, mut up_sq) = ([0f64; L], [0f64; L]);
    let n = w.len().min(g.len()).min(m.len()).min(v.len());
    let whole = n / L * L;
    let mut at = 0;
    while at < whole {
        let blocks = (
            w[at..].first_chunk_mut::<L>(),
            g[at..].first_chunk::<L>(),
            m[at..].first_chunk_mut::<L>(),
            v[at..].first_chunk_mut::<L>(),
        );
        if let (Some(w), Some(g), Some(m), Some(v)) = blocks {
            for i in 0..L {
                g_sq[i] += f64::from(g[i]) * f64::from(g[i]);
                let up = adam_one(&mut w[i], g[i], &mut m[i], &mut v[i], k);
                up_sq[i] += f64::from(up) * f64::from(up);
            }
        }
        at += L;
    }
    let rest = w[whole..n]
        .iter_mut()
        .zip(&g[whole..n])
        .zip(&mut m[whole..n])
        .zip(&mut v[whole..n]);
    for (i, (((w, &g), m), v)) in rest.enumerate() {
        g_sq[i] += f64::from(g) * f64::from(g);
        let up = adam_one(w, g, m, v, k);
        up_sq[i] += f64::from(up) * f64::from(up);
    }
    (g_sq.iter().sum(), up_sq.iter().sum())
}

/// [`adam_in_place`] as a candle in-place op on the parameter's storage, reading the
/// gradient; the moments are the optimiser's own buffers.
struct AdamStepOp<'a> {
    m: std::cell::RefCell<&'a mut [f32]>,
    v: std::cell::RefCell<&'a mut [f32]>,
    k: AdamConsts,
    sums: std::cell::Cell<(f64, f64)>,
}

impl candle_core::InplaceOp2 for AdamStepOp<'_> {
    fn name(&self) -> &'static str {
        "adam-step"
    }

    fn cpu_fwd(
        &self,
        w: &mut candle_core::CpuStorage,
        wl: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        gl: &candle_core::Layout,
    ) -> Result<()> {
        let g = crate::backend::candle::neuron::f32_slice(g, gl, self.name())?;
        let (candle_core::CpuStorage::F32(w), Some((w0, w1))) = (w, wl.contiguous_offsets()) else {
            bail!("adam-step: the parameter must be contiguous f32");
        };
        let w = &mut w[w0..w1];
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        if g.len() != w.len() || m.len() != w.len() || v.len() != w.len() {
            bail!("adam-step: the parameter, gradient and moments differ in length");
        }
        self.sums.set(adam_in_place(w, g, &mut m, &mut v, &self.k));
        Ok(())
    }
}

fn sum_sq(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()
}

/// A scalar step counter as a tensor (f64 holds every count up to 2^53 exactly).
fn step_tensor(step: u64) -> Result<Tensor> {
    Tensor::new(step as f64, &candle_core::Device::Cpu)
}

fn read_step(state: &HashMap<String, Tensor>, key: &str) -> Result<u64> {
    let t = state
        .get(key)
        .ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks `{key}`")))?;
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match v.as_slice() {
        [s] if s.is_finite() && *s >= 0.0 && s.fract() == 0.0 => Ok(*s as u64),
        _ => bail!("optimiser state `{key}` must be one non-negative integer"),
    }
}

/// The tensor `key` of `state`, moved to `like`'s device and dtype, shape-checked.
fn read_like(state: &HashMap<String, Tensor>, key: &str, like: &Var) -> Result<Tensor> {
    let t = state
        .get(key)
        .ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks `{key}`")))?;
    if t.dims() != like.dims() {
        bail!(
            "optimiser state `{key}` has shape {:?}, expected {:?}",
            t.dims(),
            like.dims()
        );
    }
    t.to_device(like.device())?.to_dtype(like.dtype())
}

/// Adam's hyper-parameters (defaults: PyTorch's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 weight decay, added to the gradient (`g + wd · w`), as in `torch.optim.Adam`.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_unit(self.beta1, "Adam beta1")?;
        check_unit(self.beta2, "Adam beta2")?;
        if !self.eps.is_finite() || self.eps <= 0.0 {
            bail!("Adam eps must be finite and positive, got {}", self.eps);
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            bail!(
                "weight decay must be finite and non-negative, got {}",
                self.weight_decay
            );
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba) with bias correction:
/// `g ← g + wd·w; m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;`
/// `w ← w − lr · (m / (1−β1ᵗ)) / (sqrt(v / (1−β2ᵗ)) + ε)`.
#[derive(Debug)]
pub struct Adam {
    pub config: AdamConfig,
    vars: Vec<(String, Var)>,
    moments: Vec<Moments>,
    step: u64,
}

/// Adam's first and second moments of one parameter.
#[derive(Debug)]
enum Moments {
    /// A contiguous f32 parameter on the CPU: plain buffers, updated in place with the
    /// parameter by one parallel pass ([`adam_in_place`]).
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Any other parameter (another dtype or device): tensors, updated by tensor ops.
    Tensors { m: Tensor, v: Tensor },
}

impl Moments {
    /// Zero moments for `var`.
    fn zeros(var: &Var) -> Result<Self> {
        let t = var.as_tensor();
        Ok(
            if t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous() {
                let n = t.elem_count();
                Moments::Host {
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            } else {
                Moments::Tensors {
                    m: t.zeros_like()?,
                    v: t.zeros_like()?,
                }
            },
        )
    }

    /// The moments as tensors of `var`'s shape (for a checkpoint; the buffers are copied,
    /// the tensor kind is never changed in place and is shared).
    fn tensors(&self, var: &Var) -> Result<(Tensor, Tensor)> {
        match self {
            Moments::Host { m, v } => Ok((
                Tensor::from_slice(m, var.shape(), var.device())?,
                Tensor::from_slice(v, var.shape(), var.device())?,
            )),
            Moments::Tensors { m, v } => Ok((m.clone(), v.clone())),
        }
    }

    /// Moments of the same kind as `self`, with the values of `m` and `v`.
    fn with_values(&self, m: Tensor, v: Tensor) -> Result<Self> {
        Ok(match self {
            Moments::Host { .. } => Moments::Host {
                m: m.flatten_all()?.to_vec1::<f32>()?,
                v: v.flatten_all()?.to_vec1::<f32>()?,
            },
            Moments::Tensors { .. } => Moments::Tensors { m, v },
        })
    }
}

impl Adam {
    /// An Adam optimiser over `vars` with zero moments.
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        check_vars(&vars)?;
        let moments = vars
            .iter()
            .map(|(_, v)| Moments::zeros(v))
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            config,
            vars,
            moments,
            step: 0,
        })
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore) -> Result<StepStats> {
        let grads = gather_grads(&self.vars, grads)?;
        let c = self.config;
        let t = self.step + 1;
        let t_exp = i32::try_from(t).unwrap_or(i32::MAX);
        let bias1 = 1.0 - c.beta1.powi(t_exp);
        let bias2 = 1.0 - c.beta2.powi(t_exp);
        let k = AdamConsts::new(&c, (bias1, bias2));
        let (mut grad_sq, mut update_sq) = (0.0, 0.0);
        let mut new_state = Vec::with_capacity(self.vars.len());
        for (((_, var), g), moments) in self.vars.iter().zip(&grads).zip(&mut self.moments) {
            let (m, v) = match moments {
                Moments::Host { m, v } => {
                    let op = AdamStepOp {
                        m: std::cell::RefCell::new(m),
                        v: std::cell::RefCell::new(v),
                        k,
                        sums: std::cell::Cell::new((0.0, 0.0)),
                    };
                    var.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
                    let (g_sq, up_sq) = op.sums.get();
                    (grad_sq, update_sq) = (grad_sq + g_sq, update_sq + up_sq);
                    continue;
                }
                Moments::Tensors { m, v } => (m, v),
            };
            grad_sq += sum_sq(g)?;
            let w = var.as_tensor().detach();
            let g = if c.weight_decay > 0.0 {
                (g + (&w * c.weight_decay)?)?
            } else {
                g.clone()
            };
            let m2 = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v2 = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&v2 / bias2)?.sqrt()? + c.eps)?;
            let update = ((&m2 / bias1)? / denom)?.affine(c.lr, 0.0)?;
            update_sq += sum_sq(&update)?;
            new_state.push((var, w.sub(&update)?));
            (*m, *v) = (m2, v2);
        }
        for (var, w) in new_state {
            var.set(&w)?;
        }
        self.step = t;
        Ok(StepStats {
            step: t,
            lr: c.lr,
            grad_norm: grad_sq.sqrt(),
            update_norm: update_sq.sqrt(),
        })
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// `adam.step` (scalar), `adam.m.{name}` and `adam.v.{name}` for every parameter.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![(ADAM_STEP_KEY.to_string(), step_tensor(self.step)?)];
        for ((name, var), moments) in self.vars.iter().zip(&self.moments) {
            let (m, v) = moments.tensors(var)?;
            out.push((adam_m_key(name), m));
            out.push((adam_v_key(name), v));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let step = read_step(state, ADAM_STEP_KEY)?;
        let mut moments = Vec::with_capacity(self.vars.len());
        for ((name, var), old) in self.vars.iter().zip(&self.moments) {
            let m = read_like(state, &adam_m_key(name), var)?;
            let v = read_like(state, &adam_v_key(name), var)?;
            moments.push(old.with_values(m, v)?);
        }
        (self.step, self.moments) = (step, moments);
        Ok(())
    }
}

/// SGD's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f64,
    /// Momentum μ in [0, 1); 0 is plain SGD.
    pub momentum: f64,
    /// L2 weight decay, added to the gradient (`g + wd · w`).
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_unit(self.momentum, "SGD momentum")?;
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            bail!(
                "weight decay must be finite and non-negative, got {}",
                self.weight_decay
            );
        }
        if self.nesterov && self.momentum == 0.0 {
            bail!("Nesterov momentum needs momentum > 0");
        }
        Ok(())
    }
}

/// SGD with momentum (PyTorch's form, dampening 0):
/// `g ← g + wd·w; b ← μ b + g; d = nesterov ? g + μ b : b; w ← w − lr · d`.
#[derive(Debug)]
pub struct Sgd {
    pub config: SgdConfig,
    vars: Vec<(String, Var)>,
    buf: Vec<Tensor>,
    step: u64,
}

impl Sgd {
    /// An SGD optimiser over `vars` with zero momentum buffers (so the first step's buffer
    /// is the gradient itself, as in PyTorch).
    pub fn new(vars: Vec<(String, Var)>, config: SgdConfig) -> Result<Self> {
        config.validate()?;
        check_vars(&vars)?;
        let buf = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        Ok(Sgd {
            config,
            vars,
            buf,
            step: 0,
        })
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<StepStats> {
        let grads = gather_grads(&self.vars, grads)?;
        let c = self.config;
        let (mut grad_sq, mut update_sq) = (0.0, 0.0);
        let mut new_state = Vec::with_capacity(self.vars.len());
        for (((_, var), g), buf) in self.vars.iter().zip(&grads).zip(&self.buf) {
            grad_sq += sum_sq(g)?;
            let w = var.as_tensor().detach();
            let g = if c.weight_decay > 0.0 {
                (g + (&w * c.weight_decay)?)?
            } else {
                g.clone()
            };
            let buf = ((buf * c.momentum)? + &g)?;
            let direction = if c.nesterov {
                (&g + (&buf * c.momentum)?)?
            } else {
                buf.clone()
            };
            let update = direction.affine(c.lr, 0.0)?;
            update_sq += sum_sq(&update)?;
            new_state.push((w.sub(&update)?, buf));
        }
        for (i, (w, buf)) in new_state.into_iter().enumerate() {
            self.vars[i].1.set(&w)?;
            self.buf[i] = buf;
        }
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            lr: c.lr,
            grad_norm: grad_sq.sqrt(),
            update_norm: update_sq.sqrt(),
        })
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.config.lr = lr;
        Ok(())
    }

    fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// `sgd.step` (scalar) and `sgd.momentum.{name}` for every parameter.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![(SGD_STEP_KEY.to_string(), step_tensor(self.step)?)];
        for ((name, _), b) in self.vars.iter().zip(&self.buf) {
            out.push((sgd_momentum_key(name), b.clone()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let step = read_step(state, SGD_STEP_KEY)?;
        let buf = self
            .vars
            .iter()
            .map(|(name, var)| read_like(state, &sgd_momentum_key(name), var))
            .collect::<Result<Vec<_>>>()?;
        (self.step, self.buf) = (step, buf);
        Ok(())
    }
}

/// A learning-rate schedule over epochs (0-based), relative to a base rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    /// `base` at every epoch.
    Constant,
    /// `base · gamma^⌊epoch / every⌋` (`every = 0` is constant).
    Step { every: usize, gamma: f64 },
    /// Cosine annealing from `base` at epoch 0 to 0 at epoch `total` (and after):
    /// `base · (1 + cos(π · min(epoch, total) / total)) / 2` (`total = 0` is constant).
    Cosine { total: usize },
}

impl LrSchedule {
    /// The learning rate at `epoch` for the base rate `base`.
    pub fn lr_at(&self, base: f64, epoch: usize) -> f64 {
        match *self {
            LrSchedule::Constant
            | LrSchedule::Step { every: 0, .. }
            | LrSchedule::Cosine { total: 0 } => base,
            LrSchedule::Step { every, gamma } => {
                let k = i32::try_from(epoch / every).unwrap_or(i32::MAX);
                base * gamma.powi(k)
            }
            LrSchedule::Cosine { total } => {
                let progress = epoch.min(total) as f64 / total as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The in-place Adam step equals the tensor formulas (candle ops) bit for bit, with and
    /// without weight decay, over several steps' bias corrections, and its norms are the
    /// f64 sums of squares.
    #[test]
    fn in_place_adam_matches_tensor_ops() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 40_000; // more than one parallel chunk
        let mut draw = |lo: f32, hi: f32| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
            Tensor::from_vec(v, (200, 200), &Device::Cpu).unwrap()
        };
        let (w, g, m) = (draw(-1.0, 1.0), draw(-0.1, 0.1), draw(-0.01, 0.01));
        let v = draw(0.0, 1e-4);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (wd, step) in [(0.0, 1), (0.0, 7), (5e-4, 3)] {
            let c = AdamConfig {
                weight_decay: wd,
                ..AdamConfig::default()
            };
            let bias1 = 1.0 - c.beta1.powi(step);
            let bias2 = 1.0 - c.beta2.powi(step);
            let (mut w2, mut m2, mut v2) = (flat(&w), flat(&m), flat(&v));
            let (g_sq, up_sq) = adam_in_place(
                &mut w2,
                &flat(&g),
                &mut m2,
                &mut v2,
                &AdamConsts::new(&c, (bias1, bias2)),
            );
            // The tensor path of `Adam::step`.
            let gd = if wd > 0.0 {
                (&g + (&w * wd).unwrap()).unwrap()
            } else {
                g.clone()
            };
            let rm = ((&m * c.beta1).unwrap() + (&gd * (1.0 - c.beta1)).unwrap()).unwrap();
            let rv =
                ((&v * c.beta2).unwrap() + (gd.sqr().unwrap() * (1.0 - c.beta2)).unwrap()).unwrap();
            let denom = ((&rv / bias2).unwrap().sqrt().unwrap() + c.eps).unwrap();
            let rup = ((&rm / bias1).unwrap() / denom)
                .unwrap()
                .affine(c.lr, 0.0)
                .unwrap();
            let rw = w.sub(&rup).unwrap();
            for (name, a, b) in [("w", &w2, &rw), ("m", &m2, &rm), ("v", &v2, &rv)] {
                assert_eq!(a, &flat(b), "{name} wd {wd} step {step}");
            }
            let sq = |t: &Tensor| flat(t).iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
            assert!((g_sq - sq(&g)).abs() <= 1e-12 * sq(&g), "grad norm");
            assert!((up_sq - sq(&rup)).abs() <= 1e-12 * sq(&rup), "update norm");
            assert!(up_sq > 0.0);
        }
    }

    /// `Adam::step` on CPU f32 parameters (moments as buffers, updated in place) and on
    /// parameters that take the tensor path (here: f64) give the same weights over steps,
    /// and the checkpoint state round-trips into the in-place kind.
    #[test]
    fn host_moments_match_tensor_moments() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 1_000;
        let w0: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w32 = Var::from_vec(w0.clone(), (20, 50), &Device::Cpu).unwrap();
        let w64 = Var::from_tensor(&w32.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        let c = AdamConfig {
            weight_decay: 1e-3,
            ..AdamConfig::default()
        };
        let mut a32 = Adam::new(vec![("w".into(), w32.clone())], c).unwrap();
        let mut a64 = Adam::new(vec![("w".into(), w64.clone())], c).unwrap();
        assert!(matches!(a32.moments[0], Moments::Host { .. }));
        assert!(matches!(a64.moments[0], Moments::Tensors { .. }));
        for step in 0..4 {
            // Gradient of Σ w³: 3w², a different gradient every step.
            for (var, opt) in [(&w32, &mut a32 as &mut dyn Optimizer), (&w64, &mut a64)] {
                let loss = var.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
                let stats = opt.step(&loss.backward().unwrap()).unwrap();
                assert_eq!(stats.step, step + 1);
                assert!(stats.grad_norm > 0.0 && stats.update_norm > 0.0);
            }
            let a = flat_f64(w32.as_tensor());
            let b = flat_f64(w64.as_tensor());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1e-3),
                    "step {step}: {x} vs {y}"
                );
            }
        }
        // The state of the in-place optimiser loads back into a fresh one and continues
        // exactly as the original does.
        let state: HashMap<String, Tensor> = a32.state_tensors().unwrap().into_iter().collect();
        let w_copy = Var::from_tensor(&w32.as_tensor().copy().unwrap()).unwrap();
        let mut b32 = Adam::new(vec![("w".into(), w_copy.clone())], c).unwrap();
        b32.load_state(&state).unwrap();
        for (var, opt) in [(&w32, &mut a32), (&w_copy, &mut b32)] {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        assert_eq!(flat_f64(w32.as_tensor()), flat_f64(w_copy.as_tensor()));
    }

    fn flat_f64(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    }
}
