//! `snnc import IN.nir [-o OUT.snn] [--weights-out W.safetensors] [--dt SECONDS]`: turns a
//! NIR graph into a `.snn` file and a checkpoint that `snnc check/estimate/eval` use
//! (`crate::import`). Exit status: 0 written, 1 a graph snnc cannot represent or a
//! malformed file (diagnostics with codes `snnc::nir::*`), 2 usage or I/O.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::export::nir::DEFAULT_DT;
use crate::import::{self, ImportOptions};
use crate::train::checkpoint::{self, Meta};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The NIR graph (HDF5).
    pub file: PathBuf,
    /// The .snn file to write (default: IN with the extension .snn).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The weights to write (default: OUT with the extension .safetensors).
    #[arg(long)]
    pub weights_out: Option<PathBuf>,
    /// dt in seconds when the graph's metadata has none (τ → α = 1 − dt/τ).
    #[arg(long, default_value_t = DEFAULT_DT)]
    pub dt: f64,
    /// The network's name when the graph's metadata has none.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: ImportArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ImportOptions {
        dt: args.dt,
        name: args.name.clone(),
    };
    let imported = match import::import_bytes(bytes, &opts) {
        Ok(i) => i,
        Err(d) => {
            eprint!("{}", d.render_stderr(&name, ""));
            return ExitCode::from(1);
        }
    };
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| args.file.with_extension("snn"));
    let weights = args
        .weights_out
        .clone()
        .unwrap_or_else(|| out.with_extension("safetensors"));
    if let Err(e) = std::fs::write(&out, &imported.source) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let meta = Meta {
        epoch: 0,
        seed: 0,
        network: imported.network.clone(),
        method: imported.method.clone(),
        // An imported graph was not trained by snnc: no run settings to resume from.
        settings: None,
        ..Default::default()
    };
    if let Err(e) = checkpoint::save(&weights, &imported.tensors, &meta) {
        eprintln!("error: cannot write {}: {e}", weights.display());
        return ExitCode::from(2);
    }
    println!(
        "wrote {} (network `{}`) and {} (dt = {} s)",
        out.display(),
        imported.network,
        weights.display(),
        imported.dt
    );
    ExitCode::SUCCESS
}
