//! The layerwise STDP schedule on the step-by-step runtime (`backend::candle::step`).
//!
//! The spiking conv layers train in topological order. For layer L, each mini-batch of
//! training images is Poisson-coded and run step by step through the frozen layers before L
//! and through L itself (the run stops at L's last application); a [`StdpObserver`] keeps a
//! trace of L's pre-synaptic spikes per application and, at every step, turns L's post
//! spikes (after winner-take-all and dropout) into one mini-batch update per kernel
//! ([`super::rule::KernelUpdates`]). A BackRes layer with n unroll steps is n applications
//! of one weight set, each with its own traces: at step 1 the pre-synaptic activity is the
//! layer's input, at step n its own output of step n − 1, so it receives k × n updates per
//! presentation (Section IV). The updates of a presentation are summed and applied when it
//! ends (mini-batch STDP), then the layer's thresholds adapt to its spike rate.
//!
//! The runtime is the step-by-step simulator with reset by subtraction and each layer's
//! declared neuron: a LIF layer leaks by its declared factor, an IF layer does not.
//!
//! Owner: the STDP helper (`train::stdp`). Invariants: the observer never changes the run;
//! every random draw (Poisson input, dropout) comes from `rng_for(seed, stream)` with fixed
//! streams per layer, so one seed gives the same kernels; only the weights and thresholds of
//! the STDP layers change.

use std::collections::HashMap;
use std::io::IsTerminal;

use candle_core::{Result, Tensor};
use petgraph::graph::NodeIndex;

use super::competition::{kernel_dropout, winner_take_all};
use super::rule::{ConvGeometry, KernelUpdates, Trace};
use super::StdpConfig;
use crate::backend::candle::encode::SeededRng;
use crate::backend::candle::err;
use crate::backend::candle::event::PathPolicy;
use crate::backend::candle::model::{rng_for, Model};
use crate::backend::candle::observe::{Application, Observer};
use crate::backend::candle::step::{RunSpec, Simulator};
use crate::ir::{Domain, LayerKind, Network, Op, Reset, SlotId, WeightId};
use crate::train::conversion::Images;

/// The random streams of STDP (disjoint from AGD's and conversion's).
const INPUT_STREAM: u64 = 3 << 40;
const DROPOUT_STREAM: u64 = (3 << 40) + (1 << 20);

/// One STDP-trained layer: a conv weight set whose applications are spiking SNN nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct StdpLayer {
    pub weights: WeightId,
    pub name: String,
    /// Its applications in unroll-step order (n > 1 for a BackRes layer).
    pub applications: Vec<NodeIndex>,
}

/// The spiking conv layers of `net` in the order they first run.
pub fn stdp_layers(net: &Network) -> Vec<StdpLayer> {
    let mut layers: Vec<StdpLayer> = Vec::new();
    for n in net.topo_order() {
        let node = &net.graph[n];
        let Op::Conv { weights } = node.op else {
            continue;
        };
        if !node.is_spiking() || node.domain != Some(Domain::Snn) {
            continue;
        }
        match layers.iter_mut().find(|l| l.weights == weights) {
            Some(l) => l.applications.push(n),
            None => layers.push(StdpLayer {
                weights,
                name: net.weights[weights.0].name.clone(),
                applications: vec![n],
            }),
        }
    }
    layers
}

/// One update event: at `time`, application `step` of the layer updated `kernels` kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateEvent {
    pub node: NodeIndex,
    pub step: u32,
    pub time: usize,
    pub kernels: usize,
}

/// The pre- and post-synaptic spikes of one application at one time step (recorded only
/// when asked, for tests and inspection).
#[derive(Debug, Clone)]
pub struct PrePost {
    pub step: u32,
    pub time: usize,
    pub pre: Tensor,
    pub post: Tensor,
}

/// The observer that learns one layer: traces, competition and mini-batch updates.
pub struct StdpObserver<'a> {
    cfg: &'a StdpConfig,
    applications: Vec<NodeIndex>,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    rng: &'a mut SeededRng,
    traces: HashMap<NodeIndex, (ConvGeometry, Trace)>,
    currents: HashMap<NodeIndex, Vec<f32>>,
    pending_pre: HashMap<NodeIndex, Tensor>,
    /// The summed updates of this presentation.
    pub updates: KernelUpdates,
    /// Every step at which the layer was updated.
    pub events: Vec<UpdateEvent>,
    /// Per slot of the layer: spikes and neuron·steps seen.
    pub activity: HashMap<SlotId, (f64, f64)>,
    /// The pre/post spikes per application and step, when recording.
    pub pairs: Option<Vec<PrePost>>,
}

