//! SVD-parameterised layers of the plasticity studies (`lls src/models/SVD_FC.py`,
//! `SVD_conv.py`): a weight kept as the factors of a singular value decomposition, so that its
//! spectrum is a parameter.
//!
//! [`SvdLinear`]: `W = N diag(|Σ|) C · k` (the reference's `[out, in]` weight), `N` `out × r` and
//! `C` `r × in` with orthonormal columns / rows at initialisation, `r = min(in, out)`,
//! `Σ ~ N(1, 0.1)`, `k` the weight-correction scale (√2; no fan-in factor), bias 0.
//!
//! [`SvdConv2d`] ("channel" decomposition): the filter bank `N diag(|Σ|) C` reshaped to
//! `[O, C_in, kh, kw]`, `N` `O × r`, `C` `r × C_in·kh·kw`, `r = min(O, C_in·kh·kw)`,
//! `Σ ~ N(1, 0.3)`, scaled by `k·O / (C_in·kh·kw)`.
//!
//! `|Σ|` is used unless negative singular values are allowed. The reference's eval mode drops the
//! columns with `Σ = 0`; they contribute nothing, so both modes compute the same product here.
//!
//! [`orthogonality_penalty`] is the optional regulariser
//! `λ Σ_l [mse(N_lᵀN_l, I) + mse(C_l C_lᵀ, I)]` (λ = 1e-4 in the studies) over every SVD layer of a
//! model (`src/loss_for_regularization/regularized_loss_for_svd_conv.py`).

use crate::layers::init::{dense_product, expect_rows, zero_bias};
use crate::layers::orthogonal;
use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng, Tensor};

/// The factors `N`, `Σ`, `C` shared by both layers.
#[derive(Clone, Debug)]
pub struct SvdFactors {
    /// `N`, `[rows, r]`.
    pub n: Param,
    /// `Σ`, `[r]`.
    pub sigma: Param,
    /// `C`, `[r, cols]`.
    pub c: Param,
    /// Use `Σ` as is instead of `|Σ|`.
    pub allow_negative: bool,
}

impl SvdFactors {
    /// Orthonormal `N` (`rows × r`) and `C` (`r × cols`) and `Σ ~ N(1, sigma_std)`.
    fn new(
        rows: usize,
        cols: usize,
        sigma_std: f32,
        allow_negative: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<SvdFactors> {
        let r = rows.min(cols);
        Ok(SvdFactors {
            n: Param::new(orthogonal(rows, r, rng, device)?, ParamKind::Weight),
            sigma: Param::new(
                Tensor::rand_normal(&[r], 1.0, sigma_std, rng, device)?,
                ParamKind::Weight,
            ),
            c: Param::new(orthogonal(r, cols, rng, device)?, ParamKind::Weight),
            allow_negative,
        })
    }

    /// `N diag(|Σ|) C · scale`, `[rows, cols]`.
    pub fn product(&self, scale: f32) -> Result<Var> {
        let sigma = self.sigma.var();
        let sigma = if self.allow_negative {
            sigma.clone()
        } else {
            sigma.abs()?
        };
        self.n
            .var()
            .mul(&sigma.mul_scalar(scale)?)?
            .matmul(self.c.var())
    }

    /// `mse(NᵀN, I) + mse(CCᵀ, I)`.
    pub fn orthogonality_error(&self) -> Result<Var> {
        let n = self.n.var();
        let c = self.c.var();
        let gram_error = |g: Var| -> Result<Var> {
            let eye = Tensor::eye(g.shape()[0], n.value().device())?;
            g.sub(&Var::constant(eye))?.square()?.mean_all()
        };
        gram_error(n.transpose(0, 1)?.matmul(n)?)?.add(&gram_error(c.matmul(&c.transpose(0, 1)?)?)?)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param("n", &self.n)
            .param("sigma", &self.sigma)
            .param("c", &self.c)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("n", &mut self.n)
            .param("sigma", &mut self.sigma)
            .param("c", &mut self.c)
    }
}

/// A dense layer `y = x Wᵀ + b` with `W = N diag(|Σ|) C · k` (see the module docs).
#[derive(Clone, Debug)]
pub struct SvdLinear {
    /// `N` `[out, r]`, `Σ`, `C` `[r, in]`.
    pub factors: SvdFactors,
    /// Bias `[out]` (starts at 0).
    pub bias: Option<Param>,
    /// The correction scale `k`.
    pub k: f32,
}

impl SvdLinear {
    /// `inputs → outputs` with correction scale `k`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        k: f32,
        allow_negative: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<SvdLinear> {
        if inputs == 0 || outputs == 0 || !k.is_finite() {
            return Err(Error::value(
                "SvdLinear::new",
                format!("{inputs} → {outputs}, k {k}"),
                "non-zero widths and a finite k",
            ));
        }
        Ok(SvdLinear {
            factors: SvdFactors::new(outputs, inputs, 0.1, allow_negative, rng, device)?,
            bias: zero_bias(bias, outputs, device)?,
            k,
        })
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.factors.c.value().shape()[1]
    }
}

impl Module for SvdLinear {
    /// `x [N, in] → [N, out]`.
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        expect_rows("SvdLinear::forward", x, self.inputs())?;
        let w = self.factors.product(self.k)?.transpose(0, 1)?;
        dense_product(x, &w, self.bias.as_ref())
    }

