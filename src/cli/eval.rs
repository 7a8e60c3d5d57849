//! `snnc eval` (placeholder until its owner fills it in).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> ExitCode {
    eprintln!("snnc eval: not available yet");
    ExitCode::from(2)
}
