//! Conversion as a training method of the registry (`train::method`).

use super::*;

/// The conversion method: the driver trains the ANN (`Mode::Ann`, checkpoints as `ann`);
/// then thresholds are balanced, the SNN is evaluated at every latency, and the checkpoint
/// (ANN weights, thresholds, reset) and report become `conversion`'s.
#[derive(Debug, Clone, Copy)]
pub struct ConversionMethod;

impl TrainingMethod for ConversionMethod {
    fn name(&self) -> &'static str {
        "conversion"
    }

    fn about(&self) -> &'static str {
        "the ANN, then balanced IF thresholds"
    }

    fn forward_options(&self, _timesteps: usize, train: bool) -> ForwardOptions {
        ForwardOptions::ann(train)
    }

    fn training_timesteps(&self, _timesteps: usize) -> usize {
        1
    }

    fn checkpoint_method(&self) -> &'static str {
        "ann"
    }

    fn validate(&self, cfg: &TrainConfig) -> std::result::Result<(), TrainError> {
        let c = &cfg.conversion;
        if c.balance_images == 0
            || c.balance_steps == 0
            || c.batch == 0
            || c.eval_timesteps.is_empty()
            || c.eval_timesteps.contains(&0)
        {
            return Err(TrainError::Config(
                "--balance-images, --balance-steps and --eval-timesteps must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn check_network(&self, net: &Network) -> std::result::Result<(), TrainError> {
        // Refused before the ANN phase, not after it: a stochmax network's converted SNN
        // would be classified by its raw outputs.
        evaluate::check_classifier(net).map_err(TrainError::Conversion)?;
        match crate::passes::convertible::conversion_problems(net)
            .into_iter()
            .next()
        {
            Some(p) => Err(TrainError::NotConvertible { layer: p.layer }),
            None => Ok(()),
        }
    }

    fn after_training(
        &self,
        model: &mut Model,
        data: &Dataset,
        cfg: &TrainConfig,
        report: &mut Report,
        out: &Path,
    ) -> std::result::Result<Vec<String>, TrainError> {
        let cc = ConversionConfig {
            seed: cfg.seed,
            progress: cfg.progress,
            ..cfg.conversion.clone()
        };
        let train = SplitImages::new(&data.train, data.shape);
        let test = SplitImages::new(&data.test, data.shape);
        if cfg.progress {
            eprintln!(
                "balancing thresholds ({}, {} images × {} steps), then the SNN at T = {:?}",
                cc.balance, cc.balance_images, cc.balance_steps, cc.eval_timesteps
            );
        }
        let conv = convert(model, &train, &test, &cc).map_err(TrainError::Conversion)?;
        let meta = Meta {
            epoch: report.epochs.len(),
            seed: cc.seed,
            network: report.network.clone(),
            method: self.name().into(),
            settings: Some(crate::train::driver::run_settings(cfg)),
            net: Some(checkpoint::NetRecord::of(model.network())),
            ..Default::default()
        };
        save_checkpoint(model, cc.reset, &checkpoint::weights_path(out), &meta)?;
        apply_to_report(report, &conv);
        let lif = lif_layers(model.network());
        if !lif.is_empty() {
            report
                .extra
                .insert("lif_layers_run_as_if".into(), lif.clone().into());
        }
        report.write_json(&out.join("report.json"))?;
        let points: Vec<crate::train::plot::TPoint> = conv
            .snn
            .results
            .iter()
            .map(|r| crate::train::plot::TPoint {
                timesteps: r.timesteps,
                accuracy: r.test_accuracy,
                ee: r.ee,
            })
            .collect();
        crate::train::plot::plot_accuracy_vs_t(
            &points,
            Some(conv.ann_test_accuracy),
            &out.join("accuracy-vs-t.svg"),
        )
        .map_err(|e| TrainError::Io(std::io::Error::other(e.to_string())))?;
        let mut lines = ann_accuracy_lines(report, conv.ann_test_accuracy);
        if !lif.is_empty() {
            lines.push(format!(
                "note: LIF layers run as IF neurons in the converted SNN (no leak): {}",
                lif.join(", ")
            ));
        }
        for t in &conv.thresholds {
            lines.push(format!(
                "  v_thresh {:<10} step {:>2}  {:.4}",
                t.layer, t.step, t.threshold
            ));
        }
        for (l, inc) in &conv.backres_increasing {
            lines.push(format!("  {l}: v_thresh,1 < v_thresh,2 < … holds: {inc}"));
        }
        for r in &conv.snn.results {
            lines.push(format!(
                "SNN T = {:>4}: accuracy {:6.2}% (conversion loss {:+.2} points), E_SNN {:.3e} pJ, EE = {:.2}",
                r.timesteps,
                100.0 * r.test_accuracy,
                100.0 * (conv.ann_test_accuracy - r.test_accuracy),
                r.e_snn_pj,
                r.ee
            ));
        }
        Ok(lines)
    }

    /// The SNN with its balanced thresholds and IF neurons, step by step (no balancing
    /// again), at T (default: the network's `timesteps`, else 500, conversion's headline T).
    fn evaluate_checkpoint(
        &self,
        model: &Model,
        tensors: &HashMap<String, Tensor>,
        meta: &Meta,
        cfg: &EvalConfig,
    ) -> std::result::Result<EvalOutcome, TrainError> {
        evaluate_steps(model, tensors, meta, cfg, StepNeurons::If)
    }

    fn as_dyn(&self) -> &dyn TrainingMethod {
        self
    }
}

/// Which neuron a step-by-step evaluation runs in every spiking layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepNeurons {
    /// IF (leak 1) whatever the network declares: conversion's SNN.
    If,
    /// Each layer's declared neuron (a LIF layer leaks): STDP's network, as it trained.
    Declared,
}

impl StepNeurons {
    /// The run's name in an evaluation outcome.
    fn label(self) -> &'static str {
        match self {
            StepNeurons::If => "conversion, IF",
            StepNeurons::Declared => "stdp, declared neurons",
        }
    }
}

