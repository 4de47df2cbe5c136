//! ResNet-18 (He et al. 2016) as torchvision builds it (`resnet18`): a 7 × 7 stride-2 convolution
//! (padding 3, no bias), batch norm, ReLU and a 3 × 3 stride-2 max-pool (padding 1); four stages of
//! two basic blocks of widths `64, 128, 256, 512` (the first block of stages 2–4 strides by 2 and
//! projects its shortcut with a 1 × 1 stride-2 convolution and batch norm); a global average pool;
//! a linear head. A basic block is `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))` with 3 × 3
//! convolutions (padding 1, no bias).
//!
//! - `resnet_custom` (`lls src/models/resnet_custom.py`): the head replaced by one with `classes`
//!   outputs (PyTorch's default init); convolutions Kaiming-normal over the fan-out, batch norms
//!   `γ = 1, β = 0` (torchvision's initialisation).
//! - `resnet_normalized_conv` and `full_rank_resnet_custom` (`resnet_normalized_conv.py`): every
//!   convolution a [`NormConv2d`] (`k = √2`, fan-in correction, no bias), batch norm kept, the head a
//!   [`NormalizedWeightsLinear`] (single rescale). The reference's `full_rank_resnet_custom` is that
//!   same network: despite its class name ("skip to last") no extra skip path exists in its code,
//!   so both names build this one. Their activation comes from the config (ReLU by default), as
//!   in the reference.
//!
//! Children as torchvision names them: `conv1`, `bn1`, `layer1.0` … `layer4.1` (each with `conv1`,
//! `bn1`, `conv2`, `bn2` and, where it projects, `downsample.0`, `downsample.1`), `fc`. Taps
//! `hidden.0` (after the stem's pool), `hidden.1` … `hidden.4` (each stage's output), `hidden.5`
//! (the pooled features) and `features` (= `hidden.5`).

use crate::layers::{
    Activation, BatchNorm, Conv2d, Init, Linear, MaxPool2d, NormConv2d, NormalizedWeightsLinear,
    WeightNormForm, RELU_CORRECTION,
};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::zoo::vgg::kaiming_fan_out;
use crate::zoo::{ConvLayer, DenseLayer};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng};

/// PyTorch's batch-norm defaults.
const BN_MOMENTUM: f32 = 0.1;
const BN_EPS: f32 = 1e-5;

/// The sizes of a [`ResNet`]: ResNet-18's by default, narrower for tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResNetOptions {
    /// Input channels (3).
    pub in_channels: usize,
    /// Width of the first stage (64; the stages are `w, 2w, 4w, 8w`).
    pub base_width: usize,
    /// Outputs.
    pub classes: usize,
    /// NormConv2d convolutions and a normalised head.
    pub normalized: bool,
    /// The nonlinearity (ReLU in torchvision; the normalised variants take it from the config).
    pub activation: Activation,
}

impl ResNetOptions {
    /// ResNet-18's sizes with `classes` outputs.
    pub fn reference(classes: usize, normalized: bool) -> ResNetOptions {
        ResNetOptions {
            in_channels: 3,
            base_width: 64,
            classes,
            normalized,
            activation: Activation::Relu,
        }
    }
}

/// One basic block (see the module docs).
#[derive(Clone, Debug)]
pub struct BasicBlock {
    /// First 3 × 3 convolution (strided in a stage's first block).
    pub conv1: ConvLayer,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// Second 3 × 3 convolution.
    pub conv2: ConvLayer,
    /// Its batch norm.
    pub bn2: BatchNorm,
    /// The projecting shortcut (1 × 1 convolution and batch norm) where the shape changes.
    pub downsample: Option<(ConvLayer, BatchNorm)>,
    /// The nonlinearity.
    pub activation: Activation,
}

/// ResNet-18 and its normalised variants (see the module docs).
#[derive(Clone, Debug)]
pub struct ResNet {
    /// The 7 × 7 stem convolution.
    pub conv1: ConvLayer,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// Eight blocks, two per stage.
    pub blocks: Vec<BasicBlock>,
    /// The head.
    pub fc: DenseLayer,
    /// The nonlinearity.
    pub activation: Activation,
}

