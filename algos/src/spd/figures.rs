//! The figures an SPD run writes to its folder (heatmaps, as the reference's `plotting.py` draws
//! them):
//! - `weights.png`: each decomposed layer's target weight `W` next to the sum of its
//!   subcomponents `V U` (`[d_in, d_out]`);
//! - `top_components.png`: the first layer's eight subcomponents of largest `‖V_{:,c} U_{c,:}‖_F`;
//! - `ci_one_hot.png`: per layer, the causal importances for one-hot inputs `x = 0.75·e_i` (rows:
//!   features; columns: subcomponents, permuted so each feature's most important one comes first,
//!   then the rest by their largest importance);
//! - `ci_vs_input.png`: per layer, the importance of each feature's matched subcomponent as the
//!   feature's value sweeps its range (rows: features; columns: 21 values), the others 0.

use super::components::ComponentModel;
use super::config::TargetKind;
use super::importances;
use super::targets::feature_low;
use dynlab_autodiff::no_grad;
use dynlab_harness::{plot_heatmaps, Heatmap, RunDir};
use dynlab_models::Module;
use dynlab_runtime::{Device, Result, Tensor};

const ONE_HOT_VALUE: f32 = 0.75;
const SWEEP_POINTS: usize = 21;
const TOP_COMPONENTS: usize = 8;

/// Writes every figure (see the module docs) into `run`.
pub fn write_all<M: Module>(
    run: &RunDir,
    model: &ComponentModel<M>,
    kind: &TargetKind,
    device: &Device,
) -> Result<()> {
    weights(run, model)?;
    top_components(run, model)?;
    let f = model.targets[0].weight.shape()[0];
    let g_one_hot = one_hot_importances(model, device)?;
    let matched: Vec<Vec<usize>> = g_one_hot.iter().map(|g| argmax_rows(g, f)).collect();
    let c = model.components.layers[0].1.c();
    let maps = model
        .components
        .layers
        .iter()
        .zip(&g_one_hot)
        .map(|((path, _), g)| {
            let order = permutation(g, f, c);
            let values = (0..f)
                .flat_map(|i| order.iter().map(move |&k| g[i * c + k] as f64))
                .collect();
            heatmap(
                path,
                f,
                c,
                values,
                "feature i (x = 0.75 e_i)",
                "subcomponent (permuted)",
            )
        })
        .collect::<Vec<_>>();
    plot_heatmaps(
        run.file("ci_one_hot.png"),
        "causal importance, one-hot inputs",
        &maps,
    )?;
    ci_vs_input(run, model, kind, &matched, device)
}

fn heatmap(
    title: &str,
    rows: usize,
    cols: usize,
    values: Vec<f64>,
    row: &str,
    col: &str,
) -> Heatmap {
    Heatmap {
        title: title.to_string(),
        rows,
        cols,
        values,
        row_label: row.to_string(),
        col_label: col.to_string(),
    }
}

fn matrix(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.contiguous()?
        .to_vec::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect())
}

fn weights<M: Module>(run: &RunDir, model: &ComponentModel<M>) -> Result<()> {
    let mut maps = Vec::new();
    for ((path, comps), target) in model.components.layers.iter().zip(&model.targets) {
        let (rows, cols) = (target.weight.shape()[0], target.weight.shape()[1]);
        let sum = comps.v.value().matmul(comps.u.value())?;
        maps.push(heatmap(
            &format!("{path}: target W"),
            rows,
            cols,
            matrix(&target.weight)?,
            "input",
            "output",
        ));
        maps.push(heatmap(
            &format!("{path}: sum of subcomponents"),
            rows,
            cols,
            matrix(&sum)?,
            "input",
            "output",
        ));
    }
    plot_heatmaps(run.file("weights.png"), "target weights and V U", &maps)
}

