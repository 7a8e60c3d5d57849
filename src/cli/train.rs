//! `snnc train` (placeholder until its owner fills it in).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs) -> ExitCode {
    eprintln!("snnc train: not available yet");
    ExitCode::from(2)
}
