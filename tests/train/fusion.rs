//! Fusion and launch accounting: training with the fused first-order rules equals training without
//! them, and the device's launch counter matches a step counted by hand.

use dynlab::algos::grokking::data::{ModOp, ModularData};
use dynlab::autodiff::with_fusion;
use dynlab::models::{Activation, BaselineMlp, Init, Mlp, Module, PairEncoding};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{Batch, CrossEntropy, Trainer};
use dynlab::{Device, DeviceStats, Rng, Tensor};
use dynlab_test_support::{device, device_test, private_device, HostRng};
use std::collections::BTreeMap;

/// The grokking MLP (p = 23, one-hot pairs, 128 hidden GELU units, AdamW) after `steps` full-batch
/// steps: its parameters by path.
fn train_grokking_mlp(steps: usize, device: &Device) -> BTreeMap<String, Vec<f32>> {
    let data = ModularData::new(23, ModOp::Add, 0.7, 0, device).unwrap();
    let mut rng = Rng::new(0);
    let model = BaselineMlp::new(
        23,
        PairEncoding::OneHot,
        &[128],
        Init::KaimingUniform,
        &mut rng,
        device,
    )
    .unwrap();
    let batch = Batch {
        inputs: model.encode_pairs(&data.train.pairs).unwrap(),
        targets: data.train.labels.clone(),
    };
    let adamw = Method::Adam {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-8,
        decoupled: true,
    };
    let optimizer = Optimizer::new(adamw, ParamGroup::all(1.0)).unwrap();
    let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(1e-3), CrossEntropy)
        .with_clip_norm(Some(1.0));
    for _ in 0..steps {
        trainer.step(&batch, &mut rng).unwrap();
    }
    trainer
        .model
        .params()
        .into_iter()
        .map(|(path, p)| (path, p.value().to_vec().unwrap()))
        .collect()
}

/// 50 steps with and without the fused rules end at the same parameters: `‖a − b‖ ≤ 1e-5·‖b‖` per
/// parameter (the fused kernels round differently from the chains they replace, by a few ulp).
#[device_test]
fn fused_and_unfused_training_reach_the_same_parameters() {
    let fused = with_fusion(true, || train_grokking_mlp(50, &device()));
    let unfused = with_fusion(false, || train_grokking_mlp(50, &device()));
    assert_eq!(fused.len(), unfused.len());
    for ((path, a), b) in fused.iter().zip(unfused.values()) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>();
        let norm = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>();
        assert!(a.iter().all(|x| x.is_finite()), "{path} is not finite");
        assert!(
            diff.sqrt() <= 1e-5 * norm.sqrt(),
            "{path}: fused and unfused differ by {:.3e} relative",
            (diff / norm).sqrt()
        );
    }
}

/// Launches of a step, poison fills (test-only) left out; kernels of one family (the matmul,
/// reduction and row-softmax variants a device may choose between) counted together.
fn launches_by_family(stats: &DeviceStats) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (&kernel, &n) in &stats.kernels {
        let family = ["matmul", "reduce", "softmax"]
            .into_iter()
            .find(|f| kernel.starts_with(f))
            .unwrap_or(kernel);
        if family != "fill" {
            *out.entry(family.to_string()).or_insert(0) += n;
        }
    }
    out
}

/// One SGD step of a 4 → 3 → 2 ReLU MLP with cross-entropy on 5 rows, counted by hand:
///
/// | phase | launches |
/// |---|---|
/// | forward | `x·W₀ + b₀` and `h·W₁ + b₁` (bias in the matmul epilogue): 2 matmul; ReLU: 1 unary |
/// | loss and accuracy | mean cross-entropy and accuracy in one kernel: 1 `cross_entropy_mean` |
/// | backward | the mean cross-entropy's fused rule: 1 softmax-row; `∂W₁ = hᵀg`, `∂h = gW₁ᵀ`, `∂W₀ = xᵀ∂z`: 3 matmul; `∂b₁`, `∂b₀`: 2 reduce; ReLU's fused rule: 1 binary |
/// | update | gradient norm: 1 `sum_squares`; all four parameters: 1 `sgd_multi` |
///
/// 13 launches, no host synchronisation.
#[device_test]
fn launch_counter_matches_a_step_counted_by_hand() {
    let device = private_device();
    let mut rng = Rng::new(3);
    let dims = [4, 3, 2];
    let init = Init::KaimingUniform;
    let model = Mlp::new(&dims, Activation::Relu, init, true, &mut rng, &device).unwrap();
    let mut host = HostRng::new(5);
    let batch = Batch {
        inputs: Tensor::from_slice(&host.vec(20, -1.0, 1.0), &[5, 4], &device).unwrap(),
        targets: Tensor::from_slice(&[0i32, 1, 1, 0, 1], &[5], &device).unwrap(),
    };
    let sgd = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let optimizer = Optimizer::new(sgd, ParamGroup::all(0.0)).unwrap();
    let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(0.1), CrossEntropy);
    let mut step = || {
        let before = device.stats();
        trainer.step(&batch, &mut rng).unwrap();
        device.stats().since(&before)
    };
    // The first step may also tune matmul variants; count the second.
    with_fusion(true, &mut step);
    let fused = with_fusion(true, &mut step);
    let want: BTreeMap<String, u64> = [
        ("matmul", 5),
        ("unary_contiguous", 1),
        ("cross_entropy_mean", 1),
        ("reduce", 2),
        ("softmax", 1),
        ("binary_contiguous", 1),
        ("sum_squares", 1),
        ("sgd_multi", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(launches_by_family(&fused), want, "{:?}", fused.kernels);
    assert_eq!(want.values().sum::<u64>(), 13);
    assert_eq!(fused.syncs, 0);

    // Unfused, the ReLU mask, softmax − one-hot, the means and their products are separate launches.
    let unfused = with_fusion(false, &mut step);
    let total = |s: &DeviceStats| launches_by_family(s).values().sum::<u64>();
    assert!(
        total(&unfused) > total(&fused),
        "unfused {:?}",
        unfused.kernels
    );
    assert_eq!(unfused.syncs, 0);
}
