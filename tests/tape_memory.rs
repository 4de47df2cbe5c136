//! The tape frees itself (its own test binary, so no other test allocates meanwhile): after each training iteration the live-node count and the device memory
//! in use return to their baseline.

use dynlab::autodiff::live_nodes;
use dynlab::{no_grad, Tensor, Var};
use dynlab_test_support::*;

#[device_test]
fn a_thousand_training_iterations_do_not_grow_memory() {
    let d = device();
    let mut rng = HostRng::new(120);
    let (x, _) = random(&mut rng, &[16, 8], -1.0, 1.0);
    let (y, _) = random(&mut rng, &[16, 1], -1.0, 1.0);
    let mut w1 = random(&mut rng, &[8, 16], -0.5, 0.5).0;
    let mut w2 = random(&mut rng, &[16, 1], -0.5, 0.5).0;
    let (xv, yv) = (Var::constant(x), Var::constant(y));
    let step = |w1: &mut Tensor, w2: &mut Tensor| -> f32 {
        let (p1, p2) = (Var::param(w1.clone()), Var::param(w2.clone()));
        let loss = xv
            .matmul(&p1)
            .unwrap()
            .tanh()
            .unwrap()
            .matmul(&p2)
            .unwrap()
            .sub(&yv)
            .unwrap()
            .square()
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        no_grad(|| {
            *w1 = w1
                .sub(&grads.tensor(&p1).unwrap().mul_scalar(0.1).unwrap())
                .unwrap();
            *w2 = w2
                .sub(&grads.tensor(&p2).unwrap().mul_scalar(0.1).unwrap())
                .unwrap();
        });
        loss.value().item().unwrap()
    };
    // Warm up the allocator's pools, then take the baseline.
    let first = step(&mut w1, &mut w2);
    for _ in 0..9 {
        step(&mut w1, &mut w2);
    }
    d.sync().unwrap();
    let (nodes0, bytes0) = (live_nodes(), d.memory_in_use().unwrap());
    let mut last = first;
    for i in 0..1000 {
        last = step(&mut w1, &mut w2);
        if i % 250 == 249 {
            d.sync().unwrap();
            assert_eq!(
                live_nodes(),
                nodes0,
                "live tape nodes grew by iteration {i}"
            );
            let bytes = d.memory_in_use().unwrap();
            assert!(
                bytes <= bytes0 + 4096,
                "device memory grew from {bytes0} to {bytes} bytes by iteration {i}"
            );
        }
    }
    assert!(
        last < first,
        "training did not reduce the loss ({first} -> {last})"
    );
}
