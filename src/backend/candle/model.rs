//! The executable model every training method shares: the final-form IR lowered onto candle.
//!
//! - One candle [`Var`] per weight set, named by the IR (`Conv3`, `FC1`: the checkpoint names),
//!   applied at every unroll step, so a BackRes layer's gradient is the sum over its steps.
//!   No biases (as in the paper); Kaiming-normal init from a seeded RNG.
//! - Nodes run in topological order. An SNN-domain value is one tensor `[T·B, ...]` (time on
//!   the leading axis, so a layer is one conv/matmul for all steps); an ANN-domain value is
//!   `[B, ...]`. Spiking activations scan the `[T, B·…]` view with their slot's threshold.
//! - Hybrid boundaries: ANN → SNN repeats the real-valued output at every step; SNN → ANN
//!   passes the spike rate (mean over T).
//! - Logits: the last layer's output averaged over the T steps (the mean, not the sum, so the
//!   logit scale and a good learning rate do not depend on T; softmax CE trains well with it).
//!   `penultimate` (h of stochmax) is the last layer's input averaged over T, `[B, H]`.
//! - Thresholds live in the model, one per slot (`Network::thresholds`), and are settable, so
//!   conversion can balance them. [`Mode::Ann`] runs every spiking layer as ReLU with T = 1
//!   and the input directly coded (the ANN baseline and conversion's source network);
//!   [`Mode::IfConversion`] runs every spiking layer as IF (leak 1, subtract) with the slot
//!   thresholds (conversion's SNN). Measurements (maximum input currents, spike rates, the
//!   Poisson input's rate, traces) are observers ([`super::observe`]) passed to
//!   [`Model::forward_observed`].
//! - This is the batched way to run the network (all T steps of a layer at once, for
//!   training); `step::Simulator` runs the same network step by step.
//! - Classifier: softmax, or stochmax (`classifier::Stochmax`, parameters `stochmax.*`,
//!   drawn from the same seed); [`Model::loss`] and [`Model::eval_logits`] apply it.
//! - Kernels: `conv::conv2d`, `pool::pool2d`, `linear::linear` (an FC layer of the
//!   training graph as one node), the fused `neuron::lif_scan_steps`. In
//!   [`Model::forward`] (no observer) a convolution with a spiking activation, with the pool
//!   that alone reads it, runs as one fused op (`conv::conv2d_lif`): same values and
//!   gradients, fewer passes over memory; a map that only such fused layers read stays
//!   channel-last between them (`conv::MapLayout`, `Model::read_by_fused_convs`), never
//!   one an observer, a pool outside a fused op, an FC layer or the output reads. Observed
//!   passes run the ops one by one, so every observer sees the currents and spikes it asks
//!   for.
//!   Dropout draws one mask per image (`encode::dropout_mask`, keyed per image once the
//!   caller set `SeededRng::set_images`), held over all T steps.
//!
//! Invariants: `weights[i]` holds weight set `WeightId(i)`; `thresholds.len()` equals the
//! number of threshold slots; a forward pass never panics on a shape the IR promised (a
//! wrong input shape is an error, see [`Model::check_input`]).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use petgraph::graph::NodeIndex;
use rand::{Rng, SeedableRng};

use super::classifier::{self, Classifier as Head, Stochmax};
use super::encode::{self, SeededRng};
use super::neuron::{self, NeuronParams};
use super::observe::{Application, NoObserver, Observer};
use super::{conv, pool};
use crate::ir::{
    Activation, BoundaryKind, Classifier, Domain, Encoding, JoinMode, LayerKind, Network, Op,
    PoolKind, Reset, Shape, SlotId,
};

/// The parameter name of a threshold slot, `threshold.<layer>.<step>` (step 1-based): the
/// model's name for it, which checkpoints (`train::checkpoint` re-exports it with every other
/// key) and exporters use.
pub fn threshold_key(layer: &str, step: u32) -> String {
    format!("threshold.{layer}.{step}")
}

/// An RNG for one purpose (`stream`) of a run seeded with `seed`: streams are independent.
pub fn rng_for(seed: u64, stream: u64) -> SeededRng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    SeededRng::from_chacha(rng)
}

/// What the spiking layers of a run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The network as declared: each spiking layer with its own neuron (LIF, IF, ...).
    Snn,
    /// Every spiking layer as ReLU, T = 1, the input directly coded: the ANN baseline and
    /// conversion's source network.
    Ann,
    /// Every spiking layer as an IF neuron (leak 1, reset by subtraction) with its slot's
    /// threshold, whatever its declared neuron: the SNN that ANN-to-SNN conversion runs.
    IfConversion,
}

