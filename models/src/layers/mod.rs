//! Layers: dense ([`Linear`]), convolution and pooling ([`Conv2d`], [`MaxPool2d`], [`Flatten`]),
//! lookup ([`Embedding`]), normalisation ([`LayerNorm`], [`BatchNorm`],
//! [`weight_norm`]), the plasticity studies' normalised and SVD-parameterised layers
//! ([`NormConv2d`], [`NormalizedWeightsLinear`], [`SvdLinear`], [`SvdConv2d`]), pointwise ([`Activation`], [`Dropout`]) and weight initialisations ([`Init`]).
//! Each is a [`crate::Module`].

mod activation;
mod affine;
mod batch_norm;
mod conv;
mod embedding;
mod init;
mod layer_norm;
mod linear;
mod normalized;
mod svd;
mod weight_norm;

pub use activation::{Activation, Dropout};
pub use affine::Affine;
pub use batch_norm::BatchNorm;
pub use conv::{Conv2d, Flatten, MaxPool2d};
pub use embedding::Embedding;
pub use init::{orthogonal, Init};
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use normalized::{NormConv2d, NormalizedWeightsLinear, WeightNormForm, RELU_CORRECTION};
pub use svd::{orthogonality_penalty, SvdConv2d, SvdFactors, SvdLinear};
pub use weight_norm::{weight_norm, weight_norm_init};
