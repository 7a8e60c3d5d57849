//! Datasets: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary, and the embedded Fashion-MNIST
//! slice; plus the deterministic batch-index iterator used by training.
//!
//! Owns: finding dataset files (raw or `.gz`: IDX files and CIFAR-10 batches alike), reading
//! them with size and magic checks, and turning them into [`Dataset`]s. Nothing is downloaded.
//!
//! Invariants of a loaded [`Dataset`]: every [`Split`] holds `labels.len()` images of
//! `C·H·W` values each (`images.len() == labels.len() · C·H·W`), row-major NCHW, values in
//! `[0,1]` (bytes / 255); every label is `< classes`. Limits take the first N items. No
//! user-supplied file makes the loaders panic or allocate more than the file's real size
//! (gzip output is capped at [`MAX_DECOMPRESSED`]).
//!
//! The embedded slice (`src/data/embedded/fashion-*.gz`: the first 2,000 training and the first
//! 500 test images of Fashion-MNIST, gzip IDX files, loaded through the same parser) is
//! regenerated from Debian's `dataset-fashion-mnist` files by
//! `python3 src/data/embedded/regenerate.py [/usr/share/datasets/fashion-mnist]`.

pub mod cifar;
mod error;
pub mod idx;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use error::DataError;

/// Where Debian's `dataset-fashion-mnist` package puts the gzip IDX files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Largest decompressed size accepted from one `.gz` file (the full MNIST training images
/// are 47 MB; this guards against gzip bombs).
pub const MAX_DECOMPRESSED: u64 = 512 * 1024 * 1024;

/// A dataset: image shape, number of classes and its two splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    pub classes: usize,
    pub train: Split,
    pub test: Split,
}

/// One split: `labels.len()` images, each `C·H·W` values in `[0,1]`, row-major NCHW.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `C·H·W` values of image `i` (panics if `i >= len()`, like slice indexing).
    pub fn image(&self, i: usize) -> &[f32] {
        let stride = self.image_len();
        &self.images[i * stride..(i + 1) * stride]
    }

    /// The images (concatenated, NCHW) and labels of `indices`, in that order: one batch
    /// from [`batches`]. Panics on an index `>= len()`, like slice indexing.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<u8>) {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        (images, labels)
    }

    /// Values per image (`C·H·W`), or 0 for an empty split.
    pub fn image_len(&self) -> usize {
        self.images.len() / self.labels.len().max(1)
    }
}

/// Which dataset to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// Fashion-MNIST IDX files in a directory (`None`: Debian's [`DEBIAN_FASHION_MNIST`]).
    FashionMnist(Option<PathBuf>),
    /// MNIST IDX files in a directory.
    Mnist(PathBuf),
    /// CIFAR-10 binary batches in a directory.
    Cifar10(PathBuf),
    /// The Fashion-MNIST slice compiled into the binary.
    Embedded,
}

impl FromStr for DataSpec {
    type Err = DataError;

    /// `fashion-mnist`, `fashion-mnist:DIR`, `mnist:DIR`, `cifar10:DIR`, `embedded`
    /// (names are case-insensitive; `fmnist` and `cifar-10` are accepted aliases).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| DataError::BadSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (name, dir) = match s.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        let dir = match dir {
            Some("") => return Err(bad("empty directory after `:`")),
            Some(d) => Some(PathBuf::from(d)),
            None => None,
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(DataSpec::FashionMnist(dir)),
            "mnist" => dir
                .map(DataSpec::Mnist)
                .ok_or_else(|| bad("mnist needs a directory: mnist:DIR")),
            "cifar10" | "cifar-10" => dir
                .map(DataSpec::Cifar10)
                .ok_or_else(|| bad("cifar10 needs a directory: cifar10:DIR")),
            "embedded" if dir.is_none() => Ok(DataSpec::Embedded),
            "embedded" => Err(bad("embedded takes no directory")),
            "" => Err(bad("empty dataset name")),
            _ => Err(bad("unknown dataset name")),
        }
    }
}

impl fmt::Display for DataSpec {
    /// The same text [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::FashionMnist(None) => write!(f, "fashion-mnist"),
            DataSpec::FashionMnist(Some(d)) => write!(f, "fashion-mnist:{}", d.display()),
            DataSpec::Mnist(d) => write!(f, "mnist:{}", d.display()),
            DataSpec::Cifar10(d) => write!(f, "cifar10:{}", d.display()),
            DataSpec::Embedded => write!(f, "embedded"),
        }
    }
}

/// Debian's Fashion-MNIST if its training images are installed, else the embedded slice.
pub fn default_spec() -> DataSpec {
    let dir = Path::new(DEBIAN_FASHION_MNIST);
    if find_file(dir, "train-images-idx3-ubyte").is_ok() {
        DataSpec::FashionMnist(None)
    } else {
        DataSpec::Embedded
    }
}

