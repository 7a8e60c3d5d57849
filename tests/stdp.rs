//! STDP (issue 9): Eq. 5 on one synapse, mini-batch averaging, bounds, competition, the
//! BackRes k × n updates, a short layerwise run on the embedded data, checkpoint round trip.

use candle_core::{Device, Tensor};
use snnc::backend::candle::event::PathPolicy;
use snnc::backend::candle::model::{rng_for, Model};
use snnc::backend::candle::netbuild::NetBuilder;
use snnc::backend::candle::observe::{Application, Observer};
use snnc::backend::candle::step::{RunSpec, Simulator};
use snnc::data::{self, DataSpec};
use snnc::ir::{Network, PoolKind, Reset, Shape, SlotId};
use snnc::train::checkpoint;
use snnc::train::conversion::SplitImages;
use snnc::train::stdp::competition::{kernel_dropout, winner_take_all, ThresholdAdaptation};
use snnc::train::stdp::rule::{ConvGeometry, KernelUpdates, StdpParams, Trace};
use snnc::train::stdp::{stdp_layers, train_layerwise, StdpConfig, StdpObserver};

type R = Result<(), Box<dyn std::error::Error>>;

fn params() -> StdpParams {
    StdpParams {
        eta: 0.1,
        tau: 4.0,
        offset: 0.3,
        w_min: -1.0,
        w_max: 1.0,
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

/// One synapse (1×1 conv, one input, one output), spikes given per step (pre, post);
/// returns the accumulated Δw.
fn one_synapse(p: &StdpParams, pre: &[f32], post: &[f32]) -> f32 {
    let g = ConvGeometry::new(1, 1, 1, 1, 1, 1, 1, 0).unwrap();
    let mut trace = Trace::new(1, p.tau);
    let mut up = KernelUpdates::new(1);
    for (&a, &b) in pre.iter().zip(post) {
        trace.step(&[a]).unwrap();
        up.add_step(p, &g, trace.values(), &[b], &[true]).unwrap();
    }
    up.delta[0]
}

#[test]
fn eq5_pre_before_post() {
    let p = params();
    // pre fires at t = 3, post at t = 5: Δw = η (e^(−2/τ) − offset) = 0.1 (e^(−0.5) − 0.3).
    let d = one_synapse(&p, &[0., 0., 1., 0., 0.], &[0., 0., 0., 0., 1.]);
    let hand = 0.1 * ((-0.5f32).exp() - 0.3);
    assert!(close(hand, 0.030_653_066), "{hand}");
    assert!(close(d, hand), "{d} vs {hand}");
    assert!(close(p.delta(Some(2.0)), hand));
    // Same step (the pre spike causes the post spike): Δw = η (1 − offset) = 0.07.
    let d = one_synapse(&p, &[1.], &[1.]);
    assert!(close(d, 0.07), "{d}");
    // Far apart (10 steps): depression, η (e^(−2.5) − 0.3) = 0.1 · (0.082085 − 0.3).
    let mut pre = vec![0.0; 11];
    pre[0] = 1.0;
    let mut post = vec![0.0; 11];
    post[10] = 1.0;
    let d = one_synapse(&p, &pre, &post);
    assert!(close(d, 0.1 * ((-2.5f32).exp() - 0.3)), "{d}");
    assert!(d < 0.0);
}

#[test]
fn eq5_post_before_pre() {
    let p = params();
    // post at t = 2 with no earlier pre spike (t_pre = −∞): Δw = −η · offset = −0.03; the
    // pre spike at t = 4 comes after the post spike and triggers nothing (no later post).
    let d = one_synapse(&p, &[0., 0., 0., 1., 0.], &[0., 1., 0., 0., 0.]);
    assert!(close(d, -0.03), "{d}");
    assert!(close(p.delta(None), -0.03));
    // pre at 1, post at 2 (Δt = 1), then post again at 6 (Δt = 5 from the same pre spike):
    // two updates: 0.1 (e^(−1/4) − 0.3) + 0.1 (e^(−5/4) − 0.3).
    let d = one_synapse(&p, &[1., 0., 0., 0., 0., 0.], &[0., 1., 0., 0., 0., 1.]);
    let hand = 0.1 * ((-0.25f32).exp() - 0.3) + 0.1 * ((-1.25f32).exp() - 0.3);
    assert!(close(d, hand), "{d} vs {hand}");
}

#[test]
fn minibatch_update_is_the_mean_over_batch_and_positions() {
    let p = params();
    // 1×1 kernel, batch 2, one 2×2 input map, one output map.
    let g = ConvGeometry::new(2, 1, 2, 2, 1, 1, 1, 0).unwrap();
    let trace = [1.0, 0.5, 0.0, 0.25, 0.0, 1.0, 1.0, 0.0];
    // post spikes: image 0 at positions 0 and 1, image 1 at position 2.
    let post = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let mut up = KernelUpdates::new(1);
    assert_eq!(up.add_step(&p, &g, &trace, &post, &[true]).unwrap(), 1);
    // mean of η (x − offset) over the 3 events = 0.1 ((1 + 0.5 + 1)/3 − 0.3).
    let hand = 0.1 * ((1.0 + 0.5 + 1.0) / 3.0 - 0.3);
    assert!(close(up.delta[0], hand), "{} vs {hand}", up.delta[0]);
    assert_eq!(up.updates, 1);

    // 3×3 kernel, pad 1, one event at the corner (0, 0) of a 2×2 map: only the 4 synapses
    // inside the map learn (zero padding has no synapse), each with its own trace.
    let g = ConvGeometry::new(1, 1, 2, 2, 2, 3, 1, 1).unwrap();
    let trace = [0.9, 0.2, 0.0, 0.6];
    let post = [1.0, 0.0, 0.0, 0.0, /* map 1 */ 0.0, 0.0, 0.0, 0.0];
    let mut up = KernelUpdates::new(2 * 9);
    assert_eq!(
        up.add_step(&p, &g, &trace, &post, &[true, true]).unwrap(),
        1
    );
    // kernel 0: offsets (ky, kx) ∈ {1, 2}² reach inputs (0,0), (0,1), (1,0), (1,1).
    let mut want = [0.0f32; 18];
    want[4] = 0.1 * (0.9 - 0.3);
    want[5] = 0.1 * (0.2 - 0.3);
    want[7] = 0.1 * (0.0 - 0.3);
    want[8] = 0.1 * (0.6 - 0.3);
    for (i, (a, b)) in up.delta.iter().zip(&want).enumerate() {
        assert!(close(*a, *b), "weight {i}: {a} vs {b}");
    }
    // a dropped kernel does not learn.
    let post = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let mut up = KernelUpdates::new(18);
    assert_eq!(
        up.add_step(&p, &g, &trace, &post, &[true, false]).unwrap(),
        1
    );
    assert!(up.delta[9..].iter().all(|&d| d == 0.0));
    // mismatched lengths are errors, not panics.
    assert!(up
        .add_step(&p, &g, &trace[..3], &post, &[true, true])
        .is_err());
}

#[test]
fn weights_stay_in_bounds() {
    let p = StdpParams {
        w_min: -0.5,
        w_max: 0.25,
        ..params()
    };
    let up = KernelUpdates {
        delta: vec![1.0, -1.0, 0.1],
        updates: 1,
    };
    let mut w = vec![0.0, 0.0, 0.1];
    up.apply(&p, &mut w).unwrap();
    assert_eq!(w, vec![0.25, -0.5, 0.2]);
    assert!(StdpParams {
        w_min: 1.0,
        w_max: 1.0,
        ..params()
    }
    .validate()
    .is_err());
    assert!(StdpParams {
        tau: 0.0,
        ..params()
    }
    .validate()
    .is_err());
    assert!(StdpParams {
        offset: f32::NAN,
        ..params()
    }
    .validate()
    .is_err());
}

#[test]
fn winner_take_all_keeps_the_strongest_map_per_position() {
    // batch 1, 3 maps, 2 positions.
    let spikes = [1.0, 1.0, /* m1 */ 1.0, 0.0, /* m2 */ 0.0, 1.0];
    let current = [1.2, 3.0, /* m1 */ 2.5, 9.0, /* m2 */ 9.0, 1.0];
    let out = winner_take_all(&spikes, &current, 1, 3, 2).unwrap();
    // position 0: maps 0 and 1 spiked, map 1 has the larger current (2.5); map 2 did not
    // spike despite its current. Position 1: maps 0 and 2 spiked; map 0 (3.0) wins.
    assert_eq!(out, vec![0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert!(winner_take_all(&spikes, &current[..5], 1, 3, 2).is_err());
    let mut rng = rng_for(1, 2);
    assert!(kernel_dropout(0.0, 5, &mut rng).iter().all(|&k| k));
    let kept = kernel_dropout(0.5, 2000, &mut rng)
        .iter()
        .filter(|&&k| k)
        .count();
    assert!((900..1100).contains(&kept), "{kept}");
}

#[test]
fn threshold_adaptation_moves_thresholds_the_right_way() {
    let a = ThresholdAdaptation {
        target_rate: 0.05,
        gain: 2.0,
        min_threshold: 0.1,
    };
    assert!(close(a.adapt(1.0, 0.15), 1.2)); // fires too much: up by 2 · 0.1
    assert!(close(a.adapt(1.0, 0.0), 0.9)); // silent: down by 2 · 0.05
    assert!(close(a.adapt(1.0, 0.05), 1.0));
    assert!(close(a.adapt(0.12, 0.0), 0.1)); // never below the minimum
    assert!(ThresholdAdaptation {
        min_threshold: 0.0,
        ..a
    }
    .validate()
    .is_err());
}

fn small_net(backres: bool) -> Network {
    let b = NetBuilder::new("stdp-small", Shape::new(1, 8, 8), 8);
    let lif = b.lif();
    let b = b
        .conv("Conv1", 1, 4, 3, 1, lif)
        .conv("Conv2", 4, 4, 3, 1, lif);
    let b = if backres { b.reuse("Conv2", lif) } else { b };
    b.pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 64, 3, snnc::ir::Activation::None)
        .build()
}

fn bright(b: usize, seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = rng_for(seed, 9);
    let v: Vec<f32> = (0..b * 64)
        .map(|_| 0.3 + 0.7 * rng.0.random::<f32>())
        .collect();
    Tensor::from_vec(v, (b, 1, 8, 8), &Device::Cpu).unwrap()
}

/// Forwards every hook to the STDP observer and keeps Conv1's spikes per step.
struct WithConv1<'a> {
    stdp: StdpObserver<'a>,
    conv1: Vec<Tensor>,
}

impl Observer for WithConv1<'_> {
    fn presynaptic(&mut self, app: &Application, input: &Tensor) -> candle_core::Result<()> {
        self.stdp.presynaptic(app, input)
    }
    fn current(&mut self, app: &Application, c: &Tensor) -> candle_core::Result<()> {
        self.stdp.current(app, c)
    }
    fn spikes(&mut self, app: &Application, s: &Tensor) -> candle_core::Result<()> {
        if app.layer == "Conv1" {
            self.conv1.push(s.clone());
        }
        self.stdp.spikes(app, s)
    }
}

/// A copy of a model's weights (`detach` shares storage with the variable, which STDP and
/// loading update in place).
fn weights_of(m: &Model, name: &str) -> Tensor {
    m.weight(name).unwrap().as_tensor().copy().unwrap()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a == b
}

#[test]
fn backres_layer_makes_k_times_n_updates_with_the_right_pairs() -> R {
    let net = small_net(true);
    let layers = stdp_layers(&net);
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1].name, "Conv2");
    assert_eq!(
        layers[1].applications.len(),
        2,
        "Conv2 runs at unroll steps 1 and 2"
    );
    let mut model = Model::new(&net, &Device::Cpu, 5)?;
    for s in 0..net.thresholds.len() {
        model.set_threshold(SlotId(s), 0.2)?;
    }
    let sim = Simulator::new(&model, Reset::Subtract, PathPolicy::Dense)?;
    let cfg = StdpConfig {
        dropout: 0.0,
        ..StdpConfig::default()
    };
    let t = 8;
    let mut drop_rng = rng_for(0, 0);
    let obs = StdpObserver::new(&net, &layers[1], &cfg, &mut drop_rng)?.record_pairs();
    let mut both = WithConv1 {
        stdp: obs,
        conv1: Vec::new(),
    };
    let spec = RunSpec {
        ann: false,
        checkpoints: vec![t],
        stop: Some(layers[1].applications[1]),
        collect: None,
    };
    sim.run_observed(&bright(2, 3), &spec, &mut rng_for(0, 1), &mut both)?;
    let pairs = both.stdp.pairs.clone().unwrap();
    assert_eq!(
        pairs.len(),
        2 * t,
        "one pre/post pair per unroll step and time step"
    );
    assert_eq!(both.conv1.len(), t);
    for time in 1..=t {
        let p1 = pairs
            .iter()
            .find(|p| p.step == 1 && p.time == time)
            .unwrap();
        let p2 = pairs
            .iter()
            .find(|p| p.step == 2 && p.time == time)
            .unwrap();
        // step 1: pre = the layer's input (Conv1's spikes at t); step 2: pre = its own
        // output of step 1 at t.
        assert!(same(&p1.pre, &both.conv1[time - 1]), "t = {time}");
        assert!(same(&p2.pre, &p1.post), "t = {time}");
    }
    let ev = &both.stdp.events;
    let k1 = ev.iter().filter(|e| e.step == 1).count();
    let k2 = ev.iter().filter(|e| e.step == 2).count();
    assert!(
        k1 > 0 && k2 > 0,
        "both unroll steps learn (k1 = {k1}, k2 = {k2})"
    );
    assert!(k1 <= t && k2 <= t);
    // each event is one step of one application; its kernels are the layer's updates.
    let total: usize = ev.iter().map(|e| e.kernels).sum();
    assert_eq!(total, both.stdp.updates.updates);
    // an update needs a post spike at that (step, t): check against the recorded spikes.
    for e in ev {
        let p = pairs
            .iter()
            .find(|p| p.step == e.step && p.time == e.time)
            .unwrap();
        assert!(p.post.sum_all()?.to_scalar::<f32>()? > 0.0);
    }
    Ok(())
}

