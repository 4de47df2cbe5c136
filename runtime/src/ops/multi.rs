//! Launchers of the multi-tensor kernels (`dynlab_kernels::multi`): a model's gradient norm, its
//! weight norm and its optimizer update in one launch per chunk of tensors (a chunk is as many as
//! the device's bindings allow), with the clipping factor computed on the device.
//!
//! Replicas: `R` models stacked along every tensor's leading axis are updated and measured as `R`
//! separate models in the same launches — norms per replica (`*_rows`), each replica clipped by its
//! own norm, and per-replica multipliers of the learning rate and weight decay
//! ([`ReplicaScale`]).

use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::tensor::Tensor;
use crate::DType;
use cubecl::prelude::*;
use dynlab_kernels::multi::{adam_multi, adam_stats, sgd_multi, sum_squares, SUM_BLOCK};

/// Most tensors in one launch, whatever the device allows (the kernels unroll over them).
const MAX_CHUNK: usize = 16;
/// Bindings a launch needs besides its sequences: cubecl's metadata and scalars, and the kernels'
/// own table, norm or output buffers.
const RESERVED_BINDINGS: usize = 5;

/// Tensors per launch of a kernel that binds `per_tensor` buffers for each, within the device's
/// binding limit (4 Adam parameters per launch on Mesa lavapipe, 16 for the norms).
fn chunk_size(device: &crate::Device, per_tensor: usize) -> usize {
    let free = (device.limits().max_bindings as usize).saturating_sub(RESERVED_BINDINGS);
    (free / per_tensor).clamp(1, MAX_CHUNK)
}

/// Multipliers of one replica's learning rate and weight decay in an update of `R` stacked models
/// (a learning-rate or decay sweep trained as one model).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaScale {
    /// Factor on every parameter's learning rate.
    pub lr: f32,
    /// Factor on every parameter's weight decay (coupled and decoupled).
    pub weight_decay: f32,
}

impl ReplicaScale {
    /// No change: a single model's update.
    pub const ONE: ReplicaScale = ReplicaScale {
        lr: 1.0,
        weight_decay: 1.0,
    };
}

/// The replicas of an update (`[]` stands for one model) and a check that every tensor stacks them.
fn replica_scales<'a>(
    op: &'static str,
    replicas: &'a [ReplicaScale],
    tensors: impl IntoIterator<Item = &'a Tensor>,
) -> Result<&'a [ReplicaScale]> {
    let scales = if replicas.is_empty() {
        std::slice::from_ref(&ReplicaScale::ONE)
    } else {
        replicas
    };
    check_stacked(op, scales.len(), tensors)?;
    Ok(scales)
}

/// Every tensor has a leading axis of `rows` (or `rows` is 1).
fn check_stacked<'a>(
    op: &'static str,
    rows: usize,
    tensors: impl IntoIterator<Item = &'a Tensor>,
) -> Result<()> {
    if rows == 1 {
        return Ok(());
    }
    for t in tensors {
        if t.shape().first() != Some(&rows) {
            return Err(Error::shape(
                op,
                format!("tensor {:?} among {rows} replicas", t.shape()),
                format!("a leading replica axis of {rows}"),
            ));
        }
    }
    Ok(())
}

/// How gradients are scaled before an update.
#[derive(Clone, Copy, Debug)]
pub enum GradScale<'a> {
    /// Multiplied by this factor (1: unchanged).
    Constant(f32),
    /// Clipped to a global norm: multiplied by `min(1, max_norm / (norm + 1e-6))`, `norm` a device
    /// scalar (PyTorch's `clip_grad_norm_`), computed on the device; with replicas, each by its own
    /// norm.
    Clip {
        /// The gradients' global norm (one element; one per replica).
        norm: &'a Tensor,
        /// The largest norm let through.
        max_norm: f32,
    },
}

