//! Every input the stable fuzzer (`examples/fuzz_stable`) flagged, replayed through the same
//! target code (`examples/fuzz_stable/targets.rs`), plus the exact outcome each must have.
//! Files: `tests/fixtures/fuzz/<target>-<what>-<hash>.<ext>`; see `docs/reliability.md`.

#[path = "../examples/fuzz_stable/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use targets::Target;

fn fixtures() -> Vec<(Target, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut out: Vec<(Target, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snn" || x == "bin"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let target = Target::from_name(name.split('-').next().unwrap())
                .unwrap_or_else(|| panic!("{name}: no target prefix"));
            (target, p)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Every saved input runs through its target, and through the pipeline too when it is text,
/// without a panic.
#[test]
fn every_saved_input_replays_without_panic() {
    let scratch = tempfile::tempdir().unwrap();
    let all = fixtures();
    assert!(!all.is_empty());
    for (target, path) in all {
        let input = std::fs::read(&path).unwrap();
        let sig = targets::run(target, &input, scratch.path());
        assert!(!sig.is_empty(), "{}", path.display());
        if target == Target::Parse {
            targets::run(Target::Pipeline, &input, scratch.path());
        }
    }
}

fn slow_render_input() -> (String, PathBuf) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/parse-slow-render-efd1b230c22f8309.snn");
    (std::fs::read_to_string(&p).unwrap(), p)
}

/// The fuzzer's first "hang" (a 3,566-byte file whose line 3 is 3,513 bytes of `Con Con …`
/// words): every diagnostic is found, each word its own `unknown_layer`.
#[test]
fn slow_render_input_gives_every_diagnostic() {
    let (src, _) = slow_render_input();
    assert_eq!(src.len(), 3566);
    let (program, diags) = snnc::compile_with_diagnostics(&src, None);
    assert!(program.is_none());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in diags.codes() {
        *counts.entry(c).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [
        ("snnc::syntax::arguments", 1),
        ("snnc::syntax::bad_value", 1),
        ("snnc::syntax::unknown_activation", 1),
        ("snnc::syntax::unknown_layer", 791),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, want);
    // The JSON form stays linear: one object per diagnostic.
    let json = diags.to_json("f.snn", &src);
    assert_eq!(json.as_array().unwrap().len(), 794);
}

/// Rendering diagnostics as text must stay linear in the input: today each of the 791
/// diagnostics on the 3,513-byte line reprints the whole line, 5.9 MB of text for a 3.6 KB
/// file (quadratic: 16 KB of such words render 130 MB; the fuzzer's watchdog reported this
/// input as a hang). Bound: 1,000 bytes per diagnostic plus 10 per input byte. Owner of the fix: `Diagnostics::render_text` (src/diagnostics.rs), e.g. by eliding
/// long source lines around the label or capping the diagnostics rendered.
#[test]
fn text_rendering_of_many_diagnostics_on_one_long_line_is_linear() {
    let (src, p) = slow_render_input();
    let (_, diags) = snnc::compile_with_diagnostics(&src, None);
    let out = diags.render_text(&p.display().to_string(), &src, 100, false);
    let bound = 1000 * diags.len() + 10 * src.len();
    assert!(
        out.len() <= bound,
        "{} bytes rendered for {} diagnostics of a {}-byte file (bound {bound})",
        out.len(),
        diags.len(),
        src.len()
    );
}

/// The data target's seeds are valid datasets: each parses (or loads) as what it claims.
#[test]
fn data_seeds_are_valid_and_their_corruptions_are_errors() {
    let scratch = tempfile::tempdir().unwrap();
    for seed in targets::data_seeds() {
        let sig = targets::run_data(&seed, scratch.path());
        let through_files = seed[0] & 8 != 0;
        if seed[0] & 3 == 3 && !through_files {
            // All three parsers on an IDX images body: only the images parser accepts it.
            assert!(
                sig.starts_with("im:ok"),
                "seed mode {:#04x}: {sig}",
                seed[0]
            );
        } else {
            assert!(
                !sig.contains("snnc::data::"),
                "seed mode {:#04x}: {sig}",
                seed[0]
            );
        }
    }
    // An IDX images body whose count field says 6 images where 5 are present: a size error
    // naming the 16 + 6·12 = 88 bytes expected.
    let mut bad = vec![targets::mode_byte(0, false, false, false, 0)];
    let mut body = targets::seed_idx_images(5, 4, 3);
    body[7] = 6;
    bad.extend_from_slice(&body);
    assert_eq!(
        targets::run_data(&bad, scratch.path()),
        "im:snnc::data::size"
    );
    let e = snnc::data::idx::parse_images(&body, Path::new("x")).unwrap_err();
    assert!(
        matches!(
            e,
            snnc::data::DataError::Size {
                expected: 88,
                found: 76,
                ..
            }
        ),
        "{e:?}"
    );
    // The same through files and gzip: the loader names the size error too.
    bad[0] = targets::mode_byte(0, true, true, true, 0);
    assert_eq!(
        targets::run_data(&bad, scratch.path()),
        "load:snnc::data::size"
    );
}