#[test]
fn layerwise_adaptation_raises_a_busy_threshold_and_lowers_a_silent_one() -> R {
    let net = small_net(false);
    let mut model = Model::new(&net, &Device::Cpu, 5)?;
    model.set_threshold(SlotId(0), 0.05)?; // Conv1 fires nearly always
    model.set_threshold(SlotId(1), 50.0)?; // Conv2 never fires
    let cfg = StdpConfig {
        images: 8,
        batch: 4,
        timesteps: 5,
        ..StdpConfig::default()
    };
    let imgs = Fixed(bright(8, 4));
    let rep = train_layerwise(&mut model, &imgs, &cfg)?;
    assert_eq!(rep.len(), 2);
    assert!(model.thresholds()[0] > 0.05, "{:?}", model.thresholds());
    assert!(model.thresholds()[1] < 50.0, "{:?}", model.thresholds());
    assert!(rep[0].steps[0].spike_rate > cfg.adaptation.target_rate);
    assert_eq!(rep[1].steps[0].spike_rate, 0.0);
    Ok(())
}

/// Fixed images (labels 0).
struct Fixed(Tensor);

impl snnc::train::conversion::Images for Fixed {
    fn count(&self) -> usize {
        self.0.dim(0).unwrap_or(0)
    }
    fn images(&self, idx: &[usize], _: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let i: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let i = Tensor::new(i.as_slice(), &Device::Cpu)?;
        Ok((self.0.index_select(&i, 0)?, i.zeros_like()?))
    }
}

