//! Progress bars of training, balancing and evaluation (one style for all): shown only when
//! asked and stderr is a terminal; hidden bars cost nothing.

use std::io::IsTerminal;

/// A bar of `len` units labelled `prefix`, or a hidden one.
pub fn bar(len: usize, show: bool, prefix: &str, per_sec: bool) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    let template = if per_sec {
        "{prefix} [{bar:30}] {pos}/{len} images, {msg}, {per_sec:.0} ETA {eta}"
    } else {
        "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}"
    };
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb.set_prefix(prefix.to_string());
    pb
}
