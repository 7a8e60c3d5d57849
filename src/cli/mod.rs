//! The `snnc` command line: one file per subcommand, each with its clap `Args` and a `run`
//! that returns the process exit status (0 ok, 1 errors in the input, 2 usage or I/O).

pub mod check;
pub mod estimate;
pub mod eval;
pub mod export;
pub mod import;
pub mod show;
pub mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// snnc — compile, check, estimate and train spiking neural networks written as papers print them.
#[derive(Debug, Parser)]
#[command(name = "snnc", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check .snn files and report every error with its location.
    Check(check::CheckArgs),
    /// Parameters, operations and energy of a network, per layer application.
    Estimate(estimate::EstimateArgs),
    /// Print the IR of a network after any pass (text, graphviz dot or JSON).
    Show(show::ShowArgs),
    /// Train a network (AGD surrogate gradients, an ANN baseline, or ANN-to-SNN conversion).
    Train(Box<train::TrainArgs>),
    /// Evaluate trained weights on the test set: accuracy and spike activity.
    Eval(eval::EvalArgs),
    /// Write a trained network as a NIR graph (HDF5) for other simulators and chips.
    Export(export::ExportArgs),
    /// Turn a NIR graph into a .snn file plus weights.
    Import(import::ImportArgs),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::Show(args) => show::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
    }
}
