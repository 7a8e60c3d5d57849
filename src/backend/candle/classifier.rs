//! Classifier heads and their losses: softmax cross-entropy (Eq. 6 of the paper) and
//! stochmax (Eq. 7), the DropMax classifier of Lee et al. (2018) that the paper adopts.
//!
//! Owns: [`softmax_cross_entropy`], the [`Stochmax`] head (its two extra linear layers
//! `stochmax.rho.{weight,bias}` and `stochmax.aux.{weight,bias}`) and the numerically stable
//! log-sigmoid helpers they share.
//!
//! Invariants:
//! - inputs are checked: logits/outputs `[B, K]`, labels `[B]` of dtype u32 with values `< K`;
//!   a mismatch is an `Err`, never a panic;
//! - every logarithm of a sigmoid is a log-sigmoid and every `log(x + ε)` is formed in log
//!   space (`log x + softplus(ln ε − log x)`), so finite inputs give finite losses and gradients.
//!
//! # Stochmax, as in DropMax's official implementation
//! With `h` the accumulated penultimate activity `[B, H]` and `o` the accumulated output layer
//! `[B, K]`: `a_ρ = W_ρ h + b_ρ`, `a_r = W_r h + b_r`, `ρ = σ(a_ρ)`, `r = σ(a_r)`,
//! `q = σ(stopgrad(a_ρ) + a_r)`. Training draws `u ~ U(0, 1)` per class and uses the relaxed
//! Bernoulli mask `z = σ((logit q + logit u) / τ)`, `τ = 0.1`, with `z_t = 1` for the target
//! class `t`; the logits are `log(z + ε) + o`, `ε = 1e-20`. The loss is the sum of four terms,
//! each with weight 1, as in DropMax's `run.py` (`cent + kl + aux + neg_ent`):
//! - `ce`: softmax cross-entropy of `log(z + ε) + o`, averaged over the batch;
//! - `kl`: `KL(q ‖ ρ)` per class, `−log ρ_t` for the target class (`KL(Ber(1) ‖ Ber(ρ_t))`),
//!   summed over classes and averaged over the batch;
//! - `aux`: binary cross-entropy of `r` against the one-hot label, summed over classes and
//!   averaged over the batch;
//! - `neg_entropy`: `Σ_k ρ log ρ + (1 − ρ) log(1 − ρ)` (minus the entropy of ρ), summed over
//!   classes and averaged over the batch.
//!
//! At test time `z` is replaced by `ρ`: logits `log(ρ + ε) + o`.
//!
//! Deviations from the TensorFlow code, all in saturated regions only: `logit q` is `a_q`
//! itself rather than `log(q + ε) − log(1 − q + ε)`, and `log σ(a)` is the exact
//! log-sigmoid rather than `log(σ(a) + ε)` (which clamps at `ln ε ≈ −46` and loses its
//! gradient there). DropMax's L2 weight decay of 1e-4 on the non-branch weights is the
//! optimiser's business (`train::optim`), not part of this loss.

use candle_core::{bail, DType, Device, Result, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};

use super::encode::SeededRng;

/// The temperature of stochmax's relaxed Bernoulli mask.
pub const STOCHMAX_TAU: f64 = 0.1;
/// The ε of `log(z + ε)` in stochmax's logits.
pub const STOCHMAX_EPS: f64 = 1e-20;

/// The smallest and largest uniform draw used for `logit u` (exact in f32).
const U_MIN: f64 = 1.0 / 16_777_216.0;
const U_MAX: f64 = 1.0 - 1.0 / 16_777_216.0;

/// `softplus(x) = log(1 + eˣ)`, computed as `max(x, 0) + log(1 + e^−|x|)`: no overflow.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + tail
}

/// `log σ(x) = −softplus(−x)`, finite for every finite `x`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    softplus(&x.neg()?)?.neg()
}

