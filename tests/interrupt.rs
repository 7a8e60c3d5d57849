//! Ctrl-C during `snnc train` (issue 11.10): SIGINT finishes the running batch, writes an
//! atomic checkpoint of the position inside the epoch and exits 130; `--resume` from it ends
//! with the same weights, epoch losses and per-batch losses, bit for bit, as the uninterrupted
//! run with the same seed (softmax, and stochmax, whose noise comes from the sequential random
//! stream whose position the checkpoint records).
//!
//! Owner: the train driver's interrupt handling. Invariants: the signal is sent only after
//! the child has written a per-batch record (`batches.jsonl`), never after a bare sleep;
//! every wait has a generous timeout and kills the child when it expires.
#![cfg(unix)]

mod common;
use common::epoch_losses;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use snnc::train::checkpoint;

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

const TIMEOUT: Duration = Duration::from_secs(180);

fn tiny(classifier: &str) -> String {
    format!(
        "network Tiny {{\n  input 1x28x28\n  timesteps 4\n  \
         neuron LIF(leak = 0.9, threshold = 1.0)\n  Conv1(1,4,3x3/2) LIF\n  \
         Conv2(4,4,3x3/1) x2\n  AvgPool(2x2/2)\n  FC1(196,10)\n  {classifier}\n}}\n"
    )
}

/// 320 training images in batches of 8: 40 batches per epoch, 80 in the run.
const BATCHES_PER_EPOCH: usize = 40;

fn args<'a>(snn: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        snn,
        "--out",
        out,
        "--data",
        "embedded",
        "--train-limit",
        "320",
        "--test-limit",
        "16",
        "--batch",
        "8",
        "--timesteps",
        "2",
        "--seed",
        "9",
        "--epochs",
        "2",
    ]
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("batches.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn sigint(child: &Child) -> R {
    let st = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()?;
    assert!(st.success(), "kill -s INT failed");
    Ok(())
}

/// Waits for `child` to exit (killing it after [`TIMEOUT`]).
fn wait(child: &mut Child) -> R<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() > TIMEOUT {
            child.kill()?;
            return Err("snnc did not exit in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `ready()` holds, failing if the child exits first or after [`TIMEOUT`].
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) -> R {
    let start = Instant::now();
    while !ready() {
        if let Some(st) = child.try_wait()? {
            return Err(format!("snnc exited ({st}) before {what}").into());
        }
        if start.elapsed() > TIMEOUT {
            child.kill()?;
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn spawn(args: &[&str], stderr: &Path) -> R<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr)?)
        .spawn()?)
}

fn interrupted_run_resumes_exactly(classifier: &str) -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, tiny(classifier))?;
    let snn = snn.to_str().ok_or("path")?;
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let (whole_s, cut_s) = (whole.to_str().ok_or("path")?, cut.to_str().ok_or("path")?);
    // The uninterrupted run.
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args(snn, whole_s))
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same run, sent SIGINT once it has finished a batch.
    let log = dir.path().join("cut.stderr");
    let mut child = spawn(&args(snn, cut_s), &log)?;
    wait_for(&mut child, "the first batch record", || {
        !records(&cut).is_empty()
    })?;
    sigint(&child)?;
    let st = wait(&mut child)?;
    let err = std::fs::read_to_string(&log)?;
    assert_eq!(st.code(), Some(130), "{err}");
    let weights = checkpoint::weights_path(&cut);
    assert!(
        err.contains(&format!("checkpoint written to {}", weights.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "resume with: snnc train {snn} --out {cut_s} --resume"
        )),
        "{err}"
    );
    assert!(err.contains("[snnc::train::interrupted]"), "{err}");
    // The checkpoint records where the run stopped: after exactly the batches logged.
    let (_, meta) = checkpoint::load(&weights)?;
    let pos = meta
        .position
        .clone()
        .ok_or("no position in the checkpoint")?;
    let done = records(&cut).len();
    assert_eq!(meta.epoch * BATCHES_PER_EPOCH + pos.batch, done);
    assert!(done < 2 * BATCHES_PER_EPOCH, "the run was not interrupted");
    assert_eq!(pos.seen, pos.batch * 8);
    // No temporary file is left beside the checkpoint.
    let leftovers: Vec<_> = std::fs::read_dir(&cut)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Resume with none of the settings repeated.
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args([
            "train", snn, "--out", cut_s, "--data", "embedded", "--epochs", "2", "--resume",
        ])
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(epoch_losses(&cut)?, epoch_losses(&whole)?);
    let per_batch = |d: &Path| -> Vec<(u64, u64, f64)> {
        records(d)
            .iter()
            .map(|r| {
                (
                    r["epoch"].as_u64().unwrap_or(0),
                    r["batch"].as_u64().unwrap_or(0),
                    r["loss"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect()
    };
    let (a, b) = (per_batch(&cut), per_batch(&whole));
    assert_eq!(b.len(), 2 * BATCHES_PER_EPOCH);
    assert_eq!(
        a, b,
        "per-batch losses of the resumed and the uninterrupted run"
    );
    let (wa, ma) = checkpoint::load(&weights)?;
    let (wb, mb) = checkpoint::load(&checkpoint::weights_path(&whole))?;
    assert_eq!((ma.epoch, ma.position), (2, None));
    assert_eq!(mb.epoch, 2);
    let mut names: Vec<&String> = wb.keys().filter(|k| !k.starts_with("meta.")).collect();
    names.sort();
    assert!(names.iter().any(|n| n.as_str() == "FC1"));
    for name in names {
        let x: Vec<f32> = wa[name]
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        let y: Vec<f32> = wb[name]
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        assert_eq!(x, y, "{name}");
    }
    Ok(())
}

#[test]
fn sigint_checkpoints_mid_epoch_and_resume_is_exact() -> R {
    interrupted_run_resumes_exactly("")
}

#[test]
fn sigint_resume_is_exact_for_stochmax() -> R {
    interrupted_run_resumes_exactly("stochmax")
}

/// A second Ctrl-C aborts at once, still with status 130; whatever checkpoint is left in
/// place is a complete one (written atomically).
#[test]
fn second_sigint_aborts_with_130() -> R {
    let dir = tempfile::tempdir()?;
    let snn = dir.path().join("tiny.snn");
    std::fs::write(&snn, tiny(""))?;
    let snn = snn.to_str().ok_or("path")?;
    let out = dir.path().join("run");
    let out_s = out.to_str().ok_or("path")?;
    let log = dir.path().join("stderr");
    let mut a = args(snn, out_s);
    // Large batches: the first SIGINT's batch is still running when the second arrives.
    let i = a.iter().position(|x| *x == "--batch").ok_or("--batch")?;
    a[i + 1] = "160";
    let mut child = spawn(&a, &log)?;
    wait_for(&mut child, "the first batch record", || {
        !records(&out).is_empty()
    })?;
    // Two signals while one large batch runs: the first asks for a checkpoint, the second
    // (registered as an abort) ends the process at once; when they coalesce or the batch
    // ends in between, the first interrupt's checkpoint ends it. Either way: 130.
    sigint(&child)?;
    sigint(&child)?;
    let st = wait(&mut child)?;
    let err = std::fs::read_to_string(&log)?;
    assert_eq!(st.code(), Some(130), "{err}");
    // The second signal ends the process before the checkpoint is reported, unless the
    // checkpoint was written before it was delivered.
    assert!(!err.contains("panicked"), "{err}");
    // Whatever happened, the checkpoint in place (if any) is a complete one.
    let w = checkpoint::weights_path(&out);
    if w.exists() {
        checkpoint::load(&w)?;
    }
    Ok(())
}
