//! NIR import: a second front end. A NIR graph (HDF5, see `export::nir::format`) becomes
//! `.snn` source text plus its tensors (checkpoint names), which the ordinary front end
//! then compiles — so an imported network gets the same checks, estimates and runtime as a
//! written one.
//!
//! Owner: the NIR export/import. What is accepted (the inverse of `export::nir`):
//! - a main path `Input → … → Output` (the longest path) and skip branches: nodes with
//!   several incoming edges (NIR sums them) become `skip A -> B add`, where A is the last
//!   layer (or the Input) where the branch leaves and B the Conv2d/Linear/Affine (or the
//!   Flatten before a Linear) where it joins. The branch holds only average pools, and
//!   with the main path's pools before its start it must be exactly the main path's pools
//!   between A and B (snnc copies those onto skip paths); the join must be B's first
//!   application and A's last application before it. Anything else — a fork or merge off
//!   the main path, a sum into a neuron or pool, a gain on a skip — is refused with a
//!   `snnc::nir::structure` diagnostic that says why (NIR has no concatenation, so
//!   `concat` skips never appear);
//! - `Conv2d` (square kernel, equal strides and paddings or "same"/"valid", dilation 1,
//!   groups 1, zero bias) and `Linear`/`Affine` (zero bias) as `ConvN`/`FCN` layers;
//!   `Flatten` (implicit in snnc); `AvgPool2d`, or `SumPool2d` (its k² gain, or a following
//!   `Scale` of 1/k², folded into the next layer's weights) as `Pool(KxK/S)`; a uniform
//!   `Scale` folds into the neighbouring layer's weights;
//! - `LIF` (v_leak = 0, v_reset = 0) as `LIF(leak = α)` with α = 1 − dt/τ, and `IF`
//!   (v_reset = 0); the input gain r·dt/τ (LIF) or r·dt (IF) is folded into the layer's
//!   weights when it is not 1. dt comes from the graph metadata `dt`, else the option.
//!   The reset is `subtract` when the node's metadata says `reset = "subtract"`, else `zero`.
//!   Neuron parameters must be arrays of the layer's shape with one value throughout.
//! - a layer whose weights equal an earlier one's (same signature, bit for bit) applies the
//!   same weight set again: consecutive applications fold into `Name xN`, later ones are
//!   written as the bare name. Each application keeps its own threshold
//!   (`threshold.<Name>.<step>` in the tensors).
//!
//! Invariant: every malformed input is an `Err` of located diagnostics (the node, the field,
//! what was expected and what was found) with a code `snnc::nir::<what>`; nothing panics.

use std::collections::{BTreeMap, HashMap, HashSet};

use candle_core::{Device, Tensor};
use miette::Diagnostic;
use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::export::nir::format::{FormatError, NirGraph, NirNode, Value};
use crate::export::nir::DEFAULT_DT;
use crate::ir::{LayerKind, NeuronKind, Reset};

#[derive(Debug, Error, Diagnostic)]
pub enum ImportError {
    #[error("not a NIR file: {path}: {message}")]
    #[diagnostic(code(snnc::nir::malformed))]
    Malformed { path: String, message: String },

    #[error("node `{node}` has type `{kind}`, which is not a NIR primitive")]
    #[diagnostic(
        code(snnc::nir::unknown_type),
        help("NIR 1.0 has Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Delay, Threshold, I, IF, LI, LIF, CubaLI, CubaLIF and NIRGraph")
    )]
    UnknownType { node: String, kind: String },

    #[error("node `{node}` ({kind}) cannot be imported: {why}")]
    #[diagnostic(code(snnc::nir::unsupported))]
    Unsupported {
        node: String,
        kind: String,
        why: String,
        #[help]
        help: Option<String>,
    },

    #[error("node `{node}` has no field `{field}` (expected {expected})")]
    #[diagnostic(code(snnc::nir::missing_field))]
    MissingField {
        node: String,
        field: String,
        expected: String,
    },

    #[error("node `{node}`, field `{field}`: expected {expected}, found {found}")]
    #[diagnostic(code(snnc::nir::field_type))]
    FieldType {
        node: String,
        field: String,
        expected: String,
        found: String,
    },

    #[error("node `{node}`, field `{field}`: expected {expected}, found {found}")]
    #[diagnostic(code(snnc::nir::shape_mismatch))]
    ShapeMismatch {
        node: String,
        field: String,
        expected: String,
        found: String,
    },

    #[error("node `{node}`, field `{field}`: {why}")]
    #[diagnostic(code(snnc::nir::unsupported_value))]
    UnsupportedValue {
        node: String,
        field: String,
        why: String,
        #[help]
        help: Option<String>,
    },

    #[error("the graph cannot be imported: {why}")]
    #[diagnostic(code(snnc::nir::structure))]
    Structure {
        why: String,
        #[help]
        help: Option<String>,
    },

    #[error("dt must be a positive, finite number of seconds, found {dt} ({from})")]
    #[diagnostic(code(snnc::nir::dt))]
    BadDt { dt: f64, from: String },

    #[error("the imported network does not compile: {first}")]
    #[diagnostic(
        code(snnc::nir::generated),
        help("this is a bug in snnc import: please report it with the NIR file")
    )]
    Generated { first: String },
}

impl From<FormatError> for ImportError {
    fn from(e: FormatError) -> Self {
        ImportError::Malformed {
            path: e.path,
            message: e.message,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// dt in seconds when the graph metadata has none.
    pub dt: f64,
    /// The network's name when the metadata gives none (`snnc_network`).
    pub name: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            dt: DEFAULT_DT,
            name: None,
        }
    }
}

/// An imported network: `.snn` source that compiles, and its tensors by checkpoint name.
#[derive(Debug)]
pub struct Imported {
    pub network: String,
    pub source: String,
    /// Weight sets by name, `threshold.<Name>.<step>`, and for conversion networks the
    /// conversion reset key.
    pub tensors: HashMap<String, Tensor>,
    /// `agd`, or the `snnc_method` the graph's metadata names.
    pub method: String,
    /// dt used (seconds).
    pub dt: f64,
}