/// One parameter of a multi-tensor Adam update: its value and gradient, its state (updated in
/// place), and its own learning rate, decays and step count.
pub struct AdamTensor<'a> {
    /// The parameter.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// First moment.
    pub m: &'a mut Tensor,
    /// Second moment.
    pub v: &'a mut Tensor,
    /// Per-element step counts (f32), incremented in place; `None`: the bias corrections use `step`.
    pub steps: Option<&'a mut Tensor>,
    /// With `steps`: the reference AdamGnT update `θ −= lr·(1 − β₂ⁿ)·m / (√v + ε)` instead of
    /// bias-corrected Adam (see `dynlab_kernels::multi::adam_multi`).
    pub reference_gnt: bool,
    /// Learning rate.
    pub lr: f32,
    /// Coupled (L2) decay.
    pub l2_decay: f32,
    /// Decoupled (AdamW) decay.
    pub decoupled_decay: f32,
    /// 1-based step count of this parameter.
    pub step: u64,
}

/// One parameter of a multi-tensor SGD update.
pub struct SgdTensor<'a> {
    /// The parameter.
    pub param: &'a Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// The momentum buffer (updated in place; required when momentum is on).
    pub buf: Option<&'a mut Tensor>,
    /// Learning rate.
    pub lr: f32,
    /// L2 decay.
    pub weight_decay: f32,
    /// The buffer's first step (it is set to the gradient).
    pub first: bool,
}

/// One parameter of [`Tensor::adam_stats`]: its Adam moments, its value and its bias corrections
/// and decay.
pub struct AdamStatsTensor<'a> {
    /// First moment.
    pub m: &'a Tensor,
    /// Second moment.
    pub v: &'a Tensor,
    /// The parameter.
    pub param: &'a Tensor,
    /// `1 − β₁ᵗ`.
    pub c1: f32,
    /// `1 − β₂ᵗ`.
    pub c2: f32,
    /// Decoupled weight decay `λ` (0: none).
    pub decay: f32,
}

/// A sequence-of-arrays launch argument of row-major tensors starting at their buffers' first
/// element, each as long as the tensor (an empty tensor's buffer holds one element: its array is
/// empty, so the kernels neither read nor write it).
fn arrays<R: Runtime>(tensors: &[Tensor]) -> SequenceArg<R, Array<f32>> {
    let mut seq = SequenceArg::new();
    for t in tensors {
        seq.push(unsafe { ArrayArg::from_raw_parts(t.handle.clone(), t.numel()) });
    }
    seq
}

fn rowmajor(op: &'static str, t: &Tensor) -> Result<Tensor> {
    t.expect_f32(op)?;
    t.contiguous_from_zero()
}

impl Tensor {
    /// `Σ_k ‖x_k‖²` over `tensors` (f32, one device), as a 0-d tensor; one launch per chunk of
    /// tensors the device can bind (and one more to add the chunks).
    pub fn sum_squares(tensors: &[&Tensor]) -> Result<Tensor> {
        Tensor::squares("Tensor::sum_squares", tensors, 1, false)?.reshape(&[])
    }

    /// `√(Σ_k ‖x_k‖²)`: the global norm of `tensors` (gradient clipping, weight norms), as a 0-d
    /// tensor; one launch when they fit one chunk.
    pub fn global_norm(tensors: &[&Tensor]) -> Result<Tensor> {
        Tensor::squares("Tensor::global_norm", tensors, 1, true)?.reshape(&[])
    }

    /// `[R]` squared norms of `R` stacked models: entry `r` sums `x_k[r]²` over every tensor `k`
    /// (each with a leading axis of `R`), in the same launches as one model's.
    pub fn sum_squares_rows(tensors: &[&Tensor], replicas: usize) -> Result<Tensor> {
        Tensor::squares("Tensor::sum_squares_rows", tensors, replicas, false)
    }

    /// `[R]` global norms of `R` stacked models (see [`Tensor::sum_squares_rows`]).
    pub fn global_norm_rows(tensors: &[&Tensor], replicas: usize) -> Result<Tensor> {
        Tensor::squares("Tensor::global_norm_rows", tensors, replicas, true)
    }

