//! VGG-16 (Simonyan & Zisserman 2015) as torchvision builds it (`vgg16`, configuration "D"):
//! thirteen 3 × 3 convolutions with padding 1 and ReLU in five stages of widths
//! `64, 128, 256, 512, 512` (two, two, three, three, three convolutions), each stage ended by a
//! 2 × 2 max-pool; an adaptive average pool to 7 × 7; the classifier `25088 → 4096 → 4096 → classes`
//! with ReLU and dropout (p = 0.5) after each hidden layer.
//!
//! - `vgg_custom` (the plasticity studies' `vgg_custom`, `lls src/models/vgg_custom.py`): the last
//!   linear layer replaced by one with `classes` outputs; convolutions Kaiming-normal over the
//!   fan-out with bias 0 (torchvision's initialisation), the first two linear layers `N(0, 0.01)`
//!   with bias 0 (torchvision's), the replaced head Kaiming-normal with bias 0 (the studies'
//!   re-initialisation).
//! - `vgg_custom_norm`: every convolution a [`NormConv2d`] and the classifier
//!   [`NormalizedWeightsLinear`] (single rescale) layers. The reference's factory key points at a
//!   function `vgg_normalized_custom` that its module `vgg_normalized_conv.py` does not define; this
//!   builds what that file's classes describe.
//!
//! The adaptive pool to 7 × 7 is exact for feature maps whose sides are multiples of 7 (an average
//! pool) and for 1 × 1 maps (each value repeated 49 times, as PyTorch's adaptive pool does; the
//! 32 × 32 inputs of the studies end at 1 × 1); other sides are an error naming the shape.
//! [`VggOptions::pooled_side`] = 1 builds the 32 × 32 equivalent instead: a global average pool and
//! a `512 → 4096` first classifier layer (for 1 × 1 maps the 7 × 7 form's first layer is this one
//! with 49 weight blocks summed). The full form's `25088 × 4096` weight (411 MB) exceeds wgpu's
//! 128 MiB per buffer: on wgpu devices building it is a `DeviceLimit` error, and the 32 × 32 form
//! is the one to use.
//!
//! Children `features.<i>` (the convolutions, numbered 0–12), `classifier.0` … `classifier.2`; taps
//! `hidden.0` … `hidden.4` (each stage's pooled output), `hidden.5`, `hidden.6` (the classifier's
//! hidden layers after ReLU) and `features` (= `hidden.6`).

use crate::layers::{
    Activation, Conv2d, Dropout, Init, Linear, MaxPool2d, NormConv2d, NormalizedWeightsLinear,
    WeightNormForm, RELU_CORRECTION,
};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::zoo::{ConvLayer, DenseLayer};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng, Tensor};

/// Convolutions per stage of VGG-16.
const STAGES: [usize; 5] = [2, 2, 3, 3, 3];

/// The sizes of a [`Vgg`]: the reference's by default, smaller for tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VggOptions {
    /// Input channels (3).
    pub in_channels: usize,
    /// Widths of the five stages (`64, 128, 256, 512, 512`).
    pub widths: [usize; 5],
    /// Width of the classifier's hidden layers (4096).
    pub hidden: usize,
    /// Outputs.
    pub classes: usize,
    /// `vgg_custom_norm` instead of `vgg_custom`.
    pub normalized: bool,
    /// Dropout probability of the classifier (0.5).
    pub dropout: f32,
    /// Side of the adaptive pool: 7 (torchvision) or 1 (the 32 × 32 equivalent).
    pub pooled_side: usize,
}

impl VggOptions {
    /// VGG-16's sizes with `classes` outputs.
    pub fn reference(classes: usize, normalized: bool) -> VggOptions {
        VggOptions {
            in_channels: 3,
            widths: [64, 128, 256, 512, 512],
            hidden: 4096,
            classes,
            normalized,
            dropout: 0.5,
            pooled_side: 7,
        }
    }
}

/// VGG-16 and its normalised variant (see the module docs).
#[derive(Clone, Debug)]
pub struct Vgg {
    /// The thirteen convolutions.
    pub convs: Vec<ConvLayer>,
    /// The three classifier layers.
    pub classifier: Vec<DenseLayer>,
    /// After each hidden classifier layer.
    pub dropout: Dropout,
    /// Side of the adaptive pool (7 or 1).
    pub pooled_side: usize,
}

impl Vgg {
    /// The network `options` describes.
    pub fn new(options: VggOptions, rng: &mut Rng, device: &Device) -> Result<Vgg> {
        let o = options;
        if o.in_channels == 0
            || o.widths.contains(&0)
            || o.hidden == 0
            || o.classes == 0
            || !(o.pooled_side == 7 || o.pooled_side == 1)
        {
            return Err(Error::value(
                "Vgg::new",
                format!("{o:?}"),
                "non-zero channel counts, widths and classes, and a pooled side of 7 or 1",
            ));
        }
        let mut convs = Vec::with_capacity(13);
        let mut channels = o.in_channels;
        for (stage, &count) in STAGES.iter().enumerate() {
            for _ in 0..count {
                convs.push(vgg_conv(
                    o.normalized,
                    channels,
                    o.widths[stage],
                    rng,
                    device,
                )?);
                channels = o.widths[stage];
            }
        }
        let flat = channels * o.pooled_side * o.pooled_side;
        let dims = [
            (flat, o.hidden),
            (o.hidden, o.hidden),
            (o.hidden, o.classes),
        ];
        let classifier = dims
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| vgg_dense(o.normalized, i == 2, a, b, rng, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Vgg {
            convs,
            classifier,
            dropout: Dropout::new(o.dropout)?,
            pooled_side: o.pooled_side,
        })
    }
}

