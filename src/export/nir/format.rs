//! The NIR graph in memory and its HDF5 form, as the Python `nir` package (1.0) writes it.
//!
//! Layout: `/version` (string); `/node` is the root graph: `type` = "NIRGraph", `edges`
//! (E, 2) strings (source, target), `nodes/<name>/` one group per node with its `type` and
//! one dataset per field, and optional `metadata/` groups (one dataset per key). Weights use
//! PyTorch layouts; neuron parameters are arrays of the layer's shape; no batch dimension.
//!
//! Owner: the NIR export/import. Invariants: [`NirGraph::to_hdf5`] writes only what
//! `nir.read` accepts (scalar variable-length UTF-8 strings for `type` and string metadata,
//! a 2-D string dataset for `edges`); [`NirGraph::from_hdf5`] never panics on any input
//! (a file the HDF5 reader cannot parse, or one it panics on, is an `Err` naming the path).

use std::collections::BTreeMap;

use hdf5_pure::{DType, File, FileBuilder};

/// The element type a numeric dataset is stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumType {
    F32,
    F64,
    I64,
}

/// One dataset (or a group of them, for `metadata` and nested graphs).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A numeric array in row-major order; `shape` `[]` is a scalar.
    Num {
        shape: Vec<u64>,
        data: Vec<f64>,
        ty: NumType,
    },
    /// A string array; `shape` `[]` is a scalar string.
    Str { shape: Vec<u64>, data: Vec<String> },
    /// A group of named values.
    Group(BTreeMap<String, Value>),
}

impl Value {
    /// A scalar string.
    pub fn text(s: impl Into<String>) -> Value {
        Value::Str {
            shape: vec![],
            data: vec![s.into()],
        }
    }

    /// A scalar f64.
    pub fn scalar(x: f64) -> Value {
        Value::Num {
            shape: vec![],
            data: vec![x],
            ty: NumType::F64,
        }
    }

    /// A 1-D i64 array.
    pub fn ints(v: &[i64]) -> Value {
        Value::Num {
            shape: vec![v.len() as u64],
            data: v.iter().map(|&x| x as f64).collect(),
            ty: NumType::I64,
        }
    }

    /// A scalar i64.
    pub fn int(x: i64) -> Value {
        Value::Num {
            shape: vec![],
            data: vec![x as f64],
            ty: NumType::I64,
        }
    }

    /// An array of `shape` filled with `x` (f64).
    pub fn filled(shape: &[u64], x: f64) -> Value {
        let n = shape.iter().product::<u64>() as usize;
        Value::Num {
            shape: shape.to_vec(),
            data: vec![x; n],
            ty: NumType::F64,
        }
    }

    /// An f32 array of `shape` (`data.len()` must be the product of `shape`).
    pub fn f32s(shape: &[u64], data: &[f32]) -> Value {
        Value::Num {
            shape: shape.to_vec(),
            data: data.iter().map(|&x| x as f64).collect(),
            ty: NumType::F32,
        }
    }

    /// The scalar string, if this is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str { shape, data } if shape.is_empty() || data.len() == 1 => {
                data.first().map(|s| s.as_str())
            }
            _ => None,
        }
    }

    /// The scalar number (or one-element array), if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num { data, .. } if data.len() == 1 => data.first().copied(),
            _ => None,
        }
    }

    /// A short description for diagnostics: `f32 array of shape [32, 1, 3, 3]`, `string`.
    pub fn describe(&self) -> String {
        match self {
            Value::Num { shape, ty, .. } if shape.is_empty() => format!("{ty:?} scalar"),
            Value::Num { shape, ty, .. } => format!("{ty:?} array of shape {shape:?}"),
            Value::Str { shape, .. } if shape.is_empty() => "a string".into(),
            Value::Str { shape, .. } => format!("string array of shape {shape:?}"),
            Value::Group(_) => "a group".into(),
        }
    }
}

/// One NIR node: its `type` (`LIF`, `Conv2d`, ...), its fields and its metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NirNode {
    pub kind: String,
    pub fields: BTreeMap<String, Value>,
    pub metadata: BTreeMap<String, Value>,
}

impl NirNode {
    pub fn new(kind: &str) -> Self {
        NirNode {
            kind: kind.into(),
            ..Default::default()
        }
    }

    pub fn field(mut self, name: &str, v: Value) -> Self {
        self.fields.insert(name.into(), v);
        self
    }

    pub fn meta(mut self, name: &str, v: Value) -> Self {
        self.metadata.insert(name.into(), v);
        self
    }
}

/// A NIR graph (the root `/node`): nodes by name, edges (source, target), metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NirGraph {
    pub version: String,
    pub nodes: BTreeMap<String, NirNode>,
    pub edges: Vec<(String, String)>,
    pub metadata: BTreeMap<String, Value>,
}

/// Why a file could not be read as a NIR graph: the HDF5 path and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatError {
    /// `/node/nodes/lif1/tau`, or `/` for the file as a whole.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn ferr(path: &str, message: impl std::fmt::Display) -> FormatError {
    FormatError {
        path: path.to_string(),
        message: message.to_string(),
    }
}

