//! Dataset loaders, the embedded slice, `DataSpec` parsing and the batch iterator.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use proptest::prelude::*;
use snnc::data::{self, batches, idx, DataError, DataSpec, Split};

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051u32, n, rows, cols] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&2049u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Pixels `(i*7 + k) % 256` for item i, pixel k: distinct enough to catch misordering.
fn pixels(n: usize, per: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..per).map(move |k| ((i * 7 + k) % 256) as u8))
        .collect()
}

/// Writes a complete 2x3-pixel IDX dataset (5 train, 3 test) into `dir`.
fn write_idx_set(dir: &Path, gzip: bool) {
    let files = [
        (
            "train-images-idx3-ubyte",
            idx_images(5, 2, 3, &pixels(5, 6)),
        ),
        ("train-labels-idx1-ubyte", idx_labels(&[3, 1, 4, 1, 5])),
        ("t10k-images-idx3-ubyte", idx_images(3, 2, 3, &pixels(3, 6))),
        ("t10k-labels-idx1-ubyte", idx_labels(&[9, 2, 6])),
    ];
    for (name, bytes) in files {
        if gzip {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn code(e: &DataError) -> String {
    e.code().map(|c| c.to_string()).unwrap_or_default()
}

#[test]
fn idx_raw_loads_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    let ds = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap();
    assert_eq!(ds.name, "mnist");
    assert_eq!(ds.shape, [1, 2, 3]);
    assert_eq!(ds.classes, 10);
    assert_eq!(ds.train.len(), 5);
    assert_eq!(ds.test.len(), 3);
    assert_eq!(ds.train.labels, vec![3, 1, 4, 1, 5]);
    assert_eq!(ds.test.labels, vec![9, 2, 6]);
    assert_eq!(ds.train.images.len(), 5 * 6);
    // Item 2, pixel k is (14 + k) / 255.
    let want: Vec<f32> = (0..6).map(|k| (14 + k) as f32 / 255.0).collect();
    assert_eq!(ds.train.image(2), &want[..]);
    assert_eq!(ds.test.image(0)[5], 5.0 / 255.0);
    assert_eq!(ds.train.image_len(), 6);
    let (images, labels) = ds.train.gather(&[4, 0]);
    assert_eq!(labels, vec![5, 3]);
    assert_eq!(&images[..6], ds.train.image(4));
    assert_eq!(&images[6..], ds.train.image(0));
}

#[test]
fn idx_gzip_loads_same_as_raw_and_limits_take_first() {
    let raw = tempfile::tempdir().unwrap();
    let gzd = tempfile::tempdir().unwrap();
    write_idx_set(raw.path(), false);
    write_idx_set(gzd.path(), true);
    let a = data::load(&DataSpec::Mnist(raw.path().into()), None, None).unwrap();
    let b = data::load(&DataSpec::FashionMnist(Some(gzd.path().into())), None, None).unwrap();
    assert_eq!(b.name, "fashion-mnist");
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);

    let c = data::load(&DataSpec::Mnist(gzd.path().into()), Some(2), Some(10)).unwrap();
    assert_eq!(c.train.labels, vec![3, 1]);
    assert_eq!(c.train.images, a.train.images[..12].to_vec());
    assert_eq!(c.test.len(), 3, "a limit above the count keeps everything");
    let d = data::load(&DataSpec::Mnist(gzd.path().into()), Some(0), Some(1)).unwrap();
    assert!(d.train.is_empty() && d.train.images.is_empty());
    assert_eq!(d.test.labels, vec![9]);
}

#[test]
fn idx_dotted_file_names_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    std::fs::rename(
        dir.path().join("train-images-idx3-ubyte"),
        dir.path().join("train-images.idx3-ubyte"),
    )
    .unwrap();
    let ds = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap();
    assert_eq!(ds.train.len(), 5);
}