/// Reads HDF5 bytes and imports the graph.
pub fn import_bytes(bytes: Vec<u8>, opts: &ImportOptions) -> Result<Imported, Diagnostics> {
    match NirGraph::from_hdf5(bytes) {
        Ok(g) => import_graph(&g, opts),
        Err(e) => {
            let mut d = Diagnostics::new();
            d.push(ImportError::from(e));
            Err(d)
        }
    }
}

type R<T> = Result<T, ImportError>;

/// One spiking neuron as imported: spec fields plus this application's threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Neuron {
    kind: NeuronKind,
    leak: f32,
    threshold: f32,
    reset: Reset,
}

#[derive(Debug, Clone)]
struct Layer {
    node: String,
    kind: LayerKind,
    weights: Vec<f32>,
    neuron: Option<Neuron>,
    /// `snnc_layer` metadata, a name suggestion.
    hint: Option<String>,
}

#[derive(Debug, Clone)]
enum Item {
    Layer(Layer),
    /// A pool; `sum` for a SumPool2d (its k² gain folded into the next layer).
    Pool {
        window: u64,
        stride: u64,
        sum: bool,
    },
}

/// The shape flowing along the chain: channels × height × width (features × 1 × 1 once flat).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flow {
    c: u64,
    h: u64,
    w: u64,
    flat: bool,
}

impl Flow {
    fn elems(&self) -> u64 {
        self.c.saturating_mul(self.h).saturating_mul(self.w)
    }
    fn text(&self) -> String {
        if self.flat {
            format!("[{}]", self.elems())
        } else {
            format!("[{}, {}, {}]", self.c, self.h, self.w)
        }
    }
}

/// Imports a graph already read.
pub fn import_graph(g: &NirGraph, opts: &ImportOptions) -> Result<Imported, Diagnostics> {
    let mut diags = Diagnostics::new();
    match import_inner(g, opts) {
        Ok(i) => Ok(i),
        Err(e) => {
            diags.push(e);
            Err(diags)
        }
    }
}

fn import_inner(g: &NirGraph, opts: &ImportOptions) -> R<Imported> {
    let dt = match g.metadata.get("dt") {
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => x,
            Some(x) => {
                return Err(ImportError::BadDt {
                    dt: x,
                    from: "graph metadata `dt`".into(),
                })
            }
            None => {
                return Err(ImportError::FieldType {
                    node: "(graph)".into(),
                    field: "metadata/dt".into(),
                    expected: "a number of seconds".into(),
                    found: v.describe(),
                })
            }
        },
        None if opts.dt.is_finite() && opts.dt > 0.0 => opts.dt,
        None => {
            return Err(ImportError::BadDt {
                dt: opts.dt,
                from: "--dt".into(),
            })
        }
    };
    let plan = plan(g)?;
    let mut walk = Walk {
        dt,
        items: Vec::new(),
        flow: None,
        gain: 1.0,
    };
    let mut marks = Vec::with_capacity(plan.main.len());
    for name in &plan.main {
        let before = (walk.items.len(), walk.flow, walk.gain);
        walk.node(name, &g.nodes[name])?;
        marks.push(Mark {
            items_before: before.0,
            flow_before: before.1,
            gain_before: before.2,
            items_after: walk.items.len(),
            flow_after: walk.flow,
            open_after: matches!(walk.items.last(), Some(Item::Layer(l)) if l.neuron.is_none()),
        });
    }
    if (walk.gain - 1.0).abs() > 1e-9 {
        return Err(ImportError::Structure {
            why: "a Scale or SumPool2d gain after the last layer has no layer to fold into".into(),
            help: None,
        });
    }
    let skips = plan
        .branches
        .iter()
        .map(|b| skip_of(g, &plan, &marks, &walk.items, b))
        .collect::<R<Vec<_>>>()?;
    let first_input = input_shape_of(g, &plan.main)?;
    emit(g, opts, dt, first_input, walk.items, skips)
}

/// The walk's state around one main-path node.
#[derive(Debug, Clone, Copy)]
struct Mark {
    items_before: usize,
    flow_before: Option<Flow>,
    gain_before: f64,
    items_after: usize,
    flow_after: Option<Flow>,
    /// The last item is a layer still without its neuron.
    open_after: bool,
}

/// A skip as `skip A -> B add`: the item index of A (`None`: the Input) and of B.
#[derive(Debug, Clone)]
struct Skip {
    from: Option<usize>,
    to: usize,
    /// The NIR node the skip joins at (for diagnostics).
    node: String,
}

