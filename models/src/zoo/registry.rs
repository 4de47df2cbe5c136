//! The model registry: every model of the plasticity studies' factory (`lls src/models/
//! model_factory.py`), buildable by name from a table of parameters, so that a config file names
//! its network. [`MODEL_NAMES`] lists the names; [`build_model`] builds one. An unknown name, an
//! unknown parameter, a parameter of the wrong type or a missing required one is an error naming
//! it.
//!
//! Parameters (defaults in brackets):
//! - ConvNets (`convnet`, `convnet_norm`, `convnet_svd`, `convnet_fc_layer_norm`,
//!   `convnet_conv_and_fc_layer_norm`, `convnet_batch_norm`): `classes` (required),
//!   `in_channels` [3], `image_size` [32], `activation` ["relu"], `conv_layer_bias` [true],
//!   `linear_layer_bias` [true], `weight_correction_scale` [√2], `fan_in_correction` [true],
//!   `layer_norm_affine` [true], `allow_svd_values_negative` [false].
//! - Deep FFNNs (`deep_ffnn`, `deep_ffnn_weight_norm_single_rescale`,
//!   `deep_ffnn_weight_norm_multi_channel_rescale`, `deep_ffnn_weight_batch_norm`,
//!   `ffnn_normal_bn`): `input_size` [784], `num_features` [2000], `num_hidden_layers` [2],
//!   `num_outputs` [10], `activation` ["relu"], `init` ["xavier"; or "kaiming"],
//!   `weight_correction_scale` [√2].
//! - VGG-16 (`vgg_custom`, `vgg_custom_norm`): `classes` (required), `in_channels` [3],
//!   `dropout` [0.5], `pooled_side` [7; 1 for the 32 × 32 equivalent that fits wgpu's buffers].
//! - ResNet-18 (`resnet_custom`, `resnet_normalized_conv`, `full_rank_resnet_custom`): `classes`
//!   (required), `in_channels` [3], `activation` ["relu"].

use crate::layers::{Activation, WeightNormForm, RELU_CORRECTION};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::zoo::{
    ConvNet, ConvNetOptions, ConvNetShape, ConvNetVariant, DeepFfnn, DeepFfnnOptions, FfnnInit,
    FfnnVariant, ResNet, ResNetOptions, Vgg, VggOptions,
};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng};
use std::collections::BTreeMap;

/// The names [`build_model`] knows.
pub const MODEL_NAMES: [&str; 16] = [
    "convnet",
    "convnet_norm",
    "convnet_svd",
    "convnet_fc_layer_norm",
    "convnet_conv_and_fc_layer_norm",
    "convnet_batch_norm",
    "deep_ffnn",
    "deep_ffnn_weight_norm_single_rescale",
    "deep_ffnn_weight_norm_multi_channel_rescale",
    "deep_ffnn_weight_batch_norm",
    "ffnn_normal_bn",
    "vgg_custom",
    "vgg_custom_norm",
    "resnet_custom",
    "resnet_normalized_conv",
    "full_rank_resnet_custom",
];

/// One parameter's value in a model's table.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A switch.
    Bool(bool),
    /// A name.
    Str(String),
}

/// A model's parameter table, read key by key; [`ModelParams::finish`] rejects keys nobody read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelParams {
    values: BTreeMap<String, ParamValue>,
    read: std::cell::RefCell<Vec<String>>,
}

impl ModelParams {
    /// A table of `values`.
    pub fn new(values: BTreeMap<String, ParamValue>) -> ModelParams {
        ModelParams {
            values,
            read: Default::default(),
        }
    }

    /// Sets `key` (builder style).
    pub fn with(mut self, key: &str, value: ParamValue) -> ModelParams {
        self.values.insert(key.to_string(), value);
        self
    }

    fn get(&self, key: &str) -> Option<&ParamValue> {
        self.read.borrow_mut().push(key.to_string());
        self.values.get(key)
    }

    fn wrong(&self, model: &str, key: &str, expected: &str) -> Error {
        Error::value(
            "build_model",
            format!("{model}: `{key}` = {:?}", self.values.get(key)),
            expected.to_string(),
        )
    }