/// `log(σ(x) + ε)` formed in log space: `log σ(x) + softplus(ln ε − log σ(x))`, which keeps
/// the full precision of `log σ(x)` whenever σ(x) ≫ ε.
fn log_sigmoid_plus_eps(x: &Tensor) -> Result<Tensor> {
    let log_sig = log_sigmoid(x)?;
    let correction = softplus(&(log_sig.neg()? + STOCHMAX_EPS.ln())?)?;
    log_sig + correction
}

/// Checks that `labels` is a `[B]` u32 tensor with values `< classes`, returning them.
fn check_labels(labels: &Tensor, batch: usize, classes: usize) -> Result<Vec<u32>> {
    if labels.dtype() != DType::U32 {
        bail!("labels must be u32, got {:?}", labels.dtype());
    }
    if labels.dims() != [batch] {
        bail!("labels must have shape [{batch}], got {:?}", labels.dims());
    }
    let values = labels.to_vec1::<u32>()?;
    if let Some((i, &bad)) = values
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        bail!("label {bad} at batch index {i} is out of range for {classes} classes");
    }
    Ok(values)
}

/// Checks that `x` is `[B, K]` with `B ≥ 1`, `K ≥ 1`, returning `(B, K)`.
fn check_matrix(x: &Tensor, what: &str) -> Result<(usize, usize)> {
    match x.dims() {
        &[b, k] if b > 0 && k > 0 => Ok((b, k)),
        dims => bail!("{what} must be a non-empty [batch, classes] matrix, got shape {dims:?}"),
    }
}

/// The one-hot `[B, K]` matrix of `labels` (values must be `< classes`).
pub fn one_hot(labels: &[u32], classes: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut data = vec![0f32; labels.len() * classes];
    for (row, &l) in labels.iter().enumerate() {
        if l as usize >= classes {
            bail!("label {l} is out of range for {classes} classes");
        }
        data[row * classes + l as usize] = 1.0;
    }
    Tensor::from_vec(data, (labels.len(), classes), device)?.to_dtype(dtype)
}

/// `−mean_b log_softmax(logits)[b, labels[b]]` for labels already checked.
fn cross_entropy_unchecked(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let batch = logits.dim(0)?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?;
    picked.sum_all()? / -(batch as f64)
}

/// Softmax cross-entropy (Eq. 6): logits `[B, K]`, labels `[B]` u32 → the scalar
/// `−(1/B) Σ_b log softmax(logits_b)[label_b]`, computed stably (max-shifted log-sum-exp).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (batch, classes) = check_matrix(logits, "logits")?;
    check_labels(labels, batch, classes)?;
    cross_entropy_unchecked(logits, &labels.to_device(logits.device())?)
}

/// The four terms of the stochmax training loss (scalars), see the module docs.
#[derive(Debug, Clone)]
pub struct StochmaxTerms {
    /// Cross-entropy of the masked logits `log(z + ε) + o`.
    pub ce: Tensor,
    /// `KL(q ‖ ρ)` (target class: `−log ρ_t`).
    pub kl: Tensor,
    /// Binary cross-entropy of the auxiliary head `r` against the one-hot label.
    pub aux: Tensor,
    /// Minus the entropy of ρ.
    pub neg_entropy: Tensor,
}

impl StochmaxTerms {
    /// `ce + kl + aux + neg_entropy`, the loss that is minimised.
    pub fn total(&self) -> Result<Tensor> {
        (&self.ce + &self.kl)? + (&self.aux + &self.neg_entropy)?
    }
}

/// The stochmax (DropMax) classifier head: two linear maps `H → K` on the accumulated
/// penultimate activity, the retain probabilities ρ and the auxiliary head r.
#[derive(Debug, Clone)]
pub struct Stochmax {
    rho: Linear,
    aux: Linear,
    hidden: usize,
    classes: usize,
}

