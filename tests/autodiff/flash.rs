//! Fused (flash) attention: forward and gradients against the f64 reference and central
//! differences (causal and not, `S ≠ T`, `T = 1`, lengths not a multiple of the 64-query (16 units ×
//! 4) block, several blocks, value width ≠ head width, wide heads with fewer rows per unit);
//! agreement with the materialised path under a broadcast mask with a fully hidden row, first and
//! second order; clear errors for bad shapes.

use super::conv::attention_ref;
use dynlab::{grad, GradOptions, Tensor, Var};
use dynlab_test_support::reference::HostTensor;
use dynlab_test_support::*;

#[device_test]
fn flash_attention_matches_reference_with_gradients() {
    let mut rng = HostRng::new(400);
    // (q shape [B, H, T, d], S, e, causal)
    for (shape_q, s, e, causal) in [
        ([2, 3, 5, 4], 5, 3, true),
        ([1, 2, 7, 3], 6, 3, false),
        ([1, 1, 1, 2], 1, 2, true),
        ([1, 2, 37, 8], 33, 5, true),
        ([1, 1, 40, 16], 70, 16, false),
        ([1, 1, 133, 4], 133, 4, true),
        // d + e = 136: 3 queries (keys) per unit instead of 4.
        ([1, 1, 9, 72], 11, 64, true),
    ] {
        let [b, h, t, d] = shape_q;
        let inputs = vec![
            random(&mut rng, &[b, h, t, d], -1.0, 1.0),
            random(&mut rng, &[b, h, s, d], -1.0, 1.0),
            random(&mut rng, &[b, h, s, e], -1.0, 1.0),
        ];
        check_gradients(
            &format!("flash attention q {shape_q:?} s {s} e {e} causal {causal}"),
            inputs,
            &|v| v[0].flash_attention(&v[1], &v[2], causal, None),
            &|x| attention_ref(&x[0], &x[1], &x[2], causal),
            &mut rng,
        );
    }
}

/// `Σ (attention(q, k, v) ⊙ w)²` through both paths, then `∂/∂(q,k,v) Σ ∂L/∂q ⊙ u` (a
/// Hessian-vector product through the recorded rule).
fn derivatives(
    fused: bool,
    inputs: &[Tensor; 3],
    mask: &Tensor,
    w: &Tensor,
    u: &Tensor,
) -> Vec<Tensor> {
    let vars = inputs.clone().map(Var::param);
    let [q, k, v] = &vars;
    let forward = || {
        let y = if fused {
            q.flash_attention(k, v, true, Some(mask)).unwrap()
        } else {
            q.attention(k, v, true, Some(mask)).unwrap()
        };
        let l = y
            .mul(&Var::constant(w.clone()))
            .unwrap()
            .square()
            .unwrap()
            .sum_all()
            .unwrap();
        (y, l)
    };
    let first = forward().1.backward().unwrap();
    let mut out: Vec<Tensor> = vars
        .iter()
        .map(|x| first.tensor(x).unwrap().clone())
        .collect();
    let (y, loss) = forward();
    let options = GradOptions {
        create_graph: true,
        ..Default::default()
    };
    let g = grad(&loss, &[q, k, v], options).unwrap();
    let gu = g[0]
        .mul(&Var::constant(u.clone()))
        .unwrap()
        .sum_all()
        .unwrap();
    let h = grad(&gu, &[q, k, v], GradOptions::default()).unwrap();
    out.extend(h.iter().map(|t| t.value().clone()));
    out.insert(0, y.value().clone());
    out
}

#[device_test]
fn flash_matches_materialised_with_mask_first_and_second_order() {
    let mut rng = HostRng::new(401);
    let (t, s, d, e) = (35, 35, 8, 6);
    let inputs = [
        random(&mut rng, &[2, 2, t, d], -1.0, 1.0).0,
        random(&mut rng, &[2, 2, s, d], -1.0, 1.0).0,
        random(&mut rng, &[2, 2, s, e], -1.0, 1.0).0,
    ];
    // A [T, S] mask broadcast over batch and heads: every third key hidden, row 4 fully hidden.
    let mask: Vec<f32> = (0..t * s)
        .map(|ij| f32::from(ij % s % 3 == 2 || ij / s == 4))
        .collect();
    let mask = Tensor::from_vec(mask, &[t, s], &device()).unwrap();
    let w = random(&mut rng, &[2, 2, t, e], -1.0, 1.0).0;
    let u = random(&mut rng, &[2, 2, t, d], -1.0, 1.0).0;
    let fused = derivatives(true, &inputs, &mask, &w, &u);
    let plain = derivatives(false, &inputs, &mask, &w, &u);
    let names = ["out", "dq", "dk", "dv", "hvp q", "hvp k", "hvp v"];
    for ((f, p), name) in fused.iter().zip(&plain).zip(names) {
        let want = HostTensor::new(p.shape(), host_f64(p));
        assert_close(name, f, &want, 1e-4, 1e-3);
    }
}

#[device_test]
fn bad_shapes_are_named() {
    let d = device();
    let z = |shape: &[usize]| Tensor::zeros(shape, &d).unwrap();
    let e = z(&[2, 4, 3])
        .flash_attention(&z(&[3, 4, 3]), &z(&[3, 4, 3]), false, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flash_attention") && e.contains("same leading"),
        "{e}"
    );
    let e = z(&[4, 129])
        .flash_attention(&z(&[4, 129]), &z(&[4, 2]), false, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("129") && e.contains("1..=128"), "{e}");
    let e = z(&[4, 2])
        .flash_attention(&z(&[4, 2]), &z(&[4, 2]), false, Some(&z(&[3, 4])))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mask [3, 4]") && e.contains("broadcastable"),
        "{e}"
    );
    let out = z(&[0, 4, 2])
        .flash_attention(&z(&[0, 4, 2]), &z(&[0, 4, 3]), true, None)
        .unwrap();
    assert_eq!(out.out.shape(), &[0, 4, 3]);
}