#[test]
fn idx_truncated_file_names_file_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    let p = dir.path().join("train-images-idx3-ubyte");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..full.len() - 4]).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    match &e {
        DataError::Size {
            path,
            expected,
            found,
            ..
        } => {
            assert_eq!(path, &p);
            assert_eq!(*expected, 16 + 30);
            assert_eq!(*found, 16 + 26);
        }
        other => panic!("wrong error {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("truncated"));
    assert_eq!(code(&e), "snnc::data::size");

    // Trailing bytes are an error too.
    let mut longer = full.clone();
    longer.push(0);
    std::fs::write(&p, &longer).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(matches!(
        e,
        DataError::Size {
            expected: 46,
            found: 47,
            ..
        }
    ));

    // A header shorter than its magic number.
    std::fs::write(&p, [0u8, 0]).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(matches!(e, DataError::Size { found: 2, .. }), "{e:?}");
}

#[test]
fn idx_huge_header_is_rejected_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    let p = dir.path().join("train-images-idx3-ubyte");
    std::fs::write(&p, idx_images(u32::MAX, 28, 28, &[0; 100])).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(e, DataError::Size { expected, found: 116, .. } if expected == 16 + u64::from(u32::MAX) * 784),
        "{e:?}"
    );
    // Dimensions whose product overflows u64.
    std::fs::write(&p, idx_images(u32::MAX, u32::MAX, u32::MAX, &[])).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(matches!(e, DataError::BadDims { .. }), "{e:?}");
    assert_eq!(code(&e), "snnc::data::dims");
    // Zero-width images.
    std::fs::write(&p, idx_images(5, 0, 3, &[])).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(matches!(e, DataError::BadDims { .. }), "{e:?}");
}

#[test]
fn idx_bad_gzip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), true);
    let p = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(&e, DataError::Gzip { path, .. } if path == &p),
        "{e:?}"
    );
    assert_eq!(code(&e), "snnc::data::gzip");
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"));

    // A `.gz` name on data that is not gzip at all.
    std::fs::write(&p, idx_labels(&[1, 2, 3])).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(matches!(&e, DataError::Gzip { message, .. } if message.contains("1f 8b")));
}

#[test]
fn idx_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    // A labels file where the images file should be.
    let p = dir.path().join("train-images-idx3-ubyte");
    std::fs::write(&p, idx_labels(&[1, 2])).unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(&e, DataError::BadMagic { path, expected: 2051, found: 2049, .. } if path == &p),
        "{e:?}"
    );
    assert!(e.to_string().contains("0x00000801"));
    assert_eq!(code(&e), "snnc::data::magic");
}

#[test]
fn idx_count_mismatch_and_bad_label() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_set(dir.path(), false);
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_labels(&[1, 2, 3, 4]),
    )
    .unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                n_images: 3,
                n_labels: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(code(&e), "snnc::data::count_mismatch");

    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_labels(&[1, 10, 3]),
    )
    .unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadLabel {
                index: 1,
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn idx_missing_files_and_shape_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(&e, DataError::Missing { file, .. } if file == "train-images-idx3-ubyte"),
        "{e:?}"
    );
    assert_eq!(code(&e), "snnc::data::missing");
    let e = data::load(&DataSpec::Mnist(dir.path().join("nowhere")), None, None).unwrap_err();
    assert!(matches!(e, DataError::Missing { help: Some(_), .. }));

    write_idx_set(dir.path(), false);
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        idx_images(3, 3, 2, &pixels(3, 6)),
    )
    .unwrap();
    let e = data::load(&DataSpec::Mnist(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::ShapeMismatch {
                expected: [1, 2, 3],
                found: [1, 3, 2],
                ..
            }
        ),
        "{e:?}"
    );
}

fn cifar_batch(labels: &[u8], first: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..3072).map(|k| ((first + i + k) % 251) as u8));
    }
    v
}

