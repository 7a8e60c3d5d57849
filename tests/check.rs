//! Front end: compile results on the paper's networks and every diagnostic class.

use snnc::ir::{Activation, Domain, Network, Op, Shape};

fn net(src: &str) -> Network {
    match snnc::compile(src) {
        Ok(mut p) => p.networks.remove(0),
        Err(d) => panic!(
            "unexpected errors:\n{}",
            d.render_text("t.snn", src, 100, false)
        ),
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
    assert!(n
        .graph
        .node_weights()
        .any(|x| matches!(x.op, Op::Encode { .. })));
}

#[test]
fn fc_mismatch_names_shape_source_and_fix() {
    let src =
        "network N {\n input 64x16x16\n Pool(2x2/2)\n Pool(2x2/2)\n FC1(2048,512)\n FC2(512,10)\n}";
    let d = snnc::compile(src).unwrap_err();
    let text = d.render_text("n.snn", src, 100, false);
    assert!(
        text.contains("FC1 declares 2048 inputs but receives 64×4×4 = 1024 from Pool2"),
        "{text}"
    );
    assert!(text.contains("FC1(1024,512)"), "{text}");
    assert!(text.contains("n.snn:5:2"), "{text}");
}

#[test]
fn conv_mismatch_help_names_signature() {
    let src =
        "network N {\n input 3x8x8\n Conv1(3,64,3x3/1)\n Conv3(32,64,3x3/1)\n FC1(4096,10)\n}";
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

/// Compiles a fixture the way `snnc check` does (bytes first, so non-UTF-8 is covered).
fn check_fixture(path: &std::path::Path) -> (String, snnc::diagnostics::Diagnostics) {
    let bytes = std::fs::read(path).unwrap();
    match snnc::syntax::decode(&bytes) {
        Ok(text) => (
            text.to_string(),
            snnc::compile_with_diagnostics(text, None).1,
        ),
        Err(d) => (String::from_utf8_lossy(&bytes).into_owned(), d),
    }
}

#[test]
fn every_error_fixture_snapshot() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snn"))
        .collect();
    paths.sort();
    assert!(paths.len() > 40);
    let mut seen = std::collections::BTreeSet::new();
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (source, diags) = check_fixture(&path);
        assert!(diags.has_errors(), "{stem}: no error");
        let rendered = diags.render_text(&format!("{stem}.snn"), &source, 100, false);
        seen.extend(diags.codes());
        // Each diagnostic points at a line and column.
        assert!(
            rendered.contains(&format!("{stem}.snn:")),
            "{stem}: {rendered}"
        );
        insta::assert_snapshot!(stem, rendered);
    }
    for code in [
        "snnc::syntax::not_utf8",
        "snnc::syntax::parse",
        "snnc::syntax::empty",
        "snnc::syntax::too_deep",
        "snnc::syntax::unknown_layer",
        "snnc::syntax::unknown_activation",
        "snnc::syntax::unknown_setting",
        "snnc::syntax::unknown_classifier",
        "snnc::syntax::bad_value",
        "snnc::syntax::arguments",
        "snnc::syntax::range",
        "snnc::syntax::misplaced",
        "snnc::network::missing_input",
        "snnc::network::no_layers",
        "snnc::network::activation_on_pool",
        "snnc::skip::unknown_endpoint",
        "snnc::skip::backwards",
        "snnc::skip::mode_conflict",
        "snnc::resolve::unknown_name",
        "snnc::resolve::signature_mismatch",
        "snnc::unroll::not_c_to_c",
        "snnc::unroll::too_large",
        "snnc::shape::mismatch",
        "snnc::shape::window",
        "snnc::shape::join",
        "snnc::shape::overflow",
    ] {
        assert!(seen.contains(code), "no fixture produces {code}");
    }
}

#[test]
fn several_errors_in_one_file_are_all_reported() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/errors/multiple_errors.snn");
    let (_, d) = check_fixture(&path);
    assert_eq!(
        d.codes(),
        vec![
            "snnc::shape::mismatch",
            "snnc::shape::mismatch",
            "snnc::syntax::parse",
            "snnc::network::missing_input"
        ]
    );
}

#[test]
fn json_diagnostics_have_line_and_column() {
    let src = "network N {\n input 3x8x8\n Conv1(4,8,3x3/1)\n FC1(512,10)\n}";
    let d = snnc::compile(src).unwrap_err();
    let v = d.to_json("n.snn", src);
    assert_eq!(v[0]["code"], "snnc::shape::mismatch");
    assert_eq!(v[0]["severity"], "error");
    assert_eq!(v[0]["labels"][0]["line"], 3);
    assert_eq!(v[0]["labels"][0]["column"], 2);
    assert_eq!(v[0]["help"], "write `Conv1(3,8,3x3/1)`");
}

#[test]
fn cli_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_snnc");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.snn");
    std::fs::write(&good, VGG3X2).unwrap();
    let bad = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/errors/shape_fc_mismatch.snn");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(exe)
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&["check".as_ref(), good.as_os_str()]);
    assert_eq!(ok.status.code(), Some(0));
    let err = run(&["check".as_ref(), bad.as_os_str()]);
    assert_eq!(err.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("FC1 declares 2048 inputs"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour despite NO_COLOR: {stderr}"
    );
    let missing = run(&["check".as_ref(), dir.path().join("nope.snn").as_os_str()]);
    assert_eq!(missing.status.code(), Some(2));
    let json = run(&[
        "check".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        bad.as_os_str(),
    ]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["code"], "snnc::shape::mismatch");
    let usage = run(&["check".as_ref()]);
    assert_eq!(usage.status.code(), Some(2));
}
