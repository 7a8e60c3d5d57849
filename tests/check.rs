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
        assert!(
            diags.has_errors() || stem.starts_with("warning_"),
            "{stem}: no error"
        );
        assert!(!diags.is_empty(), "{stem}: no diagnostic");
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
        "snnc::network::duplicate_name",
        "snnc::hybrid::unused_timesteps",
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

fn ir_text(src: &str) -> String {
    snnc::export::text::to_text(&net(src))
}

#[test]
fn all_separators_mean_the_same() {
    let base =
        ir_text("network N {\n input 3x8x8\n Conv1(3,4,3x3/1)\n Pool(2x2/2)\n FC1(64,10)\n}");
    for sep in ["–", "—", "-", "->", "→", ";", "\n", " – \n –"] {
        let src = format!("network N {{\n input 3x8x8\n Input{sep}Conv1(3,4,3x3/1){sep}Pool(2x2/2){sep}FC1(64,10)\n}}");
        assert_eq!(ir_text(&src), base, "separator {sep:?}");
    }
}

#[test]
fn paper_rows_wrap_onto_dash_lines_with_comments() {
    let src = "// Table III\nnetwork VGG5 { # five layers\n input 3x32x32\n Input–Conv1(3,64,3x3/1)–Conv2(64,64,3x3/1)–Pool(2x2/2)–Conv3(64,64,3x3/1)–Conv4(64,64,3x3/1)–\n –Pool(2x2/2)–FC1(4096,512)–FC2(512,10)\n}";
    let n = net(src);
    assert_eq!(shape_of(&n, "FC1", 1), Shape::new(512, 1, 1));
    assert_eq!(n.weights.len(), 6);
}

#[test]
fn block_repeat_equals_unrolled_row_equals_bare_names() {
    let head = "network N {\n input 64x8x8\n";
    let block = ir_text(&format!(
        "{head} [Conv2(64,64,3x3/1) Conv3(64,64,3x3/1)] x2\n FC1(4096,10)\n}}"
    ));
    let row = ir_text(&format!(
        "{head} Conv2(64,64,3x3/1)–Conv3(64,64,3x3/1)–Conv2(64,64,3x3/1)–Conv3(64,64,3x3/1)\n FC1(4096,10)\n}}"
    ));
    let bare = ir_text(&format!(
        "{head} Conv2(64,64,3x3/1) Conv3(64,64,3x3/1) Conv2 Conv3\n FC1(4096,10)\n}}"
    ));
    assert_eq!(block, row);
    assert_eq!(block, bare);
    let n = net(&format!(
        "{head} [Conv2(64,64,3x3/1) Conv3(64,64,3x3/1)] x2\n FC1(4096,10)\n}}"
    ));
    let steps: Vec<(String, u32)> = n
        .topo_order()
        .into_iter()
        .filter(|&i| n.graph[i].op.weights().is_some())
        .map(|i| (n.graph[i].name.clone(), n.graph[i].step))
        .collect();
    let expect = [
        ("Conv2", 1),
        ("Conv3", 1),
        ("Conv2", 2),
        ("Conv3", 2),
        ("FC1", 1),
    ];
    assert_eq!(steps, expect.map(|(a, b)| (a.to_string(), b)).to_vec());
}

#[test]
fn repeat_and_activation_in_any_order() {
    let head = "network N {\n input 64x8x8\n neuron LIF(leak=0.9)\n";
    let a = ir_text(&format!(
        "{head} Conv3(64,64,3x3/1) x4 ReLU\n FC1(4096,10)\n}}"
    ));
    let b = ir_text(&format!(
        "{head} Conv3(64,64,3x3/1) ReLU x4\n FC1(4096,10)\n}}"
    ));
    let c = ir_text(&format!(
        "{head} ReLU Conv3(64,64,3x3/1) x4\n FC1(4096,10)\n}}"
    ));
    let d = ir_text(&format!(
        "{head} Conv3(64,64,3x3/1)-ReLU x4\n FC1(4096,10)\n}}"
    ));
    let e = ir_text(&format!(
        "{head} Conv3(64,64,3x3/1) ReLU\n Conv3 x3 ReLU\n FC1(4096,10)\n}}"
    ));
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    assert_eq!(a, e);
    let n = net(&format!(
        "{head} Conv3(64,64,3x3/1) x4 ReLU\n FC1(4096,10)\n}}"
    ));
    assert_eq!(
        n.graph
            .node_weights()
            .filter(|x| x.activation == Activation::Relu)
            .count(),
        4
    );
    assert_eq!(n.applications(snnc::ir::WeightId(0)), 4);
}