fn write_cifar(dir: &Path) {
    for b in 1..=5 {
        let labels = [b as u8, (b + 1) as u8 % 10];
        std::fs::write(
            dir.join(format!("data_batch_{b}.bin")),
            cifar_batch(&labels, 2 * (b - 1)),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_batch(&[7, 8, 9], 100)).unwrap();
}

#[test]
fn cifar_loads_in_order_with_limits() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path());
    let ds = data::load(&DataSpec::Cifar10(dir.path().into()), None, None).unwrap();
    assert_eq!(ds.name, "cifar10");
    assert_eq!(ds.shape, [3, 32, 32]);
    assert_eq!(ds.classes, 10);
    assert_eq!(ds.train.labels, vec![1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    assert_eq!(ds.test.labels, vec![7, 8, 9]);
    assert_eq!(ds.train.images.len(), 10 * 3072);
    // Train item 3 (batch 2, record 1): pixel k = (3 + k) % 251; k = 1024 is green's first.
    assert_eq!(ds.train.image(3)[0], 3.0 / 255.0);
    assert_eq!(ds.train.image(3)[1024], ((3 + 1024) % 251) as f32 / 255.0);
    assert_eq!(ds.test.image(2)[0], 102.0 / 255.0);

    let lim = data::load(&DataSpec::Cifar10(dir.path().into()), Some(3), Some(1)).unwrap();
    assert_eq!(lim.train.labels, vec![1, 2, 2]);
    assert_eq!(lim.train.images, ds.train.images[..3 * 3072].to_vec());
    assert_eq!(lim.test.labels, vec![7]);
}

/// A full-size CIFAR-10 batch: 10,000 records of 3,073 bytes; record i has label
/// `(7·i) % 10` and pixel k `(31·i + k) % 256`.
fn full_cifar_batch() -> Vec<u8> {
    let mut v = Vec::with_capacity(10_000 * 3073);
    for i in 0..10_000usize {
        v.push(((7 * i) % 10) as u8);
        v.extend((0..3072).map(|k| ((31 * i + k) % 256) as u8));
    }
    assert_eq!(v.len(), 30_730_000);
    v
}

/// Issue 12.4: `.bin.gz` batches are decompressed (before, a gzipped batch failed as a
/// wrong-size file). A full-size test batch loads the same plain and gzipped.
#[test]
fn cifar_full_size_batch_loads_plain_and_gzipped() {
    let batch = full_cifar_batch();
    let plain = tempfile::tempdir().unwrap();
    write_cifar(plain.path());
    std::fs::write(plain.path().join("test_batch.bin"), &batch).unwrap();
    let a = data::load(&DataSpec::Cifar10(plain.path().into()), Some(3), None).unwrap();
    assert_eq!(a.test.len(), 10_000);
    assert_eq!(a.test.images.len(), 10_000 * 3072);
    let labels: Vec<u8> = (0..10_000).map(|i| ((7 * i) % 10) as u8).collect();
    assert_eq!(a.test.labels, labels);
    // Record 9,999, pixel 3,071 (the last blue byte): (31·9999 + 3071) % 256 = 208.
    assert_eq!(a.test.image(9_999)[3071], 208.0 / 255.0);
    // Record 1,234, pixel 2,048 (the first blue byte): (31·1234 + 2048) % 256 = 110.
    assert_eq!(a.test.image(1_234)[2048], 110.0 / 255.0);
    assert_eq!(a.train.labels, vec![1, 2, 2]);

    let gzd = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(plain.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(gzd.path().join(format!("{name}.gz")), gz(&bytes)).unwrap();
    }
    let b = data::load(&DataSpec::Cifar10(gzd.path().into()), Some(3), None).unwrap();
    assert_eq!(a, b, "gzipped batches load exactly like plain ones");

    // A damaged `.bin.gz` is a gzip error naming the file, not a size error.
    let p = gzd.path().join("test_batch.bin.gz");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..full.len() / 3]).unwrap();
    let e = data::load(&DataSpec::Cifar10(gzd.path().into()), Some(3), None).unwrap_err();
    assert!(
        matches!(&e, DataError::Gzip { path, .. } if path == &p),
        "{e:?}"
    );
    assert_eq!(code(&e), "snnc::data::gzip");
}

