//! dynlab: hand-written GPU kernels (CubeCL) with a small host runtime, for learning-dynamics research.
//!
//! Layers, each a crate: [`kernels`] (`#[cube]` kernels) ← [`runtime`] (devices, tensors, eager ops,
//! errors, f64 references) ← [`autodiff`] (tape whose backward rules are differentiable ops). The common types are re-exported at the root.
//!
//! ```no_run
//! use dynlab::{Device, Tensor};
//! let device = Device::default()?;
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &device)?;
//! let p = x.softmax(0)?;
//! println!("{:?}", p.to_vec::<f32>()?);
//! # Ok::<(), dynlab::Error>(())
//! ```

pub use dynlab_autodiff as autodiff;
pub use dynlab_autodiff::{grad, no_grad, GradOptions, Var};
pub use dynlab_kernels as kernels;
pub use dynlab_runtime as runtime;
pub use dynlab_runtime::{bf16, f16, DType, Device, Error, Result, Rng, Tensor};
