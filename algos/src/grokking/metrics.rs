//! What the grokking study watches while a network memorises and then generalises, each a public
//! function computed on the device.
//!
//! **Spectral smoothness** of the learned function (the least-action-learning study's measure): the
//! model is evaluated on the whole `p × p` input grid; each input's predicted class (hard: the
//! argmax) or its expectation under the softmax (soft: `Σ_c c·softmax(z)_c`, differentiable) is one
//! pixel of a `p × p` image `X`. With `P = |F X Fᵀ|²` its power spectrum (`F_jk = e^{−2πi jk/p}`, the
//! 2-D DFT, as numpy's `fft2`) and the signed frequencies `f = fftfreq(p)` (`k/p` for
//! `k ≤ (p−1)/2`, else `(k−p)/p`),
//!
//! ```text
//! smoothness = Σ P[√(fx² + fy²) ≤ K/p] / (Σ P + 1e-8),   K = ⌊p/4⌋ by default.
//! ```
//!
//! The DFT runs on the device as real matrix products (`Re = C X C − S X S`,
//! `Im = −(C X S + S X C)` with `C = cos(2π jk/p)`, `S = sin(2π jk/p)`): four `p × p` products, so
//! the soft form is differentiable through the tape and the hard form needs no read-back of the
//! grid (a host FFT would need the `p²` predictions read back first; at `p = 113` the products are
//! 4 launches of 1.4 MFLOP each).
//!
//! **Jacobian norm** of the output with respect to the input (one-hot rows for the MLP, the input
//! embeddings for the transformer): with `v` uniform on the unit sphere of the output space,
//! `E[v vᵀ] = I / out_dim`, so `out_dim · E‖J_iᵀ v‖² = ‖J_i‖²_F`. Each probe is one backward pass of
//! `Σ_i v_i · f(x_i)` (examples are independent in evaluation mode), averaged over examples.
//!
//! **Input Hessian trace** of the top logit: `tr ∇²_x z_{i, c*_i}` with `c*_i` the predicted class at
//! the current input, by Hutchinson's estimator with Rademacher probes on the input
//! ([`hutchinson_trace_at`]), averaged over examples.
//!
//! **Weight curvature**: the global gradient norm of the training loss and the Hutchinson trace of
//! its Hessian with respect to every parameter, with the estimate's standard error.

use dynlab_autodiff::{
    grad, hutchinson_trace_at, hutchinson_trace_of_gradient, GradOptions, TraceEstimate, Var,
};
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

/// Added to the total power (the reference's guard against a constant image).
const POWER_EPS: f64 = 1e-8;

/// The default cutoff `K = ⌊p/4⌋`.
pub fn default_cutoff(p: usize) -> usize {
    p / 4
}

/// numpy's `fftfreq(p)` times `p`: the signed integer frequency of DFT index `k`.
fn signed_frequency(k: usize, p: usize) -> i64 {
    if k <= (p - 1) / 2 {
        k as i64
    } else {
        k as i64 - p as i64
    }
}

/// The low-frequency mask `√(kx² + ky²) ≤ K` over DFT indices, row-major `[p, p]`, as 0/1.
pub fn low_frequency_mask(p: usize, cutoff: usize) -> Vec<f32> {
    let k2 = (cutoff * cutoff) as i64;
    (0..p * p)
        .map(|ij| {
            let (fx, fy) = (signed_frequency(ij / p, p), signed_frequency(ij % p, p));
            f32::from(fx * fx + fy * fy <= k2)
        })
        .collect()
}

/// The `p × p` DFT's real and imaginary parts `C = cos(2π jk/p)`, `S = sin(2π jk/p)`.
fn dft_matrices(p: usize, device: &Device) -> Result<(Var, Var)> {
    let angle =
        |jk: usize| 2.0 * std::f64::consts::PI * ((jk / p) * (jk % p) % p) as f64 / p as f64;
    let cos: Vec<f32> = (0..p * p).map(|jk| angle(jk).cos() as f32).collect();
    let sin: Vec<f32> = (0..p * p).map(|jk| angle(jk).sin() as f32).collect();
    Ok((
        Var::constant(Tensor::from_vec(cos, &[p, p], device)?),
        Var::constant(Tensor::from_vec(sin, &[p, p], device)?),
    ))
}

