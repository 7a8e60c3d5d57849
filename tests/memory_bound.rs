//! Issue 11.4: the activation memory of a training or evaluation step is estimated from
//! shapes before anything is allocated, and a step that does not fit the available memory
//! is refused with `snnc::train::memory` (exit 1) naming the size and the remedy.

use snnc::backend::candle::netbuild::NetBuilder;
use snnc::ir::{Activation, NeuronKind, NeuronSpec, Reset, Shape};
use snnc::train::error::TrainError;
use snnc::train::memory::{check_against, parse_meminfo, step_bytes, EVAL_FACTOR, TRAIN_FACTOR};
use std::process::Command;
use std::time::{Duration, Instant};

fn lif() -> Activation {
    Activation::Spiking(NeuronSpec {
        kind: NeuronKind::Lif,
        leak: 0.9,
        threshold: 0.5,
        reset: Reset::Subtract,
    })
}

#[test]
fn step_bytes_is_the_documented_sum() {
    // Input 1x4x4 (16, ANN side, once), encode (16 per step), FC1 12 per step, FC2 3 per
    // step: Σ = 16 + T·B·(16 + 12 + 3) with T = 5, B = 7 → 16·7 + 5·7·31 elements.
    let net = NetBuilder::new("n", Shape::new(1, 4, 4), 5)
        .fc("FC1", 16, 12, lif())
        .fc("FC2", 12, 3, Activation::None)
        .build();
    let elements = step_bytes(&net, 7, 5, false) / 4 / EVAL_FACTOR;
    let per_step: u64 = net
        .graph
        .node_weights()
        .map(|n| {
            let f = n.out_shape.and_then(|s| s.features()).unwrap_or(0);
            if n.domain == Some(snnc::ir::Domain::Snn) {
                5 * 7 * f
            } else {
                7 * f
            }
        })
        .sum();
    assert_eq!(elements, per_step);
    assert!(per_step >= 5 * 7 * (12 + 3), "{per_step}");
    assert_eq!(
        step_bytes(&net, 7, 5, true) / TRAIN_FACTOR,
        step_bytes(&net, 7, 5, false) / EVAL_FACTOR
    );
    // Saturates instead of overflowing.
    assert_eq!(step_bytes(&net, usize::MAX, usize::MAX, true), u64::MAX);
}

#[test]
fn meminfo_is_parsed_in_bytes() {
    let text = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
    assert_eq!(parse_meminfo(text), Some(8_000_000 * 1024));
    assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    assert_eq!(parse_meminfo("MemAvailable: lots kB\n"), None);
}

#[test]
fn a_step_over_the_available_memory_is_refused_with_a_code() {
    let net = NetBuilder::new("n", Shape::new(1, 4, 4), 5)
        .fc("FC1", 16, 12, lif())
        .fc("FC2", 12, 3, Activation::None)
        .build();
    let need = step_bytes(&net, 8, 5, true);
    assert!(check_against(&net, 8, 5, true, Some(need)).is_ok());
    assert!(check_against(&net, 8, 5, true, None).is_ok());
    let e = check_against(&net, 8, 5, true, Some(need - 1)).expect_err("refused");
    assert!(matches!(
        e,
        TrainError::Memory {
            batch: 8,
            timesteps: 5,
            ..
        }
    ));
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains("batch of 8") && msg.contains("5 time steps"),
        "{msg}"
    );
    let code = miette::Diagnostic::code(&e).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("snnc::train::memory"));
    let help = miette::Diagnostic::help(&e)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(
        help.contains("--batch") && help.contains("--timesteps"),
        "{help}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn snnc_train_refuses_a_huge_step_quickly_without_allocating() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cli/fc.snn");
    let dir = std::env::temp_dir().join(format!("snnc-memory-{}", std::process::id()));
    let start = Instant::now();
    // 32 images × 10⁹ steps × (16 + 10 + 784/...) activations: terabytes.
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["train", file, "--data", "embedded", "--train-limit", "32"])
        .args(["--test-limit", "32", "--batch", "32", "--epochs", "1"])
        .args(["--timesteps", "1000000000", "--out"])
        .arg(&dir)
        .output()
        .expect("snnc runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("snnc::train::memory"), "{err}");
    assert!(err.contains("GiB") && err.contains("--batch"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
}
