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

/// Runs `f` on the contiguous f32 data of four CPU tensors, or returns `None` when one is
/// not such a tensor.
fn with_f32_4<R>(ts: [&Tensor; 4], f: impl FnOnce([&[f32]; 4]) -> R) -> Option<R> {
    use candle_core::{CpuStorage, Storage};
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut data: Vec<&[f32]> = Vec::with_capacity(4);
    for (storage, layout) in &guards {
        let (start, end) = layout.contiguous_offsets()?;
        match &**storage {
            Storage::Cpu(CpuStorage::F32(d)) => data.push(d.get(start..end)?),
            _ => return None,
        }
    }
    match data.as_slice() {
        [a, b, c, d] if a.len() == b.len() && a.len() == c.len() && a.len() == d.len() => {
            Some(f([a, b, c, d]))
        }
        _ => None,
    }
}

/// One Adam step of one f32 CPU parameter in a single parallel pass, with exactly the f32
/// arithmetic of the tensor path (candle's `x * k` and `x / k` are `affine(k or 1/k, 0)`,
/// `x + ε` is `affine(1, ε)`, each constant rounded from f64 to f32): returns the new
/// weights, moments and the update `[w', m', v', Δ]` as tensors, or `None` when the
/// tensors are not contiguous f32 on the CPU (the caller then runs the tensor path).
fn adam_fused(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: &AdamConfig,
    (bias1, bias2): (f64, f64),
) -> Result<Option<(Tensor, Tensor, Tensor, Tensor)>> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 14;
    let (b1, omb1) = (c.beta1 as f32, (1.0 - c.beta1) as f32);
    let (b2, omb2) = (c.beta2 as f32, (1.0 - c.beta2) as f32);
    let (ib1, ib2) = ((1.0 / bias1) as f32, (1.0 / bias2) as f32);
    let (eps, lr, wd) = (c.eps as f32, c.lr as f32, c.weight_decay as f32);
    let decay = c.weight_decay > 0.0;
    let out = with_f32_4([w, g, m, v], |[w, g, m, v]| {
        let n = w.len();
        let (mut w2, mut m2, mut v2, mut up) =
            (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        w2.par_chunks_mut(CHUNK)
            .zip(m2.par_chunks_mut(CHUNK))
            .zip(v2.par_chunks_mut(CHUNK))
            .zip(up.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, (((w2, m2), v2), up))| {
                let lo = ci * CHUNK;
                for (i, (((w2, m2), v2), up)) in w2
                    .iter_mut()
                    .zip(m2.iter_mut())
                    .zip(v2.iter_mut())
                    .zip(up.iter_mut())
                    .enumerate()
                {
                    let (wi, mi, vi) = (w[lo + i], m[lo + i], v[lo + i]);
                    let gi = if decay {
                        g[lo + i] + (wi * wd + 0.0)
                    } else {
                        g[lo + i]
                    };
                    *m2 = (mi * b1 + 0.0) + (gi * omb1 + 0.0);
                    *v2 = (vi * b2 + 0.0) + ((gi * gi) * omb2 + 0.0);
                    let denom = (*v2 * ib2 + 0.0).sqrt() * 1.0 + eps;
                    *up = ((*m2 * ib1 + 0.0) / denom) * lr + 0.0;
                    *w2 = wi - *up;
                }
            });
        (w2, m2, v2, up)
    });
    let Some((w2, m2, v2, up)) = out else {
        return Ok(None);
    };
    let (shape, dev) = (w.shape(), w.device());
    Ok(Some((
        Tensor::from_vec(w2, shape, dev)?,
        Tensor::from_vec(m2, shape, dev)?,
        Tensor::from_vec(v2, shape, dev)?,
        Tensor::from_vec(up, shape, dev)?,
    )))
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
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl Adam {
    /// An Adam optimiser over `vars` with zero moments.
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        check_vars(&vars)?;
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Adam {
            config,
            vars,
            m,
            v,
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
        let (mut grad_sq, mut update_sq) = (0.0, 0.0);
        let mut new_state = Vec::with_capacity(self.vars.len());
        for (((_, var), g), (m, v)) in self.vars.iter().zip(&grads).zip(self.m.iter().zip(&self.v))
        {
            grad_sq += sum_sq(g)?;
            let w = var.as_tensor().detach();
            if let Some((w, m, v, update)) = adam_fused(&w, g, m, v, &c, (bias1, bias2))? {
                update_sq += sum_sq(&update)?;
                new_state.push((w, m, v));
                continue;
            }
            let g = if c.weight_decay > 0.0 {
                (g + (&w * c.weight_decay)?)?
            } else {
                g.clone()
            };
            let m = ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&v / bias2)?.sqrt()? + c.eps)?;
            let update = ((&m / bias1)? / denom)?.affine(c.lr, 0.0)?;
            update_sq += sum_sq(&update)?;
            new_state.push((w.sub(&update)?, m, v));
        }
        for (i, (w, m, v)) in new_state.into_iter().enumerate() {
            self.vars[i].1.set(&w)?;
            self.m[i] = m;
            self.v[i] = v;
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
        for (((name, _), m), v) in self.vars.iter().zip(&self.m).zip(&self.v) {
            out.push((adam_m_key(name), m.clone()));
            out.push((adam_v_key(name), v.clone()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let step = read_step(state, ADAM_STEP_KEY)?;
        let mut m = Vec::with_capacity(self.vars.len());
        let mut v = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            m.push(read_like(state, &adam_m_key(name), var)?);
            v.push(read_like(state, &adam_v_key(name), var)?);
        }
        (self.step, self.m, self.v) = (step, m, v);
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

    /// The fused Adam step equals the tensor formulas (candle ops) bit for bit, with and
    /// without weight decay, over several steps' bias corrections.
    #[test]
    fn fused_adam_matches_tensor_ops() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 40_000; // more than one parallel chunk
        let mut draw = |lo: f32, hi: f32| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
            Tensor::from_vec(v, (200, 200), &Device::Cpu).unwrap()
        };
        let (w, g, m) = (draw(-1.0, 1.0), draw(-0.1, 0.1), draw(-0.01, 0.01));
        let v = draw(0.0, 1e-4);
        for (wd, step) in [(0.0, 1), (0.0, 7), (5e-4, 3)] {
            let c = AdamConfig {
                weight_decay: wd,
                ..AdamConfig::default()
            };
            let bias1 = 1.0 - c.beta1.powi(step);
            let bias2 = 1.0 - c.beta2.powi(step);
            let (w2, m2, v2, up) = adam_fused(&w, &g, &m, &v, &c, (bias1, bias2))
                .unwrap()
                .expect("contiguous f32 CPU tensors take the fused path");
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
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (name, a, b) in [
                ("w", &w2, &rw),
                ("m", &m2, &rm),
                ("v", &v2, &rv),
                ("up", &up, &rup),
            ] {
                assert_eq!(flat(a), flat(b), "{name} wd {wd} step {step}");
            }
            assert!(flat(&up).iter().any(|&u| u != 0.0));
        }
        // Not contiguous: the caller's tensor path runs instead.
        let wt = w.t().unwrap();
        assert!(
            adam_fused(&wt, &g, &m, &v, &AdamConfig::default(), (0.1, 0.001))
                .unwrap()
                .is_none()
        );
    }
}
