//! Symmetric eigendecomposition on the device (parallel Jacobi, f32) next to faer's f64 solver on
//! the host, at n = 64, 256, 1024; and the singular values of a 2000 × 2000 feature matrix (the
//! plasticity studies' rank workload) by both paths. Each case is timed `REPEATS` times after one
//! warm-up run (the device's first call compiles its kernels) and the median is reported — the
//! large cases take seconds to minutes per call on a software Vulkan device, too long for
//! criterion's ten-sample minimum.
//!
//! `cargo bench --bench linalg` prints the table and writes `benches/results/linalg.csv`.

use dynlab::runtime::linalg::host::{eigh_f64, singular_values_f64};
use dynlab::runtime::linalg::{EighOptions, EighPath};
use dynlab::{Device, Rng, Tensor};
use std::time::Instant;

const REPEATS: usize = 3;

fn median_seconds(mut f: impl FnMut(), repeats: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

struct Row {
    case: String,
    device_s: f64,
    host_s: f64,
    detail: String,
}

fn main() -> dynlab::Result<()> {
    let device = Device::default()?;
    let mut rng = Rng::new(0);
    let all_device = |n: usize| EighOptions {
        cond_threshold: f64::INFINITY,
        max_device_n: n,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for n in [64, 256, 1024] {
        let x = Tensor::rand_normal(&[n, n], 0.0, 1.0, &mut rng, &device)?;
        let a = x.add(&x.transpose(0, 1)?)?.mul_scalar(0.5)?.contiguous()?;
        let host: Vec<f64> = a.to_vec::<f32>()?.iter().map(|&v| v as f64).collect();
        let mut sweeps = 0;
        let repeats = if n >= 1024 { 1 } else { REPEATS };
        let device_s = median_seconds(
            || {
                let e = a.eigh(all_device(n)).expect("device eigh");
                e.values.to_vec::<f32>().expect("read back");
                if let EighPath::Device { sweeps: s } = e.path {
                    sweeps = s;
                }
            },
            repeats,
        );
        let host_s = median_seconds(|| drop(eigh_f64(&host, n).expect("faer")), REPEATS);
        rows.push(Row {
            case: format!("eigh n={n}"),
            device_s,
            host_s,
            detail: format!("{sweeps} sweeps"),
        });
        println!(
            "{}: device {device_s:.3} s, host {host_s:.3} s",
            rows.last().unwrap().case
        );
    }
    let (m, n) = (2000, 2000);
    let x = Tensor::rand_normal(&[m, n], 0.0, 1.0, &mut rng, &device)?.relu()?;
    let host: Vec<f64> = x.to_vec::<f32>()?.iter().map(|&v| v as f64).collect();
    let host_s = median_seconds(
        || drop(singular_values_f64(&host, m, n).expect("faer")),
        REPEATS,
    );
    let mut path = String::new();
    let device_s = median_seconds(
        || {
            let (s, p) = x
                .singular_values(all_device(n))
                .expect("device singular values");
            s.to_vec::<f32>().expect("read back");
            path = format!("{p:?}");
        },
        1,
    );
    rows.push(Row {
        case: "singular values 2000x2000".into(),
        device_s,
        host_s,
        detail: path,
    });
    println!(
        "\n| case | device (s) | host f64 (s) | host/device | detail |\n|---|---|---|---|---|"
    );
    let mut csv = String::from("case,device_seconds,host_seconds,host_over_device,detail,device\n");
    for r in &rows {
        let ratio = r.host_s / r.device_s;
        println!(
            "| {} | {:.4} | {:.4} | {:.2} | {} |",
            r.case, r.device_s, r.host_s, ratio, r.detail
        );
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.4},{},{}\n",
            r.case,
            r.device_s,
            r.host_s,
            ratio,
            r.detail.replace(',', ";"),
            device.name()
        ));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/linalg.csv");
    dynlab::runtime::write_atomic(&path, csv.as_bytes())?;
    println!("wrote benches/results/linalg.csv ({})", device.name());
    Ok(())
}
