//! Issue 11.9: every layer kind either converts, or `check` and `train --method conversion`
//! say why it cannot, with a code. Max pooling of spike maps is the refused kind
//! (`passes::convertible`); average pooling converts.

use std::process::Command;

const MAX: &str = "network M {
    input 1x28x28
    encode direct
    Conv1(1,4,3x3/1) LIF
    MaxPool(2x2/2)
    FC1(784,10)
}";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_snnc")
}

#[test]
fn max_pool_of_spikes_is_a_conversion_error_only_for_conversion() {
    // Without `method conversion` the network is fine (AGD trains max pools).
    assert!(snnc::compile(MAX).is_ok());
    let conv = MAX.replace("encode direct", "encode direct\n    method conversion");
    let err = snnc::compile(&conv).expect_err("max pool of spikes under conversion");
    assert_eq!(err.codes(), vec!["snnc::conversion::max_pool".to_string()]);
    // The label is on the pool's line.
    let text = err.render_text("m.snn", &conv, 100, false);
    assert!(text.contains("m.snn:6:5"), "{text}");
    // Average pooling converts.
    let avg = conv.replace("MaxPool", "AvgPool");
    assert!(snnc::compile(&avg).is_ok());
    // A max pool in the ANN domain (before any spiking layer, on a direct-coded image) is
    // not a pool of spikes: the ReLU prefix of a hybrid network keeps it.
    let hybrid = "network H {
    input 1x28x28
    method conversion
    Conv1(1,4,3x3/1) ReLU
    MaxPool(2x2/2)
    FC1(784,10) LIF
    FC2(10,10)
}";
    assert!(
        snnc::compile(hybrid).is_ok(),
        "an ANN-domain max pool converts"
    );
}

#[test]
fn train_method_conversion_refuses_max_pool_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.snn");
    std::fs::write(&file, MAX).unwrap();
    let out = Command::new(bin())
        .arg("train")
        .arg(&file)
        .args(["--method", "conversion", "--data", "embedded"])
        .args(["--train-limit", "32", "--test-limit", "32", "--epochs", "1"])
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("snnc::conversion::max_pool") && stderr.contains("MaxPool"),
        "{stderr}"
    );
    // Refused before the ANN phase: nothing was trained or written.
    assert!(!dir.path().join("run").join("weights.safetensors").exists());
}
