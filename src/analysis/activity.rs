//! Spike activity (the paper's SA) and the energy model of an estimate.
//!
//! [`Activity`] is either one rate for every layer (`--spike-rate r`) or rates measured per
//! (layer name, unroll step) by a training/eval report, with a uniform rate as fallback for
//! anything the report does not name. A report is JSON with an array
//! `"activity": [{"layer": "Conv3", "step": 2, "spike_rate": 0.07}, ...]`.
//! The Poisson-coded input's rate may be given under the layer name `Input` (or `Encode`),
//! step 1; otherwise the fallback rate is used for it too. An entry whose rate is `null` (how
//! `train::report` writes an unmeasured NaN) is skipped. This is the form
//! `crate::train::report::Report` writes.
//!
//! Invariant: every rate held is finite and within [0, 1] (the loader rejects others).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

/// The spike activity SA of each layer's output spikes.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// The same rate for every spiking layer (and for the Poisson input).
    Uniform(f64),
    /// Rates per (layer name, unroll step); `fallback` for pairs not measured.
    Measured {
        rates: HashMap<(String, u32), f64>,
        fallback: f64,
    },
}

impl Activity {
    /// The rate of the output spikes of `layer` at unroll `step`.
    pub fn rate(&self, layer: &str, step: u32) -> f64 {
        match self {
            Activity::Uniform(r) => *r,
            Activity::Measured { rates, fallback } => rates
                .get(&(layer.to_string(), step))
                .copied()
                .unwrap_or(*fallback),
        }
    }

    /// The rate of the Poisson-coded input (`Input` or `Encode`, step 1, in a report).
    pub fn input_rate(&self) -> f64 {
        match self {
            Activity::Uniform(r) => *r,
            Activity::Measured { rates, fallback } => ["Input", "input", "Encode"]
                .iter()
                .find_map(|n| rates.get(&(n.to_string(), 1)).copied())
                .unwrap_or(*fallback),
        }
    }

    /// The uniform rate, or the fallback of measured rates.
    pub fn uniform_rate(&self) -> f64 {
        match self {
            Activity::Uniform(r) => *r,
            Activity::Measured { fallback, .. } => *fallback,
        }
    }

    /// Reads the `"activity"` array of a report; `fallback` covers unmeasured layers.
    pub fn from_report_json(text: &str, fallback: f64) -> Result<Activity, ActivityError> {
        check_rate(fallback, "the fallback spike rate")?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ActivityError::Json(e.to_string()))?;
        let entries = value
            .get("activity")
            .and_then(|a| a.as_array())
            .ok_or(ActivityError::NoActivity)?;
        let mut rates = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let bad = |what: &str| ActivityError::Entry {
                index: i,
                what: what.to_string(),
            };
            let layer = entry
                .get("layer")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("a string \"layer\""))?;
            let step = entry
                .get("step")
                .and_then(|v| v.as_u64())
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s >= 1)
                .ok_or_else(|| bad("an integer \"step\" ≥ 1"))?;
            // A report writes an unmeasured (NaN) rate as null: the fallback covers it.
            if entry.get("spike_rate").is_some_and(|v| v.is_null()) {
                continue;
            }
            let rate = entry
                .get("spike_rate")
                .and_then(|v| v.as_f64())
                .filter(|r| r.is_finite() && (0.0..=1.0).contains(r))
                .ok_or_else(|| bad("a \"spike_rate\" in [0, 1]"))?;
            rates.insert((layer.to_string(), step), rate);
        }
        Ok(Activity::Measured { rates, fallback })
    }

    /// Reads a report file (see [`Activity::from_report_json`]).
    pub fn load(path: &Path, fallback: f64) -> Result<Activity, ActivityError> {
        let text = std::fs::read_to_string(path).map_err(|e| ActivityError::Io(e.to_string()))?;
        Activity::from_report_json(&text, fallback)
    }
}

fn check_rate(r: f64, what: &str) -> Result<(), ActivityError> {
    if r.is_finite() && (0.0..=1.0).contains(&r) {
        Ok(())
    } else {
        Err(ActivityError::Rate {
            what: what.to_string(),
            value: r,
        })
    }
}

