//! NIR export and import: the α ↔ τ mapping by hand, the exported graph field by field,
//! per-step thresholds, refusals (snapshots), malformed files, the fixtures written by the
//! reference `nir` package, round trips over `networks/`, and (when the venv exists) the
//! reference reader on what snnc writes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use snnc::backend::candle::model::Model;
use snnc::export::nir::format::{NirGraph, NirNode, NumType, Value};
use snnc::export::nir::{self, lif_alpha_gain, lif_params, ExportOptions};
use snnc::import::{self, ImportOptions};
use snnc::ir::{Activation, Network, Op};

fn net(src: &str) -> Network {
    match snnc::compile(src) {
        Ok(mut p) => p.networks.remove(0),
        Err(d) => panic!(
            "unexpected errors:\n{}",
            d.render_text("t.snn", src, 100, false)
        ),
    }
}

fn initial_state(n: &Network) -> HashMap<String, Tensor> {
    Model::new(n, &Device::Cpu, 7).unwrap().state().unwrap()
}

fn export(n: &Network, state: &HashMap<String, Tensor>) -> NirGraph {
    match nir::export(n, state, ExportOptions::default()) {
        Ok((g, _)) => g,
        Err(d) => panic!("{:?}", d.codes()),
    }
}

fn floats(v: &Value) -> (Vec<u64>, Vec<f64>) {
    match v {
        Value::Num { shape, data, .. } => (shape.clone(), data.clone()),
        other => panic!("not numeric: {other:?}"),
    }
}

fn field<'a>(g: &'a NirGraph, node: &str, f: &str) -> &'a Value {
    g.nodes
        .get(node)
        .unwrap_or_else(|| panic!("no node {node}: {:?}", g.nodes.keys()))
        .fields
        .get(f)
        .unwrap_or_else(|| panic!("no field {node}/{f}"))
}

fn tensor_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn alpha_tau_mapping_by_hand() {
    // α = 0.99, dt = 0.1 ms: τ = 1e-4 / 0.01 = 1e-2 s, r = 1 / 0.01 = 100.
    let (tau, r) = lif_params(0.99, 1e-4).unwrap();
    assert!((tau - 1e-2).abs() < 1e-12, "{tau}");
    assert!((r - 100.0).abs() < 1e-9, "{r}");
    // α = 0.9, dt = 1 ms: τ = 1e-3 / 0.1 = 1e-2 s, r = 10.
    let (tau, r) = lif_params(0.9, 1e-3).unwrap();
    assert!((tau - 1e-2).abs() < 1e-12 && (r - 10.0).abs() < 1e-9);
    // And back: α = 1 − dt/τ, gain r·dt/τ = 1.
    let (a, g) = lif_alpha_gain(tau, r, 1e-3);
    assert!((a - 0.9).abs() < 1e-12 && (g - 1.0).abs() < 1e-12);
    // Norse-style r = 1, τ = 10 ms at dt = 1 ms: α = 0.9 and the input gain is 0.1.
    let (a, g) = lif_alpha_gain(1e-2, 1.0, 1e-3);
    assert!((a - 0.9).abs() < 1e-12 && (g - 0.1).abs() < 1e-12);
    // No leak is IF, not LIF.
    assert!(lif_params(1.0, 1e-4).is_none());
    assert!(lif_params(0.0, 1e-4).is_none());
}

const SMALL: &str = "network Small {
    input 1x8x8
    timesteps 4
    encode poisson
    Conv1(1,2,3x3/1) LIF(leak=0.95, threshold=0.5, reset=subtract)
    Pool(2x2/2)
    FC1(32,3)
}";

