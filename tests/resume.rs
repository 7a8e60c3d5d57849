//! `--resume` (issue 12.1): a resumed run takes seed, batch, T, optimiser and data limits
//! from its checkpoint and continues exactly as the uninterrupted run; a flag contradicting
//! the checkpoint is refused naming both values.

mod common;
use common::epoch_losses as losses;
use std::path::Path;
use std::process::{Command, Output};

use snnc::train::checkpoint;

type R = Result<(), Box<dyn std::error::Error>>;

const TINY: &str = "network Tiny {\n  input 1x28x28\n  timesteps 4\n  \
    neuron LIF(leak = 0.9, threshold = 1.0)\n  Conv1(1,4,3x3/2) LIF\n  \
    Conv2(4,4,3x3/1) x2\n  AvgPool(2x2/2)\n  FC1(196,10)\n}\n";

fn snnc(args: &[&str], out: &Path) -> Result<Output, Box<dyn std::error::Error>> {
    Ok(Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()?)
}

#[test]
fn resume_continues_the_checkpoints_run() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, TINY)?;
    let snn = snn.to_str().ok_or("path")?;
    let common = ["train", snn, "--data", "embedded", "--test-limit", "16"];
    let first = [
        "--seed",
        "5",
        "--batch",
        "16",
        "--timesteps",
        "3",
        "--optimizer",
        "sgd",
        "--train-limit",
        "64",
    ];
    let (resumed, whole) = (dir.path().join("r"), dir.path().join("u"));
    // Uninterrupted: two epochs.
    let o = snnc(
        &[&common[..], &first[..], &["--epochs", "2"]].concat(),
        &whole,
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One epoch, then --resume to two with none of the settings repeated.
    let o = snnc(
        &[&common[..], &first[..], &["--epochs", "1"]].concat(),
        &resumed,
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = snnc(
        &[&common[..], &["--epochs", "2", "--resume"]].concat(),
        &resumed,
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Issue 13.3: the report records the whole resolved configuration, version and source.
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("report.json"))?)?;
    let c = &rep["config"];
    assert_eq!(
        (
            c["method"].as_str(),
            c["batch"].as_u64(),
            c["timesteps"].as_u64(),
            c["optimizer"].as_str(),
            c["seed"].as_u64(),
            c["train_limit"].as_u64(),
            c["epochs"].as_u64(),
        ),
        (
            Some("agd"),
            Some(16),
            Some(3),
            Some("sgd"),
            Some(5),
            Some(64),
            Some(2)
        )
    );
    assert_eq!(c["lr"].as_f64(), Some(1e-3));
    assert_eq!(c["lr_schedule"].as_str(), Some("constant"));
    assert_eq!(c["classifier"].as_str(), Some("softmax"));
    assert_eq!(c["data_spec"].as_str(), Some("embedded"));
    assert_eq!(
        rep["snnc_version"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        rep["source_fnv1a64"].as_str(),
        Some(snnc::train::driver::fnv1a64(TINY.as_bytes()).as_str())
    );
    let (a, b) = (losses(&resumed)?, losses(&whole)?);
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "resumed {a:?} vs uninterrupted {b:?}");
    let (wa, ma) = checkpoint::load(&checkpoint::weights_path(&resumed))?;
    let (wb, _) = checkpoint::load(&checkpoint::weights_path(&whole))?;
    for name in ["Conv1", "Conv2", "FC1"] {
        let x: Vec<f32> = wa[name].flatten_all()?.to_vec1()?;
        let y: Vec<f32> = wb[name].flatten_all()?.to_vec1()?;
        assert_eq!(x, y, "{name}");
    }
    let s = ma.settings.ok_or("no settings recorded")?;
    assert_eq!(
        (
            ma.seed,
            s.batch,
            s.timesteps,
            s.optimizer.as_str(),
            s.train_limit
        ),
        (5, 16, 3, "sgd", Some(64))
    );
    // A contradicting flag is refused, naming both values.
    let o = snnc(
        &[&common[..], &["--epochs", "3", "--resume", "--seed", "6"]].concat(),
        &resumed,
    )?;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--seed 5") && err.contains("--seed 6"),
        "{err}"
    );
    let o = snnc(
        &[&common[..], &["--epochs", "3", "--resume", "--batch", "8"]].concat(),
        &resumed,
    )?;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--batch 16") && err.contains("--batch 8"),
        "{err}"
    );
    Ok(())
}