impl<'a> StdpObserver<'a> {
    /// An observer learning `layer` of `net` with `cfg`, dropout draws from `rng`.
    pub fn new(
        net: &Network,
        layer: &StdpLayer,
        cfg: &'a StdpConfig,
        rng: &'a mut SeededRng,
    ) -> Result<Self> {
        let ws = net
            .weights
            .get(layer.weights.0)
            .ok_or_else(|| err(format!("no weight set {}", layer.weights.0)))?;
        let LayerKind::Conv {
            out_ch,
            kernel,
            stride,
            pad,
            ..
        } = ws.kind
        else {
            return Err(err(format!("`{}` is not a convolution", ws.name)));
        };
        let u = crate::backend::candle::usize_of;
        let (out_ch, kernel, stride, pad) = (u(out_ch)?, u(kernel)?, u(stride)?, u(pad)?);
        Ok(StdpObserver {
            cfg,
            applications: layer.applications.clone(),
            out_ch,
            kernel,
            stride,
            pad,
            rng,
            traces: HashMap::new(),
            currents: HashMap::new(),
            pending_pre: HashMap::new(),
            updates: KernelUpdates::new(out_ch * ws_in(ws.kind) * kernel * kernel),
            events: Vec::new(),
            activity: HashMap::new(),
            pairs: None,
        })
    }

    /// Records every pre/post pair ([`StdpObserver::pairs`]).
    pub fn record_pairs(mut self) -> Self {
        self.pairs = Some(Vec::new());
        self
    }

    fn mine(&self, app: &Application) -> bool {
        self.applications.contains(&app.node)
    }
}

fn ws_in(kind: LayerKind) -> usize {
    match kind {
        LayerKind::Conv { in_ch, .. } => usize::try_from(in_ch).unwrap_or(0),
        LayerKind::Fc { inputs, .. } => usize::try_from(inputs).unwrap_or(0),
    }
}

impl Observer for StdpObserver<'_> {
    fn presynaptic(&mut self, app: &Application, input: &Tensor) -> Result<()> {
        if !self.mine(app) {
            return Ok(());
        }
        let (b, c, h, w) = input.dims4()?;
        let spikes = input.flatten_all()?.to_vec1::<f32>()?;
        let (k, s, p, o, tau) = (
            self.kernel,
            self.stride,
            self.pad,
            self.out_ch,
            self.cfg.params.tau,
        );
        let entry = match self.traces.entry(app.node) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let g = ConvGeometry::new(b, c, h, w, o, k, s, p).map_err(err)?;
                e.insert((g, Trace::new(spikes.len(), tau)))
            }
        };
        entry.1.step(&spikes).map_err(err)?;
        if self.pairs.is_some() {
            self.pending_pre.insert(app.node, input.clone());
        }
        Ok(())
    }

    fn current(&mut self, app: &Application, current: &Tensor) -> Result<()> {
        if self.mine(app) && self.cfg.wta {
            self.currents
                .insert(app.node, current.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }

    fn spikes(&mut self, app: &Application, spikes: &Tensor) -> Result<()> {
        if !self.mine(app) {
            return Ok(());
        }
        let post = spikes.flatten_all()?.to_vec1::<f32>()?;
        let a = self.activity.entry(app.slot).or_insert((0.0, 0.0));
        a.0 += post.iter().filter(|&&v| v > 0.0).count() as f64;
        a.1 += post.len() as f64;
        let (g, trace) = self
            .traces
            .get(&app.node)
            .ok_or_else(|| err("STDP: a layer fired before its input was seen"))?;
        let learning = if self.cfg.wta {
            let cur = self
                .currents
                .get(&app.node)
                .ok_or_else(|| err("STDP: no input current for winner-take-all"))?;
            winner_take_all(&post, cur, g.batch, g.out_ch, g.out_h * g.out_w).map_err(err)?
        } else {
            post
        };
        let learn = kernel_dropout(self.cfg.dropout, g.out_ch, self.rng);
        let kernels = self
            .updates
            .add_step(&self.cfg.params, g, trace.values(), &learning, &learn)
            .map_err(err)?;
        let time = app.time.unwrap_or(0);
        if kernels > 0 {
            self.events.push(UpdateEvent {
                node: app.node,
                step: app.step,
                time,
                kernels,
            });
        }
        if let Some(pairs) = &mut self.pairs {
            let pre = self
                .pending_pre
                .remove(&app.node)
                .ok_or_else(|| err("STDP: no pre-synaptic input recorded"))?;
            pairs.push(PrePost {
                step: app.step,
                time,
                pre,
                post: spikes.clone(),
            });
        }
        Ok(())
    }
}

/// What STDP did to one layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerReport {
    pub layer: String,
    /// Images presented (each for T steps).
    pub images: usize,
    /// Kernel updates made (Σ over presentations of k × n per kernel that learned).
    pub updates: usize,
    /// Per unroll step: the mean spike rate over the phase and the final threshold.
    pub steps: Vec<StepReport>,
    /// Wall time of the layer's phase, seconds.
    pub seconds: f64,
    /// Images presented per second of wall time (`images / seconds`).
    pub images_per_s: f64,
}

/// One application (unroll step) of an STDP layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepReport {
    pub step: u32,
    pub spike_rate: f32,
    pub threshold: f32,
}

fn progress_bar(len: usize, show: bool, prefix: &str) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb.set_prefix(prefix.to_string());
    pb
}

