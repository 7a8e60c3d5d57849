//! The classifier phase: the layers after the STDP-trained part (behind the network's
//! SNN→ANN boundary: FC layers or a ConvNN classifier, ReLU, softmax or stochmax) train with
//! backprop on the spike rates (spike counts over T divided by T) the boundary passes on,
//! skip concatenations included (Table VII). The features come from the step-by-step
//! runtime, one run per image at T; the classifier is cut out of the network as its own
//! ANN ([`classifier_network`]) and trained by the AGD loop (`method::ANN`), so it
//! cannot touch the STDP layers; its weights are then copied back by name.
//!
//! Owner: the STDP helper. Invariants: only weight sets behind the boundary change; a
//! network without exactly one SNN→ANN boundary feeding the output is an error.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rayon::prelude::*;

use crate::backend::candle::err;
use crate::backend::candle::event::PathPolicy;
use crate::backend::candle::model::{rng_for, Model};
use crate::backend::candle::observe::Observer;
use crate::backend::candle::step::{Counters, RunSpec, Simulator};
use crate::data::Split;
use crate::ir::{BoundaryKind, Domain, Encoding, Network, Node, Op, Reset, WeightId};
use crate::train::conversion::Images;

const FEATURE_STREAM: u64 = (3 << 40) + (2 << 20);

/// The SNN→ANN boundary the output depends on (the first in topological order).
pub fn classifier_boundary(net: &Network) -> Result<NodeIndex> {
    net.topo_order()
        .into_iter()
        .find(|&n| {
            matches!(
                net.graph[n].op,
                Op::Boundary {
                    kind: BoundaryKind::SnnToAnn
                }
            )
        })
        .ok_or_else(|| {
            err(format!(
                "`{}` has no SNN→ANN boundary: STDP needs an ANN classifier (e.g. FC1-ReLU) \
                 after its spiking conv layers",
                net.name
            ))
        })
}

/// The classifier as its own network: a new input of the boundary's shape, then every node
/// behind `boundary`, with the same weight-set names. Errors when a node behind the
/// boundary also reads a value from before it.
pub fn classifier_network(net: &Network, boundary: NodeIndex) -> Result<Network> {
    let shape = net.graph[boundary]
        .out_shape
        .ok_or_else(|| err("the boundary has no shape"))?;
    let mut graph: DiGraph<Node, crate::ir::Edge> = DiGraph::new();
    let mut input = Node::new(
        "Input",
        Op::Input,
        crate::ir::Activation::None,
        net.graph[boundary].span,
    );
    input.out_shape = Some(shape);
    input.domain = Some(Domain::Ann);
    let inp = graph.add_node(input);
    let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::from([(boundary, inp)]);
    let mut weights = Vec::new();
    let mut wmap: HashMap<usize, usize> = HashMap::new();
    let order = net.topo_order();
    let pos = order.iter().position(|&n| n == boundary).unwrap_or(0);
    for &n in &order[pos + 1..] {
        let ins: Vec<_> = net.graph.edges_directed(n, Direction::Incoming).collect();
        if !ins.iter().any(|e| map.contains_key(&e.source())) {
            continue;
        }
        let mut node = net.graph[n].clone();
        let remap = |w: WeightId, weights: &mut Vec<_>, wmap: &mut HashMap<usize, usize>| {
            let id = *wmap.entry(w.0).or_insert_with(|| {
                weights.push(net.weights[w.0].clone());
                weights.len() - 1
            });
            WeightId(id)
        };
        if let Op::Conv { weights: w } | Op::Fc { weights: w } = &mut node.op {
            *w = remap(*w, &mut weights, &mut wmap);
        }
        if node.is_spiking() || node.domain == Some(Domain::Snn) {
            return Err(err(format!(
                "`{}` is spiking behind the classifier boundary",
                node.name
            )));
        }
        let new = graph.add_node(node);
        for e in ins {
            let src = map.get(&e.source()).ok_or_else(|| {
                err(format!(
                    "`{}` reads both sides of the SNN→ANN boundary",
                    net.graph[n].name
                ))
            })?;
            graph.add_edge(*src, new, *e.weight());
        }
        map.insert(n, new);
    }
    let output = *map
        .get(&net.output)
        .ok_or_else(|| err("the output is not behind the classifier boundary"))?;
    let mut settings = net.settings.clone();
    settings.input = Some(shape);
    settings.encode = Encoding::Direct;
    Ok(Network {
        name: format!("{}-classifier", net.name),
        span: net.span,
        settings,
        weights,
        graph,
        input: inp,
        output,
        repeats: Vec::new(),
        thresholds: Vec::new(),
    })
}