/// Loads a dataset; `train_limit`/`test_limit` keep only the first N items of each split.
pub fn load(
    spec: &DataSpec,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, DataError> {
    match spec {
        DataSpec::FashionMnist(dir) => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEBIAN_FASHION_MNIST));
            load_idx_dir("fashion-mnist", &dir, train_limit, test_limit)
        }
        DataSpec::Mnist(dir) => load_idx_dir("mnist", dir, train_limit, test_limit),
        DataSpec::Cifar10(dir) => load_cifar_dir(dir, train_limit, test_limit),
        DataSpec::Embedded => load_embedded(train_limit, test_limit),
    }
}

/// Batches of indices into `split`: consecutive chunks of `batch` indices (the last one may be shorter) covering every index exactly once.
/// With `shuffle_seed`, the order is a permutation fixed by `(seed, epoch)`; without it, the
/// order is `0..len`. `batch == 0` yields no batch.
pub fn batches(
    split: &Split,
    batch: usize,
    shuffle_seed: Option<u64>,
    epoch: usize,
) -> impl Iterator<Item = Vec<usize>> {
    let mut order: Vec<usize> = (0..split.len()).collect();
    if let Some(seed) = shuffle_seed {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch as u64);
        order.shuffle(&mut rng);
    }
    if batch == 0 {
        order.clear();
    }
    let step = batch.max(1);
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= order.len() {
            return None;
        }
        let end = (start + step).min(order.len());
        let chunk = order[start..end].to_vec();
        start = end;
        Some(chunk)
    })
}

/// Finds `base` or `base.gz` in `dir` (also the `train-images.idx3-ubyte` spelling).
fn find_file(dir: &Path, base: &str) -> Result<PathBuf, DataError> {
    let dotted = base.replacen("-idx", ".idx", 1);
    let mut candidates = vec![base.to_string(), format!("{base}.gz")];
    if dotted != base {
        candidates.extend([dotted.clone(), format!("{dotted}.gz")]);
    }
    for name in &candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let help = if !dir.is_dir() {
        Some(format!(
            "{} is not a directory{}",
            dir.display(),
            if dir == Path::new(DEBIAN_FASHION_MNIST) {
                " (install Debian's dataset-fashion-mnist, or use the `embedded` dataset)"
            } else {
                ""
            }
        ))
    } else {
        None
    };
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        file: base.to_string(),
        tried: candidates.join(", "),
        help,
    })
}

/// Reads a file whole; decompresses it if it is gzip (by its magic bytes or `.gz` name).
/// Used for IDX files and CIFAR-10 batches alike: a raw CIFAR record starts with its label
/// (< 10), a raw IDX file with 0x00, so neither is mistaken for gzip (magic 1f 8b).
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let named_gz = path.extension().is_some_and(|e| e == "gz");
    decompress_if_gz(bytes, path, named_gz)
}

/// `bytes` decompressed if they start with the gzip magic (1f 8b), else returned unchanged.
/// `path` only names the data in errors; `named_gz` (the file is called `*.gz`) makes data
/// without the magic an error.
///
/// Errors: [`DataError::Gzip`] for a corrupt or truncated stream (or a `.gz` name on data that
/// is not gzip), [`DataError::TooLarge`] past [`MAX_DECOMPRESSED`] bytes of output; memory
/// use is bounded by that cap whatever the input.
pub fn decompress_if_gz(bytes: Vec<u8>, path: &Path, named_gz: bool) -> Result<Vec<u8>, DataError> {
    decompress_capped(bytes, path, named_gz, MAX_DECOMPRESSED)
}

/// [`decompress_if_gz`] with the output cap as a parameter (tests use a small one).
fn decompress_capped(
    bytes: Vec<u8>,
    path: &Path,
    named_gz: bool,
    cap: u64,
) -> Result<Vec<u8>, DataError> {
    let is_gz = bytes.starts_with(&[0x1f, 0x8b]);
    if !is_gz {
        if named_gz {
            return Err(DataError::Gzip {
                path: path.to_path_buf(),
                message: "missing the gzip header (1f 8b)".to_string(),
            });
        }
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if out.len() as u64 > cap {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit: cap,
        });
    }
    Ok(out)
}

/// Builds a split from an images file and a labels file (already decompressed).
fn idx_split(
    images: (&[u8], &Path),
    labels: (&[u8], &Path),
    classes: usize,
    limit: Option<usize>,
) -> Result<([usize; 3], Split), DataError> {
    let im = idx::parse_images(images.0, images.1)?;
    let lb = idx::parse_labels(labels.0, labels.1, classes)?;
    if im.count != lb.len() {
        return Err(DataError::CountMismatch {
            images: images.1.to_path_buf(),
            labels: labels.1.to_path_buf(),
            n_images: im.count,
            n_labels: lb.len(),
        });
    }
    let n = limit.map_or(im.count, |l| l.min(im.count));
    let pixels = &im.pixels[..n * im.rows * im.cols];
    let split = Split {
        images: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels: lb[..n].to_vec(),
    };
    Ok(([1, im.rows, im.cols], split))
}

