//! Per-pass golden tests: every `tests/passes/<pass>/*.snn` is run through
//! `snnc show FILE --after <pass>` and its output (stdout, then stderr and the exit code
//! when it fails) is compared with the insta snapshot `tests/passes/snapshots/<pass>__<file>`.
//! Every pass of the registry `snnc::passes::PASSES` has a folder with at least one input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn show_after(file: &Path, pass: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["show", "--after", pass])
        .arg(file)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .expect("run snnc");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        s.push_str(&format!("--- exit {:?}; stderr:\n", out.status.code()));
        // The file name in diagnostics is the path given; keep snapshots path-independent.
        let err = String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "FILE");
        s.push_str(&err);
    }
    s
}

fn inputs(pass: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/passes")
        .join(pass);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snn"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_pass_has_golden_inputs_and_they_match() {
    let mut total = 0;
    for pass in snnc::passes::names() {
        let files = inputs(pass);
        assert!(!files.is_empty(), "tests/passes/{pass}/ has no .snn input");
        for file in files {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let out = show_after(&file, pass);
            insta::assert_snapshot!(format!("{pass}__{stem}"), out);
            total += 1;
        }
    }
    assert!(total >= snnc::passes::PASSES.len());
}