/// Maps a skip branch onto snnc's `skip A -> B add`: A is the last layer at or before the
/// branch's start (or the Input), B the layer the branch joins at; the branch's pools plus
/// the main path's pools between A and the branch's start must be exactly the main path's
/// pools between A and B (snnc copies those onto the skip path), all average pools, and
/// the shapes must agree.
fn skip_of(g: &NirGraph, plan: &Plan, marks: &[Mark], items: &[Item], b: &Branch) -> R<Skip> {
    let from_name = &plan.main[b.from];
    let to_name = &plan.main[b.to];
    let structure = |why: String, help: Option<&str>| ImportError::Structure {
        why,
        help: help.map(String::from),
    };
    let mf = marks[b.from];
    if mf.open_after {
        return Err(structure(
            format!("a skip leaves `{from_name}` before the layer's neuron"),
            Some("snnc skips start at a layer's output (its spikes) or at the Input"),
        ));
    }
    // A: the last layer item up to the branch's start.
    let from_item = items[..mf.items_after]
        .iter()
        .rposition(|i| matches!(i, Item::Layer(_)));
    // B: the main node the branch joins must be a layer, or Flattens before a Linear.
    let mut k = b.to;
    while g.nodes[&plan.main[k]].kind == "Flatten" {
        k += 1;
    }
    let target_kind = g.nodes[&plan.main[k]].kind.as_str();
    if !matches!(target_kind, "Conv2d" | "Linear" | "Affine") {
        return Err(structure(
            format!(
                "several edges go into `{to_name}` ({}), and NIR sums them; snnc adds skips only at the input of a Conv2d, Linear or Affine layer",
                g.nodes[to_name].kind
            ),
            None,
        ));
    }
    let to_item = marks[k].items_before;
    let mt = marks[b.to];
    if (mt.gain_before - 1.0).abs() > 1e-9 {
        return Err(structure(
            format!("a Scale or SumPool2d gain reaches `{to_name}`, where a skip joins; snnc's skip paths carry no gain"),
            Some("use AvgPool2d on both paths"),
        ));
    }
    // The pools on the NIR skip path and on the main path between A and B.
    let pools = |r: std::ops::Range<usize>| -> Vec<(u64, u64, bool)> {
        items[r]
            .iter()
            .filter_map(|i| match i {
                Item::Pool {
                    window,
                    stride,
                    sum,
                } => Some((*window, *stride, *sum)),
                _ => None,
            })
            .collect()
    };
    let start = from_item.map(|i| i + 1).unwrap_or(0);
    let mut skip_pools = pools(start..mf.items_after);
    let mut flow = mf
        .flow_after
        .ok_or_else(|| structure("a skip before the Input".into(), None))?;
    for name in &b.path {
        let n = &g.nodes[name];
        if !matches!(n.kind.as_str(), "AvgPool2d" | "SumPool2d") {
            return Err(ImportError::Unsupported {
                node: name.clone(),
                kind: n.kind.clone(),
                why: "it lies on a skip path; snnc's skip paths hold only the average pools of the main path".into(),
                help: None,
            });
        }
        let (k, s) = pool_params(name, n, &flow)?;
        skip_pools.push((k, s, n.kind == "SumPool2d"));
        flow = Flow {
            c: flow.c,
            h: (flow.h - k) / s + 1,
            w: (flow.w - k) / s + 1,
            flat: false,
        };
    }
    let main_pools = pools(start..to_item);
    if skip_pools.iter().any(|p| p.2) {
        return Err(structure(
            format!("the skip into `{to_name}` passes a SumPool2d; snnc's skip paths average"),
            Some("use AvgPool2d on skip paths"),
        ));
    }
    if skip_pools != main_pools {
        let text = |p: &[(u64, u64, bool)]| {
            if p.is_empty() {
                "none".to_string()
            } else {
                p.iter()
                    .map(|(k, s, _)| format!("{k}x{k}/{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        return Err(structure(
            format!(
                "the skip from `{from_name}` into `{to_name}` pools {} but the main path between them pools {}; snnc's skip paths apply exactly the main path's pools",
                text(&skip_pools),
                text(&main_pools)
            ),
            None,
        ));
    }
    let main_flow = mt.flow_before.unwrap_or(flow);
    let same = if target_kind == "Conv2d" {
        !flow.flat && !main_flow.flat && flow == main_flow
    } else {
        flow.elems() == main_flow.elems()
    };
    if !same {
        return Err(ImportError::ShapeMismatch {
            node: to_name.clone(),
            field: "(incoming edges)".into(),
            expected: format!("the shape on the main path, {}", main_flow.text()),
            found: format!("{} from `{from_name}`", flow.text()),
        });
    }
    Ok(Skip {
        from: from_item,
        to: to_item,
        node: to_name.clone(),
    })
}

/// The graph as snnc reads it: the main path from the Input to the Output (the longest
/// path), and the skip branches that leave it and join it again further on.
#[derive(Debug)]
struct Plan {
    main: Vec<String>,
    branches: Vec<Branch>,
}

/// A skip branch: from the main path node `from` (index into `Plan::main`) through the
/// off-path nodes `path` (pools only, checked later) into the main path node `to`.
#[derive(Debug)]
struct Branch {
    from: usize,
    path: Vec<String>,
    to: usize,
}

/// The main path and the skip branches of `g`, checking that every node lies on a path from
/// the Input to the Output, that there is no cycle, and that every node off the main path
/// lies on a simple branch (one edge in, one out).
fn plan(g: &NirGraph) -> R<Plan> {
    let mut succ: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut indeg: BTreeMap<&str, usize> = g.nodes.keys().map(|k| (k.as_str(), 0)).collect();
    for (a, b) in &g.edges {
        for n in [a, b] {
            if !g.nodes.contains_key(n) {
                return Err(ImportError::Structure {
                    why: format!("the edge ({a} → {b}) names `{n}`, which is not a node"),
                    help: None,
                });
            }
        }
        succ.entry(a).or_default().push(b);
        *indeg.entry(b).or_default() += 1;
    }
    for (kind, what) in [("Input", "input"), ("Output", "output")] {
        let n = g.nodes.values().filter(|n| n.kind == kind).count();
        if n != 1 {
            return Err(ImportError::Structure {
                why: format!("the graph has {n} {kind} nodes; snnc networks have one {what}"),
                help: None,
            });
        }
    }
    let find = |kind: &str| {
        g.nodes
            .iter()
            .find(|(_, n)| n.kind == kind)
            .map(|(k, _)| k.as_str())
            .unwrap_or_default()
    };
    let (start, end) = (find("Input"), find("Output"));
    // Kahn's order: a node left over lies on a cycle.
    let mut left = indeg.clone();
    let mut ready: Vec<&str> = left
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::with_capacity(g.nodes.len());
    while let Some(n) = ready.pop() {
        order.push(n);
        for &m in succ.get(n).map(|v| v.as_slice()).unwrap_or_default() {
            if let Some(d) = left.get_mut(m) {
                *d -= 1;
                if *d == 0 {
                    ready.push(m);
                }
            }
        }
    }
    if order.len() < g.nodes.len() {
        let on = left
            .iter()
            .find(|(_, &d)| d > 0)
            .map(|(k, _)| *k)
            .unwrap_or_default();
        return Err(ImportError::Structure {
            why: format!("the graph has a cycle through `{on}`"),
            help: Some("snnc networks are feed-forward".into()),
        });
    }
    // Longest path from the Input (in nodes), in topological order.
    let mut dist: HashMap<&str, usize> = HashMap::new();
    let mut prev: HashMap<&str, &str> = HashMap::new();
    dist.insert(start, 0);
    for &n in &order {
        let Some(&d) = dist.get(n) else { continue };
        for &m in succ.get(n).map(|v| v.as_slice()).unwrap_or_default() {
            if dist.get(m).is_none_or(|&e| e < d + 1) {
                dist.insert(m, d + 1);
                prev.insert(m, n);
            }
        }
    }
    // Every node must be reached from the Input and reach the Output.
    let mut reaches: HashSet<&str> = HashSet::from([end]);
    for &n in order.iter().rev() {
        if succ
            .get(n)
            .is_some_and(|v| v.iter().any(|m| reaches.contains(m)))
        {
            reaches.insert(n);
        }
    }
    if let Some(extra) = order
        .iter()
        .find(|n| !dist.contains_key(*n) || !reaches.contains(*n))
    {
        let why = if !dist.contains_key(extra) && *extra != start {
            format!("node `{extra}` is not on the path from the Input to the Output")
        } else if g.nodes[*extra].kind == "Output" {
            "the Output is not reached from the Input".to_string()
        } else {
            format!("node `{extra}` is not on the path from the Input to the Output (the Output is not reached from it)")
        };
        return Err(ImportError::Structure { why, help: None });
    }
    let mut main = vec![end];
    while let Some(&p) = prev.get(main[main.len() - 1]) {
        main.push(p);
    }
    main.reverse();
    let index: HashMap<&str, usize> = main.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut branches = Vec::new();
    for (i, &m) in main.iter().enumerate() {
        let mut main_edge_seen = false;
        for &s in succ.get(m).map(|v| v.as_slice()).unwrap_or_default() {
            if i + 1 < main.len() && s == main[i + 1] && !main_edge_seen {
                main_edge_seen = true;
                continue;
            }
            // A branch: follow off-path nodes, each with one edge in and one out.
            let mut path = Vec::new();
            let mut cur = s;
            while !index.contains_key(cur) {
                let outs = succ.get(cur).map(|v| v.as_slice()).unwrap_or_default();
                if indeg.get(cur).copied().unwrap_or(0) != 1 || outs.len() != 1 {
                    return Err(ImportError::Structure {
                        why: format!(
                            "`{cur}` lies off the main path with {} edge(s) in and {} out; snnc's skip paths neither fork nor merge",
                            indeg.get(cur).copied().unwrap_or(0),
                            outs.len()
                        ),
                        help: Some("a skip is one path of pools from a layer's output to a later layer's input".into()),
                    });
                }
                path.push(cur.to_string());
                cur = outs[0];
            }
            branches.push(Branch {
                from: i,
                path,
                to: index[cur],
            });
        }
    }
    Ok(Plan {
        main: main.into_iter().map(String::from).collect(),
        branches,
    })
}

fn input_shape_of(g: &NirGraph, chain: &[String]) -> R<Flow> {
    let name = &chain[0];
    let shape = ints(
        name,
        &g.nodes[name],
        "shape",
        "the input shape [C, H, W] or [N]",
    )?;
    match shape.as_slice() {
        [c, h, w] => Ok(Flow {
            c: *c,
            h: *h,
            w: *w,
            flat: false,
        }),
        [n] => Ok(Flow {
            c: *n,
            h: 1,
            w: 1,
            flat: true,
        }),
        _ => Err(ImportError::FieldType {
            node: name.clone(),
            field: "shape".into(),
            expected: "[C, H, W] or [N] (no batch dimension)".into(),
            found: format!("{shape:?}"),
        }),
    }
}

fn field<'a>(node: &str, n: &'a NirNode, f: &str, expected: &str) -> R<&'a Value> {
    n.fields.get(f).ok_or_else(|| ImportError::MissingField {
        node: node.into(),
        field: f.into(),
        expected: expected.into(),
    })
}