    fn squares(op: &'static str, tensors: &[&Tensor], rows: usize, root: bool) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::value(op, "no tensors", "at least one"))?;
        if rows == 0 || rows > u32::MAX as usize {
            return Err(Error::value(op, format!("{rows} replicas"), "at least one"));
        }
        check_stacked(op, rows, tensors.iter().copied())?;
        let device = first.device().clone();
        let flat = tensors
            .iter()
            .map(|t| {
                first.expect_same_device(op, t)?;
                rowmajor(op, t)
            })
            .collect::<Result<Vec<_>>>()?;
        let chunks: Vec<&[Tensor]> = flat.chunks(chunk_size(&device, 1)).collect();
        let single = chunks.len() == 1;
        let out = Tensor::alloc(op, &[chunks.len(), rows], DType::F32, &device)?;
        for (slot, chunk) in chunks.iter().enumerate() {
            launch!(
                device,
                sum_squares::<f32>,
                CubeCount::Static(rows as u32, 1, 1),
                CubeDim::new_1d(SUM_BLOCK),
                arrays(chunk),
                out.buffer_arg(),
                slot as u32,
                rows as u32,
                root && single
            );
        }
        if single {
            return out.reshape(&[rows as isize]);
        }
        let total = out.sum(0, false)?;
        if root {
            total.sqrt()
        } else {
            Ok(total)
        }
    }

    /// One Adam/AdamW step of every parameter in `items`: returns their new values (in order) and
    /// updates each state in place; one launch per chunk of parameters (4 on lavapipe). `beta1`,
    /// `beta2`, `eps` are shared, learning rates and decays per parameter, scaled per replica by
    /// `replicas` (`[]`: one model).
    pub fn adam_update_multi(
        items: &mut [AdamTensor],
        beta1: f32,
        beta2: f32,
        eps: f32,
        scale: GradScale,
        replicas: &[ReplicaScale],
    ) -> Result<Vec<Tensor>> {
        let op = "Tensor::adam_update_multi";
        let mut outs = Vec::with_capacity(items.len());
        let Some(first) = items.first() else {
            return Ok(outs);
        };
        let replicas = replica_scales(op, replicas, items.iter().map(|it| it.param))?;
        let size = chunk_size(first.param.device(), 6);
        for chunk in items.chunks_mut(size) {
            let counted = chunk[0].steps.is_some();
            let reference_gnt = chunk[0].reference_gnt;
            if chunk
                .iter()
                .any(|it| it.steps.is_some() != counted || it.reference_gnt != reference_gnt)
            {
                return Err(Error::value(
                    op,
                    "parameters with and without per-element step counts (or the reference \
                     AdamGnT update) in one call",
                    "one kind per call",
                ));
            }
            if reference_gnt && !counted {
                return Err(Error::value(
                    op,
                    "the reference AdamGnT update without per-element step counts",
                    "per-element step counts",
                ));
            }
            let device = chunk[0].param.device().clone();
            let mut table = Vec::with_capacity(8 * chunk.len());
            let (mut params, mut grads, mut ms, mut vs, mut steps, mut news) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for it in chunk.iter_mut() {
                let (p, g) = it.param.update_operands(op, it.grad)?;
                if it.step == 0 && !counted {
                    return Err(Error::value(op, "step 0", "a 1-based step count"));
                }
                let t = it.step.clamp(1, i32::MAX as u64) as i32;
                for r in replicas {
                    table.extend([
                        it.lr * r.lr,
                        it.l2_decay * r.weight_decay,
                        it.decoupled_decay * r.weight_decay,
                        1.0 - beta1.powi(t),
                        1.0 - beta2.powi(t),
                        0.0,
                        0.0,
                        0.0,
                    ]);
                }
                ms.push(super::optim::owned_state(op, it.m, it.param)?);
                vs.push(super::optim::owned_state(op, it.v, it.param)?);
                if let Some(s) = it.steps.as_deref_mut() {
                    steps.push(super::optim::owned_state(op, s, it.param)?);
                }
                news.push(Tensor::alloc(op, it.param.shape(), DType::F32, &device)?);
                params.push(p);
                grads.push(g);
            }
            let n = params.iter().map(Tensor::numel).max().unwrap_or(0);
            if n > 0 {
                let table = Tensor::from_vec(table, &[8 * chunk.len() * replicas.len()], &device)?;
                let (norm, clip, factor) = scale.arguments(&table, replicas.len())?;
                // Without counts the kernel does not touch the steps sequence: the parameters stand
                // in (a buffer bound twice as writable fails to launch on wgpu).
                let steps = if counted { &steps } else { &params };
                let (count, dim) = units_grid(n);
                launch!(
                    device,
                    adam_multi::<f32>,
                    count,
                    dim,
                    arrays(&params),
                    arrays(&grads),
                    arrays(&ms),
                    arrays(&vs),
                    arrays(steps),
                    arrays(&news),
                    table.buffer_arg(),
                    norm.buffer_arg(),
                    clip,
                    factor,
                    beta1,
                    beta2,
                    eps,
                    replicas.len() as u32,
                    counted,
                    reference_gnt
                );
            }
            outs.extend(news);
        }
        Ok(outs)
    }