#[test]
fn export_writes_every_field() {
    let n = net(SMALL);
    let state = initial_state(&n);
    let (g, warnings) = nir::export(&n, &state, ExportOptions { dt: 1e-3 }).unwrap();
    assert_eq!(warnings.codes(), vec!["snnc::nir::reset_subtract"]);
    let mut edges = g.edges.clone();
    edges.sort();
    let want: Vec<(String, String)> = [
        ("Conv1", "Conv1_lif"),
        ("Conv1_lif", "Pool1"),
        ("FC1", "output"),
        ("FC1_flatten", "FC1"),
        ("Pool1", "FC1_flatten"),
        ("input", "Conv1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(edges, want);
    assert_eq!(floats(field(&g, "input", "shape")).1, vec![1.0, 8.0, 8.0]);
    let (ws, wd) = floats(field(&g, "Conv1", "weight"));
    assert_eq!(ws, vec![2, 1, 3, 3]);
    let orig: Vec<f64> = tensor_vec(&state["Conv1"])
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert_eq!(wd, orig);
    assert_eq!(floats(field(&g, "Conv1", "padding")).1, vec![1.0, 1.0]);
    assert_eq!(floats(field(&g, "Conv1", "input_shape")).1, vec![8.0, 8.0]);
    assert_eq!(floats(field(&g, "Conv1", "bias")).1, vec![0.0, 0.0]);
    // τ = dt/(1−α) = 1e-3/0.05 = 0.02 s (α is the f32 0.95), r = 20, one per neuron.
    let (ts, td) = floats(field(&g, "Conv1_lif", "tau"));
    assert_eq!(ts, vec![2, 8, 8]);
    assert!(td.iter().all(|&t| (t - 0.02).abs() < 1e-8), "{}", td[0]);
    let (_, rd) = floats(field(&g, "Conv1_lif", "r"));
    assert!(rd.iter().all(|&r| (r - 20.0).abs() < 1e-5));
    assert!(floats(field(&g, "Conv1_lif", "v_threshold"))
        .1
        .iter()
        .all(|&v| v == 0.5));
    assert!(floats(field(&g, "Conv1_lif", "v_leak"))
        .1
        .iter()
        .all(|&v| v == 0.0));
    assert_eq!(
        g.nodes["Conv1_lif"].metadata["reset"].as_text(),
        Some("subtract")
    );
    assert_eq!(g.nodes["Pool1"].kind, "AvgPool2d");
    assert_eq!(floats(field(&g, "Pool1", "kernel_size")).1, vec![2.0, 2.0]);
    assert_eq!(
        floats(field(&g, "FC1_flatten", "input_type")).1,
        vec![2.0, 4.0, 4.0]
    );
    assert_eq!(floats(field(&g, "FC1", "weight")).0, vec![3, 32]);
    assert_eq!(floats(field(&g, "output", "shape")).1, vec![3.0]);
    assert_eq!(g.metadata["dt"].as_f64(), Some(1e-3));
    assert_eq!(g.metadata["timesteps"].as_f64(), Some(4.0));
    assert_eq!(g.metadata["encode"].as_text(), Some("poisson"));
    // The HDF5 bytes read back to the same graph.
    let back = NirGraph::from_hdf5(g.to_hdf5().unwrap()).unwrap();
    assert_eq!(back.nodes, g.nodes);
    assert_eq!(back.edges, g.edges);
}

#[test]
fn if_neurons_get_r_one_over_dt() {
    let n =
        net("network I { input 1x4x4; Conv1(1,1,3x3/1) IF(threshold=2, reset=zero); FC1(16,2) }");
    let state = initial_state(&n);
    let (g, warnings) = nir::export(&n, &state, ExportOptions { dt: 1e-4 }).unwrap();
    assert!(warnings.is_empty(), "{:?}", warnings.codes());
    assert_eq!(g.nodes["Conv1_if"].kind, "IF");
    assert!(floats(field(&g, "Conv1_if", "r"))
        .1
        .iter()
        .all(|&r| (r - 1e4).abs() < 1e-6));
    assert!(floats(field(&g, "Conv1_if", "v_threshold"))
        .1
        .iter()
        .all(|&v| v == 2.0));
}

const BACKRES: &str = "network B {
    input 1x8x8
    timesteps 3
    Conv1(1,2,3x3/1) LIF
    Conv2(2,2,3x3/1) x3 LIF
    FC1(128,4)
}";

#[test]
fn per_step_thresholds_and_shared_weights_round_trip() {
    let n = net(BACKRES);
    let mut state = initial_state(&n);
    for (step, v) in [(1, 0.7f32), (2, 1.3), (3, 0.25)] {
        state.insert(
            format!("threshold.Conv2.{step}"),
            Tensor::new(&[v], &Device::Cpu).unwrap(),
        );
    }
    let g = export(&n, &state);
    // One node chain per unroll step, each with a copy of the shared weights.
    let w1 = floats(field(&g, "Conv2@1", "weight")).1;
    assert_eq!(w1, floats(field(&g, "Conv2@3", "weight")).1);
    for (node, v) in [
        ("Conv2@1_lif", 0.7),
        ("Conv2@2_lif", 1.3),
        ("Conv2@3_lif", 0.25),
    ] {
        let th = floats(field(&g, node, "v_threshold")).1;
        assert!(
            th.iter().all(|&x| (x - v).abs() < 1e-7),
            "{node}: {}",
            th[0]
        );
    }
    let bytes = g.to_hdf5().unwrap();
    let imp = import::import_bytes(bytes, &ImportOptions::default()).unwrap();
    assert!(
        imp.source
            .contains("Conv2(2,2,3x3/1, pad=1) x3 LIF(leak=0.99"),
        "{}",
        imp.source
    );
    for (step, v) in [(1, 0.7f32), (2, 1.3), (3, 0.25)] {
        let t = &imp.tensors[&format!("threshold.Conv2.{step}")];
        assert_eq!(tensor_vec(t), vec![v]);
    }
    assert_eq!(
        tensor_vec(&imp.tensors["Conv2"]),
        tensor_vec(&state["Conv2"])
    );
    let back = net(&imp.source);
    assert_eq!(back.unique_params(), n.unique_params());
    assert_eq!(back.thresholds.len(), 4);
}

fn refusal(src: &str) -> String {
    let n = net(src);
    let state = initial_state(&n);
    match nir::export(&n, &state, ExportOptions::default()) {
        Ok(_) => panic!("exported"),
        Err(d) => {
            assert!(d.codes().iter().all(|c| c == "snnc::nir::unsupported"));
            d.render_text("t.snn", src, 100, false)
        }
    }
}

#[test]
fn refuses_concat_skips() {
    insta::assert_snapshot!(refusal(
        "network R {
    input 1x8x8
    Conv1(1,2,3x3/1) LIF
    Conv2(2,2,3x3/1) LIF
    FC1(256,2)
    skip Conv1 -> FC1 concat
}"
    ));
}

#[test]
fn refuses_relu_layers() {
    insta::assert_snapshot!(refusal(
        "network H {
    input 1x8x8
    Conv1(1,2,3x3/1) ReLU
    Conv2(2,2,3x3/1) LIF
    FC1(128,2)
}"
    ));
}

#[test]
fn refuses_stochmax() {
    insta::assert_snapshot!(refusal(
        "network S {
    input 1x8x8
    Conv1(1,2,3x3/1) LIF
    FC1(128,2)
    stochmax
}"
    ));
}

#[test]
fn refuses_max_pooling() {
    insta::assert_snapshot!(refusal(
        "network M {
    input 1x8x8
    Conv1(1,2,3x3/1) LIF
    MaxPool(2x2/2)
    FC1(32,2)
}"
    ));
}

const ADD: &str = "network A {
    input 1x8x8
    neuron IF(threshold=1, reset=zero)
    Conv1(1,2,3x3/1)
    Conv2(2,2,3x3/1)
    Pool(2x2/2)
    Conv3(2,2,3x3/1)
    FC1(32,2)
    skip Conv1 -> Conv3 add
}";

#[test]
fn add_skips_become_edges_into_one_node() {
    let n = net(ADD);
    let state = initial_state(&n);
    let g = export(&n, &state);
    let mut into: Vec<&str> = g
        .edges
        .iter()
        .filter(|(_, b)| b == "Conv3")
        .map(|(a, _)| a.as_str())
        .collect();
    into.sort();
    // The pool between Conv1 and Conv3 is applied on the skip path too.
    assert_eq!(into, vec!["Pool1", "Pool1_skip"]);
    // Import folds the branch back into the skip (the pool copy is implicit again).
    let imp = import::import_graph(&g, &ImportOptions::default()).unwrap();
    assert!(
        imp.source.contains("    skip Conv1 -> Conv3 add\n"),
        "{}",
        imp.source
    );
    let back = net(&imp.source);
    assert_eq!(structure(&back), structure(&n));
    assert_eq!(
        tensor_vec(&imp.tensors["Conv3"]),
        tensor_vec(&state["Conv3"])
    );
}

