//! dynlab's CubeCL kernels. Each module holds one family of `#[cube]` kernels; the runtime crate owns
//! validation, allocation and dispatch, and launches these through their generated `launch_unchecked`.

#![warn(missing_docs)]

pub mod attention;
pub mod conv;
pub mod copy;
pub mod elementwise;
pub mod fill;
pub mod graph;
pub mod index;
pub mod layout;
pub mod linalg;
pub mod matmul;
pub mod multi;
pub mod norm;
pub mod num;
pub mod optim;
pub mod random;
pub mod reduce;
pub mod softmax;
pub mod units;

pub use cubecl;

/// The kernels' version: the crate version and a hash of their sources (what caches of measured
/// kernel choices are keyed by).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-", env!("DYNLAB_KERNELS_HASH"));
