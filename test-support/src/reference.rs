//! f64 host references for every runtime op, written as plain loops over row-major data. The tests
//! compare each kernel against these; they favour obviousness over speed.

/// A row-major f64 array with a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<f64>,
}

fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

fn coords_of(mut linear: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = linear % shape[d];
        linear /= shape[d];
    }
    c
}

fn linear_of(coords: &[usize], shape: &[usize]) -> usize {
    coords
        .iter()
        .zip(strides_of(shape))
        .map(|(c, s)| c * s)
        .sum()
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (panics unless `data` fills the shape exactly).
    pub fn new(shape: &[usize], data: Vec<f64>) -> HostTensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "reference: data does not fill the shape"
        );
        HostTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A tensor of `shape` from f32 data, widened to f64.
    pub fn from_f32(shape: &[usize], data: &[f32]) -> HostTensor {
        HostTensor::new(shape, data.iter().map(|&x| x as f64).collect())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The element at `coords` (one index per dimension).
    pub fn at(&self, coords: &[usize]) -> f64 {
        self.data[linear_of(coords, &self.shape)]
    }
}

// ---------- elementwise ----------

/// Applies `f` to every element.
pub fn map(x: &HostTensor, f: impl Fn(f64) -> f64) -> HostTensor {
    HostTensor::new(&x.shape, x.data.iter().map(|&v| f(v)).collect())
}

/// NumPy-broadcast shape of two shapes (panics on mismatch: references take valid inputs).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            assert!(
                da == db || da == 1 || db == 1,
                "reference: shapes do not broadcast"
            );
            if da == 1 {
                db
            } else {
                da
            }
        })
        .collect()
}

/// Element of `x` seen at output coordinates `c` under broadcasting.
fn broadcast_at(x: &HostTensor, c: &[usize]) -> f64 {
    let lead = c.len() - x.shape.len();
    let own: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(d, &s)| if s == 1 { 0 } else { c[lead + d] })
        .collect();
    x.at(&own)
}

/// `f(a, b)` elementwise with broadcasting.
pub fn zip(a: &HostTensor, b: &HostTensor, f: impl Fn(f64, f64) -> f64) -> HostTensor {
    let shape = broadcast_shape(&a.shape, &b.shape);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let c = coords_of(i, &shape);
            f(broadcast_at(a, &c), broadcast_at(b, &c))
        })
        .collect();
    HostTensor::new(&shape, data)
}

/// `cond != 0 ? a : b` with broadcasting of all three.
pub fn where_(cond: &HostTensor, a: &HostTensor, b: &HostTensor) -> HostTensor {
    let shape = broadcast_shape(&broadcast_shape(&cond.shape, &a.shape), &b.shape);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let c = coords_of(i, &shape);
            if broadcast_at(cond, &c) != 0.0 {
                broadcast_at(a, &c)
            } else {
                broadcast_at(b, &c)
            }
        })
        .collect();
    HostTensor::new(&shape, data)
}

/// Error function, |error| < 1e-15: Maclaurin series below 3, continued fraction for erfc above.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
        let mut frac = 0.0;
        for k in (1..60).rev() {
            frac = (k as f64 / 2.0) / (a + frac);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + frac)
    };
    r.copysign(x)
}

/// GELU, erf form: `½ x (1 + erf(x / √2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// GELU, tanh approximation: `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// The logistic function `1 / (1 + e^{−x})`.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// -1, 0, 1; NaN stays NaN.
pub fn sign(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Maximum that propagates NaN (PyTorch's `maximum`).
pub fn maximum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Minimum that propagates NaN.
pub fn minimum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// 1 when `c`, else 0.
pub fn mask(c: bool) -> f64 {
    if c {
        1.0
    } else {
        0.0
    }
}

// ---------- reductions ----------

/// Reduces `axis` with `f` over the values of each line (in order); keepdim leaves a size-1 axis.
pub fn reduce(x: &HostTensor, axis: usize, keepdim: bool, f: impl Fn(&[f64]) -> f64) -> HostTensor {
    let mut out_shape = x.shape.clone();
    out_shape[axis] = 1;
    let n: usize = out_shape.iter().product();
    let data = (0..n)
        .map(|o| {
            let mut c = coords_of(o, &out_shape);
            let line: Vec<f64> = (0..x.shape[axis])
                .map(|k| {
                    c[axis] = k;
                    x.at(&c)
                })
                .collect();
            f(&line)
        })
        .collect();
    if !keepdim {
        out_shape.remove(axis);
    }
    HostTensor::new(&out_shape, data)
}

/// Sum, in order.
pub fn sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

/// Arithmetic mean (NaN for no values).
pub fn mean(v: &[f64]) -> f64 {
    sum(v) / v.len() as f64
}

/// Max propagating NaN.
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, maximum)
}

