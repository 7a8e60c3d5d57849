//! Evaluating the ANN and the converted SNN (one run at the largest T gives every smaller
//! T), with measured spike rates, input densities and their energy by `analysis`.

use super::*;

/// The SNN at one latency T.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimestepResult {
    pub timesteps: usize,
    pub test_accuracy: f64,
    /// Per spiking layer application: spikes per neuron per time step.
    pub activity: Vec<ActivityRecord>,
    /// Per weighted layer application: the fraction of non-zero inputs per step (SA).
    pub input_activity: Vec<ActivityRecord>,
    /// Eq. 10 / Eq. 11 by `snnc::analysis::estimate` with the measured spike rates (SA of a
    /// layer = the rate of its input spikes; Table I energies).
    pub e_ann_pj: f64,
    pub e_snn_pj: f64,
    pub ee: f64,
    /// Eq. 11 with SA = the measured fraction of non-zero inputs of each layer (after an
    /// average pool this is larger than the spike rate), and the EE it gives.
    pub e_snn_input_density_pj: f64,
    pub ee_input_density: f64,
    /// Spikes per pixel per step of the Poisson-coded input (the input density of the first
    /// layer fed by the encoder; 1 when there is none).
    pub input_spike_rate: f64,
}

/// E_ANN, E_SNN and EE (pJ per image) by [`analysis::price`] at latency `t` with measured
/// spike rates (per layer and unroll step) and the Poisson input's measured rate; layers the
/// run did not measure are priced at rate 1. EE is 0 when E_SNN is 0.
pub fn energy_from_rates(
    net: &Network,
    activity: &[ActivityRecord],
    input_rate: f64,
    t: usize,
) -> (f64, f64, f64) {
    let run = analysis::MeasuredRun {
        rates: activity
            .iter()
            .map(|a| ((a.layer.clone(), a.step), a.spike_rate))
            .collect(),
        input_rate: Some(input_rate),
        fallback: 1.0,
        timesteps: u32::try_from(t).unwrap_or(u32::MAX),
    };
    let e = analysis::price(net, &run, analysis::EnergyModel::INT32);
    (e.e_ann_pj, e.e_snn_pj, e.ee.unwrap_or(0.0))
}

/// What evaluating the SNN produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnnEvaluation {
    pub results: Vec<TimestepResult>,
    pub images: usize,
    pub seconds: f64,
    pub dense_calls: usize,
    pub event_calls: usize,
}

/// E_ANN, E_SNN and EE (pJ per image) by [`analysis::price_by_input_density`] at latency
/// `t`, with each accumulate layer's SA the measured fraction of non-zero inputs of that node
/// (`density`, indexed by node; unmeasured nodes 1): Eq. 11 with the input density instead
/// of the upstream spike rate (after an average pool the density exceeds the spike rate).
/// EE is 0 when E_SNN is 0.
pub fn energy_from_input_density(net: &Network, density: &[f64], t: usize) -> (f64, f64, f64) {
    let input_sa: HashMap<(String, u32), f64> = net
        .graph
        .node_indices()
        .filter_map(|n| {
            let node = &net.graph[n];
            let d = density.get(n.index()).copied()?;
            Some(((node.name.clone(), node.step), d))
        })
        .collect();
    let e = analysis::price_by_input_density(
        net,
        &input_sa,
        u32::try_from(t).unwrap_or(u32::MAX),
        analysis::EnergyModel::INT32,
    );
    (e.e_ann_pj, e.e_snn_pj, e.ee.unwrap_or(0.0))
}

/// Refuses a stochmax network (issue 12.3): its test-time rule classifies by
/// `log σ(W_ρ h + b_ρ) + o` (Eq. 7's retain head over the last features `h`), which the
/// step-by-step simulator does not compute, so a converted network would be classified by its
/// raw outputs `o` and disagree with its own ANN. Errors (`snnc::train::conversion`): the
/// network's classifier is stochmax.
pub fn check_classifier(net: &Network) -> Result<()> {
    if net.settings.classifier == crate::ir::Classifier::Stochmax {
        return Err(err(format!(
            "network `{}` uses the stochmax classifier, which conversion cannot simulate: the converted SNN would be classified by its raw outputs, not by stochmax's test-time rule log σ(W_ρ h + b_ρ) + o; convert the softmax twin of the network, or train this one with --method agd",
            net.name
        )));
    }
    Ok(())
}

fn c_has_weights(net: &Network, n: NodeIndex) -> bool {
    net.graph[n].op.weights().is_some()
}

