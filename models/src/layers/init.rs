//! Weight initialisations. For a weight with fan-in `a` and fan-out `b` and gain `g`:
//! Kaiming (He et al. 2015) `σ = g/√a` with `g = √2` (ReLU); Xavier/Glorot (2010) `σ = √(2/(a+b))`;
//! LeCun (1998) `σ = 1/√a`; PyTorch's default for `nn.Linear`/`nn.Conv2d` (`kaiming_uniform_` with
//! `a = √5`) `U(−1/√a, 1/√a)`, i.e. `σ = 1/√(3a)`, with the bias drawn from the same interval. The
//! uniform forms draw from `U(−√3σ, √3σ)` (same variance).

use crate::module::{Param, ParamKind};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

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

/// A `rows × cols` matrix with orthonormal columns (`rows ≥ cols`) or rows (`rows < cols`), as
/// PyTorch's `nn.init.orthogonal_`: the Q factor of a standard normal matrix (Haar-distributed),
/// here by modified Gram–Schmidt in f64 on the host.
pub fn orthogonal(rows: usize, cols: usize, rng: &mut Rng, device: &Device) -> Result<Tensor> {
    let (tall, wide) = (rows.max(cols), rows.min(cols));
    let draw = Tensor::rand_normal(&[wide, tall], 0.0, 1.0, rng, device)?;
    let mut vectors: Vec<Vec<f64>> = draw
        .to_vec::<f32>()?
        .chunks(tall.max(1))
        .map(|v| v.iter().map(|&x| x as f64).collect())
        .collect();
    vectors.truncate(wide);
    for i in 0..vectors.len() {
        let (done, rest) = vectors.split_at_mut(i);
        let v = &mut rest[0];
        for _pass in 0..2 {
            for q in done.iter() {
                let dot: f64 = q.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(q).for_each(|(x, qk)| *x -= dot * qk);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    // `vectors` holds `wide` orthonormal vectors of length `tall`: the rows of a wide matrix, or
    // the columns of a tall one.
    let data: Vec<f32> = if rows < cols {
        vectors.iter().flatten().map(|&x| x as f32).collect()
    } else {
        (0..rows)
            .flat_map(|r| vectors.iter().map(move |v| v[r] as f32))
            .collect()
    };
    Tensor::from_vec(data, &[rows, cols], device)
}

/// A zero bias of `outputs` entries when `bias` asks for one.
pub(crate) fn zero_bias(bias: bool, outputs: usize, device: &Device) -> Result<Option<Param>> {
    Ok(bias
        .then(|| Tensor::zeros(&[outputs], device))
        .transpose()?
        .map(|b| Param::new(b, ParamKind::Bias)))
}

/// Checks that `x` is `[N, inputs]` (the dense layers whose weight is computed from factors).
pub(crate) fn expect_rows(op: &'static str, x: &Var, inputs: usize) -> Result<()> {
    if x.shape().len() != 2 || x.shape()[1] != inputs {
        return Err(Error::shape(
            op,
            format!("input {:?}", x.shape()),
            format!("[N, {inputs}]"),
        ));
    }
    Ok(())
}

/// `x W + b`, or `x W` without a bias.
pub(crate) fn dense_product(x: &Var, w: &Var, bias: Option<&Param>) -> Result<Var> {
    match bias {
        Some(b) => x.linear(w, b.var()),
        None => x.matmul(w),
    }
}
