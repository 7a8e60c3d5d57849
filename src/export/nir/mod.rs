//! NIR export: a final-form IR network plus its trained tensors → a [`NirGraph`] (the
//! Neuromorphic Intermediate Representation, read by snnTorch, Norse, Sinabs, Lava-DL, ...).
//!
//! Owner: the NIR export/import (`src/import/` is the other direction, `format` the HDF5
//! container both share). Mapping, per IR node in topological order:
//! - `Input` → `Input` (shape `[C, H, W]`); `Encode` and `Dropout` are transparent (the
//!   encoding and T go into graph metadata: NIR graphs take whatever arrives per step).
//! - `Conv` → `Conv2d` (weight `(Cout, Cin, K, K)`, zero bias, stride, padding, dilation 1,
//!   groups 1, `input_shape`); `Fc` → `Linear` (weight `(out, in)`), preceded by a `Flatten`
//!   (`start_dim` 0) when what reaches it is a feature map. Layers carry no bias (the paper).
//! - A spiking activation → a neuron node after its layer, parameters as arrays of the
//!   layer's output shape. snnc's discrete LIF `v[t] = α·v[t−1] + I[t]` (Eq. 2) is NIR's
//!   `τ·dv/dt = (v_leak − v) + r·I` under forward Euler with step dt: τ = dt/(1−α),
//!   r = 1/(1−α) = τ/dt, v_leak = 0 ([`lif_params`], the snnTorch convention). IF
//!   (`dv/dt = r·I`): r = 1/dt. dt (seconds, default [`DEFAULT_DT`]) goes into the graph
//!   metadata. Thresholds: the checkpoint's `threshold.<layer>.<step>`, per application.
//!   Reset by subtraction has no NIR form: v_reset = 0, node metadata `reset = "subtract"`,
//!   and a warning (`snnc::nir::reset_subtract`). snnc fires at v ≥ θ: the graph metadata
//!   says so (`spike_rule = "v >= v_threshold"`); readers that fire at v > θ (snnTorch,
//!   Norse) differ only for a membrane exactly at θ (docs/nir.md).
//! - `Pool` avg → `AvgPool2d`; `Join` add → its inputs become several edges into the next
//!   node (NIR sums them). BackRes applications become one node chain per step, each with a
//!   copy of the shared weights (metadata `snnc_layer`, `snnc_step` name the weight set).
//! - Refused with a located error (`snnc::nir::unsupported`): ReLU layers and domain
//!   boundaries (hybrid networks), `concat` joins, max pooling, the stochmax head.
//!
//! Invariant: every graph this returns passes `nir.read` with type checking (shapes agree
//! along every edge); `tests/nir*.rs` checks it with the Python package when present.

pub mod format;

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Tensor};
use miette::Diagnostic;
use petgraph::graph::NodeIndex;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::ir::{
    Activation, Classifier, Encoding, JoinMode, LayerKind, Method, Network, NeuronKind, NeuronSpec,
    Op, PoolKind, Reset, Shape,
};
use crate::syntax::span::Span;
pub use format::{NirGraph, NirNode, Value};

/// The integration step written into the graph metadata when none is given: 0.1 ms.
pub const DEFAULT_DT: f64 = 1e-4;

/// How to export.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportOptions {
    /// The step dt in seconds that turns α into τ (must be positive and finite).
    pub dt: f64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { dt: DEFAULT_DT }
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum ExportError {
    #[error("`{layer}` has no NIR form: {why}")]
    #[diagnostic(code(snnc::nir::unsupported))]
    Unsupported {
        layer: String,
        why: String,
        #[label("{what}")]
        span: Span,
        what: String,
        #[help]
        help: Option<String>,
    },

    #[error("the weights have no tensor `{name}` for `{layer}`")]
    #[diagnostic(
        code(snnc::nir::missing_weights),
        help("pass the checkpoint `snnc train` wrote for this network (--weights DIR/weights.safetensors)")
    )]
    MissingWeights {
        name: String,
        layer: String,
        #[label("no weights for this layer")]
        span: Span,
    },

    #[error("`{name}` has shape {found:?} in the weights but the network needs {expected:?}")]
    #[diagnostic(code(snnc::nir::weight_shape))]
    WeightShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
        #[label("declared here")]
        span: Span,
    },

    #[error("the weights `{name}` cannot be read: {message}")]
    #[diagnostic(code(snnc::nir::bad_weights))]
    BadWeights {
        name: String,
        message: String,
        #[label("for this layer")]
        span: Span,
    },

    #[error("dt must be a positive, finite number of seconds, found {dt}")]
    #[diagnostic(code(snnc::nir::dt))]
    BadDt { dt: f64 },
}

