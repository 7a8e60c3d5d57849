//! Energy accounting through the binary (issue 11 item 2, issue 13 items 2, 4, 8): the
//! `add` skip rule, real-valued inputs priced as MACs at every step (and the paper's
//! convention as an option), `--activity` taking the report's T and input rate, stochmax
//! heads in the unique parameters, energies labelled per image. Every expected value is
//! computed by hand in the comments.

use std::path::Path;
use std::process::Command;

fn snnc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn json(args: &[&str]) -> (serde_json::Value, String) {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--format", "json"]);
    let (code, out, err) = snnc(&a);
    assert_eq!(code, 0, "{err}");
    (serde_json::from_str(&out).unwrap(), err)
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

const SKIP_ADD: &str = "network S {
    input 1x4x4
    timesteps 25
    Conv1(1,2,3x3/1) LIF
    Conv2(2,2,3x3/1) LIF
    FC1(32,10)
    skip Conv1 -> FC1 add
}
";

#[test]
fn add_skip_and_report_time_steps_and_input_rate() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "s.snn", SKIP_ADD);
    // A conversion-style report: no `Input` row, the input rate and T at the top level.
    let report = write(
        dir.path(),
        "report.json",
        r#"{"timesteps": 10, "input_spike_rate": 0.5,
            "activity": [{"layer": "Conv1", "step": 1, "spike_rate": 0.2},
                         {"layer": "Conv2", "step": 1, "spike_rate": 0.4}]}"#,
    );
    let (v, err) = json(&["estimate", &net, "--activity", &report]);
    let n = &v["networks"][0];
    // T from the report (10), not the file (25), and said on stderr.
    assert_eq!(n["timesteps"], 10);
    assert!(err.contains("T = 10 from the report"), "{err}");
    assert!(err.contains("\"input_spike_rate\""), "{err}");
    let fc1 = &n["layers"][2];
    assert_eq!(fc1["name"], "FC1");
    // The summed maps drive FC1 at 0.2 + 0.4: 320 ops · 0.6 · 0.1 pJ · 10 = 192 pJ.
    assert!(close(f(&fc1["sa"]), 0.6), "{fc1}");
    assert!(close(f(&fc1["energy_pj"]), 192.0), "{fc1}");
    // E_SNN = (288·0.5 + 576·0.2 + 320·0.6)·0.1·10 = 451.2; E_ANN = 1184·3.2 = 3788.8.
    assert!(close(f(&n["e_snn_pj"]), 451.2));
    assert!(close(f(&n["e_ann_pj"]), 3788.8));
    assert_eq!(format!("{:.2}", f(&n["ee"])), "8.40");
    // --timesteps overrides the report's T, with a warning that they differ.
    let (v, err) = json(&["estimate", &net, "--activity", &report, "--timesteps", "5"]);
    assert_eq!(v["networks"][0]["timesteps"], 5);
    assert!(err.contains("measured at T = 10"), "{err}");
    // The text header names the source of T and that energies are per image.
    let (code, text, _) = snnc(&["estimate", &net, "--activity", &report]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("network S: T = 10 (the report's `timesteps`)"),
        "{text}"
    );
    assert!(text.contains("energy per image"), "{text}");
    assert!(text.contains("E_SNN          451.2 pJ per image"), "{text}");
    // A report without any input rate: the fallback, said on stderr.
    let bare = write(
        dir.path(),
        "bare.json",
        r#"{"activity": [{"layer": "Conv1", "step": 1, "spike_rate": 0.2}]}"#,
    );
    let (v, err) = json(&["estimate", &net, "--activity", &bare, "--spike-rate", "0.3"]);
    assert!(err.contains("no input spike rate"), "{err}");
    assert_eq!(v["networks"][0]["timesteps"], 25);
    assert!(close(f(&v["networks"][0]["layers"][0]["sa"]), 0.3));
    // A malformed top-level field is an I/O-class error (exit 2) naming it.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"timesteps": 0, "activity": []}"#,
    );
    let (code, _, err) = snnc(&["estimate", &net, "--activity", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("\"timesteps\""), "{err}");
}

const DIRECT: &str = "network D {
    input 1x8x8
    timesteps 4
    encode direct
    Conv1(1,1,3x3/1) LIF
    FC1(64,10)
}
";

#[test]
fn direct_coding_is_priced_as_macs_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(dir.path(), "d.snn", DIRECT);
    let (v, _) = json(&["estimate", &net, "--spike-rate", "0.2"]);
    let n = &v["networks"][0];
    let conv1 = &n["layers"][0];
    // 8·8·1·9·1 = 576 MACs at each of T = 4 steps: 576·3.2·4 = 7372.8 pJ.
    assert_eq!(
        (conv1["ops"].as_u64(), conv1["times"].as_u64()),
        (Some(576), Some(4))
    );
    assert_eq!(conv1["op"], "MAC");
    assert!(close(f(&conv1["energy_pj"]), 7372.8));
    // FC1: 640 · 0.2 · 0.1 · 4 = 51.2 pJ; E_ANN = (576 + 640)·3.2 = 3891.2.
    let ee = f(&n["ee"]);
    assert!(close(ee, 3891.2 / (7372.8 + 51.2)), "{ee}");
    assert!(ee <= 1.35);
    assert_eq!(n["energy"]["convention"], "strict");
    assert_eq!(n["energy_unit"], "pJ per image");
    // The paper's convention: Conv1 accumulates at its own rate, EE = 32 / (0.2·4) = 40.
    let (v, _) = json(&[
        "estimate",
        &net,
        "--spike-rate",
        "0.2",
        "--convention",
        "paper",
    ]);
    let n = &v["networks"][0];
    assert_eq!(n["layers"][0]["op"], "AC");
    assert!(close(f(&n["ee"]), 40.0));
    assert_eq!(n["energy"]["convention"], "paper");
    let (code, text, _) = snnc(&["estimate", &net, "--spike-rate", "0.2"]);
    assert_eq!(code, 0);
    assert!(text.contains("MAC×T"), "{text}");
    assert!(text.contains("strict pricing"), "{text}");
}

/// The README's tour network: FC2(256,10) with stochmax adds ρ and r, 2·(256·10 + 10).
#[test]
fn stochmax_heads_counted_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let net = write(
        dir.path(),
        "net.snn",
        "network Tiny {
    input 1x28x28
    timesteps 10
    Conv1(1,32,3x3/1) LIF
    Pool(2x2/2)
    Conv2(32,32,3x3/1) x2 LIF
    Pool(2x2/2)
    FC1(1568,256) LIF
    FC2(256,10)
    stochmax
}
",
    );
    // 288 + 9216 + 1568·256 + 2560 = 413472 in layers; 5140 in the heads.
    let (v, _) = json(&["estimate", &net]);
    let p = &v["networks"][0]["parameters"];
    assert_eq!(
        (
            p["layers"].as_u64(),
            p["head"].as_u64(),
            p["total"].as_u64()
        ),
        (Some(413_472), Some(5140), Some(418_612))
    );
    assert_eq!(v["networks"][0]["params"], 418_612);
    let (_, text, _) = snnc(&["estimate", &net]);
    assert!(
        text.contains(
            "unique params  418612 (413472 in layers + 5140 in the stochmax retain/auxiliary heads)"
        ),
        "{text}"
    );
    // A softmax network has no head line.
    let soft = write(
        dir.path(),
        "soft.snn",
        "network A { input 1x4x4; FC1(16,3) LIF; FC2(3,2) }\n",
    );
    let (_, text, _) = snnc(&["estimate", &soft]);
    assert!(text.contains("unique params  54\n"), "{text}");
}
