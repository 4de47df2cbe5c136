//! Lookup table: row `i` of a `[count, dim]` weight for each index `i` (PyTorch's N(0, 1) init).

use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use crate::replicas::replica_axis;
use dynlab_autodiff::Var;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

/// `count` learned vectors of width `dim`, looked up by integer index.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The table, `[count, dim]`.
    pub weight: Param,
}

impl Embedding {
    /// A table of `count` rows drawn from N(0, 1).
    pub fn new(count: usize, dim: usize, rng: &mut Rng, device: &Device) -> Result<Embedding> {
        let w = Tensor::rand_normal(&[count, dim], 0.0, 1.0, rng, device)?;
        Ok(Embedding {
            weight: Param::new(w, ParamKind::Embedding),
        })
    }

    /// Width of each vector.
    pub fn dim(&self) -> usize {
        let shape = self.weight.value().shape();
        shape[shape.len() - 1]
    }
}

impl Module for Embedding {
    /// Integer indices of any shape `S` (an i32 tensor, as a constant `Var`) → embeddings `S + [dim]`;
    /// with `R` replicas, indices `[R] + S` look up replica `r`'s table (`[R, count, dim]`) for row `r`.
    fn forward(&self, indices: &Var, ctx: &mut Ctx) -> Result<Var> {
        let op = "Embedding::forward";
        let replicas = replica_axis(ctx, op, indices.shape())?;
        let indices = indices.value();
        if indices.dtype() != DType::I32 {
            return Err(Error::DType {
                op,
                got: indices.dtype().to_string(),
                expected: "i32 indices".into(),
            });
        }
        let mut shape: Vec<isize> = indices.shape().iter().map(|&d| d as isize).collect();
        shape.push(self.dim() as isize);
        let rows = match replicas {
            None => self
                .weight
                .var()
                .index_select(0, &indices.reshape(&[-1])?)?,
            Some(r) => {
                // Row `r` gathers from table `r`: index [R, M, dim] along the table's rows.
                let flat = indices.reshape(&[r as isize, -1, 1])?;
                let m = flat.shape()[1];
                let index = flat.expand(&[r, m, self.dim()])?.contiguous()?;
                self.weight.var().gather(1, &index)?
            }
        };
        rows.reshape(&shape)
    }

    fn replicable(&self) -> bool {
        true
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default().param("weight", &self.weight)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default().param("weight", &mut self.weight)
    }
}
