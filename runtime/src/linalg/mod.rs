//! Dense linear algebra on the device with f64 host fallbacks: symmetric eigendecomposition,
//! SVD and singular values, PSD matrix functions, the Σ-projector of rank-restoring CBP, and the
//! spectral radius.

mod eigh;
pub mod host;
mod psd;
mod spectral;
mod svd;

pub use eigh::{host_fallbacks, Eigh, EighOptions, EighPath, FallbackReason};
pub use svd::{Svd, SVD_GRAM_COND};