/// Min propagating NaN.
pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, minimum)
}

/// First index of the maximum; the first NaN wins.
pub fn argmax(v: &[f64]) -> f64 {
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        return i as f64;
    }
    let m = max(v);
    v.iter().position(|&x| x == m).unwrap_or(0) as f64
}

/// First index of the minimum; the first NaN wins.
pub fn argmin(v: &[f64]) -> f64 {
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        return i as f64;
    }
    let m = min(v);
    v.iter().position(|&x| x == m).unwrap_or(0) as f64
}

/// Two-pass variance `Σ (x − x̄)² / (n − δ)`, `δ = 1` when `unbiased`.
pub fn var(v: &[f64], unbiased: bool) -> f64 {
    let m = mean(v);
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    ss / (v.len() as f64 - if unbiased { 1.0 } else { 0.0 })
}

/// p-norm `(Σ |x|^p)^{1/p}`; `p = ∞`: max `|x|`, `p = −∞`: min `|x|`, `p = 0`: count of non-zeros.
pub fn norm(v: &[f64], p: f64) -> f64 {
    let abs = v.iter().map(|x| x.abs());
    if p == f64::INFINITY {
        abs.fold(f64::NEG_INFINITY, maximum)
    } else if p == f64::NEG_INFINITY {
        abs.fold(f64::INFINITY, minimum)
    } else if p == 0.0 {
        abs.filter(|&a| a != 0.0).count() as f64
    } else {
        abs.map(|a| a.powf(p)).sum::<f64>().powf(1.0 / p)
    }
}

/// `ln Σ eˣ`, shifted by the maximum for stability.
pub fn logsumexp(v: &[f64]) -> f64 {
    let m = max(v);
    if !m.is_finite() {
        return if v.is_empty() {
            f64::NEG_INFINITY
        } else {
            v.iter().map(|x| x.exp()).sum::<f64>().ln()
        };
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Applies a line-to-line function along `axis` (softmax and friends).
pub fn along(x: &HostTensor, axis: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> HostTensor {
    let mut out = x.clone();
    let mut line_shape = x.shape.clone();
    line_shape[axis] = 1;
    let lines: usize = line_shape.iter().product();
    for o in 0..lines {
        let mut c = coords_of(o, &line_shape);
        let line: Vec<f64> = (0..x.shape[axis])
            .map(|k| {
                c[axis] = k;
                x.at(&c)
            })
            .collect();
        for (k, v) in f(&line).into_iter().enumerate() {
            c[axis] = k;
            out.data[linear_of(&c, &x.shape)] = v;
        }
    }
    out
}

/// `eˣ / Σ eˣ` over the values.
pub fn softmax(v: &[f64]) -> Vec<f64> {
    let l = logsumexp(v);
    v.iter().map(|x| (x - l).exp()).collect()
}

/// `x − ln Σ eˣ` over the values.
pub fn log_softmax(v: &[f64]) -> Vec<f64> {
    let l = logsumexp(v);
    v.iter().map(|x| x - l).collect()
}

/// Layer normalisation over the last axis: `(x − μ) / √(σ² + ε) · γ + β` (σ² biased).
pub fn layer_norm(
    x: &HostTensor,
    affine: Option<(&HostTensor, &HostTensor)>,
    eps: f64,
) -> HostTensor {
    let d = *x.shape.last().expect("layer_norm: rank >= 1");
    let mut data = Vec::with_capacity(x.data.len());
    for row in x.data.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter().enumerate() {
            let x_hat = (v - mean) * rstd;
            data.push(match affine {
                Some((g, b)) => x_hat * g.data[j] + b.data[j],
                None => x_hat,
            });
        }
    }
    HostTensor {
        shape: x.shape.clone(),
        data,
    }
}

/// Per-sample cross-entropy of `[N, C]` logits and labels.
pub fn cross_entropy(logits: &HostTensor, labels: &[usize]) -> Vec<f64> {
    let c = logits.shape[1];
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let row = &logits.data[i * c..(i + 1) * c];
            logsumexp(row) - row[l]
        })
        .collect()
}

// ---------- layout and indexing ----------

