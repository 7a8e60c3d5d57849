//! A mutation fuzzer for snnc that runs on stable Rust (cargo-fuzz needs nightly).
//!
//! ```text
//! nice -n 19 cargo run --example fuzz_stable -- TARGET [--seconds N] [--seed S] [--out DIR]
//!     [--corpus DIR]... [--max-len BYTES] [--timeout SECS]
//! cargo run --example fuzz_stable -- TARGET --replay FILE...
//! ```
//! TARGET is `parse`, `pipeline` or `data` (see `targets.rs`). Seeds: every `.snn` under
//! `networks/` and `tests/fixtures/` (text targets) or the built-in valid IDX/CIFAR/gzip
//! files (data), plus `--corpus` directories and the corpus kept in `DIR/corpus/` by earlier
//! runs. Each execution takes a corpus entry, stacks 1–6 mutations chosen through
//! `arbitrary::Unstructured` over ChaCha8 bytes (bit flips, interesting bytes and numbers,
//! inserts, deletes, duplicated or repeated ranges, splices and crossovers with other
//! entries, dictionary tokens taken from the seeds, big-endian u32 header fields), and runs
//! the target under `catch_unwind`. An input whose *signature* (diagnostic codes, error
//! variant, shape class) is new joins the corpus.
//!
//! Crashes: a panic is minimised (chunk deletion while the same location still panics) and
//! saved as `DIR/crashes/panic-<hash>.bin` with the message in `.txt`, once per panic
//! location. An abort, stack overflow or hang (more than `--timeout` seconds, default 20, of CPU time
//! for one execution) kills the worker process: the supervisor (this
//! program without `--worker`) finds the input in `DIR/current.bin` (rewritten before every
//! execution), saves it as `DIR/crashes/abort-<hash>.bin` or `hang-<hash>.bin`, and starts a
//! new worker with the next seed until `--seconds` have passed. The summary (executions,
//! corpus, crashes) is printed and appended to `DIR/summary.txt`. Default DIR:
//! `target/fuzz-stable/TARGET`.

mod targets;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbitrary::Unstructured;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use targets::Target;

/// Exit status of a worker that found a hang.
const HANG_EXIT: i32 = 3;

struct Args {
    target: Target,
    seconds: u64,
    seed: u64,
    out: PathBuf,
    corpus: Vec<PathBuf>,
    max_len: usize,
    timeout: u64,
    worker: bool,
    replay: Vec<PathBuf>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: fuzz_stable parse|pipeline|data [--seconds N] [--seed S] [--out DIR] \
         [--corpus DIR]... [--max-len BYTES] [--timeout SECS] | --replay FILE..."
    );
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut it = std::env::args().skip(1);
    let target = Target::from_name(&it.next()?)?;
    let mut a = Args {
        target,
        seconds: 60,
        seed: 1,
        out: PathBuf::from("target/fuzz-stable").join(target.name()),
        corpus: Vec::new(),
        max_len: if target == Target::Data {
            1 << 16
        } else {
            1 << 14
        },
        timeout: 20,
        worker: false,
        replay: Vec::new(),
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => a.seconds = it.next()?.parse().ok()?,
            "--seed" => a.seed = it.next()?.parse().ok()?,
            "--out" => a.out = it.next()?.into(),
            "--corpus" => a.corpus.push(it.next()?.into()),
            "--max-len" => a.max_len = it.next()?.parse().ok()?,
            "--timeout" => a.timeout = it.next()?.parse().ok()?,
            "--worker" => a.worker = true,
            "--replay" => a.replay.extend(it.by_ref().map(PathBuf::from)),
            _ => return None,
        }
    }
    Some(a)
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    std::fs::create_dir_all(args.out.join("crashes")).expect("creating the output directory");
    std::fs::create_dir_all(args.out.join("corpus")).expect("creating the output directory");
    if !args.replay.is_empty() {
        replay(&args)
    } else if args.worker {
        worker(&args)
    } else {
        supervise(&args)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CPU time of the main thread (Linux `schedstat`), else wall time, in nanoseconds.
fn main_thread_ns() -> u64 {
    let pid = std::process::id();
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| now_ms() * 1_000_000)
}

/// FNV-1a 64: names saved inputs by content.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------
// Supervisor