impl Stochmax {
    /// Creates (or loads) the head's parameters under `vb.pp("stochmax")`: given the
    /// model's root `VarBuilder` they are `stochmax.rho.weight` `[K, H]`,
    /// `stochmax.rho.bias` `[K]`, `stochmax.aux.weight`, `stochmax.aux.bias`.
    pub fn new(hidden: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        if hidden == 0 || classes == 0 {
            bail!("stochmax needs hidden > 0 and classes > 0, got hidden = {hidden}, classes = {classes}");
        }
        let vb = vb.pp("stochmax");
        let rho = candle_nn::linear(hidden, classes, vb.pp("rho"))?;
        let aux = candle_nn::linear(hidden, classes, vb.pp("aux"))?;
        Ok(Stochmax {
            rho,
            aux,
            hidden,
            classes,
        })
    }

    /// The width H of the penultimate activity this head reads.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The number of classes K.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Checks `h` `[B, H]` and `o` `[B, K]`, returning B.
    fn check_inputs(&self, h: &Tensor, o: &Tensor) -> Result<usize> {
        let (b_h, hidden) = check_matrix(h, "stochmax input h")?;
        let (b_o, classes) = check_matrix(o, "stochmax output o")?;
        if hidden != self.hidden {
            bail!("stochmax expects h of width {}, got {hidden}", self.hidden);
        }
        if classes != self.classes {
            bail!(
                "stochmax expects o with {} classes, got {classes}",
                self.classes
            );
        }
        if b_h != b_o {
            bail!("stochmax: h has batch {b_h} but o has batch {b_o}");
        }
        Ok(b_h)
    }

    /// The retain pre-activations `a_ρ = W_ρ h + b_ρ` `[B, K]`.
    pub fn retain_logits(&self, h: &Tensor) -> Result<Tensor> {
        self.rho.forward(h)
    }

    /// The training loss, drawing the mask noise `u` from `rng` (one draw per element of `o`,
    /// row-major).
    pub fn train_loss(
        &self,
        h: &Tensor,
        o: &Tensor,
        labels: &Tensor,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        self.train_terms(h, o, labels, rng)?.total()
    }

    /// The four loss terms, drawing the mask noise from `rng` exactly as
    /// [`Stochmax::train_loss`] does (their sum is its loss).
    pub fn train_terms(
        &self,
        h: &Tensor,
        o: &Tensor,
        labels: &Tensor,
        rng: &mut SeededRng,
    ) -> Result<StochmaxTerms> {
        let (batch, classes) = check_matrix(o, "stochmax output o")?;
        let u = Tensor::from_vec(
            rng.uniform_open_vec(batch * classes),
            (batch, classes),
            o.device(),
        )?
        .to_dtype(o.dtype())?;
        self.train_terms_with_noise(h, o, labels, &u)
    }

    /// The training loss with given mask noise `u` `[B, K]` in (0, 1) (values are clamped to
    /// `[2^-24, 1 − 2^-24]`); [`Stochmax::train_loss`] draws `u` and calls this.
    pub fn train_loss_with_noise(
        &self,
        h: &Tensor,
        o: &Tensor,
        labels: &Tensor,
        u: &Tensor,
    ) -> Result<Tensor> {
        self.train_terms_with_noise(h, o, labels, u)?.total()
    }