/// Output dimension `i` is input dimension `dims[i]`.
pub fn permute(x: &HostTensor, dims: &[usize]) -> HostTensor {
    let shape: Vec<usize> = dims.iter().map(|&d| x.shape[d]).collect();
    let n = x.numel();
    let data = (0..n)
        .map(|i| {
            let c = coords_of(i, &shape);
            let mut src = vec![0; x.shape.len()];
            for (o, &d) in dims.iter().enumerate() {
                src[d] = c[o];
            }
            x.at(&src)
        })
        .collect();
    HostTensor::new(&shape, data)
}

/// `x[start:end:step]` along `axis`.
pub fn slice(x: &HostTensor, axis: usize, start: usize, end: usize, step: usize) -> HostTensor {
    let mut shape = x.shape.clone();
    shape[axis] = (end - start).div_ceil(step);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut c = coords_of(i, &shape);
            c[axis] = start + c[axis] * step;
            x.at(&c)
        })
        .collect();
    HostTensor::new(&shape, data)
}

/// Concatenation along `axis` (the other dimensions must match).
pub fn cat(xs: &[&HostTensor], axis: usize) -> HostTensor {
    let mut shape = xs[0].shape.clone();
    shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut c = coords_of(i, &shape);
            let mut k = c[axis];
            for x in xs {
                if k < x.shape[axis] {
                    c[axis] = k;
                    return x.at(&c);
                }
                k -= x.shape[axis];
            }
            unreachable!("reference::cat: coordinate beyond the inputs")
        })
        .collect();
    HostTensor::new(&shape, data)
}

/// `out[c] = x[c with c[axis] := index[c]]`.
pub fn gather(x: &HostTensor, axis: usize, index: &HostTensor) -> HostTensor {
    let data = (0..index.numel())
        .map(|i| {
            let mut c = coords_of(i, &index.shape);
            c[axis] = index.data[i] as usize;
            x.at(&c)
        })
        .collect();
    HostTensor::new(&index.shape, data)
}

/// `out = base`; `out[c with c[axis] := index[c]] += src[c]` over `index`'s positions in order.
pub fn scatter_add(
    base: &HostTensor,
    axis: usize,
    index: &HostTensor,
    src: &HostTensor,
) -> HostTensor {
    let mut out = base.clone();
    for i in 0..index.numel() {
        let c = coords_of(i, &index.shape);
        let mut dst = c.clone();
        dst[axis] = index.data[i] as usize;
        out.data[linear_of(&dst, &base.shape)] += src.at(&c);
    }
    out
}

/// `a [..., M, K] · b [..., K, N]` with broadcast batch dimensions.
pub fn matmul(a: &HostTensor, b: &HostTensor) -> HostTensor {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    let batch = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let batches: usize = batch.iter().product();
    // Start of the matrix that batch coordinate `c` selects in `x` (size-1 batch dims broadcast).
    let start = |x: &HostTensor, c: &[usize], rows: usize, cols: usize| {
        let own = &x.shape[..x.shape.len() - 2];
        let lead = c.len() - own.len();
        let coords: Vec<usize> = own
            .iter()
            .enumerate()
            .map(|(d, &s)| if s == 1 { 0 } else { c[lead + d] })
            .collect();
        linear_of(&coords, own) * rows * cols
    };
    let mut data = Vec::with_capacity(batches * m * n);
    for bi in 0..batches {
        let c = coords_of(bi, &batch);
        let (a0, b0) = (start(a, &c, m, k), start(b, &c, k, n));
        for i in 0..m {
            for j in 0..n {
                data.push(
                    (0..k)
                        .map(|kk| a.data[a0 + i * k + kk] * b.data[b0 + kk * n + j])
                        .sum(),
                );
            }
        }
    }
    HostTensor::new(&shape, data)
}

/// One SGD step on f64 values (the update of `Tensor::sgd_update`): returns the new parameter and
/// updates `buf` when momentum is on.
pub fn sgd_step(p: &[f64], g: &[f64], buf: &mut [f64], s: &dynlab_runtime::SgdStep) -> Vec<f64> {
    let (lr, mu) = (s.lr as f64, s.momentum as f64);
    (0..p.len())
        .map(|i| {
            let grad = g[i] * s.grad_scale as f64 + s.weight_decay as f64 * p[i];
            if mu == 0.0 {
                return p[i] - lr * grad;
            }
            buf[i] = if s.first {
                grad
            } else {
                mu * buf[i] + (1.0 - s.dampening as f64) * grad
            };
            let step = if s.nesterov {
                grad + mu * buf[i]
            } else {
                buf[i]
            };
            p[i] - lr * step
        })
        .collect()
}