fn supervise(args: &Args) -> ExitCode {
    let started = Instant::now();
    let run_id = now_ms();
    let exe = std::env::current_exe().expect("the fuzzer's own path");
    let current = args.out.join("current.bin");
    let mut seed = args.seed;
    let mut abnormal = Vec::new();
    let mut workers = 0;
    loop {
        let left = args.seconds.saturating_sub(started.elapsed().as_secs());
        if left == 0 {
            break;
        }
        workers += 1;
        let mut cmd = Command::new(&exe);
        cmd.arg(args.target.name())
            .args(["--worker", "--seconds", &left.to_string()])
            .args(["--seed", &seed.to_string()])
            .arg("--out")
            .arg(&args.out)
            .args(["--max-len", &args.max_len.to_string()])
            .args(["--timeout", &args.timeout.to_string()])
            .env("FUZZ_STABLE_RUN", format!("{run_id}-{workers}"));
        for c in &args.corpus {
            cmd.arg("--corpus").arg(c);
        }
        let status = cmd.status().expect("starting a worker");
        if status.success() {
            break;
        }
        let kind = if status.code() == Some(HANG_EXIT) {
            "hang"
        } else {
            "abort"
        };
        let input = std::fs::read(&current).unwrap_or_default();
        let path = args
            .out
            .join("crashes")
            .join(format!("{kind}-{:016x}.bin", hash(&input)));
        std::fs::write(&path, &input).expect("saving a crash");
        eprintln!(
            "[{}] worker ended abnormally ({status}); input saved as {}",
            args.target.name(),
            path.display()
        );
        abnormal.push(format!("{kind} {status} {}", path.display()));
        seed += 1000;
    }
    // Sum the workers' final statistics.
    let (mut execs, mut corpus, mut panics) = (0u64, 0u64, 0u64);
    for k in 1..=workers {
        let f = args.out.join(format!("stats-{run_id}-{k}.txt"));
        if let Ok(text) = std::fs::read_to_string(&f) {
            let field = |name: &str| -> u64 {
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix(name)?.parse().ok())
                    .unwrap_or(0)
            };
            execs += field("execs=");
            corpus = corpus.max(field("corpus="));
            panics += field("panics=");
        }
        let _ = std::fs::remove_file(f);
    }
    let crashes_on_disk = std::fs::read_dir(args.out.join("crashes"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
                .count()
        })
        .unwrap_or(0);
    let line = format!(
        "target={} seconds={} execs={execs} corpus={corpus} workers={workers} \
         new_panic_locations={panics} aborts_or_hangs={} crash_files_in_dir={crashes_on_disk} \
         seed={}",
        args.target.name(),
        started.elapsed().as_secs(),
        abnormal.len(),
        args.seed
    );
    println!("{line}");
    for a in &abnormal {
        println!("  {a}");
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.out.join("summary.txt"))
        .expect("opening summary.txt");
    writeln!(f, "{line}").expect("writing summary.txt");
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// Replay

fn replay(args: &Args) -> ExitCode {
    let scratch = args.out.join("scratch-replay");
    std::fs::create_dir_all(&scratch).expect("creating the scratch directory");
    let mut bad = 0;
    for p in &args.replay {
        let input = std::fs::read(p).expect("reading a replay input");
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            targets::run(args.target, &input, &scratch)
        }));
        match r {
            Ok(sig) => println!("{}: ok ({sig})", p.display()),
            Err(_) => {
                bad += 1;
                println!("{}: PANIC", p.display());
            }
        }
    }
    ExitCode::from(u8::from(bad > 0))
}

// ---------------------------------------------------------------------------------------
// Worker

/// The message and location of the last panic, recorded by the hook (printed once per
/// location instead of on every execution).
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "<non-string panic>".to_string());
        let loc = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some((msg, loc));
        }
    }));
}

/// Runs one input: `Ok(signature)` or `Err((message, location))` of a panic.
fn exec(target: Target, input: &[u8], scratch: &Path) -> Result<String, (String, String)> {
    match panic::catch_unwind(AssertUnwindSafe(|| targets::run(target, input, scratch))) {
        Ok(sig) => Ok(sig),
        Err(_) => Err(LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .unwrap_or_default()),
    }
}

struct Corpus {
    entries: Vec<Vec<u8>>,
    signatures: HashSet<String>,
    dictionary: Vec<Vec<u8>>,
}

