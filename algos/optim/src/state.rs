//! Typed optimizer state per parameter (Burn's records, PyTorch's `optimizer.state[p]`): SGD keeps a
//! momentum buffer, Adam/AdamW the moments `m`, `v`, its step count and, optionally, a step count
//! per element. Slots are reachable by name (`momentum`, `m`, `v`, `steps`), which is how
//! checkpoints store them (`<param>.<slot>`) and how algorithms that replace units reset them.

use dynlab_runtime::{Error, Result, Tensor};

/// SGD's state of one parameter.
#[derive(Clone, Debug)]
pub struct SgdState {
    /// The momentum buffer `b` (absent without momentum; set to the gradient on the first step).
    pub momentum: Option<Tensor>,
}

/// Adam's (and AdamW's) state of one parameter.
#[derive(Clone, Debug)]
pub struct AdamState {
    /// First moment `m`.
    pub m: Tensor,
    /// Second moment `v`.
    pub v: Tensor,
    /// Steps this parameter has taken (its bias correction `1 − βᵗ` without per-element counts).
    pub step: u64,
    /// Steps per element (f32, same shape), when the optimizer keeps them: each element's bias
    /// correction uses its own count, so a reset unit restarts it.
    pub element_steps: Option<Tensor>,
}

/// The state of one parameter.
// One value per parameter: the size difference of the variants (tensor handles) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ParamState {
    /// SGD.
    Sgd(SgdState),
    /// Adam or AdamW.
    Adam(AdamState),
}

impl ParamState {
    /// The state tensors by slot name, in a fixed order.
    pub fn slots(&self) -> Vec<(&'static str, &Tensor)> {
        match self {
            ParamState::Sgd(s) => s.momentum.iter().map(|t| ("momentum", t)).collect(),
            ParamState::Adam(s) => {
                let mut v = vec![("m", &s.m), ("v", &s.v)];
                v.extend(s.element_steps.iter().map(|t| ("steps", t)));
                v
            }
        }
    }

    /// The state tensors by slot name, mutable.
    pub fn slots_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        match self {
            ParamState::Sgd(s) => s.momentum.iter_mut().map(|t| ("momentum", t)).collect(),
            ParamState::Adam(s) => {
                let mut v = vec![("m", &mut s.m), ("v", &mut s.v)];
                v.extend(s.element_steps.iter_mut().map(|t| ("steps", t)));
                v
            }
        }
    }

    /// The steps this parameter has taken (`None` for SGD, which keeps no count).
    pub fn step(&self) -> Option<u64> {
        match self {
            ParamState::Sgd(_) => None,
            ParamState::Adam(s) => Some(s.step),
        }
    }

    /// Zeroes every slot (moments, momentum, per-element step counts) at `indices` along `axis`:
    /// the rows (`axis` 0) or columns (`axis` 1) of a weight that belong to replaced units.
    pub fn reset_units(&mut self, param: &str, axis: usize, indices: &[usize]) -> Result<()> {
        for (_, slot) in self.slots_mut() {
            *slot = zero_along(param, slot, axis, indices)?;
        }
        Ok(())
    }

    /// Zeroes every slot (moments, momentum, per-element step counts) where `mask` (broadcast to
    /// the parameter's shape) is non-zero: one masked fill per slot.
    pub fn reset_masked(&mut self, mask: &Tensor) -> Result<()> {
        for (_, slot) in self.slots_mut() {
            *slot = slot.masked_fill(mask, 0.0)?;
        }
        Ok(())
    }
}

/// `t` with the entries at `indices` along `axis` set to 0 (one masked fill).
fn zero_along(param: &str, t: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
    let op = "Optimizer::reset_units";
    let shape = t.shape();
    if axis >= shape.len() {
        return Err(Error::value(
            op,
            format!("axis {axis} of `{param}` with shape {shape:?}"),
            format!("an axis below {}", shape.len()),
        ));
    }
    let len = shape[axis];
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(Error::value(
            op,
            format!("index {bad} along axis {axis} of `{param}` with shape {shape:?}"),
            format!("indices below {len}"),
        ));
    }
    if indices.is_empty() {
        return Ok(t.clone());
    }
    let mut mask = vec![0f32; len];
    for &i in indices {
        mask[i] = 1.0;
    }
    let mut mask_shape = vec![1isize; shape.len()];
    mask_shape[axis] = len as isize;
    let mask = Tensor::from_vec(mask, &[len], t.device())?.reshape(&mask_shape)?;
    t.masked_fill(&mask, 0.0)
}
