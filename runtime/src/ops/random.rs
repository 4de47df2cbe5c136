//! On-device random tensors from a counter-based generator (Philox4x32-10, see
//! `dynlab_kernels::random`). An [`Rng`] is a seed plus a running counter: each call consumes the
//! counter blocks it uses, so successive calls give fresh numbers and the pair (seed, offset) is the
//! whole state to checkpoint.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::shape::check_shape;
use crate::tensor::Tensor;
use crate::Device;
use cubecl::prelude::{CubeCount, CubeDim};
use dynlab_kernels::random::{
    add_scaled_normal, bernoulli, bitonic_step, normal, permutation_keys, randint, uniform,
};

/// Seeded state of the counter-based generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    seed: u64,
    offset: u64,
}

/// Key and counter words for one launch.
struct Stream {
    k0: u32,
    k1: u32,
    lo: u32,
    hi: u32,
}

/// One launch of a generator kernel that writes four elements per unit.
struct Draw {
    s: Stream,
    count: CubeCount,
    dim: CubeDim,
}

impl Rng {
    /// A generator for `seed`, at the start of its stream.
    pub fn new(seed: u64) -> Rng {
        Rng { seed, offset: 0 }
    }

    /// Restores a generator saved with [`Rng::seed`] and [`Rng::offset`].
    pub fn from_state(seed: u64, offset: u64) -> Rng {
        Rng { seed, offset }
    }

    /// The seed (with [`Rng::offset`], the whole state).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Counter blocks (of four 32-bit words) consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn take(&mut self, blocks: usize) -> Stream {
        let start = self.offset;
        self.offset = self.offset.wrapping_add(blocks as u64);
        Stream {
            k0: self.seed as u32,
            k1: (self.seed >> 32) as u32,
            lo: start as u32,
            hi: (start >> 32) as u32,
        }
    }

    /// Counter words and grid for `n` outputs drawn four per unit; `None` when `n = 0`.
    fn draw(&mut self, n: usize) -> Option<Draw> {
        let blocks = n.div_ceil(4);
        (blocks > 0).then(|| {
            let (count, dim) = units_grid(blocks);
            Draw {
                s: self.take(blocks),
                count,
                dim,
            }
        })
    }
}

