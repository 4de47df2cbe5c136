//! The empirical Fisher trace `(1/N) Σ_i ‖∇_θ log p(y_i | x_i)‖²` from per-example gradient norms
//! computed in one forward and one backward pass (Goodfellow 2015, "Efficient per-example gradient
//! computations"; Rochette et al. 2019).
//!
//! Every parameter of the grokking networks sits in a `Linear`, a `LayerNorm` or an `Embedding`
//! (and the transformer's position embedding, added to the token embeddings). With the layer's
//! input `x_i` and `δ_i = ∂(Σ_j ℓ_j)/∂y_i` the gradient at its output for example `i` (rows
//! `t = 1…T` per example: `T = 1` for a vector, the sequence for the transformer), the example's
//! gradient of each parameter and its squared norm follow without materialising it per example:
//!
//! ```text
//! Linear     ∇W_i = Σ_t x_{i,t} δ_{i,t}ᵀ    ‖∇W_i‖² = Σ_{t,t'} (x_{i,t}·x_{i,t'}) (δ_{i,t}·δ_{i,t'})
//!            ∇b_i = Σ_t δ_{i,t}              ‖∇b_i‖² = Σ_{t,t'} δ_{i,t}·δ_{i,t'}
//! LayerNorm  ∇γ_i = Σ_t δ_{i,t} ⊙ x̂_{i,t}     ∇β_i = Σ_t δ_{i,t}
//! Embedding  ‖∇E_i‖² = Σ_{t,t'} [k_{i,t} = k_{i,t'}] δ_{i,t}·δ_{i,t'}   (k: the looked-up rows)
//! position   ∇P_i = δ_i at the embedding sum (the token embedding's output gradient)
//! ```
//!
//! Examples are independent in evaluation mode (no batch statistics), so `δ_i` of `Σ_j ℓ_j` is
//! example `i`'s own. The layers are found by walking the model and their inputs and outputs
//! recorded through the module contract's replacements, so any model built from these layers is
//! covered; a parameter outside them (the transformer with tied embeddings, whose table is also
//! the unembedding) is an error naming it. [`per_example_grad_norms_by_loop`] is the reference:
//! one backward pass per example.

use dynlab_autodiff::{grad, GradOptions, Var};
use dynlab_models::{Ctx, Embedding, GrokTransformer, LayerNorm, Linear, Module};
use dynlab_runtime::{Error, Result, Tensor};
use std::cell::RefCell;
use std::rc::Rc;

/// The layer kinds whose per-example gradients have a closed form.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Linear { bias: bool },
    LayerNorm { eps: f32, affine: bool },
    Embedding,
}

/// A layer's input and output in the recorded forward pass.
struct Recorded {
    path: String,
    kind: Kind,
    input: Var,
    output: Var,
}

fn kind_of(m: &dyn Module) -> Option<Kind> {
    if let Some(l) = m.downcast_ref::<Linear>() {
        return Some(Kind::Linear {
            bias: l.bias.is_some(),
        });
    }
    if let Some(l) = m.downcast_ref::<LayerNorm>() {
        return Some(Kind::LayerNorm {
            eps: l.eps,
            affine: l.elementwise_affine,
        });
    }
    m.downcast_ref::<Embedding>().map(|_| Kind::Embedding)
}

/// The parameter names a layer of `kind` at `path` owns.
fn owned(path: &str, kind: Kind) -> Vec<String> {
    let names: &[&str] = match kind {
        Kind::Linear { bias: true } => &["weight", "bias"],
        Kind::Linear { bias: false } | Kind::Embedding => &["weight"],
        Kind::LayerNorm { affine: true, .. } => &["gamma", "beta"],
        Kind::LayerNorm { affine: false, .. } => &[],
    };
    let prefix = |n: &&str| match path {
        "" => n.to_string(),
        p => format!("{p}.{n}"),
    };
    names.iter().map(prefix).collect()
}

/// The transformer's position embedding, covered through its token embedding's output.
const POSITION_EMBEDDING: &str = "position_embedding";

/// `‖∇_θ ℓ_i‖²` of `ℓ_i = −log softmax(f(x_i))_{y_i}` for every example, `[N]`, batched (see the
/// module docs); `inputs` as the model's forward pass takes them, `labels` i32 `[N]`.
pub fn per_example_grad_norms(
    model: &dyn Module,
    inputs: &Tensor,
    labels: &Tensor,
) -> Result<Tensor> {
    let op = "grokking::per_example_grad_norms";
    let mut layers = Vec::new();
    model.visit(&mut |path, m| layers.extend(kind_of(m).map(|k| (path.to_string(), k))));
    let covered: Vec<String> = layers.iter().flat_map(|(p, k)| owned(p, *k)).collect();
    let transformer = model.downcast_ref::<GrokTransformer>();
    if transformer.is_some_and(|t| t.shape.tie_embeddings) {
        return Err(Error::value(
            op,
            "a transformer with tied embeddings (the table is a lookup and the unembedding)",
            "untied embeddings (or per_example_grad_norms_by_loop)",
        ));
    }
    let position = transformer.map(|_| POSITION_EMBEDDING);
    for (name, _) in model.params() {
        if !covered.contains(&name) && Some(name.as_str()) != position {
            return Err(Error::value(
                op,
                format!("parameter `{name}` outside a Linear, LayerNorm or Embedding"),
                "a model whose parameters all sit in those layers (untied embeddings)",
            ));
        }
    }
    let records = Rc::new(RefCell::new(Vec::<Recorded>::new()));
    let mut ctx = Ctx::eval();
    for (path, kind) in &layers {
        let (sink, path_name, kind) = (records.clone(), path.clone(), *kind);
        ctx = ctx.with_replacement(path, move |m, x, ctx| {
            let y = m.forward(x, ctx)?;
            sink.borrow_mut().push(Recorded {
                path: path_name.clone(),
                kind,
                input: x.clone(),
                output: y.clone(),
            });
            Ok(y)
        });
    }
    let logits = model.forward(&Var::constant(inputs.clone()), &mut ctx)?;
    drop(ctx);
    let loss = logits.cross_entropy_per_sample(labels)?.sum_all()?;
    let records = Rc::try_unwrap(records)
        .map_err(|_| Error::value(op, "a replacement still held", "the forward pass done"))?
        .into_inner();
    let outputs: Vec<&Var> = records.iter().map(|r| &r.output).collect();
    let options = GradOptions {
        create_graph: false,
        retain_graph: false,
    };
    let deltas = grad(&loss, &outputs, options)?;
    let n = inputs.shape()[0];
    let mut total = Tensor::zeros(&[n], inputs.device())?;
    for (r, delta) in records.iter().zip(&deltas) {
        total = total.add(&layer_norms(r, delta.value(), n)?)?;
        if position.is_some() && r.path == "token_embedding" {
            total = total.add(&squares_per_example(delta.value(), n)?)?;
        }
    }
    Ok(total)
}