    fn parts(&self) -> Parts<'_> {
        self.factors.parts().param("bias", self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.factors.parts_mut().param("bias", self.bias.as_mut())
    }
}

/// A convolution whose filter bank is `N diag(|Σ|) C` reshaped (see the module docs).
#[derive(Clone, Debug)]
pub struct SvdConv2d {
    /// `N` `[O, r]`, `Σ`, `C` `[r, C_in·kh·kw]`.
    pub factors: SvdFactors,
    /// Bias `[O]` (starts at 0).
    pub bias: Option<Param>,
    /// `[O, C_in, kh, kw]`.
    pub filter_shape: [usize; 4],
    /// Stride, padding and dilation (one group).
    pub options: Conv2dOptions,
    /// `k·O / (C_in·kh·kw)`.
    pub scale: f32,
}

impl SvdConv2d {
    /// `outputs` filters of size `kernel` over `inputs` channels with correction scale `k`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        bias: bool,
        k: f32,
        allow_negative: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<SvdConv2d> {
        let taps = inputs * kernel[0] * kernel[1];
        if taps == 0 || outputs == 0 || options.groups != 1 || !k.is_finite() {
            return Err(Error::value(
                "SvdConv2d::new",
                format!(
                    "{inputs} → {outputs} channels, kernel {kernel:?}, {} groups, k {k}",
                    options.groups
                ),
                "non-zero sizes, one group and a finite k",
            ));
        }
        Ok(SvdConv2d {
            factors: SvdFactors::new(outputs, taps, 0.3, allow_negative, rng, device)?,
            bias: zero_bias(bias, outputs, device)?,
            filter_shape: [outputs, inputs, kernel[0], kernel[1]],
            options,
            scale: k * outputs as f32 / taps as f32,
        })
    }

    /// The filters the convolution uses.
    pub fn effective_weight(&self) -> Result<Var> {
        let shape: Vec<isize> = self.filter_shape.iter().map(|&d| d as isize).collect();
        self.factors.product(self.scale)?.reshape(&shape)
    }
}

impl Module for SvdConv2d {
    /// `[N, C, H, W] → [N, O, Ho, Wo]`.
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        let bias = self.bias.as_ref().map(Param::var);
        x.conv2d(&self.effective_weight()?, bias, self.options)
    }

    fn parts(&self) -> Parts<'_> {
        self.factors.parts().param("bias", self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.factors.parts_mut().param("bias", self.bias.as_mut())
    }
}

/// `λ Σ_l [mse(N_lᵀN_l, I) + mse(C_l C_lᵀ, I)]` over every [`SvdLinear`] and [`SvdConv2d`] in
/// `model`; `None` when it has none.
pub fn orthogonality_penalty(model: &dyn Module, lambda: f32) -> Result<Option<Var>> {
    let mut terms: Vec<Result<Var>> = Vec::new();
    model.visit(&mut |_, m| {
        let any = m.as_any();
        let factors = any
            .downcast_ref::<SvdLinear>()
            .map(|l| &l.factors)
            .or_else(|| any.downcast_ref::<SvdConv2d>().map(|l| &l.factors));
        if let Some(f) = factors {
            terms.push(f.orthogonality_error());
        }
    });
    let mut total: Option<Var> = None;
    for term in terms {
        let term = term?;
        total = Some(match total {
            Some(t) => t.add(&term)?,
            None => term,
        });
    }
    total.map(|t| t.mul_scalar(lambda)).transpose()
}
