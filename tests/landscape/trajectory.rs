//! The smoothness measures on a quadratic: a depth-1 linear network on whitened inputs, whose
//! Hessian is `(2/d) I`, so that the gradient-Lipschitz estimate is `2/d` along any step, the
//! effective learning rate of a plain gradient step is its `η`, and the sharpness is `2/d`.

use dynlab::algos::landscape::slices::{parameter_values, set_parameters};
use dynlab::algos::landscape::{sharpness, smoothness, snapshot, whitened_data, DeepLinear};
use dynlab::models::Init;
use dynlab::train::Mse;
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test};

#[device_test]
fn smoothness_of_a_quadratic_is_its_curvature() {
    let d = device();
    let width = 4;
    let a: Vec<f64> = (0..width * width)
        .map(|i| ((i * 7 % 5) as f64 - 2.0) / 3.0)
        .collect();
    let batch = whitened_data(&a, width, &d).unwrap();
    let mut model = DeepLinear::new(width, 1, Init::XavierUniform, &mut Rng::new(1), &d).unwrap();
    let before = snapshot(&model, &batch, &Mse).unwrap();
    let lr = 0.3f32;
    let stepped: Vec<Tensor> = parameter_values(&model)
        .iter()
        .zip(&before.gradient)
        .map(|(p, g)| p.sub(&g.mul_scalar(lr).unwrap()).unwrap())
        .collect();
    set_parameters(&mut model, &stepped).unwrap();
    let after = snapshot(&model, &batch, &Mse).unwrap();
    let s = smoothness(&before, &after).unwrap();
    let curvature = 2.0 / width as f64;
    assert!((s.gradient_lipschitz - curvature).abs() < 1e-4, "{s:?}");
    assert!((s.effective_lr - lr as f64).abs() < 1e-5, "{s:?}");
    assert!((s.step_norm - lr as f64 * s.gradient_norm).abs() < 1e-5 * s.step_norm);
    let top = sharpness(&model, &batch, &Mse, 8, 3).unwrap();
    assert!((top - curvature).abs() < 1e-5, "sharpness {top}");
    // No movement: the ratio is undefined, and says so with NaN.
    let same = smoothness(&after, &after).unwrap();
    assert!(same.gradient_lipschitz.is_nan());
}