fn conv(
    normalized: bool,
    inputs: usize,
    outputs: usize,
    k: usize,
    stride: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<ConvLayer> {
    let options = Conv2dOptions {
        stride: [stride, stride],
        padding: [k / 2, k / 2],
        ..Default::default()
    };
    if normalized {
        return Ok(ConvLayer::Norm(NormConv2d::new(
            inputs,
            outputs,
            [k, k],
            options,
            false,
            RELU_CORRECTION,
            true,
            rng,
            device,
        )?));
    }
    let mut layer = Conv2d::new(inputs, outputs, [k, k], options, false, rng, device)?;
    kaiming_fan_out(&mut layer, rng, device)?;
    Ok(ConvLayer::Conv(layer))
}

fn batch_norm(channels: usize, device: &Device) -> Result<BatchNorm> {
    BatchNorm::new(channels, BN_MOMENTUM, BN_EPS, device)
}

impl BasicBlock {
    fn new(
        activation: Activation,
        normalized: bool,
        inputs: usize,
        outputs: usize,
        stride: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<BasicBlock> {
        let downsample = (stride != 1 || inputs != outputs)
            .then(|| -> Result<(ConvLayer, BatchNorm)> {
                Ok((
                    conv(normalized, inputs, outputs, 1, stride, rng, device)?,
                    batch_norm(outputs, device)?,
                ))
            })
            .transpose()?;
        Ok(BasicBlock {
            conv1: conv(normalized, inputs, outputs, 3, stride, rng, device)?,
            bn1: batch_norm(outputs, device)?,
            conv2: conv(normalized, outputs, outputs, 3, 1, rng, device)?,
            bn2: batch_norm(outputs, device)?,
            downsample,
            activation,
        })
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let h = self.conv1.call("conv1", x, ctx)?;
        let h = self.activation.apply(&ctx.call("bn1", &self.bn1, &h)?)?;
        let h = self.conv2.call("conv2", &h, ctx)?;
        let h = ctx.call("bn2", &self.bn2, &h)?;
        let shortcut = match &self.downsample {
            Some((c, bn)) => {
                let s = c.call("downsample.0", x, ctx)?;
                ctx.call("downsample.1", bn, &s)?
            }
            None => x.clone(),
        };
        self.activation.apply(&h.add(&shortcut)?)
    }

    fn parts(&self) -> Parts<'_> {
        let mut parts = Parts::default()
            .child_dyn("conv1", self.conv1.module())
            .child("bn1", &self.bn1)
            .child_dyn("conv2", self.conv2.module())
            .child("bn2", &self.bn2);
        if let Some((c, bn)) = &self.downsample {
            parts = parts
                .child_dyn("downsample.0", c.module())
                .child("downsample.1", bn);
        }
        parts
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let mut parts = PartsMut::default()
            .child_dyn("conv1", self.conv1.module_mut())
            .child("bn1", &mut self.bn1)
            .child_dyn("conv2", self.conv2.module_mut())
            .child("bn2", &mut self.bn2);
        if let Some((c, bn)) = &mut self.downsample {
            parts = parts
                .child_dyn("downsample.0", c.module_mut())
                .child("downsample.1", bn);
        }
        parts
    }
}

impl ResNet {
    /// The network `options` describes.
    pub fn new(options: ResNetOptions, rng: &mut Rng, device: &Device) -> Result<ResNet> {
        let o = options;
        if o.in_channels == 0 || o.base_width == 0 || o.classes == 0 {
            return Err(Error::value(
                "ResNet::new",
                format!("{o:?}"),
                "non-zero channels, width and classes",
            ));
        }
        let w = o.base_width;
        let stem = conv(o.normalized, o.in_channels, w, 7, 2, rng, device)?;
        let mut blocks = Vec::with_capacity(8);
        let mut channels = w;
        for stage in 0..4 {
            let width = w << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let (act, norm) = (o.activation, o.normalized);
            blocks.push(BasicBlock::new(
                act, norm, channels, width, stride, rng, device,
            )?);
            blocks.push(BasicBlock::new(act, norm, width, width, 1, rng, device)?);
            channels = width;
        }
        let fc = if o.normalized {
            let form = WeightNormForm::SingleRescale;
            DenseLayer::Normalized(NormalizedWeightsLinear::new(
                channels,
                o.classes,
                true,
                form,
                RELU_CORRECTION,
                rng,
                device,
            )?)
        } else {
            let init = Init::PytorchDefault;
            DenseLayer::Linear(Linear::new(channels, o.classes, true, init, rng, device)?)
        };
        Ok(ResNet {
            conv1: stem,
            bn1: batch_norm(w, device)?,
            blocks,
            fc,
            activation: o.activation,
        })
    }
}

/// `layer<stage>.<block>` of block `i`.
fn block_name(i: usize) -> String {
    format!("layer{}.{}", i / 2 + 1, i % 2)
}

impl Module for ResNet {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let h = self.conv1.call("conv1", x, ctx)?;
        let h = self.activation.apply(&ctx.call("bn1", &self.bn1, &h)?)?;
        let pool = MaxPool2d {
            kernel: [3, 3],
            options: Conv2dOptions {
                stride: [2, 2],
                padding: [1, 1],
                ..Default::default()
            },
        };
        let mut h = pool.forward(&h, ctx)?;
        ctx.tap("hidden.0", &h);
        for (i, block) in self.blocks.iter().enumerate() {
            h = ctx.call(&block_name(i), block, &h)?;
            if i % 2 == 1 {
                ctx.tap(&format!("hidden.{}", i / 2 + 1), &h);
            }
        }
        let pooled = h.adaptive_avg_pool2d_1x1()?;
        let h = pooled.reshape(&[pooled.shape()[0] as isize, -1])?;
        ctx.tap("hidden.5", &h);
        ctx.tap("features", &h);
        self.fc.call("fc", &h, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        let mut parts = Parts::default()
            .child_dyn("conv1", self.conv1.module())
            .child("bn1", &self.bn1);
        for (i, block) in self.blocks.iter().enumerate() {
            parts = parts.child(block_name(i), block);
        }
        parts.child_dyn("fc", self.fc.module())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let mut parts = PartsMut::default()
            .child_dyn("conv1", self.conv1.module_mut())
            .child("bn1", &mut self.bn1);
        for (i, block) in self.blocks.iter_mut().enumerate() {
            parts = parts.child(block_name(i), block);
        }
        parts.child_dyn("fc", self.fc.module_mut())
    }
}
