//! Image transforms on the device, batched over `[N, C, H, W]` tensors: each is a handful of tensor
//! ops (matmuls, gathers, broadcast arithmetic) whatever the batch size; what is built on the host
//! is small (interpolation matrices, per-row/column indices, per-sample offsets).
//!
//! - [`Normalize`]: `y[n,c,…] = (x[n,c,…] − μ_c) / σ_c`.
//! - [`Resize`]: bilinear resampling with PyTorch's `F.interpolate(mode="bilinear",
//!   align_corners=False)` (no antialiasing) semantics, as `Y = A_h · X · A_wᵀ` per image and
//!   channel. Row `o` of the interpolation matrix `A ∈ ℝ^{out×in}` (see [`bilinear_matrix`]): with
//!   `s = in / out`, the source coordinate is `x = max(0, s · (o + ½) − ½)`, `i₀ = ⌊x⌋`,
//!   `i₁ = min(i₀ + 1, in − 1)`, `λ = x − i₀`, and `A[o, i₀] += 1 − λ`, `A[o, i₁] += λ`.
//! - [`RandomCrop`]: torchvision's `RandomCrop(size, padding)` per sample: the image padded with `p`
//!   zeros on every side, and an `h × w` window at offset `(i, j)` drawn uniformly from
//!   `0..=H + 2p − h` × `0..=W + 2p − w`, independently per sample:
//!   `y[n,c,a,b] = x[n,c,i+a−p,j+b−p]`, zero where that index falls outside the image.
//! - [`RandomHorizontalFlip`]: `y[n,…,b] = x[n,…,W−1−b]` for samples whose uniform draw `u_n < p`
//!   (torchvision's rule), `y[n] = x[n]` otherwise.
//! - [`Flatten`]: `[N, C, H, W] → [N, C·H·W]` (a view when the input is contiguous).
//!
//! Every transform implements [`Transform`]; [`Pipeline`] chains them and [`Transformed`] applies
//! one to the inputs of every batch of a `BatchSource` (augmentation for the training loader).

use crate::host::to_i32;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, BatchSource};

/// A map from a batch of inputs to a batch of inputs; random transforms draw from `rng`.
pub trait Transform {
    /// The transformed batch.
    fn apply(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor>;
}

/// The `[N, C, H, W]` sizes of `x`, else an error of `op`.
fn nchw(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    match (x.shape(), x.dtype()) {
        (&[n, c, h, w], DType::F32) => Ok([n, c, h, w]),
        (shape, dtype) => Err(Error::shape(
            op,
            format!("{dtype} {shape:?}"),
            "f32 images [N, C, H, W]",
        )),
    }
}

/// Per-channel normalisation `(x − μ_c) / σ_c` over axis 1 of `[N, C, …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// One mean and one standard deviation per channel (finite, `σ_c > 0`).
    pub fn new(mean: &[f32], std: &[f32]) -> Result<Normalize> {
        let ok = mean.len() == std.len()
            && !mean.is_empty()
            && mean.iter().all(|m| m.is_finite())
            && std.iter().all(|s| s.is_finite() && *s > 0.0);
        if !ok {
            return Err(Error::value(
                "Normalize::new",
                format!("mean {mean:?}, std {std:?}"),
                "as many finite means as finite std > 0, at least one",
            ));
        }
        Ok(Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// `x` normalised: `[N, C, …]` with `C` the number of channels given.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let op = "Normalize::normalize";
        let c = self.mean.len();
        if x.rank() < 2 || x.shape()[1] != c || x.dtype() != DType::F32 {
            return Err(Error::shape(
                op,
                format!("{} {:?}", x.dtype(), x.shape()),
                format!("f32 [N, {c}, …]"),
            ));
        }
        let mut shape = vec![1; x.rank()];
        shape[1] = c;
        let mean = Tensor::from_slice(&self.mean, &shape, x.device())?;
        let std = Tensor::from_slice(&self.std, &shape, x.device())?;
        x.sub(&mean)?.div(&std)
    }
}

impl Transform for Normalize {
    fn apply(&self, x: &Tensor, _rng: &mut Rng) -> Result<Tensor> {
        self.normalize(x)
    }
}

/// The bilinear interpolation matrix `A` (row-major `[output, input]`) of PyTorch's
/// `align_corners=False` resampling from `input` to `output` samples (see the module doc). Each row
/// sums to 1.
pub fn bilinear_matrix(input: usize, output: usize) -> Vec<f64> {
    let mut a = vec![0.0; input * output];
    if input == 0 {
        return a;
    }
    let scale = input as f64 / output as f64;
    for o in 0..output {
        let x = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let lambda = x - i0 as f64;
        a[o * input + i0] += 1.0 - lambda;
        a[o * input + i1] += lambda;
    }
    a
}

/// `Aᵀ` of [`bilinear_matrix`] as an f32 tensor `[input, output]`.
fn bilinear_matrix_t(input: usize, output: usize, device: &Device) -> Result<Tensor> {
    let a = bilinear_matrix(input, output);
    let t: Vec<f32> = (0..input * output)
        .map(|k| a[(k % output) * input + k / output] as f32)
        .collect();
    Tensor::from_vec(t, &[input, output], device)
}

/// Bilinear resizing to `height × width` (PyTorch `align_corners=False` semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    height: usize,
    width: usize,
}

