//! Global gradient norm `‖g‖ = √(Σ_i ‖g_i‖²)` over all parameters (one multi-tensor launch, on the
//! device) and the clipping factor `min(1, c / (‖g‖ + 1e-6))` (PyTorch's `clip_grad_norm_`), which
//! the multi-tensor updates compute on the device from the norm (`GradScale::Clip`); `clip_scale`
//! is its host form.

use dynlab_runtime::{Error, Result, Tensor};

/// `√(Σ ‖g_i‖²)` as a device scalar (no host read-back).
pub fn global_grad_norm(grads: &[&Tensor]) -> Result<Tensor> {
    if grads.is_empty() {
        return Err(Error::value(
            "global_grad_norm",
            "no gradients",
            "at least one tensor",
        ));
    }
    Tensor::global_norm(grads)
}

/// Gradient scale that clips the global norm `norm` to `max_norm` (1 when it is already below).
pub fn clip_scale(norm: f32, max_norm: f32) -> Result<f32> {
    if !norm.is_finite() {
        return Err(Error::Numerical {
            op: "clip_grad_norm",
            message: format!("the gradient norm is {norm}"),
        });
    }
    Ok((max_norm / (norm + 1e-6)).min(1.0))
}
