//! CIFAR-10 binary batches (`data_batch_1..5.bin`, `test_batch.bin`) parsed from bytes.
//!
//! Invariants: a file is a whole number of 3073-byte records (1 label byte, then 1024 red,
//! 1024 green, 1024 blue bytes: already C,H,W order); every label is below 10.

use std::path::Path;

use super::DataError;

/// Bytes of one image (3 × 32 × 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of CIFAR-10 classes.
pub const CLASSES: usize = 10;

/// Appends up to `room` records of `bytes` to `images` (scaled to `[0,1]`) and `labels`.
/// Checks the whole file (size, every label) even when only some records are taken.
pub fn append_records(
    bytes: &[u8],
    path: &Path,
    room: usize,
    images: &mut Vec<f32>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
        let records = bytes.len() / RECORD_BYTES;
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected: ((records.max(1)) * RECORD_BYTES) as u64,
            found: bytes.len() as u64,
            what: format!(
                "a CIFAR-10 batch must be a non-empty multiple of {RECORD_BYTES}-byte records"
            ),
        });
    }
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if record[0] as usize >= CLASSES {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                label: record[0],
                classes: CLASSES,
            });
        }
    }
    for record in bytes.chunks_exact(RECORD_BYTES).take(room) {
        labels.push(record[0]);
        images.extend(record[1..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok(())
}