/// The NIR version written into `/version`.
pub const NIR_VERSION: &str = "1.0.8";

/// Groups nested deeper than this are refused (a defence against cyclic links).
const MAX_DEPTH: usize = 8;

impl NirGraph {
    /// The HDF5 bytes of this graph (weights deflate-compressed, as `nir.write` does).
    pub fn to_hdf5(&self) -> Result<Vec<u8>, FormatError> {
        let mut b = FileBuilder::new();
        let version = if self.version.is_empty() {
            NIR_VERSION
        } else {
            &self.version
        };
        b.create_dataset("version")
            .with_vlen_strings(&[version])
            .with_shape(&[]);
        let mut root = b.create_group("node");
        let mut fields = BTreeMap::new();
        fields.insert("type".to_string(), Value::text("NIRGraph"));
        let flat: Vec<String> = self
            .edges
            .iter()
            .flat_map(|(a, c)| [a.clone(), c.clone()])
            .collect();
        fields.insert(
            "edges".into(),
            Value::Str {
                shape: vec![self.edges.len() as u64, 2],
                data: flat,
            },
        );
        let nodes: BTreeMap<String, Value> = self
            .nodes
            .iter()
            .map(|(name, n)| (name.clone(), Value::Group(node_fields(n))))
            .collect();
        fields.insert("nodes".into(), Value::Group(nodes));
        if !self.metadata.is_empty() {
            fields.insert("metadata".into(), Value::Group(self.metadata.clone()));
        }
        write_group(&mut root, &fields)?;
        b.add_group(root.finish());
        b.finish().map_err(|e| ferr("/", e))
    }

    /// Reads a graph from HDF5 bytes. Unknown datasets are kept as fields; nested graphs
    /// are kept as [`Value::Group`] fields (`nodes`, `edges`) of their node.
    pub fn from_hdf5(bytes: Vec<u8>) -> Result<NirGraph, FormatError> {
        match std::panic::catch_unwind(move || read_graph(bytes)) {
            Ok(r) => r,
            Err(_) => Err(ferr("/", "the HDF5 reader could not parse this file")),
        }
    }
}

fn node_fields(n: &NirNode) -> BTreeMap<String, Value> {
    let mut f = n.fields.clone();
    f.insert("type".into(), Value::text(n.kind.clone()));
    if !n.metadata.is_empty() {
        f.insert("metadata".into(), Value::Group(n.metadata.clone()));
    }
    f
}

fn write_group(
    g: &mut hdf5_pure::GroupBuilder,
    fields: &BTreeMap<String, Value>,
) -> Result<(), FormatError> {
    for (name, v) in fields {
        if name.is_empty() || name.contains('/') || name == "." {
            return Err(ferr(name, "is not a valid HDF5 name"));
        }
        match v {
            Value::Group(inner) => {
                let mut sub = g.create_group(name);
                write_group(&mut sub, inner)?;
                g.add_group(sub.finish());
            }
            Value::Str { shape, data } => {
                let refs: Vec<&str> = data.iter().map(|s| s.as_str()).collect();
                g.create_dataset(name)
                    .with_vlen_strings(&refs)
                    .with_shape(shape);
            }
            Value::Num { shape, data, ty } => {
                let ds = g.create_dataset(name);
                match ty {
                    NumType::F32 => {
                        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                        ds.with_f32_data(&v)
                    }
                    NumType::F64 => ds.with_f64_data(data),
                    NumType::I64 => {
                        let v: Vec<i64> = data.iter().map(|&x| x as i64).collect();
                        ds.with_i64_data(&v)
                    }
                };
                ds.with_shape(shape);
                if data.len() > 64 {
                    ds.with_deflate(4);
                }
            }
        }
    }
    Ok(())
}

