//! The plasticity studies' deep feed-forward networks (`lop/nets/deep_ffnn.py`,
//! `lls src/models/deep_ffnn*.py`): `in → L × (dense, act) → out` with biases 0.
//!
//! Variants ([`FfnnVariant`]): the plain network (`deep_ffnn`); hidden layers that are
//! [`NormalizedWeightsLinear`] of one form, the last layer plain (`deep_ffnn_weight_norm_single_rescale`,
//! `deep_ffnn_weight_norm_multi_channel_rescale`, `deep_ffnn_weight_batch_norm`); and a
//! [`BatchNorm`] after each hidden dense layer, before the activation (`ffnn_normal_bn`: the
//! reference's key points at a class `FFNN_with_BN` that `deep_ffnn.py` does not define; this is
//! what its name and file intend).
//!
//! Initialisation ([`FfnnInit`]) of the plain dense layers: `kaiming` draws Kaiming-uniform weights
//! (gain √2; the reference's leaky-ReLU gain with slope 0.01, `√(2/(1 + 10⁻⁴))`, is 5·10⁻⁵
//! smaller), `xavier` draws Xavier-normal weights times the activation's gain (PyTorch's
//! `calculate_gain`: ReLU √2, tanh 5/3, SELU 3/4, the leaky ReLU `√(2/(1 + 0.01²))`, else 1).
//!
//! Children `layers.0` … `layers.L` (and `norms.i`); taps `hidden.i` (after the activation of
//! hidden layer `i`) and `features` (the input of the last layer).

use crate::layers::{Activation, Init, Linear, NormalizedWeightsLinear, WeightNormForm};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::zoo::convnet::batch_norms;
use crate::zoo::{DenseLayer, NormLayer};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng};

/// Which deep FFNN (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnnVariant {
    /// `deep_ffnn`.
    Plain,
    /// Hidden layers are normalised linear layers of this form.
    WeightNorm(WeightNormForm),
    /// `ffnn_normal_bn`: batch norm after each hidden dense layer.
    BatchNorm,
}

/// Initialisation of the plain dense layers (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnnInit {
    /// Kaiming-uniform.
    Kaiming,
    /// Xavier-normal times the activation's gain.
    Xavier,
}

/// The shape and kind of a [`DeepFfnn`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeepFfnnOptions {
    /// Input features (784).
    pub inputs: usize,
    /// Width of every hidden layer (`num_features`, 2000).
    pub width: usize,
    /// Hidden layers (`num_hidden_layers`, 2).
    pub hidden_layers: usize,
    /// Outputs (10).
    pub outputs: usize,
    /// Between layers (ReLU).
    pub activation: Activation,
    /// Of the plain dense layers (Xavier, the reference's `LinearNetParams` default).
    pub init: FfnnInit,
    /// Which network.
    pub variant: FfnnVariant,
    /// The weight-correction scale of the normalised layers (√2).
    pub k: f32,
}

impl DeepFfnnOptions {
    /// The reference defaults: 784 → 2 × 2000 ReLU → 10, Xavier, plain.
    pub fn reference() -> DeepFfnnOptions {
        DeepFfnnOptions {
            inputs: 784,
            width: 2000,
            hidden_layers: 2,
            outputs: 10,
            activation: Activation::Relu,
            init: FfnnInit::Xavier,
            variant: FfnnVariant::Plain,
            k: crate::layers::RELU_CORRECTION,
        }
    }
}

/// A deep FFNN (see the module docs).
#[derive(Clone, Debug)]
pub struct DeepFfnn {
    /// Hidden layers, then the output layer.
    pub layers: Vec<DenseLayer>,
    /// After each hidden dense layer (`ffnn_normal_bn` only).
    pub norms: Vec<NormLayer>,
    /// Between layers.
    pub activation: Activation,
}

impl DeepFfnn {
    /// The network `options` describes.
    pub fn new(options: DeepFfnnOptions, rng: &mut Rng, device: &Device) -> Result<DeepFfnn> {
        let o = options;
        if o.inputs == 0 || o.width == 0 || o.outputs == 0 {
            return Err(Error::value(
                "DeepFfnn::new",
                format!(
                    "{} → {} × {} → {}",
                    o.inputs, o.hidden_layers, o.width, o.outputs
                ),
                "non-zero widths",
            ));
        }
        let mut layers = Vec::with_capacity(o.hidden_layers + 1);
        let mut fan_in = o.inputs;
        for _ in 0..o.hidden_layers {
            layers.push(match o.variant {
                FfnnVariant::WeightNorm(form) => DenseLayer::Normalized(
                    NormalizedWeightsLinear::new(fan_in, o.width, true, form, o.k, rng, device)?,
                ),
                _ => DenseLayer::Linear(plain(o, fan_in, o.width, rng, device)?),
            });
            fan_in = o.width;
        }
        layers.push(DenseLayer::Linear(plain(
            o, fan_in, o.outputs, rng, device,
        )?));
        let norms = match o.variant {
            FfnnVariant::BatchNorm => batch_norms(&vec![o.width; o.hidden_layers], device)?,
            _ => vec![],
        };
        Ok(DeepFfnn {
            layers,
            norms,
            activation: o.activation,
        })
    }
}

/// A plain dense layer with bias 0 and the configured initialisation.
fn plain(
    o: DeepFfnnOptions,
    inputs: usize,
    outputs: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<Linear> {
    let mut layer = match o.init {
        FfnnInit::Kaiming => Linear::new(inputs, outputs, true, Init::KaimingUniform, rng, device)?,
        FfnnInit::Xavier => Linear::new(inputs, outputs, true, Init::XavierNormal, rng, device)?,
    };
    if o.init == FfnnInit::Xavier {
        let scaled = layer.weight.value().mul_scalar(o.activation.gain())?;
        layer.weight.set(scaled)?;
    }
    Ok(layer)
}

impl Module for DeepFfnn {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (last, hidden) = self.layers.split_last().expect("DeepFfnn has a layer");
        let mut h = x.clone();
        for (i, layer) in hidden.iter().enumerate() {
            let mut z = layer.call(&format!("layers.{i}"), &h, ctx)?;
            if let Some(norm) = self.norms.get(i) {
                z = norm.apply(&format!("norms.{i}"), &z, ctx)?;
            }
            h = self.activation.apply(&z)?;
            ctx.tap(&format!("hidden.{i}"), &h);
        }
        ctx.tap("features", &h);
        last.call(&format!("layers.{}", hidden.len()), &h, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        let mut parts = Parts::default();
        for (i, layer) in self.layers.iter().enumerate() {
            parts = parts.child_dyn(format!("layers.{i}"), layer.module());
        }
        for (i, norm) in self.norms.iter().enumerate() {
            parts = parts.child_dyn(format!("norms.{i}"), norm.module());
        }
        parts
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let mut parts = PartsMut::default();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            parts = parts.child_dyn(format!("layers.{i}"), layer.module_mut());
        }
        for (i, norm) in self.norms.iter_mut().enumerate() {
            parts = parts.child_dyn(format!("norms.{i}"), norm.module_mut());
        }
        parts
    }
}
