//! dynlab's runtime: devices, tensors, eager ops on CubeCL kernels and one error type. The f64 host
//! references that the tests compare every kernel against live in the unpublished `dynlab-test-support`.

#![warn(missing_docs)]

#[cfg(feature = "wgpu")]
mod adapters;
mod atomic_file;
mod device;
mod dtype;
mod error;
mod launch;
pub mod linalg;
mod ops;
pub mod settings;
mod shape;
mod tensor;
mod tune;
mod view;

pub use atomic_file::write_atomic;
pub use device::{Device, DeviceLimits, DeviceStats};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use half::{bf16, f16};
pub use launch::set_poison_outputs;
pub use ops::attention::{FlashAttention, FlashAttentionGrads, MAX_HEAD_DIM};
pub use ops::conv::{conv_output_shape, conv_window, Conv2dOptions, Window};
pub use ops::conv_algorithm::{with_conv_algorithm, ConvAlgorithm};
pub use ops::graph::Graph;
pub use ops::matmul::{with_matmul_kernel, MatmulKernel, MatmulOptions, Tiling, CANDIDATES};
pub use ops::multi::{AdamStatsTensor, AdamTensor, GradScale, ReplicaScale, SgdTensor};
pub use ops::norm::{LayerNormGrads, LayerNormOutput};
pub use ops::optim::{AdamStep, SgdStep};
pub use ops::random::Rng;
pub use ops::rows::with_row_kernel;
pub use ops::units::{UnitLayout, UnitStats, UnitUtility, WeightView};
pub use shape::MAX_ELEMENTS;
pub use tensor::Tensor;
pub use tune::tuned_choices;
