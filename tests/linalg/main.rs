//! The linear-algebra suite: eigh and SVD on the device against faer in f64 on random and
//! adversarial matrices (residual, orthogonality, agreement), the host fallback, PSD functions, the
//! Σ-projector, spectral radius and the rank measures.

mod eigh;
mod svd;