/// Trains the spiking conv layers of `model` layerwise with STDP on `cfg.images` images of
/// `images` (cycled when there are fewer), `cfg.batch` per mini-batch, T = `cfg.timesteps`.
/// Writes the learned kernels and adapted thresholds into the model.
///
/// Errors: invalid settings, no images while `cfg.images > 0`, a network the step runtime
/// cannot run. `cfg.images == 0` leaves the model unchanged (the random-feature baseline).
pub fn train_layerwise(
    model: &mut Model,
    images: &dyn Images,
    cfg: &StdpConfig,
) -> Result<Vec<LayerReport>> {
    cfg.validate().map_err(err)?;
    let net = model.network().clone();
    let layers = stdp_layers(&net);
    let dev = model.device().clone();
    let mut weights = net
        .weights
        .iter()
        .map(|w| {
            model
                .weight(&w.name)
                .map(|v| v.as_tensor().detach())
                .ok_or_else(|| err(format!("the model has no weights `{}`", w.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut thresholds = model.thresholds().to_vec();
    if cfg.images > 0 && images.count() == 0 {
        return Err(err("STDP needs training images"));
    }
    let mut reports = Vec::new();
    for (li, layer) in layers.iter().enumerate() {
        let wid = layer.weights.0;
        let stop = *layer
            .applications
            .last()
            .ok_or_else(|| err("an STDP layer without applications"))?;
        let shape = weights[wid].shape().clone();
        let mut w = weights[wid].flatten_all()?.to_vec1::<f32>()?;
        let mut input_rng = rng_for(cfg.seed, INPUT_STREAM + li as u64);
        let mut drop_rng = rng_for(cfg.seed, DROPOUT_STREAM + li as u64);
        let pb = progress_bar(cfg.images, cfg.progress, &format!("STDP {}", layer.name));
        let mut updates = 0;
        let mut activity: HashMap<SlotId, (f64, f64)> = HashMap::new();
        let spec = RunSpec {
            ann: false,
            checkpoints: vec![cfg.timesteps],
            stop: Some(stop),
            collect: None,
        };
        let policy = crate::train::conversion::sim_path(PathPolicy::default())?;
        let clock = std::time::Instant::now();
        // One simulator per layer: a mini-batch changes only this layer's kernels (re-laid
        // out by `set_weights`) and thresholds.
        let mut sim = Simulator::from_parts(
            net.clone(),
            weights.clone(),
            thresholds.clone(),
            Reset::Subtract,
            policy,
            &dev,
        )?;
        let mut start = 0;
        while start < cfg.images {
            let end = (start + cfg.batch).min(cfg.images);
            let idx: Vec<usize> = (start..end).map(|i| i % images.count()).collect();
            let (x, _) = images.images(&idx, &dev)?;
            let mut obs = StdpObserver::new(&net, layer, cfg, &mut drop_rng)?;
            sim.run_observed(&x, &spec, &mut input_rng, &mut obs)?;
            obs.updates.apply(&cfg.params, &mut w).map_err(err)?;
            updates += obs.updates.updates;
            weights[wid] = Tensor::from_vec(w.clone(), shape.clone(), &dev)?;
            sim.set_weights(layer.weights, weights[wid].clone())?;
            for (slot, (s, n)) in &obs.activity {
                let a = activity.entry(*slot).or_insert((0.0, 0.0));
                a.0 += s;
                a.1 += n;
                if *n > 0.0 {
                    let th = thresholds
                        .get_mut(slot.0)
                        .ok_or_else(|| err(format!("no threshold slot {}", slot.0)))?;
                    *th = cfg.adaptation.adapt(*th, (s / n) as f32);
                    sim.set_threshold(*slot, *th)?;
                }
            }
            pb.inc((end - start) as u64);
            start = end;
        }
        pb.finish_and_clear();
        let seconds = clock.elapsed().as_secs_f64();
        let steps = layer
            .applications
            .iter()
            .filter_map(|&n| {
                let node = &net.graph[n];
                let slot = node.slot?;
                let (s, c) = activity.get(&slot).copied().unwrap_or((0.0, 0.0));
                Some(StepReport {
                    step: node.step,
                    spike_rate: if c > 0.0 { (s / c) as f32 } else { 0.0 },
                    threshold: thresholds.get(slot.0).copied().unwrap_or(0.0),
                })
            })
            .collect();
        reports.push(LayerReport {
            layer: layer.name.clone(),
            images: cfg.images,
            updates,
            steps,
            seconds,
            images_per_s: if seconds > 0.0 {
                cfg.images as f64 / seconds
            } else {
                0.0
            },
        });
        if cfg.progress && cfg.images > 0 {
            eprintln!(
                "STDP {}: {} images in {:.1} s ({:.1} images/s)",
                layer.name,
                cfg.images,
                seconds,
                cfg.images as f64 / seconds.max(1e-9)
            );
        }
    }
    // With no image, `weights` still share the variables' storage: nothing to write.
    for layer in layers.iter().filter(|_| cfg.images > 0) {
        let var = model
            .weight(&layer.name)
            .ok_or_else(|| err(format!("the model has no weights `{}`", layer.name)))?;
        var.set(&weights[layer.weights.0])?;
    }
    for (i, th) in thresholds.iter().enumerate() {
        model.set_threshold(SlotId(i), *th)?;
    }
    Ok(reports)
}
