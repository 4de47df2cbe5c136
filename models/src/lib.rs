//! dynlab's models: the layer contract ([`Module`]: one `forward` with a [`Ctx`] carrying the mode,
//! an RNG and taps; parameters, buffers and submodules by path; state dicts saved as
//! safetensors), the [`layers`], and the [`zoo`] of models the studies train.
//!
//! ```no_run
//! use dynlab_models::{Activation, Ctx, Init, Mlp, Module};
//! use dynlab_autodiff::Var;
//! use dynlab_runtime::{Device, Rng, Tensor};
//! let device = Device::default()?;
//! let mut rng = Rng::new(0);
//! let mlp = Mlp::new(&[8, 32, 3], Activation::Relu, Init::KaimingUniform, true, &mut rng, &device)?;
//! let x = Var::constant(Tensor::rand_normal(&[4, 8], 0.0, 1.0, &mut rng, &device)?);
//! let mut ctx = Ctx::eval().with_taps(&["hidden.0"]);
//! let logits = mlp.forward(&x, &mut ctx)?;
//! let hidden = ctx.tapped("hidden.0").expect("tapped");
//! println!("{} parameters, logits {:?}, hidden {:?}", mlp.num_params(), logits.shape(), hidden.shape());
//! # Ok::<(), dynlab_runtime::Error>(())
//! ```

#![warn(missing_docs)]

pub mod layers;
mod module;
mod record;
mod replicas;
pub mod spd_targets;
mod state;
pub mod zoo;

pub use layers::{
    orthogonal, orthogonality_penalty, weight_norm, weight_norm_init, Activation, Affine,
    BatchNorm, Conv2d, Dropout, Embedding, Flatten, Init, LayerNorm, Linear, MaxPool2d, NormConv2d,
    NormalizedWeightsLinear, SvdConv2d, SvdFactors, SvdLinear, WeightNormForm, RELU_CORRECTION,
};
pub use module::{
    prefixed, AsModule, Buffer, Ctx, Mode, Module, Param, ParamKind, Parts, PartsMut, Replacement,
};
pub use record::{Record, Stateful};
pub use replicas::Replicas;
pub use spd_targets::{ResidBlock, ResidMlp, TmsTarget};
pub use state::{load_safetensors, save_safetensors, TensorFile};
pub use zoo::{
    build_model, BaselineMlp, ConvLayer, ConvNet, ConvNetOptions, ConvNetShape, ConvNetVariant,
    DeepFfnn, DeepFfnnOptions, DenseLayer, FfnnInit, FfnnVariant, GrokBlock, GrokTransformer,
    GrokTransformerShape, Mlp, ModelParams, NormLayer, PairEncoding, ParamValue, ResNet,
    ResNetOptions, RoutedLayer, RoutedNetwork, RoutedShape, Tms, Vgg, VggOptions, ZooModel,
    GROK_SEQUENCE, MODEL_NAMES,
};