fn vgg_conv(
    normalized: bool,
    inputs: usize,
    outputs: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<ConvLayer> {
    let options = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    if normalized {
        let conv = NormConv2d::new(
            inputs,
            outputs,
            [3, 3],
            options,
            true,
            RELU_CORRECTION,
            true,
            rng,
            device,
        )?;
        return Ok(ConvLayer::Norm(conv));
    }
    let mut conv = Conv2d::new(inputs, outputs, [3, 3], options, true, rng, device)?;
    kaiming_fan_out(&mut conv, rng, device)?;
    Ok(ConvLayer::Conv(conv))
}

/// Kaiming-normal weights over the fan-out and a zero bias (torchvision's convolution init).
pub(crate) fn kaiming_fan_out(conv: &mut Conv2d, rng: &mut Rng, device: &Device) -> Result<()> {
    let shape = conv.weight.value().shape().to_vec();
    let fan_out = shape[0] * shape[2] * shape[3];
    conv.weight
        .set(Init::KaimingNormal.sample(&shape, fan_out, fan_out, rng, device)?)?;
    if let Some(b) = conv.bias.as_mut() {
        b.set(Tensor::zeros(&[shape[0]], device)?)?;
    }
    Ok(())
}

fn vgg_dense(
    normalized: bool,
    head: bool,
    inputs: usize,
    outputs: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<DenseLayer> {
    if normalized {
        let form = WeightNormForm::SingleRescale;
        let layer = NormalizedWeightsLinear::new(
            inputs,
            outputs,
            true,
            form,
            RELU_CORRECTION,
            rng,
            device,
        )?;
        return Ok(DenseLayer::Normalized(layer));
    }
    let mut layer = Linear::new(inputs, outputs, true, Init::KaimingNormal, rng, device)?;
    if !head {
        let w = Tensor::rand_normal(&[inputs, outputs], 0.0, 0.01, rng, device)?;
        layer.weight.set(w)?;
    }
    Ok(DenseLayer::Linear(layer))
}

/// PyTorch's adaptive average pool to `side × side` for the sides it is exact on (see the module
/// docs).
fn adaptive_pool(x: &Var, side: usize) -> Result<Var> {
    let s = x.shape().to_vec();
    let (h, w) = (s[2], s[3]);
    if side == 1 {
        return x.adaptive_avg_pool2d_1x1();
    }
    if h == 1 && w == 1 {
        return x.expand(&[s[0], s[1], side, side]);
    }
    if h.is_multiple_of(side) && w.is_multiple_of(side) {
        let kernel = [h / side, w / side];
        let options = Conv2dOptions {
            stride: kernel,
            ..Default::default()
        };
        return x.avg_pool2d(kernel, options);
    }
    Err(Error::shape(
        "Vgg::forward",
        format!("feature maps {s:?} before the adaptive pool"),
        "sides that are multiples of 7, or 1 × 1 (inputs of 224 × 224 or 32 × 32)",
    ))
}

impl Module for Vgg {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let pool = MaxPool2d::new(2);
        let mut h = x.clone();
        let mut index = 0;
        for (stage, &count) in STAGES.iter().enumerate() {
            for _ in 0..count {
                let z = self.convs[index].call(&format!("features.{index}"), &h, ctx)?;
                h = Activation::Relu.apply(&z)?;
                index += 1;
            }
            h = pool.forward(&h, ctx)?;
            ctx.tap(&format!("hidden.{stage}"), &h);
        }
        let pooled = adaptive_pool(&h, self.pooled_side)?;
        h = pooled.reshape(&[pooled.shape()[0] as isize, -1])?;
        for i in 0..2 {
            let z = self.classifier[i].call(&format!("classifier.{i}"), &h, ctx)?;
            h = self.dropout.forward(&Activation::Relu.apply(&z)?, ctx)?;
            ctx.tap(&format!("hidden.{}", 5 + i), &h);
        }
        ctx.tap("features", &h);
        self.classifier[2].call("classifier.2", &h, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        let mut parts = Parts::default();
        for (i, conv) in self.convs.iter().enumerate() {
            parts = parts.child_dyn(format!("features.{i}"), conv.module());
        }
        for (i, dense) in self.classifier.iter().enumerate() {
            parts = parts.child_dyn(format!("classifier.{i}"), dense.module());
        }
        parts
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let mut parts = PartsMut::default();
        for (i, conv) in self.convs.iter_mut().enumerate() {
            parts = parts.child_dyn(format!("features.{i}"), conv.module_mut());
        }
        for (i, dense) in self.classifier.iter_mut().enumerate() {
            parts = parts.child_dyn(format!("classifier.{i}"), dense.module_mut());
        }
        parts
    }
}
