//! Checkpoints: `DIR/weights.safetensors`, written atomically (a temporary file in the same
//! folder, synced, then renamed over the old one), so Ctrl-C or a kill at any moment leaves
//! the last complete checkpoint intact. On Unix the file has mode 0644.
//!
//! This module owns every name in a checkpoint (the bundle an exporter reads):
//! - weights: one tensor per weight set, named by the IR (`Conv3`, `FC1`), shared by every
//!   unroll step of a BackRes layer; stochmax's head `stochmax.{rho,aux}.{weight,bias}`;
//! - thresholds: [`threshold_key`] = `threshold.<layer>.<step>` (f32, one per slot);
//! - neuron parameters: the reset of a converted network, [`RESET_KEY`] = `conversion.reset`
//!   (u8: 0 subtract, 1 zero); leak and threshold of trained SNNs come from the network file;
//! - optimiser state (written by `optim`): Adam `adam.step`, `adam.m.<param>`,
//!   `adam.v.<param>`; SGD `sgd.step`, `sgd.momentum.<param>`;
//! - metadata: `meta.epoch` (epochs completed, i64), `meta.seed` (i64, the u64 seed's bits),
//!   `meta.network` and `meta.method` (UTF-8 bytes; the method's registry name), and the
//!   run's settings ([`RunSettings`]: `meta.batch`, `meta.timesteps`, `meta.optimizer`,
//!   `meta.train_limit`, `meta.test_limit`);
//! - the network settings the weights were trained with ([`NetRecord`], issues 11.6, 13.2):
//!   `meta.classifier`, `meta.encode` (UTF-8), `meta.surrogate_gamma` (f32) and
//!   `meta.neurons` (UTF-8, one line per spiking application: `<layer> <step> <KIND>
//!   <leak> <reset>`, e.g. `Conv1 1 LIF 0.9 subtract`); thresholds are the `threshold.*`
//!   tensors above. `--resume` and `snnc eval` compare them with the network file
//!   ([`NetRecord::first_mismatch`]); a checkpoint without them loads with a warning;
//! - the position inside an epoch of a checkpoint written on Ctrl-C ([`Position`], issue
//!   11.10): `meta.batch_index` (i64, batches of epoch `meta.epoch + 1` done),
//!   `meta.rng_word_pos` (u8 ×16, little-endian u128: the word position of the epoch's
//!   sequential ChaCha8 stream, which stochmax draws from), `meta.partial` (f64 ×3: loss sum,
//!   correct count, images seen so far in the epoch) and, for stochmax, `meta.partial_terms`
//!   (f64 ×4: the sums of its loss terms ce, kl, aux, neg_entropy).
//!
//! Randomness is derived from (seed, epoch) (data order, per-image Poisson and dropout noise)
//! and the sequential stream's position, so seed, epoch and [`Position`] are all `--resume`
//! needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Result, Tensor};

/// The key of a converted network's reset mode (u8: 0 subtract, 1 zero).
pub const RESET_KEY: &str = "conversion.reset";

/// The key of a threshold slot: `threshold.<layer>.<step>` (the model names its parameters;
/// re-exported here so that this module lists every key of a checkpoint).
pub use crate::backend::candle::model::threshold_key;

/// The key of Adam's step count (a scalar; issue 7: this module owns every checkpoint name).
pub const ADAM_STEP_KEY: &str = "adam.step";
/// The key of SGD's step count (a scalar).
pub const SGD_STEP_KEY: &str = "sgd.step";

/// The key of Adam's first-moment estimate of parameter `param`: `adam.m.<param>`.
pub fn adam_m_key(param: &str) -> String {
    format!("adam.m.{param}")
}

/// The key of Adam's second-moment estimate of parameter `param`: `adam.v.<param>`.
pub fn adam_v_key(param: &str) -> String {
    format!("adam.v.{param}")
}

/// The key of SGD's momentum buffer of parameter `param`: `sgd.momentum.<param>`.
pub fn sgd_momentum_key(param: &str) -> String {
    format!("sgd.momentum.{param}")
}

