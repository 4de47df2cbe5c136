//! dynlab's research systems, one module per study, each built from the optimizers
//! (`dynlab_optim`), the training step (`dynlab_train`) and the run harness (`dynlab_harness`):
//! - [`grokking`]: grokking on modular arithmetic (Power et al. 2022);
//! - [`metrics`]: measurements the studies share (rank of features).
//!
//! The other studies get their own module here as they land (see `ARCHITECTURE.md`): `continual`
//! (continual backprop and the rank-restoring family), `spd` (stochastic parameter
//! decomposition), `graph` (connectivity recovery with message passing), `hybrid` (predictive
//! training) and `landscape` (loss landscapes and Hessian spectra).

#![warn(missing_docs)]

pub mod grokking;
pub mod metrics;
