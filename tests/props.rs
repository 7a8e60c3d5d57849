//! Property tests of the front end: unrolling keeps unique parameters and multiplies
//! applications; no input (random bytes, mutations of valid files, pathological nesting
//! and numbers) makes the compiler panic or hang.

use proptest::prelude::*;

/// A segment of the main path: `len` distinct C→C convolutions repeated `count` times.
#[derive(Debug, Clone)]
struct Segment {
    len: usize,
    count: u32,
}

const SEPS: [&str; 6] = ["\n", " – ", "—", " -> ", "→", "; "];

/// The network written with repeats (`Conv3 x2`, `[Conv4 Conv5] x3`) and as the paper's
/// unrolled row (every application written out, later ones by bare name).
fn render(segs: &[Segment], sep: &str) -> (String, String) {
    let mut compact = String::from("network P {\n input 4x8x8\n Conv0(4,4,3x3/1)\n");
    let mut unrolled = compact.clone();
    let mut id = 1;
    for s in segs {
        let names: Vec<String> = (0..s.len).map(|k| format!("Conv{}", id + k)).collect();
        id += s.len;
        let decl: Vec<String> = names.iter().map(|n| format!("{n}(4,4,3x3/1)")).collect();
        if s.len == 1 {
            compact.push_str(&format!(" {} x{}\n", decl[0], s.count));
        } else {
            compact.push_str(&format!(" [{}] x{}\n", decl.join(" "), s.count));
        }
        let mut row = Vec::new();
        for c in 0..s.count {
            for (k, n) in names.iter().enumerate() {
                row.push(if c == 0 { decl[k].clone() } else { n.clone() });
            }
        }
        unrolled.push_str(&format!(" {}\n", row.join(sep)));
    }
    compact.push_str(" FC1(256,10)\n}\n");
    unrolled.push_str(" FC1(256,10)\n}\n");
    (compact, unrolled)
}

fn segments() -> impl Strategy<Value = Vec<Segment>> {
    prop::collection::vec(
        (1usize..4, 1u32..5).prop_map(|(len, count)| Segment { len, count }),
        0..6,
    )
}

