//! dynlab's runtime: devices, tensors, eager ops on CubeCL kernels, one error type, and f64 host
//! references that the tests compare every kernel against.

mod device;
mod dtype;
mod error;
mod launch;
mod ops;
pub mod reference;
mod shape;
mod tensor;
mod view;

pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use half::{bf16, f16};
pub use launch::set_poison_outputs;
pub use ops::matmul::{with_matmul_kernel, MatmulKernel, MatmulOptions, Tiling, CANDIDATES};
pub use ops::random::Rng;
pub use ops::rows::with_row_kernel;
pub use tensor::Tensor;