#[test]
fn suffix_activation_belongs_to_the_layer_before_and_prefix_to_the_layer_after() {
    let n = net("network N {\n input 3x8x8\n Input–Conv1(3,8,3x3/1)-ReLU–Conv2(8,8,3x3/1)-LIF(leak=0.5, threshold=2)–\n –LIF Conv3(8,8,3x3/1)\n FC1(512,10)\n}");
    let act = |name: &str| {
        n.graph
            .node_weights()
            .find(|x| x.name == name)
            .unwrap()
            .activation
    };
    assert_eq!(act("Conv1"), Activation::Relu);
    let Activation::Spiking(s) = act("Conv2") else {
        panic!()
    };
    assert_eq!((s.leak, s.threshold), (0.5, 2.0));
    assert!(matches!(act("Conv3"), Activation::Spiking(_)));
    assert_eq!(act("FC1"), Activation::None);
    // ReLU feeds LIF: a boundary, no encoder (the first layer is not spiking).
    assert!(!n
        .graph
        .node_weights()
        .any(|x| matches!(x.op, Op::Encode { .. })));
    assert!(n.graph.node_weights().any(|x| matches!(
        x.op,
        Op::Boundary {
            kind: snnc::ir::BoundaryKind::AnnToSnn
        }
    )));
}

#[test]
fn settings_and_defaults() {
    let n = net("network N { input 1x28x28\n timesteps 50\n encode direct\n method conversion\n neuron IF(threshold=0.5, reset=zero)\n surrogate linear(gamma=0.5)\n Conv1(1,4,3x3/2, pad=0)\n FC1(676,10)\n stochmax }");
    let s = &n.settings;
    assert_eq!(s.timesteps, Some(50));
    assert_eq!(s.encode, snnc::ir::Encoding::Direct);
    assert_eq!(s.method, snnc::ir::Method::Conversion);
    assert_eq!(s.classifier, snnc::ir::Classifier::Stochmax);
    assert_eq!(s.surrogate_gamma, 0.5);
    assert_eq!(s.neuron.leak, 1.0);
    assert_eq!(s.neuron.reset, snnc::ir::Reset::Zero);
    // (28 - 3) / 2 + 1 = 13 with no padding.
    assert_eq!(shape_of(&n, "Conv1", 1), Shape::new(4, 13, 13));
    let d = net("network N { input 1x4x4\n FC1(16,2) }").settings;
    assert_eq!(
        (d.timesteps, d.encode, d.method),
        (None, snnc::ir::Encoding::Poisson, snnc::ir::Method::Agd)
    );
    assert_eq!(
        (d.neuron.leak, d.neuron.threshold, d.surrogate_gamma),
        (0.99, 1.0, 0.3)
    );
    // The one place that decides the default T: what `snnc train` runs with.
    use snnc::ir::{defaults, Method};
    assert_eq!(defaults::timesteps(Method::Agd), 10);
    assert_eq!(defaults::timesteps(Method::Conversion), 500);
    assert_eq!(defaults::timesteps(Method::Stdp), 100);
    assert_eq!(defaults::CONVERSION_EVAL_TIMESTEPS, [50, 100, 250, 500]);
    assert_eq!(
        snnc::train::conversion::ConversionConfig::default().eval_timesteps,
        defaults::CONVERSION_EVAL_TIMESTEPS.to_vec()
    );
    assert_eq!(snnc::train::defaults::TIMESTEPS, 10);
}

#[test]
fn resnet2_skip_applies_pools_on_the_skip_path() {
    let n = net("network ResNet2 {\n input 3x32x32\n Input–Conv1(3,36,3x3/1)–Conv2(36,36,3x3/1)–Pool(2x2/2)–FC1(18432,1024)–FC2(1024,10)\n skip Conv1 -> FC1 concat\n}");
    let join = n
        .graph
        .node_weights()
        .find(|x| matches!(x.op, Op::Join { .. }))
        .unwrap();
    assert_eq!(join.out_shape, Some(Shape::new(18432, 1, 1)));
    let pools = n
        .graph
        .node_weights()
        .filter(|x| matches!(x.op, Op::Pool { .. }))
        .count();
    assert_eq!(pools, 2);
    let skips = n
        .graph
        .edge_weights()
        .filter(|e| e.kind == snnc::ir::EdgeKind::Skip)
        .count();
    assert_eq!(skips, 2); // Conv1 → pool copy → join
}

