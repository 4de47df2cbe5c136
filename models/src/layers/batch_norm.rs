//! Batch normalisation (Ioffe & Szegedy 2015) over `[N, C]` or `[N, C, H, W]` inputs, per channel:
//! training mode normalises with the batch statistics `y = (x − μ_B)/√(σ²_B + ε)·γ + β` (σ²_B
//! biased) and updates running estimates `r ← (1 − m)·r + m·s` (with the unbiased variance, as
//! PyTorch); eval mode normalises with the running estimates.

use crate::layers::Affine;
use crate::module::{Buffer, Ctx, Module, Parts, PartsMut};
use dynlab_autodiff::{no_grad, Var};
use dynlab_runtime::{Device, Error, Result, Tensor};

/// Batch normalisation per channel with running statistics (buffers `running_mean`,
/// `running_var`, updated by the forward pass in training mode).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// `γ`, `β` per channel.
    pub affine: Affine,
    /// Running mean per channel (starts at 0).
    pub running_mean: Buffer,
    /// Running unbiased variance per channel (starts at 1).
    pub running_var: Buffer,
    /// Weight `m` of the newest batch in the running estimates.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
}

impl BatchNorm {
    /// γ = 1, β = 0, running mean 0 and variance 1 for `channels` channels.
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
            running_mean: Buffer::new(Tensor::zeros(&[channels], device)?),
            running_var: Buffer::new(Tensor::ones(&[channels], device)?),
            momentum,
            eps,
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
}

impl Module for BatchNorm {
    /// Normalises `x`; in training mode also updates the running statistics.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
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
        let (mean, var) = if ctx.is_training() {
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
                self.running_mean.set(
                    self.running_mean
                        .get()
                        .mul_scalar(1.0 - m)?
                        .add(&mean.value().reshape(&[-1])?.mul_scalar(m)?)?,
                )?;
                self.running_var.set(
                    self.running_var
                        .get()
                        .mul_scalar(1.0 - m)?
                        .add(&unbiased.mul_scalar(m)?)?,
                )
            })?;
            (mean, var)
        } else {
            (
                Var::constant(self.running_mean.get().reshape(&shape)?),
                Var::constant(self.running_var.get().reshape(&shape)?),
            )
        };
        let normalised = x.sub(&mean)?.mul(&var.add_scalar(self.eps)?.rsqrt()?)?;
        self.affine.apply(&normalised, &shape)
    }

    fn parts(&self) -> Parts<'_> {
        let parts = self.affine.parts();
        parts
            .buffer("running_mean", &self.running_mean)
            .buffer("running_var", &self.running_var)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.affine.parts_mut()
    }
}
