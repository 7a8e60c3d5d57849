//! Printers of the IR: [`text`] (what `snnc show` prints), [`dot`] (graphviz) and
//! [`json`], and [`nir`] (a trained network as a NIR graph, `snnc export`). Owner: the front end
//! (the NIR writer also reads a checkpoint). Each printer is a pure function of one
//! [`Network`](crate::ir::Network) (any stage of the pipeline: unresolved layers, repeats
//! and unset shapes print as such); none of them fails or panics. Adding a format is one
//! file here plus one `--format` value in `cli/show.rs`.

pub mod dot;
pub mod json;
pub mod nir;
pub mod text;

use crate::ir::{Activation, BoundaryKind, LayerKind, Network, NeuronKind, Op, Reset};

/// The operation of a node in words: `conv 3→64 3x3/1 pad 1`, `maxpool 2x2/2`, ...
pub(crate) fn op_text(net: &Network, op: &Op) -> String {
    match op {
        Op::Input => "input".into(),
        Op::Layer { signature: Some(k) } => format!("layer {}", kind_text(k)),
        Op::Layer { signature: None } => "layer (bare)".into(),
        Op::Conv { weights } | Op::Fc { weights } => match net.weights.get(weights.0) {
            Some(w) => kind_text(&w.kind),
            None => format!("weights #{}", weights.0),
        },
        Op::Pool {
            kind,
            window,
            stride,
        } => format!("{kind:?}Pool {window}x{window}/{stride}").to_lowercase(),
        Op::Dropout { p } => format!("dropout p={p}"),
        Op::Join { mode } => format!("join {mode:?}").to_lowercase(),
        Op::Encode { encoding } => format!("encode {encoding:?}").to_lowercase(),
        Op::Boundary { kind } => match kind {
            BoundaryKind::AnnToSnn => "boundary ann→snn".into(),
            BoundaryKind::SnnToAnn => "boundary snn→ann".into(),
        },
    }
}

/// A signature in words: `conv 3→64 3x3/1 pad 1`, `fc 4096→10`.
pub(crate) fn kind_text(k: &LayerKind) -> String {
    match *k {
        LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            stride,
            pad,
        } => {
            format!("conv {in_ch}→{out_ch} {kernel}x{kernel}/{stride} pad {pad}")
        }
        LayerKind::Fc { inputs, outputs } => format!("fc {inputs}→{outputs}"),
    }
}

/// An activation in words: `-`, `ReLU`, `LIF(leak=…, threshold=…, reset=…)`.
pub(crate) fn act_text(a: &Activation) -> String {
    match a {
        Activation::None => "-".into(),
        Activation::Relu => "ReLU".into(),
        Activation::Spiking(n) => {
            let k = if n.kind == NeuronKind::If {
                "IF"
            } else {
                "LIF"
            };
            let r = if n.reset == Reset::Zero {
                "zero"
            } else {
                "subtract"
            };
            if n.kind == NeuronKind::If {
                format!("IF(threshold={}, reset={r})", n.threshold)
            } else {
                format!("{k}(leak={}, threshold={}, reset={r})", n.leak, n.threshold)
            }
        }
    }
}

/// The output formats of `snnc show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Dot,
    Json,
}

/// `nets` in `format`: text and DOT blocks separated by a blank line, JSON as one
/// pretty-printed array.
pub fn render(nets: &[&Network], format: Format) -> String {
    match format {
        Format::Text => nets
            .iter()
            .map(|n| text::to_text(n))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Dot => nets
            .iter()
            .map(|n| dot::to_dot(n))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Json => {
            let v: Vec<_> = nets.iter().map(|n| json::to_json(n)).collect();
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
    }
}
