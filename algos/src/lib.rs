//! dynlab's research systems, one module per study, each built from the optimizers
//! (`dynlab_optim`), the training step (`dynlab_train`) and the run harness (`dynlab_harness`):
//! - [`grokking`]: grokking on modular arithmetic (Power et al. 2022);
//! - [`continual`]: the loss-of-plasticity studies' supervised runner over task streams, with
//!   rank tracking (the continual-learning algorithms join it as learners);
//! - [`spd`]: stochastic parameter decomposition of toy models (Bushnaq et al. 2025);
//! - [`connectivity`]: recovering a simulated circuit's connectivity with a message-passing network
//!   (the NeuralGraph signal study);
//! - [`metrics`]: measurements the studies share (rank of features, unit counts, rank dynamics).
//!
//! The other studies get their own module here as they land (see `ARCHITECTURE.md`): `hybrid`
//! (predictive training) and `landscape` (loss landscapes and Hessian spectra).

#![warn(missing_docs)]

mod checks;
pub mod connectivity;
pub mod continual;
pub mod grokking;
pub mod landscape;
pub mod metrics;
pub mod spd;