#[test]
fn skip_add_of_equal_maps_and_input_concat() {
    let n = net("network N { input 3x8x8\n Conv1(3,8,3x3/1)\n Conv2(11,8,3x3/1)\n Conv3(8,8,3x3/1)\n FC1(512,10)\n skip Input -> Conv2 concat\n skip Conv1 -> Conv3 add }");
    let joins: Vec<_> = n
        .graph
        .node_weights()
        .filter(|x| matches!(x.op, Op::Join { .. }))
        .map(|x| x.out_shape)
        .collect();
    assert!(joins.contains(&Some(Shape::new(11, 8, 8))));
    assert!(joins.contains(&Some(Shape::new(8, 8, 8))));
}

#[test]
fn several_networks_and_pass_prefix() {
    let src = "network A { input 1x4x4; FC1(16,2) }\nnetwork B { input 1x4x4; Conv1(1,1,3x3/1) x3; FC1(16,2) }";
    let p = snnc::compile(src).unwrap();
    assert_eq!(p.networks.len(), 2);
    let p = snnc::passes::run(
        snnc::syntax::lower_ir::build(&snnc::syntax::parse(src).0).0,
        Some("resolve"),
    )
    .unwrap();
    assert_eq!(p.networks[1].repeats.len(), 1);
    assert!(p.networks[1]
        .graph
        .node_weights()
        .all(|n| n.out_shape.is_none()));
    assert_eq!(
        snnc::passes::names().collect::<Vec<_>>(),
        [
            "resolve",
            "unroll",
            "shapes",
            "hybrid",
            "threshold-slots",
            "validate"
        ]
    );
    let e = snnc::passes::run(snnc::ir::Program::default(), Some("nope")).unwrap_err();
    assert_eq!(e.codes(), vec!["snnc::passes::unknown"]);
}

#[test]
fn skip_inside_a_repeated_block_with_a_pool_is_unrolled_per_application() {
    let n = net("network N {\n input 4x4x4\n [Conv1(4,4,3x3/1) Pool(1x1/1) Conv2(4,4,3x3/1)] x2\n FC1(64,10)\n skip Conv1 -> Conv2 add\n}");
    // Two joins, each fed by its own application of Conv1 through its own pool copy.
    assert_eq!(
        n.graph
            .node_weights()
            .filter(|x| matches!(x.op, Op::Join { .. }))
            .count(),
        2
    );
    assert_eq!(
        n.graph
            .node_weights()
            .filter(|x| matches!(x.op, Op::Pool { .. }))
            .count(),
        4
    );
    assert!(petgraph::algo::toposort(&n.graph, None).is_ok());
}

