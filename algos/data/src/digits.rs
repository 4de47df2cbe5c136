//! The dataset shipped with the repository: the UCI optical handwritten digits (Alpaydin & Kaynak,
//! 1998; CC BY 4.0, see `data/digits/LICENSE.md`), 1797 grey 8×8 images of the digits 0–9, as two
//! IDX files in `data/digits/` written by `scripts/make_digits_idx.py` from scikit-learn's copy.
//!
//! The source pixels are counts in 0..16; the files hold `min(16 · v, 255)` as u8 (0..15 → 0, 16,
//! …, 240 and 16 → 255), and [`digits`] scales the bytes by `1/255`, so a source value `v` loads as
//! `min(16 v, 255) / 255`. Class counts (digits 0–9): 178, 182, 177, 183, 181, 182, 181, 179, 174,
//! 180. Small enough to train on lavapipe in seconds; [`crate::transforms::Resize`] brings the images
//! to 32×32 for models built for CIFAR-sized inputs.

use crate::host::classes_present;
use crate::idx::load_idx;
use dynlab_runtime::{Device, Error, Result};
use dynlab_train::Dataset;
use std::path::{Path, PathBuf};

/// File name of the digits' IDX images file.
pub const DIGITS_IMAGES: &str = "digits-images-idx3-ubyte";
/// File name of the digits' IDX labels file.
pub const DIGITS_LABELS: &str = "digits-labels-idx1-ubyte";
/// Number of classes of the digits (0–9).
pub const DIGITS_CLASSES: usize = 10;

/// The folder of the digits shipped in this repository (`data/digits`, found from this crate's
/// source folder at build time).
pub fn shipped_digits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits")
}

/// The digits in `root` (a folder holding [`DIGITS_IMAGES`] and [`DIGITS_LABELS`], such as
/// [`shipped_digits_dir`]): inputs f32 `[N, 1, 8, 8]` in `[0, 1]`, labels i32 `[N]` in `0..10`.
pub fn digits(root: impl AsRef<Path>, device: &Device) -> Result<Dataset> {
    let op = "digits";
    let root = root.as_ref();
    let data = load_idx(root.join(DIGITS_IMAGES), root.join(DIGITS_LABELS), device)?;
    if data.inputs.shape()[1..] != [1, 8, 8] {
        return Err(Error::value(
            op,
            format!("images {:?} in {}", data.inputs.shape(), root.display()),
            "8×8 images [N, 1, 8, 8]",
        ));
    }
    let labels = data.targets.to_vec::<i32>()?;
    let classes = classes_present(op, &labels)?;
    if classes != DIGITS_CLASSES {
        return Err(Error::value(
            op,
            format!("labels 0..{classes} in {}", root.display()),
            "the digits 0..10",
        ));
    }
    Ok(data)
}
