//! Models built from the layers: the [`Mlp`], and the grokking study's [`BaselineMlp`]. The
//! plasticity studies' zoo (ConvNets, VGG, ResNets, deep FFNNs with their normalised variants)
//! joins them here.

mod grokking;
mod mlp;

pub use grokking::{BaselineMlp, PairEncoding};
pub use mlp::Mlp;
