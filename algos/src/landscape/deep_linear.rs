//! A deep linear network, whose Hessian spectrum at a balanced global minimum has a closed form.
//!
//! `f(x) = x M_1 M_2 ⋯ M_L` with square `d × d` factors (stored `[in, out]` like [`Linear`]),
//! trained with the mean squared error `L = (1/(N d)) Σ_n ‖f(x_n) − y_n‖²` on whitened inputs
//! (`XᵀX = N I`) and targets `y = x A`: `L = (1/d) ‖M_1⋯M_L − A‖_F²`. With `A = U S Vᵀ`, the
//! balanced minimum is `M_1 = U S^{1/L}`, `M_l = S^{1/L}` (`1 < l < L`), `M_L = S^{1/L} Vᵀ`. The
//! residual is zero there, so `H = (2/d) JᵀJ` with `J` the Jacobian of the product; `J Jᵀ` acts on
//! `d × d` matrices as `Z ↦ Σ_l P_{<l}P_{<l}ᵀ Z P_{>l}ᵀP_{>l}` with `P_{<l} = U S^{(l−1)/L}` and
//! `P_{>l} = S^{(L−l)/L} Vᵀ`, diagonal in the basis `u_i v_jᵀ`. The Hessian's `L d²` eigenvalues
//! are therefore
//!
//! `λ_ij = (2/d) Σ_{l=1}^{L} s_i^{2(l−1)/L} s_j^{2(L−l)/L}`, `i, j = 1 … d`,
//!
//! and `(L − 1) d²` zeros (the directions `M_l ← M_l G`, `M_{l+1} ← G⁻¹ M_{l+1}` for invertible `G`,
//! which leave the product fixed). For `L = 1` every `λ_ij = 2/d`: the loss is a quadratic. (Mulayoff &
//! Michaeli 2020, "Unique properties of flat minima in deep networks", derive the same spectrum.)

use dynlab_autodiff::Var;
use dynlab_models::{Ctx, Init, Linear, Module, Parts, PartsMut};
use dynlab_runtime::linalg::host::svd_f64;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::Batch;

/// `x ↦ x M_1 ⋯ M_L` (children `layers.0` … , `Linear` without bias).
#[derive(Clone, Debug)]
pub struct DeepLinear {
    /// The factors, first to last.
    pub layers: Vec<Linear>,
}

impl DeepLinear {
    /// `depth` random `d × d` factors drawn by `init`.
    pub fn new(
        width: usize,
        depth: usize,
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<DeepLinear> {
        check_sizes(width, depth)?;
        let layers = (0..depth)
            .map(|_| Linear::new(width, width, false, init, rng, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(DeepLinear { layers })
    }

    /// The balanced global minimum for the target `a` (row-major `d × d`, see the module docs).
    pub fn balanced(a: &[f64], width: usize, depth: usize, device: &Device) -> Result<DeepLinear> {
        check_sizes(width, depth)?;
        check_target(a, width)?;
        let (u, s, vt) = balanced_parts(a, width)?;
        let root: Vec<f64> = s.iter().map(|v| v.powf(1.0 / depth as f64)).collect();
        let d = width;
        let diag = |m: &mut Vec<f64>| {
            for i in 0..d {
                for j in 0..d {
                    m[i * d + j] = if i == j { root[i] } else { 0.0 };
                }
            }
        };
        let mut factors = Vec::with_capacity(depth);
        for l in 0..depth {
            let mut m = vec![0.0; d * d];
            diag(&mut m);
            if l == 0 {
                m = matmul(&u, &m, d);
            }
            if l == depth - 1 {
                m = matmul(&m, &vt, d);
            }
            factors.push(m);
        }
        let layers = factors
            .iter()
            .map(|m| {
                let w: Vec<f32> = m.iter().map(|&x| x as f32).collect();
                let mut layer =
                    Linear::new(d, d, false, Init::XavierUniform, &mut Rng::new(0), device)?;
                layer.weight.set(Tensor::from_vec(w, &[d, d], device)?)?;
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeepLinear { layers })
    }
}

fn check_sizes(width: usize, depth: usize) -> Result<()> {
    if width == 0 || depth == 0 {
        return Err(Error::value(
            "DeepLinear",
            format!("width {width}, depth {depth}"),
            "a positive width and depth",
        ));
    }
    Ok(())
}

fn check_target(a: &[f64], width: usize) -> Result<()> {
    if a.len() != width * width || a.iter().any(|x| !x.is_finite()) {
        return Err(Error::shape(
            "DeepLinear::balanced",
            format!("a target of {} values", a.len()),
            format!("{width} × {width} finite values"),
        ));
    }
    Ok(())
}

/// `U`, `S`, `Vᵀ` of `a` (row-major `d × d`).
fn balanced_parts(a: &[f64], d: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (u, s, v) = svd_f64(a, d, d)?;
    let mut vt = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            vt[i * d + j] = v[j * d + i];
        }
    }
    Ok((u, s, vt))
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    c
}

impl Module for DeepLinear {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = ctx.call(&format!("layers.{i}"), layer, &h)?;
        }
        Ok(h)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default().children("layers", &self.layers)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default().children("layers", &mut self.layers)
    }
}

/// Whitened inputs `X = √d I` (`N = d` rows, `XᵀX = N I`) and targets `X A` for the row-major
/// `d × d` target `a`.
pub fn whitened_data(a: &[f64], width: usize, device: &Device) -> Result<Batch> {
    check_target(a, width)?;
    let scale = (width as f32).sqrt();
    let x = Tensor::eye(width, device)?.mul_scalar(scale)?;
    let target: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let y = x.matmul(&Tensor::from_vec(target, &[width, width], device)?)?;
    Ok(Batch {
        inputs: x,
        targets: y,
    })
}

/// The closed-form Hessian spectrum (descending, `L d²` values) at the balanced minimum for a
/// target with singular values `s` (see the module docs).
pub fn closed_form_spectrum(s: &[f64], depth: usize) -> Result<Vec<f64>> {
    if depth == 0 || s.is_empty() || s.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::value(
            "landscape::closed_form_spectrum",
            format!("depth {depth}, singular values {s:?}"),
            "depth ≥ 1 and finite non-negative singular values",
        ));
    }
    let d = s.len();
    let l = depth as f64;
    let mut values: Vec<f64> = Vec::with_capacity(depth * d * d);
    for &si in s {
        for &sj in s {
            let sum: f64 = (1..=depth)
                .map(|k| {
                    let k = k as f64;
                    si.powf(2.0 * (k - 1.0) / l) * sj.powf(2.0 * (l - k) / l)
                })
                .sum();
            values.push(2.0 / d as f64 * sum);
        }
    }
    values.extend(std::iter::repeat_n(0.0, (depth - 1) * d * d));
    values.sort_by(|a, b| b.total_cmp(a));
    Ok(values)
}

/// The singular values of the row-major `d × d` target (descending).
pub fn target_singular_values(a: &[f64], width: usize) -> Result<Vec<f64>> {
    check_target(a, width)?;
    Ok(balanced_parts(a, width)?.1)
}