/// Accuracy of the ANN (spiking layers as ReLU) on `data`.
pub fn evaluate_ann(sim: &Simulator, data: &dyn Images, batch: usize) -> Result<f64> {
    let idx: Vec<usize> = (0..data.count()).collect();
    if idx.is_empty() {
        return Ok(0.0);
    }
    let spec = RunSpec {
        ann: true,
        checkpoints: vec![1],
        stop: None,
        collect: None,
    };
    let mut rng = derive_rng(0, EVAL_STREAM);
    let mut right = 0;
    for c in idx.chunks(batch.max(1)) {
        let (x, y) = data.images(c, sim.device())?;
        let out = sim.run(&x, &spec, &mut rng)?;
        right += correct_count(&out.logits[0], &y)?;
    }
    Ok(right as f64 / idx.len() as f64)
}

/// Runs the SNN on `data` once, for max(`timesteps`) steps, and reports accuracy, activity
/// and energy at every T of `timesteps`.
pub fn evaluate_snn(
    sim: &Simulator,
    data: &dyn Images,
    timesteps: &[usize],
    batch: usize,
    seed: u64,
    progress: bool,
) -> Result<SnnEvaluation> {
    let mut ts: Vec<usize> = timesteps.iter().copied().filter(|&t| t > 0).collect();
    ts.sort_unstable();
    ts.dedup();
    if ts.is_empty() {
        return Err(err("no latency T ≥ 1 to evaluate"));
    }
    let idx: Vec<usize> = (0..data.count()).collect();
    if idx.is_empty() {
        return Err(err("the test set is empty"));
    }
    let spec = RunSpec {
        ann: false,
        checkpoints: ts.clone(),
        stop: None,
        collect: None,
    };
    let nodes = sim.network().graph.node_count();
    let slots = sim.thresholds().len();
    let mut right = vec![0usize; ts.len()];
    let mut counters = vec![Counters::new(slots, nodes); ts.len()];
    let (mut dense, mut event) = (0, 0);
    let mut rng = derive_rng(seed, EVAL_STREAM);
    let start = Instant::now();
    let chunks: Vec<&[usize]> = idx.chunks(batch.max(1)).collect();
    let mut pb = progress_bar(chunks.len(), progress, "SNN");
    for c in chunks {
        let (x, y) = data.images(c, sim.device())?;
        rng.set_images(c.iter().copied());
        let out = sim.run(&x, &spec, &mut rng)?;
        for (i, l) in out.logits.iter().enumerate() {
            right[i] += correct_count(l, &y)?;
        }
        for (acc, c) in counters.iter_mut().zip(&out.counters) {
            acc.add(c);
        }
        dense += out.dense_calls;
        event += out.event_calls;
        pb.inc(1);
        let last = right.len() - 1;
        pb.set_message(format!(
            "acc@T={} {:.1}%",
            ts[last],
            100.0 * right[last] as f64 / pb.position().max(1) as f64 / c.len().max(1) as f64
        ));
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let n = idx.len() as f64;
    let results = ts
        .iter()
        .zip(&right)
        .zip(&counters)
        .map(|((&t, &r), c)| {
            let activity: Vec<ActivityRecord> = sim
                .network()
                .thresholds
                .iter()
                .enumerate()
                .map(|(i, s)| ActivityRecord {
                    layer: s.layer.clone(),
                    step: s.step,
                    spike_rate: c.spikes[i] / c.neuron_steps[i].max(1.0),
                })
                .collect();
            let sa: Vec<f64> = (0..nodes)
                .map(|i| {
                    if c.input_total[i] > 0.0 {
                        c.input_nonzero[i] / c.input_total[i]
                    } else {
                        1.0
                    }
                })
                .collect();
            let input_activity = sim
                .order()
                .iter()
                .filter(|&&n| sim.network().graph[n].op.weights().is_some())
                .map(|&n| ActivityRecord {
                    layer: sim.network().graph[n].name.clone(),
                    step: sim.network().graph[n].step,
                    spike_rate: sa[n.index()],
                })
                .collect();
            // The Poisson input's rate: the input density of a layer fed by the encoder.
            let input_rate = sim
                .network()
                .graph
                .node_indices()
                .filter(|&e| matches!(sim.network().graph[e].op, Op::Encode { .. }))
                .flat_map(|e| {
                    sim.network()
                        .graph
                        .neighbors_directed(e, Direction::Outgoing)
                })
                .find(|&c| c_has_weights(sim.network(), c))
                .map(|c| sa[c.index()])
                .unwrap_or(1.0);
            let (_, e_dens, ee_dens) = energy_from_input_density(sim.network(), &sa, t);
            let (e_ann, e_snn, ee) = energy_from_rates(sim.network(), &activity, input_rate, t);
            TimestepResult {
                timesteps: t,
                test_accuracy: r as f64 / n,
                activity,
                input_activity,
                e_ann_pj: e_ann,
                e_snn_pj: e_snn,
                ee,
                e_snn_input_density_pj: e_dens,
                ee_input_density: ee_dens,
                input_spike_rate: input_rate,
            }
        })
        .collect();
    Ok(SnnEvaluation {
        results,
        images: idx.len(),
        seconds,
        dense_calls: dense,
        event_calls: event,
    })
}
