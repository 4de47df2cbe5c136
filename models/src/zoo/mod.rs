//! Models built from the layers: the [`Mlp`], the loss-of-plasticity [`ConvNet`], the grokking
//! study's [`BaselineMlp`], [`GrokTransformer`] and [`RoutedNetwork`], the toy model of superposition [`Tms`], and the plasticity studies'
//! ConvNet variants, deep FFNNs ([`DeepFfnn`]), VGG-16 ([`Vgg`]) and ResNet-18 ([`ResNet`]), built by name through [`build_model`]
//! (`registry`). Variants choose their layers at run time ([`DenseLayer`], [`ConvLayer`],
//! [`NormLayer`]) and list the concrete layer as the child, so `find("fc1")` downcasts to it. Every model names its hidden activations as taps
//! `hidden.0`, `hidden.1`, … and the input of its head as `features`.

mod choice;
mod convnet;
mod deep_ffnn;
mod grok_transformer;
mod grokking;
mod mlp;
pub mod registry;
mod resnet;
mod routed;
mod tms;
mod vgg;

pub use choice::{ConvLayer, DenseLayer, NormLayer};
pub use convnet::{ConvNet, ConvNetOptions, ConvNetShape, ConvNetVariant};
pub use deep_ffnn::{DeepFfnn, DeepFfnnOptions, FfnnInit, FfnnVariant};
pub use grok_transformer::{GrokBlock, GrokTransformer, GrokTransformerShape, GROK_SEQUENCE};
pub use grokking::{BaselineMlp, PairEncoding};
pub use mlp::Mlp;
pub use registry::{build_model, ModelParams, ParamValue, ZooModel, MODEL_NAMES};
pub use resnet::{BasicBlock, ResNet, ResNetOptions};
pub use routed::{RoutedLayer, RoutedNetwork, RoutedShape};
pub use tms::Tms;
pub use vgg::{Vgg, VggOptions};
