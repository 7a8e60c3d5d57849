//! `DataError`: every way loading a dataset can fail, each naming the file and what is wrong.

use std::path::PathBuf;

/// An error while finding, reading or parsing a dataset. Every variant names the file (or
/// directory, or spec text) concerned; none of them is ever a panic.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DataError {
    /// The dataset spec text could not be understood.
    #[error("bad dataset spec `{spec}`: {reason}")]
    #[diagnostic(
        code(snnc::data::spec),
        help("use one of: fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, embedded")
    )]
    BadSpec { spec: String, reason: String },

    /// A file the dataset needs is not in its directory (neither raw nor `.gz`).
    #[error("{dir}: dataset file `{file}` not found (looked for {tried})")]
    #[diagnostic(code(snnc::data::missing))]
    Missing {
        dir: PathBuf,
        file: String,
        tried: String,
        #[help]
        help: Option<String>,
    },

    /// The operating system refused to read the file.
    #[error("cannot read {path}: {source}")]
    #[diagnostic(code(snnc::data::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `.gz` file is not a valid (complete) gzip stream.
    #[error("{path}: bad gzip data: {message}")]
    #[diagnostic(
        code(snnc::data::gzip),
        help("the file is corrupt or truncated; re-download or decompress it by hand")
    )]
    Gzip { path: PathBuf, message: String },

    /// Decompressing the file produced more data than any dataset of this kind can hold.
    #[error("{path}: decompresses to more than {limit} bytes; refusing to load it")]
    #[diagnostic(code(snnc::data::too_large))]
    TooLarge { path: PathBuf, limit: u64 },

    /// An IDX file starts with the wrong magic number.
    #[error("{path}: bad magic number {found:#010x}, expected {expected:#010x} ({what})")]
    #[diagnostic(code(snnc::data::magic))]
    BadMagic {
        path: PathBuf,
        expected: u32,
        found: u32,
        what: &'static str,
    },

    /// The file's length disagrees with what its header (or record format) implies.
    #[error("{path}: expected {expected} bytes, found {found} ({what})")]
    #[diagnostic(code(snnc::data::size))]
    Size {
        path: PathBuf,
        expected: u64,
        found: u64,
        what: String,
    },

    /// The header's dimensions are impossible (zero-sized images, overflow, ...).
    #[error("{path}: bad dimensions: {detail}")]
    #[diagnostic(code(snnc::data::dims))]
    BadDims { path: PathBuf, detail: String },

    /// The images file and the labels file hold different numbers of items.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    #[diagnostic(code(snnc::data::count_mismatch))]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },

    /// A label is outside `0..classes`.
    #[error("{path}: label {label} of item {index} is not below {classes}")]
    #[diagnostic(code(snnc::data::label))]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },

    /// Two splits or files of one dataset disagree on the image shape.
    #[error("{path}: images are {found:?} but the dataset's other files have {expected:?}")]
    #[diagnostic(code(snnc::data::shape_mismatch))]
    ShapeMismatch {
        path: PathBuf,
        expected: [usize; 3],
        found: [usize; 3],
    },
}