/// The checkpoint file inside an output folder.
pub fn weights_path(dir: &Path) -> PathBuf {
    dir.join("weights.safetensors")
}

/// The settings a run was trained with, which `--resume` takes from its checkpoint
/// (`meta.batch`, `meta.timesteps`, `meta.optimizer`, `meta.train_limit`, `meta.test_limit`;
/// a limit of −1 is "none").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSettings {
    pub batch: usize,
    pub timesteps: usize,
    /// `adam` or `sgd`.
    pub optimizer: String,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// Epochs completed.
    pub epoch: usize,
    pub seed: u64,
    pub network: String,
    pub method: String,
    /// The run's settings (absent in checkpoints written before they were recorded).
    pub settings: Option<RunSettings>,
    /// The network settings trained with (absent in older checkpoints).
    pub net: Option<NetRecord>,
    /// Where inside epoch `epoch + 1` the run stopped (only in a checkpoint written on
    /// Ctrl-C); `None`: at the epoch boundary.
    pub position: Option<Position>,
}

/// A mid-epoch position: what a resumed run needs to continue epoch `Meta::epoch + 1`
/// exactly as the uninterrupted run (bit-equal weights and losses).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Position {
    /// Batches of the epoch done (the next batch index, from 0).
    pub batch: usize,
    /// The word position of the epoch's sequential random stream.
    pub rng_word_pos: u128,
    /// Σ loss·images over the batches done.
    pub loss_sum: f64,
    /// Correct predictions over the batches done.
    pub right: usize,
    /// Images of the batches done.
    pub seen: usize,
    /// Stochmax: Σ of each loss term·images, `[ce, kl, aux, neg_entropy]`.
    pub terms_sum: Option<[f64; 4]>,
}

/// The neuron of one spiking application, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronRecord {
    pub layer: String,
    pub step: u32,
    /// `LIF` or `IF`.
    pub kind: String,
    pub leak: f32,
    /// `subtract` or `zero`.
    pub reset: String,
}

/// The settings of a network its weights depend on besides their shapes: classifier, input
/// coding, surrogate steepness γ and every spiking application's neuron (kind, leak α,
/// reset; Eq. 2–3). Thresholds are checkpoint tensors of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct NetRecord {
    /// `softmax` or `stochmax`.
    pub classifier: String,
    /// `poisson` or `direct`.
    pub encode: String,
    pub surrogate_gamma: f32,
    pub neurons: Vec<NeuronRecord>,
}

/// A setting that differs between checkpoint and network file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The setting, e.g. `classifier`, `the leak of Conv1 (step 1)`.
    pub setting: String,
    pub checkpoint: String,
    pub file: String,
}

fn lower_debug(x: impl std::fmt::Debug) -> String {
    format!("{x:?}").to_lowercase()
}

impl NetRecord {
    /// The record of `net` (spiking applications in topological order).
    pub fn of(net: &crate::ir::Network) -> Self {
        let neurons = net
            .topo_order()
            .into_iter()
            .filter_map(|i| {
                let n = &net.graph[i];
                match n.activation {
                    crate::ir::Activation::Spiking(spec) => Some(NeuronRecord {
                        layer: n.name.clone(),
                        step: n.step,
                        kind: format!("{:?}", spec.kind).to_uppercase(),
                        leak: spec.leak,
                        reset: lower_debug(spec.reset),
                    }),
                    _ => None,
                }
            })
            .collect();
        NetRecord {
            classifier: lower_debug(net.settings.classifier),
            encode: lower_debug(net.settings.encode),
            surrogate_gamma: net.settings.surrogate_gamma,
            neurons,
        }
    }

