//! dynlab: hand-written GPU kernels (CubeCL) with a small host runtime, for learning-dynamics research.
//!
//! Layers, each a crate (`ARCHITECTURE.md` is the map): [`kernels`] (`#[cube]` kernels) ←
//! [`runtime`] (devices, tensors, eager ops, errors) ← [`autodiff`] (tape whose backward rules are
//! differentiable ops) ← [`models`] (the module contract, layers, the model zoo) ← [`optim`]
//! (optimizers with typed state) ← [`train`] (objectives, hooks, the step driver) ← [`harness`]
//! (run folders, histories, plots, the experiment driver) ← [`algos`] (the studies); [`data`]
//! (dataset loaders, device-side transforms, task streams) sits beside the harness on [`train`]. The
//! common types are re-exported at the root.
//!
//! ```no_run
//! use dynlab::{Device, Tensor};
//! let device = Device::default()?;
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &device)?;
//! let p = x.softmax(0)?;
//! println!("{:?}", p.to_vec::<f32>()?);
//! # Ok::<(), dynlab::Error>(())
//! ```
//!
//! Gradients, Hessian-vector products and Hutchinson traces (the README's example):
//!
//! ```no_run
//! use dynlab::autodiff::{hutchinson_trace, hvp};
//! use dynlab::{grad, Device, GradOptions, Rng, Tensor, Var};
//!
//! let device = Device::default()?;
//! let mut rng = Rng::new(0);
//! let x = Var::constant(Tensor::rand_normal(&[32, 8], 0.0, 1.0, &mut rng, &device)?);
//! let w0 = Tensor::rand_normal(&[8, 4], 0.0, 0.5, &mut rng, &device)?;
//! let loss_fn = |p: &[Var]| x.matmul(&p[0])?.tanh()?.square()?.mean_all();
//!
//! let w = Var::param(w0.clone());
//! let grads = loss_fn(&[w.clone()])?.backward()?;                 // first order; frees saved tensors
//! let dw: &Tensor = grads.tensor(&w).unwrap();
//! let with_graph = GradOptions { create_graph: true, ..Default::default() };
//! let g = grad(&loss_fn(&[w.clone()])?, &[&w], with_graph)?;      // a gradient on the tape
//! let v = Tensor::rand_normal(&[8, 4], 0.0, 1.0, &mut rng, &device)?;
//! let hv = hvp(loss_fn, &[w0.clone()], &[v])?;                     // exact H·v by double backward
//! let trace = hutchinson_trace(loss_fn, &[w0], 100, 7)?;           // tr H and its standard error
//! # let _ = (dw, g, hv, trace);
//! # Ok::<(), dynlab::Error>(())
//! ```

//!
//! The module contract (the README's example): taps, and a layer found by path.
//!
//! ```no_run
//! use dynlab::models::{Activation, Ctx, Init, Linear, Mlp, Module};
//! use dynlab::{Device, Rng, Tensor, Var};
//!
//! let device = Device::default()?;
//! let mut rng = Rng::new(0);
//! let mlp = Mlp::new(&[8, 32, 32, 3], Activation::Relu, Init::KaimingUniform, true, &mut rng, &device)?;
//! let x = Var::constant(Tensor::rand_normal(&[16, 8], 0.0, 1.0, &mut rng, &device)?);
//! let mut ctx = Ctx::eval().with_taps(&["hidden.0", "layers.2"]);
//! let logits = mlp.forward(&x, &mut ctx)?;
//! let features = ctx.tapped("hidden.0").unwrap();            // ReLU(x W₀ + b₀), [16, 32]
//! let head = mlp.find("layers.2").unwrap().downcast_ref::<Linear>().unwrap();
//! println!("{:?} {:?} {}", logits.shape(), features.shape(), head.inputs());
//! # Ok::<(), dynlab::Error>(())
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod programs;

pub use dynlab_algos as algos;
pub use dynlab_autodiff as autodiff;
pub use dynlab_autodiff::{grad, no_grad, GradOptions, Var};
pub use dynlab_data as data;
pub use dynlab_harness as harness;
pub use dynlab_kernels as kernels;
pub use dynlab_models as models;
pub use dynlab_optim as optim;
pub use dynlab_runtime as runtime;
pub use dynlab_runtime::{
    bf16, f16, DType, Device, DeviceStats, Error, Graph, Result, Rng, Tensor,
};
pub use dynlab_store as store;
pub use dynlab_sweep as sweep;
pub use dynlab_train as train;
