//! One epoch of classifier training: shuffle (mini-batch) or take the whole set (full batch);
//! per step: forward, mean cross-entropy, backward, global gradient norm (clipped if asked), fused
//! optimizer update. Losses, accuracies and norms are accumulated on the device and read back once.

use crate::optim::{clip_scale, global_grad_norm, LrSchedule, Optimizer};
use dynlab_autodiff::{no_grad, Var};
use dynlab_models::Module;
use dynlab_runtime::{DType, Error, Result, Rng, Tensor};

/// A model that maps a batch of inputs to logits `[N, classes]` and a representation `[N, d]`.
pub trait Classifier: Module {
    fn classify(&self, inputs: &Tensor) -> Result<(Var, Var)>;
}

impl Classifier for dynlab_models::BaselineMlp {
    fn classify(&self, inputs: &Tensor) -> Result<(Var, Var)> {
        self.forward(inputs)
    }
}

/// Inputs (rows along axis 0) and i32 class labels.
#[derive(Clone, Debug)]
pub struct LabeledData {
    pub inputs: Tensor,
    pub labels: Tensor,
}

impl LabeledData {
    pub fn new(inputs: Tensor, labels: Tensor) -> Result<LabeledData> {
        if labels.dtype() != DType::I32
            || labels.rank() != 1
            || inputs.shape().first() != labels.shape().first()
        {
            return Err(Error::shape(
                "LabeledData::new",
                format!(
                    "inputs {:?}, {} labels {:?}",
                    inputs.shape(),
                    labels.dtype(),
                    labels.shape()
                ),
                "i32 labels [N] for inputs [N, ...]",
            ));
        }
        Ok(LabeledData { inputs, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug)]
pub struct StepOptions {
    /// `None`: full batch.
    pub batch_size: Option<usize>,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochTrainStats {
    pub loss: f32,
    pub acc: f32,
    pub grad_norm: f32,
    pub weight_norm: f32,
    pub repr_norm: f32,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f32,
    pub acc: f32,
}

/// Fraction of rows whose argmax equals the label, as a device scalar.
fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    logits
        .argmax(1, false)?
        .to_dtype(DType::F32)?
        .eq(&labels.to_dtype(DType::F32)?)?
        .mean_all()
}

/// Mean ℓ2 norm of the rows of `repr`.
fn mean_row_norm(repr: &Tensor) -> Result<Tensor> {
    repr.square()?.sum(1, false)?.sqrt()?.mean_all()
}

/// `√(Σ‖θ‖²)` over the model's parameters, as a device scalar.
pub(crate) fn weight_norm(model: &dyn Module) -> Result<Tensor> {
    let values: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, p)| p.value().clone())
        .collect();
    global_grad_norm(&values.iter().collect::<Vec<_>>())
}

/// Trains `model` for one epoch over `data`.
pub fn train_epoch(
    model: &mut dyn Classifier,
    optimizer: &mut Optimizer,
    schedule: &LrSchedule,
    data: &LabeledData,
    options: StepOptions,
    rng: &mut Rng,
) -> Result<EpochTrainStats> {
    let n = data.len();
    if n == 0 {
        return Err(Error::value(
            "train_epoch",
            "an empty dataset",
            "at least one sample",
        ));
    }
    let batch = options.batch_size.unwrap_or(n).clamp(1, n);
    let order = if batch < n {
        Some(Tensor::randperm(n, rng, data.labels.device())?)
    } else {
        None
    };
    let mut sums: Vec<Tensor> = Vec::new();
    let mut lr = 0.0;
    let steps = n.div_ceil(batch);
    for s in 0..steps {
        let (x, y) = match &order {
            Some(perm) => {
                let idx = perm.narrow(0, s * batch, batch.min(n - s * batch))?;
                (
                    data.inputs.index_select(0, &idx)?,
                    data.labels.index_select(0, &idx)?,
                )
            }
            None => (data.inputs.clone(), data.labels.clone()),
        };
        let rows = y.shape()[0] as f32;
        let (logits, repr) = model.classify(&x)?;
        let loss = logits.cross_entropy(&y)?;
        let grads = loss.backward()?;
        let params = model.params();
        let grad_list: Vec<&Tensor> = params
            .iter()
            .filter_map(|(_, p)| grads.tensor(p.var()))
            .collect();
        let gnorm = global_grad_norm(&grad_list)?;
        drop(params);
        let scale = match options.clip_norm {
            Some(c) => clip_scale(gnorm.item()?, c)?,
            None => 1.0,
        };
        lr = schedule.at(optimizer.steps() + 1);
        no_grad(|| -> Result<()> {
            sums.push(loss.value().mul_scalar(rows)?.reshape(&[1])?);
            sums.push(
                accuracy(logits.value(), &y)?
                    .mul_scalar(rows)?
                    .reshape(&[1])?,
            );
            sums.push(gnorm.reshape(&[1])?);
            sums.push(
                mean_row_norm(repr.value())?
                    .mul_scalar(rows)?
                    .reshape(&[1])?,
            );
            Ok(())
        })?;
        drop((logits, repr, loss));
        optimizer.step(&mut *model, &grads, lr, scale)?;
    }
    let wn = weight_norm(&*model)?.reshape(&[1])?;
    let mut all: Vec<&Tensor> = sums.iter().collect();
    all.push(&wn);
    let host = Tensor::cat(&all, 0)?.to_vec::<f32>()?;
    let total = |k: usize| host[..4 * steps].iter().skip(k).step_by(4).sum::<f32>();
    let stats = EpochTrainStats {
        loss: total(0) / n as f32,
        acc: total(1) / n as f32,
        grad_norm: total(2) / steps as f32,
        repr_norm: total(3) / n as f32,
        weight_norm: host[4 * steps],
        lr,
    };
    if !stats.loss.is_finite() || !stats.weight_norm.is_finite() {
        return Err(Error::Numerical {
            op: "train_epoch",
            message: format!(
                "training diverged: loss {} and weight norm {} after step {}",
                stats.loss,
                stats.weight_norm,
                optimizer.steps()
            ),
        });
    }
    Ok(stats)
}

/// Mean cross-entropy and accuracy of `model` on `data`, without recording.
pub fn evaluate(model: &dyn Classifier, data: &LabeledData) -> Result<Evaluation> {
    no_grad(|| {
        let (logits, _) = model.classify(&data.inputs)?;
        let loss = logits.value().cross_entropy(&data.labels)?.reshape(&[1])?;
        let acc = accuracy(logits.value(), &data.labels)?.reshape(&[1])?;
        let host = Tensor::cat(&[&loss, &acc], 0)?.to_vec::<f32>()?;
        Ok(Evaluation {
            loss: host[0],
            acc: host[1],
        })
    })
}