/// Non-negative integers of a 0-D or 1-D numeric field.
fn ints(node: &str, n: &NirNode, f: &str, expected: &str) -> R<Vec<u64>> {
    let v = field(node, n, f, expected)?;
    let bad = |found: String| ImportError::FieldType {
        node: node.into(),
        field: f.into(),
        expected: expected.into(),
        found,
    };
    match v {
        Value::Num { shape, data, .. } if shape.len() <= 1 => data
            .iter()
            .map(|&x| {
                if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 1e12 {
                    Ok(x as u64)
                } else {
                    Err(bad(format!("the value {x}")))
                }
            })
            .collect(),
        other => Err(bad(other.describe())),
    }
}

/// A pair field (`stride`, `padding`, `kernel_size`): a scalar or two equal values.
fn square(node: &str, n: &NirNode, f: &str) -> R<u64> {
    let v = ints(node, n, f, "an integer or a pair of equal integers")?;
    match v.as_slice() {
        [a] => Ok(*a),
        [a, b] if a == b => Ok(*a),
        [a, b] => Err(ImportError::UnsupportedValue {
            node: node.into(),
            field: f.into(),
            why: format!("({a}, {b}) differ; snnc layers are square"),
            help: None,
        }),
        other => Err(ImportError::FieldType {
            node: node.into(),
            field: f.into(),
            expected: "an integer or a pair".into(),
            found: format!("{} values", other.len()),
        }),
    }
}

/// A numeric array field with exactly `shape` (all finite).
fn array<'a>(node: &str, n: &'a NirNode, f: &str, shape: &[u64]) -> R<&'a [f64]> {
    let v = field(node, n, f, &format!("an array of shape {shape:?}"))?;
    match v {
        Value::Num { shape: s, data, .. } => {
            if s.as_slice() != shape {
                let found = if s.is_empty() {
                    "a scalar".to_string()
                } else {
                    format!("shape {s:?}")
                };
                return Err(ImportError::ShapeMismatch {
                    node: node.into(),
                    field: f.into(),
                    expected: format!("shape {shape:?}"),
                    found,
                });
            }
            if let Some(x) = data.iter().find(|x| !x.is_finite()) {
                return Err(ImportError::UnsupportedValue {
                    node: node.into(),
                    field: f.into(),
                    why: format!("holds {x}, which is not finite"),
                    help: None,
                });
            }
            Ok(data)
        }
        other => Err(ImportError::FieldType {
            node: node.into(),
            field: f.into(),
            expected: format!("a numeric array of shape {shape:?}"),
            found: other.describe(),
        }),
    }
}

/// A neuron parameter: an array of the layer's shape holding one value throughout.
fn uniform(node: &str, n: &NirNode, f: &str, shape: &[u64]) -> R<f64> {
    let data = array(node, n, f, shape)?;
    let first = data.first().copied().unwrap_or(0.0);
    if data.iter().any(|&x| x != first) {
        return Err(ImportError::UnsupportedValue {
            node: node.into(),
            field: f.into(),
            why: "differs between neurons; an snnc layer has one value for all its neurons".into(),
            help: None,
        });
    }
    Ok(first)
}

