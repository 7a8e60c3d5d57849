//! `snnc eval` agrees with the run that wrote the checkpoint (issues 13.2, 11.6, 11.3):
//! settings come from the checkpoint unless a flag says otherwise, and are announced; a
//! threshold that differs from the network file's is a coded warning; a checkpoint whose
//! tensors do not fit the network, or hold non-finite values, is refused with exit 1.
//!
//! Owner: the eval/checkpoint work. Invariants: only the `snnc` binary is run; runs are tiny
//! (embedded data, 32 images, T ≤ 4, `tests/fixtures/cli/fc.snn`).

mod common;
use common::{snnc, text};
use std::path::{Path, PathBuf};
use std::process::Output;

type R = Result<(), Box<dyn std::error::Error>>;

const FC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cli/fc.snn");

/// Trains `file` for one epoch on 32 embedded images into `dir/run` with `extra` flags.
fn train(file: &str, dir: &Path, extra: &[&str]) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let out = dir.join("run");
    let mut args = vec![
        "train",
        file,
        "--out",
        out.to_str().ok_or("path")?,
        "--data",
        "embedded",
        "--train-limit",
        "32",
        "--test-limit",
        "32",
        "--epochs",
        "1",
    ];
    args.extend(extra);
    let r = snnc(&args);
    assert!(r.status.success(), "{}", text(&r.stderr));
    Ok(out.join("weights.safetensors"))
}

/// `snnc eval FILE --weights W` on 32 embedded test images, plus `extra`.
fn eval(file: &str, weights: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        file,
        "--weights",
        weights.to_str().expect("utf-8 path"),
        "--data",
        "embedded",
        "--test-limit",
        "32",
    ];
    args.extend(extra);
    snnc(&args)
}

/// `fc.snn` with `from` replaced by `to`, written into `dir`.
fn variant(dir: &Path, from: &str, to: &str) -> Result<String, Box<dyn std::error::Error>> {
    let src = std::fs::read_to_string(FC)?;
    assert!(src.contains(from), "fixture changed: no `{from}`");
    let path = dir.join("variant.snn");
    std::fs::write(&path, src.replace(from, to))?;
    Ok(path.to_str().ok_or("path")?.to_string())
}

/// The batch, T and seed not given to eval are the training run's, each announced.
#[test]
fn eval_takes_batch_timesteps_and_seed_from_the_checkpoint() -> R {
    let d = tempfile::tempdir()?;
    let w = train(
        FC,
        d.path(),
        &["--batch", "16", "--timesteps", "2", "--seed", "7"],
    )?;
    let r = eval(FC, &w, &[]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("note: T = 2 from the checkpoint (the file says 3"),
        "{err}"
    );
    assert!(err.contains("note: batch 16 from the checkpoint"), "{err}");
    assert!(err.contains("note: seed 7 from the checkpoint"), "{err}");
    assert!(text(&r.stdout).contains("T = 2)"), "{}", text(&r.stdout));
    // eval-report.json beside the weights: the report's format with the resolved settings.
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        w.with_file_name("eval-report.json"),
    )?)?;
    assert_eq!(rep["timesteps"], 2);
    assert_eq!(rep["config"]["batch"], 16);
    assert_eq!(rep["config"]["seed"], 7);
    assert_eq!(rep["config"]["test_images"], 32);
    let acc = rep["test_accuracy"].as_f64().ok_or("test_accuracy")?;
    assert!(
        text(&r.stdout).contains(&format!("accuracy {:.2}%", 100.0 * acc)),
        "{}",
        text(&r.stdout)
    );
    // Flags win, and then nothing is announced for them.
    let r = eval(FC, &w, &["--batch", "8", "--timesteps", "3", "--seed", "1"]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(!err.contains("from the checkpoint"), "{err}");
    assert!(text(&r.stdout).contains("T = 3)"), "{}", text(&r.stdout));
    Ok(())
}

/// Issue 11.6: a threshold in the checkpoint that differs from the file's is used, with a
/// coded warning naming the slot, both values, and why.
#[test]
fn a_threshold_that_differs_from_the_file_is_a_coded_warning() -> R {
    let d = tempfile::tempdir()?;
    let w = train(FC, d.path(), &["--batch", "32"])?;
    let edited = variant(
        d.path(),
        "FC1(49,16) LIF",
        "FC1(49,16) LIF(threshold = 0.5)",
    )?;
    let r = eval(&edited, &w, &[]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("warning[snnc::train::checkpoint_threshold]: `threshold.FC1.1` is 1 in the checkpoint but 0.5 in the network file; the checkpoint's 1 is used"),
        "{err}"
    );
    // The same file as training: no warning.
    let r = eval(FC, &w, &[]);
    assert!(!text(&r.stderr).contains("warning"), "{}", text(&r.stderr));
    Ok(())
}

/// Issue 11.6: a checkpoint of another shape is refused, naming the tensor and both shapes.
#[test]
fn a_checkpoint_of_another_shape_is_refused_naming_the_mismatch() -> R {
    let d = tempfile::tempdir()?;
    let w = train(FC, d.path(), &["--batch", "32"])?;
    let wider = variant(
        d.path(),
        "FC1(49,16) LIF\n    FC2(16,10)",
        "FC1(49,20) LIF\n    FC2(20,10)",
    )?;
    let r = eval(&wider, &w, &[]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("snnc::train::checkpoint"), "{err}");
    assert!(
        err.contains("expected shape [20, 49], found [16, 49]"),
        "{err}"
    );
    Ok(())
}

