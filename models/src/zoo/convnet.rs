//! The loss-of-plasticity studies' ConvNet (Dohare et al. 2024, `lop/nets/conv_net.py`): conv
//! 3→32 k5, ReLU, max-pool 2; conv 32→64 k3, ReLU, pool; conv 64→128 k3, ReLU, pool; flatten
//! (128·2·2 = 512 at 32 × 32) → fc 128 → fc 128 → classes; no padding; PyTorch's default
//! initialisation. The widths are parameters (the reference's by default) so that tests can run it
//! small.
//!
//! Children `conv1`, `conv2`, `conv3`, `fc1`, `fc2`, `fc3`. Taps `hidden.0` … `hidden.4`: the
//! reference's `predict` features `[conv1 pooled, conv2 pooled, conv3 flattened, fc1, fc2]` (after
//! their ReLU), and `features` (= `hidden.4`, the input of the head).

use crate::layers::{Activation, Conv2d, Init, Linear, MaxPool2d};
use crate::module::{Ctx, Module, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Conv2dOptions, Device, Error, Result, Rng};

/// Layer widths of a [`ConvNet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvNetShape {
    /// Input channels and the three conv widths.
    pub channels: [usize; 4],
    /// Input height and width.
    pub image: [usize; 2],
    /// Widths of fc1 and fc2.
    pub hidden: [usize; 2],
    /// Outputs.
    pub classes: usize,
}

impl ConvNetShape {
    /// The reference: 3 → 32 → 64 → 128 channels, 32 × 32 images, fc 128, 128.
    pub fn reference(classes: usize) -> ConvNetShape {
        ConvNetShape {
            channels: [3, 32, 64, 128],
            image: [32, 32],
            hidden: [128, 128],
            classes,
        }
    }
}

/// The ConvNet (see the module docs).
#[derive(Clone, Debug)]
pub struct ConvNet {
    /// Conv 5 × 5.
    pub conv1: Conv2d,
    /// Conv 3 × 3.
    pub conv2: Conv2d,
    /// Conv 3 × 3.
    pub conv3: Conv2d,
    /// First dense layer (flattened features in).
    pub fc1: Linear,
    /// Second dense layer.
    pub fc2: Linear,
    /// The head.
    pub fc3: Linear,
    /// Between layers (ReLU in the reference).
    pub activation: Activation,
}

const POOL: usize = 2;

impl ConvNet {
    /// A ConvNet of `shape` with `activation`, initialised as PyTorch does.
    pub fn new(
        shape: ConvNetShape,
        activation: Activation,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<ConvNet> {
        let [c0, c1, c2, c3] = shape.channels;
        let mut side = shape.image;
        for k in [5, 3, 3] {
            for s in &mut side {
                *s = s.checked_sub(k - 1).map_or(0, |v| v / POOL);
            }
        }
        if side.contains(&0) || shape.channels.contains(&0) || shape.classes == 0 {
            return Err(Error::value(
                "ConvNet::new",
                format!("{shape:?}"),
                "images of at least 24 × 24 and non-zero widths",
            ));
        }
        let conv = |i, o, k, rng: &mut Rng| {
            Conv2d::new(i, o, [k, k], Conv2dOptions::default(), true, rng, device)
        };
        let dense =
            |i, o, rng: &mut Rng| Linear::new(i, o, true, Init::PytorchDefault, rng, device);
        let [h1, h2] = shape.hidden;
        Ok(ConvNet {
            conv1: conv(c0, c1, 5, rng)?,
            conv2: conv(c1, c2, 3, rng)?,
            conv3: conv(c2, c3, 3, rng)?,
            fc1: dense(c3 * side[0] * side[1], h1, rng)?,
            fc2: dense(h1, h2, rng)?,
            fc3: dense(h2, shape.classes, rng)?,
            activation,
        })
    }
}

impl Module for ConvNet {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let pool = MaxPool2d::new(POOL);
        let mut h = x.clone();
        for (i, (name, conv)) in [
            ("conv1", &self.conv1),
            ("conv2", &self.conv2),
            ("conv3", &self.conv3),
        ]
        .into_iter()
        .enumerate()
        {
            let y = self.activation.apply(&ctx.call(name, conv, &h)?)?;
            h = pool.forward(&y, ctx)?;
            if i == 2 {
                h = h.reshape(&[h.shape()[0] as isize, -1])?;
            }
            ctx.tap(&format!("hidden.{i}"), &h);
        }
        for (i, (name, fc)) in [("fc1", &self.fc1), ("fc2", &self.fc2)]
            .into_iter()
            .enumerate()
        {
            h = self.activation.apply(&ctx.call(name, fc, &h)?)?;
            ctx.tap(&format!("hidden.{}", i + 3), &h);
        }
        ctx.tap("features", &h);
        ctx.call("fc3", &self.fc3, &h)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("conv1", &self.conv1)
            .child("conv2", &self.conv2)
            .child("conv3", &self.conv3)
            .child("fc1", &self.fc1)
            .child("fc2", &self.fc2)
            .child("fc3", &self.fc3)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("conv1", &mut self.conv1)
            .child("conv2", &mut self.conv2)
            .child("conv3", &mut self.conv3)
            .child("fc1", &mut self.fc1)
            .child("fc2", &mut self.fc2)
            .child("fc3", &mut self.fc3)
    }
}
