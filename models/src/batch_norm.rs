//! Batch normalisation (Ioffe & Szegedy 2015) over `[N, C]` or `[N, C, H, W]` inputs, per channel:
//! training mode normalises with the batch statistics `y = (x − μ_B)/√(σ²_B + ε)·γ + β` (σ²_B
//! biased) and updates running estimates `r ← (1 − m)·r + m·s` (with the unbiased variance, as
//! PyTorch); eval mode normalises with the running estimates.

use crate::affine::Affine;
use crate::module::{Module, Param};
use dynlab_autodiff::{no_grad, Var};
use dynlab_runtime::{Device, Error, Result, Tensor};

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub affine: Affine,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub momentum: f32,
    pub eps: f32,
    pub training: bool,
}

impl BatchNorm {
    pub fn new(channels: usize, momentum: f32, eps: f32, device: &Device) -> Result<BatchNorm> {
        if !((0.0..=1.0).contains(&momentum) && eps > 0.0 && eps.is_finite()) {
            return Err(Error::value(
                "BatchNorm::new",
                format!("momentum {momentum}, eps {eps}"),
                "momentum in [0, 1] and eps > 0",
            ));
        }
        Ok(BatchNorm {
            affine: Affine::new(channels, device)?,
            running_mean: Tensor::zeros(&[channels], device)?,
            running_var: Tensor::ones(&[channels], device)?,
            momentum,
            eps,
            training: true,
        })
    }

    /// Shape that broadcasts a per-channel vector against the input.
    fn channel_shape(rank: usize) -> Vec<isize> {
        if rank == 4 {
            vec![1, -1, 1, 1]
        } else {
            vec![1, -1]
        }
    }

    /// Normalises `x`; in training mode also updates the running statistics.
    pub fn forward(&mut self, x: &Var) -> Result<Var> {
        let op = "BatchNorm::forward";
        let c = self.affine.features();
        let rank = x.shape().len();
        if !(rank == 2 || rank == 4) || x.shape()[1] != c {
            return Err(Error::shape(
                op,
                format!("input {:?}", x.shape()),
                format!("[N, {c}] or [N, {c}, H, W]"),
            ));
        }
        let shape = Self::channel_shape(rank);
        let (mean, var) = if self.training {
            let count: usize = x
                .shape()
                .iter()
                .enumerate()
                .filter(|(d, _)| *d != 1)
                .map(|(_, s)| s)
                .product();
            if count < 2 {
                return Err(Error::shape(
                    op,
                    format!("input {:?}", x.shape()),
                    "more than one value per channel in training mode",
                ));
            }
            let mut mean = x.mean(0, true)?;
            let mut sq = x.sub(&mean)?;
            if rank == 4 {
                mean = x.mean(3, true)?.mean(2, true)?.mean(0, true)?;
                sq = x.sub(&mean)?;
            }
            let centred_sq = sq.square()?;
            let var = if rank == 4 {
                centred_sq.mean(3, true)?.mean(2, true)?.mean(0, true)?
            } else {
                centred_sq.mean(0, true)?
            };
            no_grad(|| -> Result<()> {
                let m = self.momentum;
                let unbiased = var
                    .value()
                    .reshape(&[-1])?
                    .mul_scalar(count as f32 / (count - 1) as f32)?;
                self.running_mean = self
                    .running_mean
                    .mul_scalar(1.0 - m)?
                    .add(&mean.value().reshape(&[-1])?.mul_scalar(m)?)?;
                self.running_var = self
                    .running_var
                    .mul_scalar(1.0 - m)?
                    .add(&unbiased.mul_scalar(m)?)?;
                Ok(())
            })?;
            (mean, var)
        } else {
            (
                Var::constant(self.running_mean.reshape(&shape)?),
                Var::constant(self.running_var.reshape(&shape)?),
            )
        };
        let normalised = x.sub(&mean)?.mul(&var.add_scalar(self.eps)?.rsqrt()?)?;
        self.affine.apply(&normalised, &shape)
    }
}

impl Module for BatchNorm {
    fn params(&self) -> Vec<(String, &Param)> {
        self.affine.params()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        self.affine.params_mut()
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
