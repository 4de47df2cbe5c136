//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a 4-byte magic `0x00 0x00 type rank`
//! (type `0x08`: unsigned bytes), `rank` big-endian u32 dimensions, then the row-major data. Images
//! files have magic `0x00000803` (`[N, H, W]`), labels files `0x00000801` (`[N]`).
//!
//! Only raw IDX files are read: gzip-compressed files (`*.gz`, as MNIST is distributed) must be
//! decompressed first (`gunzip`), so that this crate needs no decompression dependency. The
//! declared dimensions must account for the file's length exactly: a truncated file, or one with
//! trailing bytes, is an error, and nothing is read past the end.

use crate::host::{bad_file, read_file, unit_scale};
use dynlab_runtime::{Device, Error, Result, Tensor};
use dynlab_train::Dataset;
use std::path::Path;

/// Magic number of an IDX file of u8 images `[N, H, W]`.
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 labels `[N]`.
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// A parsed IDX file: its dimensions and its data bytes.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads and validates the IDX file at `path` with magic `magic` (loader `op`).
fn read_idx(op: &'static str, path: &Path, magic: u32) -> Result<Idx> {
    let mut bytes = read_file(op, path)?;
    let rank = (magic & 0xff) as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad_file(
            op,
            path,
            format!("a file of {} bytes", bytes.len()),
            format!("at least the {header}-byte header of magic {magic:#010x}"),
        ));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let found = word(0);
    if found != magic {
        return Err(bad_file(
            op,
            path,
            format!("magic number {found:#010x}"),
            format!("{magic:#010x} (IDX, unsigned bytes, rank {rank}; decompress .gz files first)"),
        ));
    }
    let dims: Vec<usize> = (0..rank).map(|d| word(4 + 4 * d) as usize).collect();
    let size = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data_len = bytes.len() - header;
    match size {
        Some(size) if size == data_len => {
            bytes.drain(..header);
            Ok(Idx { data: bytes, dims })
        }
        _ => {
            let product: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            let size = size.map_or("more than usize::MAX".into(), |s| s.to_string());
            Err(bad_file(
                op,
                path,
                format!("{data_len} data bytes after the header"),
                format!(
                    "{} = {size} bytes for the declared dimensions (a truncated or padded file)",
                    product.join(" × ")
                ),
            ))
        }
    }
}

/// The images of an IDX images file (magic `0x00000803`) as f32 `[N, 1, H, W]`, scaled to `[0, 1]`
/// by `v / 255`.
pub fn read_idx_images(path: impl AsRef<Path>, device: &Device) -> Result<Tensor> {
    let idx = read_idx("read_idx_images", path.as_ref(), IDX_IMAGES_MAGIC)?;
    let (n, h, w) = (idx.dims[0], idx.dims[1], idx.dims[2]);
    Tensor::from_vec(unit_scale(&idx.data), &[n, 1, h, w], device)
}

/// The labels of an IDX labels file (magic `0x00000801`) as i32 `[N]`.
pub fn read_idx_labels(path: impl AsRef<Path>, device: &Device) -> Result<Tensor> {
    let labels = read_idx_label_values("read_idx_labels", path.as_ref())?;
    let n = labels.len();
    Tensor::from_vec(labels, &[n], device)
}

/// The label values of an IDX labels file, on the host.
fn read_idx_label_values(op: &'static str, path: &Path) -> Result<Vec<i32>> {
    let idx = read_idx(op, path, IDX_LABELS_MAGIC)?;
    Ok(idx.data.iter().map(|&v| i32::from(v)).collect())
}

/// An images file and its labels file as one [`Dataset`]: inputs f32 `[N, 1, H, W]` in `[0, 1]`,
/// labels i32 `[N]`. The two files must hold the same number of rows.
pub fn load_idx(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    device: &Device,
) -> Result<Dataset> {
    let op = "load_idx";
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let idx = read_idx(op, images, IDX_IMAGES_MAGIC)?;
    let values = read_idx_label_values(op, labels)?;
    let (n, h, w) = (idx.dims[0], idx.dims[1], idx.dims[2]);
    if values.len() != n {
        return Err(Error::value(
            op,
            format!(
                "{} labels in {} for {n} images in {}",
                values.len(),
                labels.display(),
                images.display()
            ),
            "one label per image",
        ));
    }
    let inputs = Tensor::from_vec(unit_scale(&idx.data), &[n, 1, h, w], device)?;
    let targets = Tensor::from_vec(values, &[n], device)?;
    Dataset::new(inputs, targets)
}