    fn neuron_lines(&self) -> String {
        self.neurons
            .iter()
            .map(|n| format!("{} {} {} {} {}", n.layer, n.step, n.kind, n.leak, n.reset))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn parse_neurons(text: &str) -> Result<Vec<NeuronRecord>> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let bad = || err(format!("`meta.neurons`: cannot read the line `{l}`"));
                if f.len() != 5 {
                    return Err(bad());
                }
                Ok(NeuronRecord {
                    layer: f[0].to_string(),
                    step: f[1].parse().map_err(|_| bad())?,
                    kind: f[2].to_string(),
                    leak: f[3].parse().map_err(|_| bad())?,
                    reset: f[4].to_string(),
                })
            })
            .collect()
    }

    /// The first setting in which the checkpoint's record (`self`) differs from the network
    /// file's (`file`), in this order: classifier, input coding, surrogate γ (only when
    /// `surrogate`: training uses it, evaluation does not), then (only when `neurons`: the
    /// method runs the declared neurons) the spiking applications and each one's kind, leak
    /// and reset.
    pub fn first_mismatch(
        &self,
        file: &NetRecord,
        surrogate: bool,
        neurons: bool,
    ) -> Option<Mismatch> {
        let m = |setting: String, c: String, f: String| {
            (c != f).then_some(Mismatch {
                setting,
                checkpoint: c,
                file: f,
            })
        };
        m(
            "the classifier".into(),
            self.classifier.clone(),
            file.classifier.clone(),
        )
        .or_else(|| {
            m(
                "the input coding".into(),
                self.encode.clone(),
                file.encode.clone(),
            )
        })
        .or_else(|| {
            surrogate
                .then(|| {
                    m(
                        "the surrogate gradient's gamma".into(),
                        self.surrogate_gamma.to_string(),
                        file.surrogate_gamma.to_string(),
                    )
                })
                .flatten()
        })
        .or_else(|| {
            if !neurons {
                return None;
            }
            let names = |r: &NetRecord| {
                r.neurons
                    .iter()
                    .map(|n| format!("{}@{}", n.layer, n.step))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if self.neurons.len() != file.neurons.len()
                || self
                    .neurons
                    .iter()
                    .zip(&file.neurons)
                    .any(|(a, b)| (&a.layer, a.step) != (&b.layer, b.step))
            {
                return m("the spiking layers".into(), names(self), names(file));
            }
            self.neurons.iter().zip(&file.neurons).find_map(|(a, b)| {
                let at = format!("{} (step {})", a.layer, a.step);
                m(
                    format!("the neuron of {at}"),
                    a.kind.clone(),
                    b.kind.clone(),
                )
                .or_else(|| {
                    m(
                        format!("the leak of {at}"),
                        a.leak.to_string(),
                        b.leak.to_string(),
                    )
                })
                .or_else(|| {
                    m(
                        format!("the reset of {at}"),
                        a.reset.clone(),
                        b.reset.clone(),
                    )
                })
            })
        })
    }
}

use crate::backend::candle::err;

