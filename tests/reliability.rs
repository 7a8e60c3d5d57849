//! Process-level promises of the `snnc` binary (see `docs/reliability.md`): a closed output
//! pipe ends the program quietly (issue 11.5), never with a panic.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// More than a pipe's buffer (64 KiB on Linux) of output, so the write that meets the closed
/// pipe happens whatever the timing: `check --format json` on many copies of a file with
/// errors.
fn many_error_files() -> Vec<PathBuf> {
    let f =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors/multiple_errors.snn");
    vec![f; 400]
}

fn assert_quiet_end(status: std::process::ExitStatus, stderr: &str, what: &str) {
    assert_ne!(
        status.code(),
        Some(101),
        "{what}: exit 101 (a panic); stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: stderr:\n{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: stderr:\n{stderr}");
    // With SIGPIPE's default action restored, the kernel ends the process at the first
    // write to the closed pipe, as it does for `cat` or `head`.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc_sigpipe()), "{what}: {status:?}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux
}

#[test]
fn closed_stdout_pipe_ends_quietly() {
    let exe = env!("CARGO_BIN_EXE_snnc");
    let files = many_error_files();
    // Precondition: the output really is larger than a pipe buffer.
    let full = Command::new(exe)
        .args(["check", "--format", "json"])
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1));
    assert!(full.stdout.len() > 256 * 1024, "{}", full.stdout.len());

    // `snnc check --format json FILES | head -c 10`.
    let mut child = Command::new(exe)
        .args(["check", "--format", "json"])
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    assert_eq!(&head[..], &full.stdout[..10]);
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_quiet_end(
        out.status,
        &String::from_utf8_lossy(&out.stderr),
        "closed stdout",
    );
}

#[test]
fn closed_stderr_pipe_ends_quietly() {
    let exe = env!("CARGO_BIN_EXE_snnc");
    // Text diagnostics go to stderr: close it after the first bytes.
    let mut child = Command::new(exe)
        .arg("check")
        .args(many_error_files())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut head = [0u8; 10];
    stderr.read_exact(&mut head).unwrap();
    drop(stderr);
    let status = child.wait().unwrap();
    assert_quiet_end(status, "", "closed stderr");
}