/// `|fft2(X)|²` of a square image `X [p, p]`, differentiable.
pub fn power_spectrum(image: &Var) -> Result<Var> {
    let shape = image.shape();
    if shape.len() != 2 || shape[0] != shape[1] || shape[0] == 0 {
        return Err(Error::shape(
            "grokking::power_spectrum",
            format!("{shape:?}"),
            "a square image [p, p]",
        ));
    }
    let (c, s) = dft_matrices(shape[0], image.value().device())?;
    let (xc, xs) = (image.matmul(&c)?, image.matmul(&s)?);
    let re = c.matmul(&xc)?.sub(&s.matmul(&xs)?)?;
    let im = c.matmul(&xs)?.add(&s.matmul(&xc)?)?;
    re.square()?.add(&im.square()?)
}

/// `Σ P[low] / (Σ P + 1e-8)` of an image `[p, p]`, differentiable (a 0-d `Var`).
pub fn smoothness_of_image(image: &Var, cutoff: usize) -> Result<Var> {
    let power = power_spectrum(image)?;
    let p = image.shape()[0];
    let mask = Tensor::from_vec(
        low_frequency_mask(p, cutoff),
        &[p, p],
        image.value().device(),
    )?;
    let low = power.mul(&Var::constant(mask))?.sum_all()?;
    low.div(&power.sum_all()?.add_scalar(POWER_EPS as f32)?)
}

/// The function's image from logits over the grid `[p², p]` (row `a·p + b` is the pair `(a, b)`):
/// the predicted class (`hard`) or its expectation under the softmax, `[p, p]`.
pub fn output_image(grid_logits: &Var, hard: bool) -> Result<Var> {
    let shape = grid_logits.shape();
    let p = shape.last().copied().unwrap_or(0);
    if shape.len() != 2 || shape[0] != p * p || p == 0 {
        return Err(Error::shape(
            "grokking::output_image",
            format!("logits {shape:?}"),
            "[p², p]: the logits of every pair (a, b), row a·p + b",
        ));
    }
    let image = if hard {
        let class = grid_logits
            .value()
            .argmax(-1, false)?
            .to_dtype(DType::F32)?;
        Var::constant(class)
    } else {
        let classes = Tensor::arange(0.0, p as f32, 1.0, grid_logits.value().device())?;
        let weights = Var::constant(classes.reshape(&[p as isize, 1])?);
        grid_logits.softmax(-1)?.matmul(&weights)?
    };
    image.reshape(&[p as isize, p as isize])
}

/// Hard spectral smoothness of the function whose grid logits are `grid_logits [p², p]`, with
/// cutoff `K` (see the module docs).
pub fn spectral_smoothness(grid_logits: &Tensor, cutoff: usize) -> Result<f64> {
    let image = output_image(&Var::constant(grid_logits.clone()), true)?;
    Ok(smoothness_of_image(&image, cutoff)?.value().item()? as f64)
}

/// Soft spectral smoothness (differentiable in the logits): the penalty's `smoothness_soft`.
pub fn spectral_smoothness_soft(grid_logits: &Var, cutoff: usize) -> Result<Var> {
    smoothness_of_image(&output_image(grid_logits, false)?, cutoff)
}

/// Power of the hard output image per radial frequency `0, 1, …` (`⌊√(kx² + ky²)⌋`), normalised to
/// sum 1: the spectral-analysis plot's curve.
pub fn radial_power(grid_logits: &Tensor) -> Result<Vec<f64>> {
    let image = output_image(&Var::constant(grid_logits.clone()), true)?;
    let p = image.shape()[0];
    let power = power_spectrum(&image)?.value().to_vec::<f32>()?;
    let radius = |ij: usize| {
        let (fx, fy) = (signed_frequency(ij / p, p), signed_frequency(ij % p, p));
        ((fx * fx + fy * fy) as f64).sqrt().floor() as usize
    };
    let bins = (0..p * p).map(radius).max().unwrap_or(0) + 1;
    let mut out = vec![0.0; bins];
    for (ij, &w) in power.iter().enumerate() {
        out[radius(ij)] += w as f64;
    }
    let total: f64 = out.iter().sum::<f64>() + POWER_EPS;
    Ok(out.into_iter().map(|w| w / total).collect())
}

