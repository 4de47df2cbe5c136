//! The SPD training step (Bushnaq et al. 2025) on the paper's TMS 5-2 and ResidMLP-1 settings:
//! steps per second of one decomposition step (target forward, gates, one fully masked and one
//! masked pass per layer, the four losses, backward, Adam) on an untrained target of the
//! experiment's shapes, with the launches per step and, with `DYNLAB_SPD_PROFILE=1`, the ten
//! kernels that take the most device time.
//!
//! Timing: two warm-up steps, then steps until 4 s have passed (at least 2), the loss read back
//! once at the end. `cargo bench --bench spd` prints the table and writes `benches/results/spd.csv`.

use dynlab::algos::spd::targets::{feature_low, sparse_features};
use dynlab::algos::spd::{
    init_target, spd_losses, CiFnKind, ComponentInit, ComponentModel, LossSettings, MaskKind,
    Target, TargetKind,
};
use dynlab::models::Module;
use dynlab::optim::{Method, Optimizer, ParamGroup};
use dynlab::{Device, Rng};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
#[path = "common/profile.rs"]
mod profile;

const SECONDS: f64 = 4.0;

/// A case: name, target, C, gate width, batch, importance coefficient and p.
struct Case {
    name: &'static str,
    target: TargetKind,
    c: usize,
    d_gate: usize,
    batch: usize,
    probability: f32,
    pnorm: f32,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "tms_5-2 (C 20, batch 4096)",
            target: TargetKind::Tms {
                features: 5,
                hidden: 2,
                identity_layers: 0,
                bias_zero_init: false,
            },
            c: 20,
            d_gate: 16,
            batch: 4096,
            probability: 0.05,
            pnorm: 1.0,
        },
        Case {
            name: "resid_mlp1 (C 100, batch 2048)",
            target: TargetKind::ResidMlp {
                features: 100,
                d_embed: 1000,
                d_mlp: vec![50],
            },
            c: 100,
            d_gate: 16,
            batch: 2048,
            probability: 0.01,
            pnorm: 2.0,
        },
    ]
}

fn measure<M: Module>(
    case: &Case,
    target: M,
    paths: Vec<String>,
    device: &Device,
) -> dynlab::Result<(f64, f64)> {
    let mut rng = Rng::new(0);
    let ci_fn = CiFnKind::Mlp {
        d_gate: case.d_gate,
    };
    let mut model = ComponentModel::new(
        target,
        &paths,
        case.c,
        ComponentInit::Projected,
        ci_fn,
        &mut rng,
        device,
    )?;
    let settings = LossSettings {
        faithfulness: 1.0,
        stochastic_recon: 1.0,
        stochastic_recon_layerwise: 1.0,
        importance_minimality: 1e-4,
        pnorm: case.pnorm,
        mask_samples: 1,
        mask: MaskKind::Continuous,
    };
    let adam = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: false,
    };
    let mut optimizer = Optimizer::new(adam, ParamGroup::all(0.0))?;
    let features = match &case.target {
        TargetKind::Tms { features, .. } | TargetKind::ResidMlp { features, .. } => *features,
    };
    let low = feature_low(&case.target);
    let mut step = |rng: &mut Rng| -> dynlab::Result<f32> {
        let x = sparse_features(case.batch, features, case.probability, low, rng, device)?;
        let losses = spd_losses(&model, &x, &settings, rng)?;
        let grads = losses.total.backward()?;
        optimizer.step(&mut model.components, &grads, 1e-3, 1.0)?;
        Ok(0.0)
    };
    for _ in 0..2 {
        step(&mut rng)?;
    }
    device.sync()?;
    let profile = std::env::var("DYNLAB_SPD_PROFILE").is_ok_and(|v| v == "1");
    device.set_profiling(profile);
    device.reset_stats();
    let start = Instant::now();
    let mut steps = 0;
    while steps < 2 || start.elapsed().as_secs_f64() < SECONDS {
        step(&mut rng)?;
        steps += 1;
    }
    device.sync()?;
    let rate = steps as f64 / start.elapsed().as_secs_f64();
    let stats = device.stats();
    if profile {
        profile::print_top_kernels(&stats, steps);
    }
    device.set_profiling(false);
    Ok((rate, stats.launches as f64 / steps as f64))
}

fn main() {
    let device = Device::default().expect("a device");
    println!("device: {}", device.name());
    println!(
        "{:<34} {:>10} {:>16}",
        "SPD step", "steps/s", "launches/step"
    );
    let mut csv = format!(
        "device,{}\ncase,steps_per_second,launches_per_step\n",
        device.name()
    );
    for case in cases() {
        let mut rng = Rng::new(1);
        let result = init_target(&case.target, &mut rng, &device).and_then(|t| match t {
            Target::Tms(m) => {
                let paths = m.layer_paths();
                measure(&case, m, paths, &device)
            }
            Target::ResidMlp(m) => {
                let paths = m.layer_paths();
                measure(&case, *m, paths, &device)
            }
        });
        match result {
            Ok((rate, launches)) => {
                println!("{:<34} {rate:>10.2} {launches:>16.1}", case.name);
                csv.push_str(&format!("{},{rate:.3},{launches:.1}\n", case.name));
            }
            Err(e) => println!("{:<34} error: {e}", case.name),
        }
    }
    common::write_results("spd.csv", &csv, &device).expect("results written");
}
