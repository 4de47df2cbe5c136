//! Loss landscapes, Hessian spectra and Jacobian rank: the measurements of the studies that ask how
//! the loss surface changes as a network loses plasticity or as normalisation changes. Each is a
//! public function usable from any runner (the supervised runner of [`crate::continual`] calls them
//! every few tasks when its config has a `[landscape]` section):
//! - [`hessian`]: the Hessian as an operator over exact Hessian-vector products; its top
//!   eigenvalues and eigenvectors by Lanczos with full re-orthogonalisation; its spectral density by
//!   stochastic Lanczos quadrature; the dense Hessian of small models (the reference);
//! - [`slices`]: 1-D and 2-D slices of the loss along filter-normalised random directions, Hessian
//!   eigenvectors or the line between checkpoints;
//! - [`trajectory`]: the gradient-Lipschitz estimate, effective learning rate and sharpness
//!   against `2/η` along training;
//! - [`jacobian`]: the Jacobian of features with respect to inputs (full, or partial by subsets
//!   and random projections), by batched vector-Jacobian products, and its rank;
//! - [`deep_linear`]: a deep linear network and the closed form of its Hessian spectrum at a
//!   balanced minimum;
//! - [`figures`]: the density, slice, contour and surface plots;
//! - [`report`]: one measurement of all of these at the current parameters (`[landscape]`);
//! - [`study`]: the deep linear experiment (gradient descent, then the spectrum against the
//!   closed form).
//!
//! The trace of the Hessian by Hutchinson's estimator is `dynlab_autodiff::hutchinson_trace_at`.

pub mod deep_linear;
pub mod figures;
pub mod hessian;
pub mod jacobian;
pub mod report;
pub mod slices;
pub mod study;
pub mod trajectory;

pub use deep_linear::{closed_form_spectrum, whitened_data, DeepLinear};
pub use hessian::{
    lanczos, model_loss, spectral_density, top_eigen, DensityOptions, HessianOperator, LanczosRun,
    SpectralDensity, TopEigen, TopEigenOptions,
};
pub use jacobian::{input_jacobian, jacobian_ranks, JacobianCols, JacobianPlan, JacobianRows};
pub use report::{measure_landscape, FigureTarget, LandscapeConfig, LandscapeReport};
pub use slices::{
    direction_between, filter_normalize, interpolation, random_direction, slice_1d, slice_2d,
    symmetric_grid, BiasDirection, LossEval, Slice1d, Slice2d,
};
pub use study::{run_deep_linear, DeepLinearConfig, DeepLinearOutcome};
pub use trajectory::{sharpness, smoothness, snapshot, Smoothness, Snapshot};
