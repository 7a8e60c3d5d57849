//! Progress of training, balancing and evaluation, one style for all. On a terminal: an
//! indicatif bar. Off a terminal (a log, a pipe): a line every [`interval`] seconds with the
//! units done, their rate, the caller's message (running loss, accuracy) and the ETA, so a
//! long epoch written to a log still shows that it is alive. Hidden when not asked for.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
