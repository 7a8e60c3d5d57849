//! Observers: what a run of the executable model reports about itself, without flags
//! threaded through the interpreters. Both ways of running a network call the same hooks —
//! `Model::forward_observed` (batched over T: one call per layer application, tensors
//! `[T·B, ...]`) and `step::Simulator::run_observed` (step by step: one call per layer
//! application and time step, tensors `[B, ...]`). STDP traces, spike counts and maximum
//! input currents are observers; the simulator's own counts ([`Counters`]) are the
//! [`SpikeCounter`] it runs beside the caller's observer ([`Tee`]), fed by count hooks
//! (`spike_count`, `input_count`) with the numbers the step already has, so counting costs
//! no extra pass over the tensors.
//!
//! Owner: the runtime (`backend::candle`). Invariants: an observer never changes what the
//! run computes (it sees tensors, it returns nothing but errors); the default hooks do
//! nothing, so [`NoObserver`] costs nothing.

use candle_core::{Result, Tensor};
use petgraph::graph::NodeIndex;

use crate::ir::SlotId;

/// One spiking layer application at one moment of a run.
#[derive(Debug, Clone, Copy)]
pub struct Application<'a> {
    pub node: NodeIndex,
    /// The layer's name (a BackRes layer's applications share it).
    pub layer: &'a str,
    /// The unroll step (1-based).
    pub step: u32,
    /// The threshold slot of the application.
    pub slot: SlotId,
    /// Step by step: the time step t (1-based). Batched over T: `None` (all steps at once).
    pub time: Option<usize>,
}

impl<'a> Application<'a> {
    /// The application of graph node `n` (`node`) with threshold slot `slot` at `time`.
    pub fn of(n: NodeIndex, node: &'a crate::ir::Node, slot: SlotId, time: Option<usize>) -> Self {
        Application {
            node: n,
            layer: &node.name,
            step: node.step,
            slot,
            time,
        }
    }
}

/// Hooks called while a network runs.
pub trait Observer {
    /// The encoded input: Poisson spikes (`[T·B, C, H, W]` batched, `[B, C, H, W]` per step).
    fn input_spikes(&mut self, _spikes: &Tensor) -> Result<()> {
        Ok(())
    }

    /// The pre-synaptic input of a weighted (conv/FC) spiking application: the tensor its
    /// weights multiply (`[B, C, H, W]` or `[B, F]`), step by step only (STDP's pre-synaptic
    /// spikes; for a BackRes step n > 1, the layer's own output of step n − 1).
    fn presynaptic(&mut self, _app: &Application, _input: &Tensor) -> Result<()> {
        Ok(())
    }

    /// The input current of a spiking application, before the neuron (also in ANN mode,
    /// where the neuron is a ReLU).
    fn current(&mut self, _app: &Application, _current: &Tensor) -> Result<()> {
        Ok(())
    }

    /// The spikes (0/1) a spiking application emitted (not called in ANN mode).
    fn spikes(&mut self, _app: &Application, _spikes: &Tensor) -> Result<()> {
        Ok(())
    }

    /// Step by step: a spiking application emitted `spikes` spikes over `neurons` neurons
    /// (its batch) at one step — the sum of the tensor [`Observer::spikes`] sees, counted
    /// while stepping.
    fn spike_count(&mut self, _app: &Application, _spikes: usize, _neurons: usize) -> Result<()> {
        Ok(())
    }

    /// Step by step (and ANN mode): the conv/FC node `node` received `nonzero` non-zero inputs
    /// out of `total` (its batch) at one step.
    fn input_count(&mut self, _node: NodeIndex, _nonzero: usize, _total: usize) -> Result<()> {
        Ok(())
    }

    /// The counts so far, for observers that keep [`Counters`] (the simulator's
    /// [`SpikeCounter`]); `None` for the others.
    fn counters(&self) -> Option<&Counters> {
        None
    }

    /// Whether [`Observer::current`] needs the current tensor of a batched run. When false,
    /// `Model::forward_observed` without training may run a spiking convolution fused (no
    /// current tensor is ever built) and reports [`Observer::current_max`] instead.
    /// Default `true`, the safe answer.
    fn wants_currents(&self) -> bool {
        true
    }

    /// Whether [`Observer::spikes`] needs the spike tensor of a batched run. When false
    /// (and [`Observer::wants_currents`] is false), a fused spiking convolution also pools
    /// inside the fused op and reports [`Observer::spike_total`] instead. Default `true`.
    fn wants_spike_tensors(&self) -> bool {
        true
    }

