//! The pass pipeline: one pass per file, run per network in the fixed order [`PIPELINE`].
//!
//! A pass only mutates the network it is given and reports problems as diagnostics; it
//! never panics on user input. When a pass finds errors in a network, the later passes
//! do not run on that network (other networks go on, so every network's errors are
//! reported). After `validate` a network satisfies the invariants of `crate::ir`.

pub mod hybrid;
pub mod resolve;
pub mod shapes;
pub mod threshold_slots;
pub mod unroll;
pub mod validate;

use miette::Diagnostic;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::{Method, Network, Node, Program};

/// The passes in order; these are also the names `snnc show --after` accepts.
pub const PIPELINE: &[&str] = &[
    "resolve",
    "unroll",
    "shapes",
    "hybrid",
    "threshold-slots",
    "validate",
];

/// Most nodes a network may have after unrolling (every application counts).
pub const MAX_APPLICATIONS: u64 = 1_000_000;

/// Time steps when the file sets none: AGD 25, conversion 100, STDP 100.
pub fn default_timesteps(method: Method) -> u32 {
    match method {
        Method::Agd => 25,
        Method::Conversion | Method::Stdp => 100,
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum PipelineError {
    #[error("unknown pass `{name}`")]
    #[diagnostic(code(snnc::passes::unknown), help("the passes are {}", PIPELINE.join(", ")))]
    UnknownPass { name: String },
}

/// How often each weight set is applied (its highest step), indexed by `WeightId`.
pub fn applications(net: &Network) -> Vec<u32> {
    let mut apps = vec![0u32; net.weights.len()];
    for n in net.graph.node_weights() {
        if let Some(w) = n.op.weights() {
            if let Some(a) = apps.get_mut(w.0) {
                *a = (*a).max(n.step);
            }
        }
    }
    apps
}

/// `Conv3@2` for the second application of a repeated layer, the plain name otherwise.
pub fn display_name(node: &Node, apps: &[u32]) -> String {
    let a = node
        .op
        .weights()
        .and_then(|w| apps.get(w.0).copied())
        .unwrap_or(1);
    node.display_name(a)
}

fn run_pass(name: &str, net: &mut Network, diags: &mut Diagnostics) {
    match name {
        "resolve" => resolve::run(net, diags),
        "unroll" => unroll::run(net, diags),
        "shapes" => shapes::run(net, diags),
        "hybrid" => hybrid::run(net, diags),
        "threshold-slots" => threshold_slots::run(net, diags),
        _ => validate::run(net, diags),
    }
}

/// Runs the pipeline (up to and including `stop_after`) on every network.
pub fn run(program: Program, stop_after: Option<&str>) -> Result<Program, Diagnostics> {
    let (program, diags) = run_with_diagnostics(program, stop_after);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(program)
    }
}

/// Like [`run`], but returns the program together with every diagnostic (warnings too).
pub fn run_with_diagnostics(
    mut program: Program,
    stop_after: Option<&str>,
) -> (Program, Diagnostics) {
    let mut diags = Diagnostics::new();
    let last = match stop_after {
        None => PIPELINE.len() - 1,
        Some(name) => match PIPELINE.iter().position(|p| *p == name) {
            Some(i) => i,
            None => {
                diags.push(PipelineError::UnknownPass {
                    name: name.to_string(),
                });
                return (program, diags);
            }
        },
    };
    for net in &mut program.networks {
        for name in &PIPELINE[..=last] {
            let mut d = Diagnostics::new();
            run_pass(name, net, &mut d);
            let failed = d.has_errors();
            diags.extend(d);
            if failed {
                break;
            }
        }
    }
    (program, diags)
}
