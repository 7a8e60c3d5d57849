//! IDX parsing (the MNIST / Fashion-MNIST file format) from bytes already in memory.
//!
//! Invariants: the header is checked against the real byte length before anything is
//! allocated from it; the file must be exactly `header + product(dims)` bytes long (a
//! truncated file and one with trailing bytes are both errors); only unsigned-byte data with
//! the expected number of dimensions is accepted (magic 2051 = images, 2049 = labels).

use std::path::Path;

use super::DataError;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (N, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The images of one IDX images file, still as bytes.
#[derive(Debug)]
pub struct IdxImages<'a> {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count · rows · cols` bytes, row-major.
    pub pixels: &'a [u8],
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number and reads `ndims` dimensions, then checks the total length.
/// Returns the dimensions and the data after the header.
fn parse<'a>(
    bytes: &'a [u8],
    path: &Path,
    magic: u32,
    ndims: usize,
    what: &'static str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected: header as u64,
            found: bytes.len() as u64,
            what: format!("file too short for an IDX header ({what})"),
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
            what,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected: header as u64,
            found: bytes.len() as u64,
            what: format!("file too short for an IDX header ({what})"),
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| be_u32(bytes, 4 + 4 * d) as usize)
        .collect();
    let body = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|b| b.checked_add(header as u64));
    let Some(expected) = body else {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            detail: format!("dimensions {dims:?} overflow"),
        });
    };
    if expected != bytes.len() as u64 {
        let how = if (bytes.len() as u64) < expected {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(DataError::Size {
            path: path.to_path_buf(),
            expected,
            found: bytes.len() as u64,
            what: format!("{how}: header says {what} of dimensions {dims:?}"),
        });
    }
    Ok((dims, &bytes[header..]))
}

/// Parses an IDX images file (magic 2051): `count × rows × cols` unsigned bytes.
pub fn parse_images<'a>(bytes: &'a [u8], path: &Path) -> Result<IdxImages<'a>, DataError> {
    let (dims, pixels) = parse(bytes, path, IMAGES_MAGIC, 3, "IDX images")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DataError::BadDims {
            path: path.to_path_buf(),
            detail: format!("images of {rows}x{cols} pixels"),
        });
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Parses an IDX labels file (magic 2049) and checks every label is below `classes`.
pub fn parse_labels<'a>(
    bytes: &'a [u8],
    path: &Path,
    classes: usize,
) -> Result<&'a [u8], DataError> {
    let (_, labels) = parse(bytes, path, LABELS_MAGIC, 1, "IDX labels")?;
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label,
            classes,
        });
    }
    Ok(labels)
}
