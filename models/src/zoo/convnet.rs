//! The loss-of-plasticity studies' ConvNet (Dohare et al. 2024, `lop/nets/conv_net.py`): conv
//! 3→32 k5, ReLU, max-pool 2; conv 32→64 k3, ReLU, pool; conv 64→128 k3, ReLU, pool; flatten
//! (128·2·2 = 512 at 32 × 32) → fc 128 → fc 128 → classes; no padding; PyTorch's default
//! initialisation. The widths are parameters (the reference's by default) so that tests can run it
//! small.
//!
//! Children `conv1`, `conv2`, `conv3`, `fc1`, `fc2`, `fc3` (and the normalisation layers
//! `conv_norms.i`, `fc_norms.i` of the variants that have them). Taps `hidden.0` … `hidden.4`: the
//! reference's `predict` features `[conv1 pooled, conv2 pooled, conv3 flattened, fc1, fc2]` (after
//! their activation), and `features` (= `hidden.4`, the input of the head).
//!
//! The variants of `lls src/models/conv_net*.py` ([`ConvNetVariant`]):
//! - `convnet_norm`: [`NormConv2d`] convolutions and [`NormalizedWeightsLinear`] (single rescale)
//!   for fc1 … fc3;
//! - `convnet_svd`: [`SvdConv2d`] convolutions and [`SvdLinear`] dense layers (the dense layers
//!   take the default correction √2, as the reference's do whatever the config says);
//! - `convnet_fc_layer_norm`: a [`LayerNorm`] after fc1 and fc2, before the activation;
//! - `convnet_conv_and_fc_layer_norm`: also a layer norm over `[C, H, W]` after each convolution,
//!   before the activation and the pooling;
//! - `convnet_batch_norm`: [`BatchNorm`] after each convolution and after fc1 and fc2, before the
//!   activation.
//!
//! The reference's `ConvNet_SVD` hard-codes the 512 flattened features of 32 × 32 inputs; here the
//! flattened size follows the input shape for every variant.

use crate::layers::{
    Activation, BatchNorm, Conv2d, Init, LayerNorm, Linear, MaxPool2d, NormConv2d,
    NormalizedWeightsLinear, SvdConv2d, SvdLinear, WeightNormForm, RELU_CORRECTION,
};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::zoo::{ConvLayer, DenseLayer, NormLayer};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng};

/// Layer widths of a [`ConvNet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvNetShape {
    /// Input channels and the three conv widths.
    pub channels: [usize; 4],
    /// Input height and width.
    pub image: [usize; 2],
    /// Widths of fc1 and fc2.
    pub hidden: [usize; 2],
    /// Outputs.
    pub classes: usize,
}

impl ConvNetShape {
    /// The reference: 3 → 32 → 64 → 128 channels, 32 × 32 images, fc 128, 128.
    pub fn reference(classes: usize) -> ConvNetShape {
        ConvNetShape {
            channels: [3, 32, 64, 128],
            image: [32, 32],
            hidden: [128, 128],
            classes,
        }
    }
}

/// Which ConvNet of the studies (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvNetVariant {
    /// `convnet`.
    Plain,
    /// `convnet_norm`.
    Norm,
    /// `convnet_svd`.
    Svd,
    /// `convnet_fc_layer_norm`.
    FcLayerNorm,
    /// `convnet_conv_and_fc_layer_norm`.
    ConvAndFcLayerNorm,
    /// `convnet_batch_norm`.
    BatchNorm,
}

/// How to build a [`ConvNet`]: the variant and the reference config's switches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvNetOptions {
    /// Which ConvNet.
    pub variant: ConvNetVariant,
    /// Between layers (ReLU in the reference).
    pub activation: Activation,
    /// Convolutions have biases (`conv_layer_bias`).
    pub conv_bias: bool,
    /// Dense layers have biases (`linear_layer_bias`).
    pub linear_bias: bool,
    /// The weight-correction scale `k` of the normalised and SVD layers.
    pub k: f32,
    /// Divide `k` by `√fan_in` in [`NormConv2d`].
    pub fan_in_correction: bool,
    /// Layer norms have `γ`, `β` (`elementwise_affine`); without, they stay at 1 and 0 and are
    /// not trained.
    pub norm_affine: bool,
    /// SVD layers use `Σ` as is instead of `|Σ|`.
    pub allow_negative_sigma: bool,
}

impl ConvNetOptions {
    /// `variant` with `activation` and the reference defaults: biases on, `k = √2`, fan-in
    /// correction, affine layer norms, `|Σ|`.
    pub fn new(variant: ConvNetVariant, activation: Activation) -> ConvNetOptions {
        ConvNetOptions {
            variant,
            activation,
            conv_bias: true,
            linear_bias: true,
            k: RELU_CORRECTION,
            fan_in_correction: true,
            norm_affine: true,
            allow_negative_sigma: false,
        }
    }
}