fn check_same_shape(path: &Path, train: [usize; 3], test: [usize; 3]) -> Result<(), DataError> {
    if train != test {
        return Err(DataError::ShapeMismatch {
            path: path.to_path_buf(),
            expected: train,
            found: test,
        });
    }
    Ok(())
}

fn load_idx_dir(
    name: &str,
    dir: &Path,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, DataError> {
    let load_split = |prefix: &str, limit| -> Result<(PathBuf, [usize; 3], Split), DataError> {
        let ip = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let lp = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        let ib = read_maybe_gz(&ip)?;
        let lb = read_maybe_gz(&lp)?;
        let (shape, split) = idx_split((&ib, &ip), (&lb, &lp), 10, limit)?;
        Ok((ip, shape, split))
    };
    let (_, shape, train) = load_split("train", train_limit)?;
    let (test_path, test_shape, test) = load_split("t10k", test_limit)?;
    check_same_shape(&test_path, shape, test_shape)?;
    Ok(Dataset {
        name: name.to_string(),
        shape,
        classes: 10,
        train,
        test,
    })
}

fn load_cifar_dir(
    dir: &Path,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, DataError> {
    let mut train = Split::default();
    let train_cap = train_limit.unwrap_or(usize::MAX);
    for i in 1..=5 {
        if train.len() >= train_cap {
            break;
        }
        let path = find_file(dir, &format!("data_batch_{i}.bin"))?;
        let bytes = read_maybe_gz(&path)?;
        let room = train_cap - train.len();
        cifar::append_records(&bytes, &path, room, &mut train.images, &mut train.labels)?;
    }
    let mut test = Split::default();
    let test_cap = test_limit.unwrap_or(usize::MAX);
    if test_cap > 0 {
        let path = find_file(dir, "test_batch.bin")?;
        let bytes = read_maybe_gz(&path)?;
        cifar::append_records(&bytes, &path, test_cap, &mut test.images, &mut test.labels)?;
    }
    Ok(Dataset {
        name: "cifar10".to_string(),
        shape: [3, 32, 32],
        classes: cifar::CLASSES,
        train,
        test,
    })
}

const EMBEDDED_TRAIN_IMAGES: &[u8] = include_bytes!("embedded/fashion-train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] = include_bytes!("embedded/fashion-train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] = include_bytes!("embedded/fashion-t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] = include_bytes!("embedded/fashion-t10k-labels-idx1-ubyte.gz");

fn load_embedded(
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<Dataset, DataError> {
    let split = |images: &[u8], labels: &[u8], prefix: &str, limit| {
        let ip = PathBuf::from(format!("<embedded>/{prefix}-images-idx3-ubyte.gz"));
        let lp = PathBuf::from(format!("<embedded>/{prefix}-labels-idx1-ubyte.gz"));
        let ib = decompress_if_gz(images.to_vec(), &ip, true)?;
        let lb = decompress_if_gz(labels.to_vec(), &lp, true)?;
        idx_split((&ib, &ip), (&lb, &lp), 10, limit)
    };
    let (shape, train) = split(
        EMBEDDED_TRAIN_IMAGES,
        EMBEDDED_TRAIN_LABELS,
        "train",
        train_limit,
    )?;
    let (test_shape, test) = split(
        EMBEDDED_TEST_IMAGES,
        EMBEDDED_TEST_LABELS,
        "t10k",
        test_limit,
    )?;
    check_same_shape(Path::new("<embedded>"), shape, test_shape)?;
    Ok(Dataset {
        name: "fashion-mnist-embedded".to_string(),
        shape,
        classes: 10,
        train,
        test,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A gzip bomb stops at the cap: 1 MiB of zeros (about 1 KiB compressed) against a
    /// 4,096-byte cap reads at most cap + 1 bytes and is refused as too large; exactly the
    /// cap is accepted.
    #[test]
    fn gzip_output_is_capped() {
        let bomb = gz(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 4096, "{}", bomb.len());
        let e = decompress_capped(bomb, Path::new("bomb.gz"), true, 4096).unwrap_err();
        assert!(
            matches!(&e, DataError::TooLarge { limit: 4096, path } if path == Path::new("bomb.gz")),
            "{e:?}"
        );
        let exact = decompress_capped(gz(&[7u8; 4096]), Path::new("x.gz"), true, 4096).unwrap();
        assert_eq!(exact, vec![7u8; 4096]);
        assert_eq!(MAX_DECOMPRESSED, 512 * 1024 * 1024);
    }
}