#[test]
fn warnings_do_not_fail_compilation() {
    let src = "network N {\n input 1x4x4\n timesteps 10\n FC1(16,8) ReLU\n FC2(8,2)\n}";
    let (p, d) = snnc::compile_with_diagnostics(src, None);
    assert!(p.is_some());
    assert_eq!(d.codes(), vec!["snnc::hybrid::unused_timesteps"]);
    assert!(!d.has_errors());
    let text = d.render_text("w.snn", src, 100, false);
    assert!(text.contains("⚠"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.snn");
    std::fs::write(&f, src).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("check")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 warning"));
}

#[test]
fn output_sizes_match_hand_computation() {
    // (32 + 2·2 − 5)/2 + 1 = 16; (16 − 5)/2 + 1 = 6 without padding; pool (6 − 3)/2 + 1 = 2;
    // MaxPool(1x1) with default stride 1 keeps 2; FC flattens 8·2·2 = 32.
    let n = net("network N { input 3x32x32\n Conv1(3,8,5x5/2)\n Conv2(8,8,5x5/2, pad=0)\n Pool(3x3/2)\n MaxPool(1x1)\n FC1(32,10) }");
    assert_eq!(shape_of(&n, "Conv1", 1), Shape::new(8, 16, 16));
    assert_eq!(shape_of(&n, "Conv2", 1), Shape::new(8, 6, 6));
    assert_eq!(shape_of(&n, "Pool1", 1), Shape::new(8, 2, 2));
    assert_eq!(shape_of(&n, "MaxPool2", 1), Shape::new(8, 2, 2));
    assert_eq!(shape_of(&n, "FC1", 1), Shape::new(10, 1, 1));
}

#[test]
fn spiking_features_into_an_ann_classifier_pass_through_a_boundary() {
    // Table XIII style: spiking convolutions, then a ReLU FC classifier.
    let n = net("network N { input 1x4x4\n Conv1(1,2,3x3/1) LIF\n FC1(32,8) ReLU\n FC2(8,2) }");
    let by = |name: &str| {
        n.graph
            .node_weights()
            .find(|x| x.name == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("Conv1").domain, Some(Domain::Snn));
    assert_eq!(by("FC1").domain, Some(Domain::Ann));
    assert_eq!(by("FC2").domain, Some(Domain::Ann));
    let b = n
        .graph
        .node_weights()
        .find(|x| {
            matches!(
                x.op,
                Op::Boundary {
                    kind: snnc::ir::BoundaryKind::SnnToAnn
                }
            )
        })
        .expect("a spikes-to-rates boundary");
    assert_eq!(b.out_shape, Some(Shape::new(2, 4, 4)));
    assert_eq!(n.thresholds.len(), 1);
    // Encode sits right after the input (the first layer is spiking).
    let succ: Vec<_> = n
        .graph
        .neighbors(n.input)
        .map(|i| n.graph[i].op.clone())
        .collect();
    assert_eq!(
        succ,
        vec![Op::Encode {
            encoding: snnc::ir::Encoding::Poisson
        }]
    );
}

#[test]
fn compile_file_or_report_for_other_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("g.snn");
    std::fs::write(&good, VGG3X2).unwrap();
    let p = snnc::cli::check::compile_file_or_report(&good).unwrap();
    assert_eq!(p.networks[0].name, "VGG3x2");
    let bad = dir.path().join("b.snn");
    std::fs::write(&bad, "network N { FC1(1,1) }").unwrap();
    assert_eq!(
        snnc::cli::check::compile_file_or_report(&bad).unwrap_err(),
        std::process::ExitCode::from(1)
    );
    assert_eq!(
        snnc::cli::check::compile_file_or_report(&dir.path().join("none.snn")).unwrap_err(),
        std::process::ExitCode::from(2)
    );
}

#[test]
fn many_errors_in_a_large_file_are_all_rendered_with_their_lines() {
    let mut src = String::from("network Big {\n input 16x8x8\n");
    for i in 0..3000 {
        src.push_str(&format!(" Conv{i}(15,16,3x3/1) LIF\n"));
    }
    src.push_str(" FC1(1024,10)\n}\n");
    let d = snnc::compile(&src).unwrap_err();
    assert_eq!(d.error_count(), 3000);
    let text = d.render_text("big.snn", &src, 100, false);
    assert_eq!(text.matches("× Conv").count(), 3000);
    assert!(text.contains("[big.snn:3002:2]"), "last error on line 3002");
    let json = d.to_json("big.snn", &src);
    assert_eq!(json[2999]["labels"][0]["line"], 3002);
}

#[test]
fn any_name_starting_with_conv_or_fc_is_a_weighted_layer() {
    let n = net(
        "network N { input 1x4x4\n Conv(1,2,3x3/1)\n Conv_a(2,2,3x3/1)\n FC(32,4)\n FCout(4,2) }",
    );
    let names: Vec<&str> = n.weights.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["Conv", "Conv_a", "FC", "FCout"]);
}

#[test]
fn signature_mismatch_help_suggests_the_c_to_c_signature_that_fits() {
    let help = |src: &str| {
        let d = snnc::compile(src).unwrap_err();
        assert_eq!(d.codes()[0], "snnc::resolve::signature_mismatch");
        d.render_text("n.snn", src, 200, false)
    };
    // First written 3→64 (wrong), then 64→64: the help names the C → C one.
    let t = help("network N { input 3x8x8; Conv1(3,64,3x3/1); Conv3(3,64,3x3/1); Conv3(64,64,3x3/1); FC1(4096,10) }");
    assert!(t.contains("write `Conv3(64,64,3x3/1)` each time"), "{t}");
    // Two C → C candidates: the one whose input matches the 32 channels reaching it.
    let t = help("network N { input 3x8x8; Conv1(3,32,3x3/1); Conv3(64,64,3x3/1); Conv3(32,32,3x3/1); FC1(2048,10) }");
    assert!(t.contains("write `Conv3(32,32,3x3/1)` each time"), "{t}");
    // No C → C candidate: the one that takes the channels reaching it (through a pool).
    let t = help("network N { input 3x8x8; Conv1(3,16,3x3/1); Pool(2x2/2); Conv3(8,16,3x3/1); Conv3(16,8,3x3/1); FC1(128,10) }");
    assert!(t.contains("write `Conv3(16,8,3x3/1)` each time"), "{t}");
    // Nothing evident: the first-declared one.
    let t = help("network N { input 3x8x8; FC0(192,64); FC1(64,32); FC1(32,10) }");
    assert!(t.contains("write `FC1(64,32)` each time"), "{t}");
}

#[test]
fn not_c_to_c_help_fits_the_neighbouring_layers() {
    let help = |src: &str| {
        let d = snnc::compile(src).unwrap_err();
        assert_eq!(d.codes(), vec!["snnc::unroll::not_c_to_c"]);
        d.render_text("n.snn", src, 400, false)
    };
    // 64 channels reach Conv2 and Conv3 takes 64: Conv2(64,64), not the in→in Conv2(32,32).
    let t = help("network N { input 3x8x8; Conv1(3,64,3x3/1); Conv2(32,64,3x3/1) x2; Conv3(64,64,3x3/1); FC1(4096,10) }");
    assert!(
        t.contains(
            "`Conv2(64,64,3x3/1)` maps the 64 channels reaching it to the 64 the next layer takes"
        ),
        "{t}"
    );
    // Through a pool, with a non-default padding kept.
    let t = help("network N { input 3x8x8; Conv1(3,16,3x3/1); Pool(2x2/2); Conv2(8,4,3x3/1, pad=0) x2; Conv3(16,16,3x3/1); FC1(16,10) }");
    assert!(t.contains("`Conv2(16,16,3x3/1, pad=0)` maps the 16"), "{t}");
    // The input's 3 channels reach it, and it declares 64 out: both ways are named.
    let t = help("network N { input 3x8x8; Conv1(3,64,3x3/1) x2; FC1(4096,10) }");
    assert!(t.contains("`Conv1(3,3,3x3/1)` keeps the 3 channels reaching it; for 64 channels, map 3 → 64 with another layer first, then repeat `Conv1(64,64,3x3/1)`"), "{t}");
    // A block whose first layer disagrees with the channels reaching it and its last output.
    let t = help("network N { input 3x8x8; Conv1(3,64,3x3/1); [Conv2(32,64,3x3/1) Conv3(64,64,3x3/1)] x2; FC1(4096,10) }");
    assert!(t.contains("first layer must take the 64 channels its last layer outputs (and that reach the block): `Conv2(64,64,3x3/1)`"), "{t}");
    // Otherwise the last layer is fixed.
    let t = help("network N { input 3x8x8; Conv1(3,64,3x3/1); [Conv2(64,64,3x3/1) Conv3(64,128,3x3/1)] x2; FC1(8192,10) }");
    assert!(
        t.contains(
            "last layer must output the 64 channels its first layer takes: `Conv3(64,64,3x3/1)`"
        ),
        "{t}"
    );
}

#[test]
fn unclosed_paren_or_bracket_does_not_hide_the_rest_of_its_network() {
    let src = "network A {
    input 3x8x8
    Conv1(3,8,3x3/1
    Conv2(8,8,3x3/1) LIFF
    [Conv3(8,8,3x3/1) Relu x2
    FC1(512,10)
}
network B { input 3x8x8; Conv1(3,8,3x3/1) LIF(leak=0.5,
    threshold=1
    FC1(512,10) LIF(leak=7)
}
network C { input 3x8x8; Conv1(3,64 3x3/1); Foo }
network D { input 3x8x8; Conv1(3,8,3x3/1); FC1(512,10) }";
    let (file, d) = snnc::syntax::parse(src);
    let text = d.render_text("n.snn", src, 200, false);
    let mut lines: Vec<(String, u64)> = d
        .to_json("n.snn", src)
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["code"].as_str().unwrap().to_string(),
                x["labels"][0]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("snnc::syntax::parse", 4),              // the `)` missing on line 3
        ("snnc::syntax::unknown_layer", 4),      // LIFF
        ("snnc::syntax::unknown_activation", 5), // Relu
        ("snnc::syntax::parse", 7),              // the `]` missing
        ("snnc::syntax::parse", 10),             // B: the `)` missing
        ("snnc::syntax::range", 10),             // leak=7
        ("snnc::syntax::parse", 12),             // C: a closed bad list, not recovered
    ];
    let mut expect: Vec<(String, u64)> = expect.iter().map(|(c, l)| (c.to_string(), *l)).collect();
    lines.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    expect.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(lines, expect, "{text}");
    assert!(
        text.contains("close the argument list opened on line 3 with `)`"),
        "{text}"
    );
    assert!(
        text.contains("close the block opened on line 5 with `]`"),
        "{text}"
    );
    // Only the network without errors is built.
    let names: Vec<&str> = file.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["D"]);
}

#[test]
fn unknown_name_help_names_a_signature_that_fits() {
    let help = |src: &str| {
        let d = snnc::compile(src).unwrap_err();
        assert_eq!(d.codes(), vec!["snnc::resolve::unknown_name"]);
        d.render_text("n.snn", src, 400, false)
    };
    let t =
        help("network N { input 3x8x8; Conv1(3,16,3x3/1); Pool(2x2/2); Conv2 x2; FC1(256,10) }");
    assert!(
        t.contains("e.g. `Conv2(16,16,3x3/1)` for the 16 channels reaching it"),
        "{t}"
    );
    let t = help("network N { input 3x8x8; Conv1(3,16,3x3/1); FC1; FC1(1024,10) }");
    assert!(
        t.contains("write `FC1` with its signature the first time: `FC1(1024,10)`"),
        "{t}"
    );
    let t = help("network N { input 3x8x8; Conv1(3,16,3x3/1); FC2; FC1(1024,10) }");
    assert!(t.contains("`FC2(INPUTS,OUTPUTS)`"), "{t}");
}

/// Number grammar (issue 11 item 1): every ordinary decimal form, wherever a real is read.
#[test]
fn numbers_in_every_decimal_form() {
    let threshold = |t: &str| {
        net(&format!(
            "network N {{\n input 1x2x2\n neuron LIF(threshold = {t})\n FC1(4,2) LIF\n FC2(2,2)\n}}"
        ))
        .settings
        .neuron
        .threshold
    };
    for (text, want) in [
        ("5e-1", 0.5f32),
        (".5", 0.5),
        ("5.", 5.0),
        ("1E3", 1000.0),
        ("9.9e-1", 0.99),
        ("2.5E+2", 250.0),
        ("+0.25", 0.25),
        ("0.5", 0.5),
        ("3", 3.0),
    ] {
        assert_eq!(threshold(text), want, "threshold = {text}");
    }
    // The issue's own inputs: leak, gamma and Dropout with negative exponents.
    let n = net("network N {\n input 1x2x2\n neuron LIF(leak = 9.9e-1, threshold = 5e-1)\n surrogate linear(gamma = 3e-1)\n FC1(4,4) LIF\n Dropout(5e-1)\n FC2(4,2)\n}");
    assert_eq!(n.settings.neuron.leak, 0.99);
    assert_eq!(n.settings.neuron.threshold, 0.5);
    assert_eq!(n.settings.surrogate_gamma, 0.3);
    let p = n
        .graph
        .node_weights()
        .find_map(|x| match x.op {
            Op::Dropout { p } => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(p, 0.5);
    // A layer's own neuron, and `.5`/`5.` in a Dropout.
    let n = net("network N {\n input 1x2x2\n FC1(4,4) LIF(leak=.5, threshold=2.)\n Dropout(.25)\n FC2(4,2)\n}");
    let fc1 = n.graph.node_weights().find(|x| x.name == "FC1").unwrap();
    match fc1.activation {
        Activation::Spiking(s) => assert_eq!((s.leak, s.threshold), (0.5, 2.0)),
        ref a => panic!("FC1 activation {a:?}"),
    }
}

/// A number that rounds to 0 or overflows in f32 gets the range diagnostic, not a parse
/// error; a malformed exponent is a bad value; negative thresholds stay range errors.
#[test]
fn numbers_out_of_f32_range_are_range_errors() {
    let with = |t: &str| {
        format!("network N {{\n input 1x2x2\n neuron LIF(threshold = {t})\n FC1(4,2) LIF\n FC2(2,2)\n}}")
    };
    for t in [
        "1e-50",
        "1e39",
        "-1e39",
        "0.0000000000000000000000000000000000000000000000001",
    ] {
        assert_eq!(
            codes(&with(t)),
            vec!["snnc::syntax::range"],
            "threshold = {t}"
        );
    }
    assert_eq!(codes(&with("-5e-1")), vec!["snnc::syntax::range"]);
    assert_eq!(codes(&with("1e")), vec!["snnc::syntax::bad_value"]);
    assert_eq!(codes(&with("inf")), vec!["snnc::syntax::bad_value"]);
    assert_eq!(codes(&with("nan")), vec!["snnc::syntax::bad_value"]);
    // Exactly zero is a value (and then the threshold's own range check speaks).
    assert_eq!(codes(&with("0e-5")), vec!["snnc::syntax::range"]);
    let d = snnc::compile(&with("1e-50")).unwrap_err();
    let text = d.render_text("n.snn", &with("1e-50"), 100, false);
    assert!(text.contains("rounds to 0"), "{text}");
    // Dropout(1e-50) and gamma=1e39 too.
    assert_eq!(
        codes("network N {\n input 1x2x2\n FC1(4,4) LIF\n Dropout(1e-50)\n FC2(4,2)\n}"),
        vec!["snnc::syntax::range"]
    );
    assert_eq!(
        codes("network N {\n input 1x2x2\n surrogate linear(gamma=1e39)\n FC1(4,2)\n}"),
        vec!["snnc::syntax::range"]
    );
}

/// Two-place diagnostics (issue 11 item 8): the primary location is the site to edit, the
/// other place a secondary label, in text (`file:line:col` header) and in JSON (first label,
/// `"primary": true`).
#[test]
fn two_place_diagnostics_point_at_the_site_to_edit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors");
    for (stem, line, column, other_line) in [
        ("resolve_signature_mismatch", 5, 5, 4),
        ("skip_join_shapes", 7, 5, 5),
        ("skip_join_far", 8, 5, 4),
        ("skip_mode_conflict", 7, 5, 6),
        ("network_duplicate_name", 2, 9, 1),
    ] {
        let (source, diags) = check_fixture(&dir.join(format!("{stem}.snn")));
        let v = diags.to_json("f.snn", &source);
        let labels = v[0]["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 2, "{stem}: {v}");
        assert_eq!(labels[0]["primary"], true, "{stem}");
        assert_eq!(labels[1]["primary"], false, "{stem}");
        assert_eq!(
            (labels[0]["line"].as_u64(), labels[0]["column"].as_u64()),
            (Some(line), Some(column)),
            "{stem}: {v}"
        );
        assert_eq!(labels[1]["line"].as_u64(), Some(other_line), "{stem}");
        let text = diags.render_text("f.snn", &source, 100, false);
        let first_header = text.lines().find(|l| l.contains("╭─[")).unwrap();
        assert!(
            first_header.contains(&format!("f.snn:{line}:{column}]")),
            "{stem}: {text}"
        );
    }
}

/// The first `Name(...)` suggestion of a help (`write `Conv3(32,32,3x3/1)``), if any.
fn suggested_signature(help: &str) -> Option<String> {
    help.split('`')
        .skip(1)
        .step_by(2)
        .find(|s| {
            s.ends_with(')')
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s[..s.find('(').unwrap_or(0)]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric())
                && s.find('(').is_some()
                && !s.contains(['I', 'K', 'X']) // placeholders such as `ConvN(I,O,KxK/S)`
        })
        .map(str::to_string)
}

/// `source` with the layer written at `at` (`Name(...)`, up to its `)`) replaced by `new`;
/// `None` when the text at `at` is not a call of the suggestion's name.
fn apply_suggestion(source: &str, at: usize, new: &str) -> Option<String> {
    let name = &new[..new.find('(')?];
    let rest = source.get(at..)?;
    if !rest.starts_with(&format!("{name}(")) {
        return None;
    }
    let end = at + rest.find(')')? + 1;
    Some(format!("{}{new}{}", &source[..at], &source[end..]))
}

/// The pipeline position of a diagnostic's stage (`snnc::<stage>::<what>`).
fn stage(code: &str) -> usize {
    let order = [
        "syntax", "network", "skip", "resolve", "unroll", "shape", "hybrid",
    ];
    let stage = code.split("::").nth(1).unwrap_or("");
    order
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(order.len())
}

/// Issue 13 item 6: every help that suggests a replacement signature leads to a file where
/// that error is gone: no diagnostic of the same or an earlier stage at the same place.
#[test]
fn applying_a_help_suggestion_removes_its_error() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors");
    let mut sources: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snn"))
        .map(|p| (p.display().to_string(), check_fixture(&p).0))
        .collect();
    sources.sort();
    for (i, src) in [
        "network N {\n input 3x32x32\n Conv1(3,32,3x3/1)\n Conv2(32,32,3x3/1)\n Conv3(64,64,3x3/1) x2\n Pool(2x2/2)\n FC1(16384,10)\n}",
        "network N {\n input 3x32x32\n Conv1(3,32,3x3/1)\n [Conv2(64,64,3x3/1) Conv3(64,64,3x3/1)] x2\n FC1(65536,10)\n}",
        "network N {\n input 1x4x4\n FC1(16,8)\n FC2(9,9) x2\n FC3(9,2)\n}",
        "network N {\n input 1x4x4\n Conv1(1,8,3x3/1)\n Conv2(4,4,3x3/1)\n Conv2\n FC1(128,2)\n}",
        "network N {\n input 3x8x8\n Conv1(3,8,3x3/1)\n Conv1(3,8,5x5/1)\n FC1(512,2)\n}",
        "network N {\n input 3x8x8\n Conv1(3,8,3x3/1) x2\n FC1(512,2)\n}",
    ]
    .iter()
    .enumerate()
    {
        sources.push((format!("inline {i}"), src.to_string()));
    }
    let mut applied = 0;
    for (name, source) in &sources {
        let (_, diags) = snnc::compile_with_diagnostics(source, None);
        for d in diags.iter() {
            let (Some(help), Some(primary)) = (d.help(), d.primary()) else {
                continue;
            };
            let Some(new) = suggested_signature(&help) else {
                continue;
            };
            let Some(fixed) = apply_suggestion(source, primary.offset(), &new) else {
                continue;
            };
            let (_, after) = snnc::compile_with_diagnostics(&fixed, None);
            // The same error, or one of an earlier stage, at the same place: the help led
            // into another error of that check (e.g. `Conv3(32,64,…) x2`: not C→C).
            let still = after.iter().any(|e| {
                e.primary().map(|l| l.offset()) == Some(primary.offset())
                    && stage(&e.code()) <= stage(&d.code())
            });
            assert!(
                !still,
                "{name}: applying `{new}` from the help of {} did not remove it:\n{}",
                d.code(),
                after.render_text("fixed.snn", &fixed, 100, false)
            );
            applied += 1;
        }
    }
    // The fixtures and the inline cases above hold at least this many such helps.
    assert!(applied >= 8, "only {applied} suggestions applied");
}

/// Issue 13 item 8: snnTorch's names get a "did you mean", the classifier help has no
/// stray backtick.
#[test]
fn snntorch_names_and_classifier_near_misses_get_clean_helps() {
    let help_of = |src: &str| {
        let d = snnc::compile(src).unwrap_err();
        let first = d.iter().next().unwrap();
        (
            first.code(),
            first.message(),
            first.help().unwrap_or_default(),
        )
    };
    let (code, _, help) =
        help_of("network N {\n input 1x2x2\n neuron LIF(beta=0.9)\n FC1(4,2) LIF\n FC2(2,2)\n}");
    assert_eq!(code, "snnc::syntax::arguments");
    assert!(help.starts_with("did you mean `leak`?"), "{help}");
    let (code, _, help) = help_of("network N {\n input 1x2x2\n FC1(4,2) Leaky\n FC2(2,2)\n}");
    assert_eq!(code, "snnc::syntax::unknown_activation");
    assert!(help.starts_with("did you mean `LIF`?"), "{help}");
    let (code, _, help) =
        help_of("network N {\n input 1x2x2\n neuron Leaky(beta=0.9)\n FC1(4,2) LIF\n FC2(2,2)\n}");
    assert_eq!(code, "snnc::syntax::bad_value");
    assert!(help.starts_with("did you mean `LIF`?"), "{help}");
    let (code, message, help) = help_of("network N {\n input 1x2x2\n FC1(4,2)\n Softmax\n}");
    assert_eq!(code, "snnc::syntax::unknown_classifier");
    assert_eq!(message, "unknown classifier `Softmax`");
    assert_eq!(help, "did you mean `softmax`?");
    let (_, message, help) = help_of("network N {\n input 1x2x2\n FC1(4,2)\n argmax\n}");
    assert_eq!(message, "unknown classifier `argmax`");
    assert_eq!(help, "the classifiers are `softmax` and `stochmax`");
}
