//! `snnc check FILE... [--format text|json]`: compile each file and report every
//! diagnostic. Exit 0 without errors (warnings allowed), 1 with errors, 2 when a file
//! cannot be read.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::diagnostics::Diagnostics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The .snn files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// For subcommands that need a compiled file (`estimate`, `train`, ...): reads and compiles
/// `path`, prints any diagnostics (warnings too) to stderr, and returns the program, or the
/// exit code to return (1 for errors in the file, 2 when it cannot be read).
pub fn compile_file_or_report(path: &std::path::Path) -> Result<crate::ir::Program, ExitCode> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {name}: {e}");
        ExitCode::from(2)
    })?;
    let text = match crate::syntax::decode(&bytes) {
        Ok(t) => t,
        Err(d) => {
            eprint!(
                "{}",
                d.render_stderr(&name, &String::from_utf8_lossy(&bytes))
            );
            return Err(ExitCode::from(1));
        }
    };
    let (program, diags) = crate::compile_with_diagnostics(text, None);
    if !diags.is_empty() {
        eprint!("{}", diags.render_stderr(&name, text));
    }
    program.ok_or(ExitCode::from(1))
}

/// Whether diagnostics on stderr should be coloured: a terminal and no `NO_COLOR`.
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Terminal width for rendering (`COLUMNS`, else 100).
pub fn term_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&w| w >= 40)
        .unwrap_or(100)
}

/// Reads a file and compiles it: the source text (lossy if not UTF-8) and the diagnostics.
/// `Err` is an I/O error message.
pub fn check_file(path: &std::path::Path) -> Result<(String, Diagnostics), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match crate::syntax::decode(&bytes) {
        Ok(text) => {
            let (_, diags) = crate::compile_with_diagnostics(text, None);
            Ok((text.to_string(), diags))
        }
        Err(diags) => Ok((String::from_utf8_lossy(&bytes).into_owned(), diags)),
    }
}

pub fn run(args: CheckArgs) -> ExitCode {
    let color = use_color();
    let width = term_width();
    let mut errors = false;
    let mut io_error = false;
    let mut json = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        match check_file(path) {
            Err(msg) => {
                eprintln!("error: {msg}");
                io_error = true;
            }
            Ok((source, diags)) => {
                errors |= diags.has_errors();
                match args.format {
                    Format::Text => {
                        eprint!("{}", diags.render_text(&name, &source, width, color));
                        if diags.is_empty() {
                            println!("{name}: ok");
                        } else {
                            eprintln!(
                                "{name}: {} error{}, {} warning{}",
                                diags.error_count(),
                                if diags.error_count() == 1 { "" } else { "s" },
                                diags.warning_count(),
                                if diags.warning_count() == 1 { "" } else { "s" },
                            );
                        }
                    }
                    Format::Json => {
                        if let serde_json::Value::Array(items) = diags.to_json(&name, &source) {
                            json.extend(items);
                        }
                    }
                }
            }
        }
    }
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(json)).unwrap_or_default()
        );
    }
    if io_error {
        ExitCode::from(2)
    } else if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