/// Writes `tensors` plus `meta` to `path` atomically.
pub fn save(path: &Path, tensors: &HashMap<String, Tensor>, meta: &Meta) -> Result<()> {
    let dev = Device::Cpu;
    let mut all: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&dev)?)))
        .collect::<Result<_>>()?;
    all.insert(
        "meta.epoch".into(),
        Tensor::new(&[meta.epoch as i64], &dev)?,
    );
    all.insert("meta.seed".into(), Tensor::new(&[meta.seed as i64], &dev)?);
    let mut texts = vec![
        ("meta.network", meta.network.clone()),
        ("meta.method", meta.method.clone()),
    ];
    if let Some(r) = &meta.settings {
        let limit = |l: Option<usize>| l.map_or(-1, |v| v as i64);
        for (k, v) in [
            ("meta.batch", r.batch as i64),
            ("meta.timesteps", r.timesteps as i64),
            ("meta.train_limit", limit(r.train_limit)),
            ("meta.test_limit", limit(r.test_limit)),
        ] {
            all.insert(k.into(), Tensor::new(&[v], &dev)?);
        }
        texts.push(("meta.optimizer", r.optimizer.clone()));
    }
    if let Some(n) = &meta.net {
        texts.push(("meta.classifier", n.classifier.clone()));
        texts.push(("meta.encode", n.encode.clone()));
        texts.push(("meta.neurons", n.neuron_lines()));
        all.insert(
            "meta.surrogate_gamma".into(),
            Tensor::new(&[n.surrogate_gamma], &dev)?,
        );
    }
    if let Some(p) = &meta.position {
        all.insert(
            "meta.batch_index".into(),
            Tensor::new(&[p.batch as i64], &dev)?,
        );
        let pos = p.rng_word_pos.to_le_bytes().to_vec();
        all.insert("meta.rng_word_pos".into(), Tensor::from_vec(pos, 16, &dev)?);
        all.insert(
            "meta.partial".into(),
            Tensor::new(&[p.loss_sum, p.right as f64, p.seen as f64], &dev)?,
        );
        if let Some(t) = p.terms_sum {
            all.insert("meta.partial_terms".into(), Tensor::new(&t, &dev)?);
        }
    }
    for (k, s) in texts {
        let bytes = s.as_bytes().to_vec();
        let n = bytes.len();
        all.insert(k.into(), Tensor::from_vec(bytes, n, &dev)?);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let file = path
        .file_name()
        .ok_or_else(|| err(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = file.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    candle_core::safetensors::save(&all, &tmp)?;
    // Weights are an output like the report: rw-r--r-- (issue 13.8), whatever mode the
    // temporary file was created with.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn text(map: &HashMap<String, Tensor>, key: &str) -> Result<String> {
    match map.get(key) {
        Some(t) => String::from_utf8(t.flatten_all()?.to_vec1::<u8>()?)
            .map_err(|_| err(format!("`{key}` is not UTF-8"))),
        None => Ok(String::new()),
    }
}

fn int(map: &HashMap<String, Tensor>, key: &str) -> Result<i64> {
    let t = map
        .get(key)
        .ok_or_else(|| err(format!("the checkpoint has no `{key}`")))?;
    t.flatten_all()?
        .to_vec1::<i64>()?
        .first()
        .copied()
        .ok_or_else(|| err(format!("`{key}` is empty")))
}

fn floats(map: &HashMap<String, Tensor>, key: &str) -> Result<Vec<f64>> {
    map.get(key)
        .ok_or_else(|| err(format!("the checkpoint has no `{key}`")))?
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()
}

/// Reads a checkpoint: every tensor by name, and the metadata. Files with weights only
/// (no `meta.*`) load with epoch 0 and seed 0.
pub fn load(path: &Path) -> Result<(HashMap<String, Tensor>, Meta)> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| err(format!("cannot read checkpoint {}: {e}", path.display())))?;
    let meta = Meta {
        epoch: if map.contains_key("meta.epoch") {
            int(&map, "meta.epoch")?.max(0) as usize
        } else {
            0
        },
        seed: if map.contains_key("meta.seed") {
            int(&map, "meta.seed")? as u64
        } else {
            0
        },
        network: text(&map, "meta.network")?,
        method: text(&map, "meta.method")?,
        settings: if map.contains_key("meta.batch") {
            let limit = |k: &str| -> Result<Option<usize>> {
                let v = int(&map, k)?;
                Ok((v >= 0).then_some(v as usize))
            };
            Some(RunSettings {
                batch: int(&map, "meta.batch")?.max(0) as usize,
                timesteps: int(&map, "meta.timesteps")?.max(0) as usize,
                optimizer: text(&map, "meta.optimizer")?,
                train_limit: limit("meta.train_limit")?,
                test_limit: limit("meta.test_limit")?,
            })
        } else {
            None
        },
        net: if map.contains_key("meta.classifier") {
            Some(NetRecord {
                classifier: text(&map, "meta.classifier")?,
                encode: text(&map, "meta.encode")?,
                surrogate_gamma: floats(&map, "meta.surrogate_gamma")?
                    .first()
                    .copied()
                    .unwrap_or(f64::NAN) as f32,
                neurons: NetRecord::parse_neurons(&text(&map, "meta.neurons")?)?,
            })
        } else {
            None
        },
        position: if map.contains_key("meta.batch_index") {
            let pos: [u8; 16] = map
                .get("meta.rng_word_pos")
                .ok_or_else(|| err("the checkpoint has no `meta.rng_word_pos`".to_string()))?
                .flatten_all()?
                .to_vec1::<u8>()?
                .try_into()
                .map_err(|_| err("`meta.rng_word_pos` is not 16 bytes".to_string()))?;
            let partial = floats(&map, "meta.partial")?;
            if partial.len() != 3 {
                return Err(err("`meta.partial` is not 3 values".to_string()));
            }
            let terms_sum = match map.get("meta.partial_terms") {
                Some(_) => Some(
                    floats(&map, "meta.partial_terms")?
                        .try_into()
                        .map_err(|_| err("`meta.partial_terms` is not 4 values".to_string()))?,
                ),
                None => None,
            };
            Some(Position {
                batch: int(&map, "meta.batch_index")?.max(0) as usize,
                rng_word_pos: u128::from_le_bytes(pos),
                loss_sum: partial[0],
                right: partial[1] as usize,
                seen: partial[2] as usize,
                terms_sum,
            })
        } else {
            None
        },
    };
    Ok((map, meta))
}

