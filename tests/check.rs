//! Front end: compile results on the paper's networks and every diagnostic class.

use snnc::ir::{Activation, Domain, Network, Op, Shape};

fn net(src: &str) -> Network {
    match snnc::compile(src) {
        Ok(mut p) => p.networks.remove(0),
        Err(d) => panic!("unexpected errors:\n{}", d.render_text("t.snn", src, 100, false)),
    }
}

fn codes(src: &str) -> Vec<String> {
    match snnc::compile(src) {
        Ok(_) => vec![],
        Err(d) => d.codes(),
    }
}

fn shape_of(n: &Network, name: &str, step: u32) -> Shape {
    n.graph
        .node_weights()
        .find(|x| x.name == name && x.step == step)
        .and_then(|x| x.out_shape)
        .unwrap_or_else(|| panic!("no shape for {name}@{step}"))
}

const VGG3X2: &str = "network VGG3x2 {
    input 3x32x32
    Conv1(3,64,3x3/1) LIF
    Conv2(64,64,3x3/1) LIF
    Pool(2x2/2)
    Conv3(64,64,3x3/1) x2 LIF
    Pool(2x2/2)
    FC1(4096,512) LIF
    FC2(512,10)
    stochmax
}";

#[test]
fn vgg3x2_shapes_steps_and_slots() {
    let n = net(VGG3X2);
    assert_eq!(shape_of(&n, "Conv3", 2), Shape::new(64, 16, 16));
    assert_eq!(shape_of(&n, "FC1", 1), Shape::new(512, 1, 1));
    // 5 spiking applications: Conv1, Conv2, Conv3@1, Conv3@2, FC1.
    assert_eq!(n.thresholds.len(), 5);
    // Unique params: 3·64·9 + 2·64·64·9 + 4096·512 + 512·10.
    assert_eq!(n.unique_params(), Some(1728 + 2 * 36864 + 2_097_152 + 5120));
    let fc2 = n.graph.node_weights().find(|x| x.name == "FC2").unwrap();
    assert_eq!(fc2.activation, Activation::None);
    assert_eq!(fc2.domain, Some(Domain::Snn));
    assert!(n.graph.node_weights().any(|x| matches!(x.op, Op::Encode { .. })));
}

#[test]
fn fc_mismatch_names_shape_source_and_fix() {
    let src = "network N {\n input 64x16x16\n Pool(2x2/2)\n Pool(2x2/2)\n FC1(2048,512)\n FC2(512,10)\n}";
    let d = snnc::compile(src).unwrap_err();
    let text = d.render_text("n.snn", src, 100, false);
    assert!(text.contains("FC1 declares 2048 inputs but receives 64×4×4 = 1024 from Pool2"), "{text}");
    assert!(text.contains("FC1(1024,512)"), "{text}");
    assert!(text.contains("n.snn:5:2"), "{text}");
}

#[test]
fn conv_mismatch_help_names_signature() {
    let src = "network N {\n input 3x8x8\n Conv1(3,64,3x3/1)\n Conv3(32,64,3x3/1)\n FC1(4096,10)\n}";
    let d = snnc::compile(src).unwrap_err();
    let text = d.render_text("n.snn", src, 100, false);
    assert!(text.contains("help: write `Conv3(64,64,3x3/1)`"), "{text}");
    assert_eq!(d.codes(), vec!["snnc::shape::mismatch"]);
}

#[test]
fn shape_mismatch_diagnostic_code() {
    assert_eq!(
        codes("network N { input 3x8x8; Conv1(4,8,3x3/1); FC1(512,10) }"),
        vec!["snnc::shape::mismatch"]
    );
}