fn zeros(node: &str, n: &NirNode, f: &str, shape: &[u64], why: &str) -> R<()> {
    if !n.fields.contains_key(f) {
        return Ok(());
    }
    let data = array(node, n, f, shape)?;
    if data.iter().any(|&x| x != 0.0) {
        return Err(ImportError::UnsupportedValue {
            node: node.into(),
            field: f.into(),
            why: why.into(),
            help: None,
        });
    }
    Ok(())
}

struct Walk {
    dt: f64,
    items: Vec<Item>,
    flow: Option<Flow>,
    /// A gain (Scale, SumPool2d) waiting for the next layer's weights.
    gain: f64,
}

impl Walk {
    fn flow(&self, node: &str, kind: &str) -> R<Flow> {
        self.flow.ok_or_else(|| ImportError::Unsupported {
            node: node.into(),
            kind: kind.into(),
            why: "it comes before the Input".into(),
            help: None,
        })
    }

    /// The layer a neuron or Scale may attach to: the last item, a layer without neuron.
    fn open_layer(&mut self) -> Option<&mut Layer> {
        match self.items.last_mut() {
            Some(Item::Layer(l)) if l.neuron.is_none() => Some(l),
            _ => None,
        }
    }

    fn check_closed(&self, node: &str, kind: &str) -> R<()> {
        if let Some(Item::Layer(l)) = self.items.last() {
            if l.neuron.is_none() {
                return Err(ImportError::Unsupported {
                    node: node.into(),
                    kind: kind.into(),
                    why: format!(
                        "it follows `{}` with no neuron between them; every snnc layer but the last is spiking",
                        l.node
                    ),
                    help: None,
                });
            }
        }
        Ok(())
    }

