//! The runner's measurements: which network's input the metrics differentiate with respect to,
//! the inputs they are evaluated on, the values of one epoch, and the end-of-run figures.

use super::config::MetricsConfig;
use super::fisher::fisher_trace;
use super::metrics::{
    input_hessian_trace, jacobian_norm, radial_power, spectral_smoothness, weight_curvature,
};
use super::routing::head_utilisation;
use dynlab_autodiff::Var;
use dynlab_harness::{
    plot_heatmaps, plot_history, Figure, Heatmap, History, Panel, RunDir, Summary, Value,
};
use dynlab_models::{BaselineMlp, Ctx, GrokTransformer, Module, Param, ParamKind, RoutedNetwork};
use dynlab_runtime::{DType, Error, Result, Rng, Tensor};
use dynlab_train::Batch;

/// The network's continuous input for encoded inputs: the one-hot rows (or embedded operands) of
/// the MLP and the routed network, the input embeddings `E[tokens] + P` of the transformer.
pub fn continuous_input(model: &dyn Module, encoded: &Tensor) -> Result<Tensor> {
    let var = Var::constant(encoded.clone());
    if let Some(m) = model.downcast_ref::<BaselineMlp>() {
        return match &m.embedding {
            None => Ok(encoded.clone()),
            Some(e) => {
                let n = encoded.shape()[0] as isize;
                let rows = e.forward(&var, &mut Ctx::eval())?;
                Ok(rows.value().reshape(&[n, -1])?)
            }
        };
    }
    if let Some(m) = model.downcast_ref::<GrokTransformer>() {
        return Ok(m.embeddings(encoded, &mut Ctx::eval())?.value().clone());
    }
    if model.downcast_ref::<RoutedNetwork>().is_some() {
        return Ok(encoded.clone());
    }
    Err(unsupported(model))
}

/// The logits from the continuous input (evaluation mode).
pub fn logits_from_input(model: &dyn Module, x: &Var) -> Result<Var> {
    let mut ctx = Ctx::eval();
    if let Some(m) = model.downcast_ref::<BaselineMlp>() {
        return m.mlp.forward(x, &mut ctx);
    }
    if let Some(m) = model.downcast_ref::<GrokTransformer>() {
        return m.forward_from_embeddings(x, &mut ctx);
    }
    if let Some(m) = model.downcast_ref::<RoutedNetwork>() {
        return m.forward(x, &mut ctx);
    }
    Err(unsupported(model))
}

fn unsupported(model: &dyn Module) -> Error {
    Error::value(
        "grokking::metrics",
        format!("a model with children {:?}", children(model)),
        "a single BaselineMlp, GrokTransformer or RoutedNetwork (stacked replicas are not measured)",
    )
}

fn children(model: &dyn Module) -> Vec<String> {
    model.children().into_iter().map(|(name, _)| name).collect()
}

/// What the metrics are evaluated on.
pub struct MetricInputs {
    /// Every pair `(a, b)` encoded, row `a·p + b`.
    pub grid: Tensor,
    /// The first `metrics.samples` training inputs, encoded.
    pub samples: Tensor,
    /// The whole training set (the weight curvature's loss).
    pub train: Batch,
}

/// One epoch's measurements (`None`: not computed this epoch).
#[derive(Clone, Debug, Default)]
pub struct EpochMetrics {
    /// `‖W‖` of every weight matrix and embedding table, by parameter name (empty: not computed).
    pub layer_norms: Vec<(String, f64)>,
    /// Hard spectral smoothness.
    pub smoothness: Option<f64>,
    /// `out_dim · E‖Jᵀv‖²`.
    pub jacobian_norm: Option<f64>,
    /// Mean input-Hessian trace of the top logit, and its standard error.
    pub input_hessian: Option<(f64, f64)>,
    /// `‖∇_θ L‖` of the full training loss.
    pub loss_grad_norm: Option<f64>,
    /// Hutchinson `tr ∇²_θ L` and its standard error.
    pub weight_hessian: Option<(f64, f64)>,
    /// The empirical Fisher trace over the training set (`None` for a tied transformer).
    pub fisher_trace: Option<f64>,
}

/// Separates the weight-Hessian probes from the input-Hessian probes of the same epoch.
const WEIGHT_PROBE_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn due(every: u64, epoch: u64) -> bool {
    every > 0 && epoch.is_multiple_of(every)
}

