//! Matmul throughput, dynlab next to Burn 0.22 (wgpu) on the same device in one process.
//!
//! Shapes: square 128–2048, the model shapes of the plasticity and connectivity studies, a batch of
//! 64 small products and a 4096² matrix-vector product. Each side is warmed up first (dynlab's
//! per-shape tuning, Burn's kernel compilation), then timed by criterion; the table gives GFLOP/s
//! (`2·batch·M·N·K / time`) and the ratio dynlab / Burn, and is written to
//! `benches/results/matmul.csv`.

use burn::tensor::{Device as BurnDevice, Distribution, Tensor as BurnTensor};
use criterion::{BenchmarkId, Criterion, Throughput};
use dynlab::{Device, Rng, Tensor};
use dynlab_peers::{run, write_result, Timings};
use std::time::Duration;

/// (label, batch, m, k, n).
const SHAPES: &[(&str, usize, usize, usize, usize)] = &[
    ("square 128", 1, 128, 128, 128),
    ("square 256", 1, 256, 256, 256),
    ("square 512", 1, 512, 512, 512),
    ("square 1024", 1, 1024, 1024, 1024),
    ("square 2048", 1, 2048, 2048, 2048),
    ("4096x128 * 128x512", 1, 4096, 128, 512),
    ("3830x226 * 226x256", 1, 3830, 226, 256),
    ("3830x256 * 256x113", 1, 3830, 256, 113),
    ("64 x 32x32x32", 64, 32, 32, 32),
    ("matvec 4096", 1, 4096, 4096, 1),
];

static TIMINGS: Timings = Timings::new();

fn shape3(batch: usize, rows: usize, cols: usize) -> Vec<usize> {
    if batch == 1 {
        vec![rows, cols]
    } else {
        vec![batch, rows, cols]
    }
}

fn timed(index: usize, side: &'static str, iters: u64, run: impl FnMut(), sync: impl Fn()) -> Duration {
    TIMINGS.timed((index, "product", side), iters, run, sync)
}

fn bench(c: &mut Criterion, device: &Device, burn_device: &BurnDevice) {
    let mut rng = Rng::new(0);
    for (index, &(label, batch, m, k, n)) in SHAPES.iter().enumerate() {
        let a = Tensor::rand_normal(&shape3(batch, m, k), 0.0, 1.0, &mut rng, device).unwrap();
        let b = Tensor::rand_normal(&shape3(batch, k, n), 0.0, 1.0, &mut rng, device).unwrap();
        let mut group = c.benchmark_group(format!("matmul/{label}"));
        let flops = 2 * batch * m * n * k;
        group.throughput(Throughput::Elements(flops as u64));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        let dsync = || device.sync().unwrap();
        drop(a.matmul(&b).unwrap()); // tunes and compiles
        group.bench_function(BenchmarkId::from_parameter("dynlab"), |bch| {
            bch.iter_custom(|iters| timed(index, "dynlab", iters, || drop(a.matmul(&b).unwrap()), dsync))
        });
        let dist = Distribution::Normal(0.0, 1.0);
        let bsync = || burn_device.sync().unwrap();
        if batch == 1 {
            let (ba, bb) = (BurnTensor::<2>::random([m, k], dist, burn_device), BurnTensor::<2>::random([k, n], dist, burn_device));
            drop(ba.clone().matmul(bb.clone()));
            group.bench_function(BenchmarkId::from_parameter("burn"), |bch| {
                bch.iter_custom(|iters| timed(index, "burn", iters, || drop(ba.clone().matmul(bb.clone())), bsync))
            });
        } else {
            let (ba, bb) = (BurnTensor::<3>::random([batch, m, k], dist, burn_device), BurnTensor::<3>::random([batch, k, n], dist, burn_device));
            drop(ba.clone().matmul(bb.clone()));
            group.bench_function(BenchmarkId::from_parameter("burn"), |bch| {
                bch.iter_custom(|iters| timed(index, "burn", iters, || drop(ba.clone().matmul(bb.clone())), bsync))
            });
        }
        group.finish();
    }
}

fn report(device: &Device) -> std::io::Result<()> {
    let mut csv = String::from("shape,dtype,dynlab_gflops,burn_gflops,ratio,device\n");
    println!("\n{:<22} {:>8} {:>14} {:>12} {:>7}", "shape", "dtype", "dynlab GFLOP/s", "burn GFLOP/s", "ratio");
    for (index, &(label, batch, m, k, n)) in SHAPES.iter().enumerate() {
        let flops = (2 * batch * m * n * k) as f64;
        let side = |s| flops / TIMINGS.seconds((index, "product", s)) / 1e9;
        let (ours, burn) = (side("dynlab"), side("burn"));
        if ours.is_nan() && burn.is_nan() {
            continue;
        }
        println!("{label:<22} {:>8} {ours:>14.2} {burn:>12.2} {:>7.2}", "f32", ours / burn);
        csv.push_str(&format!("{label},f32,{ours:.3},{burn:.3},{:.3},{}\n", ours / burn, device.name()));
    }
    write_result("matmul.csv", &csv, device)
}

fn main() {
    run(false, bench, report);
}