impl Resize {
    /// Resizes to `height × width` (both ≥ 1).
    pub fn new(height: usize, width: usize) -> Result<Resize> {
        if height == 0 || width == 0 {
            return Err(Error::value(
                "Resize::new",
                format!("{height} × {width}"),
                "an output of at least 1 × 1",
            ));
        }
        Ok(Resize { height, width })
    }

    /// `x [N, C, H, W]` resized to `[N, C, height, width]`: `X · A_wᵀ` over the rows of all images,
    /// then `A_h` applied along the columns (two 2-D matmuls, so the batch size is not limited).
    pub fn resize(&self, x: &Tensor) -> Result<Tensor> {
        let op = "Resize::resize";
        let [n, c, h, w] = nchw(op, x)?;
        let (ho, wo) = (self.height, self.width);
        if n * c == 0 || (h, w) == (ho, wo) {
            return if n * c == 0 {
                Tensor::zeros(&[n, c, ho, wo], x.device())
            } else {
                Ok(x.clone())
            };
        }
        if h == 0 || w == 0 {
            return Err(Error::shape(
                op,
                format!("images {:?}", x.shape()),
                "images of at least 1 × 1",
            ));
        }
        let nc = (n * c) as isize;
        let (h_, w_, ho_, wo_) = (h as isize, w as isize, ho as isize, wo as isize);
        let a_wt = bilinear_matrix_t(w, wo, x.device())?;
        let a_ht = bilinear_matrix_t(h, ho, x.device())?;
        let rows = x.reshape(&[nc * h_, w_])?.matmul(&a_wt)?; // [N·C·H, Wo]
        let cols = rows.reshape(&[nc, h_, wo_])?.transpose(1, 2)?; // [N·C, Wo, H]
        let out = cols.reshape(&[nc * wo_, h_])?.matmul(&a_ht)?; // [N·C·Wo, Ho]
        out.reshape(&[n as isize, c as isize, wo_, ho_])?
            .transpose(2, 3)?
            .contiguous()
    }
}

impl Transform for Resize {
    fn apply(&self, x: &Tensor, _rng: &mut Rng) -> Result<Tensor> {
        self.resize(x)
    }
}

/// torchvision's `RandomCrop(size, padding)` with an offset drawn per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomCrop {
    height: usize,
    width: usize,
    padding: usize,
}

impl RandomCrop {
    /// Crops of `height × width` (≥ 1) from the image padded with `padding` zeros on every side.
    pub fn new(height: usize, width: usize, padding: usize) -> Result<RandomCrop> {
        if height == 0 || width == 0 {
            return Err(Error::value(
                "RandomCrop::new",
                format!("{height} × {width}"),
                "a crop of at least 1 × 1",
            ));
        }
        Ok(RandomCrop {
            height,
            width,
            padding,
        })
    }

    /// The numbers of row and column offsets of images `h × w`: `H + 2p − h + 1`, `W + 2p − w + 1`.
    fn ranges(&self, op: &'static str, h: usize, w: usize) -> Result<(usize, usize)> {
        let (ph, pw) = (h + 2 * self.padding, w + 2 * self.padding);
        if ph < self.height || pw < self.width {
            return Err(Error::shape(
                op,
                format!("images {h} × {w} padded by {} to {ph} × {pw}", self.padding),
                format!("padded images of at least {} × {}", self.height, self.width),
            ));
        }
        Ok((ph - self.height + 1, pw - self.width + 1))
    }

