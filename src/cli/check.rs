//! `snnc check` (placeholder until its owner fills it in).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub fn run(_args: CheckArgs) -> ExitCode {
    eprintln!("snnc check: not available yet");
    ExitCode::from(2)
}
