//! `snnc export FILE --weights W [--network NAME] [--format nir] [--dt SECONDS] -o OUT`:
//! writes a trained network in an exchange format (NIR, see `crate::export::nir`).
//! Exit status: 0 written (warnings allowed), 1 errors in the input (a layer with no NIR
//! form, weights that do not fit), 2 usage or I/O.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::export::nir::{self, ExportOptions, DEFAULT_DT};
use crate::train::checkpoint;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The Neuromorphic Intermediate Representation (HDF5), read by snnTorch, Norse, Sinabs, ...
    Nir,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The .snn file.
    pub file: PathBuf,
    /// The trained weights (a `weights.safetensors` written by `snnc train` or `snnc import`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Which network of the file (default: the first).
    #[arg(long)]
    pub network: Option<String>,
    #[arg(long, value_enum, default_value = "nir")]
    pub format: ExportFormat,
    /// The step dt in seconds that maps the leak α to NIR's τ = dt/(1−α).
    #[arg(long, default_value_t = DEFAULT_DT)]
    pub dt: f64,
    /// Where to write the graph.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: ExportArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let program = match crate::cli::check::compile_file_or_report(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let names: Vec<String> = program.networks.iter().map(|n| n.name.clone()).collect();
    let net = match &args.network {
        None => program.networks.first(),
        Some(n) => program.networks.iter().find(|x| &x.name == n),
    };
    let Some(net) = net else {
        eprintln!(
            "error: {name} has no network {} (it has: {})",
            args.network.as_deref().unwrap_or("at all"),
            names.join(", ")
        );
        return ExitCode::from(if args.network.is_some() { 2 } else { 1 });
    };
    let (tensors, _meta) = match checkpoint::load(&args.weights) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let source = std::fs::read_to_string(&args.file).unwrap_or_default();
    match args.format {
        ExportFormat::Nir => {
            let (graph, warnings) = match nir::export(net, &tensors, ExportOptions { dt: args.dt })
            {
                Ok(x) => x,
                Err(d) => {
                    eprint!("{}", d.render_stderr(&name, &source));
                    return ExitCode::from(1);
                }
            };
            if !warnings.is_empty() {
                eprint!("{}", warnings.render_stderr(&name, &source));
            }
            let bytes = match graph.to_hdf5() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: cannot encode the NIR graph: {e}");
                    return ExitCode::from(1);
                }
            };
            if let Err(e) = std::fs::write(&args.output, bytes) {
                eprintln!("error: cannot write {}: {e}", args.output.display());
                return ExitCode::from(2);
            }
            eprintln!(
                "note: snnc fires at v >= v_threshold (graph metadata spike_rule); snnTorch and Norse fire at v > v_threshold (docs/nir.md)"
            );
            println!(
                "wrote {} (NIR, {} nodes, {} edges, dt = {} s)",
                args.output.display(),
                graph.nodes.len(),
                graph.edges.len(),
                args.dt
            );
            ExitCode::SUCCESS
        }
    }
}
