//! Convolution and pooling layers over NCHW images, and flattening.
//!
//! [`Conv2d`]: `y = W ⋆ x + b` with `W [O, C/G, KH, KW]` (cross-correlation, as PyTorch), through
//! [`Var::conv2d`]. Its default initialisation is PyTorch's: `W, b ~ U(−1/√fan_in, 1/√fan_in)`
//! with `fan_in = C/G · KH · KW` (what `kaiming_uniform_(a = √5)` amounts to).

use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng, Tensor};

/// A 2-D convolution layer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Filters `[O, C/G, KH, KW]`.
    pub weight: Param,
    /// Bias `[O]`.
    pub bias: Option<Param>,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// `outputs` filters of size `kernel` over `inputs` channels, initialised as PyTorch does.
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        bias: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Conv2d> {
        let groups = options.groups;
        if groups == 0
            || !inputs.is_multiple_of(groups)
            || !outputs.is_multiple_of(groups)
            || kernel.contains(&0)
        {
            return Err(Error::value(
                "Conv2d::new",
                format!("{inputs} → {outputs} channels, kernel {kernel:?}, {groups} groups"),
                "channel counts divisible by a positive group count and a non-empty kernel",
            ));
        }
        let fan_in = inputs / groups * kernel[0] * kernel[1];
        let bound = 1.0 / (fan_in as f32).sqrt();
        let shape = [outputs, inputs / groups, kernel[0], kernel[1]];
        let weight = Tensor::rand_uniform(&shape, -bound, bound, rng, device)?;
        let bias = bias
            .then(|| Tensor::rand_uniform(&[outputs], -bound, bound, rng, device))
            .transpose()?;
        Ok(Conv2d {
            weight: Param::new(weight, ParamKind::Weight),
            bias: bias.map(|b| Param::new(b, ParamKind::Bias)),
            options,
        })
    }
}

impl Module for Conv2d {
    /// `[N, C, H, W] → [N, O, Ho, Wo]`.
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let bias = self.bias.as_ref().map(Param::var);
        x.conv2d(self.weight.var(), bias, self.options)
    }

    fn parts(&self) -> Parts<'_> {
        let parts = Parts::default().param("weight", &self.weight);
        parts.param("bias", self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let parts = PartsMut::default().param("weight", &mut self.weight);
        parts.param("bias", self.bias.as_mut())
    }
}

/// Max pooling over `kernel` windows (padding excluded from the max).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: [usize; 2],
    /// Stride (PyTorch's default: the window size), padding and dilation.
    pub options: Conv2dOptions,
}

impl MaxPool2d {
    /// Non-overlapping `k × k` windows (stride `k`).
    pub fn new(k: usize) -> MaxPool2d {
        MaxPool2d {
            kernel: [k, k],
            options: Conv2dOptions {
                stride: [k, k],
                ..Default::default()
            },
        }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        x.max_pool2d(self.kernel, self.options)
    }

    /// Pooling takes `[N, C, H, W]` only.
    fn replicable(&self) -> bool {
        false
    }
}

/// `[N, …] → [N, ∏…]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let n = *x
            .shape()
            .first()
            .ok_or_else(|| Error::shape("Flatten::forward", "a 0-d input", "[N, ...]"))?;
        x.reshape(&[n as isize, -1])
    }

    /// Flattens from the second axis (a replica axis would be flattened into the rows).
    fn replicable(&self) -> bool {
        false
    }
}
