//! Forward + backward of a 4-layer ReLU MLP (batch 256, width 512, loss mean(out²)), dynlab's tape
//! next to Burn 0.22's autodiff on the same device in one process; plus the host-side cost of tape
//! bookkeeping per op (recorded ops on a 1-element tensor minus the same ops untaped).
//! Writes `benches/results/autodiff.csv`.

use burn::tensor::{activation::relu, Device as BurnDevice, DeviceKind, Distribution, Tensor as BurnTensor};
use criterion::{BenchmarkId, Criterion};
use dynlab::{Device, Rng, Tensor, Var};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BATCH: usize = 256;
const WIDTH: usize = 512;
const LAYERS: usize = 4;

static TIMINGS: Mutex<BTreeMap<&'static str, (u64, Duration)>> = Mutex::new(BTreeMap::new());

fn record(name: &'static str, iters: u64, elapsed: Duration) -> Duration {
    let mut t = TIMINGS.lock().unwrap();
    let e = t.entry(name).or_default();
    e.0 += iters;
    e.1 += elapsed;
    elapsed
}

fn dynlab_step(x: &Var, params: &[(Tensor, Tensor)]) -> dynlab::Result<()> {
    let vars: Vec<(Var, Var)> = params.iter().map(|(w, b)| (Var::param(w.clone()), Var::param(b.clone()))).collect();
    let mut h = x.clone();
    for (i, (w, b)) in vars.iter().enumerate() {
        h = h.linear(w, b)?;
        if i + 1 < LAYERS {
            h = h.relu()?;
        }
    }
    let grads = h.square()?.mean_all()?.backward()?;
    assert!(grads.get(&vars[0].0).is_some());
    Ok(())
}

fn bench(c: &mut Criterion, device: &Device, burn_device: &BurnDevice) {
    let mut rng = Rng::new(0);
    let scale = (2.0 / WIDTH as f32).sqrt();
    let x = Var::constant(Tensor::rand_normal(&[BATCH, WIDTH], 0.0, 1.0, &mut rng, device).unwrap());
    let params: Vec<(Tensor, Tensor)> = (0..LAYERS)
        .map(|_| (Tensor::rand_normal(&[WIDTH, WIDTH], 0.0, scale, &mut rng, device).unwrap(), Tensor::zeros(&[WIDTH], device).unwrap()))
        .collect();
    let dist = Distribution::Normal(0.0, scale as f64);
    let bx = BurnTensor::<2>::random([BATCH, WIDTH], Distribution::Normal(0.0, 1.0), burn_device);
    let bparams: Vec<(BurnTensor<2>, BurnTensor<1>)> = (0..LAYERS)
        .map(|_| (BurnTensor::<2>::random([WIDTH, WIDTH], dist, burn_device), BurnTensor::<1>::zeros([WIDTH], burn_device)))
        .collect();
    let burn_step = || {
        let ps: Vec<_> = bparams.iter().map(|(w, b)| (w.clone().require_grad(), b.clone().require_grad())).collect();
        let mut h = bx.clone();
        for (i, (w, b)) in ps.iter().enumerate() {
            h = h.matmul(w.clone()) + b.clone().unsqueeze::<2>();
            if i + 1 < LAYERS {
                h = relu(h);
            }
        }
        let grads = (h.clone() * h).mean().backward();
        assert!(ps[0].0.grad(&grads).is_some());
    };
    dynlab_step(&x, &params).unwrap();
    burn_step();
    let mut group = c.benchmark_group("mlp forward+backward");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::from_parameter("dynlab"), |b| {
        b.iter_custom(|iters| {
            device.sync().unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                dynlab_step(&x, &params).unwrap();
            }
            device.sync().unwrap();
            record("dynlab", iters, start.elapsed())
        })
    });
    group.bench_function(BenchmarkId::from_parameter("burn"), |b| {
        b.iter_custom(|iters| {
            burn_device.sync().unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                burn_step();
            }
            burn_device.sync().unwrap();
            record("burn", iters, start.elapsed())
        })
    });
    group.finish();
}

/// Time per op of a chain of cheap ops on one element: untaped (forward chain plus an equal
/// chain standing in for the backward launches) and taped (forward recorded, then the backward
/// sweep). Their difference is the tape's host-side bookkeeping per op.
fn per_op_times(device: &Device) -> (Duration, Duration) {
    let ops = 200;
    let t = Tensor::ones(&[1], device).unwrap();
    let time = |f: &dyn Fn()| {
        f();
        device.sync().unwrap();
        let start = Instant::now();
        for _ in 0..20 {
            f();
        }
        device.sync().unwrap();
        start.elapsed() / 20
    };
    let eager = time(&|| {
        let mut x = t.clone();
        for _ in 0..ops {
            x = x.mul_scalar(1.0001).unwrap();
        }
        // The backward sweep runs one op per recorded op as well.
        for _ in 0..ops {
            x = x.mul_scalar(1.0001).unwrap();
        }
    });
    let taped = time(&|| {
        let p = Var::param(t.clone());
        let mut x = p.clone();
        for _ in 0..ops {
            x = x.mul_scalar(1.0001).unwrap();
        }
        x.sum_all().unwrap().backward().unwrap();
    });
    (eager / (2 * ops) as u32, taped / (2 * ops) as u32)
}

fn report(device: &Device, (eager, taped): (Duration, Duration)) -> std::io::Result<()> {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let overhead = us(taped) - us(eager);
    let t = TIMINGS.lock().unwrap();
    let ms = |name| t.get(name).map_or(f64::NAN, |&(n, d): &(u64, Duration)| d.as_secs_f64() * 1e3 / n as f64);
    let (ours, burn) = (ms("dynlab"), ms("burn"));
    println!("\n4-layer MLP {BATCH}x{WIDTH} forward+backward: dynlab {ours:.1} ms, burn {burn:.1} ms, dynlab/burn time {:.2}", ours / burn);
    println!("per op on 1 element: untaped {:.1} us, taped (forward + backward) {:.1} us: bookkeeping {overhead:.1} us", us(eager), us(taped));
    let csv = format!(
        "case,dynlab_ms,burn_ms,time_ratio,untaped_us_per_op,taped_us_per_op,bookkeeping_us_per_op,device\nmlp4_b{BATCH}_w{WIDTH},{ours:.3},{burn:.3},{:.3},{:.2},{:.2},{overhead:.2},{}\n",
        ours / burn,
        us(eager),
        us(taped),
        device.name()
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("autodiff.csv.tmp");
    std::fs::File::create(&tmp)?.write_all(csv.as_bytes())?;
    std::fs::rename(&tmp, dir.join("autodiff.csv"))?;
    println!("wrote benches/results/autodiff.csv");
    Ok(())
}

fn main() {
    let device = Device::default().expect("a compute device");
    let burn_device = BurnDevice::wgpu(DeviceKind::DefaultDevice).autodiff();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &device, &burn_device);
    criterion.final_summary();
    report(&device, per_op_times(&device)).expect("writing the results table");
}