impl Tensor {
    /// Uniform f32 on `[low, high)`.
    pub fn rand_uniform(
        shape: &[usize],
        low: f32,
        high: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let op = "Tensor::rand_uniform";
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(Error::value(
                op,
                format!("low={low}, high={high}"),
                "finite low < high",
            ));
        }
        let out = Tensor::alloc(op, shape, DType::F32, device)?;
        if let Some(Draw { s, count, dim }) = rng.draw(out.numel()) {
            launch!(
                device,
                uniform::<f32>,
                count,
                dim,
                out.buffer_arg(),
                s.k0,
                s.k1,
                s.lo,
                s.hi,
                low,
                high
            );
        }
        Ok(out)
    }

    /// Normal f32 with `mean` and standard deviation `std`.
    pub fn rand_normal(
        shape: &[usize],
        mean: f32,
        std: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let op = "Tensor::rand_normal";
        if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
            return Err(Error::value(
                op,
                format!("mean={mean}, std={std}"),
                "finite mean and std >= 0",
            ));
        }
        let out = Tensor::alloc(op, shape, DType::F32, device)?;
        if let Some(Draw { s, count, dim }) = rng.draw(out.numel()) {
            launch!(
                device,
                normal::<f32>,
                count,
                dim,
                out.buffer_arg(),
                s.k0,
                s.k1,
                s.lo,
                s.hi,
                mean,
                std
            );
        }
        Ok(out)
    }

    /// This tensor plus Gaussian noise in one pass: element `i` gets `std[i / (n / G)] · z_i`,
    /// `z_i ~ N(0, 1)`, for `std` of `G` values (one per replica of a stacked parameter; `G = 1`
    /// for one standard deviation), `n` a multiple of `G`.
    pub fn add_normal_noise(&self, std: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let op = "Tensor::add_normal_noise";
        self.expect_f32(op)?;
        std.expect_f32(op)?;
        self.expect_same_device(op, std)?;
        let (n, groups) = (self.numel(), std.numel());
        if groups == 0 || n % groups != 0 {
            return Err(Error::shape(
                op,
                format!("{} stds for a tensor {:?}", groups, self.shape),
                "a non-zero number of stds dividing the element count",
            ));
        }
        let input = self.contiguous_from_zero()?;
        let std = std.contiguous_from_zero()?;
        let out = Tensor::alloc(op, &self.shape, DType::F32, &self.device)?;
        if let Some(Draw { s, count, dim }) = rng.draw(n) {
            launch!(
                self.device,
                add_scaled_normal::<f32>,
                count,
                dim,
                input.buffer_arg(),
                std.buffer_arg(),
                out.buffer_arg(),
                n / groups,
                s.k0,
                s.k1,
                s.lo,
                s.hi
            );
        }
        Ok(out)
    }

    /// 1.0 with probability `self[i]` (each in `[0, 1]`), else 0.0.
    pub fn bernoulli(&self, rng: &mut Rng) -> Result<Tensor> {
        let op = "Tensor::bernoulli";
        self.expect_f32(op)?;
        let out = Tensor::alloc(op, &self.shape, DType::F32, &self.device)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let (lo, hi) = (self.min_all()?.item()?, self.max_all()?.item()?);
        if !(lo >= 0.0 && hi <= 1.0) {
            return Err(Error::value(
                op,
                format!("probabilities in [{lo}, {hi}]"),
                "probabilities in [0, 1]",
            ));
        }
        let Some(Draw { s, count, dim }) = rng.draw(n) else {
            return Ok(out);
        };
        launch!(
            self.device,
            bernoulli::<f32>,
            count,
            dim,
            self.view_arg(),
            out.buffer_arg(),
            self.offset_u32(),
            s.k0,
            s.k1,
            s.lo,
            s.hi
        );
        Ok(out)
    }

    /// Bernoulli(p) draws of `shape`.
    pub fn bernoulli_scalar(
        shape: &[usize],
        p: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor> {
        Tensor::scalar(p, device)?.expand(shape)?.bernoulli(rng)
    }

    /// Uniform i32 on `[low, high)`.
    pub fn randint(
        shape: &[usize],
        low: i32,
        high: i32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let op = "Tensor::randint";
        if low >= high {
            return Err(Error::value(
                op,
                format!("low={low}, high={high}"),
                "low < high",
            ));
        }
        let span = (high as i64 - low as i64) as u32;
        let out = Tensor::alloc(op, shape, DType::I32, device)?;
        out.set_range(Some((low, high - 1)));
        if let Some(Draw { s, count, dim }) = rng.draw(out.numel()) {
            launch!(
                device,
                randint,
                count,
                dim,
                out.buffer_arg(),
                s.k0,
                s.k1,
                s.lo,
                s.hi,
                low,
                span
            );
        }
        Ok(out)
    }

    /// A uniformly random permutation of `0..n` as i32.
    pub fn randperm(n: usize, rng: &mut Rng, device: &Device) -> Result<Tensor> {
        let op = "Tensor::randperm";
        if n > i32::MAX as usize {
            return Err(Error::value(
                op,
                format!("n = {n}"),
                format!("n <= {}", i32::MAX),
            ));
        }
        check_shape(op, &[n])?;
        let padded = n.max(1).next_power_of_two();
        let keys = Tensor::alloc(op, &[padded], DType::I32, device)?;
        let values = Tensor::alloc(op, &[padded], DType::I32, device)?;
        let s = rng.take(padded);
        let (count, dim) = units_grid(padded);
        launch!(
            device,
            permutation_keys,
            count.clone(),
            dim,
            keys.buffer_arg(),
            values.buffer_arg(),
            n as u32,
            s.k0,
            s.k1,
            s.lo,
            s.hi,
        );
        let mut k = 2u32;
        while k as usize <= padded {
            let mut j = k / 2;
            while j > 0 {
                launch!(
                    device,
                    bitonic_step,
                    count.clone(),
                    dim,
                    keys.buffer_arg(),
                    values.buffer_arg(),
                    k,
                    j,
                );
                j /= 2;
            }
            k *= 2;
        }
        // The sorted slot positions are below 2^31, so their u32 bits read as the same i32 values.
        let perm = values.narrow(0, 0, n)?;
        perm.set_range(n.checked_sub(1).map(|last| (0, last as i32)));
        Ok(perm)
    }
}