/// How to run one forward pass: the mode, T and whether it is a training pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// T, the steps an input is presented (ignored in [`Mode::Ann`]).
    pub timesteps: usize,
    /// Training: dropout is active and stochmax draws noise.
    pub train: bool,
    pub mode: Mode,
}

impl ForwardOptions {
    /// The declared SNN at T = `timesteps`.
    pub fn snn(timesteps: usize, train: bool) -> Self {
        ForwardOptions {
            timesteps,
            train,
            mode: Mode::Snn,
        }
    }

    /// The ANN (T = 1).
    pub fn ann(train: bool) -> Self {
        ForwardOptions {
            timesteps: 1,
            train,
            mode: Mode::Ann,
        }
    }

    /// The converted SNN (IF neurons) at T = `timesteps`, evaluation only.
    pub fn if_conversion(timesteps: usize) -> Self {
        ForwardOptions {
            timesteps,
            train: false,
            mode: Mode::IfConversion,
        }
    }
}

pub use super::observe::SlotActivity;

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `[B, K]`: the last layer's output o, averaged over T (before the classifier: use
    /// [`Model::eval_logits`] for predictions).
    pub logits: Tensor,
    /// `[B, H]`: the last layer's input, averaged over T (h of stochmax).
    pub penultimate: Tensor,
}

/// The executable network.
pub struct Model {
    net: Network,
    order: Vec<NodeIndex>,
    /// Per node (by index), its producers ordered by input port.
    inputs: Vec<Vec<NodeIndex>>,
    /// Per node (by index), the nodes that read it.
    consumers: Vec<Vec<NodeIndex>>,
    weights: Vec<Var>,
    thresholds: Vec<f32>,
    /// The classifier (softmax, or stochmax with its own parameters).
    head: Head,
    /// The classifier's parameters by checkpoint name (`stochmax.*`), sorted.
    head_vars: Vec<(String, Var)>,
    device: Device,
}

/// The most parameters a model may hold (4 GiB of f32): larger networks are refused
/// rather than aborting on allocation.
pub const MAX_PARAMS: u64 = 1 << 30;

/// The most activation elements one forward pass may hold (8 GiB of f32).
pub const MAX_ACTIVATIONS: u64 = 1 << 31;