/// Keeps the rates the boundary passes on.
struct Rates {
    boundary: NodeIndex,
    value: Option<Tensor>,
}

impl Observer for Rates {
    fn boundary(&mut self, node: NodeIndex, _t: usize, rates: &Tensor) -> Result<()> {
        if node == self.boundary {
            self.value = Some(rates.clone());
        }
        Ok(())
    }
}

/// The boundary's spike rates at T = `timesteps` for the first `count` images of `images`
/// (at most all), step by step with each layer's declared neuron (a LIF layer leaks), reset
/// by subtraction and the model's thresholds, in batches of `batch` that run in parallel,
/// batch i with Poisson input from its own stream (`seed`, feature stream `stream`, i);
/// the accumulation path is the measured-density choice ([`PathPolicy::default`]) unless
/// `SNNC_SIM_PATH` forces one. Returns a split of `[F]` features (flattened boundary
/// values) with the images' labels, and the spike rate of every threshold slot over those runs (spikes per neuron per step).
pub fn features(
    model: &Model,
    images: &dyn Images,
    count: usize,
    timesteps: usize,
    batch: usize,
    seed: u64,
    stream: u64,
) -> Result<(Split, Vec<f64>)> {
    let boundary = classifier_boundary(model.network())?;
    let mut counts = Counters::new(model.thresholds().len(), model.network().graph.node_count());
    let policy = crate::train::conversion::sim_path(PathPolicy::default())?;
    let sim = Simulator::new(model, Reset::Subtract, policy)?;
    let spec = RunSpec {
        ann: false,
        checkpoints: vec![timesteps],
        stop: None,
        collect: None,
    };
    let n = count.min(images.count());
    let batch = batch.max(1);
    // Batches run two at a time on the thread pool (the per-step work of one batch keeps
    // about 1.4 cores busy); each draws its Poisson input from its own stream, so the
    // features do not depend on the number of threads.
    let batches = (0..n.div_ceil(batch))
        .map(|bi| {
            let idx: Vec<usize> = (bi * batch..((bi + 1) * batch).min(n)).collect();
            images.images(&idx, model.device())
        })
        .collect::<Result<Vec<_>>>()?;
    let runs = batches
        .into_par_iter()
        .enumerate()
        .map(|(bi, (x, y))| {
            let mut obs = Rates {
                boundary,
                value: None,
            };
            let key = FEATURE_STREAM + (stream << 32) + bi as u64;
            let mut rng = rng_for(seed, key);
            let run = sim.run_observed(&x, &spec, &mut rng, &mut obs)?;
            let v = obs
                .value
                .ok_or_else(|| err("the boundary produced no rates"))?;
            let labels: Vec<u8> = y
                .to_dtype(candle_core::DType::U32)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|l| l as u8)
                .collect();
            Ok((v.flatten_all()?.to_vec1::<f32>()?, labels, run.counters))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Split::default();
    for (values, labels, counters) in runs {
        if let Some(c) = counters.last() {
            counts.add(c);
        }
        out.images.extend(values);
        out.labels.extend(labels);
    }
    let rates = counts
        .spikes
        .iter()
        .zip(&counts.neuron_steps)
        .map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 })
        .collect();
    Ok((out, rates))
}

/// Copies the weight sets named by `to`'s classifier network `names` from `from` into `to`.
pub fn copy_weights(from: &Model, to: &Model, names: &[String]) -> Result<()> {
    for name in names {
        let src = from
            .weight(name)
            .ok_or_else(|| err(format!("no weights `{name}` to copy")))?;
        let dst = to
            .weight(name)
            .ok_or_else(|| err(format!("no weights `{name}` to copy into")))?;
        dst.set(&src.as_tensor().detach())?;
    }
    Ok(())
}
