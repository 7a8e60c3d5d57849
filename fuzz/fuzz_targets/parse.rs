//! Fuzz the whole front end: any bytes must give a program or diagnostics, never a panic.
//! Run with `cargo +nightly fuzz run parse` from the crate root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match snnc::syntax::decode(data) {
        Ok(t) => t,
        Err(d) => {
            assert!(d.has_errors());
            return;
        }
    };
    let (program, diags) = snnc::compile_with_diagnostics(text, None);
    assert!(program.is_some() != diags.has_errors());
    let _ = diags.render_text("fuzz.snn", text, 100, false);
});
