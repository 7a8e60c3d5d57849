//! Same-seed golden runs (issue 7): short `snnc train` runs at a fixed seed on the embedded
//! data — AGD (with `snnc eval` of its checkpoint), conversion with max-input balancing, and
//! conversion with percentile balancing — whose report numbers (losses, accuracies, spike
//! rates, thresholds, energies) must equal the committed fixtures in `tests/fixtures/golden/`.
//!
//! The fixtures were recorded on the code before the runtime refactor; any change to the
//! numbers is a change of behaviour. Timing fields (`wall_s`, images/s, `*_seconds`) are not
//! compared. Keys a report gains later (a configuration block, say) are allowed: every key of
//! the fixture must be present with an equal value, recursively.
//!
//! The matrix products run on the `gemm` crate's AVX-512 kernels where the CPU has AVX-512F
//! and on its AVX2/FMA kernels elsewhere; the two sum in different orders, so the numbers
//! differ in the last bits and, through spike thresholds, further. Each run therefore has
//! two fixtures: `NAME.avx512.json` (CPUs with AVX-512F) and `NAME.json` (the others); a
//! machine checks the one its CPU runs.
//!
//! Regenerate (only when a behaviour change is intended, and say so in the commit):
//! `SNNC_REGENERATE_GOLDEN=1 cargo test --test golden_runs` (writes the fixture of this
//! machine's kind only).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

type R = Result<(), Box<dyn std::error::Error>>;

/// A small BackRes network: a conv, a shared conv applied twice, a pool and the classifier.
const TINY: &str = "network Tiny {\n  input 1x28x28\n  timesteps 4\n  \
    neuron LIF(leak = 0.9, threshold = 1.0)\n  Conv1(1,4,3x3/2) LIF\n  \
    Conv2(4,4,3x3/1) x2\n  AvgPool(2x2/2)\n  FC1(196,10)\n}\n";

/// Timing fields: they depend on the machine, not on the computation.
const TIMING: [&str; 5] = [
    "wall_s",
    "train_images_per_s",
    "infer_images_per_s",
    "conversion_seconds",
    "balance_seconds",
];

/// The fixture of run `name` for this machine's kind of CPU (see the module doc).
fn fixture(name: &str) -> PathBuf {
    let kind = if avx512() { ".avx512" } else { "" };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(format!("{name}{kind}.json"))
}

/// Whether `gemm` takes its AVX-512 kernels here (its own test: AVX-512F at run time).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn strip_timing(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in TIMING {
                m.remove(k);
            }
            for x in m.values_mut() {
                strip_timing(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_timing),
        _ => {}
    }
}

/// Every key of `want` is in `got` with an equal value (numbers: equal up to 1e-12
/// relative, i.e. the same f32 computation printed through f64).
fn contains(got: &Value, want: &Value, path: &str, errors: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => contains(gv, wv, &format!("{path}.{k}"), errors),
                    None => errors.push(format!("{path}.{k}: missing")),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                errors.push(format!("{path}: {} entries, want {}", g.len(), w.len()));
                return;
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                contains(gv, wv, &format!("{path}[{i}]"), errors);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (
                g.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            if (g - w).abs() > 1e-12 * w.abs().max(1.0) {
                errors.push(format!("{path}: {g} ≠ {w}"));
            }
        }
        (g, w) => {
            if g != w {
                errors.push(format!("{path}: {g} ≠ {w}"));
            }
        }
    }
}

/// Compares `got` with the fixture `name`, or writes it when regenerating.
fn check_golden(name: &str, mut got: Value) -> R {
    strip_timing(&mut got);
    let path = fixture(name);
    if std::env::var_os("SNNC_REGENERATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
        std::fs::write(&path, serde_json::to_string_pretty(&got)? + "\n")?;
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no fixture {} ({e}): record it with SNNC_REGENERATE_GOLDEN=1 on this kind of CPU",
            path.display()
        )
    })?;
    let want: Value = serde_json::from_str(&text)?;
    let mut errors = Vec::new();
    contains(&got, &want, name, &mut errors);
    assert!(
        errors.is_empty(),
        "{name} differs from {}:\n{}",
        path.display(),
        errors.join("\n")
    );
    Ok(())
}

fn snnc(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "snnc {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn read_report(dir: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        dir.join("report.json"),
    )?)?)
}

/// The number after `key ` in `text` (up to a `%`, `,` or space).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| c == '%' || c == ',' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn train_conversion(
    dir: &Path,
    snn: &str,
    balance: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let out = dir.join(format!("conv-{}", balance.replace(':', "-")));
    let out_s = out.to_str().ok_or("path")?;
    snnc(&[
        "train",
        snn,
        "--method",
        "conversion",
        "--data",
        "embedded",
        "--train-limit",
        "320",
        "--test-limit",
        "40",
        "--epochs",
        "2",
        "--lr",
        "0.005",
        "--batch",
        "20",
        "--seed",
        "3",
        "--balance",
        balance,
        "--balance-images",
        "16",
        "--balance-steps",
        "8",
        "--eval-timesteps",
        "5,12",
        "--out",
        out_s,
    ])?;
    read_report(&out)
}

/// AGD: two epochs at T = 4, then `snnc eval` of the checkpoint at the same T and batch.
#[test]
fn golden_agd_run_and_eval() -> R {
    agd_run_and_eval("agd", TINY)
}

/// AGD with the stochmax classifier (its noise and head parameters come from the seed).
#[test]
fn golden_agd_stochmax() -> R {
    agd_run_and_eval(
        "agd-stochmax",
        &TINY.replace("FC1(196,10)", "FC1(196,10)\n  stochmax"),
    )
}

fn agd_run_and_eval(name: &str, source: &str) -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, source)?;
    let out = dir.path().join("agd");
    let (snn_s, out_s) = (snn.to_str().ok_or("path")?, out.to_str().ok_or("path")?);
    snnc(&[
        "train",
        snn_s,
        "--method",
        "agd",
        "--data",
        "embedded",
        "--train-limit",
        "192",
        "--test-limit",
        "48",
        "--epochs",
        "2",
        "--lr",
        "0.005",
        "--batch",
        "16",
        "--seed",
        "7",
        "--out",
        out_s,
    ])?;
    let mut got = read_report(&out)?;
    let weights = out.join("weights.safetensors");
    let eval = snnc(&[
        "eval",
        snn_s,
        "--weights",
        weights.to_str().ok_or("path")?,
        "--data",
        "embedded",
        "--test-limit",
        "48",
        "--batch",
        "16",
    ])?;
    let acc = number_after(&eval, "accuracy ").ok_or("no accuracy in eval's output")?;
    let loss = number_after(&eval, "loss ").ok_or("no loss in eval's output")?;
    got["golden_eval"] = serde_json::json!({ "accuracy_percent": acc, "loss": loss });
    check_golden(name, got)
}

/// Conversion with Sengupta et al.'s max-input balancing (the default).
#[test]
fn golden_conversion_max() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, TINY)?;
    let got = train_conversion(dir.path(), snn.to_str().ok_or("path")?, "max")?;
    check_golden("conversion-max", got)
}

/// Conversion with Rueckauer et al.'s percentile balancing.
#[test]
fn golden_conversion_percentile() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, TINY)?;
    let got = train_conversion(dir.path(), snn.to_str().ok_or("path")?, "percentile:99")?;
    check_golden("conversion-percentile", got)
}
