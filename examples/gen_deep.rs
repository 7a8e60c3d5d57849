//! Generates networks 20,000 layers deep and times `snnc::compile` (parse, build, every
//! pass) and `analysis::estimate` on them. Run in release:
//! `cargo run --release --example gen_deep [LAYERS]`; the figures go to
//! `docs/performance.md` ("Compiler").

use std::time::{Duration, Instant};

/// `layers` unique 4→4 convolutions (one weight set each), then the logits layer.
fn unique(layers: usize) -> String {
    let mut src = String::from("network DeepUnique {\n    input 4x8x8\n    timesteps 1\n");
    for i in 1..layers {
        src.push_str(&format!("    Conv{i}(4,4,3x3/1) LIF\n"));
    }
    src.push_str("    FC1(256,10)\n}\n");
    src
}

/// One BackRes layer applied `layers - 1` times, then the logits layer.
fn backres(layers: usize) -> String {
    format!(
        "network DeepBackRes {{\n    input 4x8x8\n    timesteps 1\n    Conv1(4,4,3x3/1) x{} LIF\n    FC1(256,10)\n}}\n",
        layers - 1
    )
}

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let layers: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(20_000);
    for (what, src) in [
        ("unique layers", unique(layers)),
        ("one BackRes layer", backres(layers)),
    ] {
        let mut depth = 0;
        let compile = best_of(3, || {
            let t = Instant::now();
            let program = match snnc::compile(&src) {
                Ok(p) => p,
                Err(d) => {
                    eprint!("{}", d.render_text("deep.snn", &src, 100, false));
                    std::process::exit(1);
                }
            };
            let dt = t.elapsed();
            let est = snnc::analysis::estimate(&program.networks[0], &Default::default());
            depth = est.logical_depth;
            dt
        });
        let program = snnc::compile(&src).unwrap_or_default();
        let estimate = best_of(3, || {
            let t = Instant::now();
            let _ = snnc::analysis::estimate(&program.networks[0], &Default::default());
            t.elapsed()
        });
        println!(
            "{what}: {layers} layers ({} bytes, logical depth {depth}): compile {:.1} ms, estimate {:.1} ms (best of 3)",
            src.len(),
            compile.as_secs_f64() * 1e3,
            estimate.as_secs_f64() * 1e3
        );
    }
}