/// `probes` directions per example, each uniform on the unit sphere of `R^outputs`:
/// `[probes, n, outputs]`.
pub fn unit_directions(
    probes: usize,
    n: usize,
    outputs: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<Tensor> {
    let v = Tensor::rand_normal(&[probes, n, outputs], 0.0, 1.0, rng, device)?;
    let norm = v.square()?.sum(-1, true)?.sqrt()?;
    v.div(&norm)
}

/// `out_dim · mean_{probe, i} ‖J_iᵀ v_{probe, i}‖²` for `f: [N, …] → [N, out_dim]` at `x`, with the
/// given `directions [probes, N, out_dim]` (see the module docs; with random unit directions this
/// estimates the mean `‖J_i‖²_F`).
pub fn jacobian_norm_along(
    f: impl Fn(&Var) -> Result<Var>,
    x: &Tensor,
    directions: &Tensor,
) -> Result<f64> {
    let input = Var::param(x.clone());
    let out = f(&input)?;
    let (n, d) = (out.shape()[0], out.shape().get(1).copied().unwrap_or(0));
    let probes = directions.shape()[0];
    if out.shape().len() != 2 || directions.shape() != [probes, n, d] || probes == 0 || n == 0 {
        return Err(Error::shape(
            "grokking::jacobian_norm",
            format!(
                "output {:?}, directions {:?}",
                out.shape(),
                directions.shape()
            ),
            "output [N, out_dim] and directions [probes ≥ 1, N ≥ 1, out_dim]",
        ));
    }
    let mut total = Tensor::scalar(0.0, x.device())?;
    for k in 0..probes {
        let v = directions.narrow(0, k, 1)?.squeeze(0)?;
        let options = GradOptions {
            create_graph: false,
            retain_graph: k + 1 < probes,
        };
        total = total.add(jacobian_term(&input, &out, &v, options)?.value())?;
    }
    Ok(total.item()? as f64 / probes as f64)
}

/// `out_dim · mean_i ‖J_iᵀ v_i‖² = (out_dim / N) ‖∇_x (out · v)‖²` for `out [N, out_dim]`
/// computed from `input`, along `v [N, out_dim]` (a 0-d `Var`; with `create_graph` it is
/// differentiable in whatever `out` depends on: the Jacobian penalty).
pub(crate) fn jacobian_term(
    input: &Var,
    out: &Var,
    v: &Tensor,
    options: GradOptions,
) -> Result<Var> {
    let (n, d) = (out.shape()[0].max(1), out.shape()[1]);
    let projected = out.mul(&Var::constant(v.clone()))?.sum_all()?;
    let g = grad(&projected, &[input], options)?.remove(0);
    g.square()?.sum_all()?.mul_scalar(d as f32 / n as f32)
}

/// [`jacobian_norm_along`] random unit directions (`probes` per example).
pub fn jacobian_norm(
    f: impl Fn(&Var) -> Result<Var>,
    x: &Tensor,
    probes: usize,
    outputs: usize,
    rng: &mut Rng,
) -> Result<f64> {
    let n = x.shape().first().copied().unwrap_or(0);
    let directions = unit_directions(probes, n, outputs, rng, x.device())?;
    jacobian_norm_along(f, x, &directions)
}

/// Hutchinson's estimate of `mean_i tr ∇²_{x_i} z_{i, c*_i}` (the top logit's Hessian with respect
/// to the input, `c*_i` the predicted class at `x`), `probes` Rademacher probes drawn from `seed`.
pub fn input_hessian_trace(
    f: impl Fn(&Var) -> Result<Var>,
    x: &Tensor,
    probes: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    let input = Var::param(x.clone());
    let logits = f(&input)?;
    let n = logits.shape()[0].max(1) as f64;
    let classes = logits.shape().last().copied().unwrap_or(0);
    let top = logits.value().argmax(-1, false)?.one_hot(classes)?;
    let score = logits.mul(&Var::constant(top))?.sum_all()?;
    let t = hutchinson_trace_at(&score, &[&input], probes, seed)?;
    Ok(TraceEstimate {
        mean: t.mean / n,
        std_error: t.std_error / n,
        samples: t.samples,
    })
}

/// The gradient norm `‖∇_θ L‖` and the Hutchinson estimate of `tr ∇²_θ L` of a scalar loss
/// computed from the parameters `params` (one recorded gradient serves both).
pub fn weight_curvature(
    loss: &Var,
    params: &[&Var],
    probes: usize,
    seed: u64,
) -> Result<(f64, TraceEstimate)> {
    let options = GradOptions {
        create_graph: true,
        retain_graph: false,
    };
    let grads = grad(loss, params, options)?;
    let values: Vec<&Tensor> = grads.iter().map(Var::value).collect();
    let norm = Tensor::global_norm(&values)?.item()? as f64;
    let trace = hutchinson_trace_of_gradient(&grads, params, probes, seed)?;
    Ok((norm, trace))
}