/// Samples of N(0, std²) from `rng` (Box–Muller).
fn normal(n: usize, std: f32, rng: &mut SeededRng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.0.random::<f32>().max(1e-7);
            let u2: f32 = rng.0.random::<f32>();
            std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

use super::{err, usize_of};

impl Model {
    /// Lowers `network` (final form) with weights drawn from `seed`.
    pub fn new(network: &Network, device: &Device, seed: u64) -> Result<Model> {
        let total = network.unique_params().unwrap_or(u64::MAX);
        if total > MAX_PARAMS {
            return Err(err(format!(
                "network `{}` has {total} parameters, more than the {MAX_PARAMS} this runtime allocates",
                network.name
            )));
        }
        let mut rng = rng_for(seed, 1);
        let mut weights = Vec::with_capacity(network.weights.len());
        for ws in &network.weights {
            let (shape, fan_in) = match ws.kind {
                LayerKind::Conv {
                    in_ch,
                    out_ch,
                    kernel,
                    ..
                } => {
                    let s = [out_ch, in_ch, kernel, kernel]
                        .into_iter()
                        .map(usize_of)
                        .collect::<Result<Vec<_>>>()?;
                    let f = s[1].saturating_mul(s[2]).saturating_mul(s[3]);
                    (s, f)
                }
                LayerKind::Fc { inputs, outputs } => {
                    let s = vec![usize_of(outputs)?, usize_of(inputs)?];
                    let f = s[1];
                    (s, f)
                }
            };
            let n = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| err(format!("{} has too many weights", ws.name)))?;
            let std = (2.0 / fan_in.max(1) as f32).sqrt();
            let t = Tensor::from_vec(normal(n, std, &mut rng), shape, device)?;
            weights.push(Var::from_tensor(&t)?);
        }
        let out = &network.graph[network.output];
        let k = usize_of(out.out_shape.and_then(|s| s.features()).unwrap_or(1))?;
        let h_shape = network
            .inputs_of(network.output)
            .first()
            .and_then(|&i| network.graph[i].out_shape)
            .and_then(|s| s.features())
            .unwrap_or(1);
        let h = usize_of(h_shape)?;
        let (head, head_vars) = if network.settings.classifier == Classifier::Stochmax {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, device);
            let head = Stochmax::new(h, k, vb)?;
            let mut vars: Vec<(String, Var)> = map
                .data()
                .lock()
                .map_err(|_| err("stochmax parameters are poisoned"))?
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            // Re-draw from the seed (candle's own init is not seeded): weights
            // N(0, 1/H), biases 0.
            for (_, v) in &vars {
                let t = if v.rank() == 2 {
                    let std = (1.0 / h as f32).sqrt();
                    Tensor::from_vec(normal(v.elem_count(), std, &mut rng), v.shape(), device)?
                } else {
                    v.zeros_like()?
                };
                v.set(&t)?;
            }
            (Head::Stochmax(head), vars)
        } else {
            (Head::Softmax, Vec::new())
        };
        let thresholds = network.thresholds.iter().map(|s| s.initial).collect();
        Ok(Model {
            net: network.clone(),
            order: network.topo_order(),
            inputs: network
                .graph
                .node_indices()
                .map(|n| network.inputs_of(n))
                .collect(),
            consumers: network
                .graph
                .node_indices()
                .map(|n| {
                    network
                        .graph
                        .neighbors_directed(n, petgraph::Direction::Outgoing)
                        .collect()
                })
                .collect(),
            weights,
            thresholds,
            head,
            head_vars,
            device: device.clone(),
        })
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of classes (features of the last layer).
    pub fn classes(&self) -> usize {
        let out = &self.net.graph[self.net.output];
        out.out_shape.and_then(|s| s.features()).unwrap_or(1) as usize
    }

    /// Every trainable parameter with its checkpoint name: the weight sets (IR names), then
    /// stochmax's `stochmax.{rho,aux}.{weight,bias}` when present.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self
            .net
            .weights
            .iter()
            .zip(&self.weights)
            .map(|(w, v)| (w.name.clone(), v.clone()))
            .collect();
        v.extend(self.head_vars.iter().cloned());
        v
    }

    /// The weights of the weight set named `name`.
    pub fn weight(&self, name: &str) -> Option<&Var> {
        let i = self.net.weights.iter().position(|w| w.name == name)?;
        self.weights.get(i)
    }

    /// Thresholds, one per slot (`Network::thresholds` order).
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    pub fn set_threshold(&mut self, slot: SlotId, value: f32) -> Result<()> {
        set_slot_threshold(&mut self.thresholds, slot, value)
    }

    /// The checkpoint name of a slot's threshold: `threshold.<layer>.<step>`.
    pub fn threshold_name(&self, slot: SlotId) -> String {
        let s = &self.net.thresholds[slot.0];
        threshold_key(&s.layer, s.step)
    }

    /// Copies parameters and thresholds found in `map` (checkpoint names) into the model.
    /// Every parameter must be present with its shape.
    pub fn load(&mut self, map: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.vars() {
            let t = map
                .get(&name)
                .ok_or_else(|| err(format!("the checkpoint has no weights `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(err(format!(
                    "`{name}` has shape {:?} in the checkpoint but {:?} in the network",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        for i in 0..self.thresholds.len() {
            if let Some(t) = map.get(&self.threshold_name(SlotId(i))) {
                let v = t.flatten_all()?.to_vec1::<f32>()?;
                if let Some(&v) = v.first() {
                    self.set_threshold(SlotId(i), v)?;
                }
            }
        }
        Ok(())
    }

    /// Parameters and thresholds by checkpoint name.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut m: HashMap<String, Tensor> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        for (i, &t) in self.thresholds.iter().enumerate() {
            m.insert(
                self.threshold_name(SlotId(i)),
                Tensor::new(&[t], &self.device)?,
            );
        }
        Ok(m)
    }

    /// The network's input shape.
    pub fn input_shape(&self) -> Option<Shape> {
        self.net.graph[self.net.input]
            .out_shape
            .or(self.net.settings.input)
    }

    /// Checks that images of `shape` fit the network's declared input.
    pub fn check_input(&self, shape: Shape) -> std::result::Result<(), String> {
        match self.input_shape() {
            Some(want) if want == shape => Ok(()),
            Some(want) => Err(format!(
                "network `{}` declares input {want} but the data set has images of {shape}",
                self.net.name
            )),
            None => Err(format!("network `{}` declares no input", self.net.name)),
        }
    }

    /// The classifier loss of a forward output against `labels` `[B]` (u32): while
    /// training, the network's classifier (softmax CE, or stochmax with its noise from
    /// `rng`); at evaluation, softmax CE of [`Model::eval_logits`].
    pub fn loss(
        &self,
        out: &ForwardOutput,
        labels: &Tensor,
        train: bool,
        rng: &mut SeededRng,
    ) -> Result<Tensor> {
        if train {
            self.head
                .train_loss(&out.penultimate, &out.logits, labels, rng)
        } else {
            classifier::softmax_cross_entropy(&self.eval_logits(out)?, labels)
        }
    }

    /// The training loss (as [`Model::loss`] with `train`, same noise draws) and, for a
    /// stochmax head, its four terms (cross-entropy, KL, auxiliary, minus the entropy).
    pub fn train_loss_terms(
        &self,
        out: &ForwardOutput,
        labels: &Tensor,
        rng: &mut SeededRng,
    ) -> Result<(Tensor, Option<classifier::StochmaxTerms>)> {
        match &self.head {
            Head::Stochmax(head) => {
                let terms = head.train_terms(&out.penultimate, &out.logits, labels, rng)?;
                Ok((terms.total()?, Some(terms)))
            }
            Head::Softmax => Ok((self.loss(out, labels, true, rng)?, None)),
        }
    }

    /// The logits whose argmax is the prediction (stochmax: `log ρ + o`).
    pub fn eval_logits(&self, out: &ForwardOutput) -> Result<Tensor> {
        self.head.eval_logits(&out.penultimate, &out.logits)
    }

    /// Refuses a forward pass whose node values (all kept for backward) would exceed
    /// [`MAX_ACTIVATIONS`] elements: an error that names the remedy, not an abort.
    fn check_footprint(&self, batch: usize, t: usize) -> Result<()> {
        let total = self
            .net
            .graph
            .node_weights()
            .map(|n| {
                let per = n.out_shape.and_then(|s| s.features()).unwrap_or(0);
                let steps = if n.domain == Some(Domain::Snn) { t } else { 1 };
                per.saturating_mul((steps as u64).saturating_mul(batch as u64))
            })
            .fold(0u64, u64::saturating_add);
        if total > MAX_ACTIVATIONS {
            return Err(err(format!(
                "network `{}` would hold {total} activations for a batch of {batch} over {t} steps, more than {MAX_ACTIVATIONS}: lower --batch or --timesteps",
                self.net.name
            )));
        }
        Ok(())
    }

    /// Runs the network on images `x` `[B, C, H, W]` (intensities in [0, 1]), all T steps
    /// of a layer at once; see [`Model::forward_observed`].
    pub fn forward(
        &self,
        x: &Tensor,
        opts: &ForwardOptions,
        rng: &mut SeededRng,
    ) -> Result<ForwardOutput> {
        self.run(x, opts, rng, &mut NoObserver, true)
    }

    /// [`Model::forward`] with an observer called once per layer application (the Poisson
    /// input, and every spiking application's current and spikes, `[T·B, ...]`).
    /// Without `opts.train` the pass builds no gradient graph (weights are read detached),
    /// and a spiking convolution runs fused (`conv::conv2d_lif_infer`) when the observer
    /// wants no currents ([`Observer::wants_currents`]): it then gets
    /// [`Observer::current_max`] and, if it wants no spike tensors either (the pool then runs
    /// inside the fused op), [`Observer::spike_total`]; same values either way.
    pub fn forward_observed(
        &self,
        x: &Tensor,
        opts: &ForwardOptions,
        rng: &mut SeededRng,
        obs: &mut dyn Observer,
    ) -> Result<ForwardOutput> {
        self.run(x, opts, rng, obs, false)
    }

    /// The forward pass. With `fuse` (no observer wants the currents), a convolution with a
    /// spiking activation runs as one fused op (`conv::conv2d_lif`): same values and
    /// gradients, fewer passes over memory.
    fn run(
        &self,
        x: &Tensor,
        opts: &ForwardOptions,
        rng: &mut SeededRng,
        obs: &mut dyn Observer,
        fuse: bool,
    ) -> Result<ForwardOutput> {
        let (b, c, h, w) = x.dims4()?;
        let have = Shape::new(c as u64, h as u64, w as u64);
        self.check_input(have).map_err(err)?;
        let as_ann = opts.mode == Mode::Ann;
        let t = if as_ann { 1 } else { opts.timesteps.max(1) };
        self.check_footprint(b, t)?;
        rng.begin_pass();
        let gamma = self.net.settings.surrogate_gamma;
        let mut values: Vec<Option<Tensor>> = vec![None; self.net.graph.node_count()];
        // Values kept channel-last (`[T·B, H, W, C]`) between two fused spiking convolutions.
        let mut hwc = vec![false; self.net.graph.node_count()];
        let mut penultimate = None;
        let out_node = self.net.output;
        // Observed inference: no graph, and a fused spiking convolution when the observer
        // can do without the currents.
        let infer = !fuse && !opts.train;
        let infer_fused = infer && !as_ann && !obs.wants_currents();
        let infer_pool = infer_fused && !obs.wants_spike_tensors();

        for &n in &self.order {
            if values[n.index()].is_some() {
                continue; // a pool computed inside the fused layer before it
            }
            let node = &self.net.graph[n];
            let ins: Vec<Tensor> = self.inputs[n.index()]
                .iter()
                .map(|&i| {
                    values[i.index()]
                        .clone()
                        .ok_or_else(|| err(format!("`{}` runs before its input", node.name)))
                })
                .collect::<Result<_>>()?;
            let first = || {
                ins.first()
                    .ok_or_else(|| err(format!("`{}` has no input", node.name)))
            };
            let snn = node.domain == Some(Domain::Snn);
            if n == out_node {
                // h: the last layer's input averaged over T.
                let inp = first()?;
                let hval = if snn {
                    mean_over_t(inp, t)?
                } else {
                    inp.clone()
                };
                penultimate = Some(hval.flatten_from(1)?);
            }
            let mut v = match &node.op {
                Op::Input => x.clone(),
                Op::Encode { encoding } => match (as_ann, encoding) {
                    (false, Encoding::Poisson) => {
                        let s = fold_t(encode::poisson(first()?, t, rng)?)?;
                        obs.input_spikes(&s)?;
                        s
                    }
                    _ => repeat_t(first()?, t)?,
                },
                Op::Conv { weights } | Op::Fc { weights } => {
                    let inp = first()?;
                    let in_hwc = self.inputs[n.index()]
                        .first()
                        .is_some_and(|i| hwc[i.index()]);
                    let wt = &if infer {
                        self.weights[weights.0].as_tensor().detach()
                    } else {
                        self.weights[weights.0].as_tensor().clone()
                    };
                    match self.net.weights[weights.0].kind {
                        LayerKind::Conv { stride, pad, .. } => {
                            let (stride, pad) = (usize_of(stride)?, usize_of(pad)?);
                            match node.activation {
                                Activation::Spiking(spec) if infer_fused => {
                                    let (slot, th) = spiking_slot(node, &self.thresholds)?;
                                    let app = Application::of(n, node, slot, None);
                                    let p = neuron_params(&spec, th, gamma, opts.mode);
                                    let (dst, q) = match self.fusable_pool(n) {
                                        Some((m, q)) if infer_pool => (m, Some(q)),
                                        _ => (n, None),
                                    };
                                    // Unpooled spikes go to the observer, in NCHW.
                                    let lay = conv::MapLayout {
                                        input_hwc: in_hwc,
                                        output_hwc: q.is_some() && self.read_by_fused_convs(dst),
                                    };
                                    let conv = (stride, pad);
                                    let r =
                                        conv::conv2d_lif_infer_in(inp, wt, conv, (t, &p, q), lay)?;
                                    hwc[dst.index()] = lay.output_hwc;
                                    obs.current_max(&app, r.max_current)?;
                                    if q.is_some() {
                                        obs.spike_total(&app, r.spikes, r.neuron_steps)?;
                                    } else {
                                        obs.spikes(&app, &r.out)?;
                                    }
                                    values[dst.index()] = Some(r.out);
                                    continue;
                                }
                                Activation::Spiking(spec) if fuse && !as_ann => {
                                    let (_, th) = spiking_slot(node, &self.thresholds)?;
                                    let p = neuron_params(&spec, th, gamma, opts.mode);
                                    let (dst, q) = match self.fusable_pool(n) {
                                        Some((m, q)) => (m, Some(q)),
                                        None => (n, None),
                                    };
                                    let lay = conv::MapLayout {
                                        input_hwc: in_hwc,
                                        output_hwc: self.read_by_fused_convs(dst),
                                    };
                                    let conv = (stride, pad);
                                    let s = conv::conv2d_lif_in(inp, wt, conv, (t, &p, q), lay)?;
                                    hwc[dst.index()] = lay.output_hwc;
                                    values[dst.index()] = Some(s);
                                    continue;
                                }
                                // Never channel-last here (`read_by_fused_convs`); kept correct
                                // all the same.
                                _ if in_hwc => {
                                    let x = inp.permute((0, 3, 1, 2))?.contiguous()?;
                                    conv::conv2d(&x, wt, stride, pad)?
                                }
                                _ => conv::conv2d(inp, wt, stride, pad)?,
                            }
                        }
                        LayerKind::Fc { .. } => {
                            if n == out_node && snn && node.activation == Activation::None {
                                // mean_T(W·x_t) = W·mean_T(x_t): one small matmul.
                                let hval = penultimate.clone().ok_or_else(|| err("no h"))?;
                                values[n.index()] = Some(hval.matmul(&wt.t()?)?);
                                continue;
                            }
                            if infer {
                                super::sgemm::matmul_wt_rows(&inp.flatten_from(1)?, wt)?
                            } else {
                                // One graph node, not flatten → transpose → matmul.
                                super::linear::linear(inp, wt)?
                            }
                        }
                    }
                }
                Op::Pool {
                    kind,
                    window,
                    stride,
                } => {
                    let k = usize_of(*window)?;
                    let s = usize_of(*stride)?;
                    pool::pool2d(first()?, *kind, k, s)?
                }
                Op::Dropout { p } => {
                    let inp = first()?;
                    if opts.train && *p > 0.0 {
                        dropout(inp, *p, if snn { t } else { 1 }, rng)?
                    } else {
                        inp.clone()
                    }
                }
                Op::Join { mode } => join(ins, *mode)?,
                Op::Boundary { kind } => match kind {
                    BoundaryKind::AnnToSnn => repeat_t(first()?, t)?,
                    BoundaryKind::SnnToAnn => mean_over_t(first()?, t)?,
                },
                Op::Layer { .. } => return Err(unresolved(node)),
            };
            v = match node.activation {
                Activation::None => v,
                Activation::Relu => v.relu()?,
                Activation::Spiking(spec) => {
                    let (slot, th) = spiking_slot(node, &self.thresholds)?;
                    let app = Application::of(n, node, slot, None);
                    obs.current(&app, &v)?;
                    if as_ann {
                        v.relu()?
                    } else {
                        let p = neuron_params(&spec, th, gamma, opts.mode);
                        let s = neuron::lif_scan_steps(&v, t, &p)?;
                        obs.spikes(&app, &s)?;
                        s
                    }
                }
            };
            values[n.index()] = Some(v);
        }
        let out = values[out_node.index()]
            .take()
            .ok_or_else(|| err("the network has no output"))?;
        let out_snn = self.net.graph[out_node].domain == Some(Domain::Snn);
        let logits = if out_snn && out.dim(0)? == t * b && t > 1 {
            mean_over_t(&out, t)?
        } else {
            out
        };
        let logits = logits.flatten_from(1)?;
        let penultimate = match penultimate {
            Some(p) => p,
            None => logits.clone(),
        };
        Ok(ForwardOutput {
            logits,
            penultimate,
        })
    }
}

/// The kernel parameters of a spiking layer run in `mode` (conversion runs every spiking
/// layer as IF: leak 1, reset by subtraction) with threshold `th`.
fn neuron_params(spec: &crate::ir::NeuronSpec, th: f32, gamma: f32, mode: Mode) -> NeuronParams {
    let (leak, reset) = if mode == Mode::IfConversion {
        (1.0, Reset::Subtract)
    } else {
        (spec.leak, spec.reset)
    };
    NeuronParams {
        leak,
        threshold: th,
        reset,
        gamma,
    }
}

impl Model {
    /// Whether `n`'s value may stay channel-last ([`conv::MapLayout`]): `n` is not the output
    /// and every layer that reads it is a spiking convolution (so, in a pass that fuses spiking
    /// convolutions, a fused one) that reads `n` alone and is not the output either.
    fn read_by_fused_convs(&self, n: NodeIndex) -> bool {
        let Some(readers) = self.consumers.get(n.index()) else {
            return false;
        };
        n != self.net.output
            && !readers.is_empty()
            && readers.iter().all(|&m| {
                let node = &self.net.graph[m];
                m != self.net.output
                    && matches!(node.op, Op::Conv { .. })
                    && matches!(node.activation, Activation::Spiking(_))
                    && self
                        .inputs
                        .get(m.index())
                        .is_some_and(|i| i.as_slice() == [n])
            })
    }

    /// The pool that may run inside the fused spiking convolution `n`: `n`'s only reader, a
    /// pool without activation that is not the output, read by `n` alone.
    fn fusable_pool(&self, n: NodeIndex) -> Option<(NodeIndex, conv::SpikePool)> {
        let [m] = self.consumers.get(n.index())?.as_slice() else {
            return None;
        };
        let pool = &self.net.graph[*m];
        if *m == self.net.output || n == self.net.output || pool.activation != Activation::None {
            return None;
        }
        if self.inputs.get(m.index())?.as_slice() != [n] {
            return None;
        }
        match pool.op {
            Op::Pool {
                kind,
                window,
                stride,
            } => Some((
                *m,
                conv::SpikePool {
                    max: kind == PoolKind::Max,
                    k: usize::try_from(window).ok()?,
                    s: usize::try_from(stride).ok()?,
                },
            )),
            _ => None,
        }
    }
}

/// `[T, B, ...]` → `[T·B, ...]` (a free reshape of a contiguous tensor).
fn fold_t(x: Tensor) -> Result<Tensor> {
    let d = x.dims();
    if d.len() < 2 {
        return Ok(x);
    }
    let mut v = vec![d[0] * d[1]];
    v.extend_from_slice(&d[2..]);
    x.reshape(v)
}

/// `[B, ...]` → `[T·B, ...]`, the same value at every step (no copy when T = 1).
fn repeat_t(x: &Tensor, t: usize) -> Result<Tensor> {
    if t == 1 {
        return Ok(x.clone());
    }
    fold_t(encode::direct(x, t)?)
}

/// `[T·B, ...]` → `[B, ...]`, the mean over the T steps.
fn mean_over_t(x: &Tensor, t: usize) -> Result<Tensor> {
    if t == 1 {
        return Ok(x.clone());
    }
    let dims = x.dims();
    let mut v = vec![t, dims[0] / t];
    v.extend_from_slice(&dims[1..]);
    x.reshape(v)?.mean(0)
}

/// Dropout with one mask per image, held over all T steps of `[T·B, ...]`.
fn dropout(x: &Tensor, p: f32, t: usize, rng: &mut SeededRng) -> Result<Tensor> {
    let dims = x.dims();
    let mut per_b = vec![dims[0] / t];
    per_b.extend_from_slice(&dims[1..]);
    let mask = encode::dropout_mask(&per_b, p, rng, x.device())?;
    let mut tb = vec![t];
    tb.extend_from_slice(&per_b);
    x.reshape(tb)?
        .broadcast_mul(&mask.unsqueeze(0)?)?
        .reshape(dims)
}

/// The threshold slot of spiking node `node` and its threshold in `thresholds` (shared by
/// the batched and the step-by-step run).
pub(crate) fn spiking_slot(node: &crate::ir::Node, thresholds: &[f32]) -> Result<(SlotId, f32)> {
    let slot = node
        .slot
        .ok_or_else(|| err(format!("spiking `{}` has no slot", node.name)))?;
    let th = *thresholds
        .get(slot.0)
        .ok_or_else(|| err(format!("no threshold slot {}", slot.0)))?;
    Ok((slot, th))
}

/// The error for a node the runtime cannot run: a layer not resolved by the passes.
pub(crate) fn unresolved(node: &crate::ir::Node) -> candle_core::Error {
    err(format!(
        "`{}` is an unresolved layer: the network is not in final form",
        node.name
    ))
}

/// Sets one slot of a per-slot threshold table: the value must be positive and finite and the
/// slot must exist. Shared by the model and the conversion simulator.
pub fn set_slot_threshold(thresholds: &mut [f32], slot: SlotId, value: f32) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(err(format!(
            "threshold {value} must be positive and finite"
        )));
    }
    let t = thresholds
        .get_mut(slot.0)
        .ok_or_else(|| err(format!("no threshold slot {}", slot.0)))?;
    *t = value;
    Ok(())
}