/// One Adam/AdamW step on f64 values (the update of `Tensor::adam_update`).
pub fn adam_step(
    p: &[f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    s: &dynlab_runtime::AdamStep,
) -> Vec<f64> {
    let mut steps = vec![s.step as f64 - 1.0; p.len()];
    adam_step_counted(p, g, m, v, &mut steps, s)
}

/// One Adam/AdamW step with a step count per element (the update of
/// `Tensor::adam_update_counted`): `tᵢ ← tᵢ + 1`, then the bias corrections `1 − βᵗⁱ` of element `i`.
pub fn adam_step_counted(
    p: &[f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    steps: &mut [f64],
    s: &dynlab_runtime::AdamStep,
) -> Vec<f64> {
    let (b1, b2) = (s.beta1 as f64, s.beta2 as f64);
    let lr = s.lr as f64;
    (0..p.len())
        .map(|i| {
            steps[i] += 1.0;
            let (c1, c2) = (1.0 - b1.powf(steps[i]), 1.0 - b2.powf(steps[i]));
            let grad = g[i] * s.grad_scale as f64 + s.l2_decay as f64 * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * grad;
            v[i] = b2 * v[i] + (1.0 - b2) * grad * grad;
            let update = (m[i] / c1) / ((v[i] / c2).sqrt() + s.eps as f64);
            p[i] * (1.0 - lr * s.decoupled_decay as f64) - lr * update
        })
        .collect()
}

/// Window geometry shared by the convolution and pooling references: `(stride, padding, dilation)`
/// per spatial dimension.
#[derive(Clone, Copy, Debug)]
pub struct Window2d {
    /// Step between window positions (rows, columns).
    pub stride: [usize; 2],
    /// Zeros on both sides of each spatial dimension.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
}

impl Window2d {
    fn out(&self, size: usize, kernel: usize, d: usize) -> usize {
        (size + 2 * self.padding[d] - self.dilation[d] * (kernel - 1) - 1) / self.stride[d] + 1
    }

    /// Input position of tap `k` of output `o` in dimension `d`, if inside the image.
    fn tap(&self, o: usize, k: usize, d: usize, size: usize) -> Option<usize> {
        let t = (o * self.stride[d] + k * self.dilation[d]) as isize - self.padding[d] as isize;
        (0..size as isize).contains(&t).then_some(t as usize)
    }
}

/// `y[n, o, i, j] = b[o] + Σ_{c, ki, kj} x[n, g·Cg + c, tap(i, ki), tap(j, kj)] · w[o, c, ki, kj]`
/// with `g = o / (O/G)`.
pub fn conv2d(
    x: &HostTensor,
    w: &HostTensor,
    bias: Option<&HostTensor>,
    win: Window2d,
    groups: usize,
) -> HostTensor {
    let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [o, cg, kh, kw] = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
    let (ho, wo) = (win.out(h, kh, 0), win.out(wd, kw, 1));
    let og = o / groups;
    let mut y = vec![0.0; n * o * ho * wo];
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = bias.map_or(0.0, |bb| bb.data[oc]);
                    for ci in 0..cg {
                        for ki in 0..kh {
                            let Some(hi) = win.tap(i, ki, 0, h) else {
                                continue;
                            };
                            for kj in 0..kw {
                                let Some(wj) = win.tap(j, kj, 1, wd) else {
                                    continue;
                                };
                                let xc = g * cg + ci;
                                acc += x.data[((b * c + xc) * h + hi) * wd + wj]
                                    * w.data[((oc * cg + ci) * kh + ki) * kw + kj];
                            }
                        }
                    }
                    y[((b * o + oc) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    HostTensor::new(&[n, o, ho, wo], y)
}

/// Max (`max: true`, padding excluded) or mean (padding counted as zeros) over each window.
pub fn pool2d(x: &HostTensor, kernel: [usize; 2], win: Window2d, max: bool) -> HostTensor {
    let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (ho, wo) = (win.out(h, kernel[0], 0), win.out(wd, kernel[1], 1));
    let mut y = Vec::with_capacity(n * c * ho * wo);
    for plane in 0..n * c {
        for i in 0..ho {
            for j in 0..wo {
                let taps = (0..kernel[0]).flat_map(|ki| (0..kernel[1]).map(move |kj| (ki, kj)));
                let values: Vec<f64> = taps
                    .filter_map(|(ki, kj)| {
                        Some(
                            x.data[(plane * h + win.tap(i, ki, 0, h)?) * wd
                                + win.tap(j, kj, 1, wd)?],
                        )
                    })
                    .collect();
                y.push(if max {
                    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                } else {
                    values.iter().sum::<f64>() / (kernel[0] * kernel[1]) as f64
                });
            }
        }
    }
    HostTensor::new(&[n, c, ho, wo], y)
}
