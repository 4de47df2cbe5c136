//! Layers: dense ([`Linear`]), lookup ([`Embedding`]), normalisation ([`LayerNorm`], [`BatchNorm`],
//! [`weight_norm`]), pointwise ([`Activation`], [`Dropout`]) and weight initialisations ([`Init`]).
//! Each is a [`crate::Module`].

mod activation;
mod affine;
mod batch_norm;
mod embedding;
mod init;
mod layer_norm;
mod linear;
mod weight_norm;

pub use activation::{Activation, Dropout};
pub use affine::Affine;
pub use batch_norm::BatchNorm;
pub use embedding::Embedding;
pub use init::Init;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use weight_norm::{weight_norm, weight_norm_init};