    /// One SGD step of every parameter in `items` (momentum `momentum`, PyTorch's dampening
    /// convention with `dampening`, Nesterov on request): returns their new values and updates the
    /// momentum buffers in place; one launch per chunk of parameters. Learning rates and decays are
    /// scaled per replica by `replicas` (`[]`: one model).
    pub fn sgd_update_multi(
        items: &mut [SgdTensor],
        momentum: f32,
        dampening: f32,
        nesterov: bool,
        scale: GradScale,
        replicas: &[ReplicaScale],
    ) -> Result<Vec<Tensor>> {
        let op = "Tensor::sgd_update_multi";
        let with_momentum = momentum > 0.0;
        let mut outs = Vec::with_capacity(items.len());
        let Some(first) = items.first() else {
            return Ok(outs);
        };
        let replicas = replica_scales(op, replicas, items.iter().map(|it| it.param))?;
        let size = chunk_size(first.param.device(), 4);
        for chunk in items.chunks_mut(size) {
            let device = chunk[0].param.device().clone();
            let mut table = Vec::with_capacity(4 * chunk.len());
            let (mut params, mut grads, mut bufs, mut news) = (vec![], vec![], vec![], vec![]);
            for it in chunk.iter_mut() {
                let (p, g) = it.param.update_operands(op, it.grad)?;
                let (now, coef) = if it.first {
                    (0.0, 1.0)
                } else {
                    (momentum, 1.0 - dampening)
                };
                for r in replicas {
                    table.extend([it.lr * r.lr, it.weight_decay * r.weight_decay, now, coef]);
                }
                if with_momentum {
                    let buf = it.buf.as_deref_mut().ok_or_else(|| {
                        Error::value(op, "no momentum buffer", "a buffer per parameter")
                    })?;
                    bufs.push(super::optim::owned_state(op, buf, it.param)?);
                }
                news.push(Tensor::alloc(op, it.param.shape(), DType::F32, &device)?);
                params.push(p);
                grads.push(g);
            }
            let n = params.iter().map(Tensor::numel).max().unwrap_or(0);
            if n > 0 {
                let table = Tensor::from_vec(table, &[4 * chunk.len() * replicas.len()], &device)?;
                let (norm, clip, factor) = scale.arguments(&table, replicas.len())?;
                // Without momentum the kernel does not read the buffers: pass the gradients.
                let bufs = if with_momentum { &bufs } else { &grads };
                let (count, dim) = units_grid(n);
                launch!(
                    device,
                    sgd_multi::<f32>,
                    count,
                    dim,
                    arrays(&params),
                    arrays(&grads),
                    arrays(bufs),
                    arrays(&news),
                    table.buffer_arg(),
                    norm.buffer_arg(),
                    clip,
                    factor,
                    momentum,
                    replicas.len() as u32,
                    with_momentum,
                    nesterov
                );
            }
            outs.extend(news);
        }
        Ok(outs)
    }
}

