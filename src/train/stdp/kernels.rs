//! `OUT/kernels.svg`: the learned kernels of the first STDP layer as a grid of grey
//! squares, one per kernel (the mean over input channels), each scaled to its own
//! [min, max] (black: min, white: max), as STDP papers show learned features.
//!
//! Owner: the STDP helper. Invariants: any finite or non-finite weights draw (non-finite
//! values draw grey); failures to write are errors.

use std::path::Path;

use plotters::prelude::*;

/// Draws `weights` `[out_ch, in_ch, k, k]` (row-major) to the SVG `path`.
pub fn plot_kernels(
    weights: &[f32],
    out_ch: usize,
    in_ch: usize,
    k: usize,
    path: &Path,
) -> Result<(), String> {
    let e = |m: String| format!("cannot draw {}: {m}", path.display());
    if out_ch == 0 || k == 0 || weights.len() != out_ch * in_ch * k * k {
        return Err(e("the kernels do not match their shape".into()));
    }
    let cols = (out_ch as f64).sqrt().ceil() as usize;
    let rows = out_ch.div_ceil(cols);
    let cell = 12usize;
    let tile = k * cell + 8;
    let size = ((cols * tile + 8) as u32, (rows * tile + 30) as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    root.draw(&Text::new(
        format!("{out_ch} kernels {k}×{k} (mean over {in_ch} input channels)"),
        (6, 6),
        ("sans-serif", 13),
    ))
    .map_err(|x| e(x.to_string()))?;
    for o in 0..out_ch {
        let mean: Vec<f32> = (0..k * k)
            .map(|p| {
                (0..in_ch)
                    .map(|c| weights[(o * in_ch + c) * k * k + p])
                    .sum::<f32>()
                    / in_ch.max(1) as f32
            })
            .collect();
        let lo = mean
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f32::INFINITY, f32::min);
        let hi = mean
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f32::NEG_INFINITY, f32::max);
        let (x0, y0) = ((o % cols) * tile + 8, (o / cols) * tile + 30);
        for (p, &v) in mean.iter().enumerate() {
            let g = if v.is_finite() && hi > lo {
                ((v - lo) / (hi - lo) * 255.0) as u8
            } else {
                128
            };
            let (x, y) = ((x0 + (p % k) * cell) as i32, (y0 + (p / k) * cell) as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                RGBColor(g, g, g).filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
        }
    }
    root.present().map_err(|x| e(x.to_string()))
}
