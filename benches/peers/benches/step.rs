//! Burn 0.22's peer of the root `benches/step.rs`: whole training steps of the same four small
//! workloads on Burn's wgpu default device (the adapter dynlab opens), with Burn's autodiff, kernel
//! fusion and Burn's own optimizers. A step is forward, loss, backward, the global gradient norm
//! (square root of the sum of squares of all gradients; kept on the device with the loss, as
//! dynlab's trainer logs both, never read back) and the optimizer update.
//!
//! Workloads: (a) grokking MLP, p = 97, one-hot pairs 194 → 128 (exact GELU) → 97, full batch of
//! 4704 random pairs, cross-entropy, AdamW (wd 1.0); (b) MLP 256 → 256 (ReLU) → 10 on 512 × 256
//! normal inputs, cross-entropy, Adam; (c) TMS 5-2 (`ReLU(x Wᵀ W + b)`), batch 1024, MSE, AdamW
//! (wd 0.01); (d) regression learner 20 → 5 (ReLU) → 1, batch 1, MSE, SGD. (c) and (d) also as 32
//! independent replicas: parameters stacked `[32, ..]`, batched matmuls over the same batch,
//! per-replica losses summed for the backward, per-replica gradient norms.
//!
//! Each workload: a warm-up of at least 10 steps and 1 s, a device sync, then steps for at least
//! 3 s and a sync. Replicas are counted as replica-steps per second (stacked steps/s × 32), as in
//! dynlab's table. `cargo bench --bench step` prints them and writes
//! `benches/results/step-burn.csv`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor, TensorData};
use std::f64::consts::SQRT_2;
use std::time::Instant;

const REPLICAS: usize = 32;
const KAIMING: Initializer = Initializer::KaimingUniform {
    gain: SQRT_2,
    fan_out_only: false,
};

/// One training step.
type Step = Box<dyn FnMut()>;

/// Sum of squares of every float parameter's gradient, one per replica (`[rows, 1]`).
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    rows: usize,
    sum: Option<Tensor<2>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().reshape([self.rows as i32, -1]).sum_dim(1);
            self.sum = Some(match self.sum.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// A step of `model` under `optim`: `loss` gives the per-replica losses (`[rows]`; their sum is
/// differentiated), then the gradient norm per replica, then the update at learning rate `lr`.
fn trainer<M: Module + 'static>(
    model: M,
    mut optim: ModuleOptimizer,
    lr: f64,
    rows: usize,
    loss: impl Fn(&M) -> Tensor<1> + 'static,
) -> Step {
    let mut model = Some(model);
    let mut logged = Vec::new();
    Box::new(move || {
        let m = model.take().unwrap();
        let losses = loss(&m);
        let total = if rows == 1 {
            losses.clone()
        } else {
            losses.clone().sum()
        };
        let grads = GradientsParams::from_grads(total.backward(), &m);
        let mut norm = SquaredNorm {
            grads: &grads,
            rows,
            sum: None,
        };
        m.visit(&mut norm);
        logged.push((losses.inner(), norm.sum.unwrap().sqrt()));
        model = Some(optim.step(lr, m, grads));
    })
}

/// Two dense layers (Burn's `Linear`, Kaiming-uniform weights) around an activation.
#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn new([i, h, o]: [usize; 3], device: &Device) -> Mlp {
        let layer = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(KAIMING)
                .init(device)
        };
        Mlp {
            hidden: layer(i, h),
            out: layer(h, o),
        }
    }

    fn forward(&self, x: Tensor<2>, act: fn(Tensor<2>) -> Tensor<2>) -> Tensor<2> {
        self.out.forward(act(self.hidden.forward(x)))
    }
}

/// TMS: `ReLU(x Wᵀ W + b)`, `W` `[m, n]` Xavier-normal, `b` zeros.
#[derive(Module, Debug)]
struct Tms {
    w: Param<Tensor<2>>,
    b: Param<Tensor<1>>,
}

/// `REPLICAS` stacked TMS models: `W` `[R, m, n]`, `b` `[R, 1, n]`.
#[derive(Module, Debug)]
struct TmsStack {
    w: Param<Tensor<3>>,
    b: Param<Tensor<3>>,
}

/// `REPLICAS` stacked 2-layer ReLU MLPs: weights `[R, in, out]`, biases `[R, 1, out]`.
#[derive(Module, Debug)]
struct MlpStack {
    w1: Param<Tensor<3>>,
    b1: Param<Tensor<3>>,
    w2: Param<Tensor<3>>,
    b2: Param<Tensor<3>>,
}

/// `n` integers below `bound` from a fixed-seed splitmix64 stream.
fn host_ints(n: usize, bound: usize, mut state: u64) -> Vec<i64> {
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % bound as u64) as i64
        })
        .collect()
}

fn labels(n: usize, classes: usize, seed: u64, device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(host_ints(n, classes, seed), [n]), device)
}

fn adam_w(wd: f32) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.98)
        .with_epsilon(1e-8)
        .with_weight_decay(wd)
        .init()
}