fn read_graph(bytes: Vec<u8>) -> Result<NirGraph, FormatError> {
    let file = File::from_bytes(bytes).map_err(|e| ferr("/", format!("not an HDF5 file ({e})")))?;
    let version = match file.dataset("version") {
        Ok(d) => d
            .read_string()
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let root = file.group("node").map_err(|_| {
        ferr(
            "/node",
            "missing: a NIR file holds its graph in the group `/node`",
        )
    })?;
    let fields = read_group(&root, "/node", 0)?;
    let mut g = graph_from_fields(fields, "/node")?;
    g.version = version;
    Ok(g)
}

/// A `NIRGraph` group's fields → the graph (nodes, edges, metadata).
pub fn graph_from_fields(
    mut fields: BTreeMap<String, Value>,
    path: &str,
) -> Result<NirGraph, FormatError> {
    let kind = fields.remove("type");
    match kind.as_ref().and_then(|k| k.as_text()) {
        Some("NIRGraph") => {}
        Some(other) => {
            return Err(ferr(
                &format!("{path}/type"),
                format!("expected \"NIRGraph\", found \"{other}\""),
            ))
        }
        None => {
            return Err(ferr(
                &format!("{path}/type"),
                "missing (expected the string \"NIRGraph\")",
            ))
        }
    }
    let edges = match fields.remove("edges") {
        Some(Value::Str { shape, data }) if shape.len() == 2 && shape[1] == 2 => data
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        Some(Value::Str { shape, data }) if shape == vec![0] || data.is_empty() => vec![],
        Some(Value::Num { data, .. }) if data.is_empty() => vec![],
        Some(v) => {
            return Err(ferr(
                &format!("{path}/edges"),
                format!("expected an (E, 2) string array, found {}", v.describe()),
            ))
        }
        None => {
            return Err(ferr(
                &format!("{path}/edges"),
                "missing (expected an (E, 2) string array)",
            ))
        }
    };
    let nodes = match fields.remove("nodes") {
        Some(Value::Group(g)) => g,
        Some(v) => {
            return Err(ferr(
                &format!("{path}/nodes"),
                format!("expected a group of nodes, found {}", v.describe()),
            ))
        }
        None => return Err(ferr(&format!("{path}/nodes"), "missing")),
    };
    let mut out = BTreeMap::new();
    for (name, v) in nodes {
        let npath = format!("{path}/nodes/{name}");
        let Value::Group(mut f) = v else {
            return Err(ferr(
                &npath,
                format!("expected a node group, found {}", v.describe()),
            ));
        };
        let kind = match f.remove("type") {
            Some(t) => match t.as_text() {
                Some(s) => s.to_string(),
                None => {
                    return Err(ferr(
                        &format!("{npath}/type"),
                        format!("expected a string, found {}", t.describe()),
                    ))
                }
            },
            None => return Err(ferr(&format!("{npath}/type"), "missing")),
        };
        let metadata = match f.remove("metadata") {
            Some(Value::Group(m)) => m,
            _ => BTreeMap::new(),
        };
        out.insert(
            name,
            NirNode {
                kind,
                fields: f,
                metadata,
            },
        );
    }
    let metadata = match fields.remove("metadata") {
        Some(Value::Group(m)) => m,
        _ => BTreeMap::new(),
    };
    Ok(NirGraph {
        version: String::new(),
        nodes: out,
        edges,
        metadata,
    })
}

fn read_group(
    g: &hdf5_pure::Group,
    path: &str,
    depth: usize,
) -> Result<BTreeMap<String, Value>, FormatError> {
    if depth > MAX_DEPTH {
        return Err(ferr(path, format!("groups nested deeper than {MAX_DEPTH}")));
    }
    let mut out = BTreeMap::new();
    let datasets = g.datasets().map_err(|e| ferr(path, e))?;
    for name in datasets {
        let p = format!("{path}/{name}");
        let d = g.dataset(&name).map_err(|e| ferr(&p, e))?;
        let shape = d.shape().map_err(|e| ferr(&p, e))?;
        let dtype = d.dtype().map_err(|e| ferr(&p, e))?;
        let n: u64 = shape
            .iter()
            .try_fold(1u64, |a, &x| a.checked_mul(x))
            .ok_or_else(|| ferr(&p, "too many elements"))?;
        if n > (1 << 28) {
            return Err(ferr(&p, format!("{n} elements is more than snnc reads")));
        }
        let v = match dtype {
            DType::String | DType::VariableLengthString => Value::Str {
                shape,
                data: d.read_string().map_err(|e| ferr(&p, e))?,
            },
            DType::F32 | DType::F64 => Value::Num {
                shape,
                data: d.read_f64().map_err(|e| ferr(&p, e))?,
                ty: if dtype == DType::F32 {
                    NumType::F32
                } else {
                    NumType::F64
                },
            },
            DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64 => Value::Num {
                shape,
                data: d
                    .read_i64()
                    .map_err(|e| ferr(&p, e))?
                    .into_iter()
                    .map(|x| x as f64)
                    .collect(),
                ty: NumType::I64,
            },
            other => {
                return Err(ferr(
                    &p,
                    format!("unsupported element type {}", dtype_name(&other)),
                ))
            }
        };
        let len = match &v {
            Value::Num { data, .. } => data.len(),
            Value::Str { data, .. } => data.len(),
            Value::Group(_) => 0,
        };
        if len as u64 != n {
            return Err(ferr(
                &p,
                format!("holds {len} elements but its shape says {n}"),
            ));
        }
        out.insert(name, v);
    }
    for name in g.groups().map_err(|e| ferr(path, e))? {
        let p = format!("{path}/{name}");
        let sub = g.group(&name).map_err(|e| ferr(&p, e))?;
        out.insert(name, Value::Group(read_group(&sub, &p, depth + 1)?));
    }
    Ok(out)
}

fn dtype_name(d: &DType) -> &'static str {
    match d {
        DType::Compound(_) => "compound",
        DType::Enum(_) => "enum (boolean?)",
        DType::Array(..) => "array type",
        DType::ObjectReference => "object reference",
        _ => "other",
    }
}
