//! What a user sees during and after a run (issue 13.4, 13.7): stochmax's loss is shown
//! with its terms, conversion's output is in run order and says what it belongs to, and the
//! report's `wall_s` covers the whole run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use snnc::train::report::{epoch_line, EpochRecord, LossTerms};

type R = Result<(), Box<dyn std::error::Error>>;

/// A small network with LIF layers and a layer applied twice.
const TINY: &str = "network Tiny {\n  input 1x28x28\n  timesteps 2\n  \
    neuron LIF(leak = 0.9, threshold = 1.0)\n  Conv1(1,4,3x3/2) LIF\n  \
    Conv2(4,4,3x3/1) x2\n  AvgPool(2x2/2)\n  FC1(196,10)\n}\n";

struct Run {
    stdout: String,
    stderr: String,
    report: serde_json::Value,
    elapsed: f64,
}

fn train(dir: &Path, source: &str, extra: &[&str]) -> Result<Run, Box<dyn std::error::Error>> {
    let snn = dir.join("net.snn");
    std::fs::write(&snn, source)?;
    let out = dir.join("out");
    let mut args: Vec<&str> = vec![
        "train",
        snn.to_str().ok_or("path")?,
        "--data",
        "embedded",
        "--train-limit",
        "64",
        "--test-limit",
        "20",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--seed",
        "5",
        "--out",
        out.to_str().ok_or("path")?,
    ];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(&args)
        .env("SNNC_PROGRESS_SECS", "0")
        .output()?;
    let elapsed = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "snnc failed:\n{stdout}\n{stderr}");
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    Ok(Run {
        stdout,
        stderr,
        report,
        elapsed,
    })
}

#[test]
fn loss_terms_sum_and_describe() {
    let t = LossTerms {
        ce: 1.25,
        kl: 0.5,
        aux: 0.25,
        neg_entropy: -2.5,
    };
    // 1.25 + 0.5 + 0.25 − 2.5 = −0.5: a negative total, explained by the entropy term.
    assert_eq!(t.total(), -0.5);
    assert_eq!(
        t.describe(),
        "CE 1.2500 + KL 0.5000 + aux 0.2500 − entropy 2.5000"
    );
    let mut sum = None;
    LossTerms::accumulate(&mut sum, &t, 2.0);
    LossTerms::accumulate(&mut sum, &LossTerms::default(), 2.0);
    // (2·t + 2·0) / 4 = t / 2.
    assert_eq!(sum.map(|s| s.mean(4.0).ce), Some(0.625));
    let e = EpochRecord {
        test_loss: None,
        epoch: 1,
        loss: -0.5,
        train_accuracy: 0.5,
        test_accuracy: 0.25,
        loss_terms: Some(t),
    };
    let line = epoch_line(&e);
    assert!(line.starts_with("epoch   1  train loss -0.5000  train acc  50.00%  test acc  25.00%"));
    assert!(
        line.contains("stochmax loss = CE 1.2500 + KL 0.5000"),
        "{line}"
    );
    let softmax = epoch_line(&EpochRecord {
        test_loss: None,
        loss_terms: None,
        ..e
    });
    assert!(!softmax.contains("CE"), "{softmax}");
}

#[test]
fn stochmax_run_shows_and_records_its_loss_terms() -> R {
    let dir = tempfile::tempdir()?;
    let src = TINY.replace("FC1(196,10)", "FC1(196,10)\n  stochmax");
    let run = train(dir.path(), &src, &["--timesteps", "2"])?;
    let epoch = &run.report["epochs"][0];
    let terms = &epoch["loss_terms"];
    let get = |k: &str| terms[k].as_f64().ok_or(format!("no {k} in {terms}"));
    let (ce, kl, aux, ne) = (get("ce")?, get("kl")?, get("aux")?, get("neg_entropy")?);
    let loss = epoch["loss"].as_f64().ok_or("no loss")?;
    // The epoch mean of the total is the sum of the epoch means of its terms.
    assert!(
        (ce + kl + aux + ne - loss).abs() < 1e-4,
        "{ce} + {kl} + {aux} + {ne} != {loss}"
    );
    assert!(ce > 0.0 && kl >= 0.0 && aux > 0.0 && ne <= 0.0, "{terms}");
    assert!(run.stdout.contains("stochmax loss = CE "), "{}", run.stdout);
    // The progress lines off a terminal carry the terms as well.
    assert!(run.stderr.contains("(= CE "), "{}", run.stderr);
    // One record per batch beside the report: 64 images in batches of 16.
    let lines = std::fs::read_to_string(dir.path().join("out").join("batches.jsonl"))?;
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 4);
    assert_eq!(records[3]["images_seen"], 64);
    assert!(records[0]["ce"].is_f64(), "{}", records[0]);
    Ok(())
}