/// What any compilation must satisfy, whatever the input: a program comes back exactly when
/// there are no errors (checked by what each side holds, not by `is_some`), a returned program
/// is in final form (every node resolved, shaped and in a domain; one threshold slot per
/// spiking node, pointing at it), and every error carries a `snnc::` code and labels that lie
/// inside the source text.
fn check_outcome(
    text: &str,
    program: &Option<snnc::ir::Program>,
    diags: &snnc::diagnostics::Diagnostics,
) -> Result<(), TestCaseError> {
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    prop_assert_eq!(errors.len(), diags.error_count());
    match program {
        Some(p) => {
            prop_assert!(errors.is_empty(), "a program with errors: {}", diags);
            prop_assert!(!p.networks.is_empty());
            for net in &p.networks {
                let mut spiking = 0;
                for n in net.graph.node_indices() {
                    let node = &net.graph[n];
                    prop_assert!(
                        !matches!(node.op, snnc::ir::Op::Layer { .. }),
                        "{} unresolved",
                        node.name
                    );
                    prop_assert!(
                        node.out_shape.is_some() && node.domain.is_some(),
                        "{} not shaped",
                        node.name
                    );
                    if node.is_spiking() {
                        spiking += 1;
                        let slot = node.slot.ok_or_else(|| {
                            TestCaseError::fail(format!("{} has no slot", node.name))
                        })?;
                        prop_assert_eq!(net.thresholds[slot.0].node, n);
                    }
                }
                prop_assert_eq!(net.thresholds.len(), spiking);
            }
        }
        None => {
            prop_assert!(!errors.is_empty(), "no program and no error");
            for d in errors {
                prop_assert!(d.code().starts_with("snnc::"), "code `{}`", d.code());
                for l in d.labels() {
                    prop_assert!(
                        l.offset() + l.len() <= text.len(),
                        "{}: label {:?} outside {} bytes",
                        d.code(),
                        l,
                        text.len()
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unrolling_keeps_unique_params_and_multiplies_applications(segs in segments(), sep in 0usize..SEPS.len()) {
        let (compact, unrolled) = render(&segs, SEPS[sep]);
        let a = snnc::compile(&compact).map_err(|d| TestCaseError::fail(d.to_string()))?.networks.remove(0);
        let b = snnc::compile(&unrolled).map_err(|d| TestCaseError::fail(d.to_string()))?.networks.remove(0);
        let distinct: usize = 1 + segs.iter().map(|s| s.len).sum::<usize>();
        // Weights counted once: 4·4·3·3 per conv, 256·10 for FC1.
        let params = distinct as u64 * 144 + 2560;
        prop_assert_eq!(a.unique_params(), Some(params));
        prop_assert_eq!(b.unique_params(), Some(params));
        prop_assert_eq!(a.weights.len(), distinct + 1);
        // Each repeated layer is applied `count` times, steps 1..=count.
        let mut id = 1;
        for s in &segs {
            for k in 0..s.len {
                let w = a.weights.iter().position(|w| w.name == format!("Conv{}", id + k)).unwrap();
                prop_assert_eq!(a.applications(snnc::ir::WeightId(w)), s.count);
                prop_assert_eq!(b.applications(snnc::ir::WeightId(w)), s.count);
            }
            id += s.len;
        }
        let applications: u32 = 1 + segs.iter().map(|s| s.len as u32 * s.count).sum::<u32>();
        let convs = |n: &snnc::ir::Network| n.graph.node_weights().filter(|x| matches!(x.op, snnc::ir::Op::Conv { .. })).count() as u32;
        prop_assert_eq!(convs(&a), applications);
        prop_assert_eq!(a.thresholds.len() as u32, applications);
        // The two spellings are the same IR.
        prop_assert_eq!(snnc::export::text::to_text(&a), snnc::export::text::to_text(&b));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        match snnc::syntax::decode(&bytes) {
            Ok(text) => {
                let (program, diags) = snnc::compile_with_diagnostics(text, None);
                check_outcome(text, &program, &diags)?;
                let _ = diags.render_text("r.snn", text, 100, false);
            }
            Err(d) => prop_assert!(d.has_errors()),
        }
    }

    #[test]
    fn token_soup_never_panics(toks in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..60)) {
        let text = format!("network S {{\n input 4x8x8\n{}\n}}", toks.join(" "));
        let (program, diags) = snnc::compile_with_diagnostics(&text, None);
        check_outcome(&text, &program, &diags)?;
        // Internal errors are compiler bugs: never reported for any input.
        prop_assert!(!diags.codes().iter().any(|c| c.contains("invariant") || c.contains("internal")), "{}", diags);
        let _ = diags.render_text("s.snn", &text, 100, false);
    }

    #[test]
    fn mutations_of_valid_files_never_panic(
        edits in prop::collection::vec((0usize..10_000, 0u8..3, prop::sample::select(vec!['[', ']', '(', ')', '{', '}', '-', '–', 'x', '0', '9', ',', '/', ';', '\n', ' ', 'L', '#', '→', '\u{0}'])), 1..8)
    ) {
        let mut chars: Vec<char> = VALID.chars().collect();
        for (pos, op, c) in edits {
            let at = pos % (chars.len() + 1);
            match op {
                0 => chars.insert(at, c),
                1 if at < chars.len() => { chars.remove(at); }
                _ if at < chars.len() => chars[at] = c,
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        let (program, diags) = snnc::compile_with_diagnostics(&text, None);
        check_outcome(&text, &program, &diags)?;
        prop_assert!(!diags.codes().iter().any(|c| c.contains("invariant") || c.contains("internal")), "{}", diags);
        let _ = diags.render_text("m.snn", &text, 100, false);
        let _ = diags.to_json("m.snn", &text);
    }
}

/// Pieces of the language, shuffled by `token_soup_never_panics`.
const TOKENS: &[&str] = &[
    "Conv1(4,4,3x3/1)",
    "Conv2(4,8,3x3/2)",
    "Conv1",
    "Conv2",
    "Conv3(8,4,1x1/1, pad=0)",
    "FC1(256,10)",
    "FC2(10,10)",
    "FC1",
    "Pool(2x2/2)",
    "MaxPool(2x2/2)",
    "Dropout(0.5)",
    "ReLU",
    "LIF",
    "IF",
    "LIF(leak=0.5)",
    "-ReLU",
    "-LIF",
    "x2",
    "x3",
    "x1",
    "[",
    "]",
    "–",
    "-",
    "->",
    "→",
    ";",
    "\n",
    "Input",
    "softmax",
    "stochmax",
    "skip Conv1 -> FC1 concat\n",
    "skip Input -> Conv2 add\n",
    "skip Conv2 -> Conv1 add\n",
    "timesteps 5\n",
    "encode direct\n",
    "neuron IF(threshold=2)\n",
    "# comment\n",
    "input 4x8x8\n",
];

const VALID: &str = "network VGG3x2 {
    input 3x32x32
    timesteps 25
    neuron LIF(leak = 0.99, threshold = 1.0, reset = subtract)
    Input–Conv1(3,64,3x3/1)-ReLU–Conv2(64,64,3x3/1) LIF
    Pool(2x2/2)
    [Conv3(64,64,3x3/1) Conv4(64,64,3x3/1)] x2 LIF
    Pool(2x2/2)
    FC1(8192,512) LIF; Dropout(0.2)
    FC2(512,10)
    skip Conv2 -> FC1 concat
    stochmax
}
";

fn codes(src: &str) -> Vec<String> {
    snnc::compile(src)
        .err()
        .map(|d| d.codes())
        .unwrap_or_default()
}

#[test]
fn valid_base_file_compiles() {
    // 64×8×8 from Pool plus the pooled skip from Conv2 (64×8×8): 8192 features.
    assert!(codes(VALID).is_empty());
    assert_eq!(
        codes(&VALID.replace("FC1(8192,512)", "FC1(4096,512)")),
        vec!["snnc::shape::mismatch"]
    );
}

#[test]
fn deep_nesting_gives_a_diagnostic() {
    let src = format!(
        "network N {{ input 1x2x2\n {}FC1(4,2){} }}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(codes(&src), vec!["snnc::syntax::too_deep"]);
    let unclosed = format!("network N {{ input 1x2x2\n {}", "[".repeat(10_000));
    assert_eq!(codes(&unclosed), vec!["snnc::syntax::too_deep"]);
    let parens = "(".repeat(100_000);
    assert!(!codes(&parens).is_empty());
}

#[test]
fn huge_numbers_give_diagnostics() {
    let big = "9".repeat(400);
    assert_eq!(
        codes(&format!("network N {{ input 1x2x2\n FC1({big},2) }}")),
        vec!["snnc::syntax::range"]
    );
    assert_eq!(
        codes(&format!("network N {{ input 1x2x2\n FC1(4,2) x{big} }}")),
        vec!["snnc::syntax::range"]
    );
    assert_eq!(
        codes(&format!(
            "network N {{ input 1x2x2\n timesteps {big}\n FC1(4,2) }}"
        )),
        vec!["snnc::syntax::range"]
    );
    assert_eq!(
        codes("network N { input 1x2x2\n Conv1(1,1,3x3/1) x4294967295\n FC1(4,2) }"),
        vec!["snnc::unroll::too_large"]
    );
    assert_eq!(
        codes("network N { input 4294967296x4294967296x2\n FC1(4,2) }"),
        vec!["snnc::shape::overflow"]
    );
    assert_eq!(
        codes("network N { input 1x2x2\n FC1(4,4294967296)\n FC2(4294967296,4294967296) }"),
        vec!["snnc::resolve::overflow"]
    );
}

#[test]
fn empty_and_binary_inputs_give_diagnostics() {
    assert_eq!(codes(""), vec!["snnc::syntax::empty"]);
    assert_eq!(codes("  # only a comment\n"), vec!["snnc::syntax::empty"]);
    assert_eq!(
        codes("\u{0}\u{1}\u{7f}garbage"),
        vec!["snnc::syntax::parse"]
    );
    let d = snnc::syntax::decode(&[0xff, 0xfe, 0x00, 0x80]).unwrap_err();
    assert_eq!(d.codes(), vec!["snnc::syntax::not_utf8"]);
}

#[test]
fn skip_paths_are_shared_and_bounded() {
    // 3000 skips from one source across 3000 pools share one copied path.
    let mut src = String::from("network N {\n input 1x1x1\n Conv0(1,1,1x1/1)\n");
    src.push_str(&" Pool(1x1/1)\n".repeat(3000));
    src.push_str(" FC1(1,1)\n");
    src.push_str(&" skip Conv0 -> FC1 add\n".repeat(3000));
    src.push_str("}\n");
    let n = snnc::compile(&src).unwrap().networks.remove(0);
    let pools = n
        .graph
        .node_weights()
        .filter(|x| matches!(x.op, snnc::ir::Op::Pool { .. }))
        .count();
    assert_eq!(pools, 6000);
    // 1500 sources, each followed by a pool, all skipping to the end: ~1.1M copies needed.
    let mut src = String::from("network N {\n input 1x1x1\n");
    for i in 0..1500 {
        src.push_str(&format!(" Conv{i}(1,1,1x1/1)\n Pool(1x1/1)\n"));
    }
    src.push_str(" FC1(1,1)\n");
    for i in 0..1500 {
        src.push_str(&format!(" skip Conv{i} -> FC1 add\n"));
    }
    src.push_str("}\n");
    assert_eq!(codes(&src), vec!["snnc::skip::too_large"]);
}

/// The threshold of a one-layer network whose `neuron` sets `threshold = text`.
fn threshold_of(text: &str) -> f32 {
    let src = format!(
        "network N {{\n input 1x2x2\n neuron LIF(threshold = {text})\n FC1(4,2) LIF\n FC2(2,2)\n}}"
    );
    match snnc::compile(&src) {
        Ok(p) => p.networks[0].settings.neuron.threshold,
        Err(d) => panic!("`{text}`: {d}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any positive finite f32 (normal or subnormal), written as Rust prints it with `{}`
    /// (plain decimal) or `{:e}` (scientific, negative exponents included), reads back as
    /// the same f32, bit for bit.
    #[test]
    fn every_printed_f32_round_trips(
        x in prop::num::f32::POSITIVE | prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL
    ) {
        prop_assume!(x.is_finite() && x > 0.0);
        prop_assert_eq!(threshold_of(&format!("{x}")).to_bits(), x.to_bits());
        prop_assert_eq!(threshold_of(&format!("{x:e}")).to_bits(), x.to_bits());
        prop_assert_eq!(threshold_of(&format!("{x:E}")).to_bits(), x.to_bits());
    }
}
