//! `snnc estimate` (placeholder until its owner fills it in).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EstimateArgs {}

pub fn run(_args: EstimateArgs) -> ExitCode {
    eprintln!("snnc estimate: not available yet");
    ExitCode::from(2)
}
