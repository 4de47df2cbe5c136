//! Training steps of the plasticity studies' model families at batch 128: steps per second of
//! `Trainer::step` (forward, cross-entropy, backward, gradient norm, SGD) on random inputs of the
//! studies' shapes — 3 × 32 × 32 images for the ConvNets, VGG-16 (its 32 × 32 form) and ResNet-18;
//! 784 features for the deep FFNNs (784 → 2 × 2000 → 10) — with 10 classes.
//!
//! PyTorch on the CPU (2 threads) runs the same steps in `benches/peers/zoo_torch.py`, whose
//! `benches/results/zoo-torch.csv` this table reads when present.
//!
//! Timing: two warm-up steps (kernel compilation and tuning), then steps until 4 s have passed
//! (at least 2), the loss read back once at the end. `cargo bench --bench zoo` prints the table and
//! writes `benches/results/zoo.csv`; `DYNLAB_ZOO_MODELS=convnet,deep_ffnn` picks models.

use dynlab::models::{build_model, ModelParams, Module, ParamValue};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{Batch, CrossEntropy, Trainer};
use dynlab::{Device, Rng, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

const BATCH: usize = 128;
const CLASSES: usize = 10;
const SECONDS: f64 = 4.0;

/// A model timed: its registry name, input shape (without the batch) and parameters.
struct Case {
    name: &'static str,
    input: Vec<usize>,
    params: ModelParams,
}

/// The models timed.
fn cases() -> Vec<Case> {
    let classes = ModelParams::default().with("classes", ParamValue::Int(CLASSES as i64));
    let conv = |name| Case {
        name,
        input: vec![3, 32, 32],
        params: classes.clone(),
    };
    let ffnn = |name| Case {
        name,
        input: vec![784],
        params: ModelParams::default(),
    };
    vec![
        conv("convnet"),
        conv("convnet_norm"),
        conv("convnet_svd"),
        conv("convnet_fc_layer_norm"),
        conv("convnet_batch_norm"),
        ffnn("deep_ffnn"),
        ffnn("deep_ffnn_weight_norm_single_rescale"),
        ffnn("ffnn_normal_bn"),
        Case {
            params: classes.clone().with("pooled_side", ParamValue::Int(1)),
            ..conv("vgg_custom")
        },
        conv("resnet_custom"),
    ]
}

/// The case's parameter count and steps per second at batch 128.
fn measure(case: &Case, device: &Device) -> dynlab::Result<(usize, f64)> {
    let mut rng = Rng::new(0);
    let model = build_model(case.name, &case.params, &mut rng, device)?;
    let params = model.num_params();
    let method = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let optimizer = Optimizer::new(method, ParamGroup::all(0.0))?;
    let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(0.01), CrossEntropy);
    let shape: Vec<usize> = std::iter::once(BATCH)
        .chain(case.input.iter().copied())
        .collect();
    let batch = Batch {
        inputs: Tensor::rand_uniform(&shape, 0.0, 1.0, &mut rng, device)?,
        targets: Tensor::randint(&[BATCH], 0, CLASSES as i32, &mut rng, device)?,
    };
    for _ in 0..2 {
        trainer.step(&batch, &mut rng)?;
    }
    trainer.log()?;
    let start = Instant::now();
    let mut steps = 0;
    while steps < 2 || start.elapsed().as_secs_f64() < SECONDS {
        trainer.step(&batch, &mut rng)?;
        steps += 1;
    }
    trainer.log()?;
    Ok((params, steps as f64 / start.elapsed().as_secs_f64()))
}

/// PyTorch's steps/s per model from `zoo-torch.csv` (`device,…` line, header, rows).
fn torch_results() -> (Option<String>, BTreeMap<String, f64>) {
    let Ok(text) = std::fs::read_to_string(common::results_path("zoo-torch.csv").0) else {
        return (None, BTreeMap::new());
    };
    let mut lines = text.lines();
    let device = lines
        .next()
        .and_then(|l| l.strip_prefix("device,"))
        .map(str::to_string);
    let rows = lines
        .skip(1)
        .filter_map(|l| {
            let (model, rate) = l.split_once(',')?;
            Some((model.to_string(), rate.parse().ok()?))
        })
        .collect();
    (device, rows)
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

fn main() {
    let device = Device::default().expect("a device");
    let picked: Option<Vec<String>> = std::env::var("DYNLAB_ZOO_MODELS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let (torch_device, torch) = torch_results();
    println!("device: {}", device.name());
    match &torch_device {
        Some(d) => println!("PyTorch: {d} (benches/results/zoo-torch.csv)"),
        None => println!("PyTorch: no results file (run python3 benches/peers/zoo_torch.py)"),
    }
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>8}",
        "model (batch 128)", "params", "steps/s", "torch/s", "/torch"
    );
    let mut csv = format!(
        "device,{}\nmodel,params,steps_per_second,torch_steps_per_second,ratio_to_torch\n",
        device.name()
    );
    for case in cases() {
        let name = case.name;
        if picked
            .as_ref()
            .is_some_and(|p| !p.iter().any(|m| m == name))
        {
            continue;
        }
        match measure(&case, &device) {
            Ok((params, rate)) => {
                let peer = torch.get(name).copied();
                let ratio = peer.map(|t| rate / t);
                println!(
                    "{name:<38} {params:>10} {rate:>10.3} {:>10} {:>8}",
                    cell(peer, 2),
                    cell(ratio, 3)
                );
                csv.push_str(&format!(
                    "{name},{params},{rate:.3},{},{}\n",
                    cell(peer, 3),
                    cell(ratio, 4)
                ));
            }
            Err(e) => println!("{name:<38} error: {e}"),
        }
    }
    if picked.is_none() {
        common::write_results("zoo.csv", &csv, &device).expect("results written");
    }
}