/// Networks with `add` skips (none under networks/ has one: the paper's skips concatenate),
/// all 1×28×28 so that they run on the embedded test images.
const ADD_NETS: [&str; 3] = [
    // A skip over a pool: the pool is copied onto the skip path.
    "network AddPool {
    input 1x28x28
    timesteps 4
    neuron IF(threshold=0.5, reset=zero)
    Conv1(1,4,3x3/1, pad=1)
    Conv2(4,4,3x3/1, pad=1)
    Pool(2x2/2)
    Conv3(4,4,3x3/1, pad=1)
    Pool(2x2/2)
    FC1(196,10)
    skip Conv1 -> Conv3 add
}",
    // BackRes: a skip over a repeated layer, one from its last application into an FC (a
    // feature map added before the flatten), Poisson input.
    "network AddBackRes {
    input 1x28x28
    timesteps 4
    encode poisson
    neuron LIF(leak=0.9, threshold=0.5, reset=subtract)
    Conv1(1,4,3x3/2, pad=1)
    Conv2(4,4,3x3/1, pad=1) x2
    Conv3(4,4,3x3/1, pad=1)
    Pool(2x2/2)
    FC1(196,10)
    skip Conv1 -> Conv3 add
    skip Conv2 -> FC1 add
}",
    // From the Input, two skips into one layer, and FC → FC.
    "network AddInput {
    input 1x28x28
    timesteps 3
    neuron LIF(leak=0.8, threshold=0.5, reset=zero)
    Conv1(1,1,3x3/1, pad=1)
    Conv2(1,1,3x3/1, pad=1)
    Conv3(1,2,3x3/2, pad=1)
    FC1(392,16)
    FC2(16,16)
    FC3(16,10)
    skip Input -> Conv3 add
    skip Conv1 -> Conv3 add
    skip FC1 -> FC3 add
}",
];

