//! Per-example gradient norms in one batched pass against one backward pass per example, for the
//! three grokking networks, and the Fisher trace as their mean.

use dynlab::algos::grokking::fisher::{
    fisher_trace, per_example_grad_norms, per_example_grad_norms_by_loop,
};
use dynlab::models::{
    Activation, BaselineMlp, GrokTransformer, GrokTransformerShape, Init, Module, PairEncoding,
    RoutedNetwork, RoutedShape,
};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, host_f64, HostRng};

fn pairs_and_labels(p: usize, n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut host = HostRng::new(seed);
    let pairs: Vec<i32> = (0..2 * n).map(|_| host.below(p) as i32).collect();
    let labels: Vec<i32> = (0..n).map(|_| host.below(p) as i32).collect();
    (
        Tensor::from_slice(&pairs, &[n, 2], &device()).unwrap(),
        Tensor::from_slice(&labels, &[n], &device()).unwrap(),
    )
}

fn check(what: &str, model: &dyn Module, inputs: &Tensor, labels: &Tensor) {
    let batched = host_f64(&per_example_grad_norms(model, inputs, labels).unwrap());
    let looped = per_example_grad_norms_by_loop(model, inputs, labels).unwrap();
    assert_eq!(batched.len(), looped.len());
    assert!(looped.iter().all(|&l| l > 1e-6), "{what}: {looped:?}");
    for (i, (b, l)) in batched.iter().zip(&looped).enumerate() {
        assert!(
            (b - l).abs() <= 1e-4 * l.abs().max(1e-3),
            "{what} example {i}: batched {b} vs loop {l}"
        );
    }
    let trace = fisher_trace(model, inputs, labels).unwrap();
    let mean = looped.iter().sum::<f64>() / looped.len() as f64;
    assert!(
        (trace - mean).abs() <= 1e-4 * mean.max(1e-3),
        "{what}: {trace} vs {mean}"
    );
}

#[device_test]
fn batched_per_example_gradients_equal_the_loop() {
    let mut rng = Rng::new(5);
    let p = 7;
    let (pairs, labels) = pairs_and_labels(p, 6, 5);
    for encoding in [PairEncoding::OneHot, PairEncoding::Embedding(4)] {
        let m = BaselineMlp::new(
            p,
            encoding,
            &[8, 6],
            Init::KaimingUniform,
            &mut rng,
            &device(),
        )
        .unwrap();
        let x = m.encode_pairs(&pairs).unwrap();
        check(&format!("BaselineMlp {encoding:?}"), &m, &x, &labels);
    }
    let shape = GrokTransformerShape {
        p,
        d_model: 8,
        n_layers: 2,
        n_heads: 2,
        d_mlp: 12,
        activation: Activation::Gelu,
        tie_embeddings: false,
    };
    let t = GrokTransformer::new(shape, &mut rng, &device()).unwrap();
    let tokens = GrokTransformer::tokens(&pairs, p).unwrap();
    check("GrokTransformer", &t, &tokens, &labels);
    let routed = RoutedNetwork::new(
        RoutedShape {
            p,
            d: 6,
            n_layers: 2,
            n_heads: 3,
        },
        &mut rng,
        &device(),
    )
    .unwrap();
    let x = routed.encode_pairs(&pairs).unwrap();
    check("RoutedNetwork", &routed, &x, &labels);
    let tied = GrokTransformer::new(
        GrokTransformerShape {
            tie_embeddings: true,
            ..shape
        },
        &mut rng,
        &device(),
    )
    .unwrap();
    let e = per_example_grad_norms(&tied, &tokens, &labels)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tied embeddings"), "{e}");
}
