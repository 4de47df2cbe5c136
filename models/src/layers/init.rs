//! Weight initialisations. For a weight with fan-in `a` and fan-out `b` and gain `g`:
//! Kaiming (He et al. 2015) `σ = g/√a` with `g = √2` (ReLU); Xavier/Glorot (2010) `σ = √(2/(a+b))`;
//! LeCun (1998) `σ = 1/√a`; PyTorch's default for `nn.Linear`/`nn.Conv2d` (`kaiming_uniform_` with
//! `a = √5`) `U(−1/√a, 1/√a)`, i.e. `σ = 1/√(3a)`, with the bias drawn from the same interval. The
//! uniform forms draw from `U(−√3σ, √3σ)` (same variance).

use dynlab_runtime::{Device, Result, Rng, Tensor};

/// A weight initialisation (see the module docs for each standard deviation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// He et al., uniform.
    KaimingUniform,
    /// He et al., normal.
    KaimingNormal,
    /// Glorot & Bengio, uniform.
    XavierUniform,
    /// Glorot & Bengio, normal.
    XavierNormal,
    /// LeCun, uniform.
    LecunUniform,
    /// LeCun, normal.
    LecunNormal,
    /// PyTorch's default for linear and convolution layers (uniform; the bias too).
    PytorchDefault,
}

impl Init {
    /// Parses `kaiming_uniform`, `xavier_normal`, ... (the config spelling).
    pub fn parse(name: &str) -> Option<Init> {
        Some(match name {
            "kaiming_uniform" => Init::KaimingUniform,
            "kaiming_normal" => Init::KaimingNormal,
            "xavier_uniform" => Init::XavierUniform,
            "xavier_normal" => Init::XavierNormal,
            "lecun_uniform" => Init::LecunUniform,
            "lecun_normal" => Init::LecunNormal,
            "pytorch_default" => Init::PytorchDefault,
            _ => return None,
        })
    }

    /// Standard deviation for a weight with these fans.
    pub fn std(self, fan_in: usize, fan_out: usize) -> f32 {
        let (a, b) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
        match self {
            Init::KaimingUniform | Init::KaimingNormal => (2.0 / a).sqrt(),
            Init::XavierUniform | Init::XavierNormal => (2.0 / (a + b)).sqrt(),
            Init::LecunUniform | Init::LecunNormal => (1.0 / a).sqrt(),
            Init::PytorchDefault => (1.0 / (3.0 * a)).sqrt(),
        }
    }

    /// A weight of `shape` with these fans, drawn on the device.
    pub fn sample(
        self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let std = self.std(fan_in, fan_out);
        match self {
            Init::KaimingUniform
            | Init::XavierUniform
            | Init::LecunUniform
            | Init::PytorchDefault => {
                let bound = 3f32.sqrt() * std;
                Tensor::rand_uniform(shape, -bound, bound, rng, device)
            }
            _ => Tensor::rand_normal(shape, 0.0, std, rng, device),
        }
    }
}