/// A checkpoint's network step by step with its thresholds (no balancing), reset from the
/// checkpoint, at T (`cfg.timesteps`, default: the network's `timesteps`, else 500), with
/// `neurons` in every spiking layer. `SNNC_SIM_PATH` / `--sim-path ann` runs the source ANN
/// instead.
///
/// Errors: T or batch 0, data that does not fit the network, a network the step runtime
/// cannot run, a simulation over the memory limit.
pub fn evaluate_steps(
    model: &Model,
    tensors: &HashMap<String, Tensor>,
    meta: &Meta,
    cfg: &EvalConfig,
    neurons: StepNeurons,
) -> std::result::Result<EvalOutcome, TrainError> {
    let t = defaults::timesteps(
        model.network(),
        cfg.timesteps,
        defaults::CONVERSION_EVAL_TIMESTEPS,
    );
    if t == 0 || cfg.batch == 0 {
        return Err(TrainError::Config(
            "--timesteps and --batch must be at least 1".into(),
        ));
    }
    let data = load_data(cfg.data.as_deref(), Some(0), cfg.test_limit)?;
    check_data(model, &data)?;
    evaluate::check_classifier(model.network()).map_err(TrainError::Conversion)?;
    let reset = checkpoint_reset(tensors).map_err(TrainError::Conversion)?;
    crate::train::memory::check_simulation(model.network(), cfg.batch.min(data.test.len()))?;
    let mut sim = sim_path(PathPolicy::default())
        .and_then(|path| Simulator::new(model, reset, path))
        .map_err(TrainError::Conversion)?;
    sim.set_if_neurons(neurons == StepNeurons::If);
    let test = SplitImages::new(&data.test, data.shape);
    if forced_sim_path().map_err(TrainError::Conversion)? == Some(SimPath::Ann) {
        // The source ANN with the same weights: one ReLU pass per image.
        let start = std::time::Instant::now();
        let accuracy = evaluate_ann(&sim, &test, cfg.batch).map_err(TrainError::Conversion)?;
        let seconds = start.elapsed().as_secs_f64();
        return Ok(EvalOutcome {
            label: "conversion's ANN (ReLU, one pass)".into(),
            timesteps: 1,
            accuracy,
            images: test.count(),
            loss: None,
            images_per_s: test.count() as f64 / seconds.max(1e-9),
            activity: Vec::new(),
            energy: None,
        });
    }
    let ev = evaluate_snn(&sim, &test, &[t], cfg.batch, meta.seed, cfg.progress)
        .map_err(TrainError::Conversion)?;
    let r = &ev.results[0];
    Ok(EvalOutcome {
        label: neurons.label().into(),
        timesteps: t,
        accuracy: r.test_accuracy,
        images: ev.images,
        loss: None,
        images_per_s: ev.images as f64 / ev.seconds.max(1e-9),
        activity: r.activity.clone(),
        energy: Some(EnergyRecord {
            e_ann_pj: r.e_ann_pj,
            e_snn_pj: r.e_snn_pj,
            ee: r.ee,
        }),
    })
}

/// The distinct names of the layers `net` declares as LIF neurons (conversion simulates them
/// as IF: the leak is dropped), in graph order.
pub fn lif_layers(net: &crate::ir::Network) -> Vec<String> {
    use crate::ir::{Activation, NeuronKind};
    let mut names: Vec<String> = Vec::new();
    for node in net.graph.node_weights() {
        if let Activation::Spiking(spec) = node.activation {
            if spec.kind == NeuronKind::Lif && !names.contains(&node.name) {
                names.push(node.name.clone());
            }
        }
    }
    names
}

/// The ANN accuracy lines of a conversion: the step-by-step simulator's ANN run (the
/// reference of every conversion loss) and, when the ANN phase's last epoch line measured
/// another test accuracy, both numbers with where each comes from, so that no run shows two
/// unexplained ANN accuracies.
pub fn ann_accuracy_lines(report: &Report, simulated: f64) -> Vec<String> {
    let mut lines = vec![format!(
        "ANN test accuracy {:.2}% (the converted network run as an ANN, step by step; the SNN's conversion loss is against it)",
        100.0 * simulated
    )];
    if let Some(e) = report.epochs.last() {
        if (e.test_accuracy - simulated).abs() > 1e-9 {
            lines.push(format!(
                "note: the ANN phase's epoch line measured {:.2}% with the training model's prediction rule; the step-by-step run above gives {:.2}% (the two runs classify differently)",
                100.0 * e.test_accuracy,
                100.0 * simulated
            ));
        }
    }
    lines
}
