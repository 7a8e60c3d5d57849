//! The three fuzz targets of `examples/fuzz_stable` (also compiled into
//! `tests/fuzz_regressions.rs`, which replays every saved crash through the same code).
//!
//! Each target takes arbitrary bytes, drives a public entry point of snnc with them, checks
//! the promises that hold for every input (no panic; finite, non-negative energy figures) and
//! returns a *signature*: a short text naming what happened (diagnostic codes, error variant,
//! shape class). The driver keeps an input in its corpus when its signature is new, a cheap
//! stand-in for coverage feedback that stable Rust cannot instrument.

// Each user of this file uses a different part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use snnc::analysis::{self, Activity, Options};
use snnc::data::{self, DataSpec};

/// Which part of snnc a run fuzzes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `snnc::syntax::decode` + `snnc::syntax::parse`, and rendering the diagnostics.
    Parse,
    /// `snnc::compile_with_diagnostics` (parse, build, every pass), rendering the diagnostics
    /// as text and JSON, then `snnc::analysis::estimate` of every network that compiles.
    Pipeline,
    /// The dataset loaders: IDX images/labels, CIFAR-10 records, gzip, in memory and through
    /// `snnc::data::load` on files (see [`run_data`] for the layout of an input).
    Data,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Parse, Target::Pipeline, Target::Data];

    pub fn name(self) -> &'static str {
        match self {
            Target::Parse => "parse",
            Target::Pipeline => "pipeline",
            Target::Data => "data",
        }
    }

    pub fn from_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Runs `target` on `input`; panics exactly when snnc breaks a promise.
/// `scratch` is a directory the data target may write its files into.
pub fn run(target: Target, input: &[u8], scratch: &Path) -> String {
    match target {
        Target::Parse => run_parse(input),
        Target::Pipeline => run_pipeline(input),
        Target::Data => run_data(input, scratch),
    }
}

fn codes_signature(codes: &[String]) -> String {
    let mut codes: Vec<&str> = codes.iter().map(String::as_str).collect();
    codes.sort_unstable();
    codes.dedup();
    codes.join(",")
}

