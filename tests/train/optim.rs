//! Fused optimizer updates vs the f64 reference over several steps (state carried on both sides),
//! on sizes that are empty, 1, odd and past one cube; schedules; clipping.

use dynlab::optim::{clip_scale, global_grad_norm, LrSchedule, ScheduleKind};
use dynlab::runtime::{AdamStep, AdamTensor, GradScale, SgdStep, SgdTensor};
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

/// Tensors of assorted sizes (empty, 1, odd, past one cube) and one non-contiguous view.
fn assorted(rng: &mut HostRng, count: usize) -> Vec<(Tensor, Vec<f64>)> {
    let sizes = [0usize, 1, 7, 300, 5, 1];
    (0..count)
        .map(|k| {
            let n = sizes[k % sizes.len()];
            let v = rng.vec(n, -1.0, 1.0);
            let t = Tensor::from_slice(&v, &[n], &device()).unwrap();
            (t, v.iter().map(|&x| x as f64).collect())
        })
        .collect()
}

/// A uniform random gradient in [−1, 1) for each parameter: on the host and as a tensor.
fn random_grads(rng: &mut HostRng, params: &[Tensor]) -> (Vec<Vec<f32>>, Vec<Tensor>) {
    let grads: Vec<Vec<f32>> = params
        .iter()
        .map(|p| rng.vec(p.numel(), -1.0, 1.0))
        .collect();
    let tensors = grads
        .iter()
        .zip(params)
        .map(|(g, p)| Tensor::from_slice(g, p.shape(), &device()).unwrap())
        .collect();
    (grads, tensors)
}

#[device_test]
fn multi_tensor_norms_match_reference() {
    let mut rng = HostRng::new(21);
    for count in [1usize, 4, 17, 35] {
        let items = assorted(&mut rng, count);
        let refs: Vec<&Tensor> = items.iter().map(|(t, _)| t).collect();
        let want: f64 = items.iter().flat_map(|(_, v)| v).map(|x| x * x).sum();
        let got = Tensor::sum_squares(&refs).unwrap().item().unwrap() as f64;
        assert!(
            (got - want).abs() <= 1e-5 * want.max(1.0),
            "{count}: {got} vs {want}"
        );
        let norm = Tensor::global_norm(&refs).unwrap();
        assert_eq!(norm.shape(), &[] as &[usize]);
        assert!((norm.item().unwrap() as f64 - want.sqrt()).abs() <= 1e-5 * want.sqrt().max(1.0));
    }
    // A transposed view is read in its logical order.
    let m = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &device()).unwrap();
    let got = Tensor::sum_squares(&[&m.transpose(0, 1).unwrap()])
        .unwrap()
        .item()
        .unwrap();
    assert_eq!(got, 91.0);
    assert!(Tensor::sum_squares(&[]).is_err());
}

/// Per-replica norms of stacked tensors (`[R, …]`) over one and several launch chunks, against the
/// host; tensors without the replica axis are errors.
#[device_test]
fn multi_tensor_norms_per_replica_match_reference() {
    let mut rng = HostRng::new(23);
    let replicas = 3;
    for count in [1usize, 5, 40] {
        let shapes: Vec<Vec<usize>> = (0..count)
            .map(|k| match k % 4 {
                0 => vec![replicas, 7],
                1 => vec![replicas, 0],
                2 => vec![replicas, 2, 150],
                _ => vec![replicas],
            })
            .collect();
        let values: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| rng.vec(s.iter().product(), -1.0, 1.0))
            .collect();
        let tensors: Vec<Tensor> = shapes
            .iter()
            .zip(&values)
            .map(|(s, v)| Tensor::from_slice(v, s, &device()).unwrap())
            .collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let mut want = vec![0.0f64; replicas];
        for v in &values {
            let per = v.len() / replicas;
            for (i, x) in v.iter().enumerate() {
                want[i / per.max(1)] += (*x as f64).powi(2);
            }
        }
        let got = Tensor::sum_squares_rows(&refs, replicas).unwrap();
        let norms = Tensor::global_norm_rows(&refs, replicas).unwrap();
        assert_eq!(got.shape(), &[replicas]);
        let (got, norms) = (got.to_vec::<f32>().unwrap(), norms.to_vec::<f32>().unwrap());
        for r in 0..replicas {
            let close = |g: f32, w: f64| (g as f64 - w).abs() <= 1e-5 * w.max(1.0);
            assert!(
                close(got[r], want[r]),
                "{count} tensors, replica {r}: {got:?} vs {want:?}"
            );
            assert!(
                close(norms[r], want[r].sqrt()),
                "{count} tensors, replica {r}"
            );
        }
    }
    let flat = Tensor::zeros(&[4], &device()).unwrap();
    let err = Tensor::sum_squares_rows(&[&flat], 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sum_squares_rows") && err.contains("[4]"),
        "{err}"
    );
}