    fn node(&mut self, name: &str, n: &NirNode) -> R<()> {
        let kind = n.kind.as_str();
        let unsupported = |why: &str, help: Option<&str>| ImportError::Unsupported {
            node: name.into(),
            kind: kind.into(),
            why: why.into(),
            help: help.map(String::from),
        };
        match kind {
            "Input" => {
                let s = ints(name, n, "shape", "the input shape [C, H, W] or [N]")?;
                let f = match s.as_slice() {
                    [c, h, w] => Flow {
                        c: *c,
                        h: *h,
                        w: *w,
                        flat: false,
                    },
                    [k] => Flow {
                        c: *k,
                        h: 1,
                        w: 1,
                        flat: true,
                    },
                    _ => {
                        return Err(ImportError::FieldType {
                            node: name.into(),
                            field: "shape".into(),
                            expected: "[C, H, W] or [N] (no batch dimension)".into(),
                            found: format!("{s:?}"),
                        })
                    }
                };
                if f.elems() == 0 {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "shape".into(),
                        why: format!("{s:?} has no elements"),
                        help: None,
                    });
                }
                self.flow = Some(f);
            }
            "Output" => {
                let f = self.flow(name, kind)?;
                if let Ok(s) = ints(name, n, "shape", "the output shape") {
                    let e: u64 = s.iter().fold(1u64, |a, &x| a.saturating_mul(x));
                    if e != f.elems() {
                        return Err(ImportError::ShapeMismatch {
                            node: name.into(),
                            field: "shape".into(),
                            expected: format!(
                                "{} elements (what reaches it: {})",
                                f.elems(),
                                f.text()
                            ),
                            found: format!("{s:?}"),
                        });
                    }
                }
                if !self.items.iter().any(|i| matches!(i, Item::Layer(_))) {
                    return Err(ImportError::Structure {
                        why: "the graph has no Conv2d, Linear or Affine layer".into(),
                        help: None,
                    });
                }
            }
            "Conv2d" => {
                let f = self.flow(name, kind)?;
                self.check_closed(name, kind)?;
                let w = field(name, n, "weight", "(C_out, C_in, kH, kW)")?;
                let (shape, data) = match w {
                    Value::Num { shape, data, .. } if shape.len() == 4 => (shape.clone(), data),
                    other => {
                        return Err(ImportError::FieldType {
                            node: name.into(),
                            field: "weight".into(),
                            expected: "a 4-D array (C_out, C_in, kH, kW)".into(),
                            found: other.describe(),
                        })
                    }
                };
                let (cout, cin, kh, kw) = (shape[0], shape[1], shape[2], shape[3]);
                if kh != kw {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "weight".into(),
                        why: format!("the kernel is {kh}×{kw}; snnc kernels are square"),
                        help: None,
                    });
                }
                if f.flat || cin != f.c {
                    return Err(ImportError::ShapeMismatch {
                        node: name.into(),
                        field: "weight".into(),
                        expected: format!("{} input channels (what reaches it: {})", f.c, f.text()),
                        found: format!("{cin} (weight shape {shape:?})"),
                    });
                }
                let stride = square(name, n, "stride")?;
                let pad = match n.fields.get("padding") {
                    Some(v) if v.as_text().is_some() => match v.as_text() {
                        Some("valid") => 0,
                        Some("same") if kh % 2 == 1 && stride == 1 => kh / 2,
                        Some(other) => {
                            return Err(ImportError::UnsupportedValue {
                                node: name.into(),
                                field: "padding".into(),
                                why: format!("\"{other}\" with a {kh}×{kh} kernel, stride {stride}"),
                                help: Some("snnc supports \"valid\", \"same\" (odd kernel, stride 1) and integers".into()),
                            })
                        }
                        None => 0,
                    },
                    _ => square(name, n, "padding")?,
                };
                if n.fields.contains_key("dilation") && square(name, n, "dilation")? != 1 {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "dilation".into(),
                        why: "snnc convolutions have dilation 1".into(),
                        help: None,
                    });
                }
                if n.fields.contains_key("groups") {
                    let g = ints(name, n, "groups", "an integer")?;
                    if g.as_slice() != [1] {
                        return Err(ImportError::UnsupportedValue {
                            node: name.into(),
                            field: "groups".into(),
                            why: format!("{g:?}; snnc convolutions have groups = 1"),
                            help: None,
                        });
                    }
                }
                zeros(
                    name,
                    n,
                    "bias",
                    &[cout],
                    "is not zero; snnc layers have no bias (as in the paper)",
                )?;
                if stride == 0 {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "stride".into(),
                        why: "is 0".into(),
                        help: None,
                    });
                }
                if let Some(v) = n.fields.get("input_shape") {
                    if !matches!(v, Value::Num { data, .. } if data.is_empty()) {
                        let s = ints(name, n, "input_shape", "(H, W)")?;
                        if s.as_slice() != [f.h, f.w] {
                            return Err(ImportError::ShapeMismatch {
                                node: name.into(),
                                field: "input_shape".into(),
                                expected: format!(
                                    "[{}, {}] (what reaches it: {})",
                                    f.h,
                                    f.w,
                                    f.text()
                                ),
                                found: format!("{s:?}"),
                            });
                        }
                    }
                }
                let span_h = f.h + 2 * pad;
                if kh == 0 || kh > span_h || kh > f.w + 2 * pad {
                    return Err(ImportError::ShapeMismatch {
                        node: name.into(),
                        field: "weight".into(),
                        expected: format!(
                            "a kernel that fits the padded input {}×{}",
                            span_h,
                            f.w + 2 * pad
                        ),
                        found: format!("{kh}×{kw}"),
                    });
                }
                let oh = (span_h - kh) / stride + 1;
                let ow = (f.w + 2 * pad - kh) / stride + 1;
                let gain = std::mem::replace(&mut self.gain, 1.0);
                self.items.push(Item::Layer(Layer {
                    node: name.into(),
                    kind: LayerKind::Conv {
                        in_ch: cin,
                        out_ch: cout,
                        kernel: kh,
                        stride,
                        pad,
                    },
                    weights: data.iter().map(|&x| (x * gain) as f32).collect(),
                    neuron: None,
                    hint: hint(n),
                }));
                self.flow = Some(Flow {
                    c: cout,
                    h: oh,
                    w: ow,
                    flat: false,
                });
            }
            "Linear" | "Affine" => {
                let f = self.flow(name, kind)?;
                self.check_closed(name, kind)?;
                let w = field(name, n, "weight", "(out, in)")?;
                let (shape, data) = match w {
                    Value::Num { shape, data, .. } if shape.len() == 2 => (shape.clone(), data),
                    other => {
                        return Err(ImportError::FieldType {
                            node: name.into(),
                            field: "weight".into(),
                            expected: "a 2-D array (out, in)".into(),
                            found: other.describe(),
                        })
                    }
                };
                if shape[1] != f.elems() {
                    return Err(ImportError::ShapeMismatch {
                        node: name.into(),
                        field: "weight".into(),
                        expected: format!("{} inputs (what reaches it: {})", f.elems(), f.text()),
                        found: format!("{} (weight shape {shape:?})", shape[1]),
                    });
                }
                if kind == "Affine" {
                    field(name, n, "bias", "(out,)")?;
                    zeros(
                        name,
                        n,
                        "bias",
                        &[shape[0]],
                        "is not zero; snnc layers have no bias (as in the paper)",
                    )?;
                }
                let gain = std::mem::replace(&mut self.gain, 1.0);
                self.items.push(Item::Layer(Layer {
                    node: name.into(),
                    kind: LayerKind::Fc {
                        inputs: shape[1],
                        outputs: shape[0],
                    },
                    weights: data.iter().map(|&x| (x * gain) as f32).collect(),
                    neuron: None,
                    hint: hint(n),
                }));
                self.flow = Some(Flow {
                    c: shape[0],
                    h: 1,
                    w: 1,
                    flat: true,
                });
            }
            "Flatten" => {
                let f = self.flow(name, kind)?;
                self.flow = Some(Flow {
                    c: f.elems(),
                    h: 1,
                    w: 1,
                    flat: true,
                });
            }
            "AvgPool2d" | "SumPool2d" => {
                let f = self.flow(name, kind)?;
                self.check_closed(name, kind)?;
                if f.flat {
                    return Err(unsupported("pooling after a Flatten or an FC layer", None));
                }
                let (k, s) = pool_params(name, n, &f)?;
                if kind == "SumPool2d" {
                    self.gain *= (k as f64) * (k as f64);
                }
                self.items.push(Item::Pool {
                    window: k,
                    stride: s,
                    sum: kind == "SumPool2d",
                });
                self.flow = Some(Flow {
                    c: f.c,
                    h: (f.h - k) / s + 1,
                    w: (f.w - k) / s + 1,
                    flat: false,
                });
            }
            "Scale" => {
                let f = self.flow(name, kind)?;
                let shape = flow_shape(&f);
                let s = match n.fields.get("scale") {
                    Some(v) if v.as_f64().is_some() => v.as_f64().unwrap_or(1.0),
                    _ => uniform(name, n, "scale", &shape)?,
                };
                if !s.is_finite() {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "scale".into(),
                        why: format!("{s} is not finite"),
                        help: None,
                    });
                }
                match self.open_layer() {
                    Some(l) => l
                        .weights
                        .iter_mut()
                        .for_each(|w| *w = (*w as f64 * s) as f32),
                    None => self.gain *= s,
                }
            }
            "LIF" | "IF" => {
                let f = self.flow(name, kind)?;
                let shape = flow_shape(&f);
                let dt = self.dt;
                let thr = uniform(name, n, "v_threshold", &shape)?;
                zeros(
                    name,
                    n,
                    "v_reset",
                    &shape,
                    "is not zero; snnc neurons reset to 0 or by subtraction",
                )?;
                let (leak, gain) = if kind == "LIF" {
                    let tau = uniform(name, n, "tau", &shape)?;
                    let r = uniform(name, n, "r", &shape)?;
                    zeros(
                        name,
                        n,
                        "v_leak",
                        &shape,
                        "is not zero; snnc neurons leak towards 0",
                    )?;
                    field(name, n, "v_leak", "an array of the layer's shape")?;
                    if tau <= dt {
                        return Err(ImportError::UnsupportedValue {
                            node: name.into(),
                            field: "tau".into(),
                            why: format!("τ = {tau} s is not longer than dt = {dt} s, so the leak α = 1 − dt/τ is not in (0, 1)"),
                            help: Some("pass the step the graph was made with: --dt SECONDS".into()),
                        });
                    }
                    let (a, g) = crate::export::nir::lif_alpha_gain(tau, r, dt);
                    (a, g)
                } else {
                    let r = uniform(name, n, "r", &shape)?;
                    (1.0, r * dt)
                };
                if thr <= 0.0 {
                    return Err(ImportError::UnsupportedValue {
                        node: name.into(),
                        field: "v_threshold".into(),
                        why: format!("{thr}; snnc thresholds are positive"),
                        help: None,
                    });
                }
                let reset = match n.metadata.get("reset").and_then(|v| v.as_text()) {
                    Some("subtract") => Reset::Subtract,
                    _ => Reset::Zero,
                };
                let leak = (leak as f32).clamp(f32::MIN_POSITIVE, 1.0);
                let neuron = Neuron {
                    kind: if kind == "LIF" && leak < 1.0 {
                        NeuronKind::Lif
                    } else {
                        NeuronKind::If
                    },
                    leak,
                    threshold: thr as f32,
                    reset,
                };
                let Some(l) = self.open_layer() else {
                    return Err(unsupported(
                        "a neuron that does not follow a Conv2d, Linear or Affine layer",
                        Some("snnc neurons are a layer's activation"),
                    ));
                };
                if (gain - 1.0).abs() > 1e-6 {
                    l.weights
                        .iter_mut()
                        .for_each(|w| *w = (*w as f64 * gain) as f32);
                }
                l.neuron = Some(neuron);
            }
            "NIRGraph" => {
                return Err(unsupported(
                    "nested graphs are not imported",
                    Some("flatten the graph before exporting it"),
                ))
            }
            "I" | "LI" | "CubaLI" | "CubaLIF" | "Threshold" | "Delay" | "Conv1d" => {
                return Err(unsupported(
                    "snnc has no counterpart (its neurons are LIF and IF, its convolutions 2-D)",
                    None,
                ))
            }
            other => {
                return Err(ImportError::UnknownType {
                    node: name.into(),
                    kind: other.into(),
                })
            }
        }
        Ok(())
    }
}

