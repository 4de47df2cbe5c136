//! The published evaluation (neural-gnn `GNN_PlotFigure.py`, `graph_trainer.py::data_test_signal`,
//! `sparsify.py`), in f64 on the host:
//!
//! - [`linear_fit`]: least squares `y = a x + b` and its `R² = 1 − SS_res / SS_tot`;
//! - connectivity R²: `ψ` on 1000 points of `[0.8·xnorm, xnorm]`, its mean the plateau `upper`,
//!   `W_corr = W · upper / 10` (the /10 undoes `g = 10`), then [`linear_fit`] of `W_corr` against the
//!   true `W` over all `n²` entries (R² is invariant to the correction; the slope is not);
//! - [`rollout_r2`]: every `step` frames a fit of predicted against true `u` across neurons on the
//!   points within 3σ of the median, R² on all points, 0 on collapse (no spread) or explosion
//!   (non-finite); averaged;
//! - [`mean_pearson`]: mean over neurons of the correlation of true and predicted traces (NaN
//!   neurons skipped);
//! - [`cluster_accuracy`]: embeddings min-max normalised (globally), single-linkage clusters at
//!   distance threshold 0.1 (= connected components of the "closer than 0.1" graph), each true
//!   type labelled by the median cluster id of its neurons, accuracy of that labelling.

/// A least-squares line and its coefficient of determination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearFit {
    /// Slope `a`.
    pub slope: f64,
    /// Intercept `b`.
    pub intercept: f64,
    /// `1 − SS_res / SS_tot` (0 when `y` has no spread).
    pub r2: f64,
}

/// Least squares `y = a x + b` over the pairs.
pub fn linear_fit(x: &[f64], y: &[f64]) -> LinearFit {
    let n = x.len().min(y.len()) as f64;
    if n == 0.0 {
        return LinearFit {
            slope: 0.0,
            intercept: 0.0,
            r2: 0.0,
        };
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxx += (a - mx) * (a - mx);
        sxy += (a - mx) * (b - my);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = my - slope * mx;
    LinearFit {
        slope,
        intercept,
        r2: r2_of(x, y, slope, intercept),
    }
}

/// `1 − SS_res / SS_tot` of the line `(slope, intercept)` on the pairs.
fn r2_of(x: &[f64], y: &[f64], slope: f64, intercept: f64) -> f64 {
    let n = y.len() as f64;
    let my = y.iter().sum::<f64>() / n;
    let ss_tot: f64 = y.iter().map(|v| (v - my) * (v - my)).sum();
    let ss_res: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - slope * a - intercept).powi(2))
        .sum();
    if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        0.0
    }
}

/// Connectivity recovery: the fit of the corrected learned `W` (`learned · upper / 10`) against the
/// true `W` over all entries.
pub fn connectivity_fit(learned: &[f32], truth: &[f32], upper: f64) -> LinearFit {
    let x: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = learned.iter().map(|&v| v as f64 * upper / 10.0).collect();
    linear_fit(&x, &y)
}

/// The mean of `values` (the plateau `upper` of `ψ` on `[0.8·xnorm, xnorm]`).
pub fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}

/// `count` points evenly spaced on `[lo, hi]` (both ends included).
pub fn linspace(lo: f64, hi: f64, count: usize) -> Vec<f32> {
    let step = if count > 1 {
        (hi - lo) / (count - 1) as f64
    } else {
        0.0
    };
    (0..count).map(|k| (lo + step * k as f64) as f32).collect()
}

/// The published rollout R² of predicted against true frames (`[T, n]` each, row-major), one fit
/// every `step` frames (see the module docs).
pub fn rollout_r2(truth: &[f32], predicted: &[f32], n: usize, step: usize) -> f64 {
    let frames = truth.len() / n.max(1);
    let scores: Vec<f64> = (0..frames)
        .step_by(step.max(1))
        .map(|t| frame_r2(&truth[t * n..(t + 1) * n], &predicted[t * n..(t + 1) * n]))
        .collect();
    scores.iter().sum::<f64>() / scores.len().max(1) as f64
}

