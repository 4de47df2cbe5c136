//! Fused optimizer updates vs the f64 reference over several steps (state carried on both sides),
//! on sizes that are empty, 1, odd and past one cube; schedules; clipping.

use dynlab::optim::{clip_scale, global_grad_norm, LrSchedule, ScheduleKind};
use dynlab::runtime::{AdamStep, SgdStep};
use dynlab::Tensor;
use dynlab_test_support::reference;
use dynlab_test_support::{device, device_test, host_f64 as host, HostRng};

const SIZES: &[&[usize]] = &[&[0], &[1], &[7], &[3, 97], &[513]];

fn assert_near(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

#[device_test]
fn adam_and_adamw_match_reference_over_steps() {
    let mut rng = HostRng::new(11);
    for shape in SIZES {
        for decoupled in [false, true] {
            let n: usize = shape.iter().product();
            let p0 = rng.vec(n, -1.0, 1.0);
            let mut p = Tensor::from_slice(&p0, shape, &device()).unwrap();
            let mut m = Tensor::zeros(shape, &device()).unwrap();
            let mut v = Tensor::zeros(shape, &device()).unwrap();
            let mut hp: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
            let (mut hm, mut hv) = (vec![0.0; n], vec![0.0; n]);
            for step in 1..=4u64 {
                let g = rng.vec(n, -1.0, 1.0);
                let gt = Tensor::from_slice(&g, shape, &device()).unwrap();
                let s = AdamStep {
                    lr: 0.01,
                    grad_scale: 0.5,
                    l2_decay: if decoupled { 0.0 } else { 0.1 },
                    decoupled_decay: if decoupled { 0.1 } else { 0.0 },
                    beta1: 0.9,
                    beta2: 0.98,
                    eps: 1e-8,
                    step,
                };
                p = p.adam_update(&gt, &mut m, &mut v, &s).unwrap();
                let hg: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                hp = reference::adam_step(&hp, &hg, &mut hm, &mut hv, &s);
                let what = format!("adam (decoupled {decoupled}) {shape:?} step {step}");
                assert_near(&what, &host(&p), &hp, 1e-5);
                assert_near(&format!("{what} m"), &host(&m), &hm, 1e-5);
                assert_near(&format!("{what} v"), &host(&v), &hv, 1e-5);
            }
        }
    }
}

#[device_test]
fn adam_with_per_element_steps_matches_reference() {
    let mut rng = HostRng::new(14);
    for shape in SIZES {
        let n: usize = shape.iter().product();
        let p0 = rng.vec(n, -1.0, 1.0);
        // Counts that differ per element, as after some units were reset.
        let counts: Vec<f32> = (0..n).map(|_| rng.below(4) as f32).collect();
        let mut p = Tensor::from_slice(&p0, shape, &device()).unwrap();
        let mut m = Tensor::zeros(shape, &device()).unwrap();
        let mut v = Tensor::zeros(shape, &device()).unwrap();
        let mut steps = Tensor::from_slice(&counts, shape, &device()).unwrap();
        let mut hp: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        let (mut hm, mut hv) = (vec![0.0; n], vec![0.0; n]);
        let mut hsteps: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        for step in 1..=3u64 {
            let g = rng.vec(n, -1.0, 1.0);
            let gt = Tensor::from_slice(&g, shape, &device()).unwrap();
            let s = AdamStep {
                lr: 0.01,
                grad_scale: 0.7,
                l2_decay: 0.0,
                decoupled_decay: 0.1,
                beta1: 0.9,
                beta2: 0.98,
                eps: 1e-8,
                step,
            };
            p = p
                .adam_update_counted(&gt, &mut m, &mut v, &mut steps, &s)
                .unwrap();
            let hg: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            hp = reference::adam_step_counted(&hp, &hg, &mut hm, &mut hv, &mut hsteps, &s);
            let what = format!("adam per-element steps {shape:?} step {step}");
            assert_near(&what, &host(&p), &hp, 1e-5);
            assert_near(&format!("{what} m"), &host(&m), &hm, 1e-5);
            assert_near(&format!("{what} v"), &host(&v), &hv, 1e-5);
            assert_near(&format!("{what} counts"), &host(&steps), &hsteps, 0.0);
        }
    }
}

#[device_test]
fn sgd_variants_match_reference_over_steps() {
    let mut rng = HostRng::new(12);
    for shape in SIZES {
        for (momentum, nesterov, dampening) in
            [(0.0, false, 0.0), (0.9, false, 0.1), (0.9, true, 0.0)]
        {
            let n: usize = shape.iter().product();
            let p0 = rng.vec(n, -1.0, 1.0);
            let mut p = Tensor::from_slice(&p0, shape, &device()).unwrap();
            let mut buf = Tensor::zeros(shape, &device()).unwrap();
            let mut hp: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
            let mut hbuf = vec![0.0; n];
            for step in 1..=3u64 {
                let g = rng.vec(n, -1.0, 1.0);
                let gt = Tensor::from_slice(&g, shape, &device()).unwrap();
                let s = SgdStep {
                    lr: 0.1,
                    grad_scale: 0.8,
                    weight_decay: 0.01,
                    momentum,
                    dampening,
                    nesterov,
                    first: step == 1,
                };
                p = p.sgd_update(&gt, Some(&mut buf), &s).unwrap();
                let hg: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                hp = reference::sgd_step(&hp, &hg, &mut hbuf, &s);
                let what = format!("sgd μ={momentum} nesterov={nesterov} {shape:?} step {step}");
                assert_near(&what, &host(&p), &hp, 1e-6);
            }
        }
    }
}

#[device_test]
fn update_errors_name_the_op_and_shapes() {
    let p = Tensor::zeros(&[3, 2], &device()).unwrap();
    let g = Tensor::zeros(&[2, 3], &device()).unwrap();
    let mut m = Tensor::zeros(&[3, 2], &device()).unwrap();
    let mut v = Tensor::zeros(&[3, 2], &device()).unwrap();
    let s = AdamStep {
        lr: 0.1,
        grad_scale: 1.0,
        l2_decay: 0.0,
        decoupled_decay: 0.0,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        step: 1,
    };
    let e = p
        .adam_update(&g, &mut m, &mut v, &s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("adam_update") && e.contains("[2, 3]"), "{e}");
    let mut small = Tensor::zeros(&[5], &device()).unwrap();
    let e = p
        .adam_update(&p, &mut small, &mut v, &s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimizer state [5]"), "{e}");
    let e = p
        .adam_update(&p, &mut m, &mut v, &AdamStep { step: 0, ..s })
        .unwrap_err()
        .to_string();
    assert!(e.contains("step 0"), "{e}");
}

#[device_test]
fn state_shared_with_another_handle_is_copied_not_clobbered() {
    let p = Tensor::ones(&[4], &device()).unwrap();
    let g = Tensor::ones(&[4], &device()).unwrap();
    let mut buf = Tensor::zeros(&[4], &device()).unwrap();
    let alias = buf.clone();
    let s = SgdStep {
        lr: 0.1,
        grad_scale: 1.0,
        weight_decay: 0.0,
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
        first: true,
    };
    p.sgd_update(&g, Some(&mut buf), &s).unwrap();
    assert_eq!(buf.to_vec::<f32>().unwrap(), vec![1.0; 4]);
    assert_eq!(alias.to_vec::<f32>().unwrap(), vec![0.0; 4]);
}

#[test]
fn warmup_then_cosine() {
    let s = LrSchedule {
        base: 1.0,
        warmup: 10,
        kind: ScheduleKind::Cosine {
            total: 110,
            min_factor: 0.1,
        },
    };
    assert!((s.at(1) - 0.1).abs() < 1e-6);
    assert!((s.at(10) - 1.0).abs() < 1e-6);
    assert!((s.at(60) - 0.55).abs() < 1e-6, "{}", s.at(60));
    assert!((s.at(110) - 0.1).abs() < 1e-6);
    assert!((s.at(500) - 0.1).abs() < 1e-6);
    assert_eq!(LrSchedule::constant(0.3).at(7), 0.3);
}

#[device_test]
fn global_norm_and_clip_scale() {
    let mut rng = HostRng::new(13);
    let a = rng.vec(37, -2.0, 2.0);
    let b = rng.vec(5, -2.0, 2.0);
    let ta = Tensor::from_slice(&a, &[37], &device()).unwrap();
    let tb = Tensor::from_slice(&b, &[5], &device()).unwrap();
    let want = a
        .iter()
        .chain(&b)
        .map(|&x| (x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let got = global_grad_norm(&[&ta, &tb]).unwrap().item().unwrap() as f64;
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    assert_eq!(clip_scale(0.5, 1.0).unwrap(), 1.0);
    assert!((clip_scale(4.0, 1.0).unwrap() - 0.25).abs() < 1e-6);
    assert!(clip_scale(f32::NAN, 1.0).is_err());
}