    /// Batched, fused runs only (see [`Observer::wants_currents`]): the largest input current
    /// of a spiking application, in place of [`Observer::current`].
    fn current_max(&mut self, _app: &Application, _max: f32) -> Result<()> {
        Ok(())
    }

    /// Batched, fused runs only (see [`Observer::wants_spike_tensors`]): a spiking
    /// application emitted `spikes` spikes over `neuron_steps` neuron·steps (`T·B·neurons`),
    /// in place of [`Observer::spikes`].
    fn spike_total(&mut self, _app: &Application, _spikes: u64, _neuron_steps: u64) -> Result<()> {
        Ok(())
    }

    /// The spike rates an SNN→ANN boundary `node` passes on after the first `_t` steps
    /// (step by step only; `[B, ...]`): the features an appended classifier reads.
    fn boundary(&mut self, _node: NodeIndex, _t: usize, _rates: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// Spike and input counts, summed over neurons, images and steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Per slot: spikes, and neuron·steps.
    pub spikes: Vec<f64>,
    pub neuron_steps: Vec<f64>,
    /// Per node index (weighted nodes only): non-zero inputs, and inputs, over the steps.
    pub input_nonzero: Vec<f64>,
    pub input_total: Vec<f64>,
}

impl Counters {
    /// Zero counts for `slots` threshold slots and `nodes` graph nodes.
    pub fn new(slots: usize, nodes: usize) -> Self {
        Counters {
            spikes: vec![0.0; slots],
            neuron_steps: vec![0.0; slots],
            input_nonzero: vec![0.0; nodes],
            input_total: vec![0.0; nodes],
        }
    }

    /// Adds `o` elementwise.
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in [
            (&mut self.spikes, &o.spikes),
            (&mut self.neuron_steps, &o.neuron_steps),
            (&mut self.input_nonzero, &o.input_nonzero),
            (&mut self.input_total, &o.input_total),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// The simulator's spike and input counts as an observer: spikes and neuron·steps per slot,
/// and (when `inputs`, i.e. SNN runs) non-zero and total inputs per weighted node.
#[derive(Debug, Clone)]
pub struct SpikeCounter {
    pub counts: Counters,
    inputs: bool,
}

impl SpikeCounter {
    /// Zero counts for `slots` slots and `nodes` graph nodes; input counts only if `inputs`.
    pub fn new(slots: usize, nodes: usize, inputs: bool) -> Self {
        SpikeCounter {
            counts: Counters::new(slots, nodes),
            inputs,
        }
    }
}

impl Observer for SpikeCounter {
    fn spike_count(&mut self, app: &Application, spikes: usize, neurons: usize) -> Result<()> {
        if let (Some(s), Some(n)) = (
            self.counts.spikes.get_mut(app.slot.0),
            self.counts.neuron_steps.get_mut(app.slot.0),
        ) {
            *s += spikes as f64;
            *n += neurons as f64;
        }
        Ok(())
    }

    fn input_count(&mut self, node: NodeIndex, nonzero: usize, total: usize) -> Result<()> {
        if !self.inputs {
            return Ok(());
        }
        if let (Some(z), Some(t)) = (
            self.counts.input_nonzero.get_mut(node.index()),
            self.counts.input_total.get_mut(node.index()),
        ) {
            *z += nonzero as f64;
            *t += total as f64;
        }
        Ok(())
    }

    fn counters(&self) -> Option<&Counters> {
        Some(&self.counts)
    }
}

/// Two observers called in turn (the first, then the second) at every hook.
pub struct Tee<'a>(pub &'a mut dyn Observer, pub &'a mut dyn Observer);

impl Observer for Tee<'_> {
    fn input_spikes(&mut self, spikes: &Tensor) -> Result<()> {
        self.0.input_spikes(spikes)?;
        self.1.input_spikes(spikes)
    }

    fn presynaptic(&mut self, app: &Application, input: &Tensor) -> Result<()> {
        self.0.presynaptic(app, input)?;
        self.1.presynaptic(app, input)
    }

    fn current(&mut self, app: &Application, current: &Tensor) -> Result<()> {
        self.0.current(app, current)?;
        self.1.current(app, current)
    }

    fn spikes(&mut self, app: &Application, spikes: &Tensor) -> Result<()> {
        self.0.spikes(app, spikes)?;
        self.1.spikes(app, spikes)
    }

    fn spike_count(&mut self, app: &Application, spikes: usize, neurons: usize) -> Result<()> {
        self.0.spike_count(app, spikes, neurons)?;
        self.1.spike_count(app, spikes, neurons)
    }

    fn input_count(&mut self, node: NodeIndex, nonzero: usize, total: usize) -> Result<()> {
        self.0.input_count(node, nonzero, total)?;
        self.1.input_count(node, nonzero, total)
    }

    fn counters(&self) -> Option<&Counters> {
        self.0.counters().or_else(|| self.1.counters())
    }

    fn boundary(&mut self, node: NodeIndex, t: usize, rates: &Tensor) -> Result<()> {
        self.0.boundary(node, t, rates)?;
        self.1.boundary(node, t, rates)
    }

    fn wants_currents(&self) -> bool {
        self.0.wants_currents() || self.1.wants_currents()
    }

    fn wants_spike_tensors(&self) -> bool {
        self.0.wants_spike_tensors() || self.1.wants_spike_tensors()
    }

    fn current_max(&mut self, app: &Application, max: f32) -> Result<()> {
        self.0.current_max(app, max)?;
        self.1.current_max(app, max)
    }

    fn spike_total(&mut self, app: &Application, spikes: u64, neuron_steps: u64) -> Result<()> {
        self.0.spike_total(app, spikes, neuron_steps)?;
        self.1.spike_total(app, spikes, neuron_steps)
    }
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn wants_currents(&self) -> bool {
        false
    }

    fn wants_spike_tensors(&self) -> bool {
        false
    }
}

/// The spike rate of one spiking layer application over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotActivity {
    pub slot: SlotId,
    pub layer: String,
    /// The unroll step of this application.
    pub step: u32,
    /// Spikes per neuron per time step, in [0, 1].
    pub spike_rate: f32,
}

/// What evaluation measures in one batched forward pass: per-slot maximum input current,
/// per-application spike rates and the Poisson input's spike rate.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Per spiking application, in the order they ran (batched runs only).
    pub activity: Vec<SlotActivity>,
    /// Per slot, the largest input current seen (0 when none was positive).
    pub max_input: Vec<f32>,
    /// Spikes per pixel per step of the Poisson-coded input, when there was one.
    pub input_rate: Option<f32>,
}

