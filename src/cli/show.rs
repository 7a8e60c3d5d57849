//! `snnc show FILE [--network NAME] [--after PASS] [--format text|dot|json]`: the IR of
//! each network after a pass (default: the whole pipeline), printed by `crate::export`
//! (text, graphviz DOT or JSON). This file maps flags onto that call and nothing more.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::export::{self, Format};
use crate::ir::Network;
use crate::passes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Text,
    Dot,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The .snn file.
    pub file: PathBuf,
    /// Only this network (default: all).
    #[arg(long)]
    pub network: Option<String>,
    /// Stop after this pass (the list comes from `passes::PASSES`).
    #[arg(long, help = after_help())]
    pub after: Option<String>,
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    pub format: ShowFormat,
}

/// `--after`'s help: the pass names from the one registry, [`passes::PASSES`].
fn after_help() -> String {
    format!("Stop after this pass: {}", passes::names_list())
}

pub fn run(args: ShowArgs) -> ExitCode {
    if let Some(p) = &args.after {
        if passes::position(p).is_none() {
            eprintln!(
                "error: unknown pass `{p}`; the passes are {}",
                passes::names_list()
            );
            return ExitCode::from(2);
        }
    }
    let name = args.file.display().to_string();
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let color = super::check::use_color();
    let width = super::check::term_width();
    let source = match crate::syntax::decode(&bytes) {
        Ok(s) => s,
        Err(d) => {
            eprint!(
                "{}",
                d.render_text(&name, &String::from_utf8_lossy(&bytes), width, color)
            );
            return ExitCode::from(1);
        }
    };
    let (program, diags) = crate::compile_with_diagnostics(source, args.after.as_deref());
    if !diags.is_empty() {
        eprint!("{}", diags.render_text(&name, source, width, color));
    }
    let Some(program) = program else {
        return ExitCode::from(1);
    };
    let nets: Vec<&Network> = program
        .networks
        .iter()
        .filter(|n| args.network.as_ref().is_none_or(|w| &n.name == w))
        .collect();
    if nets.is_empty() {
        eprintln!(
            "error: no network named `{}` in {name}",
            args.network.unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let format = match args.format {
        ShowFormat::Text => Format::Text,
        ShowFormat::Dot => Format::Dot,
        ShowFormat::Json => Format::Json,
    };
    println!("{}", export::render(&nets, format));
    ExitCode::SUCCESS
}
