//! Models built from the layers: the [`Mlp`], the loss-of-plasticity [`ConvNet`], the grokking
//! study's [`BaselineMlp`] and the toy model of superposition [`Tms`]. The rest of the plasticity studies' zoo (VGG, ResNets, deep FFNNs with
//! their normalised variants) joins them here. Every model names its hidden activations as taps
//! `hidden.0`, `hidden.1`, … and the input of its head as `features`.

mod convnet;
mod grokking;
mod mlp;
mod tms;

pub use convnet::{ConvNet, ConvNetShape};
pub use grokking::{BaselineMlp, PairEncoding};
pub use mlp::Mlp;
pub use tms::Tms;