/// Joins the main input with the skip inputs (in port order): concatenation along channels or
/// features, or addition. Inputs of different rank (a map joining an FC input) are flattened first.
pub fn join(ins: Vec<Tensor>, mode: JoinMode) -> Result<Tensor> {
    let rank = ins.iter().map(|t| t.rank()).min().unwrap_or(2);
    let ins: Vec<Tensor> = if ins.iter().any(|t| t.rank() != rank) {
        ins.iter()
            .map(|t| t.flatten_from(1))
            .collect::<Result<_>>()?
    } else {
        ins
    };
    match mode {
        JoinMode::Concat => Tensor::cat(&ins, 1),
        JoinMode::Add => {
            let mut acc = ins
                .first()
                .cloned()
                .ok_or_else(|| err("join without inputs"))?;
            for i in &ins[1..] {
                acc = (acc + i)?;
            }
            Ok(acc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle::netbuild::NetBuilder;
    use crate::backend::candle::observe::Recorder;
    use crate::ir::{PoolKind, Shape};

    /// A [`Recorder`] that asks for the currents, so the observed run stays op by op.
    struct Unfused(Recorder);

    impl Observer for Unfused {
        fn input_spikes(&mut self, s: &Tensor) -> Result<()> {
            self.0.input_spikes(s)
        }
        fn current(&mut self, app: &Application, c: &Tensor) -> Result<()> {
            self.0.current(app, c)
        }
        fn spikes(&mut self, app: &Application, s: &Tensor) -> Result<()> {
            self.0.spikes(app, s)
        }
    }

    /// Conv1 → max pool → Conv2 → Conv3 → average pool → FC1 → FC2 on 1×10×10 inputs, LIF
    /// everywhere but the output: fused convolutions pooled inside and not, and maps between
    /// them channel-last (pooled and not) and NCHW.
    fn fuse_net(t: usize) -> Model {
        let b = NetBuilder::new("fuse", Shape::new(1, 10, 10), t as u32);
        let lif = b.lif();
        let net = b
            .conv("Conv1", 1, 4, 3, 1, lif)
            .pool(PoolKind::Max, 2, 2)
            .conv("Conv2", 4, 6, 3, 1, lif)
            .conv("Conv3", 6, 4, 3, 1, lif)
            .pool(PoolKind::Avg, 2, 2)
            .fc("FC1", 16, 8, lif)
            .fc("FC2", 8, 3, Activation::None)
            .build();
        Model::new(&net, &Device::Cpu, 3).unwrap()
    }

    /// Observed inference through the fused convolutions (pooled inside and not) reports
    /// exactly what the op-by-op run reports: logits, per-application spike rates and the
    /// per-slot maximum current, bit for bit; and its output tracks no gradient.
    #[test]
    fn fused_observed_inference_matches_op_by_op() {
        let t = 4;
        let m = fuse_net(t);
        let x = Tensor::rand(0f32, 1f32, (3, 1, 10, 10), &Device::Cpu).unwrap();
        let opts = ForwardOptions::snn(t, false);
        let slots = m.thresholds().len();
        let mut fused = Recorder::new(slots);
        let a = m
            .forward_observed(&x, &opts, &mut rng_for(5, 0), &mut fused)
            .unwrap();
        let mut plain = Unfused(Recorder::new(slots));
        let b = m
            .forward_observed(&x, &opts, &mut rng_for(5, 0), &mut plain)
            .unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a.logits), v(&b.logits));
        assert!(!a.logits.track_op(), "observed inference built a graph");
        assert_eq!(fused.activity, plain.0.activity);
        assert_eq!(fused.max_input, plain.0.max_input);
        assert_eq!(fused.input_rate, plain.0.input_rate);
        assert_eq!(fused.activity.len(), 4);
        assert!(fused.activity.iter().any(|a| a.spike_rate > 0.0));
    }

    /// The training pass, whose fused convolutions keep the maps between them channel-last
    /// (Conv1 → pool → Conv2 pooled, Conv2 → Conv3 unpooled; Conv3 → pool → FC1 stays NCHW),
    /// gives the op-by-op pass's logits bit for bit and its weight gradients up to summation
    /// order.
    #[test]
    fn fused_training_pass_matches_op_by_op() {
        let t = 3;
        let m = fuse_net(t);
        // Seeded inputs, bright enough that every layer spikes (so no gradient is zero; 21
        // seeds checked).
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let xs: Vec<f32> = (0..200).map(|_| r.random_range(0.0..3.0)).collect();
        let x = Tensor::from_vec(xs, (2, 1, 10, 10), &Device::Cpu).unwrap();
        let opts = ForwardOptions::snn(t, true);
        let gs: Vec<f32> = (0..6).map(|_| r.random_range(-1.0..1.0)).collect();
        let g = Tensor::from_vec(gs, (2, 3), &Device::Cpu).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let a = m.forward(&x, &opts, &mut rng_for(5, 0)).unwrap();
        let mut plain = Unfused(Recorder::new(m.thresholds().len()));
        let b = m
            .forward_observed(&x, &opts, &mut rng_for(5, 0), &mut plain)
            .unwrap();
        assert_eq!(v(&a.logits), v(&b.logits));
        let ga = (&a.logits * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (&b.logits * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for w in &m.weights {
            let (da, db) = (
                ga.get(w.as_tensor()).unwrap(),
                gb.get(w.as_tensor()).unwrap(),
            );
            let (da, db) = (v(da), v(db));
            assert!(db.iter().any(|&d| d != 0.0), "a zero gradient");
            for (x, y) in da.iter().zip(&db) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} against {y}");
            }
        }
    }
}
