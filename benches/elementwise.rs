//! Memory-bound kernel throughput: add, exp, sum over rows and softmax over rows, at 1M-16M f32
//! elements, next to a plain copy kernel on the same device (the bandwidth ceiling). Effective
//! bandwidth counts each input read and each output written once.
//!
//! `cargo bench --bench elementwise` prints the table and writes `benches/results/elementwise.csv`
//! (`DYNLAB_BENCH_RESULTS=gpu-` names it `gpu-elementwise.csv`).

use criterion::{BenchmarkId, Criterion, Throughput};
use dynlab::{Device, Rng, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

const SIZES: [usize; 3] = [1 << 20, 1 << 22, 1 << 24];
const ROW: usize = 1024;

/// Total (iterations, elapsed) per (op, elements), gathered from criterion's timed runs.
static TIMINGS: Mutex<BTreeMap<(String, usize), (u64, Duration)>> = Mutex::new(BTreeMap::new());

struct Case {
    name: &'static str,
    /// Bytes moved per element (reads + writes, f32).
    bytes_per_element: f64,
    run: fn(&Tensor, &Tensor) -> dynlab::Result<Tensor>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "copy",
            bytes_per_element: 8.0,
            run: |x, _| x.copy(),
        },
        Case {
            name: "add",
            bytes_per_element: 12.0,
            run: |x, y| x.add(y),
        },
        Case {
            name: "exp",
            bytes_per_element: 8.0,
            run: |x, _| x.exp(),
        },
        Case {
            name: "sum_rows",
            bytes_per_element: 4.0 + 4.0 / ROW as f64,
            run: |x, _| x.sum(1, false),
        },
        Case {
            name: "softmax_rows",
            bytes_per_element: 8.0,
            run: |x, _| x.softmax(1),
        },
    ]
}

fn bench(c: &mut Criterion, device: &Device) {
    let mut rng = Rng::new(0);
    for &n in &SIZES {
        let x = Tensor::rand_normal(&[n / ROW, ROW], 0.0, 1.0, &mut rng, device).unwrap();
        let y = Tensor::rand_normal(&[n / ROW, ROW], 0.0, 1.0, &mut rng, device).unwrap();
        let mut group = c.benchmark_group(format!("elementwise/{n}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        for case in cases() {
            group.throughput(Throughput::Bytes(
                (case.bytes_per_element * n as f64) as u64,
            ));
            group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
                b.iter_custom(|iters| {
                    device.sync().unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        drop((case.run)(&x, &y).unwrap());
                    }
                    device.sync().unwrap();
                    let elapsed = start.elapsed();
                    let mut t = TIMINGS.lock().unwrap();
                    let entry = t.entry((case.name.to_string(), n)).or_default();
                    entry.0 += iters;
                    entry.1 += elapsed;
                    elapsed
                })
            });
        }
        group.finish();
    }
}

fn gbps(bytes_per_element: f64, n: usize, (iters, elapsed): (u64, Duration)) -> f64 {
    bytes_per_element * n as f64 * iters as f64 / elapsed.as_secs_f64() / 1e9
}

fn report(device: &Device) -> dynlab::Result<()> {
    let timings = TIMINGS.lock().unwrap();
    let mut csv = String::from("op,elements,gbps,copy_gbps,ratio_to_copy,device\n");
    println!(
        "\n{:<14} {:>10} {:>10} {:>11} {:>9}",
        "op", "elements", "GB/s", "copy GB/s", "ratio"
    );
    for &n in &SIZES {
        // With a criterion filter some cases did not run; the copy column is then NaN.
        let copy = timings
            .get(&("copy".to_string(), n))
            .map_or(f64::NAN, |&t| gbps(8.0, n, t));
        for case in cases() {
            let Some(&timing) = timings.get(&(case.name.to_string(), n)) else {
                continue;
            };
            let g = gbps(case.bytes_per_element, n, timing);
            println!(
                "{:<14} {:>10} {:>10.2} {:>11.2} {:>9.2}",
                case.name,
                n,
                g,
                copy,
                g / copy
            );
            csv.push_str(&format!(
                "{},{n},{g:.3},{copy:.3},{:.3},{}\n",
                case.name,
                g / copy,
                device.name()
            ));
        }
    }
    common::write_results("elementwise.csv", &csv, device)?;
    Ok(())
}

fn main() {
    let device = Device::default().expect("a compute device");
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &device);
    criterion.final_summary();
    if !TIMINGS.lock().unwrap().is_empty() {
        report(&device).expect("writing the results table");
    }
}