/// Reset by subtraction exported as NIR's reset to `v_reset = 0`.
#[derive(Debug, Error, Diagnostic)]
#[error("reset by subtraction has no NIR form: {count} spiking layer application(s) written with v_reset = 0 and metadata reset = \"subtract\"")]
#[diagnostic(
    code(snnc::nir::reset_subtract),
    severity(Warning),
    help("`snnc import` honours the metadata; other NIR readers will reset to zero")
)]
pub struct ResetSubtract {
    pub count: usize,
    #[label("the first such layer")]
    pub span: Span,
}

/// LIF parameters `(τ, r)` for leak α and step dt: τ = dt/(1−α), r = 1/(1−α).
/// `None` for α ≥ 1 (no leak: that is IF) or α ≤ 0.
pub fn lif_params(alpha: f64, dt: f64) -> Option<(f64, f64)> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let k = 1.0 - alpha;
    Some((dt / k, 1.0 / k))
}

/// The leak α and the input gain g of a NIR LIF under forward Euler with step dt:
/// α = 1 − dt/τ, g = r·dt/τ (g = 1 for what [`lif_params`] writes).
pub fn lif_alpha_gain(tau: f64, r: f64, dt: f64) -> (f64, f64) {
    (1.0 - dt / tau, r * dt / tau)
}

/// Exports `net` (final form) with `tensors` (checkpoint names: weight sets by name,
/// `threshold.<layer>.<step>`). On success the warnings come with the graph; on failure
/// every refusal is in the `Err`.
pub fn export(
    net: &Network,
    tensors: &HashMap<String, Tensor>,
    opts: ExportOptions,
) -> Result<(NirGraph, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::new();
    if !(opts.dt.is_finite() && opts.dt > 0.0) {
        diags.push(ExportError::BadDt { dt: opts.dt });
        return Err(diags);
    }
    let mut ex = Exporter {
        net,
        tensors,
        dt: opts.dt,
        g: NirGraph::default(),
        names: HashSet::new(),
        out: HashMap::new(),
        diags,
        subtract: Vec::new(),
    };
    ex.run();
    let Exporter {
        mut g,
        mut diags,
        subtract,
        ..
    } = ex;
    if diags.has_errors() {
        return Err(diags);
    }
    if let Some(&span) = subtract.first() {
        diags.push(ResetSubtract {
            count: subtract.len(),
            span,
        });
    }
    g.version = format::NIR_VERSION.into();
    g.metadata.insert("dt".into(), Value::scalar(opts.dt));
    // snnc fires at v ≥ θ (Eq. 2's comparison in `backend::candle::neuron`); snnTorch and
    // Norse fire at v > θ, Sinabs at v ≥ θ. Readers that compare strictly miss the spikes
    // of a membrane exactly at the threshold (see docs/nir.md).
    g.metadata
        .insert("spike_rule".into(), Value::text("v >= v_threshold"));
    g.metadata
        .insert("snnc_network".into(), Value::text(net.name.clone()));
    if let Some(t) = net.settings.timesteps {
        g.metadata.insert("timesteps".into(), Value::int(t as i64));
    }
    let enc = match net.settings.encode {
        Encoding::Poisson => "poisson",
        Encoding::Direct => "direct",
    };
    g.metadata.insert("encode".into(), Value::text(enc));
    let method = match net.settings.method {
        Method::Agd => "agd",
        Method::Conversion => "conversion",
        Method::Stdp => "stdp",
    };
    g.metadata.insert("snnc_method".into(), Value::text(method));
    g.metadata.insert(
        "producer".into(),
        Value::text(concat!("snnc ", env!("CARGO_PKG_VERSION"))),
    );
    Ok((g, diags))
}

