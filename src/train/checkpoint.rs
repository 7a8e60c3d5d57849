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
//!   `meta.train_limit`, `meta.test_limit`).
//!
//! Randomness is derived from (seed, epoch), so seed and epoch are all `--resume` needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Result, Tensor};

/// The key of a converted network's reset mode (u8: 0 subtract, 1 zero).
pub const RESET_KEY: &str = "conversion.reset";

/// The key of a threshold slot: `threshold.<layer>.<step>` (the model names its parameters;
/// re-exported here so that this module lists every key of a checkpoint).
pub use crate::backend::candle::model::threshold_key;

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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Epochs completed.
    pub epoch: usize,
    pub seed: u64,
    pub network: String,
    pub method: String,
    /// The run's settings (absent in checkpoints written before they were recorded).
    pub settings: Option<RunSettings>,
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
