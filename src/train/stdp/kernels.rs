//! `OUT/kernels.svg`: the learned kernels of the first STDP layer as a grid of grey
//! squares, one per kernel (the mean over input channels), as STDP papers show learned
//! features. One grey scale for the whole layer (black: its smallest weight, white: its
//! largest, both printed in the caption), so a kernel saturated at the upper bound draws
//! white, not as a flat grey; each kernel has a thin frame, so white cells stay visible.
//!
//! Owner: the STDP helper. Invariants: any finite or non-finite weights draw (non-finite
//! values draw grey); failures to write are errors.

use std::path::Path;

use plotters::prelude::*;

/// Pixels above the first row of kernels (title and scale).
const TOP: usize = 42;

/// The grey level of `v` on the scale [`lo`, `hi`] (black to white); non-finite values and
/// a layer whose weights are all equal draw mid-grey.
fn grey(v: f32, lo: f32, hi: f32) -> u8 {
    if v.is_finite() && hi > lo {
        ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8
    } else {
        128
    }
}

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
    let size = (
        (cols * tile + 8).max(260) as u32,
        (rows * tile + TOP) as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    root.draw(&Text::new(
        format!("{out_ch} kernels {k}×{k} (mean over {in_ch} input channels)"),
        (6, 6),
        ("sans-serif", 13),
    ))
    .map_err(|x| e(x.to_string()))?;
    let means: Vec<Vec<f32>> = (0..out_ch)
        .map(|o| {
            (0..k * k)
                .map(|p| {
                    (0..in_ch)
                        .map(|c| weights[(o * in_ch + c) * k * k + p])
                        .sum::<f32>()
                        / in_ch.max(1) as f32
                })
                .collect()
        })
        .collect();
    let finite = || means.iter().flatten().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f32::INFINITY, f32::min);
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    let scale = if hi >= lo {
        format!("black {lo:.3}, white {hi:.3} (one scale for the layer)")
    } else {
        "no finite weight".to_string()
    };
    root.draw(&Text::new(scale, (6, 22), ("sans-serif", 11)))
        .map_err(|x| e(x.to_string()))?;
    for (o, mean) in means.iter().enumerate() {
        let (x0, y0) = ((o % cols) * tile + 8, (o / cols) * tile + TOP);
        for (p, &v) in mean.iter().enumerate() {
            let g = grey(v, lo, hi);
            let (x, y) = ((x0 + (p % k) * cell) as i32, (y0 + (p / k) * cell) as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                RGBColor(g, g, g).filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
        }
        let (side, x0, y0) = ((k * cell) as i32, x0 as i32, y0 as i32);
        root.draw(&Rectangle::new(
            [(x0 - 1, y0 - 1), (x0 + side, y0 + side)],
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One scale for the layer: a kernel saturated at +1 draws white and one at −1 black
    /// (each drawn on its own [min, max], both would be a flat grey).
    #[test]
    fn saturated_kernels_draw_white_and_black_on_the_layer_scale() {
        assert_eq!(grey(1.0, -1.0, 1.0), 255);
        assert_eq!(grey(-1.0, -1.0, 1.0), 0);
        assert_eq!(grey(0.0, -1.0, 1.0), 128);
        assert_eq!(grey(f32::NAN, -1.0, 1.0), 128);
        assert_eq!(grey(0.5, 0.5, 0.5), 128);
        let dir = std::env::temp_dir().join(format!("snnc-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.svg");
        let mut w = vec![1.0f32; 9];
        w.extend([-1.0f32; 9]);
        w.extend([0.25f32, -0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, f32::NAN]);
        plot_kernels(&w, 3, 1, 3, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap().to_ascii_uppercase();
        std::fs::remove_dir_all(&dir).unwrap();
        let cells = |c: &str| {
            svg.matches(&format!("FILL=\"{c}\" STROKE=\"NONE\""))
                .count()
        };
        assert!(svg.contains("BLACK -1.000, WHITE 1.000"), "{svg}");
        assert_eq!(cells("#000000"), 9);
        // The first kernel's 9 cells and the third's +1 (and the background).
        assert!(cells("#FFFFFF") >= 10);
    }
}