#[test]
fn softmax_run_records_no_loss_terms() -> R {
    let dir = tempfile::tempdir()?;
    let run = train(dir.path(), TINY, &["--timesteps", "2"])?;
    assert!(run.report["epochs"][0].get("loss_terms").is_none());
    assert!(!run.stdout.contains("stochmax loss"), "{}", run.stdout);
    // Epoch lines carry the epoch's speeds; the raster is written and announced.
    assert!(run.stdout.contains("images/s training"), "{}", run.stdout);
    assert!(
        run.stdout.contains("spike raster of test images 1–4"),
        "{}",
        run.stdout
    );
    let raster = std::fs::read_to_string(dir.path().join("out").join("raster.svg"))?;
    // TINY: Conv1 4×14×14, Conv2 applied twice; test images 1–4, one panel each.
    for label in [
        "Conv1 (64 of 784 neurons)",
        "Conv2@2 (64 of 784 neurons)",
        "test image 4",
    ] {
        assert!(raster.contains(label), "{label} not in raster.svg");
    }
    Ok(())
}

#[test]
fn conversion_output_is_in_run_order_and_labelled() -> R {
    let dir = tempfile::tempdir()?;
    let run = train(
        dir.path(),
        TINY,
        &[
            "--method",
            "conversion",
            "--balance-images",
            "8",
            "--balance-steps",
            "50",
            // A long enough run that the process's start-up is small beside it.
            "--eval-timesteps",
            "3,200",
        ],
    )?;
    assert!(
        run.stderr.contains("(conversion, ANN phase)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("(ann)"), "{}", run.stderr);
    let out = &run.stdout;
    let at = |s: &str| out.find(s).ok_or(format!("no `{s}` in:\n{out}"));
    assert!(at("epoch   1")? < at("SNN T =")?, "{out}");
    assert!(at("ANN test accuracy")? < at("SNN T =")?, "{out}");
    assert!(
        out.contains("LIF layers run as IF neurons in the converted SNN (no leak): Conv1, Conv2"),
        "{out}"
    );
    // The final block belongs to the largest evaluated T.
    assert!(
        out.contains("at T = 200 (the report's activity and energy):"),
        "{out}"
    );
    assert!(out.contains("energy at T = 200: "), "{out}");
    // The converted SNN's raster, step by step: its first 100 of T = 200 steps.
    assert!(out.contains("spike raster of test images 1–4"), "{out}");
    let raster = std::fs::read_to_string(dir.path().join("out").join("raster.svg"))?;
    assert!(
        raster.contains("Conv2@2 (64 of 784 neurons)"),
        "no Conv2@2 band"
    );
    assert!(
        raster.contains("steps 1–100 of T = 200"),
        "the steps drawn are not stated"
    );
    assert_eq!(run.report["timesteps"], 200);
    let svg = std::fs::read_to_string(dir.path().join("out").join("accuracy-vs-t.svg"))?;
    assert!(svg.contains("<svg"), "accuracy-vs-t.svg is not an SVG");
    assert_eq!(
        run.report["lif_layers_run_as_if"],
        serde_json::json!(["Conv1", "Conv2"])
    );
    // wall_s covers the run: at least 90 % of the process's measured lifetime.
    let wall = run.report["wall_s"].as_f64().ok_or("no wall_s")?;
    assert!(
        wall >= 0.9 * run.elapsed && wall <= run.elapsed,
        "wall_s {wall} for a process of {} s",
        run.elapsed
    );
    Ok(())
}
