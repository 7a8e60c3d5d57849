//! The `snnc` binary: restores the default SIGPIPE action, then hands over to [`snnc::cli`].
//!
//! A closed pipe (`snnc check --format json f.snn | head -c 10`) must end the program quietly,
//! like other command-line tools, never with a "failed printing to stdout" panic (exit 101).
//! Rust's runtime ignores SIGPIPE, which turns every write to a closed pipe into an `EPIPE`
//! error that `print!` turns into a panic. Restoring the default action before anything is
//! written makes the kernel end the process with SIGPIPE at the first such write, on every
//! output path (stdout and stderr, `print!` and direct writes) at once: the shell sees status
//! 141 (128 + 13), as for `cat` or `grep`. Nothing in snnc writes to a pipe or socket it
//! expects to survive a closed peer. Where `libc` is not a dependency (targets other than
//! linux-gnu) the runtime's default is kept. Test: `tests/reliability.rs`.
//!
//! It also caps how long candle's element-wise thread pool spins when idle (below).

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    park_idle_candle_workers();
    snnc::cli::main()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restore_default_sigpipe() {
    // SAFETY: `signal` with `SIG_DFL` only changes this process's disposition of SIGPIPE; it
    // runs first in `main`, before any other thread exists or any output is written.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restore_default_sigpipe() {}

/// The environment variable candle 0.11 reads, once, when it starts its thread pool for
/// large element-wise ops (backprop's gradient sums among them).
const CANDLE_SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// Candle's pool workers spin up to 25,000 `pause`s after every op before they park, on
/// cores that rayon's workers (the convolutions, gemm) need at that moment: on a 2-core
/// machine the spinning thread was 2.8 % of a training run's CPU samples (`perf`, AGD
/// convnet, docs/performance.md). A limit of 1 parks them at once; a woken worker still
/// shares the next op, and the calling thread takes the share of one that wakes late. A
/// value the user set is kept.
fn park_idle_candle_workers() {
    if std::env::var_os(CANDLE_SPIN_LIMIT).is_none() {
        // Runs first in `main`, before any thread exists, so no other thread reads the
        // environment while it changes.
        std::env::set_var(CANDLE_SPIN_LIMIT, "1");
    }
}