/// What an IR node's value is in the NIR graph: the nodes whose (summed) outputs carry
/// it, and its NIR rank (3: `[C, H, W]`, 1: `[N]`).
#[derive(Debug, Clone)]
struct Carried {
    sources: Vec<String>,
    rank: u8,
}

struct Exporter<'a> {
    net: &'a Network,
    tensors: &'a HashMap<String, Tensor>,
    dt: f64,
    g: NirGraph,
    names: HashSet<String>,
    out: HashMap<NodeIndex, Carried>,
    diags: Diagnostics,
    subtract: Vec<Span>,
}

/// A NIR node name from an IR name: letters, digits, `_`, `@` and `-` kept, runs of
/// others one `_` (`Pool1 (skip)` → `Pool1_skip`).
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let s = out.trim_matches('_').to_string();
    if s.is_empty() {
        "node".into()
    } else {
        s
    }
}

impl Exporter<'_> {
    fn unique(&mut self, base: &str) -> String {
        let base = sanitize(base);
        let mut name = base.clone();
        let mut i = 2;
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn add(&mut self, base: &str, node: NirNode, from: &[String]) -> String {
        let name = self.unique(base);
        for s in from {
            self.g.edges.push((s.clone(), name.clone()));
        }
        self.g.nodes.insert(name.clone(), node);
        name
    }

    fn refuse(&mut self, layer: &str, span: Span, what: &str, why: &str, help: Option<&str>) {
        self.diags.push(ExportError::Unsupported {
            layer: layer.to_string(),
            why: why.to_string(),
            span,
            what: what.to_string(),
            help: help.map(String::from),
        });
    }

    fn run(&mut self) {
        let net = self.net;
        if net.settings.classifier == Classifier::Stochmax {
            let out = &net.graph[net.output];
            self.refuse(
                &out.name,
                out.span,
                "followed by the stochmax head",
                "the stochmax retain head (Eq. 7) has no NIR form (NIR has no stochastic readout)",
                Some("export the softmax variant of the network (drop `stochmax`)"),
            );
        }
        for ix in net.topo_order() {
            self.node(ix);
        }
        if self.diags.has_errors() {
            return;
        }
        let Some(last) = self.out.get(&net.output).cloned() else {
            return;
        };
        let shape = self.shape_of(net.output, last.rank);
        self.add(
            "output",
            NirNode::new("Output").field("shape", Value::ints(&shape)),
            &last.sources,
        );
    }

    /// The NIR shape of an IR node's output at `rank`.
    fn shape_of(&self, ix: NodeIndex, rank: u8) -> Vec<i64> {
        let s = self.net.graph[ix].out_shape.unwrap_or(Shape::new(0, 0, 0));
        if rank == 3 {
            vec![s.c as i64, s.h as i64, s.w as i64]
        } else {
            vec![s.features().unwrap_or(0) as i64]
        }
    }

    fn node(&mut self, ix: NodeIndex) {
        let net = self.net;
        let node = &net.graph[ix];
        let inputs = net.inputs_of(ix);
        let carried_in: Vec<Carried> = inputs
            .iter()
            .filter_map(|i| self.out.get(i).cloned())
            .collect();
        let first = carried_in.first().cloned();
        let apps = node.op.weights().map(|w| net.applications(w)).unwrap_or(1);
        let display = node.display_name(apps);
        if node.activation == Activation::Relu {
            self.refuse(
                &display,
                node.span,
                "a ReLU (ANN) layer",
                "NIR has no ReLU: the ANN layers of a hybrid network cannot be written",
                Some("export a network whose layers are all spiking (LIF or IF)"),
            );
            return;
        }
        let carried = match &node.op {
            Op::Input => {
                let shape = self.shape_of(ix, 3);
                let name = self.add(
                    "input",
                    NirNode::new("Input").field("shape", Value::ints(&shape)),
                    &[],
                );
                Carried {
                    sources: vec![name],
                    rank: 3,
                }
            }
            Op::Encode { .. } | Op::Dropout { .. } => match first {
                Some(c) => c,
                None => return,
            },
            // Boundaries exist only next to ReLU layers, which are refused (once) above.
            Op::Boundary { .. } => return,
            Op::Layer { .. } => return,
            Op::Join { mode } => match mode {
                JoinMode::Concat => {
                    let layer = display.trim_start_matches("Join→").to_string();
                    self.refuse(
                        &layer,
                        node.span,
                        "a concatenating skip joins here",
                        "NIR has no concatenation (several edges into a node are summed)",
                        Some("use `skip A -> B add` where the shapes agree"),
                    );
                    return;
                }
                JoinMode::Add => {
                    let rank = carried_in.iter().map(|c| c.rank).max().unwrap_or(3);
                    Carried {
                        sources: carried_in.into_iter().flat_map(|c| c.sources).collect(),
                        rank,
                    }
                }
            },
            Op::Pool {
                kind,
                window,
                stride,
            } => {
                if *kind == PoolKind::Max {
                    self.refuse(
                        &display,
                        node.span,
                        "max pooling",
                        "NIR has no max pooling",
                        Some("use `Pool(KxK/S)` (average pooling, NIR's AvgPool2d)"),
                    );
                    return;
                }
                let Some(c) = first else { return };
                let (w, s) = (*window as i64, *stride as i64);
                let name = self.add(
                    &display,
                    NirNode::new("AvgPool2d")
                        .field("kernel_size", Value::ints(&[w, w]))
                        .field("stride", Value::ints(&[s, s]))
                        .field("padding", Value::ints(&[0, 0])),
                    &c.sources,
                );
                Carried {
                    sources: vec![name],
                    rank: 3,
                }
            }
            Op::Conv { weights } | Op::Fc { weights } => {
                let Some(c) = first else { return };
                let ws = &net.weights[weights.0];
                let Some(data) = self.weights_of(&ws.name, &ws.kind, &display, node.span) else {
                    return;
                };
                let meta = |n: NirNode| {
                    n.meta("snnc_layer", Value::text(ws.name.clone()))
                        .meta("snnc_step", Value::int(node.step as i64))
                };
                match ws.kind {
                    LayerKind::Conv {
                        in_ch,
                        out_ch,
                        kernel,
                        stride,
                        pad,
                    } => {
                        if c.rank != 3 {
                            self.refuse(
                                &display,
                                node.span,
                                "a convolution after an FC layer",
                                "NIR has no reshape from features back to a feature map",
                                None,
                            );
                            return;
                        }
                        let in_shape = inputs
                            .first()
                            .and_then(|&i| net.graph[i].out_shape)
                            .unwrap_or(Shape::new(0, 0, 0));
                        let (s, p) = (stride as i64, pad as i64);
                        let n = meta(
                            NirNode::new("Conv2d")
                                .field(
                                    "weight",
                                    Value::f32s(&[out_ch, in_ch, kernel, kernel], &data),
                                )
                                .field("bias", Value::f32s(&[out_ch], &vec![0.0; out_ch as usize]))
                                .field("stride", Value::ints(&[s, s]))
                                .field("padding", Value::ints(&[p, p]))
                                .field("dilation", Value::ints(&[1, 1]))
                                .field("groups", Value::int(1))
                                .field(
                                    "input_shape",
                                    Value::ints(&[in_shape.h as i64, in_shape.w as i64]),
                                ),
                        );
                        let name = self.add(&display, n, &c.sources);
                        Carried {
                            sources: vec![name],
                            rank: 3,
                        }
                    }
                    LayerKind::Fc { inputs: i, outputs } => {
                        let mut src = c.sources.clone();
                        if c.rank == 3 {
                            let in_shape = inputs
                                .first()
                                .map(|&p| {
                                    // A join before an FC reports the flattened shape:
                                    // the feature map is what its inputs carry.
                                    let p = if matches!(net.graph[p].op, Op::Join { .. }) {
                                        net.inputs_of(p).first().copied().unwrap_or(p)
                                    } else {
                                        p
                                    };
                                    self.shape_of(p, 3)
                                })
                                .unwrap_or_default();
                            let f = self.add(
                                &format!("{display}_flatten"),
                                NirNode::new("Flatten")
                                    .field("start_dim", Value::int(0))
                                    .field("end_dim", Value::int(-1))
                                    .field("input_type", Value::ints(&in_shape)),
                                &src,
                            );
                            src = vec![f];
                        }
                        let n = meta(
                            NirNode::new("Linear")
                                .field("weight", Value::f32s(&[outputs, i], &data)),
                        );
                        let name = self.add(&display, n, &src);
                        Carried {
                            sources: vec![name],
                            rank: 1,
                        }
                    }
                }
            }
        };
        let carried = match node.activation {
            Activation::Spiking(spec) => {
                let shape = self.shape_of(ix, carried.rank);
                let thr = self.threshold(ix, spec);
                let neuron = self.neuron(spec, &shape, thr, node.span);
                let suffix = match neuron.kind.as_str() {
                    "LIF" => "lif",
                    _ => "if",
                };
                let name = self.add(&format!("{display}_{suffix}"), neuron, &carried.sources);
                Carried {
                    sources: vec![name],
                    rank: carried.rank,
                }
            }
            _ => carried,
        };
        self.out.insert(ix, carried);
    }

    /// The threshold of a spiking node: the checkpoint's slot value, else the spec's.
    fn threshold(&self, ix: NodeIndex, spec: NeuronSpec) -> f64 {
        let node = &self.net.graph[ix];
        let Some(slot) = node.slot.and_then(|s| self.net.thresholds.get(s.0)) else {
            return spec.threshold as f64;
        };
        let key = format!("threshold.{}.{}", slot.layer, slot.step);
        self.tensors
            .get(&key)
            .and_then(|t| t.flatten_all().ok())
            .and_then(|t| t.to_dtype(DType::F64).ok())
            .and_then(|t| t.to_vec1::<f64>().ok())
            .and_then(|v| v.first().copied())
            .unwrap_or(slot.initial as f64)
    }

    fn neuron(&mut self, spec: NeuronSpec, shape: &[i64], thr: f64, span: Span) -> NirNode {
        let dims: Vec<u64> = shape.iter().map(|&d| d.max(0) as u64).collect();
        let lif = match spec.kind {
            NeuronKind::Lif => lif_params(spec.leak as f64, self.dt),
            NeuronKind::If => None,
        };
        let mut n = match lif {
            Some((tau, r)) => NirNode::new("LIF")
                .field("tau", Value::filled(&dims, tau))
                .field("r", Value::filled(&dims, r))
                .field("v_leak", Value::filled(&dims, 0.0)),
            None => NirNode::new("IF").field("r", Value::filled(&dims, 1.0 / self.dt)),
        };
        n = n
            .field("v_threshold", Value::filled(&dims, thr))
            .field("v_reset", Value::filled(&dims, 0.0));
        let reset = match spec.reset {
            Reset::Subtract => {
                self.subtract.push(span);
                "subtract"
            }
            Reset::Zero => "zero",
        };
        n.meta("reset", Value::text(reset))
    }

    /// The weight set's tensor, checked against its signature, as f32 in row-major order.
    fn weights_of(
        &mut self,
        name: &str,
        kind: &LayerKind,
        layer: &str,
        span: Span,
    ) -> Option<Vec<f32>> {
        let expected: Vec<usize> = match *kind {
            LayerKind::Conv {
                in_ch,
                out_ch,
                kernel,
                ..
            } => vec![out_ch, in_ch, kernel, kernel],
            LayerKind::Fc { inputs, outputs } => vec![outputs, inputs],
        }
        .into_iter()
        .map(|d| d as usize)
        .collect();
        let Some(t) = self.tensors.get(name) else {
            self.diags.push(ExportError::MissingWeights {
                name: name.into(),
                layer: layer.into(),
                span,
            });
            return None;
        };
        if t.dims() != expected.as_slice() {
            self.diags.push(ExportError::WeightShape {
                name: name.into(),
                found: t.dims().to_vec(),
                expected,
                span,
            });
            return None;
        }
        match t
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
        {
            Ok(v) => Some(v),
            Err(e) => {
                self.diags.push(ExportError::BadWeights {
                    name: name.into(),
                    message: e.to_string(),
                    span,
                });
                None
            }
        }
    }
}
