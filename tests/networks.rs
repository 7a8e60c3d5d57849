//! The paper's networks under `networks/`: they compile clean, meet the paper's parameter
//! counts, keep golden `estimate` (text, JSON) and `show` outputs; the printed rows kept
//! under `tests/fixtures/paper-verbatim/` are reported at the right line with the right help;
//! the EE identity and Eq. 8 hold on compiled networks.

use std::path::{Path, PathBuf};
use std::process::Command;

use snnc::analysis::{self, Activity, EnergyModel, OpKind, Options};
use snnc::ir::Program;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn snn_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "snn") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn networks() -> Vec<PathBuf> {
    snn_files(&Path::new(ROOT).join("networks"))
}

/// `cifar10/agd/vgg5.snn` for a file under `networks/`.
fn rel(p: &Path) -> String {
    p.strip_prefix(Path::new(ROOT).join("networks"))
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn compile(rel_path: &str) -> Program {
    let path = Path::new(ROOT).join("networks").join(rel_path);
    let source = std::fs::read_to_string(&path).unwrap();
    match snnc::compile(&source) {
        Ok(p) => p,
        Err(d) => panic!(
            "{rel_path}:\n{}",
            d.render_text(rel_path, &source, 100, false)
        ),
    }
}

fn uniform(rate: f64, t: u32) -> Options {
    Options {
        timesteps: Some(t),
        activity: Activity::Uniform(rate),
        energy: EnergyModel::INT32,
    }
}

fn snnc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_network_compiles_clean() {
    let files = networks();
    assert!(files.len() >= 25, "{} files", files.len());
    for f in &files {
        let program = compile(&rel(f));
        assert!(!program.networks.is_empty(), "{}", rel(f));
    }
}

/// Unique parameters: exactly as counted by hand, and within 1.5% of the paper's figure.
#[test]
fn parameters_as_the_paper_reports() {
    let cases: [(&str, u64, f64); 10] = [
        ("cifar10/agd/vgg5.snn", 2_214_592, 2.21e6),
        ("cifar10/agd/vgg3x2.snn", 2_177_728, 2.18e6),
        ("cifar10/agd/vgg7.snn", 2_288_320, 2.3e6),
        ("cifar10/agd/vgg3x4.snn", 2_177_728, 2.19e6),
        ("cifar10/hybrid/vgg9.snn", 5_938_880, 5.96e6),
        ("cifar10/hybrid/vgg8x2.snn", 5_349_056, 5.37e6),
        ("imagenet/conversion/vgg16.snn", 123_778_752, 123.8e6),
        ("imagenet/conversion/vgg11x2.snn", 116_111_040, 116.1e6),
        ("cifar10/stdp/resnet2.snn", 18_898_216, 18.9e6),
        ("cifar10/stdp/resnet3.snn", 28_347_064, 28.37e6),
    ];
    for (file, exact, paper) in cases {
        let net = &compile(file).networks[0];
        let params = net.unique_params().unwrap();
        assert_eq!(params, exact, "{file}");
        let gap = (params as f64 - paper).abs() / paper;
        assert!(
            gap < 0.015,
            "{file}: {params} vs {paper} ({:.2}%)",
            gap * 100.0
        );
        let est = analysis::estimate(net, &uniform(0.1, 25));
        assert_eq!(est.parameters.layers, exact, "{file}");
    }
}

/// BackRes nets reach the logical depth of their unshared twins.
#[test]
fn logical_depths_match_twins() {
    let depth =
        |f: &str| analysis::estimate(&compile(f).networks[0], &uniform(0.1, 1)).logical_depth;
    for (a, b, d) in [
        (
            "cifar10/conversion/vgg7.snn",
            "cifar10/conversion/vgg2x4.snn",
            7,
        ),
        (
            "cifar10/conversion/vgg7.snn",
            "cifar10/conversion/vgg3x2.snn",
            7,
        ),
        ("cifar10/agd/vgg5.snn", "cifar10/agd/vgg3x2.snn", 6),
        ("cifar10/agd/vgg7.snn", "cifar10/agd/vgg3x4.snn", 8),
        ("cifar10/hybrid/vgg9.snn", "cifar10/hybrid/vgg8x2.snn", 9),
        (
            "imagenet/conversion/vgg16.snn",
            "imagenet/conversion/vgg11x2.snn",
            15,
        ),
        ("cifar10/stdp/resnet3.snn", "cifar10/stdp/resnet2x2.snn", 5),
        (
            "fashion-mnist/agd/backres.snn",
            "fashion-mnist/agd/unshared.snn",
            5,
        ),
        (
            "fashion-mnist/conversion/vgg-backres.snn",
            "fashion-mnist/conversion/vgg-unshared.snn",
            6,
        ),
    ] {
        assert_eq!((depth(a), depth(b)), (d, d), "{a} / {b}");
    }
}

/// Eq. 8 on compiled layers, checked against hand-computed values.
#[test]
fn eq8_on_compiled_layers() {
    let est = analysis::estimate(
        &compile("cifar10/agd/vgg5.snn").networks[0],
        &uniform(0.1, 25),
    );
    let ops = |name: &str| est.layers.iter().find(|l| l.name == name).unwrap().ops;
    assert_eq!(ops("Conv1"), 32 * 32 * 3 * 9 * 64);
    assert_eq!(ops("Conv2"), 32 * 32 * 64 * 9 * 64);
    assert_eq!(ops("Conv3"), 16 * 16 * 64 * 9 * 64);
    assert_eq!(ops("FC1"), 4096 * 512);
    assert_eq!(ops("FC2"), 512 * 10);
    // Shared weights: VGG3x2's Conv3 rows have the same ops, parameters on step 1 only.
    let est = analysis::estimate(
        &compile("cifar10/agd/vgg3x2.snn").networks[0],
        &uniform(0.1, 25),
    );
    let conv3: Vec<_> = est.layers.iter().filter(|l| l.name == "Conv3").collect();
    assert_eq!(conv3.len(), 2);
    assert_eq!((conv3[0].step, conv3[1].step), (1, 2));
    assert_eq!((conv3[0].params, conv3[1].params), (36_864, 0));
    assert_eq!(conv3[0].ops, conv3[1].ops);
}

/// All-spiking at uniform SA: EE = E_MAC / (E_AC · SA · T) = 32 / (SA · T) with Table I.
#[test]
fn ee_identity_on_all_spiking_networks() {
    for file in [
        "fashion-mnist/agd/convnet.snn",
        "cifar10/agd/vgg3x2.snn",
        "cifar10/conversion/vgg2x4.snn",
    ] {
        let net = &compile(file).networks[0];
        for (sa, t) in [(0.1, 10u32), (0.05, 25), (0.2, 5)] {
            let est = analysis::estimate(net, &uniform(sa, t));
            assert!(est.layers.iter().all(|l| l.op != OpKind::Mac), "{file}");
            let want = 32.0 / (sa * f64::from(t));
            let ee = est.ee.unwrap();
            assert!((ee - want).abs() < 1e-9 * want, "{file}: {ee} vs {want}");
        }
    }
    // The same through the binary's JSON.
    let (code, out, err) = snnc(&[
        "estimate",
        "networks/fashion-mnist/agd/convnet.snn",
        "--spike-rate",
        "0.1",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let net = &v["networks"][0];
    assert_eq!(net["timesteps"], 10);
    assert!((net["ee"].as_f64().unwrap() - 32.0).abs() < 1e-9);
}

/// Hybrid and STDP nets: ReLU layers MAC, spiking layers AC, logits after ReLU MAC.
#[test]
fn mac_and_ac_by_activation() {
    let est = analysis::estimate(
        &compile("cifar10/hybrid/vgg9.snn").networks[0],
        &uniform(0.1, 25),
    );
    let op = |e: &analysis::Estimate, n: &str| e.layers.iter().find(|l| l.name == n).unwrap().op;
    assert_eq!(op(&est, "Conv1"), OpKind::Mac);
    assert_eq!(op(&est, "Conv2"), OpKind::Mac);
    // Conv3, the first LIF layer, is fed the ReLU block's real values at every step: MACs
    // (strict convention); the paper's convention prices it as accumulates.
    assert_eq!(op(&est, "Conv3"), OpKind::Mac);
    assert_eq!(op(&est, "Conv4"), OpKind::Ac);
    assert_eq!(op(&est, "FC2"), OpKind::Ac);
    let est = analysis::estimate(
        &compile("cifar10/stdp/resnet2.snn").networks[0],
        &uniform(0.1, 100),
    );
    assert_eq!(op(&est, "Conv2"), OpKind::Ac);
    assert_eq!(op(&est, "FC1"), OpKind::Mac);
    assert_eq!(op(&est, "FC2"), OpKind::Mac);
}

fn slug(rel_path: &str) -> String {
    rel_path.trim_end_matches(".snn").replace(['/', '-'], "_")
}

#[test]
fn golden_estimate_and_show() {
    for f in networks() {
        let r = rel(&f);
        let path = format!("networks/{r}");
        let (code, text, err) = snnc(&["estimate", &path]);
        assert_eq!(code, 0, "{r}: {err}");
        insta::assert_snapshot!(format!("estimate_text__{}", slug(&r)), text);
        let (code, json, err) = snnc(&["estimate", &path, "--format", "json"]);
        assert_eq!(code, 0, "{r}: {err}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        insta::assert_json_snapshot!(format!("estimate_json__{}", slug(&r)), value);
        let (code, show, err) = snnc(&["show", &path]);
        assert_eq!(code, 0, "{r}: {err}");
        insta::assert_snapshot!(format!("show__{}", slug(&r)), show);
    }
}

/// `# expect: at "TEXT" help "SIG"`: an error on the first line holding TEXT whose help names
/// SIG, the consistent signature.
#[test]
fn paper_verbatim_rows_are_reported_with_the_consistent_signature() {
    let files = snn_files(&Path::new(ROOT).join("tests/fixtures/paper-verbatim"));
    assert!(files.len() >= 10);
    for f in files {
        let source = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let diags = match snnc::compile(&source) {
            Ok(_) => panic!("{name} compiled, but its printed row is inconsistent"),
            Err(d) => d,
        };
        let json = diags.to_json(&name, &source);
        let expects: Vec<(String, String)> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: at \""))
            .map(|l| {
                let (at, sig) = l
                    .split_once("\" help \"")
                    .unwrap_or_else(|| panic!("{name}: bad expectation {l}"));
                (at.to_string(), sig.trim_end_matches('"').to_string())
            })
            .collect();
        assert!(!expects.is_empty(), "{name} has no expectation");
        for (at, sig) in expects {
            let line = source
                .lines()
                .position(|l| !l.trim_start().starts_with('#') && l.contains(&at))
                .unwrap()
                + 1;
            let found = json.as_array().unwrap().iter().any(|d| {
                let help = d["help"].as_str().unwrap_or_default();
                d["severity"] == "error"
                    && help.contains(&sig)
                    && d["labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l["line"] == line)
            });
            assert!(
                found,
                "{name}: no error at line {line} naming {sig}:\n{}",
                diags.render_text(&name, &source, 100, false)
            );
        }
        // The binary agrees: exit 1.
        let (code, _, err) = snnc(&["check", &f.to_string_lossy()]);
        assert_eq!(code, 1, "{name}: {err}");
    }
}

#[test]
fn estimate_exit_codes_and_options() {
    let (code, _, _) = snnc(&["estimate", "networks/does-not-exist.snn"]);
    assert_eq!(code, 2);
    let bad = "tests/fixtures/paper-verbatim/table9-vgg5.snn";
    let (code, _, err) = snnc(&["estimate", bad]);
    assert_eq!(code, 1);
    assert!(err.contains("Conv3(64,64,3x3/1)"), "{err}");
    let vgg5 = "networks/cifar10/agd/vgg5.snn";
    assert_eq!(snnc(&["estimate", vgg5, "--spike-rate", "1.5"]).0, 2);
    assert_eq!(snnc(&["estimate", vgg5, "--timesteps", "0"]).0, 2);
    assert_eq!(snnc(&["estimate", vgg5, "--network", "Nope"]).0, 2);
    assert_eq!(
        snnc(&["estimate", vgg5, "--emac", "1"]).0,
        2,
        "--emac needs --eac"
    );
    // Two networks in one file: both by default, one with --network.
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.snn");
    std::fs::write(
        &two,
        "network A { input 1x4x4; FC1(16,2) }\nnetwork B { input 1x4x4; FC1(16,3) LIF; FC2(3,2) }\n",
    )
    .unwrap();
    let two = two.to_string_lossy().into_owned();
    let names = |args: &[&str]| {
        let mut a = vec!["estimate", two.as_str(), "--format", "json"];
        a.extend_from_slice(args);
        let (code, out, err) = snnc(&a);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&[]), ["A", "B"]);
    assert_eq!(names(&["--network", "B"]), ["B"]);
    let (code, text, _) = snnc(&["estimate", &two, "--timesteps", "4"]);
    assert_eq!(code, 0);
    assert!(text.contains("network A: T = 4 (--timesteps)"), "{text}");
    assert!(text.contains("\nnetwork B: T = 4 (--timesteps)"), "{text}");
    // fp32 and explicit energies scale E_ANN by E_MAC.
    let e_ann = |args: &[&str]| {
        let mut a = vec!["estimate", vgg5, "--format", "json"];
        a.extend_from_slice(args);
        let (code, out, err) = snnc(&a);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["networks"][0]["e_ann_pj"].as_f64().unwrap()
    };
    let int32 = e_ann(&[]);
    assert!((e_ann(&["--energy", "fp32"]) / int32 - 4.6 / 3.2).abs() < 1e-12);
    assert!((e_ann(&["--emac", "1", "--eac", "0.5"]) / int32 - 1.0 / 3.2).abs() < 1e-12);
}

#[test]
fn activity_report_drives_sa() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        r#"{"activity": [{"layer": "Input", "step": 1, "spike_rate": 0.3},
                         {"layer": "Conv1", "step": 1, "spike_rate": 0.2},
                         {"layer": "Conv2", "step": 1, "spike_rate": 0.1},
                         {"layer": "Conv2", "step": 2, "spike_rate": 0.05}]}"#,
    )
    .unwrap();
    let (code, out, err) = snnc(&[
        "estimate",
        "networks/fashion-mnist/agd/backres.snn",
        "--format",
        "json",
        "--activity",
        &report.to_string_lossy(),
        "--spike-rate",
        "0.15",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sa: Vec<(String, u64, f64)> = v["networks"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] == "AC")
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["step"].as_u64().unwrap(),
                l["sa"].as_f64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("Conv1", 1, 0.3),
        ("Conv2", 1, 0.2),
        ("Conv2", 2, 0.1),
        ("FC1", 1, 0.05),
        ("FC2", 1, 0.15),
    ];
    assert_eq!(sa.len(), want.len());
    for ((n, s, r), (wn, ws, wr)) in sa.iter().zip(want) {
        assert_eq!((n.as_str(), *s), (wn, ws));
        assert!((r - wr).abs() < 1e-12, "{n}@{s}: {r} vs {wr}");
    }
    let (code, _, _) = snnc(&[
        "estimate",
        "networks/fashion-mnist/agd/backres.snn",
        "--activity",
        "/nonexistent.json",
    ]);
    assert_eq!(code, 2);
}
