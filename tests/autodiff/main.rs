//! The autodiff test suite: every differentiable op against central finite differences of the f64
//! reference, double backward on functions with known Hessians, HVP of a tanh MLP against finite
//! differences of an f64 gradient, Hutchinson's estimator. The tape's memory test runs alone in `tests/tape_memory.rs` (it reads process-wide device memory).

mod conv;
mod curvature;
mod flash;
mod gradcheck;
mod norm;