/// The measurements due at `epoch` of `model` (a single network): unit directions drawn from `rng`,
/// Rademacher probes from `seed + epoch`.
pub fn measure(
    model: &dyn Module,
    config: &MetricsConfig,
    p: usize,
    inputs: &MetricInputs,
    epoch: u64,
    (rng, seed): (&mut Rng, u64),
) -> Result<EpochMetrics> {
    let seed = seed.wrapping_add(epoch);
    let mut out = EpochMetrics::default();
    if due(config.layer_norms_every, epoch) {
        out.layer_norms = layer_weight_norms(model)?;
    }
    let f = |x: &Var| logits_from_input(model, x);
    if due(config.smoothness_every, epoch) {
        let logits = model.forward(&Var::constant(inputs.grid.clone()), &mut Ctx::eval())?;
        let cutoff = config.cutoff_for(p);
        out.smoothness = Some(spectral_smoothness(logits.value(), cutoff)?);
    }
    let needs_input = due(config.jacobian_every, epoch) || due(config.input_hessian_every, epoch);
    if needs_input {
        let x = continuous_input(model, &inputs.samples)?;
        if due(config.jacobian_every, epoch) {
            out.jacobian_norm = Some(jacobian_norm(f, &x, config.jacobian_probes, p, rng)?);
        }
        if due(config.input_hessian_every, epoch) {
            let t = input_hessian_trace(f, &x, config.input_hessian_probes, seed)?;
            out.input_hessian = Some((t.mean, t.std_error));
        }
    }
    if due(config.weight_curvature_every, epoch) {
        let params = model.params();
        let vars: Vec<&Var> = params.iter().map(|(_, p)| p.var()).collect();
        let logits = model.forward(
            &Var::constant(inputs.train.inputs.clone()),
            &mut Ctx::eval(),
        )?;
        let loss = logits.cross_entropy(&inputs.train.targets)?;
        let probes = config.weight_hessian_probes;
        let (norm, trace) = weight_curvature(&loss, &vars, probes, seed ^ WEIGHT_PROBE_MIX)?;
        out.loss_grad_norm = Some(norm);
        out.weight_hessian = Some((trace.mean, trace.std_error));
        let tied = model
            .downcast_ref::<GrokTransformer>()
            .is_some_and(|t| t.shape.tie_embeddings);
        if !tied {
            let train = &inputs.train;
            out.fisher_trace = Some(fisher_trace(model, &train.inputs, &train.targets)?);
        }
    }
    Ok(out)
}

/// `‖W‖` of every weight matrix and embedding table of `model`, by parameter name (one read-back).
pub fn layer_weight_norms(model: &dyn Module) -> Result<Vec<(String, f64)>> {
    let weights: Vec<(String, &Param)> = model
        .params()
        .into_iter()
        .filter(|(_, p)| matches!(p.kind(), ParamKind::Weight | ParamKind::Embedding))
        .collect();
    if weights.is_empty() {
        return Ok(Vec::new());
    }
    let squares = weights
        .iter()
        .map(|(_, p)| p.value().square()?.sum_all())
        .collect::<Result<Vec<_>>>()?;
    let norms = Tensor::stack(&squares.iter().collect::<Vec<_>>(), 0)?.sqrt()?;
    let norms = norms.to_vec::<f32>()?;
    Ok(weights
        .into_iter()
        .zip(norms)
        .map(|((name, _), n)| (name, f64::from(n)))
        .collect())
}

/// The end-of-run figures of a single network: `spectrum.png` (the power of the learned function
/// per radial frequency, with the smoothness cutoff marked) and, for the routed network,
/// `routing.png` (the dominant head per `(a, b)`, one map per layer) with each layer's head
/// utilisation in the summary.
pub fn figures(
    model: &dyn Module,
    inputs: &MetricInputs,
    (p, cutoff): (usize, usize),
    run: &RunDir,
    summary: &mut Summary,
) -> Result<()> {
    let grid = Var::constant(inputs.grid.clone());
    let mut ctx = Ctx::eval().with_taps(&["routing"]);
    let logits = model.forward(&grid, &mut ctx)?;
    let power = radial_power(logits.value())?;
    let mut spectrum = History::default();
    for (k, w) in power.iter().enumerate() {
        spectrum.push_cells(&[
            ("frequency", Value::U64(k as u64)),
            ("power", Value::F64(*w)),
        ])?;
    }
    let figure = Figure {
        title: format!("power of the learned function per radial frequency (p = {p})"),
        x: "frequency".into(),
        log_x: false,
        panels: vec![Panel::new("spectrum", "fraction of power")
            .line("power", "argmax image")
            .log_y()],
        markers: vec![(format!("cutoff K = {cutoff}"), cutoff as f64)],
    };
    plot_history(run.file("spectrum.png"), &spectrum, &figure)?;
    summary.set(
        "final_smoothness",
        spectral_smoothness(logits.value(), cutoff)?,
    );
    if let Some(w) = ctx.tapped("routing") {
        routing_figure(w.value(), p, run, summary)?;
    }
    Ok(())
}

fn routing_figure(w: &Tensor, p: usize, run: &RunDir, summary: &mut Summary) -> Result<()> {
    let (layers, heads) = (w.shape()[1], w.shape()[2]);
    let dominant = host_values(&w.argmax(-1, false)?.to_dtype(DType::F32)?)?;
    let maps: Vec<Heatmap> = (0..layers)
        .map(|l| Heatmap {
            title: format!("layer {l}: dominant head (0…{})", heads - 1),
            rows: p,
            cols: p,
            values: (0..p * p).map(|ab| dominant[ab * layers + l]).collect(),
            row_label: "a".into(),
            col_label: "b".into(),
        })
        .collect();
    plot_heatmaps(
        run.file("routing.png"),
        "routing over the (a, b) grid",
        &maps,
    )?;
    let utilisation = host_values(&head_utilisation(w)?)?;
    let per_layer: Vec<Vec<f64>> = utilisation.chunks(heads).map(<[f64]>::to_vec).collect();
    summary.set("head_utilisation", per_layer);
    Ok(())
}

fn host_values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_vec::<f32>()?.into_iter().map(f64::from).collect())
}
