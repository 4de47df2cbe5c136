//! Whole training steps of the small models the studies train, where launches and host round trips
//! bound the rate, not arithmetic: steps per second and kernel launches per step, with the fused
//! first-order rules on and off, and for the tiny models also as 32 stacked replicas.
//!
//! Workloads: (a) the grokking MLP, p = 97, one-hot pairs 194 → 128 → 97, full batch of 4704 pairs,
//! AdamW; (b) a 2-layer MLP 256 → 256 → 10 on 512 × 256 inputs, Adam (the grokking transformer
//! does not exist yet); (c) the TMS 5-2 model, batch 1024, MSE, AdamW; (d) the 20 → 5 → 1
//! regression learner of the bit-flipping benchmark, batch 1, MSE, SGD. Each step is
//! `Trainer::step` (forward, loss, backward, gradient norm, optimizer). Replicas (c, d): 32 models
//! of seeds 0‥31 stacked ([`Replicas`]), each on its own batch; the rate is replica-steps per
//! second (steps/s × 32). A last row is a whole epoch of the README's quick grokking config (p = 23,
//! 46 → 128 → 23, 370 training pairs, full batch, AdamW): the step, the 159 test pairs evaluated,
//! and the loss, accuracy, test loss, test accuracy and gradient norm read back once.
//!
//! The peers' numbers are read from their own result files when present, measured by their own
//! benches on the same machine: Burn 0.22 (autodiff + fusion, same wgpu device) by
//! `cd benches/peers && cargo bench --bench step` into `benches/results/step-burn.csv`, and PyTorch
//! on the CPU (2 threads) by `python3 benches/peers/step_torch.py` into
//! `benches/results/step-torch.csv`.
//!
//! `cargo bench --bench step` prints the table and writes `benches/results/step.csv`;
//! `DYNLAB_STEP_PROFILE=1` also prints the kernels one step launches and, timed over 20 steps, the
//! kernels that took the most device time.