/// Why an activity report could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActivityError {
    #[error("cannot read the report: {0}")]
    Io(String),
    #[error("the report is not valid JSON: {0}")]
    Json(String),
    #[error("the report has no \"activity\" array")]
    NoActivity,
    #[error("activity entry {index} lacks {what}")]
    Entry { index: usize, what: String },
    #[error("{what} must lie in [0, 1], got {value}")]
    Rate { what: String, value: f64 },
}

/// Energy per operation, in picojoules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyModel {
    /// Which model: `int32` (Table I), `fp32`, or `custom`.
    pub name: &'static str,
    pub e_mac: f64,
    pub e_ac: f64,
}

impl EnergyModel {
    /// Table I of the paper, 45 nm CMOS, 32-bit integer: MAC 3.2 pJ, AC 0.1 pJ.
    pub const INT32: EnergyModel = EnergyModel {
        name: "int32",
        e_mac: 3.2,
        e_ac: 0.1,
    };
    /// 45 nm CMOS, 32-bit float: MAC 4.6 pJ, AC 0.9 pJ.
    pub const FP32: EnergyModel = EnergyModel {
        name: "fp32",
        e_mac: 4.6,
        e_ac: 0.9,
    };

    /// Explicit energies (pJ); `None` unless both are finite and non-negative.
    pub fn custom(e_mac: f64, e_ac: f64) -> Option<EnergyModel> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        (ok(e_mac) && ok(e_ac)).then_some(EnergyModel {
            name: "custom",
            e_mac,
            e_ac,
        })
    }
}

impl Default for EnergyModel {
    fn default() -> Self {
        EnergyModel::INT32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rates_with_fallback() {
        let a = Activity::from_report_json(
            r#"{"accuracy": 0.5, "activity": [
                {"layer": "Conv1", "step": 1, "spike_rate": 0.25},
                {"layer": "Conv3", "step": 2, "spike_rate": 0.05},
                {"layer": "Input", "step": 1, "spike_rate": 0.4},
                {"layer": "FC1", "step": 1, "spike_rate": null}]}"#,
            0.1,
        )
        .unwrap();
        assert_eq!(a.rate("Conv1", 1), 0.25);
        assert_eq!(a.rate("Conv3", 2), 0.05);
        assert_eq!(a.rate("Conv3", 1), 0.1);
        assert_eq!(a.rate("FC1", 1), 0.1, "null: unmeasured");
        assert_eq!(a.input_rate(), 0.4);
        assert_eq!(a.uniform_rate(), 0.1);
    }

    #[test]
    fn bad_reports_are_errors() {
        assert_eq!(
            Activity::from_report_json("{}", 0.1),
            Err(ActivityError::NoActivity)
        );
        assert!(matches!(
            Activity::from_report_json("not json", 0.1),
            Err(ActivityError::Json(_))
        ));
        assert_eq!(
            Activity::from_report_json(
                r#"{"activity":[{"layer":"C","step":0,"spike_rate":0.1}]}"#,
                0.1
            ),
            Err(ActivityError::Entry {
                index: 0,
                what: "an integer \"step\" ≥ 1".into()
            })
        );
        assert!(matches!(
            Activity::from_report_json(
                r#"{"activity":[{"layer":"C","step":1,"spike_rate":1.5}]}"#,
                0.1
            ),
            Err(ActivityError::Entry { index: 0, .. })
        ));
        assert!(matches!(
            Activity::from_report_json(r#"{"activity":[]}"#, f64::NAN),
            Err(ActivityError::Rate { .. })
        ));
    }

    #[test]
    fn energy_models() {
        assert_eq!(EnergyModel::default().e_mac, 3.2);
        assert_eq!(EnergyModel::FP32.e_ac, 0.9);
        assert!(EnergyModel::custom(-1.0, 0.1).is_none());
        assert_eq!(EnergyModel::custom(2.0, 0.5).unwrap().e_ac, 0.5);
    }
}
