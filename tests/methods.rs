//! The training-method registry and the runtime errors: every method is found by its name
//! from the CLI, the network file and checkpoints; unknown names and unoffered methods are
//! diagnostics with codes; exit statuses come from the error variant.

use miette::Diagnostic;
use snnc::train::error::TrainError;
use snnc::train::method::{self, METHODS};

fn compile(src: &str) -> snnc::ir::Network {
    snnc::compile(src)
        .map(|p| p.networks.into_iter().next().expect("one network"))
        .unwrap_or_else(|d| panic!("{d:?}"))
}

const NET: &str = "network N {\n  input 1x4x4\n  method METHOD\n  FC1(16,3) LIF\n  FC2(3,2)\n}\n";

#[test]
fn registry_names_round_trip() {
    assert_eq!(method::names(), ["agd", "ann", "conversion", "stdp"]);
    for m in METHODS {
        assert_eq!(
            method::find(m.name()).map(|f| f.name()).ok(),
            Some(m.name())
        );
        assert!(!m.about().is_empty());
    }
    // T: AGD trains at T, the ANN and conversion's ANN phase at 1; conversion's gradient
    // phase checkpoints as `ann`.
    assert_eq!(method::AGD.training_timesteps(7), 7);
    assert_eq!(method::ANN.training_timesteps(7), 1);
    assert_eq!(method::CONVERSION.training_timesteps(7), 1);
    assert_eq!(method::CONVERSION.checkpoint_method(), "ann");
    assert_eq!(method::AGD.checkpoint_method(), "agd");
}

#[test]
fn unknown_method_is_a_coded_usage_error() {
    let e = method::find("hebb").map(|m| m.name()).unwrap_err();
    assert!(matches!(e, TrainError::UnknownMethod(ref n) if n == "hebb"));
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.code().map(|c| c.to_string()).as_deref(),
        Some("snnc::train::method")
    );
    let help = e.help().map(|h| h.to_string()).unwrap_or_default();
    assert!(help.contains("agd, ann, conversion"), "{help}");
    assert_eq!(method::parse_name("ann"), Ok("ann".to_string()));
    assert!(method::parse_name("hebb").is_err());
}

#[test]
fn network_method_maps_through_the_registry() {
    let agd = compile(&NET.replace("METHOD", "agd"));
    assert_eq!(
        method::for_network(&agd).map(|m| m.name()).ok(),
        Some("agd")
    );
    let conv = compile(&NET.replace("METHOD", "conversion"));
    assert_eq!(
        method::for_network(&conv).map(|m| m.name()).ok(),
        Some("conversion")
    );
    let stdp = compile(&NET.replace("METHOD", "stdp"));
    assert_eq!(
        method::for_network(&stdp).map(|m| m.name()).ok(),
        Some("stdp")
    );
    // STDP refuses out-of-range constants of `[train.stdp]` before any training.
    let mut cfg = snnc::train::driver::TrainConfig {
        method: method::STDP,
        ..Default::default()
    };
    assert!(method::STDP.validate(&cfg).is_ok());
    cfg.stdp.dropout = 1.0;
    let e = method::STDP.validate(&cfg).unwrap_err();
    assert!(e.to_string().contains("dropout"), "{e}");
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn exit_codes_follow_the_variant() {
    let nf = TrainError::NonFinite {
        epoch: 1,
        batch: 2,
        loss: f32::NAN,
        what: "the loss became NaN".into(),
        kept: "No checkpoint was written.".into(),
    };
    assert_eq!(nf.exit_code(), 1);
    assert_eq!(
        nf.code().map(|c| c.to_string()).as_deref(),
        Some("snnc::train::non_finite")
    );
    assert_eq!(TrainError::DataMismatch("x".into()).exit_code(), 1);
    assert_eq!(TrainError::Checkpoint("x".into()).exit_code(), 1);
    assert_eq!(TrainError::Config("x".into()).exit_code(), 2);
}

/// The CLI: `--method` takes only registered names; a network's unoffered method and a data
/// set that does not fit are diagnostics with their codes and exit statuses.
#[test]
fn cli_method_and_error_codes() -> Result<(), Box<dyn std::error::Error>> {
    use std::process::Command;
    let dir = tempfile::tempdir()?;
    let bin = env!("CARGO_BIN_EXE_snnc");
    let stdp = dir.path().join("stdp.snn");
    std::fs::write(&stdp, NET.replace("METHOD", "stdp"))?;
    let stdp_s = stdp.to_str().ok_or("path")?;
    let out = Command::new(bin)
        .args(["train", stdp_s, "--method", "hebb"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agd, ann, conversion, stdp"), "{err}");
    // The network's `method stdp` goes through the registry and the driver: T = 0 is a
    // usage error with the driver's config code.
    let out = Command::new(bin)
        .args([
            "train",
            stdp_s,
            "--data",
            "embedded",
            "--timesteps",
            "0",
            "--out",
        ])
        .arg(dir.path().join("o"))
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[snnc::train::config]"), "{err}");
    // 1x4x4 images expected, the embedded set has 1x28x28: an input error, exit 1.
    let out = Command::new(bin)
        .args(["train", stdp_s, "--method", "agd", "--data", "embedded"])
        .args(["--train-limit", "8", "--test-limit", "8", "--out"])
        .arg(dir.path().join("o"))
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[snnc::data::mismatch]"), "{err}");
    Ok(())
}