/// Issue 11.3 at eval: a NaN among the weights is refused naming the tensor, before running.
#[test]
fn eval_names_the_non_finite_tensor() -> R {
    let d = tempfile::tempdir()?;
    let w = train(FC, d.path(), &["--batch", "32"])?;
    let bytes = std::fs::read(&w)?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let (name, entry) = header
        .as_object()
        .ok_or("header")?
        .iter()
        .find(|(k, _)| k.starts_with("FC2"))
        .ok_or("no FC2 tensor")?;
    let start = 8 + n + entry["data_offsets"][0].as_u64().ok_or("offset")? as usize;
    let mut bad = bytes.clone();
    bad[start..start + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let path = d.path().join("inf.safetensors");
    std::fs::write(&path, bad)?;
    let r = eval(FC, &path, &[]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("`{name}` holds a non-finite value (inf)")),
        "{err}"
    );
    Ok(())
}

/// Issue 12.3: converting a stochmax network is refused with a reason and a code, since the
/// simulated SNN would be classified by its raw outputs instead of `log σ(W_ρ h + b_ρ) + o`.
#[test]
fn converting_a_stochmax_network_is_refused() -> R {
    let d = tempfile::tempdir()?;
    let file = variant(
        d.path(),
        "    FC2(16,10)\n",
        "    FC2(16,10)\n    stochmax\n",
    )?;
    let out = d.path().join("conv");
    let r = snnc(&[
        "train",
        &file,
        "--out",
        out.to_str().ok_or("path")?,
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
        "--method",
        "conversion",
        "--eval-timesteps",
        "4",
        "--balance-images",
        "8",
        "--balance-steps",
        "4",
    ]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("snnc::train::conversion"), "{err}");
    // Refused before the ANN phase: no epoch ran, no checkpoint was written.
    assert!(!err.contains("epoch 1"), "{err}");
    assert!(!out.join("weights.safetensors").exists());
    assert!(
        err.contains("uses the stochmax classifier, which conversion cannot simulate"),
        "{err}"
    );
    Ok(())
}

/// `check_fits` names the first mismatch: a missing weight, a weight of another shape, a
/// non-scalar threshold, then (in name order) a tensor the network has no slot for;
/// metadata and optimiser state are not mismatches. `check_finite` names the tensor.
#[test]
fn check_fits_and_check_finite_name_the_first_mismatch() -> R {
    use candle_core::{Device, Tensor};
    use snnc::train::checkpoint::{check_finite, check_fits};
    use std::collections::HashMap;
    let dev = Device::Cpu;
    let expected = vec![
        ("FC1".to_string(), vec![2, 3]),
        ("FC2".to_string(), vec![1, 2]),
    ];
    let slots = vec!["threshold.FC1.0".to_string()];
    let mut map: HashMap<String, Tensor> = HashMap::new();
    map.insert(
        "FC1".into(),
        Tensor::zeros((2, 3), candle_core::DType::F32, &dev)?,
    );
    assert_eq!(
        check_fits(&map, &expected, &slots),
        Err("the checkpoint has no weights `FC2` (expected shape [1, 2])".into())
    );
    map.insert(
        "FC2".into(),
        Tensor::zeros((2, 1), candle_core::DType::F32, &dev)?,
    );
    assert_eq!(
        check_fits(&map, &expected, &slots),
        Err("`FC2`: expected shape [1, 2], found [2, 1]".into())
    );
    map.insert(
        "FC2".into(),
        Tensor::zeros((1, 2), candle_core::DType::F32, &dev)?,
    );
    map.insert("threshold.FC1.0".into(), Tensor::new(&[1f32, 2.0], &dev)?);
    assert_eq!(
        check_fits(&map, &expected, &slots),
        Err("`threshold.FC1.0`: expected shape [1], found [2]".into())
    );
    map.insert("threshold.FC1.0".into(), Tensor::new(&[1f32], &dev)?);
    map.insert("meta.epoch".into(), Tensor::new(&[1i64], &dev)?);
    map.insert(
        "adam.m.FC1".into(),
        Tensor::zeros((2, 3), candle_core::DType::F32, &dev)?,
    );
    assert_eq!(check_fits(&map, &expected, &slots), Ok(()));
    map.insert("threshold.FC9.0".into(), Tensor::new(&[1f32], &dev)?);
    map.insert(
        "FC3".into(),
        Tensor::zeros(4, candle_core::DType::F32, &dev)?,
    );
    assert_eq!(
        check_fits(&map, &expected, &slots),
        Err("the checkpoint holds `FC3` (shape [4]), which names no weight or threshold of the network".into())
    );
    assert_eq!(check_finite(&map), Ok(()));
    map.insert("FC2".into(), Tensor::new(&[[0f32, f32::NAN]], &dev)?);
    assert_eq!(
        check_finite(&map),
        Err("the checkpoint's `FC2` holds a non-finite value (NaN)".into())
    );
    Ok(())
}
