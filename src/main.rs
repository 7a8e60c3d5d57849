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

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
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
