//! The gradient checker: for `L(x) = Σ f(x) ⊙ r` with a fixed random `r`, the autodiff gradient of
//! every input must match central differences of the f64 oracle of `f` (step 1e-6, so truncation
//! error is ~1e-12 and the comparison measures only the f32 error of the device gradient).

use crate::cases::{assert_close, random, HostRng};
use crate::reference::HostTensor;
use dynlab_autodiff::Var;
use dynlab_runtime::{Result, Tensor};

/// `Σ out ⊙ weights` in f64.
pub fn weighted_sum(out: &HostTensor, weights: &HostTensor) -> f64 {
    out.data.iter().zip(&weights.data).map(|(a, b)| a * b).sum()
}

/// The forward of `dev` on `inputs` against `reference` (tolerance 1e-5 + 1e-4·|want|), then every
/// input's gradient of `Σ dev(x) ⊙ r` against central differences of `reference` (tolerance
/// 2e-4·max|g| + 2e-3·|g|).
pub fn check_gradients(
    name: &str,
    inputs: Vec<(Tensor, HostTensor)>,
    dev: &dyn Fn(&[Var]) -> Result<Var>,
    reference: &dyn Fn(&[HostTensor]) -> HostTensor,
    rng: &mut HostRng,
) {
    let vars: Vec<Var> = inputs.iter().map(|(t, _)| Var::param(t.clone())).collect();
    let hosts: Vec<HostTensor> = inputs.iter().map(|(_, h)| h.clone()).collect();
    let out = dev(&vars).unwrap();
    check_output_gradients(name, &vars, hosts, &out, reference, rng)
}

/// [`check_gradients`] for an output already computed from `vars` (leaves whose values `hosts`
/// holds in f64): a module's forward pass, where the leaves are the module's own parameters.
pub fn check_output_gradients(
    name: &str,
    vars: &[Var],
    hosts: Vec<HostTensor>,
    out: &Var,
    reference: &dyn Fn(&[HostTensor]) -> HostTensor,
    rng: &mut HostRng,
) {
    let want_out = reference(&hosts);
    assert_close(
        &format!("{name} forward"),
        out.value(),
        &want_out,
        1e-5,
        1e-4,
    );
    let (w, hw) = random(rng, &want_out.shape, -1.0, 1.0);
    let loss = out.mul(&Var::constant(w)).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (i, var) in vars.iter().enumerate() {
        let numeric = central_differences(&hosts, i, reference, &hw);
        let g = grads
            .tensor(var)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {i}"));
        let scale = numeric.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("{name} gradient of input {i}"),
            g,
            &HostTensor::new(&hosts[i].shape, numeric),
            2e-4 * scale,
            2e-3,
        );
    }
}

/// `∂/∂x_i Σ reference(x) ⊙ weights` by central differences, element by element.
fn central_differences(
    hosts: &[HostTensor],
    i: usize,
    reference: &dyn Fn(&[HostTensor]) -> HostTensor,
    weights: &HostTensor,
) -> Vec<f64> {
    let h = 1e-6;
    (0..hosts[i].numel())
        .map(|j| {
            let mut plus = hosts.to_vec();
            let mut minus = hosts.to_vec();
            plus[i].data[j] += h;
            minus[i].data[j] -= h;
            (weighted_sum(&reference(&plus), weights) - weighted_sum(&reference(&minus), weights))
                / (2.0 * h)
        })
        .collect()
}
