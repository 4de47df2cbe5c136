//! conv2d throughput, dynlab next to Burn 0.22 (wgpu) on the same device in one process, forward
//! and forward + backward (loss `Σ y`, gradients for input, weight and bias).
//!
//! Shapes: the three convolutions of a CIFAR ConvNet at batch 128 (3→32 5×5 on 32×32, 32→64 3×3 on
//! 16×16, 64→128 3×3 on 8×8) and two ResNet-18 block convolutions at batch 32 (64→64 3×3 on 32×32;
//! 64→128 3×3 stride 2). Each side is warmed up (tuning, compilation) and timed by criterion; the
//! table gives GFLOP/s (`2·N·C_out·H_out·W_out·C_in/groups·k_h·k_w` per forward, 3× that for forward +
//! backward) and the ratio dynlab / Burn, written to `benches/results/conv.csv`.

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device as BurnDevice, Distribution, Tensor as BurnTensor};
use criterion::Criterion;
use dynlab::runtime::Conv2dOptions;
use dynlab::{Device, Rng, Tensor, Var};
use dynlab_peers::{bench_pair, run, write_result, Timings};

struct Shape {
    label: &'static str,
    /// N, C_in, H, W.
    x: [usize; 4],
    /// C_out, k.
    out: usize,
    k: usize,
    stride: usize,
    padding: usize,
}

const SHAPES: &[Shape] = &[
    Shape { label: "cifar 3->32 5x5 32x32 b128", x: [128, 3, 32, 32], out: 32, k: 5, stride: 1, padding: 2 },
    Shape { label: "cifar 32->64 3x3 16x16 b128", x: [128, 32, 16, 16], out: 64, k: 3, stride: 1, padding: 1 },
    Shape { label: "cifar 64->128 3x3 8x8 b128", x: [128, 64, 8, 8], out: 128, k: 3, stride: 1, padding: 1 },
    Shape { label: "resnet 64->64 3x3 32x32 b32", x: [32, 64, 32, 32], out: 64, k: 3, stride: 1, padding: 1 },
    Shape { label: "resnet 64->128 3x3 s2 32x32 b32", x: [32, 64, 32, 32], out: 128, k: 3, stride: 2, padding: 1 },
];

const PASSES: [&str; 2] = ["forward", "forward+backward"];

static TIMINGS: Timings = Timings::new();

fn forward_flops(s: &Shape) -> f64 {
    let out_hw = |n: usize| (n + 2 * s.padding - s.k) / s.stride + 1;
    (2 * s.x[0] * s.out * out_hw(s.x[2]) * out_hw(s.x[3]) * s.x[1] * s.k * s.k) as f64
}

fn bench(c: &mut Criterion, device: &Device, burn_device: &BurnDevice) {
    let mut rng = Rng::new(0);
    for (index, s) in SHAPES.iter().enumerate() {
        let w_shape = [s.out, s.x[1], s.k, s.k];
        let x = Tensor::rand_normal(&s.x, 0.0, 1.0, &mut rng, device).unwrap();
        let w = Tensor::rand_normal(&w_shape, 0.0, 0.1, &mut rng, device).unwrap();
        let b = Tensor::zeros(&[s.out], device).unwrap();
        let opts = Conv2dOptions { stride: [s.stride; 2], padding: [s.padding; 2], dilation: [1, 1], groups: 1 };
        let ours_forward = || drop(x.conv2d(&w, Some(&b), opts).unwrap());
        let ours_backward = || {
            let (xv, wv, bv) = (Var::param(x.clone()), Var::param(w.clone()), Var::param(b.clone()));
            let grads = xv.conv2d(&wv, Some(&bv), opts).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(grads.tensor(&xv).is_some() && grads.tensor(&wv).is_some());
        };
        let dist = Distribution::Normal(0.0, 1.0);
        let bx = BurnTensor::<4>::random(s.x, dist, burn_device);
        let bw = BurnTensor::<4>::random(w_shape, Distribution::Normal(0.0, 0.1), burn_device);
        let bb = BurnTensor::<1>::zeros([s.out], burn_device);
        let bopts = || ConvOptions::new([s.stride; 2], [s.padding; 2], [1, 1], 1);
        let burn_forward = || drop(burn_conv2d(bx.clone(), bw.clone(), Some(bb.clone()), bopts()));
        let burn_backward = || {
            let (x, w, b) = (bx.clone().require_grad(), bw.clone().require_grad(), bb.clone().require_grad());
            let grads = burn_conv2d(x.clone(), w.clone(), Some(b), bopts()).sum().backward();
            assert!(x.grad(&grads).is_some() && w.grad(&grads).is_some());
        };
        for pass in PASSES {
            let (ours, burn): (&dyn Fn(), &dyn Fn()) =
                if pass == "forward" { (&ours_forward, &burn_forward) } else { (&ours_backward, &burn_backward) };
            let group = format!("conv2d/{}/{pass}", s.label);
            bench_pair(c, &TIMINGS, &group, index, pass, ours, burn, (device, burn_device));
        }
    }
}

fn report(device: &Device) -> std::io::Result<()> {
    let mut csv = String::from("shape,pass,dynlab_gflops,burn_gflops,ratio,device\n");
    println!("\n{:<34} {:<17} {:>14} {:>12} {:>7}", "shape", "pass", "dynlab GFLOP/s", "burn GFLOP/s", "ratio");
    for (index, s) in SHAPES.iter().enumerate() {
        for pass in PASSES {
            let flops = forward_flops(s) * if pass == "forward" { 1.0 } else { 3.0 };
            let side = |who| flops / TIMINGS.seconds((index, pass, who)) / 1e9;
            let (ours, burn) = (side("dynlab"), side("burn"));
            if ours.is_nan() && burn.is_nan() {
                continue;
            }
            println!("{:<34} {pass:<17} {ours:>14.2} {burn:>12.2} {:>7.2}", s.label, ours / burn);
            csv.push_str(&format!("{},{pass},{ours:.3},{burn:.3},{:.3},{}\n", s.label, ours / burn, device.name()));
        }
    }
    write_result("conv.csv", &csv, device)
}

fn main() {
    run(true, bench, report);
}
