//! Launchers of the fused optimizer updates (`dynlab_kernels::optim`). Each returns the new
//! parameter in a fresh buffer (the old value may still be referenced by a retained graph) and updates
//! the optimizer state in place (copying it first if its buffer is shared or a view).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::tensor::Tensor;
use dynlab_kernels::optim::{adam_step, adam_step_counted, sgd_momentum_step, sgd_step};

/// Scalars of one SGD update (see [`Tensor::sgd_update`]).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate `η`.
    pub lr: f32,
    /// Multiplies the gradient first (gradient-norm clipping); 1 otherwise.
    pub grad_scale: f32,
    /// L2 decay `λ` added to the gradient.
    pub weight_decay: f32,
    /// Momentum `μ` (0: plain SGD).
    pub momentum: f32,
    /// Dampening `τ`: the buffer update is `b ← μ·b + (1 − τ)·g`.
    pub dampening: f32,
    /// Nesterov momentum: step along `g + μ·b` instead of `b`.
    pub nesterov: bool,
    /// The first step sets the momentum buffer to the gradient.
    pub first: bool,
}

/// Scalars of one Adam/AdamW update (see [`Tensor::adam_update`]).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate `η`.
    pub lr: f32,
    /// Multiplies the gradient first (gradient-norm clipping); 1 otherwise.
    pub grad_scale: f32,
    /// Coupled (Adam) L2 decay added to the gradient.
    pub l2_decay: f32,
    /// Decoupled (AdamW) decay: `p ← (1 − lr·λ)·p`.
    pub decoupled_decay: f32,
    /// Decay `β₁` of the first-moment average.
    pub beta1: f32,
    /// Decay `β₂` of the second-moment average.
    pub beta2: f32,
    /// `ε` added to `√v̂` in the denominator.
    pub eps: f32,
    /// 1-based step count, for the bias corrections `1 − βᵗ`.
    pub step: u64,
}

impl Tensor {
    /// One SGD step of this parameter: returns the new value; `momentum_buf` (same shape, used when
    /// `momentum > 0`) is updated in place.
    pub fn sgd_update(
        &self,
        grad: &Tensor,
        momentum_buf: Option<&mut Tensor>,
        s: &SgdStep,
    ) -> Result<Tensor> {
        let op = "Tensor::sgd_update";
        let (param, grad) = self.update_operands(op, grad)?;
        let out = Tensor::alloc(op, self.shape(), DType::F32, self.device())?;
        let n = out.numel();
        let (count, dim) = units_grid(n);
        match momentum_buf {
            Some(buf) if s.momentum > 0.0 => {
                let buf = owned_state(op, buf, self)?;
                let (momentum_now, grad_coef) = if s.first {
                    (0.0, 1.0)
                } else {
                    (s.momentum, 1.0 - s.dampening)
                };
                if n > 0 {
                    launch!(
                        self.device(),
                        sgd_momentum_step::<f32>,
                        count,
                        dim,
                        param.buffer_arg(),
                        grad.buffer_arg(),
                        buf.buffer_arg(),
                        out.buffer_arg(),
                        s.lr,
                        s.grad_scale,
                        s.weight_decay,
                        momentum_now,
                        grad_coef,
                        s.momentum,
                        s.nesterov
                    );
                }
            }
            _ if n > 0 => launch!(
                self.device(),
                sgd_step::<f32>,
                count,
                dim,
                param.buffer_arg(),
                grad.buffer_arg(),
                out.buffer_arg(),
                s.lr,
                s.grad_scale,
                s.weight_decay
            ),
            _ => {}
        }
        Ok(out)
    }

    /// One Adam/AdamW step of this parameter: returns the new value; the moments `m` and `v` (same
    /// shape) are updated in place.
    pub fn adam_update(
        &self,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        s: &AdamStep,
    ) -> Result<Tensor> {
        let op = "Tensor::adam_update";
        if s.step == 0 {
            return Err(Error::value(op, "step 0", "a 1-based step count"));
        }
        self.adam(op, grad, m, v, None, s)
    }

    /// [`Tensor::adam_update`] with a step count per element in `steps` (f32, same shape, counts
    /// exact up to 2²⁴), incremented in place; each element's bias corrections use its own count
    /// (`s.step` is not used). Counts set back to 0 restart an element's bias correction.
    pub fn adam_update_counted(
        &self,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        steps: &mut Tensor,
        s: &AdamStep,
    ) -> Result<Tensor> {
        self.adam("Tensor::adam_update_counted", grad, m, v, Some(steps), s)
    }

    /// The Adam launch: bias corrections from `s.step`, or per element from `steps`.
    fn adam(
        &self,
        op: &'static str,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        steps: Option<&mut Tensor>,
        s: &AdamStep,
    ) -> Result<Tensor> {
        let (param, grad) = self.update_operands(op, grad)?;
        let m = owned_state(op, m, self)?;
        let v = owned_state(op, v, self)?;
        let steps = steps.map(|t| owned_state(op, t, self)).transpose()?;
        let out = Tensor::alloc(op, self.shape(), DType::F32, self.device())?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let (count, dim) = units_grid(n);
        let (p, g, m, v, o) = (&param, &grad, &m, &v, &out);
        match steps {
            Some(steps) => launch!(
                self.device(),
                adam_step_counted::<f32>,
                count,
                dim,
                p.buffer_arg(),
                g.buffer_arg(),
                m.buffer_arg(),
                v.buffer_arg(),
                steps.buffer_arg(),
                o.buffer_arg(),
                s.lr,
                s.grad_scale,
                s.l2_decay,
                s.decoupled_decay,
                s.beta1,
                s.beta2,
                s.eps
            ),
            None => {
                let t = s.step.min(i32::MAX as u64) as i32;
                launch!(
                    self.device(),
                    adam_step::<f32>,
                    count,
                    dim,
                    p.buffer_arg(),
                    g.buffer_arg(),
                    m.buffer_arg(),
                    v.buffer_arg(),
                    o.buffer_arg(),
                    s.lr,
                    s.grad_scale,
                    s.l2_decay,
                    s.decoupled_decay,
                    s.beta1,
                    s.beta2,
                    1.0 - s.beta1.powi(t),
                    1.0 - s.beta2.powi(t),
                    s.eps
                )
            }
        }
        Ok(out)
    }

    /// The parameter and gradient as row-major buffers from position 0, after checking they match.
    pub(crate) fn update_operands(
        &self,
        op: &'static str,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.expect_f32(op)?;
        grad.expect_f32(op)?;
        self.expect_same_device(op, grad)?;
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                op,
                format!("gradient {:?}", grad.shape()),
                format!("the parameter's shape {:?}", self.shape()),
            ));
        }
        Ok((self.contiguous_from_zero()?, grad.contiguous_from_zero()?))
    }
}

/// Makes `state` an unshared row-major buffer of `param`'s shape (copying it if needed) and returns a
/// handle to it for the kernel to write.
pub(crate) fn owned_state(op: &'static str, state: &mut Tensor, param: &Tensor) -> Result<Tensor> {
    state.expect_f32(op)?;
    param.expect_same_device(op, state)?;
    if state.shape() != param.shape() {
        return Err(Error::shape(
            op,
            format!("optimizer state {:?}", state.shape()),
            format!("the parameter's shape {:?}", param.shape()),
        ));
    }
    if !(state.is_contiguous() && state.offset == 0 && state.handle.can_mut()) {
        let copy = Tensor::alloc(op, state.shape(), DType::F32, state.device())?;
        crate::view::copy_into(state, &copy)?;
        *state = copy;
    }
    Ok(state.clone())
}
