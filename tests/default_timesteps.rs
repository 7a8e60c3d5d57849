//! One default T: for the same file, `snnc show`, `snnc estimate`, `snnc train` (its report)
//! and `snnc eval` use the same T, decided once in `ir::defaults::timesteps` (issue 7).
//! Networks under networks/ (most write `timesteps`; the STDP ones and their ConvNN heads do not) are checked with
//! `show` and `estimate`; two tiny networks that write no `timesteps` (AGD: 10, conversion:
//! 500) are also trained and evaluated on 32 embedded images.

mod common;
use common::snnc;
use std::path::{Path, PathBuf};

fn ok(args: &[&str]) -> String {
    let o = snnc(args);
    assert!(
        o.status.success(),
        "snnc {args:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The T `snnc show` prints: `timesteps N` or `timesteps default(N)`.
fn show_t(file: &str) -> u64 {
    let out = ok(&["show", file]);
    let line = out
        .lines()
        .find(|l| l.contains("settings:"))
        .unwrap_or_else(|| panic!("no settings line:\n{out}"));
    let word = line
        .split_whitespace()
        .skip_while(|w| *w != "timesteps")
        .nth(1)
        .unwrap();
    let digits = word.trim_start_matches("default(").trim_end_matches(')');
    digits.parse().unwrap_or_else(|_| panic!("{line}"))
}

/// The T after `T = ` in a line of `out`.
fn t_after(out: &str) -> u64 {
    let rest = &out[out
        .find("T = ")
        .unwrap_or_else(|| panic!("no `T = `:\n{out}"))
        + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

fn estimate_t(file: &str) -> u64 {
    t_after(&ok(&["estimate", file]))
}

fn snn_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            snn_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "snn") {
            out.push(p);
        }
    }
}

#[test]
fn show_and_estimate_agree_on_t_for_the_shipped_networks() {
    let mut files = Vec::new();
    snn_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("networks"),
        &mut files,
    );
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut defaulted = 0;
    for f in &files {
        let f = f.to_str().unwrap();
        let src = std::fs::read_to_string(f).unwrap();
        let (s, e) = (show_t(f), estimate_t(f));
        assert_eq!(s, e, "{f}: show T = {s}, estimate T = {e}");
        if !src.lines().any(|l| l.trim_start().starts_with("timesteps")) {
            // No `timesteps`: the default of the file's method (STDP 100, AGD 10).
            let want = if src.contains("method stdp") {
                100
            } else if src.contains("method conversion") {
                500
            } else {
                10
            };
            assert_eq!(s, want, "{f}");
            defaulted += 1;
        }
    }
    assert!(defaulted >= 1, "no shipped network uses the default T");
}

/// A tiny FC network that writes no `timesteps` (method given by `method`).
fn tiny(dir: &Path, method: &str) -> String {
    let p = dir.join(format!("{method}.snn"));
    std::fs::write(
        &p,
        format!(
            "network Tiny {{\n    input 1x28x28\n    encode direct\n    method {method}\n    \
             Pool(4x4/4)\n    FC1(49,16) IF\n    FC2(16,10)\n}}\n"
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

fn all_four(method: &str, want: u64) {
    let dir = tempfile::tempdir().unwrap();
    let file = tiny(dir.path(), method);
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    assert_eq!(show_t(&file), want, "show");
    assert_eq!(estimate_t(&file), want, "estimate");
    let limits = [
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
    let mut args = vec!["train", file.as_str(), "--out", o];
    args.extend(limits);
    ok(&args);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["timesteps"].as_u64(), Some(want), "train report");
    let ev = ok(&[
        "eval",
        &file,
        "--weights",
        out.join("weights.safetensors").to_str().unwrap(),
        "--data",
        "embedded",
        "--test-limit",
        "32",
    ]);
    assert_eq!(t_after(&ev), want, "eval:\n{ev}");
}

#[test]
fn agd_network_without_timesteps_runs_at_10_everywhere() {
    all_four("agd", 10);
}

#[test]
fn conversion_network_without_timesteps_runs_at_500_everywhere() {
    all_four("conversion", 500);
}

#[test]
fn stdp_network_without_timesteps_runs_at_100_everywhere() {
    // Before issue 9's fix, `snnc train --method stdp` fell back to AGD's 10 while `show`,
    // `estimate` and `eval` said 100.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("stdp.snn");
    std::fs::write(
        &p,
        "network Tiny {\n    input 1x28x28\n    method stdp\n    \
         Conv1(1,4,3x3/1) IF\n    Pool(4x4/4)\n    FC1(196,16)-ReLU\n    FC2(16,10)\n}\n",
    )
    .unwrap();
    let file = p.to_str().unwrap().to_string();
    assert_eq!(snnc::train::defaults::STDP_TIMESTEPS, 100);
    assert_eq!(snnc::train::defaults::train_timesteps_fallback("stdp"), 100);
    assert_eq!(snnc::train::stdp::StdpConfig::default().timesteps, 100);
    let out = dir.path().join("run");
    ok(&[
        "train",
        &file,
        "--out",
        out.to_str().unwrap(),
        "--data",
        "embedded",
        "--train-limit",
        "16",
        "--test-limit",
        "16",
        "--stdp-images",
        "8",
    ]);
    assert_eq!(show_t(&file), 100, "show");
    assert_eq!(estimate_t(&file), 100, "estimate");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["timesteps"].as_u64(), Some(100), "train report");
    let ev = ok(&[
        "eval",
        &file,
        "--weights",
        out.join("weights.safetensors").to_str().unwrap(),
        "--data",
        "embedded",
        "--test-limit",
        "16",
    ]);
    assert_eq!(t_after(&ev), 100, "eval:\n{ev}");
}