/// `Σ` of squares of each example's slice of `t` (`[N, …]`), `[N]`.
fn squares_per_example(t: &Tensor, n: usize) -> Result<Tensor> {
    t.reshape(&[n as isize, -1])?.square()?.sum(1, false)
}

/// `Σ` of each example's slice of `t` (`[N, …]`), `[N]`.
fn per_example_sum(t: &Tensor, n: usize) -> Result<Tensor> {
    t.reshape(&[n as isize, -1])?.sum(1, false)
}

/// `R Rᵀ` per example of rows `[N, T, d]`: `[N, T, T]`.
fn gram(rows: &Tensor) -> Result<Tensor> {
    rows.matmul(&rows.transpose(1, 2)?)
}

/// `t [N, …, d]` as `[N, T, d]`.
fn rows(t: &Tensor, n: usize) -> Result<Tensor> {
    let d = t.shape().last().copied().unwrap_or(1) as isize;
    t.contiguous()?.reshape(&[n as isize, -1, d])
}

/// One layer's contribution `Σ_params ‖∇p_i‖²`, `[N]`.
fn layer_norms(r: &Recorded, delta: &Tensor, n: usize) -> Result<Tensor> {
    let d = rows(delta, n)?;
    let summed = |t: &Tensor| squares_per_example(&t.sum(1, false)?, n);
    match r.kind {
        Kind::Linear { bias } => {
            // ‖X_iᵀ Δ_i‖²_F = Σ_{t,t'} (x_t·x_t')(δ_t·δ_t'): two [N, T, T] Gram matrices, never
            // the [N, in, out] per-example gradients; ‖Σ_t δ_t‖² = Σ_{t,t'} δ_t·δ_t'.
            let x = rows(r.input.value(), n)?;
            let (gx, gd) = (gram(&x)?, gram(&d)?);
            let weight = per_example_sum(&gx.mul(&gd)?, n)?;
            match bias {
                true => weight.add(&per_example_sum(&gd, n)?),
                false => Ok(weight),
            }
        }
        Kind::LayerNorm { affine: false, .. } => Tensor::zeros(&[n], delta.device()),
        Kind::LayerNorm { eps, affine: true } => {
            let x_hat = rows(&r.input.value().layer_norm(None, eps)?.y, n)?;
            summed(&d.mul(&x_hat)?)?.add(&summed(&d)?)
        }
        Kind::Embedding => {
            let indices = r.input.value().to_vec::<i32>()?;
            let t = indices.len() / n.max(1);
            let same: Vec<f32> = (0..n * t * t)
                .map(|ijk| {
                    let (i, a, b) = (ijk / (t * t), ijk / t % t, ijk % t);
                    f32::from(indices[i * t + a] == indices[i * t + b])
                })
                .collect();
            let same = Tensor::from_vec(same, &[n, t, t], delta.device())?;
            per_example_sum(&gram(&d)?.mul(&same)?, n)
        }
    }
}

/// The reference: `‖∇_θ ℓ_i‖²` by one backward pass per example.
pub fn per_example_grad_norms_by_loop(
    model: &dyn Module,
    inputs: &Tensor,
    labels: &Tensor,
) -> Result<Vec<f64>> {
    let params = model.params();
    let vars: Vec<&Var> = params.iter().map(|(_, p)| p.var()).collect();
    (0..inputs.shape()[0])
        .map(|i| {
            let x = Var::constant(inputs.narrow(0, i, 1)?);
            let logits = model.forward(&x, &mut Ctx::eval())?;
            let loss = logits
                .cross_entropy_per_sample(&labels.narrow(0, i, 1)?)?
                .sum_all()?;
            let grads = grad(&loss, &vars, GradOptions::default())?;
            let values: Vec<&Tensor> = grads.iter().map(Var::value).collect();
            Ok(Tensor::sum_squares(&values)?.item()? as f64)
        })
        .collect()
}

/// The empirical Fisher trace `(1/N) Σ_i ‖∇_θ log p(y_i | x_i)‖²` (batched).
pub fn fisher_trace(model: &dyn Module, inputs: &Tensor, labels: &Tensor) -> Result<f64> {
    let norms = per_example_grad_norms(model, inputs, labels)?;
    Ok(norms.mean_all()?.item()? as f64)
}
