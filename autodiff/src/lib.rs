//! dynlab's tape autodiff. Backward rules are `Var` ops, so gradients computed with
//! `create_graph` can be differentiated again: Hessian-vector products are exact, not finite
//! differences.
//!
//! ```no_run
//! use dynlab_autodiff::{grad, GradOptions, Var};
//! use dynlab_runtime::{Device, Tensor};
//! let d = Device::default()?;
//! let w = Var::param(Tensor::from_vec(vec![1.0f32, 2.0], &[2], &d)?);
//! let loss = w.powf(3.0)?.sum_all()?;                    // Σ w³
//! let g = grad(&loss, &[&w], GradOptions { create_graph: true, ..Default::default() })?;
//! let h = g[0].sum_all()?.backward()?;                    // d/dw Σ 3w² = 6w
//! println!("{:?}", h.tensor(&w).unwrap().to_vec::<f32>()?);
//! # Ok::<(), dynlab_runtime::Error>(())
//! ```

#![warn(missing_docs)]

mod backward;
mod curvature;
mod ops;
mod var;

pub use backward::{grad, GradOptions, Grads};
pub use curvature::{
    hutchinson_trace, hutchinson_trace_at, hutchinson_trace_of_gradient, hvp, hvp_of_gradient,
    TraceEstimate,
};
pub use ops::with_fusion;
pub use var::{enable_grad, live_nodes, no_grad, Var};