/// The graph modulo node names: each node's type, fields and metadata, and per node the
/// types of the nodes feeding it (sorted).
fn graph_modulo_names(g: &NirGraph) -> Vec<String> {
    let mut out: Vec<String> = g
        .nodes
        .iter()
        .map(|(name, n)| {
            let mut ins: Vec<&str> = g
                .edges
                .iter()
                .filter(|(_, b)| b == name)
                .map(|(a, _)| g.nodes[a].kind.as_str())
                .collect();
            ins.sort();
            format!("{} {:?} {:?} <- {ins:?}", n.kind, n.fields, n.metadata)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn add_skip_networks_round_trip_export_import_export() {
    for src in ADD_NETS {
        let n = net(src);
        let state = initial_state(&n);
        let g = export(&n, &state);
        assert!(
            g.nodes.keys().any(|k| k.ends_with("_skip")) || src.contains("Input ->"),
            "{}",
            n.name
        );
        let imp = import::import_bytes(g.to_hdf5().unwrap(), &ImportOptions::default())
            .unwrap_or_else(|d| panic!("{}: {:?}", n.name, d.codes()));
        let back = net(&imp.source);
        assert_eq!(
            structure(&back),
            structure(&n),
            "{}:\n{}",
            n.name,
            imp.source
        );
        assert_eq!(back.unique_params(), n.unique_params());
        // Export again: the same graph but for names.
        let g2 = export(&back, &imp.tensors);
        assert_eq!(g2.edges.len(), g.edges.len(), "{}", n.name);
        assert_eq!(
            graph_modulo_names(&g2),
            graph_modulo_names(&g),
            "{}",
            n.name
        );
        // And the same predictions image by image.
        let method = if src.contains("IF(") {
            "conversion"
        } else {
            "agd"
        };
        same_predictions(&n, &state, &back, &imp.tensors, method);
    }
}

/// A graph to break: Input → Conv → IF → {Conv → IF → pool, pool (skip)} → Linear.
fn skip_graph() -> NirGraph {
    let n = net(ADD_NETS[0]);
    export(&n, &initial_state(&n))
}

#[test]
fn skips_snnc_cannot_write_are_located_refusals() {
    let mut seen = Vec::new();
    let mut import_err = |g: &NirGraph| {
        let (code, msg) = import_err(g);
        seen.push(format!("{code}: {msg}"));
        (code, msg)
    };
    // A skip path without the main path's pool: its shape differs and it holds no copy.
    let mut g = skip_graph();
    let skip_pool = g
        .nodes
        .keys()
        .find(|k| k.ends_with("_skip"))
        .unwrap()
        .clone();
    let (from, _) = g.edges.iter().find(|e| e.1 == skip_pool).unwrap().clone();
    g.edges.retain(|e| e.1 != skip_pool && e.0 != skip_pool);
    g.nodes.remove(&skip_pool);
    g.edges.push((from.clone(), "Conv3".into()));
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::structure", "{msg}");
    assert!(
        msg.contains("pools none but the main path between them pools 2x2/2"),
        "{msg}"
    );
    // A sum into a neuron rather than a layer's input.
    let mut g = skip_graph();
    g.edges.push(("Conv1_if".into(), "Conv3_if".into()));
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::structure", "{msg}");
    assert!(
        msg.contains("several edges go into `Conv3_if` (IF)"),
        "{msg}"
    );
    // A skip that starts before the neuron (at the convolution's current).
    let mut g = skip_graph();
    for e in g.edges.iter_mut() {
        if e.1 == skip_pool {
            e.0 = "Conv1".into();
        }
    }
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::structure", "{msg}");
    assert!(msg.contains("before the layer's neuron"), "{msg}");
    // A skip path with something other than a pool on it.
    let mut g = skip_graph();
    g.nodes.get_mut(&skip_pool).unwrap().kind = "Scale".into();
    g.nodes
        .get_mut(&skip_pool)
        .unwrap()
        .fields
        .insert("scale".into(), Value::filled(&[4, 28, 28], 1.0));
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::unsupported", "{msg}");
    assert!(msg.contains("it lies on a skip path"), "{msg}");
    // A fork off the main path.
    let mut g = skip_graph();
    g.nodes.insert(
        "dangling".into(),
        NirNode::new("AvgPool2d")
            .field("kernel_size", Value::ints(&[2, 2]))
            .field("stride", Value::ints(&[2, 2])),
    );
    g.edges.push((skip_pool.clone(), "dangling".into()));
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::structure", "{msg}");
    assert!(
        msg.contains("not on the path from the Input to the Output"),
        "{msg}"
    );
    // A residual around the second application of a shared layer: snnc joins skips before
    // a layer's first application only.
    let n = net("network R {
    input 1x8x8
    neuron IF(threshold=1, reset=zero)
    Conv1(1,2,3x3/1, pad=1)
    Conv2(2,2,3x3/1, pad=1) x2
    FC1(128,2)
}");
    let mut g = export(&n, &initial_state(&n));
    g.edges.push(("Conv1_if".into(), "Conv2@2".into()));
    let (code, msg) = import_err(&g);
    assert_eq!(code, "snnc::nir::structure", "{msg}");
    assert!(
        msg.contains("a later application of the shared weights `Conv2`"),
        "{msg}"
    );
    insta::assert_snapshot!(seen.join("\n"));
    // On the command line: exit 1 with the code.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.nir");
    std::fs::write(&path, g.to_hdf5().unwrap()).unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("import")
        .arg(&path)
        .arg("-o")
        .arg(dir.path().join("r.snn"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).contains("snnc::nir::structure"));
}

// ---- per-image predictions of the original and the round-tripped network ---------------

/// Records the spike count of every spiking application, in call order.
#[derive(Default)]
struct SpikeCounts(Vec<f32>);

impl snnc::backend::candle::observe::Observer for SpikeCounts {
    fn spikes(
        &mut self,
        _app: &snnc::backend::candle::observe::Application,
        spikes: &Tensor,
    ) -> candle_core::Result<()> {
        self.0.push(spikes.sum_all()?.to_scalar::<f32>()?);
        Ok(())
    }
}

/// Per-image predictions, eval logits (`[B, K]`, row-major) and spike counts per spiking
/// application of `n` with `tensors` on the first `images` embedded test images, T = 4
/// (short, to keep the test quick), Poisson noise from seed 11.
fn run_images(
    n: &Network,
    tensors: &HashMap<String, Tensor>,
    method: &str,
    images: usize,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    use snnc::backend::candle::model::{rng_for, ForwardOptions};
    let mut m = Model::new(n, &Device::Cpu, 0).unwrap();
    m.load(tensors).unwrap();
    let data = snnc::data::load(&snnc::data::DataSpec::Embedded, Some(0), Some(images)).unwrap();
    let [c, h, w] = data.shape;
    let x = Tensor::from_vec(data.test.images.clone(), (images, c, h, w), &Device::Cpu).unwrap();
    let t = 4;
    let opts = if method == "conversion" {
        ForwardOptions::if_conversion(t)
    } else {
        ForwardOptions::snn(t, false)
    };
    let mut obs = SpikeCounts::default();
    let out = m
        .forward_observed(&x, &opts, &mut rng_for(11, 3), &mut obs)
        .unwrap();
    let logits = m.eval_logits(&out).unwrap();
    let pred = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    (pred, tensor_vec(&logits), obs.0)
}

/// The original and the round-tripped network agree image by image: the same predictions,
/// bit-identical logits and the same spike count in every application. The network must
/// do something (spikes, and more than one predicted class), or the test would be vacuous.
fn same_predictions(
    a: &Network,
    ta: &HashMap<String, Tensor>,
    b: &Network,
    tb: &HashMap<String, Tensor>,
    method: &str,
) {
    let (pa, la, sa) = run_images(a, ta, method, 64);
    let (pb, lb, sb) = run_images(b, tb, method, 64);
    assert_eq!(pa.len(), 64);
    assert_eq!(pa, pb, "{}: predictions", a.name);
    assert_eq!(la, lb, "{}: logits", a.name);
    assert_eq!(sa, sb, "{}: spike counts", a.name);
    assert!(sa.iter().sum::<f32>() > 0.0, "{}: no spikes at all", a.name);
    let classes: HashSet<u32> = pa.iter().copied().collect();
    assert!(classes.len() > 1, "{}: one class for every image", a.name);
}

#[test]
fn round_tripped_networks_predict_the_same_per_image() {
    for (file, method) in [
        ("fashion-mnist/agd/backres.snn", "agd"),
        ("fashion-mnist/agd/convnet.snn", "agd"),
        ("fashion-mnist/conversion/vgg-backres.snn", "conversion"),
    ] {
        let n = net(&std::fs::read_to_string(root().join("networks").join(file)).unwrap());
        // Seeded initial weights stand in for trained ones; thresholds of 0.5 give activity.
        let mut state = initial_state(&n);
        for v in state.values_mut() {
            if v.dims() == [1] {
                *v = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
            }
        }
        let g = export(&n, &state);
        let imp = import::import_bytes(g.to_hdf5().unwrap(), &ImportOptions::default()).unwrap();
        let back = net(&imp.source);
        same_predictions(&n, &state, &back, &imp.tensors, method);
    }
}

// ---- malformed files -------------------------------------------------------------------

/// A valid snnTorch-style graph to break in the tests below.
fn base() -> NirGraph {
    let lif = |n: u64| {
        NirNode::new("LIF")
            .field("tau", Value::filled(&[n], 1e-3))
            .field("r", Value::filled(&[n], 10.0))
            .field("v_leak", Value::filled(&[n], 0.0))
            .field("v_threshold", Value::filled(&[n], 1.0))
    };
    let mut g = NirGraph::default();
    g.nodes.insert(
        "in".into(),
        NirNode::new("Input").field("shape", Value::ints(&[4])),
    );
    g.nodes.insert(
        "fc".into(),
        NirNode::new("Affine")
            .field("weight", Value::f32s(&[3, 4], &[0.5; 12]))
            .field("bias", Value::f32s(&[3], &[0.0; 3])),
    );
    g.nodes.insert("lif".into(), lif(3));
    g.nodes.insert(
        "out".into(),
        NirNode::new("Output").field("shape", Value::ints(&[3])),
    );
    for (a, b) in [("in", "fc"), ("fc", "lif"), ("lif", "out")] {
        g.edges.push((a.into(), b.into()));
    }
    g
}

fn import_err(g: &NirGraph) -> (String, String) {
    let bytes = g.to_hdf5().unwrap();
    match import::import_bytes(bytes, &ImportOptions::default()) {
        Ok(i) => panic!("imported:\n{}", i.source),
        Err(d) => {
            let code = d.codes().join(",");
            let msg = d.iter().map(|x| x.message()).collect::<Vec<_>>().join("\n");
            (code, msg)
        }
    }
}

#[test]
fn the_base_graph_imports() {
    let imp = import::import_bytes(base().to_hdf5().unwrap(), &ImportOptions::default()).unwrap();
    // τ = 1 ms at dt = 0.1 ms: α = 0.9; gain r·dt/τ = 10·1e-4/1e-3 = 1.
    assert!(
        imp.source
            .contains("FC1(4,3) LIF(leak=0.9, threshold=1, reset=zero)"),
        "{}",
        imp.source
    );
    assert_eq!(tensor_vec(&imp.tensors["FC1"]), vec![0.5; 12]);
}

/// (what, how to break the base graph, the code, a part of the message).
type Case = (
    &'static str,
    Box<dyn Fn(&mut NirGraph)>,
    &'static str,
    &'static str,
);

#[test]
fn malformed_files_are_located_diagnostics() {
    let cases: Vec<Case> = vec![
        (
            "unknown type",
            Box::new(|g| g.nodes.get_mut("lif").unwrap().kind = "Sigmoid".into()),
            "snnc::nir::unknown_type",
            "node `lif` has type `Sigmoid`",
        ),
        (
            "missing field",
            Box::new(|g| {
                g.nodes.get_mut("lif").unwrap().fields.remove("tau");
            }),
            "snnc::nir::missing_field",
            "node `lif` has no field `tau`",
        ),
        (
            "scalar parameter",
            Box::new(|g| {
                g.nodes
                    .get_mut("lif")
                    .unwrap()
                    .fields
                    .insert("tau".into(), Value::scalar(1e-3));
            }),
            "snnc::nir::shape_mismatch",
            "node `lif`, field `tau`: expected shape [3], found a scalar",
        ),
        (
            "weight shape",
            Box::new(|g| {
                g.nodes
                    .get_mut("fc")
                    .unwrap()
                    .fields
                    .insert("weight".into(), Value::f32s(&[3, 5], &[0.5; 15]));
            }),
            "snnc::nir::shape_mismatch",
            "node `fc`, field `weight`: expected 4 inputs (what reaches it: [4]), found 5",
        ),
        (
            "string weights",
            Box::new(|g| {
                g.nodes
                    .get_mut("fc")
                    .unwrap()
                    .fields
                    .insert("weight".into(), Value::text("w"));
            }),
            "snnc::nir::field_type",
            "node `fc`, field `weight`: expected a 2-D array (out, in), found a string",
        ),
        (
            "bias",
            Box::new(|g| {
                g.nodes
                    .get_mut("fc")
                    .unwrap()
                    .fields
                    .insert("bias".into(), Value::f32s(&[3], &[0.0, 1.0, 0.0]));
            }),
            "snnc::nir::unsupported_value",
            "node `fc`, field `bias`: is not zero",
        ),
        (
            "non-uniform threshold",
            Box::new(|g| {
                g.nodes.get_mut("lif").unwrap().fields.insert(
                    "v_threshold".into(),
                    Value::Num {
                        shape: vec![3],
                        data: vec![1.0, 2.0, 1.0],
                        ty: NumType::F64,
                    },
                );
            }),
            "snnc::nir::unsupported_value",
            "node `lif`, field `v_threshold`: differs between neurons",
        ),
        (
            "NaN",
            Box::new(|g| {
                g.nodes
                    .get_mut("lif")
                    .unwrap()
                    .fields
                    .insert("tau".into(), Value::filled(&[3], f64::NAN));
            }),
            "snnc::nir::unsupported_value",
            "node `lif`, field `tau`: holds NaN",
        ),
        (
            "edge to nowhere",
            Box::new(|g| g.edges.push(("lif".into(), "ghost".into()))),
            "snnc::nir::structure",
            "names `ghost`, which is not a node",
        ),
        (
            "cycle",
            Box::new(|g| {
                g.edges.retain(|e| e.1 != "out");
                g.edges.push(("lif".into(), "fc".into()));
            }),
            "snnc::nir::structure",
            "the graph has a cycle",
        ),
        (
            "no output",
            Box::new(|g| {
                g.nodes.remove("out");
                g.edges.retain(|e| e.1 != "out");
            }),
            "snnc::nir::structure",
            "the graph has 0 Output nodes",
        ),
        (
            "tau shorter than dt",
            Box::new(|g| {
                g.nodes
                    .get_mut("lif")
                    .unwrap()
                    .fields
                    .insert("tau".into(), Value::filled(&[3], 1e-5));
            }),
            "snnc::nir::unsupported_value",
            "node `lif`, field `tau`: τ = 0.00001 s is not longer than dt",
        ),
        (
            "unsupported neuron",
            Box::new(|g| g.nodes.get_mut("lif").unwrap().kind = "CubaLIF".into()),
            "snnc::nir::unsupported",
            "node `lif` (CubaLIF) cannot be imported",
        ),
    ];
    for (what, change, code, msg) in cases {
        let mut g = base();
        change(&mut g);
        let (c, m) = import_err(&g);
        assert_eq!(c, code, "{what}: {m}");
        assert!(m.contains(msg), "{what}: `{m}` lacks `{msg}`");
    }
}

#[test]
fn files_that_are_not_nir_are_diagnostics() {
    for bytes in [
        Vec::new(),
        b"not an hdf5 file at all".to_vec(),
        // An HDF5 signature followed by garbage.
        [b"\x89HDF\r\n\x1a\n".as_slice(), &[0xffu8; 64]].concat(),
    ] {
        let d = import::import_bytes(bytes, &ImportOptions::default()).unwrap_err();
        assert_eq!(d.codes(), vec!["snnc::nir::malformed"]);
    }
    // Valid HDF5 without `/node`: truncating a real file, and a file of something else.
    let g = base().to_hdf5().unwrap();
    let cut = g[..g.len() / 2].to_vec();
    let d = import::import_bytes(cut, &ImportOptions::default()).unwrap_err();
    assert_eq!(d.codes(), vec!["snnc::nir::malformed"]);
}

// ---- fixtures written by the reference package ----------------------------------------

fn fixture(name: &str, dt: f64) -> import::Imported {
    let bytes = std::fs::read(root().join("tests/fixtures/nir").join(name)).unwrap();
    match import::import_bytes(bytes, &ImportOptions { dt, name: None }) {
        Ok(i) => i,
        Err(d) => panic!(
            "{name}: {:?}",
            d.iter().map(|x| x.message()).collect::<Vec<_>>()
        ),
    }
}

/// The fixtures' weights: w[i] = ((i mod 7) − 3) / 10.
fn pattern(n: usize) -> Vec<f32> {
    (0..n).map(|i| (((i % 7) as f32) - 3.0) / 10.0).collect()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn imports_the_snntorch_fixture() {
    let imp = fixture("snntorch_affine_lif.nir", 1e-4);
    let n = net(&imp.source);
    // β = 0.9 at dt = 1e-4: τ = 1e-3, r = τ/dt = 10 → α = 0.9, gain 1.
    assert!(
        imp.source
            .contains("FC1(16,8) LIF(leak=0.9, threshold=1, reset=zero)"),
        "{}",
        imp.source
    );
    assert!(
        imp.source.contains("FC2(8,4) LIF(leak=0.9"),
        "{}",
        imp.source
    );
    assert_eq!(n.unique_params(), Some(16 * 8 + 8 * 4));
    close(&tensor_vec(&imp.tensors["FC1"]), &pattern(128));
    // The last layer spikes (snnTorch's output is spikes): its activation is kept.
    assert!(n.graph[n.output].is_spiking());
}

#[test]
fn imports_the_sinabs_fixture() {
    // Sinabs' IF adds its input once per step: r = 1 with dt = 1.
    let imp = fixture("sinabs_conv_if_sumpool.nir", 1.0);
    let n = net(&imp.source);
    assert!(
        imp.source
            .contains("Conv1(1,4,3x3/1, pad=1) IF(threshold=1, reset=zero)"),
        "{}",
        imp.source
    );
    assert!(imp.source.contains("Pool(2x2/2)"));
    assert!(imp.source.contains("FC1(64,10)\n"), "{}", imp.source);
    close(&tensor_vec(&imp.tensors["Conv1"]), &pattern(36));
    // SumPool2d = 4 × average pooling: the 4 is folded into Conv2's weights.
    let want: Vec<f32> = pattern(144).iter().map(|w| 4.0 * w).collect();
    close(&tensor_vec(&imp.tensors["Conv2"]), &want);
    assert_eq!(n.unique_params(), Some(36 + 144 + 640));
}

#[test]
fn imports_the_norse_fixture() {
    let imp = fixture("norse_conv_lif_scale.nir", 1e-3);
    let n = net(&imp.source);
    // τ = 10 ms, dt = 1 ms: α = 0.9; r = 1 → input gain dt/τ = 0.1 folded into the weights.
    assert!(
        imp.source
            .contains("Conv1(1,2,3x3/1, pad=0) LIF(leak=0.9, threshold=0.5, reset=zero)"),
        "{}",
        imp.source
    );
    let want: Vec<f32> = pattern(18).iter().map(|w| 0.1 * w).collect();
    close(&tensor_vec(&imp.tensors["Conv1"]), &want);
    // SumPool2d + Scale(1/4) is average pooling: FC1 keeps gain 0.1 only.
    let want: Vec<f32> = pattern(24).iter().map(|w| 0.1 * w).collect();
    close(&tensor_vec(&imp.tensors["FC1"]), &want);
    assert_eq!(n.thresholds.len(), 2);
}

// ---- round trips over networks/ -----------------------------------------------------------

/// The IR modulo names: per node in topological order its operation (weights by signature),
/// step, activation, shape and domain; dropout (inference-free) left out.
fn structure(n: &Network) -> Vec<String> {
    n.topo_order()
        .into_iter()
        .map(|ix| &n.graph[ix])
        .filter(|x| !matches!(x.op, Op::Dropout { .. }))
        .map(|x| {
            let op = match &x.op {
                Op::Conv { weights } | Op::Fc { weights } => {
                    format!("{:?}", n.weights[weights.0].kind)
                }
                Op::Pool {
                    kind,
                    window,
                    stride,
                } => format!("pool {kind:?} {window}/{stride}"),
                other => format!("{other:?}"),
            };
            let act = match x.activation {
                Activation::Spiking(s) => format!("{:?} {} {:?}", s.kind, s.leak, s.reset),
                other => format!("{other:?}"),
            };
            format!(
                "{op} step {} {act} {:?} {:?}",
                x.step, x.out_shape, x.domain
            )
        })
        .collect()
}

fn snn_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            snn_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "snn") {
            out.push(p);
        }
    }
}

/// Networks too large to build initial weights for in a test (ImageNet VGGs).
const MAX_PARAMS: u64 = 20_000_000;

#[test]
fn round_trip_every_representable_network() {
    let mut files = Vec::new();
    snn_files(&root().join("networks"), &mut files);
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let mut skipped = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let rel = f
            .strip_prefix(root().join("networks"))
            .unwrap()
            .display()
            .to_string();
        for n in snnc::compile(&src).unwrap().networks {
            if n.unique_params().unwrap_or(u64::MAX) > MAX_PARAMS {
                // Refusals need no weights: export without any tells them apart.
                let codes = match nir::export(&n, &HashMap::new(), ExportOptions::default()) {
                    Ok(_) => vec![],
                    Err(d) => d.codes(),
                };
                if codes.iter().any(|c| c == "snnc::nir::unsupported") {
                    refused.push(rel.clone());
                } else {
                    skipped.push(rel.clone());
                }
                continue;
            }
            let state = initial_state(&n);
            let g = match nir::export(&n, &state, ExportOptions::default()) {
                Ok((g, _)) => g,
                Err(d) => {
                    assert!(
                        d.codes().iter().all(|c| c == "snnc::nir::unsupported"),
                        "{rel}"
                    );
                    refused.push(rel.clone());
                    continue;
                }
            };
            let imp = import::import_bytes(g.to_hdf5().unwrap(), &ImportOptions::default())
                .unwrap_or_else(|d| {
                    panic!(
                        "{rel}: {:?}",
                        d.iter().map(|x| x.message()).collect::<Vec<_>>()
                    )
                });
            let back = net(&imp.source);
            assert_eq!(structure(&back), structure(&n), "{rel}");
            assert_eq!(back.unique_params(), n.unique_params(), "{rel}");
            assert_eq!(back.weights.len(), n.weights.len(), "{rel}");
            assert_eq!(back.settings.timesteps, n.settings.timesteps, "{rel}");
            assert_eq!(back.settings.encode, n.settings.encode, "{rel}");
            // Export again: the same graph but for node names.
            let g2 = nir::export(&back, &imp.tensors, ExportOptions::default())
                .unwrap_or_else(|d| panic!("{rel}: re-export: {:?}", d.codes()))
                .0;
            assert_eq!(graph_modulo_names(&g2), graph_modulo_names(&g), "{rel}");
            assert_eq!(g2.edges.len(), g.edges.len(), "{rel}");
            // Same weights per weight set (in order of first use) and thresholds per slot.
            for (a, b) in n.weights.iter().zip(&back.weights) {
                assert_eq!(
                    tensor_vec(&state[&a.name]),
                    tensor_vec(&imp.tensors[&b.name]),
                    "{rel} {}",
                    a.name
                );
            }
            done.push(rel.clone());
        }
    }
    eprintln!(
        "round trip: {done:?}\nrefused: {refused:?}\nskipped (> {MAX_PARAMS} params): {skipped:?}"
    );
    let mut want_refused = vec![
        "cifar10/agd/vgg3-stochmax.snn",
        "cifar10/hybrid/vgg8x2.snn",
        "cifar10/hybrid/vgg9.snn",
        "cifar10/stdp/convnn-resnet2.snn",
        "cifar10/stdp/convnn-resnet3.snn",
        "cifar10/stdp/resnet2.snn",
        "cifar10/stdp/resnet2x2.snn",
        "cifar10/stdp/resnet3.snn",
        "fashion-mnist/agd/convnet-stochmax.snn",
        // The STDP networks (Table VII/XII/XIII) have concat skips and ReLU classifiers.
        "fashion-mnist/stdp/convnn-resnet2.snn",
        "fashion-mnist/stdp/convnn-resnet2x2.snn",
        "fashion-mnist/stdp/resnet2.snn",
        "fashion-mnist/stdp/resnet2x2.snn",
        "fashion-mnist/stdp/resnet3.snn",
        "imagenet/hybrid/vgg13.snn",
    ];
    want_refused.sort();
    refused.sort();
    assert_eq!(refused, want_refused);
    assert!(done.len() >= 10, "{done:?}");
}

