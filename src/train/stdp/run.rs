//! `snnc train --method stdp`: the whole method with its outputs in OUT — the checkpoint
//! (`weights.safetensors`: STDP kernels, adapted thresholds, classifier), `report.json`
//! (accuracy per classifier epoch, spike rate per layer and unroll step, energy; `stdp`:
//! the STDP phase per layer; `ee_conv`, `ee_full`), `kernels.svg` (the first STDP layer).
//!
//! EE_Full (Table VI / XII) is E_ANN / E_SNN of the whole network (Eq. 10, 11 through
//! `analysis::estimate`, with the measured rates); EE_Conv is the same ratio over the
//! spiking (STDP-trained) layer applications only.
//!
//! Owner: the STDP helper. Invariants: every failure is an error message, never a panic.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;

use super::{stdp_layers, StdpConfig};
use crate::analysis;
use crate::backend::candle::model::Model;
use crate::data::Dataset;
use crate::ir::Network;
use crate::train::checkpoint;
use crate::train::driver::TrainConfig;
use crate::train::report::{ActivityRecord, EnergyRecord, Report};

/// EE_Full and EE_Conv of `net` at T with the measured `activity`.
pub fn energy(net: &Network, activity: &[ActivityRecord], timesteps: usize) -> (EnergyRecord, f64) {
    let rates: HashMap<(String, u32), f64> = activity
        .iter()
        .filter(|a| a.spike_rate.is_finite())
        .map(|a| ((a.layer.clone(), a.step), a.spike_rate.clamp(0.0, 1.0)))
        .collect();
    let fallback = if rates.is_empty() {
        0.0
    } else {
        rates.values().sum::<f64>() / rates.len() as f64
    };
    let opts = analysis::Options {
        timesteps: Some(u32::try_from(timesteps).unwrap_or(u32::MAX)),
        activity: analysis::Activity::Measured { rates, fallback },
        energy: analysis::EnergyModel::INT32,
    };
    let est = analysis::estimate(net, &opts);
    let spiking = |l: &&analysis::LayerCost| matches!(l.activation, "lif" | "if");
    let conv_ann: f64 = est.layers.iter().filter(spiking).map(|l| l.e_ann_pj).sum();
    let conv_snn: f64 = est.layers.iter().filter(spiking).map(|l| l.energy_pj).sum();
    let ee_conv = if conv_snn > 0.0 {
        conv_ann / conv_snn
    } else {
        f64::NAN
    };
    (
        EnergyRecord {
            e_ann_pj: est.e_ann_pj,
            e_snn_pj: est.e_snn_pj,
            ee: est.ee.unwrap_or(f64::NAN),
        },
        ee_conv,
    )
}

/// Runs STDP then the classifier on `data` with seed `train_cfg.seed`, writes OUT and
/// returns the report. With `train_cfg.resume` and a checkpoint of this network's STDP run
/// in OUT, its kernels, thresholds and classifier are loaded and the STDP phase is skipped
/// (the layers it holds are trained): the classifier continues for `train_cfg.epochs`.
/// Errors: a checkpoint of another network or method.
pub fn run(
    net: &Network,
    data: &Dataset,
    cfg: &StdpConfig,
    train_cfg: &TrainConfig,
    out: &Path,
) -> Result<Report, String> {
    let start = std::time::Instant::now();
    let mut model = Model::new(net, &Device::Cpu, train_cfg.seed)
        .map_err(|e| format!("cannot lower `{}`: {e}", net.name))?;
    crate::train::driver::check_data(&model, data).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut tc = train_cfg.clone();
    tc.out = None;
    tc.resume = false;
    let path = checkpoint::weights_path(out);
    let mut cfg = cfg.clone();
    let resumed = train_cfg.resume && path.exists();
    if resumed {
        let (map, meta) = checkpoint::load(&path).map_err(|e| e.to_string())?;
        if meta.method != "stdp" || meta.network != net.name {
            return Err(format!(
                "{} holds a `{}` run of `{}`, not an STDP run of `{}`",
                path.display(),
                meta.method,
                meta.network,
                net.name
            ));
        }
        model.load(&map).map_err(|e| e.to_string())?;
        cfg.images = 0;
    }
    let cfg = &cfg;
    let run = super::train(&mut model, data, cfg, &tc)?;
    let mut report = run.classifier;
    report.method = "stdp".into();
    report.network = net.name.clone();
    report.timesteps = cfg.timesteps;
    report.activity = net
        .thresholds
        .iter()
        .zip(&run.test_rates)
        .map(|(s, &r)| ActivityRecord {
            layer: s.layer.clone(),
            step: s.step,
            spike_rate: r,
        })
        .collect();
    let (en, ee_conv) = energy(net, &report.activity, cfg.timesteps);
    report.energy = en.clone();
    let num = |v: f64| serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into);
    report.extra.insert("ee_conv".into(), num(ee_conv));
    report.extra.insert("ee_full".into(), num(en.ee));
    report.extra.insert(
        "stdp".into(),
        serde_json::to_value(&run.layers).map_err(|e| e.to_string())?,
    );
    report
        .extra
        .insert("stdp_images".into(), serde_json::Value::from(cfg.images));
    report.extra.insert(
        "phase_seconds".into(),
        serde_json::to_value(run.seconds).map_err(|e| e.to_string())?,
    );
    // The constants the STDP phase ran with (after flag > TOML > file > default).
    report.extra.insert(
        "stdp_config".into(),
        serde_json::to_value(cfg).map_err(|e| e.to_string())?,
    );
    report
        .extra
        .insert("resumed".into(), serde_json::Value::from(resumed));
    // The resolved configuration of the run, recorded here so that `report.json` is written
    // once, complete.
    report.extra.extend(train_cfg.describe.clone());
    let meta = checkpoint::Meta {
        epoch: train_cfg.epochs,
        seed: train_cfg.seed,
        network: net.name.clone(),
        method: "stdp".into(),
        settings: Some(crate::train::driver::run_settings(train_cfg)),
        net: Some(checkpoint::NetRecord::of(net)),
        ..Default::default()
    };
    let state = model.state().map_err(|e| e.to_string())?;
    checkpoint::save(&checkpoint::weights_path(out), &state, &meta).map_err(|e| e.to_string())?;
    // The whole run (STDP, features, classifier), not the classifier's epochs alone.
    report.wall_s = start.elapsed().as_secs_f64();
    report
        .write_json(&out.join("report.json"))
        .map_err(|e| e.to_string())?;
    // The spike raster of a few test images on the step runtime STDP runs on (declared neurons).
    if !data.test.is_empty() {
        let how = crate::train::raster::RasterRun::Steps {
            reset: crate::ir::Reset::Subtract,
            timesteps: cfg.timesteps,
            if_neurons: false,
        };
        crate::train::raster::write_raster(&model, data, &how, train_cfg.seed, out)
            .map_err(|e| e.to_string())?;
    }
    if let Some(first) = stdp_layers(net).first() {
        let w = model
            .weight(&first.name)
            .ok_or_else(|| format!("no weights `{}`", first.name))?
            .as_tensor()
            .detach();
        let dims = w.dims().to_vec();
        let v = w
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        if let [o, c, k, _] = dims[..] {
            super::kernels::plot_kernels(&v, o, c, k, &out.join("kernels.svg"))?;
        }
    }
    Ok(report)
}