/// The ConvNet and its variants (see the module docs).
#[derive(Clone, Debug)]
pub struct ConvNet {
    /// Conv 5 × 5.
    pub conv1: ConvLayer,
    /// Conv 3 × 3.
    pub conv2: ConvLayer,
    /// Conv 3 × 3.
    pub conv3: ConvLayer,
    /// First dense layer (flattened features in).
    pub fc1: DenseLayer,
    /// Second dense layer.
    pub fc2: DenseLayer,
    /// The head.
    pub fc3: DenseLayer,
    /// After each convolution (empty or three).
    pub conv_norms: Vec<NormLayer>,
    /// After fc1 and fc2 (empty or two).
    pub fc_norms: Vec<NormLayer>,
    /// Between layers (ReLU in the reference).
    pub activation: Activation,
}

const POOL: usize = 2;
const KERNELS: [usize; 3] = [5, 3, 3];
/// PyTorch's defaults for the normalisation layers.
const NORM_EPS: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;

impl ConvNet {
    /// The plain ConvNet of `shape` with `activation`, initialised as PyTorch does.
    pub fn new(
        shape: ConvNetShape,
        activation: Activation,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<ConvNet> {
        let options = ConvNetOptions::new(ConvNetVariant::Plain, activation);
        ConvNet::with_options(shape, options, rng, device)
    }

    /// The variant `options` asks for.
    pub fn with_options(
        shape: ConvNetShape,
        options: ConvNetOptions,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<ConvNet> {
        let (conv_out, last) = conv_sides(shape)?;
        let [c0, c1, c2, c3] = shape.channels;
        let [h1, h2] = shape.hidden;
        let flat = c3 * last[0] * last[1];
        let mut conv = |i, o, k| conv_layer(options, i, o, k, rng, device);
        let (conv1, conv2, conv3) = (conv(c0, c1, 5)?, conv(c1, c2, 3)?, conv(c2, c3, 3)?);
        let mut dense = |i, o| dense_layer(options, i, o, rng, device);
        let (fc1, fc2, fc3) = (dense(flat, h1)?, dense(h1, h2)?, dense(h2, shape.classes)?);
        let norm_affine = options.norm_affine;
        let (conv_norms, fc_norms) = match options.variant {
            ConvNetVariant::FcLayerNorm => (vec![], layer_norms(&[h1, h2], norm_affine, device)?),
            ConvNetVariant::ConvAndFcLayerNorm => {
                let features: Vec<usize> = [c1, c2, c3]
                    .iter()
                    .zip(&conv_out)
                    .map(|(c, [h, w])| c * h * w)
                    .collect();
                (
                    layer_norms(&features, norm_affine, device)?,
                    layer_norms(&[h1, h2], norm_affine, device)?,
                )
            }
            ConvNetVariant::BatchNorm => (
                batch_norms(&[c1, c2, c3], device)?,
                batch_norms(&[h1, h2], device)?,
            ),
            _ => (vec![], vec![]),
        };
        Ok(ConvNet {
            conv1,
            conv2,
            conv3,
            fc1,
            fc2,
            fc3,
            conv_norms,
            fc_norms,
            activation: options.activation,
        })
    }

    fn convs(&self) -> [(&'static str, &ConvLayer); 3] {
        [
            ("conv1", &self.conv1),
            ("conv2", &self.conv2),
            ("conv3", &self.conv3),
        ]
    }
}

/// Each convolution's output side (before its pooling) and the side after the last pooling.
fn conv_sides(shape: ConvNetShape) -> Result<([[usize; 2]; 3], [usize; 2])> {
    let mut side = shape.image;
    let mut outputs = [[0; 2]; 3];
    for (out, k) in outputs.iter_mut().zip(KERNELS) {
        side = side.map(|s| s.saturating_sub(k - 1));
        *out = side;
        side = side.map(|s| s / POOL);
    }
    if side.contains(&0)
        || shape.channels.contains(&0)
        || shape.hidden.contains(&0)
        || shape.classes == 0
    {
        return Err(Error::value(
            "ConvNet::new",
            format!("{shape:?}"),
            "images of at least 24 × 24 and non-zero widths",
        ));
    }
    Ok((outputs, side))
}

fn conv_layer(
    options: ConvNetOptions,
    inputs: usize,
    outputs: usize,
    k: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<ConvLayer> {
    let (kernel, conv, bias) = ([k, k], Conv2dOptions::default(), options.conv_bias);
    Ok(match options.variant {
        ConvNetVariant::Norm => ConvLayer::Norm(NormConv2d::new(
            inputs,
            outputs,
            kernel,
            conv,
            bias,
            options.k,
            options.fan_in_correction,
            rng,
            device,
        )?),
        ConvNetVariant::Svd => ConvLayer::Svd(SvdConv2d::new(
            inputs,
            outputs,
            kernel,
            conv,
            bias,
            options.k,
            options.allow_negative_sigma,
            rng,
            device,
        )?),
        _ => ConvLayer::Conv(Conv2d::new(
            inputs, outputs, kernel, conv, bias, rng, device,
        )?),
    })
}

fn dense_layer(
    options: ConvNetOptions,
    inputs: usize,
    outputs: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<DenseLayer> {
    let bias = options.linear_bias;
    Ok(match options.variant {
        ConvNetVariant::Norm => DenseLayer::Normalized(NormalizedWeightsLinear::new(
            inputs,
            outputs,
            bias,
            WeightNormForm::SingleRescale,
            options.k,
            rng,
            device,
        )?),
        ConvNetVariant::Svd => DenseLayer::Svd(SvdLinear::new(
            inputs,
            outputs,
            bias,
            RELU_CORRECTION,
            options.allow_negative_sigma,
            rng,
            device,
        )?),
        _ => DenseLayer::Linear(Linear::new(
            inputs,
            outputs,
            bias,
            Init::PytorchDefault,
            rng,
            device,
        )?),
    })
}

/// Layer norms over each of `features` (with or without a trained `γ`, `β`).
pub(crate) fn layer_norms(
    features: &[usize],
    affine: bool,
    device: &Device,
) -> Result<Vec<NormLayer>> {
    features
        .iter()
        .map(|&f| {
            let norm = if affine {
                LayerNorm::new(f, NORM_EPS, device)?
            } else {
                LayerNorm::without_affine(f, NORM_EPS, device)?
            };
            Ok(NormLayer::Layer(norm))
        })
        .collect()
}

/// Batch norms over each of `channels`, with PyTorch's momentum and ε.
pub(crate) fn batch_norms(channels: &[usize], device: &Device) -> Result<Vec<NormLayer>> {
    channels
        .iter()
        .map(|&c| {
            Ok(NormLayer::Batch(BatchNorm::new(
                c,
                BN_MOMENTUM,
                NORM_EPS,
                device,
            )?))
        })
        .collect()
}

impl Module for ConvNet {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let pool = MaxPool2d::new(POOL);
        let mut h = x.clone();
        for (i, (name, conv)) in self.convs().into_iter().enumerate() {
            let mut z = conv.call(name, &h, ctx)?;
            if let Some(norm) = self.conv_norms.get(i) {
                z = norm.apply(&format!("conv_norms.{i}"), &z, ctx)?;
            }
            h = pool.forward(&self.activation.apply(&z)?, ctx)?;
            if i == 2 {
                h = h.reshape(&[h.shape()[0] as isize, -1])?;
            }
            ctx.tap(&format!("hidden.{i}"), &h);
        }
        for (i, (name, fc)) in [("fc1", &self.fc1), ("fc2", &self.fc2)]
            .into_iter()
            .enumerate()
        {
            let mut z = fc.call(name, &h, ctx)?;
            if let Some(norm) = self.fc_norms.get(i) {
                z = norm.apply(&format!("fc_norms.{i}"), &z, ctx)?;
            }
            h = self.activation.apply(&z)?;
            ctx.tap(&format!("hidden.{}", i + 3), &h);
        }
        ctx.tap("features", &h);
        self.fc3.call("fc3", &h, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        let mut parts = Parts::default();
        for (name, conv) in self.convs() {
            parts = parts.child_dyn(name, conv.module());
        }
        for (name, fc) in [("fc1", &self.fc1), ("fc2", &self.fc2), ("fc3", &self.fc3)] {
            parts = parts.child_dyn(name, fc.module());
        }
        for (prefix, norms) in [
            ("conv_norms", &self.conv_norms),
            ("fc_norms", &self.fc_norms),
        ] {
            for (i, norm) in norms.iter().enumerate() {
                parts = parts.child_dyn(format!("{prefix}.{i}"), norm.module());
            }
        }
        parts
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let mut parts = PartsMut::default()
            .child_dyn("conv1", self.conv1.module_mut())
            .child_dyn("conv2", self.conv2.module_mut())
            .child_dyn("conv3", self.conv3.module_mut())
            .child_dyn("fc1", self.fc1.module_mut())
            .child_dyn("fc2", self.fc2.module_mut())
            .child_dyn("fc3", self.fc3.module_mut());
        for (prefix, norms) in [
            ("conv_norms", &mut self.conv_norms),
            ("fc_norms", &mut self.fc_norms),
        ] {
            for (i, norm) in norms.iter_mut().enumerate() {
                parts = parts.child_dyn(format!("{prefix}.{i}"), norm.module_mut());
            }
        }
        parts
    }
}