#[test]
fn cifar_wrong_size_bad_label_missing() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path());
    let p = dir.path().join("data_batch_2.bin");
    let mut bytes = cifar_batch(&[1, 2], 0);
    bytes.pop();
    std::fs::write(&p, &bytes).unwrap();
    let e = data::load(&DataSpec::Cifar10(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(&e, DataError::Size { path, found: 6145, expected: 3073, .. } if path == &p),
        "{e:?}"
    );
    assert!(e.to_string().contains("data_batch_2.bin"));

    std::fs::write(&p, cifar_batch(&[1, 10], 0)).unwrap();
    let e = data::load(&DataSpec::Cifar10(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{e:?}"
    );

    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    std::fs::write(&p, cifar_batch(&[1, 2], 0)).unwrap();
    let e = data::load(&DataSpec::Cifar10(dir.path().into()), None, None).unwrap_err();
    assert!(
        matches!(&e, DataError::Missing { file, tried, .. }
            if file == "test_batch.bin" && tried == "test_batch.bin, test_batch.bin.gz"),
        "{e:?}"
    );
}

#[test]
fn embedded_slice_loads() {
    let ds = data::load(&DataSpec::Embedded, None, None).unwrap();
    assert_eq!(ds.shape, [1, 28, 28]);
    assert_eq!(ds.classes, 10);
    assert_eq!(ds.train.len(), 2000);
    assert_eq!(ds.test.len(), 500);
    assert_eq!(ds.train.images.len(), 2000 * 784);
    assert_eq!(ds.test.images.len(), 500 * 784);
    for split in [&ds.train, &ds.test] {
        let classes: HashSet<u8> = split.labels.iter().copied().collect();
        assert_eq!(classes.len(), 10, "every class present");
        assert!(split.labels.iter().all(|&l| l < 10));
        assert!(split.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
    // A real image: both dark background and bright pixels.
    let img = ds.train.image(0);
    assert!(img.contains(&0.0) && img.iter().any(|&v| v > 0.5));

    let lim = data::load(&DataSpec::Embedded, Some(10), Some(5)).unwrap();
    assert_eq!(lim.train.labels, ds.train.labels[..10].to_vec());
    assert_eq!(lim.test.images, ds.test.images[..5 * 784].to_vec());
}

/// FNV-1a, 64 bits: the checksum the embedded slice's pixels and labels are pinned by.
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The loaded `[0,1]` values back to the file's bytes (every value is an exact `b / 255`).
fn split_bytes(split: &Split) -> Vec<u8> {
    split
        .images
        .iter()
        .map(|&v| {
            let b = (v * 255.0).round();
            assert_eq!(b / 255.0, v, "not a byte / 255");
            b as u8
        })
        .collect()
}

/// Unconditional (no Debian package needed): the embedded slice is the head of the real
/// Fashion-MNIST. First labels as published; checksums computed once from the embedded files
/// and cross-checked against the first 2,000 / 500 items of Debian's
/// `dataset-fashion-mnist` (0.0~git20200523): FNV-1a 64 of the pixel bytes (row-major, after
/// the 16-byte IDX header) and of the label bytes.
#[test]
fn embedded_slice_is_the_head_of_fashion_mnist() {
    let ds = data::load(&DataSpec::Embedded, None, None).unwrap();
    assert_eq!(ds.train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(ds.test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    let train_px = split_bytes(&ds.train);
    let test_px = split_bytes(&ds.test);
    assert_eq!(train_px.len(), 2000 * 784);
    assert_eq!(test_px.len(), 500 * 784);
    assert_eq!(fnv1a64(train_px.iter().copied()), 0x9de3_7e86_ae52_df54);
    assert_eq!(fnv1a64(test_px.iter().copied()), 0x7ae6_b058_49c3_f1da);
    assert_eq!(
        fnv1a64(ds.train.labels.iter().copied()),
        0xf384_259a_4367_8ef9
    );
    assert_eq!(
        fnv1a64(ds.test.labels.iter().copied()),
        0x037e_98b4_3b49_5e2b
    );
    // Cheaper sums that tell an off-by-one from a reordering when the hash fails.
    assert_eq!(
        train_px.iter().map(|&b| u64::from(b)).sum::<u64>(),
        113_529_887
    );
    assert_eq!(
        test_px.iter().map(|&b| u64::from(b)).sum::<u64>(),
        29_494_551
    );
}

#[test]
fn fnv1a64_matches_its_published_test_vectors() {
    // The FNV reference values for "" and "a" (64-bit FNV-1a).
    assert_eq!(fnv1a64([]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn embedded_slice_equals_debian_fashion_mnist_when_installed() {
    // The byte-for-byte cross-check, only where Debian's dataset-fashion-mnist is installed;
    // `embedded_slice_is_the_head_of_fashion_mnist` pins the same content without it.
    let dir = PathBuf::from(data::DEBIAN_FASHION_MNIST);
    if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        eprintln!("skipped: {} not installed", dir.display());
        return;
    }
    assert_eq!(data::default_spec(), DataSpec::FashionMnist(None));
    let full = data::load(&DataSpec::FashionMnist(None), Some(2000), Some(500)).unwrap();
    let emb = data::load(&DataSpec::Embedded, None, None).unwrap();
    assert_eq!(full.shape, emb.shape);
    assert_eq!(full.train, emb.train);
    assert_eq!(full.test, emb.test);
}

#[test]
fn spec_parsing_and_display() {
    let cases = [
        ("fashion-mnist", DataSpec::FashionMnist(None)),
        (
            "fashion-mnist:/data/fm",
            DataSpec::FashionMnist(Some("/data/fm".into())),
        ),
        ("mnist:rel/dir", DataSpec::Mnist("rel/dir".into())),
        ("cifar10:/c", DataSpec::Cifar10("/c".into())),
        ("embedded", DataSpec::Embedded),
    ];
    for (text, want) in cases {
        let got: DataSpec = text.parse().unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string(), text);
    }
    assert_eq!(
        "CIFAR-10:/c".parse::<DataSpec>().unwrap(),
        DataSpec::Cifar10("/c".into())
    );
    // A Windows-like path keeps everything after the first colon.
    assert_eq!(
        "mnist:C:\\m".parse::<DataSpec>().unwrap(),
        DataSpec::Mnist("C:\\m".into())
    );
    for bad in [
        "",
        "mnist",
        "cifar10",
        "imagenet",
        "mnist:",
        "embedded:/x",
        ":x",
    ] {
        let e = bad.parse::<DataSpec>().unwrap_err();
        assert!(matches!(e, DataError::BadSpec { .. }), "{bad}");
        assert_eq!(code(&e), "snnc::data::spec");
    }
}

#[test]
fn default_spec_is_loadable() {
    let spec = data::default_spec();
    assert!(matches!(
        spec,
        DataSpec::FashionMnist(None) | DataSpec::Embedded
    ));
    let ds = data::load(&spec, Some(3), Some(3)).unwrap();
    assert_eq!(ds.train.len(), 3);
    assert_eq!(ds.shape, [1, 28, 28]);
}

fn split_of(n: usize) -> Split {
    Split {
        images: vec![0.0; n * 2],
        labels: vec![0; n],
    }
}

#[test]
fn batches_cover_every_index_once_and_are_deterministic() {
    let s = split_of(103);
    for seed in [None, Some(0), Some(42)] {
        let bs: Vec<Vec<usize>> = batches(&s, 10, seed, 3).collect();
        assert_eq!(bs.len(), 11);
        assert!(bs[..10].iter().all(|b| b.len() == 10));
        assert_eq!(bs[10].len(), 3);
        let mut all: Vec<usize> = bs.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        let again: Vec<Vec<usize>> = batches(&s, 10, seed, 3).collect();
        assert_eq!(bs, again);
    }
    let plain: Vec<usize> = batches(&s, 10, None, 7).flatten().collect();
    assert_eq!(plain, (0..103).collect::<Vec<_>>());
    let e0: Vec<usize> = batches(&s, 10, Some(42), 0).flatten().collect();
    let e1: Vec<usize> = batches(&s, 10, Some(42), 1).flatten().collect();
    let other: Vec<usize> = batches(&s, 10, Some(43), 0).flatten().collect();
    assert_ne!(e0, e1, "epochs reshuffle");
    assert_ne!(e0, other, "seeds differ");
    assert_ne!(e0, plain, "shuffled");
}

#[test]
fn batches_edge_cases() {
    assert_eq!(batches(&split_of(0), 4, Some(1), 0).count(), 0);
    assert_eq!(batches(&split_of(5), 0, Some(1), 0).count(), 0);
    let one: Vec<Vec<usize>> = batches(&split_of(3), 100, None, 0).collect();
    assert_eq!(one, vec![vec![0, 1, 2]]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary bytes never panic the IDX parsers: they parse or give an error.
    #[test]
    fn idx_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let p = Path::new("fuzz");
        let _ = idx::parse_images(&bytes, p);
        let _ = idx::parse_labels(&bytes, p, 10);
    }

    /// Every strict prefix of a valid images file is an error, never a panic.
    #[test]
    fn idx_prefixes_are_errors(cut in 0usize..46) {
        let full = idx_images(5, 2, 3, &pixels(5, 6));
        prop_assert!(idx::parse_images(&full[..cut], Path::new("cut")).is_err());
        prop_assert!(idx::parse_images(&full, Path::new("full")).is_ok());
    }
}
