//! Differentiable ops on [`Var`]. Each forward runs the runtime's kernel; each backward rule is
//! written with `Var` ops, so gradients can be differentiated again. Rules that need the op's output
//! use the saved tensor when only first-order gradients are wanted, and recompute it as a `Var` from
//! the inputs when the sweep records (`create_graph`), so higher derivatives are exact.
//!
//! Gradients of broadcast operands are summed back to the operand's shape ([`Var::sum_to`]).

use crate::var::{recording, Var};
use dynlab_runtime::{Error, MatmulOptions, Result, Tensor};

/// The op's output for a rule: the saved tensor, or a recomputation on the tape when recording.
fn output_for_rule(saved: &Tensor, recompute: impl FnOnce() -> Result<Var>) -> Result<Var> {
    if recording() {
        recompute()
    } else {
        Ok(Var::constant(saved.clone()))
    }
}

/// A 0/1 mask as a constant (its derivative is zero almost everywhere).
fn mask(t: Tensor) -> Var {
    Var::constant(t)
}

impl Var {
    // ---------- broadcasting binary ops ----------

    pub fn add(&self, other: &Var) -> Result<Var> {
        let (sa, sb) = (self.shape().to_vec(), other.shape().to_vec());
        let value = self.value().add(other.value())?;
        Ok(Var::from_op("add", value, &[self, other], move |g| {
            Ok(vec![Some(g.sum_to(&sa)?), Some(g.sum_to(&sb)?)])
        }))
    }

    pub fn sub(&self, other: &Var) -> Result<Var> {
        let (sa, sb) = (self.shape().to_vec(), other.shape().to_vec());
        let value = self.value().sub(other.value())?;
        Ok(Var::from_op("sub", value, &[self, other], move |g| {
            Ok(vec![Some(g.sum_to(&sa)?), Some(g.neg()?.sum_to(&sb)?)])
        }))
    }