/// Issue 11.3: a run whose update makes the weights or the loss non-finite (here at
/// `--lr 1e38`) exits 1 naming what diverged and the last good checkpoint, which is kept.
#[test]
fn divergence_exits_1_and_names_the_last_good_checkpoint() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("fc.snn");
    std::fs::write(
        &snn,
        "network Fc {\n  input 1x28x28\n  timesteps 2\n  FC1(784,32) LIF\n  FC2(32,10)\n}\n",
    )?;
    let snn = snn.to_str().ok_or("path")?;
    let common = [
        "train",
        snn,
        "--data",
        "embedded",
        "--train-limit",
        "32",
        "--test-limit",
        "64",
        "--batch",
        "32",
    ];
    let fresh = dir.path().join("fresh");
    let o = snnc(
        &[&common[..], &["--epochs", "1", "--lr", "1e38"]].concat(),
        &fresh,
    )?;
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("non-finite") || err.contains("NaN") || err.contains("inf"),
        "{err}"
    );
    assert!(err.contains("No checkpoint was written"), "{err}");
    assert!(!checkpoint::weights_path(&fresh).exists());

    let run = dir.path().join("run");
    let o = snnc(&[&common[..], &["--epochs", "1"]].concat(), &run)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let good = std::fs::read(checkpoint::weights_path(&run))?;
    let o = snnc(
        &[&common[..], &["--epochs", "2", "--resume", "--lr", "1e38"]].concat(),
        &run,
    )?;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("last good checkpoint is kept") && err.contains("(epoch 1)"),
        "{err}"
    );
    assert_eq!(std::fs::read(checkpoint::weights_path(&run))?, good);
    Ok(())
}

/// Issue 13.1: off a terminal (stderr is a pipe here), training and the converted SNN's
/// evaluation print progress lines at a steady interval (`SNNC_PROGRESS_SECS`, here 0: every
/// update) with the images done, their rate, the running loss and the ETA.
#[test]
fn progress_lines_off_a_terminal() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, TINY)?;
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .env("SNNC_PROGRESS_SECS", "0")
        .args(["train", snn.to_str().ok_or("path")?, "--data", "embedded"])
        .args(["--train-limit", "64", "--test-limit", "20", "--batch", "32"])
        .args(["--method", "conversion", "--balance-images", "8"])
        .args(["--balance-steps", "4", "--eval-timesteps", "4"])
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let epoch: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("epoch 1/1: "))
        .collect();
    assert_eq!(epoch.len(), 2, "{err}");
    assert!(epoch[0].starts_with("epoch 1/1: 32/64 images, "), "{err}");
    assert!(epoch[1].starts_with("epoch 1/1: 64/64 images, "), "{err}");
    assert!(
        epoch[1].contains(" images/s, loss ") && epoch[1].contains(", ETA 0 s"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("SNN: 1/1 batches, ")),
        "{err}"
    );
    // The conversion report: the Poisson input's rate as a top-level field, the rate of the
    // largest T's run, and conversion's settings in the configuration.
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("o").join("report.json"),
    )?)?;
    let rate = rep["input_spike_rate"]
        .as_f64()
        .ok_or("no input_spike_rate")?;
    assert!(rate > 0.05 && rate < 0.6, "{rate}");
    assert_eq!(
        rep["conversion"][0]["input_spike_rate"].as_f64(),
        Some(rate)
    );
    assert_eq!(
        rep["config"]["conversion"]["balance_images"].as_u64(),
        Some(8)
    );
    assert_eq!(rep["config"]["timesteps"].as_u64(), Some(1));
    Ok(())
}

/// FNV-1a 64 against its published test vectors.
#[test]
fn fnv1a64_vectors() {
    use snnc::train::driver::fnv1a64;
    assert_eq!(fnv1a64(b""), "cbf29ce484222325");
    assert_eq!(fnv1a64(b"a"), "af63dc4c8601ec8c");
    assert_eq!(fnv1a64(b"foobar"), "85944171f73967e8");
}
