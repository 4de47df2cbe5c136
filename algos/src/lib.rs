//! dynlab's research systems, one module per study, each built from the optimizers
//! (`dynlab_optim`), the training step (`dynlab_train`) and the run harness (`dynlab_harness`):
//! - [`grokking`]: grokking on modular arithmetic (Power et al. 2022);
//! - [`continual`]: the loss-of-plasticity studies' supervised runner over task streams, with
//!   rank tracking (the continual-learning algorithms join it as learners);
//! - [`spd`]: stochastic parameter decomposition of toy models (Bushnaq et al. 2025);
//! - [`connectivity`]: recovering a simulated circuit's connectivity with a message-passing network
//!   (the NeuralGraph signal study);
//! - [`landscape`]: Hessian spectra (Lanczos, stochastic Lanczos quadrature), loss slices,
//!   smoothness along the trajectory, input Jacobians and their rank, the deep linear closed form;
//! - [`metrics`]: measurements the studies share (rank of features, unit counts, rank dynamics).
//!
//! The hybrid predictive-training study gets its own module here when it lands (see
//! `ARCHITECTURE.md`).

#![warn(missing_docs)]

mod checks;
pub mod connectivity;
pub mod continual;
pub mod grokking;
pub mod hybrid;
pub mod landscape;
pub mod metrics;
pub mod spd;
