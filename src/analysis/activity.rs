//! Spike activity (the paper's SA) and the energy model of an estimate.
//!
//! [`Activity`] is either one rate for every layer (`--spike-rate r`) or rates measured per
//! (layer name, unroll step) by a training/eval report, with a uniform rate as fallback for
//! anything the report does not name. A report is JSON with an array
//! `"activity": [{"layer": "Conv3", "step": 2, "spike_rate": 0.07}, ...]`.
//! The Poisson-coded input's rate is the report's top-level `"input_spike_rate"` when it has
//! one, else the entry named `Input` (or `Encode`), step 1; otherwise the fallback rate.
//! The report's top-level `"timesteps"` is the T the rates were measured at
//! ([`ActivityReport::load`]).
//! An entry whose rate is `null` (how `train::report` writes an unmeasured NaN) is skipped.
//! This is the form `crate::train::report::Report` writes.
//!
//! The energies per operation are defined here once: [`E_MAC_PJ`] and [`E_AC_PJ`] (Table I).
//!
//! Invariant: every rate held is finite and within [0, 1] (the loader rejects others).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

/// Energy of one 32-bit integer multiply-accumulate, 45 nm CMOS (the paper's Table I), pJ.
pub const E_MAC_PJ: f64 = 3.2;
/// Energy of one 32-bit integer accumulate, 45 nm CMOS (the paper's Table I), pJ.
pub const E_AC_PJ: f64 = 0.1;

/// The layer names under which a report may give the Poisson input's rate (step 1).
const INPUT_NAMES: [&str; 3] = ["Input", "input", "Encode"];

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
            Activity::Measured { rates, fallback } => INPUT_NAMES
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
        Ok(ActivityReport::from_json(text, fallback)?.activity)
    }

    /// The `"activity"` array of a parsed report (see [`Activity::from_report_json`]).
    fn from_report_value(
        value: &serde_json::Value,
        fallback: f64,
    ) -> Result<Activity, ActivityError> {
        check_rate(fallback, "the fallback spike rate")?;
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
        Ok(ActivityReport::load(path, fallback)?.activity)
    }
}

/// Where the Poisson input's rate of a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRateSource {
    /// The report's top-level `"input_spike_rate"`.
    TopLevel,
    /// An `"activity"` entry named `Input` (or `Encode`), step 1.
    ActivityRow,
    /// Neither: the fallback rate stands in.
    Fallback,
}

/// What `estimate --activity` reads from a training/eval report.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityReport {
    /// The measured rates (the input's under `("Input", 1)` whatever its source).
    pub activity: Activity,
    /// The report's top-level `"timesteps"`: the T its rates were measured at, if it says.
    pub timesteps: Option<u32>,
    /// Where the input rate came from.
    pub input_source: InputRateSource,
}

impl ActivityReport {
    /// Parses a report: its `"activity"` array, its optional top-level `"input_spike_rate"`
    /// (in [0, 1]; it takes precedence over an `Input` entry) and `"timesteps"` (≥ 1).
    /// `null` for either counts as absent.
    ///
    /// Errors: invalid JSON, no `"activity"` array, a malformed entry, a rate outside [0, 1],
    /// a `"timesteps"` that is not an integer in [1, 2³²).
    pub fn from_json(text: &str, fallback: f64) -> Result<ActivityReport, ActivityError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ActivityError::Json(e.to_string()))?;
        let mut activity = Activity::from_report_value(&value, fallback)?;
        let top = |key: &str| value.get(key).filter(|v| !v.is_null());
        let timesteps = match top("timesteps") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|t| *t >= 1)
                    .ok_or_else(|| ActivityError::Field {
                        key: "timesteps",
                        what: format!("an integer in [1, 2^32), got {v}"),
                    })?,
            ),
        };
        let mut input_source = InputRateSource::Fallback;
        if let Activity::Measured { rates, .. } = &mut activity {
            if INPUT_NAMES
                .iter()
                .any(|n| rates.contains_key(&(n.to_string(), 1)))
            {
                input_source = InputRateSource::ActivityRow;
            }
            if let Some(v) = top("input_spike_rate") {
                let r = v
                    .as_f64()
                    .filter(|r| r.is_finite() && (0.0..=1.0).contains(r))
                    .ok_or_else(|| ActivityError::Field {
                        key: "input_spike_rate",
                        what: format!("a rate in [0, 1], got {v}"),
                    })?;
                for n in INPUT_NAMES {
                    rates.remove(&(n.to_string(), 1));
                }
                rates.insert(("Input".to_string(), 1), r);
                input_source = InputRateSource::TopLevel;
            }
        }
        Ok(ActivityReport {
            activity,
            timesteps,
            input_source,
        })
    }

    /// Reads a report file (see [`ActivityReport::from_json`]).
    pub fn load(path: &Path, fallback: f64) -> Result<ActivityReport, ActivityError> {
        let text = std::fs::read_to_string(path).map_err(|e| ActivityError::Io(e.to_string()))?;
        ActivityReport::from_json(&text, fallback)
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
    #[error("the report's \"{key}\" must be {what}")]
    Field { key: &'static str, what: String },
}

/// How a spiking layer fed by real values (direct coding, or a ReLU block across an ANN→SNN
/// boundary) is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// Real-valued inputs cost what the hardware does: ops MACs at every step they are fed
    /// (ops·E_MAC·T). The default.
    #[default]
    Strict,
    /// The paper's Eq. 11 as printed: every spiking layer is ops·SA·E_AC·T, a layer fed by
    /// real values at its own output rate.
    Paper,
}

