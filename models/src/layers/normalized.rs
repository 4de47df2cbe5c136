//! The plasticity studies' normalised-weight layers (`lls src/models/normalized_weights_FC.py`,
//! `normalized_weights_conv_layer.py`): the raw weight is renormalised on every forward pass and a
//! learnable scale sets its norm, so that the effective weights keep a fixed scale however the raw
//! ones drift.
//!
//! [`NormConv2d`], per output channel `c` (`W_c` the filter, `s_c` learnable, init 1):
//! `W_eff,c = W_c / (‖W_c‖₂ + 1e-8) · s_c · k / √fan_in`, with `k` the weight-correction scale (√2
//! for ReLU outputs) and `fan_in = C_in·kh·kw` with fan-in correction, else 1. Raw `W` is
//! Kaiming-uniform over the fan-out, the bias 0.
//!
//! [`NormalizedWeightsLinear`], per output unit `i` (row `W_i` of the reference's `[out, in]`
//! weight; a column of ours, stored `[in, out]` like [`crate::layers::Linear`]), in three forms:
//! - [`WeightNormForm::SingleRescale`] (`NormalizedWeightsLinear`):
//!   `W_eff,i = W_i · rsqrt(mean_j W_ij² + 1e-8) · g · k/√in`, one scalar `g` (init 1);
//! - [`WeightNormForm::PerChannel`] (`NormalizedRescalePerChannelWeightsLinear`):
//!   `W_eff,i = W_i · rsqrt(Σ_j W_ij² + 1e-8) · g_i · k` (no `1/√in`: the reference's choice);
//! - [`WeightNormForm::BatchNormed`] (`BatchNormedWeightsLinear`): `W_eff,i = W_i · g_i · (k/√in) / m`,
//!   `m` a scalar EMA of the batch mean of the inputs, `m ← (1 − α)·m + α·mean(x)` with α = 0.01,
//!   starting at 1, updated (before use) in training mode only. It divides by the inputs' *mean*,
//!   not their spread, as the reference does.
//!
//! Raw weights are Kaiming-normal over the fan-in for the first two forms and standard normal for
//! the batch-normed one (the reference re-initialises only the first two); biases start at 0.

use crate::layers::init::{dense_product, expect_rows, zero_bias};
use crate::layers::Init;
use crate::module::{Buffer, Ctx, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::{no_grad, Var};
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng, Tensor};

/// Added to the norms before dividing (the reference's constant).
const NORM_EPS: f32 = 1e-8;
/// The reference's default weight-correction scale `k` (He's gain for ReLU).
pub const RELU_CORRECTION: f32 = std::f32::consts::SQRT_2;

/// A convolution whose filters are renormalised per output channel (see the module docs).
#[derive(Clone, Debug)]
pub struct NormConv2d {
    /// Raw filters `[O, C/G, KH, KW]`.
    pub weight: Param,
    /// `s_c`, one per output channel.
    pub scale: Param,
    /// Bias `[O]` (starts at 0).
    pub bias: Option<Param>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
    /// `k / √fan_in` (or `k` without fan-in correction).
    pub correction: f32,
}

impl NormConv2d {
    /// `outputs` filters of size `kernel` over `inputs` channels, with correction scale `k`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        bias: bool,
        k: f32,
        fan_in_correction: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<NormConv2d> {
        let groups = options.groups;
        if groups == 0
            || !inputs.is_multiple_of(groups)
            || !outputs.is_multiple_of(groups)
            || kernel.contains(&0)
            || outputs == 0
            || !k.is_finite()
        {
            return Err(Error::value(
                "NormConv2d::new",
                format!("{inputs} → {outputs} channels, kernel {kernel:?}, {groups} groups, k {k}"),
                "non-zero channel counts divisible by a positive group count, a non-empty kernel and a finite k",
            ));
        }
        let taps = kernel[0] * kernel[1];
        let fan_in = if fan_in_correction { inputs * taps } else { 1 };
        let shape = [outputs, inputs / groups, kernel[0], kernel[1]];
        let weight =
            Init::KaimingUniform.sample(&shape, outputs * taps, outputs * taps, rng, device)?;
        Ok(NormConv2d {
            weight: Param::new(weight, ParamKind::Weight),
            scale: Param::new(Tensor::ones(&[outputs], device)?, ParamKind::Norm),
            bias: zero_bias(bias, outputs, device)?,
            options,
            correction: k / (fan_in as f32).sqrt(),
        })
    }

    /// The filters the convolution uses, `W / (‖W_c‖ + 1e-8) · s_c · k/√fan_in`.
    pub fn effective_weight(&self) -> Result<Var> {
        let w = self.weight.var();
        let norms = w
            .square()?
            .sum(3, true)?
            .sum(2, true)?
            .sum(1, true)?
            .sqrt()?
            .add_scalar(NORM_EPS)?;
        let scale = self.scale.var().reshape(&[-1, 1, 1, 1])?;
        w.div(&norms)?.mul(&scale.mul_scalar(self.correction)?)
    }
}

