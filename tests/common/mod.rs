//! Helpers shared by the integration tests that run the `snnc` binary: running it and
//! reading what a run leaves behind. Each test binary uses a subset, hence the `dead_code`
//! allowance.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `snnc` binary built for these tests with `args`; panics only when it cannot
/// start at all (a broken test setup, not a result).
pub fn snnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .output()
        .expect("snnc runs")
}

/// A process stream as text (lossy UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The training loss of every epoch recorded in `dir/report.json`, in order.
pub fn epoch_losses(dir: &Path) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
    Ok(r["epochs"]
        .as_array()
        .ok_or("report.json has no epochs")?
        .iter()
        .filter_map(|e| e["loss"].as_f64())
        .collect())
}