impl Tensor {
    /// Adam's statistics over `items` in one launch per chunk: `[chunks, R, 5]` raw partials
    /// `(Σ lr/d, max lr/d, Σ ρ, Σ [λ>0]·lr²ρ², Σ lr²λ²p²)` per chunk and replica (`R = 1` for
    /// `replicas = []`), with `d = √(v/c₂) + ε` and `ρ = |m/c₁|/d` (sum the chunks' sums and take
    /// the max of their maxima).
    pub fn adam_stats(
        items: &[AdamStatsTensor],
        lr: f32,
        eps: f32,
        replicas: &[ReplicaScale],
    ) -> Result<Tensor> {
        let op = "Tensor::adam_stats";
        let first = items
            .first()
            .ok_or_else(|| Error::value(op, "no parameters", "at least one"))?;
        let replicas = replica_scales(op, replicas, items.iter().map(|it| it.param))?;
        let rows = replicas.len();
        let device = first.param.device().clone();
        let size = chunk_size(&device, 3);
        let chunks: Vec<&[AdamStatsTensor]> = items.chunks(size).collect();
        let out = Tensor::alloc(op, &[chunks.len(), rows, 5], DType::F32, &device)?;
        for (slot, chunk) in chunks.iter().enumerate() {
            let mut table = Vec::with_capacity(4 * chunk.len());
            let (mut ms, mut vs, mut ps) = (vec![], vec![], vec![]);
            for it in chunk.iter() {
                for t in [it.m, it.v] {
                    if t.shape() != it.param.shape() {
                        return Err(Error::shape(
                            op,
                            format!("state {:?}", t.shape()),
                            format!("the parameter's shape {:?}", it.param.shape()),
                        ));
                    }
                }
                for r in replicas {
                    let decay = it.decay * r.weight_decay;
                    let decayed = if decay > 0.0 { 1.0 } else { 0.0 };
                    table.extend([it.c1, it.c2, decayed, decay, lr * r.lr, 0.0, 0.0, 0.0]);
                }
                ms.push(rowmajor(op, it.m)?);
                vs.push(rowmajor(op, it.v)?);
                ps.push(rowmajor(op, it.param)?);
            }
            let table = Tensor::from_vec(table, &[8 * chunk.len() * rows], &device)?;
            launch!(
                device,
                adam_stats::<f32>,
                CubeCount::Static(rows as u32, 1, 1),
                CubeDim::new_1d(SUM_BLOCK),
                arrays(&ms),
                arrays(&vs),
                arrays(&ps),
                table.buffer_arg(),
                out.buffer_arg(),
                eps,
                slot as u32,
                rows as u32
            );
        }
        Ok(out)
    }
}

impl GradScale<'_> {
    /// The kernels' `(norm, clip, grad_scale)` arguments for `replicas` models; without clipping
    /// the norm is not read, so `unused` (any tensor) stands in for it.
    fn arguments(&self, unused: &Tensor, replicas: usize) -> Result<(Tensor, f32, f32)> {
        match *self {
            GradScale::Constant(s) => Ok((unused.clone(), 0.0, s)),
            GradScale::Clip { norm, max_norm } => {
                if !(max_norm > 0.0 && max_norm.is_finite()) || norm.numel() != replicas {
                    return Err(Error::value(
                        "GradScale::Clip",
                        format!("max norm {max_norm}, norm of shape {:?}", norm.shape()),
                        format!("a positive finite max norm and one norm per replica ({replicas})"),
                    ));
                }
                Ok((norm.contiguous_from_zero()?, max_norm, 1.0))
            }
        }
    }
}
