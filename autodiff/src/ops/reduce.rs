//! Reductions on [`Var`] along an axis or over all elements, and [`Var::sum_to`], the inverse of
//! broadcasting.

use super::normalize;
use crate::var::Var;
use dynlab_runtime::{Error, Result};

impl Var {
    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting; the backward sweep
    /// applies it to every rule's gradients).
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

    /// Sum along `axis` (negative counts from the end); `keepdim` keeps it as size 1. The gradient
    /// broadcasts `g` back along the axis.
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

    /// Sum of every element, as a 0-d variable; the gradient broadcasts `g` to every element.
    pub fn sum_all(&self) -> Result<Var> {
        let shape = self.shape().to_vec();
        let value = self.value().sum_all()?;
        Ok(Var::from_op("sum_all", value, &[self], move |g| {
            let ones: Vec<isize> = vec![1; shape.len()];
            Ok(vec![Some(g.reshape(&ones)?.expand(&shape)?)])
        }))
    }

    /// Mean along `axis`: the sum divided by the axis length.
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Var> {
        let n = self.value().shape()[normalize(axis, self.shape().len())?];
        self.sum(axis, keepdim)?.div_scalar(n as f32)
    }

    /// Mean of every element, as a 0-d variable.
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
}
