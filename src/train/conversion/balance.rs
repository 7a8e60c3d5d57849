//! Threshold balancing of a converted network: max-input (Sengupta et al.) slot by slot,
//! or the P-th percentile of the ANN's activations (Rueckauer et al.).

use super::*;

/// One balanced threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRecord {
    pub layer: String,
    pub step: u32,
    pub threshold: f32,
}

/// The thresholds of `sim`, per slot.
pub fn threshold_records(sim: &Simulator) -> Vec<ThresholdRecord> {
    sim.network()
        .thresholds
        .iter()
        .zip(sim.thresholds())
        .map(|(s, &t)| ThresholdRecord {
            layer: s.layer.clone(),
            step: s.step,
            threshold: t,
        })
        .collect()
}

/// For every weight set applied more than once (BackRes): whether its thresholds strictly
/// increase with the unroll step, v_thresh,1 < v_thresh,2 < … (the paper's observation).
pub fn backres_increasing(records: &[ThresholdRecord]) -> Vec<(String, bool)> {
    let mut by: Vec<(String, Vec<(u32, f32)>)> = Vec::new();
    for r in records {
        match by.iter_mut().find(|(l, _)| *l == r.layer) {
            Some((_, v)) => v.push((r.step, r.threshold)),
            None => by.push((r.layer.clone(), vec![(r.step, r.threshold)])),
        }
    }
    by.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(l, mut v)| {
            v.sort_by_key(|(s, _)| *s);
            let inc = v.windows(2).all(|w| w[0].1 < w[1].1);
            (l, inc)
        })
        .collect()
}

fn first_n(data: &dyn Images, n: usize) -> Vec<usize> {
    (0..data.count().min(n)).collect()
}

/// Balances every slot of `sim` in place (see the module docs); returns the thresholds.
pub fn balance(
    sim: &mut Simulator,
    data: &dyn Images,
    cfg: &ConversionConfig,
) -> Result<Vec<ThresholdRecord>> {
    let idx = first_n(data, cfg.balance_images.max(1));
    if idx.is_empty() {
        return Err(err("balancing needs at least one image"));
    }
    let batch = cfg.batch.max(1);
    let chunks: Vec<&[usize]> = idx.chunks(batch).collect();
    let dev = sim.device().clone();
    match cfg.balance {
        Balance::MaxInput => {
            let steps = cfg.balance_steps.max(1);
            let slots = sim.slots_in_order();
            let mut pb = progress_bar(slots.len() * chunks.len(), cfg.progress, "balancing");
            for slot in slots {
                let target = sim.network().thresholds[slot.0].node;
                let spec = RunSpec {
                    ann: false,
                    checkpoints: vec![steps],
                    stop: Some(target),
                    collect: None,
                };
                // The same input spikes for every slot.
                let mut rng = derive_rng(cfg.seed, BALANCE_STREAM);
                let mut m = 0f32;
                for c in &chunks {
                    let (x, _) = data.images(c, &dev)?;
                    rng.set_images(c.iter().copied());
                    let out = sim.run(&x, &spec, &mut rng)?;
                    m = m.max(out.max_input[slot.0]);
                    pb.inc(1);
                }
                let s = &sim.network().thresholds[slot.0];
                pb.set_message(format!("{}@{}: {m:.3}", s.layer, s.step));
                if m > 0.0 && m.is_finite() {
                    sim.set_threshold(slot, m)?;
                }
            }
            pb.finish_and_clear();
        }
        Balance::Percentile(p) => {
            let per_image: f64 = sim
                .network()
                .thresholds
                .iter()
                .filter_map(|s| sim.network().graph[s.node].out_shape?.features())
                .map(|f| f as f64)
                .fold(0.0, f64::max);
            let keep = (PERCENTILE_SAMPLE / (per_image * idx.len() as f64).max(1.0)).min(1.0);
            let spec = RunSpec {
                ann: true,
                checkpoints: vec![1],
                stop: None,
                collect: Some(keep),
            };
            let mut rng = derive_rng(cfg.seed, BALANCE_STREAM);
            let mut acts: Vec<Vec<f32>> = vec![Vec::new(); sim.thresholds().len()];
            let mut pb = progress_bar(chunks.len(), cfg.progress, "percentiles");
            for c in &chunks {
                let (x, _) = data.images(c, &dev)?;
                let out = sim.run(&x, &spec, &mut rng)?;
                for (a, o) in acts.iter_mut().zip(out.activations) {
                    a.extend(o);
                }
                pb.inc(1);
            }
            pb.finish_and_clear();
            let lambda: Vec<Option<f32>> = acts.iter_mut().map(|a| percentile(a, p)).collect();
            for slot in sim.slots_in_order() {
                let Some(l) = lambda[slot.0] else { continue };
                let up = upstream_scale(
                    sim.network(),
                    sim.network().thresholds[slot.0].node,
                    &lambda,
                );
                let th = l / up;
                if th.is_finite() && th > 0.0 {
                    sim.set_threshold(slot, th)?;
                }
            }
        }
    }
    Ok(threshold_records(sim))
}

/// The P-th percentile of `v` (nearest rank); `None` when empty.
pub fn percentile(v: &mut [f32], p: f32) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    // p is an f32 (99.9 is 99.90000152…): a small slack keeps exact ranks exact.
    let rank = ((p as f64 / 100.0) * n as f64 - 1e-3).ceil() as usize;
    let i = rank.clamp(1, n) - 1;
    let (_, x, _) = v.select_nth_unstable_by(i, |a, b| a.total_cmp(b));
    Some(*x)
}

/// The activation scale λ of what reaches `node` on its main path: that of the nearest
/// spiking node upstream, 1 for the input or a real-valued (ReLU) layer.
fn upstream_scale(net: &Network, node: NodeIndex, lambda: &[Option<f32>]) -> f32 {
    let mut cur = net.inputs_of(node).first().copied();
    while let Some(n) = cur {
        let nd = &net.graph[n];
        if let Some(slot) = nd.slot {
            return lambda.get(slot.0).copied().flatten().unwrap_or(1.0);
        }
        if nd.activation == Activation::Relu || matches!(nd.op, Op::Input | Op::Encode { .. }) {
            return 1.0;
        }
        cur = net.inputs_of(n).first().copied();
    }
    1.0
}