    pub fn mul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().mul(other.value())?;
        Ok(Var::from_op("mul", value, &[self, other], move |g| {
            Ok(vec![
                Some(g.mul(&b)?.sum_to(a.shape())?),
                Some(g.mul(&a)?.sum_to(b.shape())?),
            ])
        }))
    }

    pub fn div(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().div(other.value())?;
        Ok(Var::from_op("div", value, &[self, other], move |g| {
            let ga = g.div(&b)?;
            let gb = ga.mul(&a)?.div(&b)?.neg()?;
            Ok(vec![
                Some(ga.sum_to(a.shape())?),
                Some(gb.sum_to(b.shape())?),
            ])
        }))
    }

    /// `self ^ other` elementwise (`self > 0` for a finite gradient in `other`).
    pub fn pow(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().pow(other.value())?;
        Ok(Var::from_op("pow", value, &[self, other], move |g| {
            let y = a.pow(&b)?;
            let ga = g.mul(&b)?.mul(&y)?.div(&a)?;
            let gb = g.mul(&y)?.mul(&a.log()?)?;
            Ok(vec![
                Some(ga.sum_to(a.shape())?),
                Some(gb.sum_to(b.shape())?),
            ])
        }))
    }

    /// Elementwise maximum; a tie sends the gradient to `self`.
    pub fn maximum(&self, other: &Var) -> Result<Var> {
        self.select_by(
            other,
            "maximum",
            self.value().ge(other.value())?,
            self.value().maximum(other.value())?,
        )
    }

    /// Elementwise minimum; a tie sends the gradient to `self`.
    pub fn minimum(&self, other: &Var) -> Result<Var> {
        self.select_by(
            other,
            "minimum",
            self.value().le(other.value())?,
            self.value().minimum(other.value())?,
        )
    }

    fn select_by(
        &self,
        other: &Var,
        name: &'static str,
        pick_self: Tensor,
        value: Tensor,
    ) -> Result<Var> {
        let (sa, sb) = (self.shape().to_vec(), other.shape().to_vec());
        let m = mask(pick_self);
        Ok(Var::from_op(name, value, &[self, other], move |g| {
            let ga = g.mul(&m)?;
            let gb = g.sub(&ga)?;
            Ok(vec![Some(ga.sum_to(&sa)?), Some(gb.sum_to(&sb)?)])
        }))
    }

    /// `cond != 0 ? a : b` (no gradient to `cond`).
    pub fn where_(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        let value = Tensor::where_(cond, a.value(), b.value())?;
        let c = mask(cond.ne_scalar(0.0)?);
        Ok(Var::from_op("where", value, &[a, b], move |g| {
            let ga = g.mul(&c)?;
            let gb = g.sub(&ga)?;
            Ok(vec![Some(ga.sum_to(&sa)?), Some(gb.sum_to(&sb)?)])
        }))
    }

    /// `value` where `mask != 0`, this variable elsewhere.
    pub fn masked_fill(&self, mask_t: &Tensor, value: f32) -> Result<Var> {
        let fill = Var::constant(Tensor::scalar(value, self.value().device())?);
        Var::where_(mask_t, &fill, self)
    }

    // ---------- scalar forms ----------

    pub fn add_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().add_scalar(s)?;
        Ok(Var::from_op("add_scalar", value, &[self], |g| {
            Ok(vec![Some(g.clone())])
        }))
    }

    pub fn sub_scalar(&self, s: f32) -> Result<Var> {
        self.add_scalar(-s)
    }

    pub fn mul_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().mul_scalar(s)?;
        Ok(Var::from_op("mul_scalar", value, &[self], move |g| {
            Ok(vec![Some(g.mul_scalar(s)?)])
        }))
    }

    pub fn div_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().div_scalar(s)?;
        Ok(Var::from_op("div_scalar", value, &[self], move |g| {
            Ok(vec![Some(g.div_scalar(s)?)])
        }))
    }

    /// `s - x`.
    pub fn rsub_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().rsub_scalar(s)?;
        Ok(Var::from_op("rsub_scalar", value, &[self], |g| {
            Ok(vec![Some(g.neg()?)])
        }))
    }

    /// `s / x`.
    pub fn rdiv_scalar(&self, s: f32) -> Result<Var> {
        self.recip()?.mul_scalar(s)
    }

    /// `s ^ x = exp(x ln s)` for `s > 0`.
    pub fn scalar_pow(&self, s: f32) -> Result<Var> {
        self.mul_scalar(s.ln())?.exp()
    }

    /// `maximum(x, s)`; a tie sends the gradient to `x`.
    pub fn maximum_scalar(&self, s: f32) -> Result<Var> {
        self.maximum(&Var::constant(Tensor::scalar(s, self.value().device())?))
    }

    /// `minimum(x, s)`; a tie sends the gradient to `x`.
    pub fn minimum_scalar(&self, s: f32) -> Result<Var> {
        self.minimum(&Var::constant(Tensor::scalar(s, self.value().device())?))
    }

    /// `x ^ p`.
    pub fn powf(&self, p: f32) -> Result<Var> {
        let x = self.clone();
        let value = self.value().powf(p)?;
        Ok(Var::from_op("powf", value, &[self], move |g| {
            let d = if p == 2.0 {
                x.mul_scalar(2.0)?
            } else {
                x.powf(p - 1.0)?.mul_scalar(p)?
            };
            Ok(vec![Some(g.mul(&d)?)])
        }))
    }

    pub fn clamp(&self, min: f32, max: f32) -> Result<Var> {
        let value = self.value().clamp(min, max)?;
        let inside = mask(
            self.value()
                .ge_scalar(min)?
                .mul(&self.value().le_scalar(max)?)?,
        );
        Ok(Var::from_op("clamp", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&inside)?)])
        }))
    }

    // ---------- unary ----------

    pub fn neg(&self) -> Result<Var> {
        let value = self.value().neg()?;
        Ok(Var::from_op("neg", value, &[self], |g| {
            Ok(vec![Some(g.neg()?)])
        }))
    }

    pub fn exp(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().exp()?);
        let saved = value.clone();
        Ok(Var::from_op("exp", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&output_for_rule(&saved, || x.exp())?)?)])
        }))
    }

    pub fn log(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log()?;
        Ok(Var::from_op("log", value, &[self], move |g| {
            Ok(vec![Some(g.div(&x)?)])
        }))
    }

    pub fn log1p(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log1p()?;
        Ok(Var::from_op("log1p", value, &[self], move |g| {
            Ok(vec![Some(g.div(&x.add_scalar(1.0)?)?)])
        }))
    }

    pub fn sqrt(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().sqrt()?);
        let saved = value.clone();
        Ok(Var::from_op("sqrt", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.sqrt())?;
            Ok(vec![Some(g.div(&y)?.mul_scalar(0.5)?)])
        }))
    }

    /// `1 / sqrt(x)`.
    pub fn rsqrt(&self) -> Result<Var> {
        self.sqrt()?.recip()
    }

    pub fn square(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().square()?;
        Ok(Var::from_op("square", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&x)?.mul_scalar(2.0)?)])
        }))
    }

    /// `1 / x`.
    pub fn recip(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().recip()?);
        let saved = value.clone();
        Ok(Var::from_op("recip", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.recip())?;
            Ok(vec![Some(g.mul(&y.square()?)?.neg()?)])
        }))
    }

    pub fn abs(&self) -> Result<Var> {
        let value = self.value().abs()?;
        let s = mask(self.value().sign()?);
        Ok(Var::from_op("abs", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&s)?)])
        }))
    }

    pub fn relu(&self) -> Result<Var> {
        let value = self.value().relu()?;
        let m = mask(self.value().gt_scalar(0.0)?);
        Ok(Var::from_op("relu", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&m)?)])
        }))
    }

    pub fn leaky_relu(&self, slope: f32) -> Result<Var> {
        let value = self.value().leaky_relu(slope)?;
        // d = 1 for x > 0, slope otherwise: slope + (1 - slope)·[x > 0].
        let d = mask(
            self.value()
                .gt_scalar(0.0)?
                .mul_scalar(1.0 - slope)?
                .add_scalar(slope)?,
        );
        Ok(Var::from_op("leaky_relu", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&d)?)])
        }))
    }

    pub fn tanh(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().tanh()?);
        let saved = value.clone();
        Ok(Var::from_op("tanh", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.tanh())?;
            Ok(vec![Some(g.mul(&y.square()?.rsub_scalar(1.0)?)?)])
        }))
    }

    pub fn sigmoid(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().sigmoid()?);
        let saved = value.clone();
        Ok(Var::from_op("sigmoid", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.sigmoid())?;
            Ok(vec![Some(g.mul(&y)?.mul(&y.rsub_scalar(1.0)?)?)])
        }))
    }

    pub fn sin(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().sin()?;
        Ok(Var::from_op("sin", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&x.cos()?)?)])
        }))
    }

    pub fn cos(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().cos()?;
        Ok(Var::from_op("cos", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&x.sin()?)?.neg()?)])
        }))
    }

    /// The error function; `erf'(x) = 2/√π · exp(−x²)`.
    pub fn erf(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().erf()?;
        Ok(Var::from_op("erf", value, &[self], move |g| {
            let d = x
                .square()?
                .neg()?
                .exp()?
                .mul_scalar(std::f32::consts::FRAC_2_SQRT_PI)?;
            Ok(vec![Some(g.mul(&d)?)])
        }))
    }

    /// GELU (erf form): `gelu'(x) = Φ(x) + x φ(x)`.
    pub fn gelu(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().gelu()?;
        Ok(Var::from_op("gelu", value, &[self], move |g| {
            let cdf = x
                .mul_scalar(std::f32::consts::FRAC_1_SQRT_2)?
                .erf()?
                .add_scalar(1.0)?
                .mul_scalar(0.5)?;
            let pdf = x
                .square()?
                .mul_scalar(-0.5)?
                .exp()?
                .mul_scalar(0.398_942_3)?;
            Ok(vec![Some(g.mul(&cdf.add(&x.mul(&pdf)?)?)?)])
        }))
    }

    /// GELU (tanh approximation) with its exact derivative.
    pub fn gelu_tanh(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().gelu_tanh()?;
        Ok(Var::from_op("gelu_tanh", value, &[self], move |g| {
            const K: f32 = 0.797_884_6;
            const C: f32 = 0.044_715;
            let t = x.add(&x.powf(3.0)?.mul_scalar(C)?)?.mul_scalar(K)?.tanh()?;
            let du = x
                .square()?
                .mul_scalar(3.0 * C)?
                .add_scalar(1.0)?
                .mul_scalar(K)?;
            let d = t.add_scalar(1.0)?.mul_scalar(0.5)?.add(
                &x.mul(&t.square()?.rsub_scalar(1.0)?)?
                    .mul(&du)?
                    .mul_scalar(0.5)?,
            )?;
            Ok(vec![Some(g.mul(&d)?)])
        }))
    }

    // ---------- reductions ----------

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Var> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self
            .shape()
            .len()
            .checked_sub(shape.len())
            .ok_or_else(|| Error::Shape {
                op: "Var::sum_to",
                got: format!("{:?}", self.shape()),
                expected: format!("a shape that broadcasts from {shape:?}"),
            })?;
        let mut g = self.clone();
        for _ in 0..lead {
            g = g.sum(0, false)?;
        }
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 && g.shape()[d] != 1 {
                g = g.sum(d as isize, true)?;
            }
        }
        Ok(g)
    }

    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let shape = self.shape().to_vec();
        let rank = shape.len() as isize;
        let value = self.value().sum(axis, keepdim)?;
        Ok(Var::from_op("sum", value, &[self], move |g| {
            let g = if keepdim {
                g.clone()
            } else {
                g.unsqueeze(if axis < 0 { axis + rank } else { axis })?
            };
            Ok(vec![Some(g.expand(&shape)?)])
        }))
    }

    pub fn sum_all(&self) -> Result<Var> {
        let shape = self.shape().to_vec();
        let value = self.value().sum_all()?;
        Ok(Var::from_op("sum_all", value, &[self], move |g| {
            let ones: Vec<isize> = vec![1; shape.len()];
            Ok(vec![Some(g.reshape(&ones)?.expand(&shape)?)])
        }))
    }

    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let n = self.value().shape()[normalize(axis, self.shape().len())?];
        self.sum(axis, keepdim)?.div_scalar(n as f32)
    }

    pub fn mean_all(&self) -> Result<Var> {
        let n = self.value().numel();
        self.sum_all()?.div_scalar(n as f32)
    }

    /// Variance along `axis` (two-pass; `unbiased` divides by n − 1).
    pub fn var(&self, axis: isize, unbiased: bool, keepdim: bool) -> Result<Var> {
        let n = self.value().shape()[normalize(axis, self.shape().len())?];
        let centered = self.sub(&self.mean(axis, true)?)?;
        centered
            .square()?
            .sum(axis, keepdim)?
            .div_scalar(n as f32 - if unbiased { 1.0 } else { 0.0 })
    }

    /// Maximum along `axis`; the gradient goes to the first maximal element (as `argmax`).
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let index = self.value().argmax(axis, true)?;
        self.gather(axis, &index)?.squeeze_if(axis, !keepdim)
    }

    /// Minimum along `axis`; the gradient goes to the first minimal element.
    pub fn min(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let index = self.value().argmin(axis, true)?;
        self.gather(axis, &index)?.squeeze_if(axis, !keepdim)
    }

    fn squeeze_if(&self, axis: isize, squeeze: bool) -> Result<Var> {
        if squeeze {
            self.squeeze(axis)
        } else {
            Ok(self.clone())
        }
    }

    /// p-norm along `axis` for finite `p > 0` (`‖x‖_p = (Σ|x|^p)^{1/p}`).
    pub fn norm(&self, p: f32, axis: isize, keepdim: bool) -> Result<Var> {
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::Value {
                op: "Var::norm",
                got: format!("p = {p}"),
                expected: "a finite p > 0".to_string(),
            });
        }
        if p == 2.0 {
            return self.square()?.sum(axis, keepdim)?.sqrt();
        }
        self.abs()?.powf(p)?.sum(axis, keepdim)?.powf(1.0 / p)
    }

    /// `ln Σ exp(x)` along `axis`; gradient `softmax(x)`.
    pub fn logsumexp(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let x = self.clone();
        let rank = self.shape().len() as isize;
        let value = self.value().logsumexp(axis, keepdim)?;
        Ok(Var::from_op("logsumexp", value, &[self], move |g| {
            let g = if keepdim {
                g.clone()
            } else {
                g.unsqueeze(if axis < 0 { axis + rank } else { axis })?
            };
            Ok(vec![Some(g.mul(&x.softmax(axis)?)?)])
        }))
    }

    // ---------- softmax family ----------

    /// `softmax(x)`; backward `y ⊙ (g − Σ g ⊙ y)`.
    pub fn softmax(&self, axis: isize) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().softmax(axis)?);
        let saved = value.clone();
        Ok(Var::from_op("softmax", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.softmax(axis))?;
            let dot = g.mul(&y)?.sum(axis, true)?;
            Ok(vec![Some(y.mul(&g.sub(&dot)?)?)])
        }))
    }

    /// `log_softmax(x)`; backward `g − softmax(x) · Σ g`.
    pub fn log_softmax(&self, axis: isize) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log_softmax(axis)?;
        Ok(Var::from_op("log_softmax", value, &[self], move |g| {
            let p = x.softmax(axis)?;
            Ok(vec![Some(g.sub(&p.mul(&g.sum(axis, true)?)?)?)])
        }))
    }

    /// Per-sample cross-entropy of `[N, C]` logits and `[N]` i32 labels (the fused kernel);
    /// backward `(softmax(x) − onehot(y)) ⊙ g`.
    pub fn cross_entropy_per_sample(&self, labels: &Tensor) -> Result<Var> {
        let x = self.clone();
        let value = self.value().cross_entropy_per_sample(labels)?;
        let onehot = Var::constant(labels.one_hot(self.shape()[1])?);
        Ok(Var::from_op("cross_entropy", value, &[self], move |g| {
            let d = x.softmax(1)?.sub(&onehot)?;
            Ok(vec![Some(d.mul(&g.unsqueeze(1)?)?)])
        }))
    }

    /// Mean cross-entropy over the batch.
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Var> {
        self.cross_entropy_per_sample(labels)?.mean_all()
    }

    // ---------- views and copies ----------

    pub fn reshape(&self, shape: &[isize]) -> Result<Var> {
        let original: Vec<isize> = self.shape().iter().map(|&s| s as isize).collect();
        let value = self.value().reshape(shape)?;
        Ok(Var::from_op("reshape", value, &[self], move |g| {
            Ok(vec![Some(g.reshape(&original)?)])
        }))
    }

    pub fn permute(&self, dims: &[usize]) -> Result<Var> {
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            if d < inverse.len() {
                inverse[d] = i;
            }
        }
        let value = self.value().permute(dims)?;
        Ok(Var::from_op("permute", value, &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    pub fn transpose(&self, a: isize, b: isize) -> Result<Var> {
        let value = self.value().transpose(a, b)?;
        Ok(Var::from_op("transpose", value, &[self], move |g| {
            Ok(vec![Some(g.transpose(a, b)?)])
        }))
    }

    pub fn expand(&self, shape: &[usize]) -> Result<Var> {
        let original = self.shape().to_vec();
        let value = self.value().expand(shape)?;
        Ok(Var::from_op("expand", value, &[self], move |g| {
            Ok(vec![Some(g.sum_to(&original)?)])
        }))
    }

    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        let value = self.value().unsqueeze(dim)?;
        let original: Vec<isize> = self.shape().iter().map(|&s| s as isize).collect();
        Ok(Var::from_op("unsqueeze", value, &[self], move |g| {
            Ok(vec![Some(g.reshape(&original)?)])
        }))
    }

    pub fn squeeze(&self, dim: isize) -> Result<Var> {
        let value = self.value().squeeze(dim)?;
        let original: Vec<isize> = self.shape().iter().map(|&s| s as isize).collect();
        Ok(Var::from_op("squeeze", value, &[self], move |g| {
            Ok(vec![Some(g.reshape(&original)?)])
        }))
    }

    /// Elements `start..start + len` along `dim`; backward pads the gradient with zeros.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Var> {
        let shape = self.shape().to_vec();
        let d = normalize(dim, shape.len())?;
        let value = self.value().narrow(dim, start, len)?;
        Ok(Var::from_op("narrow", value, &[self], move |g| {
            let zeros = |n: usize| -> Result<Var> {
                let mut s = shape.clone();
                s[d] = n;
                Ok(Var::constant(Tensor::zeros(&s, g.value().device())?))
            };
            let (before, after) = (zeros(start)?, zeros(shape[d] - start - len)?);
            Ok(vec![Some(Var::cat(&[&before, g, &after], dim)?)])
        }))
    }

    /// `x[start:end:step]` along `dim` (a gather of those positions, so the backward scatters).
    pub fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Var> {
        let size = self.shape()[normalize(dim, self.shape().len())?];
        if step == 0 || start > end || end > size {
            return Err(Error::Value {
                op: "Var::slice",
                got: format!("start={start}, end={end}, step={step} on a dimension of size {size}"),
                expected: "start <= end <= size and step >= 1".to_string(),
            });
        }
        let picks: Vec<i32> = (start..end).step_by(step).map(|i| i as i32).collect();
        let indices = Tensor::from_slice(&picks, &[picks.len()], self.value().device())?;
        self.index_select(dim, &indices)
    }

    pub fn cat(vars: &[&Var], dim: isize) -> Result<Var> {
        let tensors: Vec<&Tensor> = vars.iter().map(|v| v.value()).collect();
        let value = Tensor::cat(&tensors, dim)?;
        let sizes: Vec<usize> = vars
            .iter()
            .map(|v| v.shape()[normalize(dim, v.shape().len()).unwrap_or(0)])
            .collect();
        Ok(Var::from_op("cat", value, vars, move |g| {
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let piece = g.narrow(dim, start, n)?;
                    start += n;
                    Ok(Some(piece))
                })
                .collect()
        }))
    }

    pub fn stack(vars: &[&Var], dim: isize) -> Result<Var> {
        let expanded = vars
            .iter()
            .map(|v| v.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Var::cat(&expanded.iter().collect::<Vec<_>>(), dim)
    }

    // ---------- indexing ----------

    /// `out[c] = x[c with c[dim] := index[c]]`; backward scatters the gradient back (adding repeats).
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Var> {
        let shape = self.shape().to_vec();
        let index_t = index.clone();
        let value = self.value().gather(dim, index)?;
        Ok(Var::from_op("gather", value, &[self], move |g| {
            let zeros = Var::constant(Tensor::zeros(&shape, g.value().device())?);
            Ok(vec![Some(zeros.scatter_add(dim, &index_t, g)?)])
        }))
    }

    /// Rows along `dim` picked by the 1-D i32 `indices`.
    pub fn index_select(&self, dim: isize, indices: &Tensor) -> Result<Var> {
        let d = normalize(dim, self.shape().len())?;
        let mut view_shape = vec![1isize; self.shape().len()];
        view_shape[d] = indices.numel() as isize;
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = indices.numel();
        let index = indices.reshape(&view_shape)?.expand(&out_shape)?;
        self.gather(dim, &index)
    }

    /// `self` plus `src` added at `index` along `dim`; gradients `g` and `gather(g, dim, index)`.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Var) -> Result<Var> {
        let index_t = index.clone();
        let src_shape = src.shape().to_vec();
        let value = self.value().scatter_add(dim, index, src.value())?;
        Ok(Var::from_op("scatter_add", value, &[self, src], move |g| {
            let gs = g.gather(dim, &index_t)?;
            // `src` may be larger than `index`; its extra elements get no gradient.
            let gs = if gs.shape() == src_shape.as_slice() {
                gs
            } else {
                pad_to(&gs, &src_shape)?
            };
            Ok(vec![Some(g.clone()), Some(gs)])
        }))
    }

    // ---------- linear algebra ----------

    /// `self [..., M, K] · other [..., K, N]`; gradients `g Bᵀ` and `Aᵀ g`, summed over broadcast
    /// batch dimensions.
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().matmul(other.value())?;
        Ok(Var::from_op("matmul", value, &[self, other], move |g| {
            // Products for a parent that needs no gradient (data) are skipped.
            let ga = a
                .requires_grad()
                .then(|| g.matmul(&b.transpose(-1, -2)?)?.sum_to(a.shape()))
                .transpose()?;
            let gb = b
                .requires_grad()
                .then(|| a.transpose(-1, -2)?.matmul(g)?.sum_to(b.shape()))
                .transpose()?;
            Ok(vec![ga, gb])
        }))
    }

    /// `self · w + bias` (a dense layer) in one kernel.
    pub fn linear(&self, w: &Var, bias: &Var) -> Result<Var> {
        let (x, wc) = (self.clone(), w.clone());
        let value = self.value().matmul_with(
            w.value(),
            MatmulOptions {
                bias: Some(bias.value()),
                ..Default::default()
            },
        )?;
        let bias_shape = bias.shape().to_vec();
        Ok(Var::from_op("linear", value, &[self, w, bias], move |g| {
            let gx = x
                .requires_grad()
                .then(|| g.matmul(&wc.transpose(-1, -2)?)?.sum_to(x.shape()))
                .transpose()?;
            let gw = x.transpose(-1, -2)?.matmul(g)?.sum_to(wc.shape())?;
            Ok(vec![gx, Some(gw), Some(g.sum_to(&bias_shape)?)])
        }))
    }
}

fn normalize(axis: isize, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    if (0..rank as isize).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::Axis {
            op: "autodiff",
            axis,
            rank,
        })
    }
}

/// Zero-pads `v` at the end of each dimension up to `shape`.
fn pad_to(v: &Var, shape: &[usize]) -> Result<Var> {
    let mut g = v.clone();
    for (d, &size) in shape.iter().enumerate() {
        let have = g.shape()[d];
        if have < size {
            let mut s = g.shape().to_vec();
            s[d] = size - have;
            let zeros = Var::constant(Tensor::zeros(&s, v.value().device())?);
            g = Var::cat(&[&g, &zeros], d as isize)?;
        }
    }
    Ok(g)
}