fn worker(args: &Args) -> ExitCode {
    install_panic_hook();
    let run = std::env::var("FUZZ_STABLE_RUN").unwrap_or_else(|_| format!("{}-1", now_ms()));
    let stats_path = args.out.join(format!("stats-{run}.txt"));
    let scratch = args.out.join(format!("scratch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("creating the scratch directory");
    let current_path = args.out.join("current.bin");
    let current = std::fs::File::create(&current_path).expect("creating current.bin");

    // Watchdog: an execution that uses more than --timeout seconds of the main thread's CPU
    // time (wall time where that cannot be read) is a hang. CPU time, because on a loaded
    // machine a `nice`d fuzzer can wait for the CPU far longer than it runs.
    let running = Arc::new(AtomicU64::new(0));
    {
        let running = Arc::clone(&running);
        let timeout_ns = args.timeout * 1_000_000_000;
        let name = args.target.name();
        std::thread::spawn(move || {
            let (mut seen, mut since) = (0, 0);
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let r = running.load(Ordering::Relaxed);
                if r == 0 || r != seen {
                    (seen, since) = (r, main_thread_ns());
                    continue;
                }
                if main_thread_ns().saturating_sub(since) > timeout_ns {
                    eprintln!("[{name}] one execution used more than {timeout_ns} ns: a hang");
                    std::process::exit(HANG_EXIT);
                }
            }
        });
    }

    let mut corpus = load_corpus(args);
    let mut panic_locations: HashMap<String, PathBuf> = HashMap::new();
    // Run the seeds first: their signatures start the feedback.
    let seeds = std::mem::take(&mut corpus.entries);
    for s in seeds {
        match exec(args.target, &s, &scratch) {
            Ok(sig) => {
                corpus.signatures.insert(sig);
                corpus.entries.push(s);
            }
            Err((msg, loc)) => note_panic(args, &scratch, &s, &msg, &loc, &mut panic_locations),
        }
    }
    if corpus.entries.is_empty() {
        corpus.entries.push(Vec::new());
    }
    eprintln!(
        "[{}] worker seed {}: {} corpus entries, {} signatures, {} dictionary tokens",
        args.target.name(),
        args.seed,
        corpus.entries.len(),
        corpus.signatures.len(),
        corpus.dictionary.len()
    );

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut execs: u64 = 0;
    let mut last_report = Instant::now();
    let mut entropy = vec![0u8; 512];
    let write_stats = |execs: u64, corpus: &Corpus, panics: usize| {
        let _ = std::fs::write(
            &stats_path,
            format!(
                "execs={execs} corpus={} signatures={} panics={panics} secs={}\n",
                corpus.entries.len(),
                corpus.signatures.len(),
                started.elapsed().as_secs()
            ),
        );
    };
    while Instant::now() < deadline {
        rng.fill_bytes(&mut entropy);
        let mut u = Unstructured::new(&entropy);
        let input = mutate(&mut u, &corpus, args.max_len);
        // The input of the running execution, for the supervisor if this process dies.
        let _ = current.write_all_at(&input, 0);
        let _ = current.set_len(input.len() as u64);
        running.store(execs + 1, Ordering::Relaxed);
        let r = exec(args.target, &input, &scratch);
        running.store(0, Ordering::Relaxed);
        execs += 1;
        match r {
            Ok(sig) => {
                if corpus.signatures.insert(sig) {
                    let _ = std::fs::write(
                        args.out
                            .join("corpus")
                            .join(format!("{:016x}", hash(&input))),
                        &input,
                    );
                    corpus.entries.push(input);
                }
            }
            Err((msg, loc)) => note_panic(args, &scratch, &input, &msg, &loc, &mut panic_locations),
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "[{}] {:.0}s execs {execs} ({:.0}/s) corpus {} signatures {} panic locations {}",
                args.target.name(),
                secs,
                execs as f64 / secs,
                corpus.entries.len(),
                corpus.signatures.len(),
                panic_locations.len()
            );
            write_stats(execs, &corpus, panic_locations.len());
        }
    }
    write_stats(execs, &corpus, panic_locations.len());
    let _ = std::fs::remove_dir_all(&scratch);
    ExitCode::SUCCESS
}

/// Saves the minimised input of a panic at a location not seen before in this worker.
fn note_panic(
    args: &Args,
    scratch: &Path,
    input: &[u8],
    msg: &str,
    loc: &str,
    panic_locations: &mut HashMap<String, PathBuf>,
) {
    if panic_locations.contains_key(loc) {
        return;
    }
    let small = minimise(args.target, input, loc, scratch);
    let stem = format!("panic-{:016x}", hash(&small));
    let bin = args.out.join("crashes").join(format!("{stem}.bin"));
    std::fs::write(&bin, &small).expect("saving a crash");
    std::fs::write(
        args.out.join("crashes").join(format!("{stem}.txt")),
        format!("{msg}\nat {loc}\n"),
    )
    .expect("saving a crash");
    eprintln!(
        "[{}] PANIC at {loc}: {msg} (input {} bytes, minimised {} bytes: {})",
        args.target.name(),
        input.len(),
        small.len(),
        bin.display()
    );
    panic_locations.insert(loc.to_string(), bin);
}