    fn usize_or(&self, model: &str, key: &str, default: Option<usize>) -> Result<usize> {
        match (self.get(key), default) {
            (Some(ParamValue::Int(v)), _) if *v >= 0 => Ok(*v as usize),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(Error::value(
                "build_model",
                format!("{model}: no `{key}`"),
                format!("a parameter `{key}` (a non-negative integer)"),
            )),
            _ => Err(self.wrong(model, key, "a non-negative integer")),
        }
    }

    fn f32_or(&self, model: &str, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            Some(ParamValue::Float(v)) => Ok(*v as f32),
            Some(ParamValue::Int(v)) => Ok(*v as f32),
            None => Ok(default),
            _ => Err(self.wrong(model, key, "a number")),
        }
    }

    fn bool_or(&self, model: &str, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            Some(ParamValue::Bool(v)) => Ok(*v),
            None => Ok(default),
            _ => Err(self.wrong(model, key, "true or false")),
        }
    }

    fn str_or<'a>(&'a self, model: &str, key: &str, default: &'a str) -> Result<&'a str> {
        match self.get(key) {
            Some(ParamValue::Str(v)) => Ok(v),
            None => Ok(default),
            _ => Err(self.wrong(model, key, "a string")),
        }
    }

    fn activation(&self, model: &str) -> Result<Activation> {
        let name = self.str_or(model, "activation", "relu")?;
        Activation::parse(name).ok_or_else(|| {
            self.wrong(
                model,
                "activation",
                "relu, gelu, tanh, sigmoid, leaky_relu, elu, selu or swish",
            )
        })
    }

    /// Fails on a key no builder read (a misspelt parameter).
    fn finish(&self, model: &str) -> Result<()> {
        let read = self.read.borrow();
        match self.values.keys().find(|k| !read.contains(k)) {
            Some(key) => Err(Error::value(
                "build_model",
                format!("{model}: unknown parameter `{key}`"),
                "the model's parameters (see dynlab_models::zoo::registry)",
            )),
            None => Ok(()),
        }
    }
}

/// A model built by name: one of the zoo's types, run and listed as the model inside.
#[allow(clippy::large_enum_variant)] // one per run
#[derive(Clone, Debug)]
pub enum ZooModel {
    /// A ConvNet variant.
    ConvNet(ConvNet),
    /// A deep FFNN variant.
    DeepFfnn(DeepFfnn),
    /// VGG-16.
    Vgg(Vgg),
    /// ResNet-18.
    ResNet(ResNet),
}

impl ZooModel {
    /// The model inside.
    pub fn module(&self) -> &dyn Module {
        match self {
            ZooModel::ConvNet(m) => m,
            ZooModel::DeepFfnn(m) => m,
            ZooModel::Vgg(m) => m,
            ZooModel::ResNet(m) => m,
        }
    }

    fn module_mut(&mut self) -> &mut dyn Module {
        match self {
            ZooModel::ConvNet(m) => m,
            ZooModel::DeepFfnn(m) => m,
            ZooModel::Vgg(m) => m,
            ZooModel::ResNet(m) => m,
        }
    }
}

impl Module for ZooModel {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.module().forward(x, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        self.module().parts()
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.module_mut().parts_mut()
    }

    fn replicable(&self) -> bool {
        self.module().replicable()
    }
}

/// Builds the model `name` from `params` (see the module docs for each family's parameters).
pub fn build_model(
    name: &str,
    params: &ModelParams,
    rng: &mut Rng,
    device: &Device,
) -> Result<ZooModel> {
    let model = if let Some(variant) = convnet_variant(name) {
        ZooModel::ConvNet(build_convnet(name, variant, params, rng, device)?)
    } else if let Some(variant) = ffnn_variant(name) {
        ZooModel::DeepFfnn(build_ffnn(name, variant, params, rng, device)?)
    } else if name == "vgg_custom" || name == "vgg_custom_norm" {
        let mut o = VggOptions::reference(
            params.usize_or(name, "classes", None)?,
            name != "vgg_custom",
        );
        o.in_channels = params.usize_or(name, "in_channels", Some(3))?;
        o.dropout = params.f32_or(name, "dropout", 0.5)?;
        o.pooled_side = params.usize_or(name, "pooled_side", Some(7))?;
        ZooModel::Vgg(Vgg::new(o, rng, device)?)
    } else if let Some(normalized) = resnet_variant(name) {
        let mut o = ResNetOptions::reference(params.usize_or(name, "classes", None)?, normalized);
        o.in_channels = params.usize_or(name, "in_channels", Some(3))?;
        o.activation = params.activation(name)?;
        ZooModel::ResNet(ResNet::new(o, rng, device)?)
    } else {
        return Err(Error::value(
            "build_model",
            format!("unknown model `{name}`"),
            format!("one of {}", MODEL_NAMES.join(", ")),
        ));
    };
    params.finish(name)?;
    Ok(model)
}

