//! The landscape measurements: Lanczos and stochastic Lanczos quadrature against the dense Hessian
//! built from products with basis vectors (f64 eigh), the deep linear network's Hessian against
//! its closed form, filter-normalised directions and slices against direct evaluations, the
//! smoothness measures against a quadratic's exact values, and the input Jacobian against f64
//! finite differences of a host network.

mod hessian;
mod jacobian;
mod runner;
mod slices;
mod study;
mod trajectory;

use dynlab::models::{Activation, Init, Mlp};
use dynlab::train::Batch;
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, HostRng};

/// A tanh MLP `dims` with biases, and a classification batch of `n` rows.
pub fn small_classifier(dims: &[usize], n: usize, seed: u64) -> (Mlp, Batch) {
    let d = device();
    let mut rng = Rng::new(seed);
    let model = Mlp::new(
        dims,
        Activation::Tanh,
        Init::XavierUniform,
        true,
        &mut rng,
        &d,
    )
    .unwrap();
    let mut host = HostRng::new(seed + 1);
    let x = host.vec(n * dims[0], -1.5, 1.5);
    let classes = *dims.last().unwrap();
    let y: Vec<i32> = (0..n).map(|_| host.below(classes) as i32).collect();
    let batch = Batch {
        inputs: Tensor::from_vec(x, &[n, dims[0]], &d).unwrap(),
        targets: Tensor::from_vec(y, &[n], &d).unwrap(),
    };
    (model, batch)
}

/// Eigenvalues (descending) of a symmetric row-major `n × n` matrix in f64.
pub fn eigenvalues_desc(h: &[f64], n: usize) -> Vec<f64> {
    let (mut values, _) = dynlab::runtime::linalg::host::eigh_f64(h, n).unwrap();
    values.reverse();
    values
}