/// A pool's window and stride (square, no padding, fitting the feature map `f`).
fn pool_params(name: &str, n: &NirNode, f: &Flow) -> R<(u64, u64)> {
    if f.flat {
        return Err(ImportError::Unsupported {
            node: name.into(),
            kind: n.kind.clone(),
            why: "pooling after a Flatten or an FC layer".into(),
            help: None,
        });
    }
    let k = square(name, n, "kernel_size")?;
    let s = square(name, n, "stride")?;
    let p = if n.fields.contains_key("padding") {
        square(name, n, "padding")?
    } else {
        0
    };
    if p != 0 {
        return Err(ImportError::UnsupportedValue {
            node: name.into(),
            field: "padding".into(),
            why: format!("{p}; snnc pooling has no padding"),
            help: None,
        });
    }
    if k == 0 || s == 0 || k > f.h || k > f.w {
        return Err(ImportError::ShapeMismatch {
            node: name.into(),
            field: "kernel_size".into(),
            expected: format!("a window that fits {}", f.text()),
            found: format!("{k}×{k}, stride {s}"),
        });
    }
    Ok((k, s))
}

fn flow_shape(f: &Flow) -> Vec<u64> {
    if f.flat {
        vec![f.elems()]
    } else {
        vec![f.c, f.h, f.w]
    }
}

