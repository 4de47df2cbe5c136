//! Fused layer normalisation: forward against the f64 reference (one unit per row and one cube per
//! row; feature counts 1, 7, 33, 300; empty batches; with and without γ, β), gradients against
//! central differences, second derivatives against the same function built from plain ops, and
//! clear errors for bad shapes.

use dynlab::runtime::with_row_kernel;
use dynlab::{grad, GradOptions, Tensor, Var};
use dynlab_test_support::reference as r;
use dynlab_test_support::*;

const EPS: f32 = 1e-5;

#[device_test]
fn forward_matches_reference_for_both_launch_shapes() {
    let mut rng = HostRng::new(300);
    let shapes: &[&[usize]] = &[&[1, 1], &[3, 7], &[5, 33], &[2, 3, 300], &[0, 5], &[9]];
    for block in [None, Some(64)] {
        for &shape in shapes {
            let d = *shape.last().unwrap();
            let (x, hx) = random(&mut rng, shape, -2.0, 3.0);
            let (g, hg) = random(&mut rng, &[d], 0.5, 1.5);
            let (b, hb) = random(&mut rng, &[d], -1.0, 1.0);
            with_row_kernel(block, || {
                let plain = x.layer_norm(None, EPS).unwrap();
                let what = format!("{shape:?} block {block:?}");
                assert_close(
                    &format!("{what} no affine"),
                    &plain.y,
                    &r::layer_norm(&hx, None, EPS as f64),
                    1e-5,
                    1e-4,
                );
                let out = x.layer_norm(Some((&g, &b)), EPS).unwrap();
                assert_close(
                    &format!("{what} affine"),
                    &out.y,
                    &r::layer_norm(&hx, Some((&hg, &hb)), EPS as f64),
                    1e-5,
                    1e-4,
                );
                let rows = x.numel() / d;
                assert_eq!(out.stats.shape(), &[rows, 2]);
                let stats = host_f64(&out.stats);
                for (row, values) in hx.data.chunks(d).enumerate() {
                    let mean = values.iter().sum::<f64>() / d as f64;
                    assert!((stats[2 * row] - mean).abs() < 1e-5, "{what} mean {row}");
                }
            })
            .unwrap();
        }
    }
}

#[device_test]
fn gradients_match_central_differences() {
    let mut rng = HostRng::new(301);
    for block in [None, Some(32)] {
        for shape in [[4usize, 7], [3, 40]] {
            let d = shape[1];
            let inputs = vec![
                random(&mut rng, &shape, -2.0, 2.0),
                random(&mut rng, &[d], 0.5, 1.5),
                random(&mut rng, &[d], -1.0, 1.0),
            ];
            with_row_kernel(block, || {
                check_gradients(
                    &format!("layer_norm {shape:?} block {block:?}"),
                    inputs.clone(),
                    &|v| v[0].layer_norm(Some((&v[1], &v[2])), EPS),
                    &|h| r::layer_norm(&h[0], Some((&h[1], &h[2])), EPS as f64),
                    &mut rng,
                );
                check_gradients(
                    &format!("layer_norm {shape:?} block {block:?} no affine"),
                    inputs[..1].to_vec(),
                    &|v| v[0].layer_norm(None, EPS),
                    &|h| r::layer_norm(&h[0], None, EPS as f64),
                    &mut rng,
                );
            })
            .unwrap();
        }
    }
}

/// `Σ (layer_norm(x) ⊙ w)²` through the fused op and through plain ops: gradients with
/// `create_graph`, then the gradient of `Σ g ⊙ v` (a Hessian-vector product), must agree.
#[device_test]
fn second_derivatives_match_composed_ops() {
    let mut rng = HostRng::new(302);
    let (x, _) = random(&mut rng, &[3, 11], -2.0, 2.0);
    let (gamma, _) = random(&mut rng, &[11], 0.5, 1.5);
    let (beta, _) = random(&mut rng, &[11], -1.0, 1.0);
    let (w, _) = random(&mut rng, &[3, 11], -1.0, 1.0);
    let (v, _) = random(&mut rng, &[3, 11], -1.0, 1.0);
    let composed = |x: &Var, g: &Var, b: &Var| -> dynlab::Result<Var> {
        let centred = x.sub(&x.mean(-1, true)?)?;
        let rstd = centred.square()?.mean(-1, true)?.add_scalar(EPS)?.rsqrt()?;
        centred.mul(&rstd)?.mul(g)?.add(b)
    };
    let hvp = |fused: bool| -> Vec<Tensor> {
        let vars = [x.clone(), gamma.clone(), beta.clone()].map(Var::param);
        let y = if fused {
            vars[0].layer_norm(Some((&vars[1], &vars[2])), EPS).unwrap()
        } else {
            composed(&vars[0], &vars[1], &vars[2]).unwrap()
        };
        let loss = y.mul(&Var::constant(w.clone())).unwrap().square().unwrap();
        let loss = loss.sum_all().unwrap();
        let options = GradOptions {
            create_graph: true,
            ..Default::default()
        };
        let g = grad(&loss, &[&vars[0], &vars[1], &vars[2]], options).unwrap();
        let gv = g[0]
            .mul(&Var::constant(v.clone()))
            .unwrap()
            .sum_all()
            .unwrap();
        let h = grad(&gv, &[&vars[0], &vars[1], &vars[2]], GradOptions::default()).unwrap();
        g.iter().chain(&h).map(|t| t.value().clone()).collect()
    };
    let (fused, plain) = (hvp(true), hvp(false));
    for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
        let want = r::HostTensor {
            shape: p.shape().to_vec(),
            data: host_f64(p),
        };
        assert_close(&format!("derivative {i}"), f, &want, 1e-4, 1e-3);
    }
}

#[device_test]
fn bad_inputs_are_named() {
    let d = device();
    let x = Tensor::zeros(&[2, 4], &d).unwrap();
    let g = Tensor::ones(&[3], &d).unwrap();
    let msg = x.layer_norm(Some((&g, &g)), EPS).unwrap_err().to_string();
    assert!(
        msg.contains("layer_norm") && msg.contains("[3]") && msg.contains("[4]"),
        "{msg}"
    );
    let empty = Tensor::zeros(&[2, 0], &d).unwrap();
    let msg = empty.layer_norm(None, EPS).unwrap_err().to_string();
    assert!(msg.contains("[2, 0]") && msg.contains("D >= 1"), "{msg}");
    let msg = x.layer_norm(None, -1.0).unwrap_err().to_string();
    assert!(msg.contains("eps=-1"), "{msg}");
    let stats = x.layer_norm(None, EPS).unwrap().stats;
    let msg = Tensor::zeros(&[2, 5], &d)
        .unwrap()
        .layer_norm_backward(&x, None, &stats)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("layer_norm_backward") && msg.contains("[2, 5]"),
        "{msg}"
    );
}
