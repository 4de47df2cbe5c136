//! Message passing and the connectivity study's training step.
//!
//! 1. Kernels: at `n = 1000` on the complete graph (999,000 edges, the signal model's) and on a
//!    random sparse graph of 10⁵ nodes × 10⁶ edges, with 8 features per node (a batch of 8
//!    frames): `Graph::aggregate` (segment sum of edge messages by destination), `Graph::spmm`
//!    (`A x`), `Graph::spmm_transposed` (`Aᵀ g`) and `Graph::edge_dot`, in edges/s and effective
//!    GB/s (every index, edge value and node row counted once). Peers measured in the same run:
//!    the dense product `X Wᵀ` for the complete graph, and the general `Tensor::scatter_add` (the
//!    adjoint of a gather before the segment sum, O(outputs × index length)) on a 2000-node,
//!    20,000-edge graph where it still finishes.
//! 2. The simulator: frames per second of `Tensor::signal_rollout` at n = 100 and 1000.
//! 3. The training step (`SignalTrainer::step`, batch 8) at n = 100 and n = 1000, dense and
//!    sparse messages: iterations/s and launches per iteration; `DYNLAB_CONNECTIVITY_PROFILE=1`
//!    adds the ten kernels that take the most device time.
//!
//! Timing: one warm-up call, then calls until 2 s (kernels) or 4 s (steps) have passed (at least
//! 2), synchronised at the end. `cargo bench --bench connectivity` prints the tables and writes
//! `benches/results/connectivity.csv`; `DYNLAB_CONNECTIVITY_STEPS_ONLY=1` times only the steps
//! (and writes nothing).

use dynlab::algos::connectivity::{simulate_network, ConnectivityConfig, SignalTrainer};
use dynlab::{Device, Graph, Tensor};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;
#[path = "common/profile.rs"]
mod profile;

/// Seconds per call of `f` (one warm-up, then until `budget` seconds, at least 2 calls).
fn time(
    device: &Device,
    budget: f64,
    mut f: impl FnMut() -> dynlab::Result<()>,
) -> dynlab::Result<f64> {
    f()?;
    device.sync()?;
    let start = Instant::now();
    let mut calls = 0;
    while calls < 2 || start.elapsed().as_secs_f64() < budget {
        f()?;
        calls += 1;
    }
    device.sync()?;
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

/// A random graph: `edges` edges with uniformly drawn endpoints (splitmix64).
fn random_graph(nodes: usize, edges: usize, device: &Device) -> dynlab::Result<Graph> {
    let mut state = 0x5EED_u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % nodes as u64) as usize
    };
    let (src, dst): (Vec<usize>, Vec<usize>) = (0..edges).map(|_| (next(), next())).unzip();
    Graph::new(&src, &dst, nodes, device)
}

/// A timed call.
type Timed<'a> = Box<dyn FnMut() -> dynlab::Result<()> + 'a>;

struct Row {
    case: String,
    seconds: f64,
    edges: usize,
    bytes: f64,
}

fn kernel_rows(device: &Device) -> dynlab::Result<Vec<Row>> {
    const F: usize = 8;
    let mut rows = Vec::new();
    let mut rng = dynlab::Rng::new(3);
    for (label, graph) in [
        ("complete n=1000", Graph::complete(1000, device)?),
        (
            "random 1e5 x 1e6",
            random_graph(100_000, 1_000_000, device)?,
        ),
    ] {
        let (n, e) = (graph.nodes(), graph.edges());
        let x = Tensor::rand_normal(&[n, F], 0.0, 1.0, &mut rng, device)?;
        let w = Tensor::rand_normal(&[e], 0.0, 1.0, &mut rng, device)?;
        let m = Tensor::rand_normal(&[e, F], 0.0, 1.0, &mut rng, device)?;
        // Indices (segment pointer, order, far end), values and node rows, each read or written once.
        let index_bytes = (n + 1 + 2 * e) as f64 * 4.0;
        let node_bytes = (n * F) as f64 * 4.0;
        let cases: Vec<(&str, f64, Timed)> = vec![
            (
                "aggregate",
                index_bytes - e as f64 * 4.0 + (e * F) as f64 * 4.0 + node_bytes,
                Box::new(|| graph.aggregate(&m).map(drop)),
            ),
            (
                "spmm",
                index_bytes + e as f64 * 4.0 + 2.0 * node_bytes,
                Box::new(|| graph.spmm(&w, &x).map(drop)),
            ),
            (
                "spmm_transposed",
                index_bytes + e as f64 * 4.0 + 2.0 * node_bytes,
                Box::new(|| graph.spmm_transposed(&w, &x).map(drop)),
            ),
            (
                "edge_dot",
                2.0 * e as f64 * 4.0 + 2.0 * node_bytes + e as f64 * 4.0,
                Box::new(|| graph.edge_dot(&x, &x).map(drop)),
            ),
        ];
        for (name, bytes, mut f) in cases {
            let seconds = time(device, 2.0, &mut f)?;
            rows.push(Row {
                case: format!("{name} ({label}, F {F})"),
                seconds,
                edges: e,
                bytes,
            });
        }
        if n == 1000 {
            let wd = Tensor::rand_normal(&[n, n], 0.0, 1.0, &mut rng, device)?;
            let xt = x.transpose(0, 1)?.contiguous()?;
            let seconds = time(device, 2.0, || xt.matmul(&wd.transpose(0, 1)?).map(drop))?;
            rows.push(Row {
                case: format!("peer: dense X Wᵀ ({label}, F {F})"),
                seconds,
                edges: e,
                bytes: (n * n + 2 * n * F) as f64 * 4.0,
            });
        }
    }
    let small = random_graph(2000, 20_000, device)?;
    let m = Tensor::rand_normal(&[20_000, F], 0.0, 1.0, &mut rng, device)?;
    let dst = small
        .destinations()
        .unsqueeze(1)?
        .expand(&[20_000, F])?
        .contiguous()?;
    let base = Tensor::zeros(&[2000, F], device)?;
    for (name, seconds) in [
        (
            "aggregate",
            time(device, 2.0, || small.aggregate(&m).map(drop))?,
        ),
        (
            "peer: scatter_add",
            time(device, 2.0, || base.scatter_add(0, &dst, &m).map(drop))?,
        ),
    ] {
        rows.push(Row {
            case: format!("{name} (random 2000 x 20000, F {F})"),
            seconds,
            edges: 20_000,
            bytes: (2001 + 2 * 20_000) as f64 * 4.0 + (20_000 * F + 2000 * F) as f64 * 4.0,
        });
    }
    Ok(rows)
}

