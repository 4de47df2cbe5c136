//! Causal multi-head attention, dynlab's fused (flash) kernels next to Burn 0.22's attention (wgpu)
//! on the same device in one process: batch 32, 4 heads, head dim 32 and 64, sequence 64/256/512,
//! forward and forward + backward (loss `Σ out`, gradients for q, k, v). Each side is warmed up
//! (compilation) and timed by criterion; the table gives milliseconds per call and the ratio
//! Burn time / dynlab time (> 1: dynlab faster), written to `benches/results/attention.csv`.

use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device as BurnDevice, Distribution, Tensor as BurnTensor};
use criterion::Criterion;
use dynlab::{Device, Rng, Tensor, Var};
use dynlab_peers::{bench_pair, run, write_result, Timings};

const BATCH: usize = 32;
const HEADS: usize = 4;
/// (head dim, sequence length).
const SHAPES: &[(usize, usize)] = &[(32, 64), (32, 256), (32, 512), (64, 64), (64, 256), (64, 512)];
const PASSES: [&str; 2] = ["forward", "forward+backward"];

static TIMINGS: Timings = Timings::new();

fn bench(c: &mut Criterion, device: &Device, burn_device: &BurnDevice) {
    let mut rng = Rng::new(0);
    for (index, &(d, t)) in SHAPES.iter().enumerate() {
        let shape = [BATCH, HEADS, t, d];
        let [q, k, v] = [0; 3].map(|_| Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng, device).unwrap());
        let ours_forward = || drop(q.flash_attention(&k, &v, true, None).unwrap());
        let ours_backward = || {
            let [qv, kv, vv] = [&q, &k, &v].map(|x| Var::param(x.clone()));
            let grads = qv.flash_attention(&kv, &vv, true, None).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(grads.tensor(&qv).is_some() && grads.tensor(&kv).is_some());
        };
        let [bq, bk, bv] = [0; 3].map(|_| BurnTensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), burn_device));
        let options = AttentionModuleOptions { is_causal: true, ..Default::default() };
        let burn_forward = || drop(burn_attention(bq.clone(), bk.clone(), bv.clone(), None, None, options));
        let burn_backward = || {
            let [q, k, v] = [&bq, &bk, &bv].map(|x| x.clone().require_grad());
            let grads = burn_attention(q.clone(), k.clone(), v, None, None, options).sum().backward();
            assert!(q.grad(&grads).is_some() && k.grad(&grads).is_some());
        };
        for pass in PASSES {
            let (ours, burn): (&dyn Fn(), &dyn Fn()) =
                if pass == "forward" { (&ours_forward, &burn_forward) } else { (&ours_backward, &burn_backward) };
            let group = format!("attention/d{d} t{t}/{pass}");
            bench_pair(c, &TIMINGS, &group, index, pass, ours, burn, (device, burn_device));
        }
    }
}

fn report(device: &Device) -> std::io::Result<()> {
    let mut csv = String::from("shape,pass,dynlab_ms,burn_ms,ratio,device\n");
    println!("\n{:<26} {:<17} {:>10} {:>10} {:>14}", "shape", "pass", "dynlab ms", "burn ms", "burn/dynlab");
    for (index, &(d, seq)) in SHAPES.iter().enumerate() {
        let label = format!("b{BATCH} h{HEADS} d{d} t{seq} causal");
        for pass in PASSES {
            let ms = |who| TIMINGS.seconds((index, pass, who)) * 1e3;
            let (ours, burn) = (ms("dynlab"), ms("burn"));
            if ours.is_nan() && burn.is_nan() {
                continue;
            }
            println!("{label:<26} {pass:<17} {ours:>10.2} {burn:>10.2} {:>14.2}", burn / ours);
            csv.push_str(&format!("{label},{pass},{ours:.3},{burn:.3},{:.3},{}\n", burn / ours, device.name()));
        }
    }
    write_result("attention.csv", &csv, device)
}

fn main() {
    run(true, bench, report);
}
