//! Indexing on [`Var`]: gather and scatter-add, index-select and index-add (each pair the other's
//! adjoint).

use super::normalize;
use crate::var::Var;
use dynlab_runtime::{Result, Tensor};

impl Var {
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

    /// Rows along `dim` picked by the 1-D i32 `indices`; backward `index_add` (a segment sum over
    /// the sorted indices when large, see `Tensor::index_add`).
    pub fn index_select(&self, dim: isize, indices: &Tensor) -> Result<Var> {
        let d = normalize(dim, self.shape().len())?;
        let size = self.shape()[d];
        let value = self.value().index_select(dim, indices)?;
        let indices = indices.clone();
        Ok(Var::from_op("index_select", value, &[self], move |g| {
            Ok(vec![Some(g.index_add(d as isize, &indices, size)?)])
        }))
    }

    /// The adjoint of `index_select`: `size` slices along `dim`, slice `indices[k]` receiving
    /// `self`'s slice `k`; backward `index_select`.
    pub fn index_add(&self, dim: isize, indices: &Tensor, size: usize) -> Result<Var> {
        let value = self.value().index_add(dim, indices, size)?;
        let indices = indices.clone();
        Ok(Var::from_op("index_add", value, &[self], move |g| {
            Ok(vec![Some(g.index_select(dim, &indices)?)])
        }))
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