/// R² of one frame: the line fitted on points within 3σ of the median, scored on all.
fn frame_r2(truth: &[f32], predicted: &[f32]) -> f64 {
    let x: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = predicted.iter().map(|&v| v as f64).collect();
    if y.iter().any(|v| !v.is_finite()) {
        return 0.0;
    }
    let n = y.len() as f64;
    let my = y.iter().sum::<f64>() / n;
    let sigma = (y.iter().map(|v| (v - my).powi(2)).sum::<f64>() / n).sqrt();
    if sigma == 0.0 {
        return 0.0;
    }
    let mut sorted = y.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (xs, ys): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(&y)
        .filter(|(_, &v)| (v - median).abs() <= 3.0 * sigma)
        .map(|(&a, &b)| (a, b))
        .unzip();
    let fit = linear_fit(&xs, &ys);
    r2_of(&x, &y, fit.slope, fit.intercept).max(0.0)
}

/// Mean over neurons of the Pearson correlation of true and predicted traces (`[T, n]` each).
pub fn mean_pearson(truth: &[f32], predicted: &[f32], n: usize) -> f64 {
    let frames = truth.len() / n.max(1);
    let rs: Vec<f64> = (0..n)
        .map(|i| {
            let a: Vec<f64> = (0..frames).map(|t| truth[t * n + i] as f64).collect();
            let b: Vec<f64> = (0..frames).map(|t| predicted[t * n + i] as f64).collect();
            pearson(&a, &b)
        })
        .filter(|r| r.is_finite())
        .collect();
    if rs.is_empty() {
        return f64::NAN;
    }
    rs.iter().sum::<f64>() / rs.len() as f64
}

/// Pearson's r (NaN when either side has no spread).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Single-linkage cluster ids (numbered by first member) of `points [n, d]` at distance `threshold`.
pub fn single_linkage(points: &[f32], d: usize, threshold: f64) -> Vec<usize> {
    let n = points.len() / d.max(1);
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            let dist: f64 = (0..d)
                .map(|k| (points[i * d + k] as f64 - points[j * d + k] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            if dist <= threshold {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    let mut ids = vec![usize::MAX; n];
    let mut labels = Vec::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        if ids[r] == usize::MAX {
            ids[r] = labels.len();
            labels.push(r);
        }
        ids[i] = ids[r];
    }
    ids
}

/// Cluster ids of embeddings `[n, d]` min-max normalised (globally), single linkage at 0.1.
pub fn embedding_clusters(embeddings: &[f32], d: usize) -> Vec<usize> {
    let (lo, hi) = embeddings
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let normalised: Vec<f32> = embeddings.iter().map(|&v| (v - lo) / span).collect();
    single_linkage(&normalised, d, 0.1)
}

/// The published cluster accuracy of embeddings `[n, d]` against the true types. Degenerate when
/// the embeddings have not separated: with a single cluster every type is labelled with it and the
/// accuracy is 1 (report the number of clusters beside it).
pub fn cluster_accuracy(embeddings: &[f32], d: usize, types: &[usize]) -> f64 {
    let clusters = embedding_clusters(embeddings, d);
    let kinds = types.iter().max().map_or(0, |&t| t + 1);
    let label_of_type: Vec<usize> = (0..kinds)
        .map(|t| {
            let mut ids: Vec<usize> = (0..types.len())
                .filter(|&i| types[i] == t)
                .map(|i| clusters[i])
                .collect();
            ids.sort_unstable();
            median_rounded(&ids)
        })
        .collect();
    let correct = (0..types.len())
        .filter(|&i| clusters[i] == label_of_type[types[i]])
        .count();
    correct as f64 / types.len().max(1) as f64
}

/// `round(median(ids))` of sorted ids (numpy's median: the mean of the middle two when even).
fn median_rounded(sorted: &[usize]) -> usize {
    match sorted.len() {
        0 => usize::MAX,
        len if len % 2 == 1 => sorted[len / 2],
        len => ((sorted[len / 2 - 1] + sorted[len / 2]) as f64 / 2.0).round() as usize,
    }
}
