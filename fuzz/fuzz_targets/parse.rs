//! Fuzz the whole front end with libFuzzer: any bytes must give a program or diagnostics,
//! never a panic. Needs nightly (`cargo +nightly fuzz run parse` from the crate root); on
//! stable use `examples/fuzz_stable` (see docs/reliability.md), which runs the same checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match snnc::syntax::decode(data) {
        Ok(t) => t,
        Err(d) => {
            let _ = d.render_text("fuzz.snn", &String::from_utf8_lossy(data), 100, false);
            return;
        }
    };
    let (_program, diags) = snnc::compile_with_diagnostics(text, None);
    let _ = diags.render_text("fuzz.snn", text, 100, false);
    let _ = diags.to_json("fuzz.snn", text);
});
