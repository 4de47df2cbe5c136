//! What SPD reports about a decomposition:
//!
//! - CI-L0 of a layer: the mean over the batch of `#{c : g_c > 10⁻²}` (the reference's
//!   `calc_ci_l_zero`);
//! - live subcomponents: those whose importance exceeds a threshold on at least one example of
//!   an evaluation batch;
//! - one-hot matching: for inputs `x = 0.75·e_i`, the subcomponents each feature makes live; a
//!   layer decomposes feature by feature when every feature has exactly one and no two share it;
//! - for TMS, on the first layer's rank-one matrices against the target (SPD paper, "SPD
//!   Results: TMS"): `MMCS = (1/f) Σ_j max_c cos(V_{j,c} U_{c,:}, W_{j,:})` and
//!   `ML2R = (1/f) Σ_j ‖V_{j,c*} U_{c*,:}‖ / ‖W_{j,:}‖` with `c*` the argmax of that cosine — in
//!   dynlab's `[in, out]` layout row `j` of `linear1`'s weight is feature `j`'s direction (the
//!   reference's rows of `Wᵀ`); cosines signed, norms guarded by 10⁻¹².

/// The CI-L0 of importances `g` (`[B, C]` row-major): mean over rows of the count above
/// `threshold`.
pub fn ci_l0(g: &[f32], c: usize, threshold: f32) -> f64 {
    let rows = g.len() / c.max(1);
    if rows == 0 {
        return 0.0;
    }
    let above = g.iter().filter(|&&v| v > threshold).count();
    above as f64 / rows as f64
}

/// Subcomponents whose importance in `g` (`[B, C]`) exceeds `threshold` on some row.
pub fn live_components(g: &[f32], c: usize, threshold: f32) -> Vec<usize> {
    (0..c)
        .filter(|&k| g.iter().skip(k).step_by(c).any(|&v| v > threshold))
        .collect()
}

/// MMCS and ML2R with their standard deviations over features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DirectionMatch {
    /// Mean over features of the best cosine similarity.
    pub mmcs: f64,
    /// Its (population) standard deviation over features.
    pub mmcs_std: f64,
    /// Mean over features of the norm ratio of the best-matching subcomponent.
    pub ml2r: f64,
    /// Its standard deviation over features.
    pub ml2r_std: f64,
}

/// MMCS and ML2R of subcomponents `V` (`[f, C]`) and `U` (`[C, h]`) against the target weight
/// `W` (`[f, h]`), all row-major (see the module docs).
pub fn direction_match(
    v: &[f32],
    u: &[f32],
    w: &[f32],
    f: usize,
    c: usize,
    h: usize,
) -> DirectionMatch {
    const EPS: f64 = 1e-12;
    let norm = |x: &mut dyn Iterator<Item = f64>| x.map(|v| v * v).sum::<f64>().sqrt();
    let mut best_cos = Vec::with_capacity(f);
    let mut ratio = Vec::with_capacity(f);
    for j in 0..f {
        let target = &w[j * h..(j + 1) * h];
        let t_norm = norm(&mut target.iter().map(|&x| x as f64));
        let mut best = (f64::NEG_INFINITY, 0.0);
        for k in 0..c {
            let scale = v[j * c + k] as f64;
            let piece = u[k * h..(k + 1) * h].iter().map(|&x| scale * x as f64);
            let p_norm = norm(&mut piece.clone());
            let dot: f64 = piece.zip(target).map(|(a, &b)| a * b as f64).sum();
            let cos = dot / ((p_norm + EPS) * (t_norm + EPS));
            if cos > best.0 {
                best = (cos, p_norm);
            }
        }
        best_cos.push(best.0);
        ratio.push(best.1 / t_norm.max(EPS));
    }
    let (mmcs, mmcs_std) = mean_std(&best_cos);
    let (ml2r, ml2r_std) = mean_std(&ratio);
    DirectionMatch {
        mmcs,
        mmcs_std,
        ml2r,
        ml2r_std,
    }
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// For importances `g` of one-hot inputs (`[f, C]`, row `i` for `x = 0.75·e_i`), the number of
/// features whose input makes exactly one subcomponent exceed `threshold`, counting each
/// subcomponent for one feature only.
pub fn features_with_one_component(g: &[f32], c: usize, threshold: f32) -> usize {
    let rows = g.len() / c.max(1);
    let live: Vec<Vec<usize>> = (0..rows)
        .map(|i| (0..c).filter(|&k| g[i * c + k] > threshold).collect())
        .collect();
    let mut used = vec![0usize; c];
    live.iter()
        .filter(|l| l.len() == 1)
        .for_each(|l| used[l[0]] += 1);
    live.iter()
        .filter(|l| l.len() == 1 && used[l[0]] == 1)
        .count()
}

/// Rows of `w` (`[f, h]`, row-major) whose norm exceeds `fraction` of the largest row norm: the
/// features a target layer represents (a TMS can leave features out).
pub fn represented_features(w: &[f32], h: usize, fraction: f64) -> usize {
    let norms: Vec<f64> = w
        .chunks(h.max(1))
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let max = norms.iter().copied().fold(0.0, f64::max);
    norms.iter().filter(|&&n| n > fraction * max).count()
}
