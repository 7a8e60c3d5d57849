//! snnc: a compiler for spiking neural networks written the way papers print them.
//!
//! The folders are the pipeline (see `docs/architecture.md`):
//! `syntax` (grammar glue, AST, AST → IR lowering) → `ir` (the graph, plain data) → `passes`
//! (one pass per file) → `analysis` (cost and energy side tables) → `backend::candle`
//! (lowering, neurons, encoders, classifiers, the step-by-step runtime) → `train` (driver,
//! methods); `export` (the text, DOT, JSON and NIR printers); `import` (NIR → `.snn`); `data` (datasets); `cli`. `span` (byte ranges
//! into a source file) is shared by every stage.

pub mod analysis;
pub mod backend;
pub mod cli;
pub mod data;
pub mod diagnostics;
pub mod export;
pub mod import;
pub mod ir;
pub mod passes;
pub mod span;
pub mod syntax;
pub mod train;

use diagnostics::Diagnostics;

/// The whole front end: parse, build, run every pass. `Err` holds every error found (and
/// any warnings); use [`compile_with_diagnostics`] to keep warnings on success.
pub fn compile(source: &str) -> Result<ir::Program, Diagnostics> {
    let (program, diags) = compile_with_diagnostics(source, None);
    match program {
        Some(p) if !diags.has_errors() => Ok(p),
        _ => Err(diags),
    }
}

/// Parse, build and run the pipeline up to `stop_after` (all passes when `None`). The
/// program is `None` when there were errors; the diagnostics hold errors and warnings.
pub fn compile_with_diagnostics(
    source: &str,
    stop_after: Option<&str>,
) -> (Option<ir::Program>, Diagnostics) {
    let (file, mut diags) = syntax::parse(source);
    let (program, d) = syntax::lower_ir::build(&file);
    diags.extend(d);
    let (program, d) = passes::run_with_diagnostics(program, stop_after);
    diags.extend(d);
    diags.sort_by_position();
    if diags.has_errors() {
        (None, diags)
    } else {
        (Some(program), diags)
    }
}