    /// Offsets `(i, j)` (in padded coordinates) for `n` images of `h × w`, drawn on the device from
    /// `rng` (one uniform draw over the `rows × columns` offset pairs per sample) and read back.
    pub fn draw_offsets(
        &self,
        n: usize,
        h: usize,
        w: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Vec<(usize, usize)>> {
        let op = "RandomCrop::draw_offsets";
        let (ry, rx) = self.ranges(op, h, w)?;
        let pairs = ry.checked_mul(rx).filter(|&p| p <= i32::MAX as usize);
        let Some(pairs) = pairs else {
            return Err(Error::value(
                op,
                format!("{ry} × {rx} offsets"),
                format!("at most {} offset pairs", i32::MAX),
            ));
        };
        let draws = Tensor::randint(&[n], 0, pairs as i32, rng, device)?.to_vec::<i32>()?;
        Ok(draws
            .into_iter()
            .map(|v| (v as usize / rx, v as usize % rx))
            .collect())
    }

    /// `x [N, C, H, W]` cropped at the given per-sample offsets (in padded coordinates, as
    /// [`RandomCrop::draw_offsets`] gives them): two gathers (rows, then columns) of clamped source
    /// indices and, where padding shows, a mask of the in-image positions.
    pub fn crop_at(&self, x: &Tensor, offsets: &[(usize, usize)]) -> Result<Tensor> {
        let op = "RandomCrop::crop_at";
        let [n, c, h, w] = nchw(op, x)?;
        let (ry, rx) = self.ranges(op, h, w)?;
        if offsets.len() != n || offsets.iter().any(|&(i, j)| i >= ry || j >= rx) {
            return Err(Error::value(
                op,
                format!("{} offsets for {n} images", offsets.len()),
                format!("one offset per image, in 0..{ry} × 0..{rx}"),
            ));
        }
        let (ch, cw) = (self.height, self.width);
        let (rows, row_mask) = self.sources(op, offsets.iter().map(|o| o.0), ch, h)?;
        let (cols, col_mask) = self.sources(op, offsets.iter().map(|o| o.1), cw, w)?;
        let device = x.device();
        let rows = Tensor::from_vec(rows, &[n, 1, ch, 1], device)?.expand(&[n, c, ch, w])?;
        let cols = Tensor::from_vec(cols, &[n, 1, 1, cw], device)?.expand(&[n, c, ch, cw])?;
        let out = x.gather(2, &rows)?.gather(3, &cols)?;
        match (row_mask, col_mask) {
            (None, None) => Ok(out),
            (rm, cm) => {
                let ones = |len| vec![1.0f32; len];
                let rm =
                    Tensor::from_vec(rm.unwrap_or_else(|| ones(n * ch)), &[n, 1, ch, 1], device)?;
                let cm =
                    Tensor::from_vec(cm.unwrap_or_else(|| ones(n * cw)), &[n, 1, 1, cw], device)?;
                out.mul(&rm)?.mul(&cm)
            }
        }
    }

    /// For each sample's offset `o` and each of `len` output positions `a`, the clamped source index
    /// `clamp(o + a − p, 0, size − 1)`, and (when any falls outside) 1/0 for inside/outside.
    fn sources(
        &self,
        op: &'static str,
        offsets: impl Iterator<Item = usize>,
        len: usize,
        size: usize,
    ) -> Result<(Vec<i32>, Option<Vec<f32>>)> {
        let (mut index, mut mask) = (Vec::new(), Vec::new());
        for o in offsets {
            for a in 0..len {
                let src = (o + a) as isize - self.padding as isize;
                let inside = src >= 0 && (src as usize) < size;
                index.push(to_i32(
                    op,
                    "source index",
                    src.clamp(0, size as isize - 1) as usize,
                )?);
                mask.push(if inside { 1.0 } else { 0.0 });
            }
        }
        let all_inside = mask.iter().all(|&m| m == 1.0);
        Ok((index, (!all_inside).then_some(mask)))
    }
}

impl Transform for RandomCrop {
    fn apply(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let [n, _, h, w] = nchw("RandomCrop::apply", x)?;
        let offsets = self.draw_offsets(n, h, w, rng, x.device())?;
        self.crop_at(x, &offsets)
    }
}

/// torchvision's `RandomHorizontalFlip(p)` decided per sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomHorizontalFlip {
    p: f32,
}

