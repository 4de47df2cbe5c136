//! Symmetric eigendecomposition on the device (parallel Jacobi, f32) next to faer's f64 solver on
//! the host, at n = 64, 256, 1024; and the singular values of a 2000 × 2000 feature matrix (the
//! plasticity studies' rank workload) through the default path. Each case is timed `REPEATS` times
//! after one warm-up run (the device's first call compiles its kernels) and the median is reported:
//! device cases take seconds per call on a software Vulkan device, too long for criterion's
//! ten-sample minimum. A Jacobi sweep is `3(n − 1)` launches, so the device time grows with the
//! launch count; device cases above `DEVICE_LIMIT` (set `DYNLAB_BENCH_DEVICE_LIMIT` to raise it) are
//! skipped and marked so in the table rather than run for many minutes.
//!
//! `cargo bench --bench linalg` prints the table and writes `benches/results/linalg.csv`.

use dynlab::runtime::linalg::host::{eigh_f64, singular_values_f64};
use dynlab::runtime::linalg::{EighOptions, EighPath};
use dynlab::{Device, Rng, Tensor};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

const REPEATS: usize = 3;

/// Largest device eigh timed by default (n = 1024 takes minutes per call on lavapipe).
fn device_limit() -> usize {
    std::env::var("DYNLAB_BENCH_DEVICE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

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
        host_on_cpu_device: false,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for n in [64, 256, 1024] {
        let x = Tensor::rand_normal(&[n, n], 0.0, 1.0, &mut rng, &device)?;
        let a = x.add(&x.transpose(0, 1)?)?.mul_scalar(0.5)?.contiguous()?;
        let host: Vec<f64> = a.to_vec::<f32>()?.iter().map(|&v| v as f64).collect();
        let mut sweeps = 0;
        let device_s = if n <= device_limit() {
            median_seconds(
                || {
                    let e = a.eigh(all_device(n)).expect("device eigh");
                    e.values.to_vec::<f32>().expect("read back");
                    if let EighPath::Device { sweeps: s } = e.path {
                        sweeps = s;
                    }
                },
                REPEATS,
            )
        } else {
            f64::NAN
        };
        let host_s = median_seconds(|| drop(eigh_f64(&host, n).expect("faer")), REPEATS);
        rows.push(Row {
            case: format!("eigh n={n}"),
            device_s,
            host_s,
            detail: if device_s.is_nan() {
                format!("device skipped (n > {})", device_limit())
            } else {
                format!("{sweeps} sweeps")
            },
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
    // The default options route a 2000-wide Gram matrix to the host (n > max_device_n): time that
    // path (device reduction for the NaN check, read-back, f64 SVD, upload).
    let mut path = String::new();
    let device_s = median_seconds(
        || {
            let (s, p) = x
                .singular_values(EighOptions::default())
                .expect("singular values");
            s.to_vec::<f32>().expect("read back");
            path = format!("default path: {p:?}");
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
        "\n| case | dynlab (s) | faer f64, host (s) | host/dynlab | detail |\n|---|---|---|---|---|"
    );
    let mut csv = String::from("case,device_seconds,host_seconds,host_over_device,detail,device\n");
    for r in &rows {
        let ratio = r.host_s / r.device_s;
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {} |",
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
    common::write_results("linalg.csv", &csv, &device)?;
    Ok(())
}
