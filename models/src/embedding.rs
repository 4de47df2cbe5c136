//! Lookup table: row `i` of a `[count, dim]` weight for each index `i` (PyTorch's N(0, 1) init).

use crate::module::{Module, Param, ParamKind};
use dynlab_autodiff::Var;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Param,
}

impl Embedding {
    pub fn new(count: usize, dim: usize, rng: &mut Rng, device: &Device) -> Result<Embedding> {
        let w = Tensor::rand_normal(&[count, dim], 0.0, 1.0, rng, device)?;
        Ok(Embedding {
            weight: Param::new(w, ParamKind::Embedding),
        })
    }

    pub fn dim(&self) -> usize {
        self.weight.value().shape()[1]
    }

    /// Integer indices of any shape `S` → embeddings `S + [dim]`.
    pub fn forward(&self, indices: &Tensor) -> Result<Var> {
        if indices.dtype() != DType::I32 {
            return Err(Error::DType {
                op: "Embedding::forward",
                got: indices.dtype().to_string(),
                expected: "i32 indices".into(),
            });
        }
        let flat = indices.reshape(&[-1])?;
        let rows = self.weight.var().index_select(0, &flat)?;
        let mut shape: Vec<isize> = indices.shape().iter().map(|&d| d as isize).collect();
        shape.push(self.dim() as isize);
        rows.reshape(&shape)
    }
}

impl Module for Embedding {
    fn params(&self) -> Vec<(String, &Param)> {
        vec![("weight".to_string(), &self.weight)]
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        vec![("weight".to_string(), &mut self.weight)]
    }
}
