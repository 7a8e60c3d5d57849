//! Per-batch training records, written as JSON Lines beside the report (`batches.jsonl`).
//!
//! Owns: [`BatchRecord`], the append-only [`BatchLog`] writer and [`read_batches`].
//!
//! Invariants:
//! - one JSON object per line, one line per optimiser step, in the order the steps ran;
//! - each line is written whole and flushed before [`BatchLog::append`] returns, so a reader
//!   (or a resumed run) sees every batch that finished; a last line cut off by a crash (no
//!   trailing newline and not valid JSON) is skipped on reading, any other bad line is an error;
//! - non-finite numbers (JSON has none) are written as `null` and read back as NaN;
//! - the stochmax terms are optional: absent for other classifiers, and then not written.
//!
//! The training driver creates the log next to `report.json` ([`BatchLog::create`], or
//! [`BatchLog::open_append`] on resume) and calls [`BatchLog::append`] after every batch;
//! [`crate::train::plot::plot_training`] draws the per-batch loss and accuracy from it.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// The file name of the per-batch records, in the same folder as `report.json`.
pub const FILE_NAME: &str = "batches.jsonl";

/// Reads a number that may have been written as `null` (a non-finite value) as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One optimiser step (one mini-batch) of training.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// 1-based batch number within the epoch.
    pub batch: usize,
    /// Training images seen since the start of the run, this batch included.
    pub images_seen: usize,
    /// The loss the optimiser minimised on this batch (mean over the batch); for stochmax
    /// this is the whole objective, its parts are in the optional fields.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Fraction of the batch classified correctly, in `[0, 1]`.
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    /// The learning rate used for this step (for AGD: its automatic step size).
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Stochmax: the cross-entropy term alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce: Option<f64>,
    /// Stochmax: the KL term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// Stochmax: the auxiliary (retain-head) term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<f64>,
    /// Stochmax: the entropy term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
}

/// The per-batch records file beside a report: `report_path`'s folder joined with
/// [`FILE_NAME`].
pub fn path_beside(report_path: &Path) -> PathBuf {
    report_path
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(FILE_NAME)
}

/// An open `batches.jsonl`, appended to one line per batch.
#[derive(Debug)]
pub struct BatchLog {
    path: PathBuf,
    file: BufWriter<fs::File>,
}

impl BatchLog {
    /// Creates (or truncates) the records file at `path`, for a fresh run.
    /// Errors: the file cannot be created (missing folder, permissions).
    pub fn create(path: &Path) -> io::Result<BatchLog> {
        let file = fs::File::create(path)?;
        Ok(BatchLog {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    /// Opens the records file at `path` for appending (created if absent), for a resumed
    /// run. A last line cut off by a crash (no trailing newline) is removed first, so the
    /// next record starts on its own line.
    pub fn open_append(path: &Path) -> io::Result<BatchLog> {
        let file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let bytes = fs::read(path)?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)?;
        }
        Ok(BatchLog {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }

    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line and flushes it to the file.
    pub fn append(&mut self, record: &BatchRecord) -> io::Result<()> {
        let line = serde_json::to_string(record).map_err(io::Error::other)?;
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.file.flush()
    }
}

/// Reads every record of a `batches.jsonl` in file order. Blank lines are skipped, and so is
/// a last line without a trailing newline that is not valid JSON (a write cut off by a
/// crash). Errors: the file cannot be read; any other malformed line is
/// `io::ErrorKind::InvalidData` naming its 1-based line number.
pub fn read_batches(path: &Path) -> io::Result<Vec<BatchRecord>> {
    let text = fs::read_to_string(path)?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<BatchRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) if !complete && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: line {}: {e}", path.display(), i + 1),
                ))
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, batch: usize, loss: f64) -> BatchRecord {
        BatchRecord {
            epoch,
            batch,
            images_seen: 32 * batch,
            loss,
            accuracy: 0.25,
            lr: 1e-3,
            ..BatchRecord::default()
        }
    }

    #[test]
    fn round_trip_with_optional_terms_and_nan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut log = BatchLog::create(&path).unwrap();
        let plain = record(1, 1, 2.25);
        let stoch = BatchRecord {
            ce: Some(1.5),
            kl: Some(0.125),
            aux: Some(-0.5),
            entropy: Some(0.75),
            ..record(1, 2, -0.43)
        };
        let nan = record(1, 3, f64::NAN);
        for r in [&plain, &stoch, &nan] {
            log.append(r).unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            !text.lines().next().unwrap().contains("\"kl\""),
            "absent terms not written"
        );
        assert!(text.lines().nth(2).unwrap().contains("\"loss\":null"));
        let back = read_batches(&path).unwrap();
        assert_eq!(back[..2], [plain, stoch]);
        assert!(back[2].loss.is_nan());
        assert_eq!(back[2].batch, 3);
    }

    #[test]
    fn cut_last_line_is_skipped_and_resume_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut log = BatchLog::create(&path).unwrap();
        log.append(&record(1, 1, 1.0)).unwrap();
        drop(log);
        // A crash in the middle of the second line.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"epoch\":1,\"bat").unwrap();
        drop(f);
        assert_eq!(read_batches(&path).unwrap(), [record(1, 1, 1.0)]);

        let mut log = BatchLog::open_append(&path).unwrap();
        log.append(&record(1, 2, 0.5)).unwrap();
        assert_eq!(
            read_batches(&path).unwrap(),
            [record(1, 1, 1.0), record(1, 2, 0.5)]
        );
    }

    #[test]
    fn malformed_middle_line_is_invalid_data_with_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = serde_json::to_string(&record(1, 1, 1.0)).unwrap();
        fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let err = read_batches(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2"), "{err}");
        fs::write(&path, "not json\n{}\n").unwrap();
        let err = read_batches(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(read_batches(&dir.path().join("absent.jsonl")).is_err());
        assert!(BatchLog::create(&dir.path().join("no/such/dir/b.jsonl")).is_err());
    }

    #[test]
    fn path_beside_report() {
        assert_eq!(
            path_beside(Path::new("runs/a/report.json")),
            Path::new("runs/a/batches.jsonl")
        );
        assert_eq!(
            path_beside(Path::new("report.json")),
            Path::new("batches.jsonl")
        );
    }
}