impl Recorder {
    /// A recorder for a network with `slots` threshold slots.
    pub fn new(slots: usize) -> Self {
        Recorder {
            activity: Vec::new(),
            max_input: vec![0.0; slots],
            input_rate: None,
        }
    }
}

impl Observer for Recorder {
    fn input_spikes(&mut self, spikes: &Tensor) -> Result<()> {
        self.input_rate = Some(spikes.mean_all()?.to_scalar::<f32>()?);
        Ok(())
    }

    fn current(&mut self, app: &Application, current: &Tensor) -> Result<()> {
        self.current_max(app, current.max_all()?.to_scalar::<f32>()?)
    }

    fn spikes(&mut self, app: &Application, spikes: &Tensor) -> Result<()> {
        self.activity.push(SlotActivity {
            slot: app.slot,
            layer: app.layer.to_string(),
            step: app.step,
            spike_rate: spikes.mean_all()?.to_scalar::<f32>()?,
        });
        Ok(())
    }

    fn wants_currents(&self) -> bool {
        false
    }

    fn wants_spike_tensors(&self) -> bool {
        false
    }

    fn current_max(&mut self, app: &Application, max: f32) -> Result<()> {
        if let Some(slot) = self.max_input.get_mut(app.slot.0) {
            *slot = slot.max(max);
        }
        Ok(())
    }

    /// The rate as `mean_all` computes it (an f32 sum times the f32 of 1/n), so fused and
    /// unfused runs agree bit for bit while the count is below 2²⁴ (exact in f32).
    fn spike_total(&mut self, app: &Application, spikes: u64, neuron_steps: u64) -> Result<()> {
        let scale = (1.0 / neuron_steps.max(1) as f64) as f32;
        self.activity.push(SlotActivity {
            slot: app.slot,
            layer: app.layer.to_string(),
            step: app.step,
            spike_rate: spikes as f32 * scale + 0.0,
        });
        Ok(())
    }
}