// ---- the reference reader on snnc's output ------------------------------------------------

fn python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "note: skipped: no .venv with the `nir` package (see tests/fixtures/nir/README.md)"
        );
        None
    }
}

#[test]
fn the_reference_package_reads_what_snnc_writes() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, src) in [
        ("small", SMALL),
        ("backres", BACKRES),
        ("add", ADD),
        ("add_backres", ADD_NETS[1]),
        ("add_input", ADD_NETS[2]),
    ] {
        let n = net(src);
        let g = export(&n, &initial_state(&n));
        let path = dir.path().join(format!("{name}.nir"));
        std::fs::write(&path, g.to_hdf5().unwrap()).unwrap();
        let out = std::process::Command::new(&py)
            .arg(root().join("tests/fixtures/nir/check_export.py"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (node, nn) in &g.nodes {
            assert_eq!(v["nodes"][node]["type"], nn.kind.as_str(), "{name}/{node}");
            for (f, val) in &nn.fields {
                if let Value::Num { shape, .. } = val {
                    if shape.is_empty() {
                        continue;
                    }
                    let got: Vec<u64> = v["nodes"][node]["fields"][f]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                        .unwrap_or_default();
                    // The reference package normalises pairs; compare where it keeps arrays.
                    if !got.is_empty() {
                        assert_eq!(&got, shape, "{name}/{node}/{f}");
                    }
                }
            }
        }
        let mut edges: Vec<Vec<String>> = g
            .edges
            .iter()
            .map(|(a, b)| vec![a.clone(), b.clone()])
            .collect();
        edges.sort();
        assert_eq!(v["edges"], serde_json::json!(edges), "{name}");
        assert_eq!(v["metadata"]["dt"], serde_json::json!(1e-4));
    }
}

#[test]
fn cli_import_then_check_and_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.snn");
    let bin = env!("CARGO_BIN_EXE_snnc");
    let st = std::process::Command::new(bin)
        .args(["import"])
        .arg(root().join("tests/fixtures/nir/sinabs_conv_if_sumpool.nir"))
        .args(["--dt", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(dir.path().join("s.safetensors").exists());
    for cmd in ["check", "estimate"] {
        let st = std::process::Command::new(bin)
            .arg(cmd)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    // And export of the imported network with its weights.
    let nir_out = dir.path().join("again.nir");
    let st = std::process::Command::new(bin)
        .arg("export")
        .arg(&out)
        .arg("--weights")
        .arg(dir.path().join("s.safetensors"))
        .arg("-o")
        .arg(&nir_out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let g = NirGraph::from_hdf5(std::fs::read(&nir_out).unwrap()).unwrap();
    assert_eq!(g.nodes["Conv1_if"].kind, "IF");
    // A malformed file: exit 1 with the code.
    let bad = dir.path().join("bad.nir");
    std::fs::write(&bad, b"nope").unwrap();
    let st = std::process::Command::new(bin)
        .arg("import")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).contains("snnc::nir::malformed"));
}

// ---- eval of the re-imported network ----------------------------------------------------

/// `snnc eval` prints "`NAME` (...): accuracy A% on N test images, loss L, ..."; the part
/// from "accuracy" to the loss, and the activity lines, must agree.
fn eval_summary(bin: &str, snn: &Path, weights: &Path, timesteps: &str) -> String {
    let out = std::process::Command::new(bin)
        .arg("eval")
        .arg(snn)
        .arg("--weights")
        .arg(weights)
        .args([
            "--data",
            "embedded",
            "--test-limit",
            "200",
            "--timesteps",
            timesteps,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let first = text.lines().next().unwrap_or_default();
    let start = first.find("accuracy").unwrap_or(0);
    let end = first
        .find(" images/s")
        .map(|e| first[..e].rfind(',').unwrap_or(e))
        .unwrap_or(first.len());
    let mut s = first[start..end].to_string();
    for l in text.lines().skip(1).filter(|l| !l.contains("images/s")) {
        s.push('\n');
        s.push_str(l);
    }
    s
}

#[test]
fn eval_of_the_reimported_network_matches_the_original() {
    let bin = env!("CARGO_BIN_EXE_snnc");
    let dir = tempfile::tempdir().unwrap();
    for (file, t, method) in [
        ("fashion-mnist/agd/backres.snn", "4", "agd"),
        (
            "fashion-mnist/conversion/vgg-backres.snn",
            "5",
            "conversion",
        ),
    ] {
        let path = root().join("networks").join(file);
        let src = std::fs::read_to_string(&path).unwrap();
        let n = net(&src);
        // The model's seeded initial weights stand in for trained ones.
        let state = initial_state(&n);
        let w = dir.path().join("orig.safetensors");
        let meta = snnc::train::checkpoint::Meta {
            epoch: 0,
            seed: 0,
            network: n.name.clone(),
            method: method.into(),
            settings: None,
            ..Default::default()
        };
        snnc::train::checkpoint::save(&w, &state, &meta).unwrap();
        let nir_path = dir.path().join("n.nir");
        let st = std::process::Command::new(bin)
            .arg("export")
            .arg(&path)
            .arg("--weights")
            .arg(&w)
            .arg("-o")
            .arg(&nir_path)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert!(String::from_utf8_lossy(&st.stderr).contains("snnc::nir::reset_subtract"));
        let snn = dir.path().join("back.snn");
        let st = std::process::Command::new(bin)
            .arg("import")
            .arg(&nir_path)
            .arg("-o")
            .arg(&snn)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let a = eval_summary(bin, &path, &w, t);
        let b = eval_summary(bin, &snn, &dir.path().join("back.safetensors"), t);
        assert!(a.contains("on 200 test images"), "{a}");
        assert_eq!(a, b, "{file}");
    }
}

#[test]
fn corrupted_files_never_panic() {
    // Every 97th byte of a real file flipped, and the file cut at many lengths: each import
    // ends in a result, and a failure is a `snnc::nir::*` diagnostic.
    let good = std::fs::read(root().join("tests/fixtures/nir/snntorch_affine_lif.nir")).unwrap();
    let mut variants = Vec::new();
    for i in (0..good.len()).step_by(97) {
        let mut b = good.clone();
        b[i] ^= 0xff;
        variants.push(b);
    }
    for cut in (0..good.len()).step_by(good.len() / 40 + 1) {
        variants.push(good[..cut].to_vec());
    }
    let mut failures = 0;
    for b in variants {
        if let Err(d) = import::import_bytes(b, &ImportOptions::default()) {
            failures += 1;
            assert!(
                d.codes().iter().all(|c| c.starts_with("snnc::nir::")),
                "{:?}",
                d.codes()
            );
        }
    }
    assert!(failures > 0);
}

// ---- dt on the command line ---------------------------------------------------------------

#[test]
fn cli_dt_maps_leak_to_tau_and_back() {
    let bin = env!("CARGO_BIN_EXE_snnc");
    let dir = tempfile::tempdir().unwrap();
    let snn = dir.path().join("s.snn");
    std::fs::write(&snn, SMALL).unwrap();
    let n = net(SMALL);
    let w = dir.path().join("w.safetensors");
    let meta = snnc::train::checkpoint::Meta {
        epoch: 0,
        seed: 0,
        network: n.name.clone(),
        method: "agd".into(),
        settings: None,
        ..Default::default()
    };
    snnc::train::checkpoint::save(&w, &initial_state(&n), &meta).unwrap();
    let out = dir.path().join("s.nir");
    let st = std::process::Command::new(bin)
        .arg("export")
        .arg(&snn)
        .arg("--weights")
        .arg(&w)
        .args(["--dt", "0.002", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let g = NirGraph::from_hdf5(std::fs::read(&out).unwrap()).unwrap();
    // α = 0.95, dt = 2 ms: τ = 0.002 / 0.05 = 0.04 s, r = 1 / 0.05 = 20 (α is an f32, so
    // to about 1e-6 relative).
    let tau = floats(field(&g, "Conv1_lif", "tau")).1;
    let r = floats(field(&g, "Conv1_lif", "r")).1;
    assert!(
        tau.iter().all(|&t| (t / 0.04 - 1.0).abs() < 1e-6),
        "{}",
        tau[0]
    );
    assert!(r.iter().all(|&x| (x / 20.0 - 1.0).abs() < 1e-6), "{}", r[0]);
    assert_eq!(g.metadata["dt"].as_f64(), Some(0.002));
    assert_eq!(g.metadata["spike_rule"].as_text(), Some("v >= v_threshold"));
    // Import reads dt from the metadata, whatever --dt says: α = 1 − 0.002/0.04 = 0.95.
    let back = dir.path().join("b.snn");
    let st = std::process::Command::new(bin)
        .arg("import")
        .arg(&out)
        .args(["--dt", "0.5", "-o"])
        .arg(&back)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let text = std::fs::read_to_string(&back).unwrap();
    assert!(
        text.contains("LIF(leak=0.95, threshold=0.5, reset=subtract)"),
        "{text}"
    );
    // Without metadata --dt applies: τ = 1 ms, r = 10 at dt = 0.2 ms gives α = 0.8 and an
    // input gain r·dt/τ = 2 folded into the weights (0.5 → 1).
    let base_path = dir.path().join("base.nir");
    std::fs::write(&base_path, base().to_hdf5().unwrap()).unwrap();
    let b2 = dir.path().join("b2.snn");
    let st = std::process::Command::new(bin)
        .arg("import")
        .arg(&base_path)
        .args(["--dt", "0.0002", "-o"])
        .arg(&b2)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let text = std::fs::read_to_string(&b2).unwrap();
    assert!(
        text.contains("FC1(4,3) LIF(leak=0.8, threshold=1, reset=zero)"),
        "{text}"
    );
    let (t, _) = snnc::train::checkpoint::load(&dir.path().join("b2.safetensors")).unwrap();
    assert_eq!(tensor_vec(&t["FC1"]), vec![1.0; 12]);
    // A dt that is not a positive number of seconds: exit 1 with the code.
    for bad in ["0", "-1e-3"] {
        let st = std::process::Command::new(bin)
            .arg("export")
            .arg(&snn)
            .arg("--weights")
            .arg(&w)
            .arg(format!("--dt={bad}"))
            .arg("-o")
            .arg(dir.path().join("x.nir"))
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(1), "{bad}");
        assert!(
            String::from_utf8_lossy(&st.stderr).contains("snnc::nir::dt"),
            "{bad}"
        );
    }
}
