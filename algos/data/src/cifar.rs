//! The CIFAR-10 and CIFAR-100 binary formats (Krizhevsky, 2009): files of fixed-size records, each
//! the label byte(s) and then 3072 pixel bytes, a 32×32 image in channel-major order (1024 red, 1024
//! green, 1024 blue, each row-major). CIFAR-10 records have one label byte (0..9); CIFAR-100 records
//! have two, the coarse (superclass, 0..19) and then the fine label (0..99).
//!
//! A file's length must be a whole, non-zero number of records; a label outside its range is an
//! error naming the record. Several files (the five `data_batch_*.bin` of CIFAR-10) are read in the
//! order given into one [`Dataset`]: inputs f32 `[N, 3, 32, 32]` scaled to `[0, 1]` by `v / 255`,
//! labels i32 `[N]`.

use crate::host::{bad_file, read_file};
use dynlab_runtime::{Device, Error, Result, Tensor};
use dynlab_train::Dataset;
use std::path::{Path, PathBuf};

/// Pixel bytes of one CIFAR image (`3 × 32 × 32`, channel-major).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the second label byte); the default.
    #[default]
    Fine,
    /// The 20 coarse superclasses (the first label byte).
    Coarse,
}

/// The train or the test part of a CIFAR folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarSplit {
    /// CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin`; CIFAR-100: `train.bin`.
    Train,
    /// CIFAR-10: `test_batch.bin`; CIFAR-100: `test.bin`.
    Test,
}

/// The record layout of one format: label bytes, which of them is kept, and the class count.
struct Format {
    op: &'static str,
    label_bytes: usize,
    label_at: usize,
    classes: usize,
}

/// The files of a CIFAR-10 binary folder (`cifar-10-batches-bin`) for `split`.
pub fn cifar10_files(root: impl AsRef<Path>, split: CifarSplit) -> Vec<PathBuf> {
    let root = root.as_ref();
    match split {
        CifarSplit::Train => (1..=5)
            .map(|i| root.join(format!("data_batch_{i}.bin")))
            .collect(),
        CifarSplit::Test => vec![root.join("test_batch.bin")],
    }
}

/// The file of a CIFAR-100 binary folder (`cifar-100-binary`) for `split`.
pub fn cifar100_files(root: impl AsRef<Path>, split: CifarSplit) -> Vec<PathBuf> {
    let name = match split {
        CifarSplit::Train => "train.bin",
        CifarSplit::Test => "test.bin",
    };
    vec![root.as_ref().join(name)]
}

/// CIFAR-10 binary files (records of 1 label byte + 3072 pixel bytes) as one [`Dataset`].
pub fn load_cifar10(files: &[impl AsRef<Path>], device: &Device) -> Result<Dataset> {
    let format = Format {
        op: "load_cifar10",
        label_bytes: 1,
        label_at: 0,
        classes: 10,
    };
    load(&format, files, device)
}

/// CIFAR-100 binary files (records of 2 label bytes, coarse then fine, + 3072 pixel bytes) as one
/// [`Dataset`] with the fine or the coarse labels.
pub fn load_cifar100(
    files: &[impl AsRef<Path>],
    labels: Cifar100Labels,
    device: &Device,
) -> Result<Dataset> {
    let (label_at, classes) = match labels {
        Cifar100Labels::Coarse => (0, 20),
        Cifar100Labels::Fine => (1, 100),
    };
    let format = Format {
        op: "load_cifar100",
        label_bytes: 2,
        label_at,
        classes,
    };
    load(&format, files, device)
}

/// Reads every file's records into one dataset.
fn load(format: &Format, files: &[impl AsRef<Path>], device: &Device) -> Result<Dataset> {
    if files.is_empty() {
        return Err(Error::value(format.op, "no files", "at least one file"));
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for path in files {
        read_records(format, path.as_ref(), &mut pixels, &mut labels)?;
    }
    let n = labels.len();
    let inputs = Tensor::from_vec(pixels, &[n, 3, 32, 32], device)?;
    let targets = Tensor::from_vec(labels, &[n], device)?;
    Dataset::new(inputs, targets)
}

/// Appends the records of one file: pixels scaled to `[0, 1]`, the kept label checked.
fn read_records(
    format: &Format,
    path: &Path,
    pixels: &mut Vec<f32>,
    labels: &mut Vec<i32>,
) -> Result<()> {
    let op = format.op;
    let record = format.label_bytes + CIFAR_IMAGE_BYTES;
    let bytes = read_file(op, path)?;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(bad_file(
            op,
            path,
            format!("a file of {} bytes", bytes.len()),
            format!(
                "a whole, non-zero number of {record}-byte records ({} label byte(s) + {CIFAR_IMAGE_BYTES} pixels)",
                format.label_bytes
            ),
        ));
    }
    pixels.reserve(bytes.len() / record * CIFAR_IMAGE_BYTES);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[format.label_at];
        if usize::from(label) >= format.classes {
            return Err(bad_file(
                op,
                path,
                format!("label {label} in record {i}"),
                format!("labels in 0..{}", format.classes),
            ));
        }
        labels.push(i32::from(label));
        let image = &rec[format.label_bytes..];
        pixels.extend(image.iter().map(|&v| f32::from(v) / 255.0));
    }
    Ok(())
}
