//! Views and copies on [`Var`]: reshapes, permutations, expansion, narrowing, slicing,
//! concatenation and stacking.

use super::normalize;
use crate::var::Var;
use dynlab_runtime::{Error, Result, Tensor};

impl Var {
    /// The same elements in a new shape (one `-1` entry is inferred); the gradient is reshaped back.
    pub fn reshape(&self, shape: &[isize]) -> Result<Var> {
        let original: Vec<isize> = self.shape().iter().map(|&s| s as isize).collect();
        let value = self.value().reshape(shape)?;
        Ok(Var::from_op("reshape", value, &[self], move |g| {
            Ok(vec![Some(g.reshape(&original)?)])
        }))
    }

    /// Dimensions reordered: output dimension `i` is input dimension `dims[i]`; the gradient is
    /// permuted back.
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

    /// Dimensions `a` and `b` swapped (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Var> {
        let value = self.value().transpose(a, b)?;
        Ok(Var::from_op("transpose", value, &[self], move |g| {
            Ok(vec![Some(g.transpose(a, b)?)])
        }))
    }

    /// Broadcast to `shape` without copying; the gradient is `g` itself, which the backward sweep sums
    /// back to this variable's shape.
    pub fn expand(&self, shape: &[usize]) -> Result<Var> {
        let value = self.value().expand(shape)?;
        Ok(Var::from_op("expand", value, &[self], |g| {
            Ok(vec![Some(g.clone())])
        }))
    }

    /// A size-1 dimension inserted at `dim`.
    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        let value = self.value().unsqueeze(dim)?;
        let original: Vec<isize> = self.shape().iter().map(|&s| s as isize).collect();
        Ok(Var::from_op("unsqueeze", value, &[self], move |g| {
            Ok(vec![Some(g.reshape(&original)?)])
        }))
    }

    /// The size-1 dimension `dim` removed.
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

    /// Concatenation along `dim` (the other dimensions must match); each input's gradient is its
    /// slice of `g`.
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

    /// The variables stacked along a new dimension `dim` (all of one shape).
    pub fn stack(vars: &[&Var], dim: isize) -> Result<Var> {
        let expanded = vars
            .iter()
            .map(|v| v.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Var::cat(&expanded.iter().collect::<Vec<_>>(), dim)
    }
}
