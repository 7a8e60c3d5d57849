//! `snnc show` (placeholder until its owner fills it in).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {}

pub fn run(_args: ShowArgs) -> ExitCode {
    eprintln!("snnc show: not available yet");
    ExitCode::from(2)
}