/// The workloads: name, single-model step, and the 32-replica step where measured.
fn workloads(device: &Device) -> Vec<(&'static str, Step, Option<Step>)> {
    // (a) grokking MLP on the one-hot encodings of n random pairs.
    let (p, n) = (97, 97 * 97 / 2);
    let mut onehot = vec![0f32; n * 2 * p];
    for (k, &v) in host_ints(2 * n, p, 1).iter().enumerate() {
        onehot[(k / 2) * 2 * p + (k % 2) * p + v as usize] = 1.0;
    }
    let x: Tensor<2> = Tensor::from_data(TensorData::new(onehot, [n, 2 * p]), device);
    let y = labels(n, p, 2, device);
    let ce = CrossEntropyLossConfig::new().init(device);
    let grok = trainer(
        Mlp::new([2 * p, 128, p], device),
        adam_w(1.0),
        1e-3,
        1,
        move |m| ce.forward(m.forward(x.clone(), gelu), y.clone()),
    );

    // (b) MLP 256-256-10.
    let x: Tensor<2> = Tensor::random([512, 256], Distribution::Normal(0.0, 1.0), device);
    let y = labels(512, 10, 3, device);
    let ce = CrossEntropyLossConfig::new().init(device);
    let adam = AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.98)
        .with_epsilon(1e-8)
        .init();
    let mlp = trainer(Mlp::new([256, 256, 10], device), adam, 1e-3, 1, move |m| {
        ce.forward(m.forward(x.clone(), relu), y.clone())
    });

    // (c) TMS 5-2 on sparse features; replicas share the batch.
    let x: Tensor<2> = Tensor::random([1024, 5], Distribution::Uniform(0.0, 1.0), device)
        * Tensor::random([1024, 5], Distribution::Bernoulli(0.05), device);
    let xavier = Initializer::XavierNormal { gain: 1.0 };
    let tms = Tms {
        w: xavier.init_with([2, 5], Some(5), Some(2), device),
        b: Initializer::Zeros.init([5], device),
    };
    let xs = x.clone();
    let tms = trainer(tms, adam_w(0.01), 5e-3, 1, move |m| {
        let w = m.w.val();
        let out = relu(xs.clone().matmul(w.clone().transpose()).matmul(w) + m.b.val().unsqueeze());
        MseLoss::new().forward(out, xs.clone(), Reduction::Mean)
    });
    let stack = TmsStack {
        w: xavier.init_with([REPLICAS, 2, 5], Some(5), Some(2), device),
        b: Initializer::Zeros.init([REPLICAS, 1, 5], device),
    };
    let x3: Tensor<3> = x.unsqueeze();
    let tms_stack = trainer(stack, adam_w(0.01), 5e-3, REPLICAS, move |m| {
        let w = m.w.val();
        let out = relu(x3.clone().matmul(w.clone().swap_dims(1, 2)).matmul(w) + m.b.val());
        (out - x3.clone())
            .square()
            .sum_dims_squeeze::<1, _>(&[1, 2])
            / (1024.0 * 5.0)
    });

    // (d) regression learner on one random bit vector, target 0.5.
    let x: Tensor<2> = Tensor::random([1, 20], Distribution::Bernoulli(0.5), device);
    let target: Tensor<2> = Tensor::full([1, 1], 0.5, device);
    let sgd = || SgdConfig::new().init();
    let xs = x.clone();
    let learner = trainer(Mlp::new([20, 5, 1], device), sgd(), 1e-2, 1, move |m| {
        MseLoss::new().forward(m.forward(xs.clone(), relu), target.clone(), Reduction::Mean)
    });
    let stack = MlpStack {
        w1: KAIMING.init_with([REPLICAS, 20, 5], Some(20), Some(5), device),
        b1: Initializer::Zeros.init([REPLICAS, 1, 5], device),
        w2: KAIMING.init_with([REPLICAS, 5, 1], Some(5), Some(1), device),
        b2: Initializer::Zeros.init([REPLICAS, 1, 1], device),
    };
    let x3: Tensor<3> = x.unsqueeze();
    let learner_stack = trainer(stack, sgd(), 1e-2, REPLICAS, move |m| {
        let h = relu(x3.clone().matmul(m.w1.val()) + m.b1.val());
        let out = h.matmul(m.w2.val()) + m.b2.val();
        (out - 0.5).square().reshape([REPLICAS])
    });

    vec![
        ("grokking MLP p=97 (a)", grok, None),
        ("MLP 256-256-10 b512 (b)", mlp, None),
        ("TMS 5-2 b1024 (c)", tms, Some(tms_stack)),
        ("regression 20-5-1 b1 (d)", learner, Some(learner_stack)),
    ]
}

/// Steps per second over at least `seconds` of steps between two syncs, after a warm-up of at
/// least 10 steps and 1 s (Burn compiles and autotunes its fused kernels during the first steps).
fn measure(device: &Device, step: &mut Step, seconds: f64) -> f64 {
    let warm_up = Instant::now();
    let mut done = 0;
    while done < 10 || warm_up.elapsed().as_secs_f64() < 1.0 {
        step();
        done += 1;
    }
    device.sync().unwrap();
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed().as_secs_f64() < seconds || steps < 5 {
        step();
        steps += 1;
    }
    device.sync().unwrap();
    steps as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let plain = Device::wgpu(DeviceKind::DefaultDevice);
    let device = plain.clone().autodiff();
    let name = format!("burn 0.22 {plain:?} fusion autodiff").replace(',', ";");
    println!("device: {name}");
    println!(
        "{:<28} {:>10} {:>16}",
        "workload", "steps/s", "32 replicas/s"
    );
    let mut csv =
        format!("device,{name}\nworkload,burn_steps_per_second,burn_replicas32_steps_per_second\n");
    for (workload, mut single, replicas) in workloads(&device) {
        let rate = measure(&device, &mut single, 3.0);
        drop(single);
        let stacked = replicas.map(|mut r| measure(&device, &mut r, 3.0) * REPLICAS as f64);
        let stacked = stacked.map_or(String::new(), |r| format!("{r:.2}"));
        println!("{workload:<28} {rate:>10.1} {stacked:>16}");
        csv += &format!("{workload},{rate:.2},{stacked}\n");
    }
    let file = dynlab_peers::write_csv("step-burn.csv", &csv).expect("writing the results table");
    println!("wrote benches/results/{file}");
}