fn load_corpus(args: &Args) -> Corpus {
    let mut entries: Vec<Vec<u8>> = Vec::new();
    match args.target {
        Target::Data => entries.extend(targets::data_seeds()),
        Target::Parse | Target::Pipeline => {
            let dirs = [PathBuf::from("networks"), PathBuf::from("tests/fixtures")];
            for f in targets::snn_files(&dirs) {
                if let Ok(b) = std::fs::read(f) {
                    entries.push(b);
                }
            }
        }
    }
    let mut dirs = args.corpus.clone();
    dirs.push(args.out.join("corpus"));
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(b) = std::fs::read(&f) {
                if b.len() <= args.max_len {
                    entries.push(b);
                }
            }
        }
    }
    let dictionary = dictionary(args.target, &entries);
    Corpus {
        entries,
        signatures: HashSet::new(),
        dictionary,
    }
}

/// Tokens to insert: fixed ones, plus every word and punctuation run of the text seeds.
fn dictionary(target: Target, entries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut set: HashSet<Vec<u8>> = HashSet::new();
    let data_tokens: &[&[u8]] = &[
        b"\x1f\x8b\x08\x00",
        b"\x00\x00\x08\x03",
        b"\x00\x00\x08\x01",
        b"\x00\x00\x08\x0d",
        b"\x00\x00\x00\x00",
        b"\xff\xff\xff\xff",
    ];
    let text_tokens: &[&str] = &[
        "network ",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "->",
        "→",
        "×",
        "x",
        "/",
        ",",
        "=",
        "\n",
        "#",
        "//",
        "-",
        "+",
        ".",
        "e",
        "E",
        "e-",
        "0",
        "1",
        "3x3/1",
        "2x2/2",
        "5e-1",
        ".5",
        "5.",
        "1E3",
        "1e-50",
        "1e39",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "0.0",
        "-1",
        "NaN",
        "inf",
        "\u{feff}",
        "\u{a0}",
        "—",
        "–",
        "é",
        "LIF",
        "IF",
        "ReLU",
        "skip ",
        " add",
        " concat",
        " x2",
        " x0",
        " x65535",
        "input 1x28x28",
        "input 0x0x0",
        "encode poisson",
        "encode direct",
        "timesteps 0",
        "timesteps 4294967295",
        "Conv1(1,8,3x3/1)",
        "FC1(10,10)",
        "MaxPool(2)",
        "AvgPool(2)",
        "Dropout(0.5)",
        "leak = 0.5",
        "threshold = 1e-50",
        "reset = zero",
        "surrogate linear(gamma = 0.3)",
    ];
    if target == Target::Data {
        set.extend(data_tokens.iter().map(|t| t.to_vec()));
    } else {
        set.extend(text_tokens.iter().map(|t| t.as_bytes().to_vec()));
    }
    if target != Target::Data {
        for e in entries {
            let text = String::from_utf8_lossy(e);
            let mut word = String::new();
            for ch in text.chars().chain(std::iter::once(' ')) {
                if ch.is_alphanumeric() || ch == '_' {
                    word.push(ch);
                } else if !word.is_empty() {
                    set.insert(std::mem::take(&mut word).into_bytes());
                }
            }
        }
    }
    let mut v: Vec<Vec<u8>> = set.into_iter().collect();
    v.sort();
    v
}

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'(', b')', b'[', b']', b'{', b'}', b'x', b'/', b',', b'\n', b'-',
    b'.', b'e', b'0', b'9', b' ', b'=', b'#', 0x1f, 0x8b, 0xc3, 0xe2,
];

const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "340282366920938463463374607431768211456",
    "1e38",
    "3.5e38",
    "1e-45",
    "1e-46",
    "0.0",
    "00000000000000000000001",
    "9.9e-1",
];

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    10,
    28,
    255,
    256,
    3072,
    3073,
    10_000,
    60_000,
    0x0803,
    0x0801,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// One mutated input built from a corpus entry.