use dynlab::algos::grokking::data::{ModOp, ModularData};
use dynlab::autodiff::with_fusion;
use dynlab::models::{Activation, BaselineMlp, Init, Mlp, Module, PairEncoding, Replicas, Tms};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{Batch, CrossEntropy, Mse, Objective, Trainer};
use dynlab::{Device, Rng, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
#[path = "common/profile.rs"]
mod profile;

/// Stacked replicas of the tiny workloads.
const REPLICAS: usize = 32;

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

fn sgd() -> Optimizer {
    let method = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    Optimizer::new(method, ParamGroup::all(0.0)).unwrap()
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

fn grokking(device: &Device, rng: &mut Rng) -> Workload {
    let p = 97;
    let init = Init::KaimingUniform;
    let model = BaselineMlp::new(p, PairEncoding::OneHot, &[128], init, rng, device).unwrap();
    let n = p * p / 2;
    let pairs = Tensor::randint(&[n, 2], 0, p as i32, rng, device).unwrap();
    let batch = Batch {
        inputs: model.encode_pairs(&pairs).unwrap(),
        targets: Tensor::randint(&[n], 0, p as i32, rng, device).unwrap(),
    };
    let name = "grokking MLP p=97 (a)";
    workload(name, model, adam(true, 1.0), 1e-3, CrossEntropy, batch)
}

fn mlp(device: &Device, rng: &mut Rng) -> Workload {
    let dims = [256, 256, 10];
    let model = Mlp::new(
        &dims,
        Activation::Relu,
        Init::KaimingUniform,
        true,
        rng,
        device,
    )
    .unwrap();
    let batch = Batch {
        inputs: Tensor::rand_normal(&[512, 256], 0.0, 1.0, rng, device).unwrap(),
        targets: Tensor::randint(&[512], 0, 10, rng, device).unwrap(),
    };
    let name = "MLP 256-256-10 b512 (b)";
    workload(name, model, adam(false, 0.0), 1e-3, CrossEntropy, batch)
}

/// One epoch of the quick grokking config, read back once (see the module docs).
fn quick_epoch(device: &Device, _rng: &mut Rng, _replicas: usize) -> Workload {
    let data = ModularData::new(23, ModOp::Add, 0.7, 0, device).unwrap();
    let mut init = Rng::new(0);
    let kaiming = Init::KaimingUniform;
    let model = BaselineMlp::new(23, PairEncoding::OneHot, &[128], kaiming, &mut init, device);
    let model = model.unwrap();
    let train = Batch {
        inputs: model.encode_pairs(&data.train.pairs).unwrap(),
        targets: data.train.labels.clone(),
    };
    let test = Batch {
        inputs: model.encode_pairs(&data.test.pairs).unwrap(),
        targets: data.test.labels.clone(),
    };
    let schedule = LrSchedule::constant(1e-2);
    let mut trainer = Trainer::new(model, adam(true, 1.0), schedule, CrossEntropy);
    Workload {
        name: "quick grokking epoch p=23",
        step: Box::new(move |rng| {
            trainer.step(&train, rng)?;
            trainer.evaluate_into(&test, "test_")?;
            trainer.log().map(drop)
        }),
    }
}

/// Sparse features: uniform on [0, 1), each present with probability 0.05; shape `lead + [5]`.
fn tms_batch(lead: &[usize], rng: &mut Rng, device: &Device) -> Batch {
    let shape: Vec<usize> = lead.iter().copied().chain([5]).collect();
    let features = Tensor::rand_uniform(&shape, 0.0, 1.0, rng, device).unwrap();
    let active = Tensor::bernoulli_scalar(&shape, 0.05, rng, device).unwrap();
    let x = features.mul(&active).unwrap();
    Batch {
        inputs: x.clone(),
        targets: x,
    }
}

fn tms(device: &Device, rng: &mut Rng, replicas: usize) -> Workload {
    let model = |seed: u64| Tms::new(5, 2, &mut Rng::new(seed), device).unwrap();
    let optimizer = adam(true, 0.01);
    if replicas == 1 {
        let batch = tms_batch(&[1024], rng, device);
        return workload("TMS 5-2 b1024 (c)", model(0), optimizer, 5e-3, Mse, batch);
    }
    let stacked = Replicas::stack((0..replicas as u64).map(model).collect()).unwrap();
    let batch = tms_batch(&[replicas, 1024], rng, device);
    workload("TMS 5-2 b1024 (c)", stacked, optimizer, 5e-3, Mse, batch)
}

/// Random bits `lead + [20]` and the target 0.5 per row.
fn learner_batch(lead: &[usize], rng: &mut Rng, device: &Device) -> Batch {
    let bits: Vec<usize> = lead.iter().copied().chain([1, 20]).collect();
    let target: Vec<usize> = lead.iter().copied().chain([1, 1]).collect();
    Batch {
        inputs: Tensor::bernoulli_scalar(&bits, 0.5, rng, device).unwrap(),
        targets: Tensor::full(&target, 0.5, device).unwrap(),
    }
}

fn learner(device: &Device, rng: &mut Rng, replicas: usize) -> Workload {
    let model = |seed: u64| {
        let dims = [20, 5, 1];
        let init = Init::KaimingUniform;
        Mlp::new(
            &dims,
            Activation::Relu,
            init,
            true,
            &mut Rng::new(seed),
            device,
        )
        .unwrap()
    };
    let name = "regression 20-5-1 b1 (d)";
    if replicas == 1 {
        let batch = learner_batch(&[], rng, device);
        return workload(name, model(0), sgd(), 0.01, Mse, batch);
    }
    let stacked = Replicas::stack((0..replicas as u64).map(model).collect()).unwrap();
    let batch = learner_batch(&[replicas], rng, device);
    workload(name, stacked, sgd(), 0.01, Mse, batch)
}

/// Steps per second over `seconds` of steps after a warm-up (at least 10 steps and 1 s, as in the
/// peers' benches), launches per step and syncs per step, with the fused rules `fused` or not.
fn measure(device: &Device, w: &mut Workload, fused: bool, seconds: f64) -> (f64, f64, f64) {
    with_fusion(fused, || {
        let mut rng = Rng::new(1);
        let (warm_up, mut done) = (Instant::now(), 0);
        while done < 10 || warm_up.elapsed().as_secs_f64() < 1.0 {
            (w.step)(&mut rng).unwrap();
            done += 1;
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
    })
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
    let steps = 20;
    device.set_profiling(true);
    let before = device.stats();
    for _ in 0..steps {
        (w.step)(&mut rng).unwrap();
    }
    device.set_profiling(false);
    println!("  device time per step, the kernels that took the most over {steps} steps:");
    profile::print_top_kernels(&device.stats().since(&before), steps);
}

/// A peer's result file: its device line and its rows by workload (column name → value).
struct PeerResults {
    device: String,
    rows: BTreeMap<String, BTreeMap<String, f64>>,
}

/// Reads a peer's table from [`common::results_path`], under the same prefix as this bench's own
/// (so a GPU run pairs with the peers' runs on that GPU).
fn read_peer(file: &str) -> Option<PeerResults> {
    let text = std::fs::read_to_string(common::results_path(file).0).ok()?;
    let mut lines = text.lines();
    let device = lines.next()?.strip_prefix("device,")?.to_string();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let rows = lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let values = header.iter().zip(&cells).skip(1);
            let values = values.filter_map(|(h, c)| Some((h.to_string(), c.parse().ok()?)));
            Some((cells.first()?.to_string(), values.collect()))
        })
        .collect();
    Some(PeerResults { device, rows })
}

/// The peer's value `column` for `workload`, if measured.
fn peer(results: &Option<PeerResults>, workload: &str, column: &str) -> Option<f64> {
    results.as_ref()?.rows.get(workload)?.get(column).copied()
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

fn main() {
    let device = Device::default().expect("a device");
    let profiling = std::env::var("DYNLAB_STEP_PROFILE").is_ok_and(|v| v == "1");
    let (burn, torch) = (read_peer("step-burn.csv"), read_peer("step-torch.csv"));
    println!("device: {}", device.name());
    for (name, p) in [("Burn", &burn), ("PyTorch", &torch)] {
        match p {
            Some(p) => println!("{name}: {} (its bench's file)", p.device),
            None => println!("{name}: no results file (run its peer bench)"),
        }
    }
    let header = [
        "workload",
        "steps_per_second",
        "launches_per_step",
        "syncs_per_step",
        "unfused_steps_per_second",
        "unfused_launches_per_step",
        "replicas32_steps_per_second",
        "replicas32_launches_per_step",
        "burn_steps_per_second",
        "burn_replicas32_steps_per_second",
        "torch_steps_per_second",
        "torch_replicas32_steps_per_second",
        "ratio_to_burn",
        "ratio_to_torch",
    ];
    println!(
        "{:<26} {:>9} {:>8} {:>9} {:>8} {:>10} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "workload",
        "steps/s",
        "launch",
        "unfused/s",
        "launch",
        "32 rep/s",
        "launch",
        "burn/s",
        "torch/s",
        "/burn",
        "/torch"
    );
    let mut rows = vec![header.join(",")];
    let mut rng = Rng::new(0);
    type Build = fn(&Device, &mut Rng, usize) -> Workload;
    let builds: [(Build, bool); 5] = [
        (|d, r, _| grokking(d, r), false),
        (|d, r, _| mlp(d, r), false),
        (tms, true),
        (learner, true),
        (quick_epoch, false),
    ];
    for (build, replicable) in builds {
        let mut w = build(&device, &mut rng, 1);
        if profiling {
            profile(&device, &mut w);
        }
        let (rate, launches, syncs) = measure(&device, &mut w, true, 3.0);
        let (unfused, unfused_launches, _) = measure(&device, &mut w, false, 3.0);
        let (replicas, replica_launches) = if replicable {
            let mut r = build(&device, &mut rng, REPLICAS);
            let (rate, launches, _) = measure(&device, &mut r, true, 3.0);
            (Some(rate * REPLICAS as f64), Some(launches))
        } else {
            (None, None)
        };
        let name = w.name;
        let burn_rate = peer(&burn, name, "burn_steps_per_second");
        let torch_rate = peer(&torch, name, "torch_steps_per_second");
        let ratio = |peer: Option<f64>| peer.map(|p| rate / p);
        println!(
            "{name:<26} {rate:>9.1} {launches:>8.1} {unfused:>9.1} {unfused_launches:>8.1} {:>10} {:>8} {:>9} {:>9} {:>7} {:>7}",
            cell(replicas, 1),
            cell(replica_launches, 1),
            cell(burn_rate, 1),
            cell(torch_rate, 1),
            cell(ratio(burn_rate), 2),
            cell(ratio(torch_rate), 3),
        );
        rows.push(
            [
                name.to_string(),
                format!("{rate:.2}"),
                format!("{launches:.1}"),
                format!("{syncs:.2}"),
                format!("{unfused:.2}"),
                format!("{unfused_launches:.1}"),
                cell(replicas, 2),
                cell(replica_launches, 1),
                cell(burn_rate, 2),
                cell(peer(&burn, name, "burn_replicas32_steps_per_second"), 2),
                cell(torch_rate, 2),
                cell(peer(&torch, name, "torch_replicas32_steps_per_second"), 2),
                cell(ratio(burn_rate), 3),
                cell(ratio(torch_rate), 4),
            ]
            .join(","),
        );
    }
    let mut text = format!("device,{}\n", device.name());
    for (name, p) in [("burn", &burn), ("torch", &torch)] {
        if let Some(p) = p {
            text.push_str(&format!("{name}_device,{}\n", p.device));
        }
    }
    text.push_str(&(rows.join("\n") + "\n"));
    common::write_results("step.csv", &text, &device).expect("results file");
}