fn bucket(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

pub fn run_parse(input: &[u8]) -> String {
    let text = match snnc::syntax::decode(input) {
        Ok(t) => t,
        Err(d) => {
            let lossy = String::from_utf8_lossy(input);
            let _ = d.render_text("fuzz.snn", &lossy, 100, false);
            return format!("utf8:{}", codes_signature(&d.codes()));
        }
    };
    let (file, diags) = snnc::syntax::parse(text);
    let _ = diags.render_text("fuzz.snn", text, 100, false);
    let _ = diags.to_json("fuzz.snn", text);
    format!(
        "nets{}:{}",
        bucket(file.networks.len()),
        codes_signature(&diags.codes())
    )
}

pub fn run_pipeline(input: &[u8]) -> String {
    let Ok(text) = snnc::syntax::decode(input) else {
        return "utf8".to_string();
    };
    let (program, diags) = snnc::compile_with_diagnostics(text, None);
    let _ = diags.render_text("fuzz.snn", text, 100, false);
    let _ = diags.to_json("fuzz.snn", text);
    let mut sig = codes_signature(&diags.codes());
    let Some(program) = program else {
        return format!("err:{sig}");
    };
    for net in &program.networks {
        let _ = serde_json::to_string(net);
        for opts in [
            Options::default(),
            Options {
                timesteps: Some(u32::MAX),
                activity: Activity::Uniform(1.0),
                ..Options::default()
            },
            Options {
                timesteps: Some(1),
                activity: Activity::Uniform(0.0),
                ..Options::default()
            },
        ] {
            let est = analysis::estimate(net, &opts);
            check_estimate(&est);
            let _ = serde_json::to_string(&est);
        }
        let est = analysis::estimate(net, &Options::default());
        sig.push_str(&format!(
            "|rows{}:ee{}:d{}",
            bucket(est.layers.len()),
            est.ee.is_some(),
            bucket(est.logical_depth as usize)
        ));
    }
    format!("ok:{sig}")
}

/// Every figure of an estimate is a finite, non-negative number.
fn check_estimate(est: &analysis::Estimate) {
    let totals = [
        ("flops_ann", est.flops_ann),
        ("flops_snn", est.flops_snn),
        ("e_ann_pj", est.e_ann_pj),
        ("e_snn_pj", est.e_snn_pj),
        ("spike_rate", est.spike_rate),
    ];
    for (what, v) in totals {
        assert!(v.is_finite() && v >= 0.0, "estimate {what} = {v}");
    }
    if let Some(ee) = est.ee {
        assert!(ee.is_finite() && ee >= 0.0, "estimate ee = {ee}");
    }
    for row in &est.layers {
        for (what, v) in [
            ("sa", row.sa),
            ("energy_pj", row.energy_pj),
            ("e_ann_pj", row.e_ann_pj),
        ] {
            assert!(
                v.is_finite() && v >= 0.0,
                "estimate row {} {what} = {v}",
                row.name
            );
        }
    }
}

/// Data inputs: byte 0 is a mode, the rest the file body.
/// - bits 0–1: what the body is: 0 IDX images, 1 IDX labels, 2 a CIFAR-10 batch, 3 all three
///   parsers on the same bytes;
/// - bit 2: gzip the body first (so mutations reach the parsers through a valid stream);
/// - bit 3: go through `snnc::data::load` on files in `scratch` (the body replaces one file of
///   an otherwise valid dataset) instead of the in-memory parsers;
/// - bit 4: with bit 3, name the file `*.gz`;
/// - bits 5–7: the train/test limits (0: none, k: `k - 1` items).
pub fn mode_byte(kind: u8, gzip: bool, files: bool, gz_name: bool, limit: u8) -> u8 {
    (kind & 3)
        | (u8::from(gzip) << 2)
        | (u8::from(files) << 3)
        | (u8::from(gz_name) << 4)
        | ((limit & 7) << 5)
}

pub fn run_data(input: &[u8], scratch: &Path) -> String {
    let Some((&mode, body)) = input.split_first() else {
        return "empty".to_string();
    };
    let kind = mode & 3;
    let body = if mode & 4 != 0 {
        gzip(body)
    } else {
        body.to_vec()
    };
    let limit = match mode >> 5 {
        0 => None,
        k => Some(usize::from(k - 1)),
    };
    if mode & 8 != 0 {
        return run_data_files(kind, &body, mode & 16 != 0, limit, scratch);
    }
    let p = Path::new("fuzz");
    let bytes = match data::decompress_if_gz(body, p, false) {
        Ok(b) => b,
        Err(e) => return format!("gz:{}", error_code(&e)),
    };
    let mut sig = String::new();
    if kind == 0 || kind == 3 {
        match data::idx::parse_images(&bytes, p) {
            Ok(im) => {
                assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
                sig.push_str(&format!("im:ok{}", bucket(im.count)));
            }
            Err(e) => sig.push_str(&format!("im:{}", error_code(&e))),
        }
    }
    if kind == 1 || kind == 3 {
        match data::idx::parse_labels(&bytes, p, 10) {
            Ok(l) => {
                assert!(l.iter().all(|&x| x < 10));
                sig.push_str(&format!("lb:ok{}", bucket(l.len())));
            }
            Err(e) => sig.push_str(&format!("lb:{}", error_code(&e))),
        }
    }
    if kind == 2 || kind == 3 {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let room = limit.unwrap_or(usize::MAX);
        match data::cifar::append_records(&bytes, p, room, &mut images, &mut labels) {
            Ok(()) => {
                assert_eq!(images.len(), labels.len() * data::cifar::IMAGE_BYTES);
                assert!(labels.len() <= room);
                sig.push_str(&format!("cf:ok{}", bucket(labels.len())));
            }
            Err(e) => sig.push_str(&format!("cf:{}", error_code(&e))),
        }
    }
    sig
}

fn error_code(e: &data::DataError) -> String {
    use miette::Diagnostic;
    let code = e.code().map(|c| c.to_string()).unwrap_or_default();
    // Every error names a file or spec: its message is never empty.
    assert!(!e.to_string().is_empty());
    code
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// A valid dataset in `scratch`, with `body` in place of one of its files.
fn run_data_files(
    kind: u8,
    body: &[u8],
    gz_name: bool,
    limit: Option<usize>,
    scratch: &Path,
) -> String {
    let dir = scratch.join("dataset");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clearing the scratch dataset");
    }
    std::fs::create_dir_all(&dir).expect("creating the scratch dataset");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("writing a scratch file");
    };
    let target_name = |base: &str| -> String {
        if gz_name {
            format!("{base}.gz")
        } else {
            base.to_string()
        }
    };
    let spec = if kind == 2 {
        for i in 1..=5 {
            write(&format!("data_batch_{i}.bin"), &seed_cifar(2, i));
        }
        write("test_batch.bin", &seed_cifar(3, 7));
        let victim = if body.len() % 2 == 0 {
            "test_batch.bin"
        } else {
            "data_batch_1.bin"
        };
        std::fs::remove_file(dir.join(victim)).expect("removing a scratch file");
        write(&target_name(victim), body);
        DataSpec::Cifar10(dir.clone())
    } else {
        write("train-images-idx3-ubyte", &seed_idx_images(5, 4, 3));
        write("train-labels-idx1-ubyte", &seed_idx_labels(5));
        write("t10k-images-idx3-ubyte", &seed_idx_images(3, 4, 3));
        write("t10k-labels-idx1-ubyte", &seed_idx_labels(3));
        let victim = match kind {
            0 => "train-images-idx3-ubyte",
            1 => "train-labels-idx1-ubyte",
            _ => "t10k-images-idx3-ubyte",
        };
        std::fs::remove_file(dir.join(victim)).expect("removing a scratch file");
        write(&target_name(victim), body);
        DataSpec::Mnist(dir.clone())
    };
    match data::load(&spec, limit, limit) {
        Ok(ds) => {
            let [c, h, w] = ds.shape;
            for split in [&ds.train, &ds.test] {
                assert_eq!(split.images.len(), split.labels.len() * c * h * w);
                assert!(split.labels.iter().all(|&l| usize::from(l) < ds.classes));
                assert!(split.images.iter().all(|v| (0.0..=1.0).contains(v)));
                if let Some(l) = limit {
                    assert!(split.len() <= l);
                }
            }
            format!("load:ok{}x{}", bucket(ds.train.len()), bucket(h * w))
        }
        Err(e) => format!("load:{}", error_code(&e)),
    }
}

