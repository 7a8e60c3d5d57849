//! The `stdp(...)` setting of a network file (issue 9): every key reaches the IR with its
//! value, bad keys and values are diagnostics with codes (never panics; property tests),
//! `snnc show` prints what the file writes, and a run's STDP settings follow
//! `--stdp-images` > `[train.stdp]` > `stdp(...)` > defaults.

use proptest::prelude::*;
use snnc::ir::StdpSettings;
use snnc::train::stdp::{StdpConfig, StdpToml};

fn net_src(setting: &str) -> String {
    format!(
        "network N {{\n    input 1x28x28\n    method stdp\n    {setting}\n    \
         Conv1(1,4,3x3/1) IF\n    Pool(4x4/4)\n    FC1(196,10)\n}}\n"
    )
}

fn stdp_of(setting: &str) -> StdpSettings {
    let src = net_src(setting);
    match snnc::compile(&src) {
        Ok(p) => p.networks[0].settings.stdp,
        Err(d) => panic!("{}", d.render_text("t.snn", &src, 100, false)),
    }
}

fn codes(setting: &str) -> Vec<String> {
    match snnc::compile(&net_src(setting)) {
        Ok(_) => vec![],
        Err(d) => d.codes(),
    }
}

#[test]
fn every_key_reaches_the_ir() {
    let s = stdp_of(
        "stdp(eta=0.001, tau=20, offset=0.3, wmin=-0.5, wmax=2, target_rate=0.1, gain=0.5, \
         min_threshold=0.2, wta=false, dropout=0.25, batch=8, images=300)",
    );
    assert_eq!(
        s,
        StdpSettings {
            eta: Some(0.001),
            tau: Some(20.0),
            offset: Some(0.3),
            w_min: Some(-0.5),
            w_max: Some(2.0),
            target_rate: Some(0.1),
            gain: Some(0.5),
            min_threshold: Some(0.2),
            wta: Some(false),
            dropout: Some(0.25),
            batch: Some(8),
            images: Some(300),
        }
    );
    // The TOML spellings of the bounds are accepted too; unwritten keys stay None.
    let s = stdp_of("stdp(w_min=-2, w_max=3)");
    assert_eq!(
        (s.w_min, s.w_max, s.eta, s.wta),
        (Some(-2.0), Some(3.0), None, None)
    );
    // A network without the setting has none, and its JSON has no `stdp` key.
    let p = snnc::compile(&net_src("timesteps 5")).unwrap();
    assert!(p.networks[0].settings.stdp.is_empty());
    assert!(!snnc::export::json::to_json(&p.networks[0])
        .to_string()
        .contains("\"stdp\":"));
}

#[test]
fn show_prints_the_written_constants() {
    let p = snnc::compile(&net_src("stdp(tau=20, eta=0.001, wta=true)")).unwrap();
    let text = snnc::export::text::to_text(&p.networks[0]);
    // In the fixed key order, not the written one.
    assert!(
        text.lines()
            .any(|l| l == "  stdp: eta=0.001 tau=20 wta=true"),
        "{text}"
    );
    let p = snnc::compile(&net_src("timesteps 5")).unwrap();
    assert!(!snnc::export::text::to_text(&p.networks[0]).contains("stdp:"));
    // The whole `snnc show` text of a network with the setting (golden).
    let p = snnc::compile(&net_src(
        "stdp(eta=0.001, tau=20, offset=0.3, wmin=-1, wmax=1, gain=0.5, wta=false)",
    ))
    .unwrap();
    insta::assert_snapshot!("show_text", snnc::export::text::to_text(&p.networks[0]));
}

#[test]
fn bad_settings_have_codes() {
    assert_eq!(codes("stdp(eta=1, eta=2)"), ["snnc::syntax::arguments"]);
    assert_eq!(codes("stdp(lr=0.1)"), ["snnc::syntax::arguments"]);
    assert_eq!(codes("stdp(0.1)"), ["snnc::syntax::arguments"]);
    assert_eq!(codes("stdp(tau=-1)"), ["snnc::syntax::range"]);
    assert_eq!(codes("stdp(wmin=0.5, wmax=0.5)"), ["snnc::syntax::range"]);
    assert_eq!(codes("stdp(batch=0)"), ["snnc::syntax::range"]);
    assert_eq!(codes("stdp(images=4294967296)"), ["snnc::syntax::range"]);
    assert_eq!(codes("stdp(wta=yes)"), ["snnc::syntax::bad_value"]);
    assert_eq!(codes("stdp(eta=fast)"), ["snnc::syntax::bad_value"]);
    assert_eq!(codes("stdp"), ["snnc::syntax::bad_value"]);
    assert_eq!(codes("stdp(eta=0.1) tau"), ["snnc::syntax::bad_value"]);
    assert_eq!(
        codes("stdp(eta=0.1)\n    stdp(tau=2)"),
        ["snnc::syntax::misplaced"]
    );
    // A near miss of the keyword is an unknown setting with a hint.
    assert_eq!(codes("STDP(eta=0.1)"), ["snnc::syntax::unknown_setting"]);
}

