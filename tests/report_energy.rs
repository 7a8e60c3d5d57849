//! One energy path (issue 11.2, issue 7): a training report's E_ANN, E_SNN and EE are what
//! `snnc estimate --activity report.json` computes from the same report, for AGD (Poisson
//! and direct input) and conversion; every report carries a top-level `input_spike_rate`
//! (the Poisson input's measured rate, `null` when direct-coded). Tiny runs: 32 embedded
//! images, one epoch.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn ok(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .output()
        .expect("snnc runs");
    assert!(
        o.status.success(),
        "snnc {args:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Trains `body` (a network file) with `extra` flags; returns the report and the estimate
/// of the same file priced with `--activity report.json` (JSON form).
fn train_and_estimate(dir: &Path, body: &str, extra: &[&str]) -> (Value, Value) {
    let file = dir.join("net.snn");
    std::fs::write(&file, body).unwrap();
    let f = file.to_str().unwrap();
    let out = dir.join("run");
    let mut args = vec![
        "train",
        f,
        "--out",
        out.to_str().unwrap(),
        "--data",
        "embedded",
        "--train-limit",
        "32",
        "--test-limit",
        "32",
        "--batch",
        "32",
        "--epochs",
        "1",
    ];
    args.extend(extra);
    ok(&args);
    let report_path = out.join("report.json");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let est: Value = serde_json::from_str(&ok(&[
        "estimate",
        f,
        "--activity",
        report_path.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    (report, est["networks"][0].clone())
}

fn assert_same_energy(report: &Value, est: &Value) {
    let e = &report["energy"];
    for (r, k) in [
        ("e_ann_pj", "e_ann_pj"),
        ("e_snn_pj", "e_snn_pj"),
        ("ee", "ee"),
    ] {
        let (a, b) = (e[r].as_f64().unwrap(), est[k].as_f64().unwrap());
        assert!(close(a, b), "{r}: report {a}, estimate --activity {b}");
    }
    assert_eq!(report["timesteps"], est["timesteps"]);
}

const POISSON: &str = "network Tiny {\n    input 1x28x28\n    timesteps 4\n    \
    encode poisson\n    Pool(4x4/4)\n    FC1(49,16) LIF\n    FC2(16,10)\n}\n";

#[test]
fn agd_poisson_report_energy_equals_estimate_activity() {
    let dir = tempfile::tempdir().unwrap();
    let (report, est) = train_and_estimate(dir.path(), POISSON, &[]);
    let rate = report["input_spike_rate"]
        .as_f64()
        .expect("Poisson input rate");
    assert!(rate > 0.0 && rate < 1.0, "{rate}");
    // The same rate as the report's Input activity record.
    let input = report["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["layer"] == "Input")
        .unwrap();
    assert_eq!(input["spike_rate"].as_f64(), Some(rate));
    assert_same_energy(&report, &est);
}

#[test]
fn agd_direct_report_has_null_input_rate_and_the_same_energy() {
    let dir = tempfile::tempdir().unwrap();
    let body = POISSON.replace("encode poisson", "encode direct");
    let (report, est) = train_and_estimate(dir.path(), &body, &[]);
    assert!(report["input_spike_rate"].is_null(), "{report}");
    assert_same_energy(&report, &est);
}

#[test]
fn conversion_report_energy_equals_estimate_activity() {
    let dir = tempfile::tempdir().unwrap();
    let body = "network Tiny {\n    input 1x28x28\n    timesteps 16\n    method conversion\n    \
        Pool(4x4/4)\n    FC1(49,16) IF\n    FC2(16,10)\n}\n";
    let (report, est) = train_and_estimate(
        dir.path(),
        body,
        &["--eval-timesteps", "8,16", "--balance-images", "32"],
    );
    assert!(report["input_spike_rate"].as_f64().is_some(), "{report}");
    assert_same_energy(&report, &est);
}
