//! Progress of training, balancing and evaluation, one style for all. On a terminal: an
//! indicatif bar. Off a terminal (a log, a pipe): a line every [`interval`] seconds with the
//! units done, their rate, the caller's message (running loss, accuracy) and the ETA, so a
//! long epoch written to a log still shows that it is alive. Hidden when not asked for.
//!
//! Epoch summaries are live: the driver calls [`epoch_done`] as soon as an epoch's test
//! evaluation ends (before the next epoch starts), which hands the report so far to the
//! calling thread's epoch sink ([`on_epoch`]; the CLI prints [`epoch_summary`] to stdout).
//! With no sink installed (a library caller, a test) nothing is printed. The sink is
//! per thread, so concurrent runs (tests) do not see each other's epochs.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::report::Report;

/// Seconds between progress lines off a terminal: `SNNC_PROGRESS_SECS` (a number ≥ 0), else 10.
pub fn interval() -> Duration {
    std::env::var("SNNC_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// A terminal bar, periodic log lines, or nothing.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: Option<Lines>,
}

struct Lines {
    prefix: String,
    unit: &'static str,
    len: u64,
    pos: u64,
    msg: String,
    start: Instant,
    last: Instant,
    every: Duration,
}

impl Lines {
    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.pos as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0} s", self.len.saturating_sub(self.pos) as f64 / rate)
        } else {
            "?".into()
        };
        let msg = if self.msg.is_empty() {
            String::new()
        } else {
            format!(", {}", self.msg)
        };
        format!(
            "{}: {}/{} {}, {:.1} {}/s{msg}, ETA {eta}",
            self.prefix, self.pos, self.len, self.unit, rate, self.unit
        )
    }
}

impl Progress {
    /// Progress over `len` units (`images` adds the rate to the bar) labelled `prefix`.
    pub fn new(len: usize, show: bool, prefix: &str, images: bool) -> Self {
        if !show {
            return Progress {
                bar: None,
                lines: None,
            };
        }
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress {
                bar: None,
                lines: Some(Lines {
                    prefix: prefix.to_string(),
                    unit: if images { "images" } else { "batches" },
                    len: len as u64,
                    pos: 0,
                    msg: String::new(),
                    start: now,
                    last: now,
                    every: interval(),
                }),
            };
        }
        let pb = indicatif::ProgressBar::new(len as u64);
        // No `.style` after a key: `{per_sec:.0}` would draw it in colour 0, black.
        let template = if images {
            "{prefix} [{bar:30}] {pos}/{len} images, {msg}, {per_sec} ETA {eta}"
        } else {
            "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}"
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        pb.set_style(style.progress_chars("=> "));
        pb.set_prefix(prefix.to_string());
        Progress {
            bar: Some(pb),
            lines: None,
        }
    }

    /// `n` more units done; off a terminal, a line when the interval has passed.
    pub fn inc(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(l) = &mut self.lines {
            l.pos += n;
            if l.last.elapsed() >= l.every {
                l.last = Instant::now();
                eprintln!("{}", l.line());
            }
        }
    }

    /// The text after the counts (running loss, accuracy).
    pub fn set_message(&mut self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg.clone());
        }
        if let Some(l) = &mut self.lines {
            l.msg = msg;
        }
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        match (&self.bar, &self.lines) {
            (Some(b), _) => b.position(),
            (_, Some(l)) => l.pos,
            _ => 0,
        }
    }

    /// Removes the bar (a terminal) or does nothing (lines stay in the log).
    pub fn finish_and_clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What is called with the report so far each time an epoch ends.
pub type EpochSink = Box<dyn FnMut(&Report)>;

thread_local! {
    static EPOCH_SINK: RefCell<Option<EpochSink>> = const { RefCell::new(None) };
}

/// Installs `sink` as this thread's epoch sink until the returned guard is dropped (the
/// previous sink, if any, is restored then).
pub fn on_epoch(sink: EpochSink) -> EpochSinkGuard {
    let previous = EPOCH_SINK.with(|s| s.borrow_mut().replace(sink));
    EpochSinkGuard { previous }
}

/// Restores the previous epoch sink when dropped.
#[must_use = "the sink is removed when the guard is dropped"]
pub struct EpochSinkGuard {
    previous: Option<EpochSink>,
}

impl Drop for EpochSinkGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        EPOCH_SINK.with(|s| *s.borrow_mut() = previous);
    }
}

/// An epoch has ended (its record is the last of `report.epochs`, its speeds are
/// `report.train_images_per_s`/`infer_images_per_s`): calls this thread's sink, if any.
/// The sink is taken out while it runs, so a sink that trains again does not recurse.
pub fn epoch_done(report: &Report) {
    let sink = EPOCH_SINK.with(|s| s.borrow_mut().take());
    if let Some(mut f) = sink {
        f(report);
        EPOCH_SINK.with(|s| {
            let mut slot = s.borrow_mut();
            if slot.is_none() {
                *slot = Some(f);
            }
        });
    }
}

/// The summary line of the last epoch of `report`: [`super::report::epoch_line`] with the
/// epoch's training and inference speeds (images/s) on its first line; `None` when the
/// report has no epoch.
pub fn epoch_summary(report: &Report) -> Option<String> {
    let e = report.epochs.last()?;
    let line = super::report::epoch_line(e);
    let speed = format!(
        "  {:.1} images/s training, {:.1} images/s inference",
        report.train_images_per_s, report.infer_images_per_s
    );
    Some(match line.split_once('\n') {
        Some((first, rest)) => format!("{first}{speed}\n{rest}"),
        None => format!("{line}{speed}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::report::EpochRecord;

    fn report(epochs: usize) -> Report {
        let mut r = Report::new("agd", "Tiny", 2);
        r.train_images_per_s = 12.34;
        r.infer_images_per_s = 100.0;
        r.epochs = (1..=epochs)
            .map(|epoch| EpochRecord {
                epoch,
                loss: 0.5,
                train_accuracy: 0.25,
                test_accuracy: 0.75,
                test_loss: Some(0.4),
                loss_terms: None,
            })
            .collect();
        r
    }

    #[test]
    fn the_sink_sees_each_epoch_and_is_removed_with_its_guard() {
        let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
        {
            let s = seen.clone();
            let _g = on_epoch(Box::new(move |r: &Report| {
                s.borrow_mut().push(r.epochs.len())
            }));
            epoch_done(&report(1));
            epoch_done(&report(2));
        }
        epoch_done(&report(3));
        assert_eq!(*seen.borrow(), [1, 2]);
    }

    #[test]
    fn the_summary_line_carries_the_speeds() {
        assert_eq!(epoch_summary(&report(0)), None);
        assert_eq!(
            epoch_summary(&report(2)).as_deref(),
            Some(
                "epoch   2  train loss 0.5000  train acc  25.00%  test acc  75.00%  \
                 12.3 images/s training, 100.0 images/s inference"
            )
        );
    }
}