#[test]
fn precedence_flag_over_toml_over_file_over_default() {
    let d = StdpConfig::default();
    let file = StdpSettings {
        eta: Some(0.002),
        tau: Some(7.0),
        gain: Some(0.5),
        images: Some(500),
        ..StdpSettings::default()
    };
    // Nothing written: the defaults.
    assert_eq!(
        StdpConfig::resolve(&StdpSettings::default(), None, None).unwrap(),
        d
    );
    // The file over the defaults, key by key.
    let c = StdpConfig::resolve(&file, None, None).unwrap();
    assert_eq!((c.params.eta, c.params.tau), (0.002, 7.0));
    assert_eq!(c.params.offset, d.params.offset);
    assert_eq!(
        (c.adaptation.gain, c.adaptation.target_rate),
        (0.5, d.adaptation.target_rate)
    );
    assert_eq!(c.images, 500);
    // [train.stdp] over the file, only for the keys it writes.
    let toml: StdpToml =
        toml::from_str("params = { eta = 0.05 }\nadaptation = { gain = 3.0 }\nimages = 40\n")
            .unwrap();
    let c = StdpConfig::resolve(&file, Some(&toml), None).unwrap();
    assert_eq!((c.params.eta, c.params.tau), (0.05, 7.0));
    assert_eq!(c.adaptation.gain, 3.0);
    assert_eq!(c.images, 40);
    assert_eq!(c.wta, d.wta);
    // --stdp-images over both.
    let c = StdpConfig::resolve(&file, Some(&toml), Some(7)).unwrap();
    assert_eq!(c.images, 7);
    assert_eq!(c.params.eta, 0.05);
    // A [train.stdp] table with an unknown key or a wrong type is refused when read.
    assert!(toml::from_str::<StdpToml>("params = { lr = 0.1 }\n").is_err());
    assert!(toml::from_str::<StdpToml>("wta = 3\n").is_err());
}

#[test]
fn cli_run_uses_the_file_constants_and_the_toml_over_them() {
    // The report of a tiny run records what it trained with (`stdp_config`).
    let dir = tempfile::tempdir().unwrap();
    let snn = dir.path().join("n.snn");
    std::fs::write(
        &snn,
        "network N {\n    input 1x28x28\n    timesteps 4\n    method stdp\n    \
         stdp(eta=0.002, tau=7, images=8)\n    Conv1(1,4,3x3/1) IF\n    Pool(4x4/4)\n    \
         FC1(196,16)-ReLU\n    FC2(16,10)\n}\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[train.stdp]\nparams = { tau = 3.0 }\n").unwrap();
    let out = dir.path().join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args([
            "train",
            snn.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            "embedded",
            "--train-limit",
            "16",
            "--test-limit",
            "16",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    let found = v["stdp_config"]["params"].clone();
    assert_eq!(found["eta"].as_f64().map(|x| x as f32), Some(0.002));
    assert_eq!(found["tau"].as_f64(), Some(3.0));
    assert_eq!(v["timesteps"].as_u64(), Some(4));
    assert_eq!(v["stdp_images"].as_u64(), Some(8));
    assert_eq!(v["stdp_config"]["timesteps"].as_u64(), Some(4));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any in-range constants, printed with `{}`, come back unchanged; the resolved config
    /// carries them and validates.
    #[test]
    fn in_range_values_round_trip(
        eta in 0.0f32..10.0,
        tau in 0.01f32..1000.0,
        offset in 0.0f32..=1.0,
        lo in -5.0f32..0.0,
        width in 0.01f32..5.0,
        dropout in 0.0f32..0.99,
    ) {
        let hi = lo + width;
        prop_assume!(lo < hi);
        let s = stdp_of(&format!(
            "stdp(eta={eta}, tau={tau}, offset={offset}, wmin={lo}, wmax={hi}, dropout={dropout})"
        ));
        prop_assert_eq!(s.eta, Some(eta));
        prop_assert_eq!(s.tau, Some(tau));
        prop_assert_eq!(s.offset, Some(offset));
        prop_assert_eq!((s.w_min, s.w_max), (Some(lo), Some(hi)));
        prop_assert_eq!(s.dropout, Some(dropout));
        let c = StdpConfig::resolve(&s, None, None).unwrap();
        prop_assert!(c.validate().is_ok());
        prop_assert_eq!(c.params.tau, tau);
    }

    /// Out-of-range values are range errors (no panic, no silent clamp).
    #[test]
    fn out_of_range_values_are_range_errors(
        key in prop::sample::select(vec!["eta", "tau", "offset", "target_rate", "gain", "min_threshold", "dropout"]),
        x in -1000.0f32..1000.0,
    ) {
        let bad = match key {
            "eta" | "gain" => x < 0.0,
            "tau" | "min_threshold" => x <= 0.0,
            "offset" | "target_rate" => !(0.0..=1.0).contains(&x),
            _ => !(0.0..1.0).contains(&x),
        };
        let c = codes(&format!("stdp({key}={x})"));
        if bad {
            prop_assert_eq!(c, vec!["snnc::syntax::range".to_string()]);
        } else {
            prop_assert!(c.is_empty(), "{:?}", c);
        }
    }

    /// Arbitrary text inside `stdp(...)` never panics: it compiles or has diagnostics.
    #[test]
    fn arbitrary_arguments_never_panic(inner in "[a-z_=,.0-9 +-]{0,40}") {
        let src = net_src(&format!("stdp({inner})"));
        let _ = snnc::compile(&src);
    }
}