/// An IDX images file: `n` images of `rows × cols`, pixel k of image i = `(5i + k) % 256`.
pub fn seed_idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    let per = (rows * cols) as usize;
    v.extend((0..n as usize * per).map(|k| ((5 * (k / per) + k % per) % 256) as u8));
    v
}

/// An IDX labels file of `n` labels `i % 10`.
pub fn seed_idx_labels(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0801, n] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

/// `n` CIFAR-10 records, labels from `first`.
pub fn seed_cifar(n: usize, first: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(((first + i) % 10) as u8);
        v.extend((0..data::cifar::IMAGE_BYTES).map(|k| ((i * 3 + k) % 256) as u8));
    }
    v
}

/// The built-in seeds of the data target: every mode over a valid body of its kind.
pub fn data_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for kind in 0..4u8 {
        // The shapes of the companion files `run_data_files` writes, so that every seed is
        // a valid dataset through files too.
        let body = match kind {
            0 => seed_idx_images(5, 4, 3),
            1 => seed_idx_labels(5),
            2 => seed_cifar(2, 0),
            _ => seed_idx_images(3, 4, 3),
        };
        for (gz, files, gz_name, limit) in [
            (false, false, false, 0),
            (true, false, false, 0),
            (false, true, false, 0),
            (true, true, true, 3),
            (false, true, false, 2),
        ] {
            let mut s = vec![mode_byte(kind, gz, files, gz_name, limit)];
            s.extend_from_slice(&body);
            seeds.push(s);
        }
        // A body that is already gzip (through `decompress_if_gz`).
        let mut s = vec![mode_byte(kind, false, false, false, 0)];
        s.extend_from_slice(&gzip(&body));
        seeds.push(s);
    }
    seeds
}

/// Every `.snn` file under `dirs` (recursively), sorted by path.
pub fn snn_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "snn") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