fn fashion_net() -> Network {
    let b = NetBuilder::new("stdp-fmnist", Shape::new(1, 28, 28), 10);
    let lif = b.lif();
    b.conv("Conv1", 1, 6, 3, 1, lif)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 6 * 14 * 14, 10, snnc::ir::Activation::None)
        .build()
}

#[test]
fn short_run_on_embedded_data_learns_distinct_kernels_and_round_trips() -> R {
    let data = data::load(&DataSpec::Embedded, Some(48), Some(0))?;
    let imgs = SplitImages::new(&data.train, data.shape);
    let net = fashion_net();
    let mut model = Model::new(&net, &Device::Cpu, 11)?;
    let before = weights_of(&model, "Conv1");
    let fc_before = weights_of(&model, "FC1");
    let cfg = StdpConfig {
        images: 48,
        batch: 16,
        timesteps: 10,
        seed: 2,
        ..StdpConfig::default()
    };
    let rep = train_layerwise(&mut model, &imgs, &cfg)?;
    assert!(rep[0].updates > 0);
    let after = weights_of(&model, "Conv1");
    let moved = (&after - &before)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(moved > 1e-3, "kernels did not move ({moved})");
    assert!(same(&weights_of(&model, "FC1"), &fc_before));
    let k: Vec<Vec<f32>> = (0..6)
        .map(|o| {
            after
                .get(o)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    for i in 0..6 {
        for j in i + 1..6 {
            let d: f32 = k[i].iter().zip(&k[j]).map(|(a, b)| (a - b).abs()).sum();
            assert!(d > 1e-3, "kernels {i} and {j} are equal");
        }
    }
    // same seed, same kernels
    let mut again = Model::new(&net, &Device::Cpu, 11)?;
    train_layerwise(&mut again, &imgs, &cfg)?;
    assert!(same(&weights_of(&again, "Conv1"), &after));
    // checkpoint round trip: weights and adapted thresholds
    let dir = std::env::temp_dir().join(format!("snnc-stdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = checkpoint::weights_path(&dir);
    let meta = checkpoint::Meta {
        epoch: 0,
        seed: 2,
        network: net.name.clone(),
        method: "stdp".into(),
        settings: None,
        ..Default::default()
    };
    checkpoint::save(&path, &model.state()?, &meta)?;
    let (map, meta2) = checkpoint::load(&path)?;
    assert_eq!(meta2, meta);
    let mut loaded = Model::new(&net, &Device::Cpu, 99)?;
    loaded.load(&map)?;
    assert!(same(&weights_of(&loaded, "Conv1"), &after));
    assert_eq!(loaded.thresholds(), model.thresholds());
    std::fs::remove_dir_all(&dir)?;
    // zero images: the random-feature baseline, unchanged
    let mut base = Model::new(&net, &Device::Cpu, 11)?;
    train_layerwise(
        &mut base,
        &imgs,
        &StdpConfig {
            images: 0,
            ..cfg.clone()
        },
    )?;
    assert!(same(&weights_of(&base, "Conv1"), &before));
    Ok(())
}

/// Conv1(1, 4) LIF, 2×2 average pooling, FC1(784, `hidden`) ReLU, FC2(`hidden`, 10): the
/// smallest STDP network with a classifier, T = 6.
fn conv_pool_fc_net(name: &str, hidden: u64) -> Network {
    use snnc::ir::Activation;
    let b = NetBuilder::new(name, Shape::new(1, 28, 28), 6);
    let lif = b.lif();
    b.conv("Conv1", 1, 4, 3, 1, lif)
        .pool(PoolKind::Avg, 2, 2)
        .fc("FC1", 4 * 14 * 14, hidden, Activation::Relu)
        .fc("FC2", hidden, 10, Activation::None)
        .build()
}

#[test]
fn classifier_phase_trains_the_classifier_and_leaves_stdp_weights_unchanged() -> R {
    use snnc::train::driver::TrainConfig;
    let data = data::load(&DataSpec::Embedded, Some(64), Some(32))?;
    let net = conv_pool_fc_net("stdp-cls", 16);
    let cls = snnc::train::stdp::classifier::classifier_network(
        &net,
        snnc::train::stdp::classifier::classifier_boundary(&net)?,
    )?;
    let names: Vec<&str> = cls.weights.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["FC1", "FC2"]);
    let cfg = StdpConfig {
        images: 32,
        batch: 16,
        timesteps: 6,
        seed: 3,
        ..StdpConfig::default()
    };
    // the STDP phase alone, for reference
    let mut stdp_only = Model::new(&net, &Device::Cpu, 8)?;
    let imgs = SplitImages::new(&data.train, data.shape);
    train_layerwise(&mut stdp_only, &imgs, &cfg)?;
    let mut model = Model::new(&net, &Device::Cpu, 8)?;
    let fc1_init = weights_of(&model, "FC1");
    let tc = TrainConfig {
        epochs: 2,
        batch: 16,
        seed: 8,
        ..TrainConfig::default()
    };
    let run = snnc::train::stdp::train(&mut model, &data, &cfg, &tc)?;
    assert_eq!(run.layers.len(), 1);
    let conv = weights_of(&model, "Conv1");
    assert!(same(&conv, &weights_of(&stdp_only, "Conv1")));
    assert_eq!(model.thresholds(), stdp_only.thresholds());
    assert!(!same(&weights_of(&model, "FC1"), &fc1_init));
    let acc = run.classifier.test_accuracy;
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert_eq!(run.classifier.epochs.len(), 2);
    Ok(())
}

#[test]
fn cli_method_stdp_writes_report_kernels_and_checkpoint() -> R {
    let dir = std::env::temp_dir().join(format!("snnc-stdp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("small.snn");
    std::fs::write(
        &file,
        "network Small {\n    input 1x28x28\n    timesteps 6\n    encode poisson\n    method stdp\n\n    \
         Input–Conv1(1,4,3x3/1)–Pool(2x2/2)–FC1(784,16)-ReLU–FC2(16,10)\n}\n",
    )?;
    let run = |images: &str, out: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
            .arg("train")
            .arg(&file)
            .args(["--data", "embedded", "--stdp-images", images])
            .args(["--train-limit", "48", "--test-limit", "32", "--seed", "4"])
            .arg("--out")
            .arg(out)
            .output()
    };
    let out = dir.join("out");
    let o = run("16", &out)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("EE_Conv"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    assert_eq!(report["method"], "stdp");
    assert_eq!(report["stdp_images"], 16);
    assert!(report["stdp"][0]["updates"].as_u64().unwrap() > 0);
    assert_eq!(report["activity"][0]["layer"], "Conv1");
    for k in ["ee_conv", "ee_full"] {
        let v = report[k].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
    // the conv layers are spiking: EE over them alone exceeds EE of the whole network,
    // whose ANN classifier costs the same in both.
    assert!(report["ee_conv"].as_f64() > report["ee_full"].as_f64());
    // wall_s is the whole run: at least its three phases together.
    let phases: f64 = ["stdp", "features", "classifier"]
        .iter()
        .map(|k| report["phase_seconds"][k].as_f64().unwrap())
        .sum();
    let wall = report["wall_s"].as_f64().unwrap();
    assert!(
        wall >= phases && phases > 0.0,
        "wall {wall} s, phases {phases} s"
    );
    // The raster of the first test images: the Poisson input and Conv1's 4×28×28 neurons.
    assert!(
        stdout.contains("spike raster of test images 1–4"),
        "{stdout}"
    );
    let raster = std::fs::read_to_string(out.join("raster.svg"))?;
    assert!(raster.contains("Conv1 (64 of 3136 neurons)"), "{raster}");
    assert!(raster.contains("input (64 of 784 neurons)"), "{raster}");
    let svg = std::fs::read_to_string(out.join("kernels.svg"))?;
    assert!(
        svg.contains("<svg") && svg.contains("4 kernels 3×3"),
        "{svg}"
    );
    let (map, meta) = checkpoint::load(&checkpoint::weights_path(&out))?;
    assert_eq!(meta.method, "stdp");
    assert!(map.contains_key("Conv1") && map.contains_key("FC2"));
    // --resume: the STDP phase is not repeated (kernels as saved), the classifier continues
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("train")
        .arg(&file)
        .args(["--data", "embedded", "--stdp-images", "16", "--resume"])
        .args(["--train-limit", "48", "--test-limit", "32", "--seed", "4"])
        .arg("--out")
        .arg(&out)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["stdp"][0]["updates"], 0);
    let (map2, _) = checkpoint::load(&checkpoint::weights_path(&out))?;
    assert!(same(&map2["Conv1"], &map["Conv1"]));
    assert!(
        !same(&map2["FC1"], &map["FC1"]),
        "the classifier trained on"
    );
    let map = map2;
    // `snnc eval` runs the checkpoint on the step runtime with the declared neurons, as
    // STDP trained it (not as IF, as conversion does)
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("eval")
        .arg(&file)
        .arg("--weights")
        .arg(checkpoint::weights_path(&out))
        .args(["--data", "embedded", "--test-limit", "32"])
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("(stdp, declared neurons, T = 6)"), "{text}");
    // the random-feature baseline: no update, its kernels differ from the learned ones
    let base = dir.join("base");
    let o = run("0", &base)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("report.json"))?)?;
    assert_eq!(report["stdp"][0]["updates"], 0);
    let (bmap, _) = checkpoint::load(&checkpoint::weights_path(&base))?;
    assert!(!same(&bmap["Conv1"], &map["Conv1"]));
    // `[train.stdp]` in a config file sets the constants: with η = 0 (and wide bounds) the
    // kernels stay at their initial values, as with no image at all
    let toml = dir.join("stdp.toml");
    std::fs::write(
        &toml,
        "[train.stdp]\nimages = 16\nparams = { eta = 0.0, w_min = -10.0, w_max = 10.0 }\n",
    )?;
    let frozen = dir.join("frozen");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("train")
        .arg(&file)
        .arg("--config")
        .arg(&toml)
        .args([
            "--data",
            "embedded",
            "--train-limit",
            "48",
            "--test-limit",
            "32",
        ])
        .args(["--seed", "4", "--out"])
        .arg(&frozen)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (fmap, _) = checkpoint::load(&checkpoint::weights_path(&frozen))?;
    assert!(same(&fmap["Conv1"], &bmap["Conv1"]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(frozen.join("report.json"))?)?;
    assert_eq!(report["stdp_images"], 16);
    // a bad constant is a usage error, not a panic
    std::fs::write(&toml, "[train.stdp]\nparams = { tau = -1.0 }\n")?;
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("train")
        .arg(&file)
        .arg("--config")
        .arg(&toml)
        .args(["--data", "embedded", "--train-limit", "8", "--out"])
        .arg(dir.join("bad"))
        .output()?;
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("τ > 0"));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The feature phase runs its batches in parallel, each with its own Poisson stream, and
/// the STDP phase sums each kernel's updates on its own task: the features, the rates and
/// the learned kernels are the same, bit for bit, on 1 and on 3 threads.
#[test]
fn features_and_kernels_do_not_depend_on_the_number_of_threads() -> R {
    let data = data::load(&DataSpec::Embedded, Some(40), Some(0))?;
    let imgs = SplitImages::new(&data.train, data.shape);
    let net = conv_pool_fc_net("stdp-threads", 10);
    let cfg = StdpConfig {
        images: 24,
        batch: 8,
        timesteps: 8,
        seed: 4,
        ..StdpConfig::default()
    };
    // Features, labels, slot rates, learned Conv1 weights.
    type Outcome = (Vec<f32>, Vec<u8>, Vec<f64>, Vec<f32>);
    let run = |threads: usize| -> Result<Outcome, String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        pool.install(|| {
            let mut model = Model::new(&net, &Device::Cpu, 5).map_err(|e| e.to_string())?;
            train_layerwise(&mut model, &imgs, &cfg).map_err(|e| e.to_string())?;
            // 40 images in batches of 8: five batches, run in parallel.
            let (split, rates) =
                snnc::train::stdp::classifier::features(&model, &imgs, 40, 8, 8, 4, 0)
                    .map_err(|e| e.to_string())?;
            let w = weights_of(&model, "Conv1")
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| e.to_string())?;
            Ok((split.images, split.labels, rates, w))
        })
    };
    let one = run(1)?;
    let three = run(3)?;
    assert_eq!(one.0.len(), 40 * 4 * 14 * 14);
    assert!(one.0.iter().any(|&v| v > 0.0), "no feature fired");
    assert_eq!(one, three);
    Ok(())
}