impl Module for NormConv2d {
    /// `[N, C, H, W] → [N, O, Ho, Wo]`.
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let bias = self.bias.as_ref().map(Param::var);
        x.conv2d(&self.effective_weight()?, bias, self.options)
    }

    fn parts(&self) -> Parts<'_> {
        let parts = Parts::default()
            .param("weight", &self.weight)
            .param("scale", &self.scale);
        parts.param("bias", self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let parts = PartsMut::default()
            .param("weight", &mut self.weight)
            .param("scale", &mut self.scale);
        parts.param("bias", self.bias.as_mut())
    }
}

/// Which normalised linear layer (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNormForm {
    /// Unit RMS per output unit, one learnable scalar for the layer.
    SingleRescale,
    /// Unit norm per output unit, a learnable scale per unit.
    PerChannel,
    /// Divided by an EMA of the inputs' batch mean, a learnable scale per unit.
    BatchNormed,
}

/// A dense layer with renormalised weights (see the module docs).
#[derive(Clone, Debug)]
pub struct NormalizedWeightsLinear {
    /// Raw weight `[in, out]`.
    pub weight: Param,
    /// `g`: `[1]` for [`WeightNormForm::SingleRescale`], `[out]` otherwise.
    pub scale: Param,
    /// Bias `[out]` (starts at 0).
    pub bias: Option<Param>,
    /// Which form.
    pub form: WeightNormForm,
    /// The correction scale `k`.
    pub k: f32,
    /// `m`, the EMA of the inputs' mean (`[1]`, starts at 1); used by the batch-normed form only.
    pub input_mean: Buffer,
    /// The EMA's weight of the newest batch (0.01).
    pub alpha: f32,
}

impl NormalizedWeightsLinear {
    /// A layer of `form` from `inputs` to `outputs` with correction scale `k`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        form: WeightNormForm,
        k: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<NormalizedWeightsLinear> {
        if inputs == 0 || outputs == 0 || !k.is_finite() {
            return Err(Error::value(
                "NormalizedWeightsLinear::new",
                format!("{inputs} → {outputs}, k {k}"),
                "non-zero widths and a finite k",
            ));
        }
        let weight = match form {
            WeightNormForm::BatchNormed => {
                Tensor::rand_normal(&[inputs, outputs], 0.0, 1.0, rng, device)?
            }
            _ => Init::KaimingNormal.sample(&[inputs, outputs], inputs, outputs, rng, device)?,
        };
        let scales = if form == WeightNormForm::SingleRescale {
            1
        } else {
            outputs
        };
        Ok(NormalizedWeightsLinear {
            weight: Param::new(weight, ParamKind::Weight),
            scale: Param::new(Tensor::ones(&[scales], device)?, ParamKind::Norm),
            bias: zero_bias(bias, outputs, device)?,
            form,
            k,
            input_mean: Buffer::new(Tensor::ones(&[1], device)?),
            alpha: 0.01,
        })
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.weight.value().shape()[0]
    }

    /// The weight the product uses (for the batch-normed form, with the current `m`).
    pub fn effective_weight(&self) -> Result<Var> {
        let w = self.weight.var();
        let root_in = (self.inputs() as f32).sqrt();
        let g = self.scale.var();
        match self.form {
            WeightNormForm::SingleRescale => {
                let inv = w.square()?.mean(0, true)?.add_scalar(NORM_EPS)?.rsqrt()?;
                w.mul(&inv)?.mul(&g.mul_scalar(self.k / root_in)?)
            }
            WeightNormForm::PerChannel => {
                let inv = w.square()?.sum(0, true)?.add_scalar(NORM_EPS)?.rsqrt()?;
                w.mul(&inv)?.mul(&g.mul_scalar(self.k)?)
            }
            WeightNormForm::BatchNormed => {
                let m = Var::constant(self.input_mean.get());
                w.mul(&g.mul_scalar(self.k / root_in)?)?.div(&m)
            }
        }
    }

    /// `m ← (1 − α)·m + α·mean(x)` (the batch-normed form, training mode).
    fn track_input_mean(&self, x: &Var) -> Result<()> {
        no_grad(|| {
            let batch_mean = x.value().mean_all()?.reshape(&[1])?;
            self.input_mean.set(
                self.input_mean
                    .get()
                    .mul_scalar(1.0 - self.alpha)?
                    .add(&batch_mean.mul_scalar(self.alpha)?)?,
            )
        })
    }
}

impl Module for NormalizedWeightsLinear {
    /// `x [N, in] → [N, out]`.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        expect_rows("NormalizedWeightsLinear::forward", x, self.inputs())?;
        if self.form == WeightNormForm::BatchNormed && ctx.is_training() {
            self.track_input_mean(x)?;
        }
        dense_product(x, &self.effective_weight()?, self.bias.as_ref())
    }

    fn parts(&self) -> Parts<'_> {
        let parts = Parts::default()
            .param("weight", &self.weight)
            .param("scale", &self.scale)
            .param("bias", self.bias.as_ref());
        if self.form == WeightNormForm::BatchNormed {
            parts.buffer("input_mean", &self.input_mean)
        } else {
            parts
        }
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("weight", &mut self.weight)
            .param("scale", &mut self.scale)
            .param("bias", self.bias.as_mut())
    }
}