    /// The four loss terms with given mask noise `u` (see [`Stochmax::train_loss_with_noise`]).
    pub fn train_terms_with_noise(
        &self,
        h: &Tensor,
        o: &Tensor,
        labels: &Tensor,
        u: &Tensor,
    ) -> Result<StochmaxTerms> {
        let batch = self.check_inputs(h, o)?;
        let label_values = check_labels(labels, batch, self.classes)?;
        if u.dims() != o.dims() {
            bail!(
                "stochmax noise u must have shape {:?}, got {:?}",
                o.dims(),
                u.dims()
            );
        }
        let device = o.device();
        let dtype = o.dtype();
        let labels = labels.to_device(device)?;
        let target = one_hot(&label_values, self.classes, dtype, device)?;
        let other = (1.0 - &target)?;
        let per_batch = |x: Tensor| -> Result<Tensor> { x.sum_all()? / batch as f64 };

        let a_rho = self.rho.forward(h)?;
        let a_r = self.aux.forward(h)?;
        let a_q = (a_rho.detach() + &a_r)?;

        // The relaxed Bernoulli mask, in log space: log z = log σ((logit q + logit u) / τ).
        let u = u.to_dtype(dtype)?.clamp(U_MIN, U_MAX)?;
        let logit_u = (u.log()? - (1.0 - &u)?.log()?)?;
        let mask_logits = ((a_q.clone() + logit_u)? / STOCHMAX_TAU)?;
        // log(z + ε) for the other classes, log(1 + ε) = 0 for the target.
        let log_z = (log_sigmoid_plus_eps(&mask_logits)? * &other)?;
        let ce = cross_entropy_unchecked(&(log_z + o)?, &labels)?;

        let log_p = log_sigmoid(&a_rho)?;
        let log_not_p = log_sigmoid(&a_rho.neg()?)?;
        let log_q = log_sigmoid(&a_q)?;
        let log_not_q = log_sigmoid(&a_q.neg()?)?;
        let p = candle_nn::ops::sigmoid(&a_rho)?;
        let q = candle_nn::ops::sigmoid(&a_q)?;

        let kl_other = ((&q * (&log_q - &log_p)?)? + ((1.0 - &q)? * (&log_not_q - &log_not_p)?)?)?;
        let kl_target = log_p.neg()?;
        let kl = per_batch(((&target * kl_target)? + (&other * kl_other)?)?)?;

        let aux_target = log_sigmoid(&a_r)?.neg()?;
        let aux_other = log_sigmoid(&a_r.neg()?)?.neg()?;
        let aux = per_batch(((&target * aux_target)? + (&other * aux_other)?)?)?;

        let neg_entropy = per_batch(((&p * &log_p)? + ((1.0 - &p)? * &log_not_p)?)?)?;

        Ok(StochmaxTerms {
            ce,
            kl,
            aux,
            neg_entropy,
        })
    }

    /// Test-time logits `log(ρ + ε) + o` `[B, K]` (the mask z replaced by its mean ρ).
    pub fn eval_logits(&self, h: &Tensor, o: &Tensor) -> Result<Tensor> {
        self.check_inputs(h, o)?;
        log_sigmoid_plus_eps(&self.rho.forward(h)?)? + o
    }
}

/// The classifier at the end of a network: plain softmax (Eq. 6) or stochmax (Eq. 7).
#[derive(Debug, Clone)]
pub enum Classifier {
    /// Softmax cross-entropy on the output layer `o`; `h` is not read.
    Softmax,
    /// The stochmax head, reading `h` as well as `o`.
    Stochmax(Stochmax),
}

impl Classifier {
    /// The training loss (a scalar) for outputs `o` `[B, K]`, penultimate activity `h`
    /// `[B, H]` and labels `[B]` (u32); only stochmax draws from `rng`.
    pub fn train_loss(
        &self,
        h: &Tensor,
        o: &Tensor,
        labels: &Tensor,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        match self {
            Classifier::Softmax => softmax_cross_entropy(o, labels),
            Classifier::Stochmax(head) => head.train_loss(h, o, labels, rng),
        }
    }

    /// The logits whose argmax is the prediction at test time `[B, K]`.
    pub fn eval_logits(&self, h: &Tensor, o: &Tensor) -> Result<Tensor> {
        match self {
            Classifier::Softmax => {
                check_matrix(o, "logits")?;
                Ok(o.clone())
            }
            Classifier::Stochmax(head) => head.eval_logits(h, o),
        }
    }
}

/// How many rows of `logits` `[B, K]` have their largest value at the label `[B]` (u32)
/// (the prediction is candle's `argmax`).
pub fn correct_count(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let (batch, classes) = check_matrix(logits, "logits")?;
    let labels = check_labels(labels, batch, classes)?;
    let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count())
}