/// Simulated frames per second of the signal model at `n` neurons (Euler steps on the device).
fn simulation_rate(device: &Device, n: usize) -> dynlab::Result<f64> {
    let mut rng = dynlab::Rng::new(5);
    let wt = Tensor::rand_normal(&[n, n], 0.0, 1.0 / (n as f32).sqrt(), &mut rng, device)?;
    let params = Tensor::ones(&[3, n], device)?;
    let u0 = Tensor::rand_normal(&[n], 0.0, 1.0, &mut rng, device)?;
    let steps = 200;
    let seconds = time(device, 4.0, || {
        u0.signal_rollout(&wt, &params, steps, 0.01).map(drop)
    })?;
    Ok(steps as f64 / seconds)
}

fn step_config(neurons: usize, passing: &str) -> ConnectivityConfig {
    let text = format!(
        "name = \"bench\"\n[simulation]\nneurons = {neurons}\nframes = 400\nburn_in = 100\n\
         [model]\nmessage_passing = \"{passing}\"\n[training]\niterations = 1\nlog_every = 1\n"
    );
    dynlab::harness::parse_config(&text, "bench", &[])
        .expect("bench config")
        .0
}

fn step_rate(device: &Device, neurons: usize, passing: &str) -> dynlab::Result<(f64, f64)> {
    let config = step_config(neurons, passing);
    let plan = config.plan()?;
    let truth = simulate_network(&config, &plan, device)?;
    let mut trainer = SignalTrainer::new(&config, &plan, truth.xnorm, device)?;
    trainer.step(&truth.recording)?;
    device.sync()?;
    let profile = std::env::var("DYNLAB_CONNECTIVITY_PROFILE").is_ok_and(|v| v == "1");
    device.set_profiling(profile);
    device.reset_stats();
    let start = Instant::now();
    let mut steps = 0;
    while steps < 2 || start.elapsed().as_secs_f64() < 4.0 {
        trainer.step(&truth.recording)?;
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
    let mut csv = format!("device,{}\ncase,seconds,edges_per_second,gb_per_second,iterations_per_second,launches_per_iteration\n", device.name());
    let only_steps = std::env::var("DYNLAB_CONNECTIVITY_STEPS_ONLY").is_ok_and(|v| v == "1");
    if !only_steps {
        println!(
            "{:<52} {:>10} {:>12} {:>8}",
            "kernel", "ms", "Medges/s", "GB/s"
        );
        for r in kernel_rows(&device).expect("kernel bench") {
            let (eps, gbs) = (r.edges as f64 / r.seconds, r.bytes / r.seconds / 1e9);
            println!(
                "{:<52} {:>10.3} {:>12.1} {gbs:>8.2}",
                r.case,
                r.seconds * 1e3,
                eps / 1e6
            );
            csv.push_str(&format!(
                "{},{:.6},{eps:.0},{gbs:.3},,\n",
                r.case, r.seconds
            ));
        }
    }
    for n in [100, 1000] {
        let name = format!("simulation n={n} (frames/s)");
        match simulation_rate(&device, n) {
            Ok(rate) => {
                println!("{name:<52} {rate:>10.1}");
                csv.push_str(&format!("{name},,,,{rate:.1},2.0\n"));
            }
            Err(e) => println!("{name:<52} error: {e}"),
        }
    }
    println!(
        "{:<52} {:>10} {:>16}",
        "training step (batch 8)", "iters/s", "launches/iter"
    );
    for (neurons, passing) in [(100, "dense"), (1000, "dense"), (1000, "sparse")] {
        let name = format!("signal step n={neurons} {passing}");
        match step_rate(&device, neurons, passing) {
            Ok((rate, launches)) => {
                println!("{name:<52} {rate:>10.2} {launches:>16.1}");
                csv.push_str(&format!("{name},,,,{rate:.3},{launches:.1}\n"));
            }
            Err(e) => println!("{name:<52} error: {e}"),
        }
    }
    if only_steps {
        println!("(DYNLAB_CONNECTIVITY_STEPS_ONLY=1: results not written)");
    } else {
        common::write_results("connectivity.csv", &csv, &device).expect("results written");
    }
}