fn mutate(u: &mut Unstructured, corpus: &Corpus, max_len: usize) -> Vec<u8> {
    let pick =
        |u: &mut Unstructured| -> usize { u.choose_index(corpus.entries.len()).unwrap_or(0) };
    let mut v = corpus.entries[pick(u)].clone();
    let n = u.int_in_range(1..=6).unwrap_or(1);
    for _ in 0..n {
        let op: u8 = u.int_in_range(0..=13).unwrap_or(0);
        let len = v.len();
        let at =
            |u: &mut Unstructured, len: usize| -> usize { u.int_in_range(0..=len).unwrap_or(0) };
        match op {
            0 if len > 0 => {
                let i = at(u, len - 1);
                let bit: u8 = u.int_in_range(0..=7).unwrap_or(0);
                v[i] ^= 1 << bit;
            }
            1 if len > 0 => {
                let i = at(u, len - 1);
                v[i] = *u.choose(INTERESTING_BYTES).unwrap_or(&0);
            }
            2 => {
                let i = at(u, len);
                let k = u.int_in_range(1..=8).unwrap_or(1);
                let bytes: Vec<u8> = (0..k).map(|_| u.arbitrary().unwrap_or(0)).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = at(u, len - 1);
                let k = u.int_in_range(1..=(len - i).min(len / 4 + 1)).unwrap_or(1);
                v.drain(i..i + k);
            }
            4 if len > 0 => {
                let i = at(u, len - 1);
                let k = u.int_in_range(1..=(len - i).min(64)).unwrap_or(1);
                let chunk = v[i..i + k].to_vec();
                let j = at(u, len);
                v.splice(j..j, chunk);
            }
            5 => {
                let other = &corpus.entries[pick(u)];
                if !other.is_empty() {
                    let i = at(u, other.len() - 1);
                    let k = u.int_in_range(1..=(other.len() - i).min(256)).unwrap_or(1);
                    let j = at(u, len);
                    v.splice(j..j, other[i..i + k].iter().copied());
                }
            }
            6 if !corpus.dictionary.is_empty() => {
                let tok = u.choose(&corpus.dictionary).cloned().unwrap_or_default();
                let j = at(u, len);
                v.splice(j..j, tok);
            }
            7 => {
                // Replace a run of digits with an interesting number.
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
                    .collect();
                if let Ok(&s) = u.choose(&starts) {
                    let e = (s..len).find(|&i| !v[i].is_ascii_digit()).unwrap_or(len);
                    let num = u.choose(INTERESTING_NUMBERS).unwrap_or(&"0");
                    v.splice(s..e, num.bytes());
                }
            }
            8 if len >= 4 => {
                // A big-endian u32 at a 4-aligned offset (IDX header fields), past a mode byte.
                let slots = (len - 1) / 4;
                if slots > 0 {
                    let k = u.int_in_range(0..=slots.min(8) - 1).unwrap_or(0);
                    let i = 1 + 4 * k;
                    let x = if u.arbitrary::<bool>().unwrap_or(false) {
                        *u.choose(INTERESTING_U32).unwrap_or(&0)
                    } else {
                        u.arbitrary().unwrap_or(0)
                    };
                    v[i..i + 4].copy_from_slice(&x.to_be_bytes());
                }
            }
            9 if len > 0 => {
                let i = at(u, len - 1);
                v.truncate(i);
            }
            10 if !corpus.dictionary.is_empty() => {
                // Replace a word with a dictionary token.
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| {
                        v[i].is_ascii_alphabetic() && (i == 0 || !v[i - 1].is_ascii_alphanumeric())
                    })
                    .collect();
                if let Ok(&s) = u.choose(&starts) {
                    let e = (s..len)
                        .find(|&i| !v[i].is_ascii_alphanumeric())
                        .unwrap_or(len);
                    let tok = u.choose(&corpus.dictionary).cloned().unwrap_or_default();
                    v.splice(s..e, tok);
                }
            }
            11 => {
                // Crossover: this entry's prefix, another's suffix.
                let other = &corpus.entries[pick(u)];
                let i = at(u, len);
                let j = at(u, other.len());
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            12 if len > 0 => {
                // Repeat a short range many times (deep nesting, long lists).
                let i = at(u, len - 1);
                let k = u.int_in_range(1..=(len - i).min(16)).unwrap_or(1);
                let times = u.int_in_range(2..=200).unwrap_or(2);
                let chunk = v[i..i + k].to_vec();
                let rep: Vec<u8> = chunk.iter().copied().cycle().take(k * times).collect();
                v.splice(i..i, rep);
            }
            13 if len > 1 => {
                // Swap two bytes.
                let i = at(u, len - 1);
                let j = at(u, len - 1);
                v.swap(i, j);
            }
            _ => {}
        }
        v.truncate(max_len);
    }
    v
}

/// Deletes chunks of `input` while the target still panics at `loc`.
fn minimise(target: Target, input: &[u8], loc: &str, scratch: &Path) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    let mut tries = 0;
    while chunk >= 1 && tries < 3000 {
        let mut i = 0;
        while i < best.len() && tries < 3000 {
            let end = (i + chunk).min(best.len());
            let mut cand = best.clone();
            cand.drain(i..end);
            tries += 1;
            match exec(target, &cand, scratch) {
                Err((_, l)) if l == loc => best = cand,
                _ => i += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    best
}