impl std::fmt::Display for Convention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Convention::Strict => "strict",
            Convention::Paper => "paper",
        })
    }
}

/// Energy per operation, in picojoules, and the pricing convention for real-valued inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EnergyModel {
    /// Which model: `int32` (Table I), `fp32`, or `custom`.
    pub name: &'static str,
    /// pJ per multiply-accumulate.
    pub e_mac: f64,
    /// pJ per accumulate.
    pub e_ac: f64,
    /// How a spiking layer fed by real values is priced ([`Convention::Strict`] by default).
    pub convention: Convention,
}

impl EnergyModel {
    /// Table I of the paper, 45 nm CMOS, 32-bit integer: MAC 3.2 pJ, AC 0.1 pJ.
    pub const INT32: EnergyModel = EnergyModel {
        name: "int32",
        e_mac: E_MAC_PJ,
        e_ac: E_AC_PJ,
        convention: Convention::Strict,
    };
    /// 45 nm CMOS, 32-bit float: MAC 4.6 pJ, AC 0.9 pJ.
    pub const FP32: EnergyModel = EnergyModel {
        name: "fp32",
        e_mac: 4.6,
        e_ac: 0.9,
        convention: Convention::Strict,
    };

    /// Explicit energies (pJ); `None` unless both are finite and non-negative.
    pub fn custom(e_mac: f64, e_ac: f64) -> Option<EnergyModel> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        (ok(e_mac) && ok(e_ac)).then_some(EnergyModel {
            name: "custom",
            e_mac,
            e_ac,
            convention: Convention::Strict,
        })
    }

    /// The same energies under another pricing convention.
    pub fn with_convention(self, convention: Convention) -> EnergyModel {
        EnergyModel { convention, ..self }
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
    fn report_input_rate_and_timesteps() {
        // A conversion-style report: no `Input` row, a top-level input rate and T.
        let r = ActivityReport::from_json(
            r#"{"timesteps": 50, "input_spike_rate": 0.12,
                "activity": [{"layer": "FC1", "step": 1, "spike_rate": 0.3}]}"#,
            0.1,
        )
        .unwrap();
        assert_eq!(r.timesteps, Some(50));
        assert_eq!(r.input_source, InputRateSource::TopLevel);
        assert_eq!(r.activity.input_rate(), 0.12);
        assert_eq!(r.activity.rate("FC1", 1), 0.3);
        // The top-level rate wins over an `Input` row; null fields count as absent.
        let r = ActivityReport::from_json(
            r#"{"timesteps": null, "input_spike_rate": 0.2,
                "activity": [{"layer": "Input", "step": 1, "spike_rate": 0.4}]}"#,
            0.1,
        )
        .unwrap();
        assert_eq!((r.timesteps, r.activity.input_rate()), (None, 0.2));
        let r = ActivityReport::from_json(
            r#"{"input_spike_rate": null,
                "activity": [{"layer": "Encode", "step": 1, "spike_rate": 0.4}]}"#,
            0.1,
        )
        .unwrap();
        assert_eq!(r.input_source, InputRateSource::ActivityRow);
        assert_eq!(r.activity.input_rate(), 0.4);
        let r = ActivityReport::from_json(r#"{"activity": []}"#, 0.1).unwrap();
        assert_eq!(r.input_source, InputRateSource::Fallback);
        assert_eq!(r.activity.input_rate(), 0.1);
        // Bad values are errors that name the field.
        for bad in [
            r#"{"timesteps": 0, "activity": []}"#,
            r#"{"timesteps": 2.5, "activity": []}"#,
            r#"{"timesteps": 99999999999, "activity": []}"#,
            r#"{"input_spike_rate": 1.5, "activity": []}"#,
            r#"{"input_spike_rate": "x", "activity": []}"#,
        ] {
            assert!(
                matches!(
                    ActivityReport::from_json(bad, 0.1),
                    Err(ActivityError::Field { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn energy_models() {
        assert_eq!(EnergyModel::default().e_mac, 3.2);
        assert_eq!(EnergyModel::FP32.e_ac, 0.9);
        assert!(EnergyModel::custom(-1.0, 0.1).is_none());
        assert_eq!(EnergyModel::custom(2.0, 0.5).unwrap().e_ac, 0.5);
    }
}
