//! Data for dynlab's studies, loss of plasticity first: image datasets read from files the user
//! gives (nothing is downloaded), the one dataset shipped with the repository, transforms that run on
//! the device, splits, and task streams.
//!
//! - Loaders ([`idx`], [`cifar`], [`arrays`]) return a `dynlab_train::Dataset` with inputs f32
//!   `[N, C, H, W]` scaled from u8 to `[0, 1]` by `v / 255` and labels i32 `[N]`: MNIST-style raw IDX
//!   files, the CIFAR-10/100 binary batches, `.npy` arrays and safetensors files (downsampled
//!   ImageNet's NHWC arrays are converted to NCHW). A malformed file is an
//!   `Error::Io { op, path, message }` whose `op` names the loader and whose message says what it got
//!   and what it expected; files are never read past their end.
//! - [`digits()`]: the UCI optical handwritten digits (8×8, 1797 images, CC BY 4.0) shipped in
//!   `data/digits/` as IDX files.
//! - [`transforms`]: normalisation, bilinear resizing (PyTorch's `align_corners=False`), random crops
//!   with zero padding and random horizontal flips per sample, flattening, as batched tensor ops.
//! - [`split`]: stratified, seeded train/test splits; shuffled mini-batches come from
//!   `dynlab_train::Loader`.
//! - [`streams`]: [`TaskStream`]s yielding `(task, batch)` per step: permuted inputs, permuted
//!   labels, class pairs, class-incremental, and the slowly-changing (bit-flipping) regression.
//!
//! ```no_run
//! use dynlab_data::{digits, shipped_digits_dir, Resize, Schedule, PermutedInputs, TaskStream};
//! # fn main() -> dynlab_runtime::Result<()> {
//! let device = dynlab_runtime::Device::default()?;
//! let data = digits(shipped_digits_dir(), &device)?;            // [1797, 1, 8, 8], labels 0..10
//! let big = Resize::new(32, 32)?.resize(&data.inputs)?;          // [1797, 1, 32, 32]
//! let mut stream = PermutedInputs::new(data, Schedule::new(10, 1797, 32)?, 0)?;
//! while let Some((task, batch)) = stream.next_step()? {
//!     let _ = (task, batch.inputs, big.shape());
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod arrays;
pub mod cifar;
pub mod digits;
mod host;
pub mod idx;
pub mod split;
pub mod streams;
pub mod transforms;

pub use arrays::{load_npy, load_safetensors_images, ImageLayout};
pub use cifar::{
    cifar100_files, cifar10_files, load_cifar10, load_cifar100, Cifar100Labels, CifarSplit,
};
pub use digits::{digits, shipped_digits_dir, DIGITS_CLASSES};
pub use host::HostRng;
pub use idx::{load_idx, read_idx_images, read_idx_labels};
pub use split::{class_counts, split_per_class, SplitRule};
pub use streams::{
    ClassIncremental, ClassPairs, LtuTarget, PerTask, PermutedInputs, PermutedLabels,
    RegressionConfig, Schedule, SlowlyChangingRegression, TaskStream,
};
pub use transforms::{
    bilinear_matrix, Flatten, Normalize, Pipeline, RandomCrop, RandomHorizontalFlip, Resize,
    Transform, Transformed,
};