/// Whether `key` is a checkpoint entry other than a weight or threshold: metadata, optimiser
/// state, a converted network's reset.
fn is_auxiliary(key: &str) -> bool {
    key == RESET_KEY
        || ["meta.", "adam.", "sgd."]
            .iter()
            .any(|p| key.starts_with(p))
}

/// Checks that a checkpoint's tensors fit a network whose weights are `expected` (name,
/// shape, in the network's order) and whose threshold slots are `slots` (their
/// [`threshold_key`]s).
///
/// Errors: the first mismatch, naming the tensor and both shapes: a weight that is missing
/// or has another shape, a threshold that is not a scalar, then (in name order) a tensor
/// that names no weight or threshold slot of the network.
pub fn check_fits(
    map: &HashMap<String, Tensor>,
    expected: &[(String, Vec<usize>)],
    slots: &[String],
) -> std::result::Result<(), String> {
    for (name, shape) in expected {
        match map.get(name) {
            None => {
                return Err(format!(
                    "the checkpoint has no weights `{name}` (expected shape {shape:?})"
                ))
            }
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(format!(
                    "`{name}`: expected shape {shape:?}, found {:?}",
                    t.dims()
                ))
            }
            Some(_) => {}
        }
    }
    for name in slots {
        if let Some(t) = map.get(name) {
            if t.elem_count() != 1 {
                return Err(format!(
                    "`{name}`: expected shape [1], found {:?}",
                    t.dims()
                ));
            }
        }
    }
    let mut extra: Vec<&String> = map
        .keys()
        .filter(|k| {
            !is_auxiliary(k) && !slots.contains(k) && !expected.iter().any(|(n, _)| n == *k)
        })
        .collect();
    extra.sort();
    match extra.first() {
        Some(k) => Err(format!(
            "the checkpoint holds `{k}` (shape {:?}), which names no weight or threshold of the network",
            map[*k].dims()
        )),
        None => Ok(()),
    }
}

/// Checks that every floating-point weight and threshold of a checkpoint is finite.
///
/// Errors: the first tensor (in name order) holding NaN or ±∞, named.
pub fn check_finite(map: &HashMap<String, Tensor>) -> std::result::Result<(), String> {
    let mut names: Vec<&String> = map
        .iter()
        .filter(|(k, t)| !is_auxiliary(k) && t.dtype().is_float())
        .map(|(k, _)| k)
        .collect();
    names.sort();
    for name in names {
        let v = map[name]
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("cannot read `{name}`: {e}"))?;
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(format!(
                "the checkpoint's `{name}` holds a non-finite value ({x})"
            ));
        }
    }
    Ok(())
}