fn convnet_variant(name: &str) -> Option<ConvNetVariant> {
    Some(match name {
        "convnet" => ConvNetVariant::Plain,
        "convnet_norm" => ConvNetVariant::Norm,
        "convnet_svd" => ConvNetVariant::Svd,
        "convnet_fc_layer_norm" => ConvNetVariant::FcLayerNorm,
        "convnet_conv_and_fc_layer_norm" => ConvNetVariant::ConvAndFcLayerNorm,
        "convnet_batch_norm" => ConvNetVariant::BatchNorm,
        _ => return None,
    })
}

/// Whether the ResNet `name` is the normalised one (`None`: not a ResNet).
fn resnet_variant(name: &str) -> Option<bool> {
    match name {
        "resnet_custom" => Some(false),
        "resnet_normalized_conv" | "full_rank_resnet_custom" => Some(true),
        _ => None,
    }
}

fn ffnn_variant(name: &str) -> Option<FfnnVariant> {
    Some(match name {
        "deep_ffnn" => FfnnVariant::Plain,
        "deep_ffnn_weight_norm_single_rescale" => {
            FfnnVariant::WeightNorm(WeightNormForm::SingleRescale)
        }
        "deep_ffnn_weight_norm_multi_channel_rescale" => {
            FfnnVariant::WeightNorm(WeightNormForm::PerChannel)
        }
        "deep_ffnn_weight_batch_norm" => FfnnVariant::WeightNorm(WeightNormForm::BatchNormed),
        "ffnn_normal_bn" => FfnnVariant::BatchNorm,
        _ => return None,
    })
}

fn build_convnet(
    name: &str,
    variant: ConvNetVariant,
    p: &ModelParams,
    rng: &mut Rng,
    device: &Device,
) -> Result<ConvNet> {
    let classes = p.usize_or(name, "classes", None)?;
    let side = p.usize_or(name, "image_size", Some(32))?;
    let mut shape = ConvNetShape::reference(classes);
    shape.channels[0] = p.usize_or(name, "in_channels", Some(3))?;
    shape.image = [side, side];
    let options = ConvNetOptions {
        variant,
        activation: p.activation(name)?,
        conv_bias: p.bool_or(name, "conv_layer_bias", true)?,
        linear_bias: p.bool_or(name, "linear_layer_bias", true)?,
        k: p.f32_or(name, "weight_correction_scale", RELU_CORRECTION)?,
        fan_in_correction: p.bool_or(name, "fan_in_correction", true)?,
        norm_affine: p.bool_or(name, "layer_norm_affine", true)?,
        allow_negative_sigma: p.bool_or(name, "allow_svd_values_negative", false)?,
    };
    ConvNet::with_options(shape, options, rng, device)
}

fn build_ffnn(
    name: &str,
    variant: FfnnVariant,
    p: &ModelParams,
    rng: &mut Rng,
    device: &Device,
) -> Result<DeepFfnn> {
    let init = match p.str_or(name, "init", "xavier")? {
        "xavier" => FfnnInit::Xavier,
        "kaiming" => FfnnInit::Kaiming,
        _ => return Err(p.wrong(name, "init", "xavier or kaiming")),
    };
    let options = DeepFfnnOptions {
        inputs: p.usize_or(name, "input_size", Some(784))?,
        width: p.usize_or(name, "num_features", Some(2000))?,
        hidden_layers: p.usize_or(name, "num_hidden_layers", Some(2))?,
        outputs: p.usize_or(name, "num_outputs", Some(10))?,
        activation: p.activation(name)?,
        init,
        variant,
        k: p.f32_or(name, "weight_correction_scale", RELU_CORRECTION)?,
    };
    DeepFfnn::new(options, rng, device)
}
