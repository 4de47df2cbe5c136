//! Whole training steps of the small models the studies train, where launches and host round trips
//! bound the rate, not arithmetic: steps per second and kernel launches and syncs per step.
//!
//! Workloads: (a) the grokking MLP, p = 97, one-hot pairs 194 → 128 → 97, full batch of 4704 pairs,
//! AdamW; (b) a 2-layer MLP 256 → 256 → 10 on 512 × 256 inputs, Adam; (c) the TMS 5-2 model, batch
//! 1024, MSE, AdamW; (d) the 20 → 5 → 1 regression learner of the bit-flipping benchmark, batch 1,
//! MSE, SGD. Each step is `Trainer::step` (forward, loss, backward, gradient norm, optimizer).
//!
//! `cargo bench --bench step` prints the table and writes `benches/results/step.csv`;
//! `DYNLAB_STEP_PROFILE=1` also prints the kernels one step launches.

use dynlab::models::{Activation, BaselineMlp, Init, Mlp, Module, PairEncoding, Tms};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{Batch, CrossEntropy, Mse, Objective, Trainer};
use dynlab::{Device, Rng, Tensor};
use std::io::Write;
use std::time::Instant;

/// One training step of a workload, drawing from the generator.
type Step = Box<dyn FnMut(&mut Rng) -> dynlab::Result<()>>;

struct Workload {
    name: &'static str,
    step: Step,
}

fn adam(decoupled: bool, wd: f32) -> Optimizer {
    let method = Method::Adam {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-8,
        decoupled,
    };
    Optimizer::new(method, ParamGroup::all(wd)).unwrap()
}

fn workload<M: Module + 'static>(
    name: &'static str,
    model: M,
    optimizer: Optimizer,
    lr: f32,
    objective: impl Objective + 'static,
    batch: Batch,
) -> Workload {
    let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(lr), objective);
    Workload {
        name,
        step: Box::new(move |rng| trainer.step(&batch, rng)),
    }
}

fn workloads(device: &Device) -> Vec<Workload> {
    let mut rng = Rng::new(0);
    let p = 97;
    let grok = BaselineMlp::new(
        p,
        PairEncoding::OneHot,
        &[128],
        Init::KaimingUniform,
        &mut rng,
        device,
    )
    .unwrap();
    let n = p * p / 2;
    let pairs = Tensor::randint(&[n, 2], 0, p as i32, &mut rng, device).unwrap();
    let grok_batch = Batch {
        inputs: grok.encode_pairs(&pairs).unwrap(),
        targets: Tensor::randint(&[n], 0, p as i32, &mut rng, device).unwrap(),
    };
    let mlp = Mlp::new(
        &[256, 256, 10],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        device,
    )
    .unwrap();
    let mlp_batch = Batch {
        inputs: Tensor::rand_normal(&[512, 256], 0.0, 1.0, &mut rng, device).unwrap(),
        targets: Tensor::randint(&[512], 0, 10, &mut rng, device).unwrap(),
    };
    let tms = Tms::new(5, 2, &mut rng, device).unwrap();
    let features = Tensor::rand_uniform(&[1024, 5], 0.0, 1.0, &mut rng, device).unwrap();
    let active = Tensor::bernoulli_scalar(&[1024, 5], 0.05, &mut rng, device).unwrap();
    let x = features.mul(&active).unwrap();
    let tms_batch = Batch {
        inputs: x.clone(),
        targets: x,
    };
    let learner = Mlp::new(
        &[20, 5, 1],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        device,
    )
    .unwrap();
    let bits = Tensor::bernoulli_scalar(&[1, 20], 0.5, &mut rng, device).unwrap();
    let learner_batch = Batch {
        inputs: bits,
        targets: Tensor::full(&[1, 1], 0.5, device).unwrap(),
    };
    let sgd = Optimizer::new(
        Method::Sgd {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
        },
        ParamGroup::all(0.0),
    )
    .unwrap();
    vec![
        workload(
            "grokking MLP p=97 (a)",
            grok,
            adam(true, 1.0),
            1e-3,
            CrossEntropy,
            grok_batch,
        ),
        workload(
            "MLP 256-256-10 b512 (b)",
            mlp,
            adam(false, 0.0),
            1e-3,
            CrossEntropy,
            mlp_batch,
        ),
        workload(
            "TMS 5-2 b1024 (c)",
            tms,
            adam(true, 0.01),
            5e-3,
            Mse,
            tms_batch,
        ),
        workload(
            "regression 20-5-1 b1 (d)",
            learner,
            sgd,
            0.01,
            Mse,
            learner_batch,
        ),
    ]
}

/// Steps per second over `seconds` of steps after a warm-up, and launches and syncs per step.
fn measure(device: &Device, w: &mut Workload, seconds: f64) -> (f64, f64, f64) {
    let mut rng = Rng::new(1);
    for _ in 0..5 {
        (w.step)(&mut rng).unwrap();
    }
    device.sync().unwrap();
    let before = device.stats();
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed().as_secs_f64() < seconds || steps < 5 {
        (w.step)(&mut rng).unwrap();
        steps += 1;
    }
    device.sync().unwrap();
    let rate = steps as f64 / start.elapsed().as_secs_f64();
    let used = device.stats().since(&before);
    let per = |v: u64| v as f64 / steps as f64;
    (rate, per(used.launches), per(used.syncs - 1))
}

fn profile(device: &Device, w: &mut Workload) {
    let mut rng = Rng::new(2);
    (w.step)(&mut rng).unwrap();
    let before = device.stats();
    (w.step)(&mut rng).unwrap();
    let used = device.stats().since(&before);
    println!(
        "{}: {} launches, {} syncs in one step",
        w.name, used.launches, used.syncs
    );
    for (what, counts) in [("kernel", used.kernels), ("op output", used.ops)] {
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        for (k, n) in counts {
            println!("  {n:4} {what} {k}");
        }
    }
}

fn main() {
    let device = Device::default().expect("a device");
    let profiling = std::env::var("DYNLAB_STEP_PROFILE").is_ok_and(|v| v == "1");
    let mut rows = Vec::new();
    println!("device: {}", device.name());
    println!(
        "{:<28} {:>10} {:>14} {:>11}",
        "workload", "steps/s", "launches/step", "syncs/step"
    );
    for mut w in workloads(&device) {
        if profiling {
            profile(&device, &mut w);
        }
        let (rate, launches, syncs) = measure(&device, &mut w, 3.0);
        println!("{:<28} {rate:>10.1} {launches:>14.1} {syncs:>11.2}", w.name);
        rows.push(format!("{},{rate:.2},{launches:.1},{syncs:.2}", w.name));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/step.csv");
    let mut f = std::fs::File::create(&path).expect("results file");
    writeln!(f, "device,{}", device.name()).unwrap();
    writeln!(
        f,
        "workload,steps_per_second,launches_per_step,syncs_per_step"
    )
    .unwrap();
    for r in rows {
        writeln!(f, "{r}").unwrap();
    }
    println!("written {}", path.display());
}
