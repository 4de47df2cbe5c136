//! The runtime test suite: every op against the f64 host reference on the default device (software
//! Vulkan in CI), with outputs poisoned with NaN before each launch.

mod elementwise;
mod errors;
mod fused;
mod hardening;
mod index;
mod matmul;
mod properties;
mod random;
mod reduce;
mod views;