/// A parameter's host Adam state: value, first and second moments, per-element step counts.
type HostAdam = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// The reference AdamGnT step (`lop/utils/AdamGnT.py`, spec 1d) in f64, per-element counts `c`:
/// `θ' = θ(1 − lr·λ_d) − lr·(1 − β₂ⁿ)·m / (√v + ε)`.
fn adamgnt_reference_step(
    p: &[f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    c: &mut [f64],
    s: &AdamStep,
) -> Vec<f64> {
    let (b1, b2) = (s.beta1 as f64, s.beta2 as f64);
    (0..p.len())
        .map(|i| {
            c[i] += 1.0;
            let gi = g[i] * s.grad_scale as f64 + s.l2_decay as f64 * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let step = (1.0 - b2.powf(c[i])) * m[i] / (v[i].sqrt() + s.eps as f64);
            p[i] * (1.0 - s.lr as f64 * s.decoupled_decay as f64) - s.lr as f64 * step
        })
        .collect()
}

#[device_test]
fn multi_tensor_adam_matches_reference_per_parameter() {
    let mut rng = HostRng::new(22);
    for (counted, reference_gnt) in [(false, false), (true, false), (true, true)] {
        for (clip, count) in [(None, 7usize), (Some(0.5f32), 3)] {
            let items = assorted(&mut rng, count);
            let mut params: Vec<Tensor> = items.iter().map(|(t, _)| t.clone()).collect();
            let zeros = |t: &Tensor| Tensor::zeros(t.shape(), &device()).unwrap();
            let mut ms: Vec<Tensor> = params.iter().map(zeros).collect();
            let mut vs: Vec<Tensor> = params.iter().map(zeros).collect();
            let mut counts: Vec<Tensor> = params.iter().map(zeros).collect();
            let mut states: Vec<HostAdam> = items
                .iter()
                .map(|(_, v)| {
                    (
                        v.clone(),
                        vec![0.0; v.len()],
                        vec![0.0; v.len()],
                        vec![0.0; v.len()],
                    )
                })
                .collect();
            for step in 1..=3u64 {
                let (grads, gts) = random_grads(&mut rng, &params);
                let norm: f64 = grads
                    .iter()
                    .flatten()
                    .map(|&g| (g as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm_t = Tensor::global_norm(&gts.iter().collect::<Vec<_>>()).unwrap();
                let scale = match clip {
                    Some(c) => GradScale::Clip {
                        norm: &norm_t,
                        max_norm: c,
                    },
                    None => GradScale::Constant(0.75),
                };
                let host_scale = match clip {
                    Some(c) => (c as f64 / (norm + 1e-6)).min(1.0),
                    None => 0.75,
                };
                let lr = |k: usize| 0.01 * (k + 1) as f32;
                let mut items: Vec<AdamTensor> = Vec::new();
                for (k, ((((p, g), m), v), c)) in params
                    .iter()
                    .zip(&gts)
                    .zip(ms.iter_mut())
                    .zip(vs.iter_mut())
                    .zip(counts.iter_mut())
                    .enumerate()
                {
                    items.push(AdamTensor {
                        param: p,
                        grad: g,
                        m,
                        v,
                        steps: counted.then_some(c),
                        reference_gnt,
                        lr: lr(k),
                        l2_decay: if k % 2 == 0 { 0.1 } else { 0.0 },
                        decoupled_decay: if k % 2 == 1 { 0.2 } else { 0.0 },
                        step,
                    });
                }
                let new =
                    Tensor::adam_update_multi(&mut items, 0.9, 0.98, 1e-8, scale, &[]).unwrap();
                drop(items);
                params = new;
                for (k, (hp, hm, hv, hc)) in states.iter_mut().enumerate() {
                    let s = AdamStep {
                        lr: lr(k),
                        grad_scale: host_scale as f32,
                        l2_decay: if k % 2 == 0 { 0.1 } else { 0.0 },
                        decoupled_decay: if k % 2 == 1 { 0.2 } else { 0.0 },
                        beta1: 0.9,
                        beta2: 0.98,
                        eps: 1e-8,
                        step,
                    };
                    let hg: Vec<f64> = grads[k].iter().map(|&x| x as f64).collect();
                    *hp = if reference_gnt {
                        adamgnt_reference_step(hp, &hg, hm, hv, hc, &s)
                    } else if counted {
                        reference::adam_step_counted(hp, &hg, hm, hv, hc, &s)
                    } else {
                        reference::adam_step(hp, &hg, hm, hv, &s)
                    };
                    let what = format!(
                        "multi adam counted {counted} gnt {reference_gnt} clip {clip:?} tensor {k} step {step}"
                    );
                    assert_near(&what, &host(&params[k]), hp, 1e-5);
                    assert_near(&format!("{what} m"), &host(&ms[k]), hm, 1e-5);
                    assert_near(&format!("{what} v"), &host(&vs[k]), hv, 1e-5);
                }
            }
        }
    }
}

#[device_test]
fn multi_tensor_sgd_matches_reference_per_parameter() {
    let mut rng = HostRng::new(23);
    for (momentum, nesterov, dampening) in [(0.0, false, 0.0), (0.9, false, 0.1), (0.9, true, 0.0)]
    {
        let items = assorted(&mut rng, 6);
        let mut params: Vec<Tensor> = items.iter().map(|(t, _)| t.clone()).collect();
        let mut bufs: Vec<Tensor> = params
            .iter()
            .map(|p| Tensor::zeros(p.shape(), &device()).unwrap())
            .collect();
        let mut states: Vec<(Vec<f64>, Vec<f64>)> = items
            .iter()
            .map(|(_, v)| (v.clone(), vec![0.0; v.len()]))
            .collect();
        for step in 1..=3u64 {
            let (grads, gts) = random_grads(&mut rng, &params);
            let mut items: Vec<SgdTensor> = params
                .iter()
                .zip(&gts)
                .zip(bufs.iter_mut())
                .map(|((p, g), b)| SgdTensor {
                    param: p,
                    grad: g,
                    buf: Some(b),
                    lr: 0.1,
                    weight_decay: 0.01,
                    first: step == 1,
                })
                .collect();
            let new = Tensor::sgd_update_multi(
                &mut items,
                momentum,
                dampening,
                nesterov,
                GradScale::Constant(0.8),
                &[],
            )
            .unwrap();
            drop(items);
            params = new;
            for (k, (hp, hb)) in states.iter_mut().enumerate() {
                let s = SgdStep {
                    lr: 0.1,
                    grad_scale: 0.8,
                    weight_decay: 0.01,
                    momentum,
                    dampening,
                    nesterov,
                    first: step == 1,
                };
                let hg: Vec<f64> = grads[k].iter().map(|&x| x as f64).collect();
                *hp = reference::sgd_step(hp, &hg, hb, &s);
                let what =
                    format!("multi sgd μ={momentum} nesterov={nesterov} tensor {k} step {step}");
                assert_near(&what, &host(&params[k]), hp, 1e-6);
            }
        }
    }
}
