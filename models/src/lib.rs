//! dynlab's models: a [`Module`] trait (named parameters in a fixed order, train/eval mode, state
//! dicts saved as safetensors), layers ([`Linear`], [`Embedding`], [`LayerNorm`], activations), and the
//! models of the experiments ([`Mlp`], the grokking [`BaselineMlp`]).
//!
//! ```no_run
//! use dynlab_models::{Activation, Init, Mlp, Module};
//! use dynlab_autodiff::Var;
//! use dynlab_runtime::{Device, Rng, Tensor};
//! let device = Device::default()?;
//! let mut rng = Rng::new(0);
//! let mlp = Mlp::new(&[8, 32, 3], Activation::Relu, Init::KaimingUniform, true, &mut rng, &device)?;
//! let x = Var::constant(Tensor::rand_normal(&[4, 8], 0.0, 1.0, &mut rng, &device)?);
//! let logits = mlp.forward(&x)?;
//! println!("{} parameters, logits {:?}", mlp.num_params(), logits.shape());
//! # Ok::<(), dynlab_runtime::Error>(())
//! ```

mod activation;
mod affine;
mod batch_norm;
mod embedding;
mod grokking;
mod init;
mod layer_norm;
mod linear;
mod mlp;
mod module;
mod state;
mod weight_norm;

pub use activation::Activation;
pub use affine::Affine;
pub use batch_norm::BatchNorm;
pub use embedding::Embedding;
pub use grokking::{BaselineMlp, PairEncoding};
pub use init::Init;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use mlp::Mlp;
pub use module::{prefixed, Module, Param, ParamKind};
pub use state::{load_safetensors, save_safetensors, TensorFile};
pub use weight_norm::{weight_norm, weight_norm_init};