impl Default for RandomHorizontalFlip {
    /// Flips with probability ½.
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

impl RandomHorizontalFlip {
    /// Flips each sample with probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Result<RandomHorizontalFlip> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::value(
                "RandomHorizontalFlip::new",
                format!("p = {p}"),
                "a probability in [0, 1]",
            ));
        }
        Ok(RandomHorizontalFlip { p })
    }

    /// Which of `n` samples to flip, as f32 `[N]` of 1/0: `u_n < p` for uniform draws `u_n` on the
    /// device (no read-back).
    pub fn draw_mask(&self, n: usize, rng: &mut Rng, device: &Device) -> Result<Tensor> {
        Tensor::rand_uniform(&[n], 0.0, 1.0, rng, device)?.lt_scalar(self.p)
    }

    /// `x [N, C, H, W]` with the samples where `mask [N]` is non-zero mirrored left–right.
    pub fn flip_where(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let op = "RandomHorizontalFlip::flip_where";
        let [n, _, _, w] = nchw(op, x)?;
        if mask.shape() != [n] {
            return Err(Error::shape(
                op,
                format!("mask {:?} for images {:?}", mask.shape(), x.shape()),
                format!("a mask [{n}]"),
            ));
        }
        let reversed = (0..w)
            .rev()
            .map(|i| to_i32(op, "column", i))
            .collect::<Result<Vec<_>>>()?;
        let reversed = Tensor::from_vec(reversed, &[w], x.device())?;
        let flipped = x.index_select(3, &reversed)?;
        Tensor::where_(&mask.reshape(&[n as isize, 1, 1, 1])?, &flipped, x)
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let n = nchw("RandomHorizontalFlip::apply", x)?[0];
        let mask = self.draw_mask(n, rng, x.device())?;
        self.flip_where(x, &mask)
    }
}

/// `[N, …] → [N, product of the rest]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten;

impl Flatten {
    /// `x` with every axis after the first merged.
    pub fn flatten(&self, x: &Tensor) -> Result<Tensor> {
        let Some((&n, rest)) = x.shape().split_first() else {
            return Err(Error::shape(
                "Flatten::flatten",
                "a scalar",
                "a tensor [N, …]",
            ));
        };
        let d: usize = rest.iter().product();
        x.reshape(&[n as isize, d as isize])
    }
}

impl Transform for Flatten {
    fn apply(&self, x: &Tensor, _rng: &mut Rng) -> Result<Tensor> {
        self.flatten(x)
    }
}

/// Transforms applied in order.
#[derive(Default)]
pub struct Pipeline {
    steps: Vec<Box<dyn Transform>>,
}

impl Pipeline {
    /// An empty pipeline (the identity).
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// This pipeline followed by `t`.
    pub fn then(mut self, t: impl Transform + 'static) -> Pipeline {
        self.steps.push(Box::new(t));
        self
    }
}

impl Transform for Pipeline {
    fn apply(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        self.steps
            .iter()
            .try_fold(x.clone(), |x, t| t.apply(&x, rng))
    }
}

/// A batch source whose inputs pass through a transform (drawing from the source's `rng` after the
/// source has drawn its batch); targets are untouched.
pub struct Transformed<S> {
    source: S,
    transform: Box<dyn Transform>,
}

impl<S: BatchSource> Transformed<S> {
    /// `source`'s batches with `transform` applied to their inputs.
    pub fn new(source: S, transform: impl Transform + 'static) -> Transformed<S> {
        Transformed {
            source,
            transform: Box::new(transform),
        }
    }

    /// The wrapped source.
    pub fn source(&self) -> &S {
        &self.source
    }
}

impl<S: BatchSource> BatchSource for Transformed<S> {
    fn next_batch(&mut self, rng: &mut Rng) -> Result<Option<Batch>> {
        let Some(batch) = self.source.next_batch(rng)? else {
            return Ok(None);
        };
        Ok(Some(Batch {
            inputs: self.transform.apply(&batch.inputs, rng)?,
            targets: batch.targets,
        }))
    }
}