fn top_components<M: Module>(run: &RunDir, model: &ComponentModel<M>) -> Result<()> {
    let (path, comps) = &model.components.layers[0];
    let v = comps.v.value().to_vec::<f32>()?;
    let u = comps.u.value().to_vec::<f32>()?;
    let (d_in, c) = (comps.v.value().shape()[0], comps.c());
    let d_out = u.len() / c;
    let column_norm = |k: usize| {
        (0..d_in)
            .map(|i| (v[i * c + k] as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let row_norm = |k: usize| {
        (0..d_out)
            .map(|o| (u[k * d_out + o] as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut order: Vec<(usize, f64)> = (0..c).map(|k| (k, column_norm(k) * row_norm(k))).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    let maps: Vec<Heatmap> = order
        .iter()
        .take(TOP_COMPONENTS)
        .map(|&(k, norm)| {
            let values = (0..d_in)
                .flat_map(|i| (0..d_out).map(move |o| (i, o)))
                .map(|(i, o)| v[i * c + k] as f64 * u[k * d_out + o] as f64)
                .collect();
            heatmap(
                &format!("c = {k}, norm {norm:.2}"),
                d_in,
                d_out,
                values,
                "input",
                "output",
            )
        })
        .collect();
    plot_heatmaps(
        run.file("top_components.png"),
        &format!("{path}: largest subcomponents"),
        &maps,
    )
}

/// Each layer's importances `[f, C]` (host, row-major) for the one-hot inputs `x = 0.75·e_i`.
pub fn one_hot_importances<M: Module>(
    model: &ComponentModel<M>,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let f = model.targets[0].weight.shape()[0];
    let one_hot: Vec<f32> = (0..f * f)
        .map(|k| if k / f == k % f { ONE_HOT_VALUE } else { 0.0 })
        .collect();
    host_importances(model, &Tensor::from_vec(one_hot, &[f, f], device)?)
}

fn host_importances<M: Module>(model: &ComponentModel<M>, x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let g = no_grad(|| importances(model, x))?;
    g.iter().map(|g| g.to_vec::<f32>()).collect()
}

/// Per row of `g` (`[rows, C]`), the column of its largest value.
fn argmax_rows(g: &[f32], rows: usize) -> Vec<usize> {
    let c = g.len() / rows.max(1);
    (0..rows)
        .map(|i| {
            (0..c)
                .max_by(|&a, &b| g[i * c + a].total_cmp(&g[i * c + b]))
                .unwrap_or(0)
        })
        .collect()
}

/// Columns ordered: each row's largest unused column in row order, then the rest by their largest
/// value (descending).
fn permutation(g: &[f32], rows: usize, c: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(c);
    for i in 0..rows {
        let best = (0..c)
            .filter(|k| !order.contains(k))
            .max_by(|&a, &b| g[i * c + a].total_cmp(&g[i * c + b]));
        if let Some(k) = best {
            if g[i * c + k] > 0.0 {
                order.push(k);
            }
        }
    }
    let column_max = |k: usize| (0..rows).map(|i| g[i * c + k]).fold(f32::MIN, f32::max);
    let mut rest: Vec<usize> = (0..c).filter(|k| !order.contains(k)).collect();
    rest.sort_by(|&a, &b| column_max(b).total_cmp(&column_max(a)));
    order.extend(rest);
    order
}

fn ci_vs_input<M: Module>(
    run: &RunDir,
    model: &ComponentModel<M>,
    kind: &TargetKind,
    matched: &[Vec<usize>],
    device: &Device,
) -> Result<()> {
    let f = model.targets[0].weight.shape()[0];
    let low = feature_low(kind) as f64;
    let value = |s: usize| low + (1.0 - low) * s as f64 / (SWEEP_POINTS - 1) as f64;
    let mut x = vec![0.0f32; f * SWEEP_POINTS * f];
    for i in 0..f {
        for s in 0..SWEEP_POINTS {
            x[(i * SWEEP_POINTS + s) * f + i] = value(s) as f32;
        }
    }
    let g = host_importances(model, &Tensor::from_vec(x, &[f * SWEEP_POINTS, f], device)?)?;
    let c = model.components.layers[0].1.c();
    let maps: Vec<Heatmap> = model
        .components
        .layers
        .iter()
        .zip(&g)
        .zip(matched)
        .map(|(((path, _), g), matched)| {
            let values = (0..f)
                .flat_map(|i| (0..SWEEP_POINTS).map(move |s| (i, s)))
                .map(|(i, s)| g[(i * SWEEP_POINTS + s) * c + matched[i]] as f64)
                .collect();
            let col = format!("x_i from {low} to 1");
            heatmap(
                path,
                f,
                SWEEP_POINTS,
                values,
                "feature i (its matched subcomponent)",
                &col,
            )
        })
        .collect();
    plot_heatmaps(
        run.file("ci_vs_input.png"),
        "causal importance against the input value",
        &maps,
    )
}