fn hint(n: &NirNode) -> Option<String> {
    n.metadata
        .get("snnc_layer")
        .and_then(|v| v.as_text())
        .map(String::from)
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// A weight-set name for a new layer of `kind`: the hint or the node name if usable, else
/// `Conv<k>` / `FC<k>`.
fn pick_name(
    l: &Layer,
    used: &HashSet<String>,
    counters: &mut HashMap<&'static str, u32>,
) -> String {
    let prefix = match l.kind {
        LayerKind::Conv { .. } => "Conv",
        LayerKind::Fc { .. } => "FC",
    };
    let stripped = l.node.split('@').next().unwrap_or("").to_string();
    for cand in l.hint.iter().chain(std::iter::once(&stripped)) {
        if cand.starts_with(prefix)
            && !(prefix == "Conv" && cand.starts_with("FC"))
            && is_ident(cand)
            && !used.contains(cand)
        {
            return cand.clone();
        }
    }
    let counter = counters.entry(prefix).or_insert(0);
    loop {
        *counter += 1;
        let c = format!("{prefix}{counter}");
        if !used.contains(&c) {
            return c;
        }
    }
}

fn signature(name: &str, kind: &LayerKind) -> String {
    match *kind {
        LayerKind::Conv {
            in_ch,
            out_ch,
            kernel,
            stride,
            pad,
        } => format!("{name}({in_ch},{out_ch},{kernel}x{kernel}/{stride}, pad={pad})"),
        LayerKind::Fc { inputs, outputs } => format!("{name}({inputs},{outputs})"),
    }
}

fn activation(n: &Neuron) -> String {
    let reset = match n.reset {
        Reset::Subtract => "subtract",
        Reset::Zero => "zero",
    };
    match n.kind {
        NeuronKind::Lif => format!(
            "LIF(leak={}, threshold={}, reset={reset})",
            n.leak, n.threshold
        ),
        NeuronKind::If => format!("IF(threshold={}, reset={reset})", n.threshold),
    }
}

fn emit(
    g: &NirGraph,
    opts: &ImportOptions,
    dt: f64,
    input: Flow,
    items: Vec<Item>,
    skips: Vec<Skip>,
) -> R<Imported> {
    let network = g
        .metadata
        .get("snnc_network")
        .and_then(|v| v.as_text())
        .filter(|s| is_ident(s))
        .map(String::from)
        .or_else(|| opts.name.clone().filter(|s| is_ident(s)))
        .unwrap_or_else(|| "Imported".into());
    let method = g
        .metadata
        .get("snnc_method")
        .and_then(|v| v.as_text())
        .filter(|m| ["agd", "conversion", "stdp"].contains(m))
        .map(String::from);
    // Weight sets: identical (signature, weights) → one name.
    let mut used: HashSet<String> = HashSet::new();
    let mut sets: Vec<(String, LayerKind, Vec<u32>)> = Vec::new();
    let mut counter = HashMap::new();
    let mut names: Vec<Option<String>> = Vec::new();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for it in &items {
        let Item::Layer(l) = it else {
            names.push(None);
            continue;
        };
        let bits: Vec<u32> = l.weights.iter().map(|w| w.to_bits()).collect();
        let found = sets
            .iter()
            .find(|(_, k, b)| *k == l.kind && *b == bits)
            .map(|(n, _, _)| n.clone());
        let name = match found {
            Some(n) => n,
            None => {
                let n = pick_name(l, &used, &mut counter);
                used.insert(n.clone());
                let dims: Vec<usize> = match l.kind {
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
                let t = Tensor::from_vec(l.weights.clone(), dims, &Device::Cpu).map_err(|e| {
                    ImportError::Generated {
                        first: e.to_string(),
                    }
                })?;
                tensors.insert(n.clone(), t);
                sets.push((n.clone(), l.kind, bits));
                n
            }
        };
        names.push(Some(name));
    }
    let mut body = Vec::new();
    let mut declared: HashSet<String> = HashSet::new();
    let mut steps: HashMap<String, u32> = HashMap::new();
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Pool { window, stride, .. } => {
                body.push(format!("Pool({window}x{window}/{stride})"));
                i += 1;
            }
            Item::Layer(l) => {
                let name = names[i].clone().unwrap_or_default();
                // A run of consecutive applications with the same neuron (threshold aside).
                let mut j = i + 1;
                while j < items.len() {
                    let same = match &items[j] {
                        Item::Layer(m) => {
                            names[j].as_deref() == Some(name.as_str())
                                && same_spec(&m.neuron, &l.neuron)
                        }
                        Item::Pool { .. } => false,
                    };
                    if !same {
                        break;
                    }
                    j += 1;
                }
                let count = j - i;
                for item in &items[i..j] {
                    if let Item::Layer(m) = item {
                        let s = steps.entry(name.clone()).or_insert(0);
                        *s += 1;
                        if let Some(n) = &m.neuron {
                            let t = Tensor::new(&[n.threshold], &Device::Cpu).map_err(|e| {
                                ImportError::Generated {
                                    first: e.to_string(),
                                }
                            })?;
                            tensors.insert(format!("threshold.{name}.{s}"), t);
                        }
                    }
                }
                let head = if declared.insert(name.clone()) {
                    signature(&name, &l.kind)
                } else {
                    name.clone()
                };
                let rep = if count > 1 {
                    format!(" x{count}")
                } else {
                    String::new()
                };
                let act = l
                    .neuron
                    .as_ref()
                    .map(|n| format!(" {}", activation(n)))
                    .unwrap_or_default();
                body.push(format!("{head}{rep}{act}"));
                i = j;
            }
        }
    }
    // Skips: `skip A -> B add`, checked against snnc's rule that the join sits before B's
    // first application and takes A's last application before it.
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    for sk in &skips {
        let b = names[sk.to].clone().unwrap_or_default();
        let a = match sk.from {
            Some(i) => names[i].clone().unwrap_or_default(),
            None => "Input".to_string(),
        };
        let structure = |why: String| {
            ImportError::Structure {
            why,
            help: Some(
                "snnc joins a skip before B's first application and takes A's last application before it".into(),
            ),
        }
        };
        if names[..sk.to]
            .iter()
            .any(|n| n.as_deref() == Some(b.as_str()))
        {
            return Err(structure(format!(
                "a skip joins at `{}`, a later application of the shared weights `{b}`",
                sk.node
            )));
        }
        if let Some(i) = sk.from {
            if names[i + 1..sk.to]
                .iter()
                .any(|n| n.as_deref() == Some(a.as_str()))
            {
                return Err(structure(format!(
                    "the skip into `{}` leaves an application of `{a}` that is not its last before `{b}`",
                    sk.node
                )));
            }
        }
        if !pairs.insert((a.clone(), b.clone())) {
            return Err(structure(format!(
                "two skips go from `{a}` into `{b}` (at `{}`)",
                sk.node
            )));
        }
        body.push(format!("skip {a} -> {b} add"));
    }
    let mut src = String::new();
    src.push_str(&format!(
        "# Imported from NIR by snnc import (dt = {dt} s).\nnetwork {network} {{\n"
    ));
    src.push_str(&format!("    input {}x{}x{}\n", input.c, input.h, input.w));
    if let Some(t) = g.metadata.get("timesteps").and_then(|v| v.as_f64()) {
        if t >= 1.0 && t.fract() == 0.0 && t < 1e9 {
            src.push_str(&format!("    timesteps {}\n", t as u64));
        }
    }
    let enc = match g.metadata.get("encode").and_then(|v| v.as_text()) {
        Some("poisson") => "poisson",
        _ => "direct",
    };
    src.push_str(&format!("    encode {enc}\n"));
    if let Some(m) = &method {
        src.push_str(&format!("    method {m}\n"));
    }
    for line in body {
        src.push_str(&format!("    {line}\n"));
    }
    src.push_str("}\n");
    if let Err(d) = crate::compile(&src) {
        let first = d
            .iter()
            .next()
            .map(|x| x.message())
            .unwrap_or_else(|| "unknown error".into());
        return Err(ImportError::Generated { first });
    }
    let method = method.unwrap_or_else(|| "agd".into());
    if method == "conversion" {
        let reset = items.iter().find_map(|i| match i {
            Item::Layer(l) => l.neuron.map(|n| n.reset),
            _ => None,
        });
        let r: u8 = if reset == Some(Reset::Zero) { 1 } else { 0 };
        if let Ok(t) = Tensor::new(&[r], &Device::Cpu) {
            tensors.insert("conversion.reset".into(), t);
        }
    }
    Ok(Imported {
        network,
        source: src,
        tensors,
        method,
        dt,
    })
}

fn same_spec(a: &Option<Neuron>, b: &Option<Neuron>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.kind == b.kind && a.leak == b.leak && a.reset == b.reset,
        (None, None) => true,
        _ => false,
    }
}
