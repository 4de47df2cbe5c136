//! Elementwise ops on [`Var`]: broadcasting binary ops, their scalar forms, and unary maps and
//! activations (the runtime's `ops/elementwise.rs`).

use super::{fused, mask, output_for_rule};
use crate::var::Var;
use dynlab_runtime::{Result, Tensor};

impl Var {
    /// `self + other`, broadcasting; gradient `g` to both.
    pub fn add(&self, other: &Var) -> Result<Var> {
        let value = self.value().add(other.value())?;
        Ok(Var::from_op("add", value, &[self, other], move |g| {
            Ok(vec![Some(g.clone()), Some(g.clone())])
        }))
    }

    /// `self − other`, broadcasting; gradients `g` and `−g`.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        let value = self.value().sub(other.value())?;
        Ok(Var::from_op("sub", value, &[self, other], move |g| {
            Ok(vec![Some(g.clone()), Some(g.neg()?)])
        }))
    }

    /// `self · other` elementwise, broadcasting; gradients `g·other` and `g·self`.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().mul(other.value())?;
        Ok(Var::from_op("mul", value, &[self, other], move |g| {
            Ok(vec![Some(g.mul(&b)?), Some(g.mul(&a)?)])
        }))
    }

    /// `self / other`, broadcasting; gradients `g / other` and `−g·self / other²`.
    pub fn div(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().div(other.value())?;
        Ok(Var::from_op("div", value, &[self, other], move |g| {
            let ga = g.div(&b)?;
            let gb = ga.mul(&a)?.div(&b)?.neg()?;
            Ok(vec![Some(ga), Some(gb)])
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
            Ok(vec![Some(ga), Some(gb)])
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
        let m = mask(pick_self);
        Ok(Var::from_op(name, value, &[self, other], move |g| {
            let ga = g.mul(&m)?;
            let gb = g.sub(&ga)?;
            Ok(vec![Some(ga), Some(gb)])
        }))
    }

    /// `cond != 0 ? a : b` (no gradient to `cond`).
    pub fn where_(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let value = Tensor::where_(cond, a.value(), b.value())?;
        let c = mask(cond.ne_scalar(0.0)?);
        Ok(Var::from_op("where", value, &[a, b], move |g| {
            let ga = g.mul(&c)?;
            let gb = g.sub(&ga)?;
            Ok(vec![Some(ga), Some(gb)])
        }))
    }

    /// `value` where `mask != 0`, this variable elsewhere.
    pub fn masked_fill(&self, mask_t: &Tensor, value: f32) -> Result<Var> {
        let fill = Var::constant(Tensor::scalar(value, self.value().device())?);
        Var::where_(mask_t, &fill, self)
    }

    /// `x + s`.
    pub fn add_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().add_scalar(s)?;
        Ok(Var::from_op("add_scalar", value, &[self], |g| {
            Ok(vec![Some(g.clone())])
        }))
    }

    /// `x − s`.
    pub fn sub_scalar(&self, s: f32) -> Result<Var> {
        self.add_scalar(-s)
    }

    /// `x · s`.
    pub fn mul_scalar(&self, s: f32) -> Result<Var> {
        let value = self.value().mul_scalar(s)?;
        Ok(Var::from_op("mul_scalar", value, &[self], move |g| {
            Ok(vec![Some(g.mul_scalar(s)?)])
        }))
    }

    /// `x / s`.
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

    /// `x` limited to `[min, max]`; the gradient passes where `min ≤ x ≤ max` and is 0 elsewhere.
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

    /// `−x`.
    pub fn neg(&self) -> Result<Var> {
        let value = self.value().neg()?;
        Ok(Var::from_op("neg", value, &[self], |g| {
            Ok(vec![Some(g.neg()?)])
        }))
    }

    /// `eˣ`; gradient `g·eˣ`.
    pub fn exp(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().exp()?);
        let saved = value.clone();
        Ok(Var::from_op("exp", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&output_for_rule(&saved, || x.exp())?)?)])
        }))
    }

    /// Natural logarithm; gradient `g / x`.
    pub fn log(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log()?;
        Ok(Var::from_op("log", value, &[self], move |g| {
            Ok(vec![Some(g.div(&x)?)])
        }))
    }

    /// `ln(1 + x)`; gradient `g / (1 + x)`.
    pub fn log1p(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log1p()?;
        Ok(Var::from_op("log1p", value, &[self], move |g| {
            Ok(vec![Some(g.div(&x.add_scalar(1.0)?)?)])
        }))
    }

    /// `√x`; gradient `g / (2√x)`.
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

    /// `x²`; gradient `2·g·x`.
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

    /// `|x|`; gradient `g·sign(x)` (0 at 0).
    pub fn abs(&self) -> Result<Var> {
        let value = self.value().abs()?;
        let s = mask(self.value().sign()?);
        Ok(Var::from_op("abs", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&s)?)])
        }))
    }

    /// `max(x, 0)`; gradient `g` where `x > 0`, 0 elsewhere.
    pub fn relu(&self) -> Result<Var> {
        let x = self.value().clone();
        let value = x.relu()?;
        Ok(Var::from_op("relu", value, &[self], move |g| {
            if fused() {
                return Ok(vec![Some(Var::constant(x.relu_backward(g.value())?))]);
            }
            Ok(vec![Some(g.mul(&mask(x.gt_scalar(0.0)?))?)])
        }))
    }

    /// `x` for `x > 0`, `slope·x` otherwise; gradient `g` or `slope·g`.
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

    /// Hyperbolic tangent; gradient `g·(1 − tanh²x)`.
    pub fn tanh(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().tanh()?);
        let saved = value.clone();
        Ok(Var::from_op("tanh", value, &[self], move |g| {
            if fused() {
                return Ok(vec![Some(Var::constant(saved.tanh_backward(g.value())?))]);
            }
            let y = output_for_rule(&saved, || x.tanh())?;
            Ok(vec![Some(g.mul(&y.square()?.rsub_scalar(1.0)?)?)])
        }))
    }

    /// The logistic function `σ(x) = 1 / (1 + e^{−x})`; gradient `g·σ(x)(1 − σ(x))`.
    pub fn sigmoid(&self) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().sigmoid()?);
        let saved = value.clone();
        Ok(Var::from_op("sigmoid", value, &[self], move |g| {
            if fused() {
                return Ok(vec![Some(Var::constant(
                    saved.sigmoid_backward(g.value())?,
                ))]);
            }
            let y = output_for_rule(&saved, || x.sigmoid())?;
            Ok(vec![Some(g.mul(&y)?.mul(&y.rsub_scalar(1.0)?)?)])
        }))
    }

    /// Sine; gradient `g·cos x`.
    pub fn sin(&self) -> Result<Var> {
        let x = self.clone();
        let value = self.value().sin()?;
        Ok(Var::from_op("sin", value, &[self], move |g| {
            Ok(vec![Some(g.mul(&x.cos()?)?)])
        }))
    }

    /// Cosine; gradient `−g·sin x`.
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
            if fused() {
                return Ok(vec![Some(Var::constant(
                    x.value().gelu_backward(g.value())?,
                ))]);
            }
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
            if fused() {
                let d = x.value().gelu_tanh_backward(g.value())?;
                return Ok(vec![Some(Var::constant(d))]);
            }
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
}
