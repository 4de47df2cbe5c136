//! Generate-and-test against a plain host implementation of `lop/algos/gnt.py`'s bookkeeping (in
//! f64): the unit-statistics kernel for every utility, dense and convolution views and replicas;
//! the replacement count and choice; and whole steps of the hook on a small MLP trained with Adam
//! (utilities, which units are replaced, the replaced units' weights, the bias transfer, and Adam's
//! state zeroed exactly for them).

use dynlab::algos::continual::gnt::{
    lowest_utility_units, replacement_count, FreshInit, GenerateAndTest, GntConfig, LayerUnits,
};
use dynlab::data::HostRng as Coin;
use dynlab::models::{Activation, ConvNet, ConvNetShape, Init, Mlp, Module};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup, ParamState};
use dynlab::runtime::{UnitLayout, UnitStats, UnitUtility, WeightView};
use dynlab::train::{Batch, Mse, Trainer};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, HostRng};

const UTILITIES: [UnitUtility; 6] = [
    UnitUtility::Weight,
    UnitUtility::Contribution,
    UnitUtility::ZeroContribution,
    UnitUtility::AdaptableContribution,
    UnitUtility::FeatureByInput,
    UnitUtility::Adaptation,
];

/// The host statistics of one layer (f64).
#[derive(Clone, Debug)]
struct HostStats {
    util: Vec<f64>,
    mean: Vec<f64>,
    ages: Vec<f64>,
}

/// One step of `gnt.py`'s `update_utility` for unit `j`, given the mean feature `mean_h`, the mean
/// deviation function `dev(centre)`, and the mean input and output weight magnitudes.
#[allow(clippy::too_many_arguments)]
fn host_unit_step(
    s: &mut HostStats,
    j: usize,
    mean_h: f64,
    dev: &dyn Fn(f64) -> f64,
    in_mag: f64,
    out_mag: f64,
    decay: f64,
    utility: UnitUtility,
) {
    s.ages[j] += 1.0;
    s.mean[j] = decay * s.mean[j] + (1.0 - decay) * mean_h;
    let f_hat = s.mean[j] / (1.0 - decay.powf(s.ages[j]));
    let new = match utility {
        UnitUtility::Weight => out_mag,
        UnitUtility::Contribution => out_mag * dev(0.0),
        UnitUtility::ZeroContribution => out_mag * dev(f_hat),
        UnitUtility::AdaptableContribution => out_mag * dev(f_hat) / in_mag,
        UnitUtility::FeatureByInput => dev(f_hat) / in_mag,
        UnitUtility::Adaptation => 1.0 / in_mag,
    };
    s.util[j] = decay * s.util[j] + (1.0 - decay) * new;
}

fn upload(stats: &HostStats, shape: &[usize]) -> UnitStats {
    let t = |v: &[f64]| {
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(v, shape, &device()).unwrap()
    };
    UnitStats {
        util: t(&stats.util),
        mean_act: t(&stats.mean),
        ages: t(&stats.ages),
    }
}

fn assert_stats(got: &UnitStats, want: &HostStats, what: &str) {
    for (name, t, w) in [
        ("util", &got.util, &want.util),
        ("mean_act", &got.mean_act, &want.mean),
        ("ages", &got.ages, &want.ages),
    ] {
        let g = t.to_vec::<f32>().unwrap();
        assert_eq!(g.len(), w.len(), "{what} {name}");
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            let tol = 1e-5 * (1.0 + b.abs());
            assert!(
                a.is_finite() && (f64::from(a) - b).abs() <= tol,
                "{what} {name}[{i}]: device {a}, host {b}"
            );
        }
    }
}

fn host_stats(count: usize, rng: &mut HostRng) -> HostStats {
    HostStats {
        util: (0..count)
            .map(|_| f64::from(rng.uniform(0.0, 1.0)))
            .collect(),
        mean: (0..count)
            .map(|_| f64::from(rng.uniform(-0.5, 0.5)))
            .collect(),
        ages: (0..count)
            .map(|_| f64::from(rng.uniform(0.0, 5.0)).floor())
            .collect(),
    }
}

/// Dense layers with stacked replicas: features `[R, N, n]`, `w_in [R, in, n]`, `w_out [R, n, o]`.
#[device_test]
fn unit_statistics_of_dense_replicas_match_the_host() {
    let (r, batch, inputs, n, outputs) = (2, 3, 4, 5, 3);
    let mut rng = HostRng::new(11);
    let h = random(&mut rng, &[r, batch, n]);
    let w_in = random(&mut rng, &[r, inputs, n]);
    let w_out = random(&mut rng, &[r, n, outputs]);
    let decay = 0.9;
    for utility in UTILITIES {
        let mut want = host_stats(r * n, &mut rng);
        let mut stats = upload(&want, &[r, n]);
        for rep in 0..r {
            for j in 0..n {
                let feature = |b: usize| f64::from(h.1[(rep * batch + b) * n + j]);
                let mean_h = (0..batch).map(feature).sum::<f64>() / batch as f64;
                let dev =
                    |c: f64| (0..batch).map(|b| (feature(b) - c).abs()).sum::<f64>() / batch as f64;
                let in_mag = (0..inputs)
                    .map(|i| f64::from(w_in.1[(rep * inputs + i) * n + j]).abs())
                    .sum::<f64>()
                    / inputs as f64;
                let out_mag = (0..outputs)
                    .map(|o| f64::from(w_out.1[(rep * n + j) * outputs + o]).abs())
                    .sum::<f64>()
                    / outputs as f64;
                host_unit_step(
                    &mut want,
                    rep * n + j,
                    mean_h,
                    &dev,
                    in_mag,
                    out_mag,
                    decay,
                    utility,
                );
            }
        }
        let layout = UnitLayout {
            replicas: r,
            units: n,
            spatial: 1,
        };
        let in_view = WeightView {
            replica_stride: (inputs * n) as u32,
            unit_stride: 1,
            outer: inputs as u32,
            outer_stride: n as u32,
            inner: 1,
            inner_stride: 1,
        };
        let out_view = WeightView {
            replica_stride: (n * outputs) as u32,
            unit_stride: outputs as u32,
            outer: outputs as u32,
            outer_stride: 1,
            inner: 1,
            inner_stride: 1,
        };
        h.0.unit_utility_step(
            layout,
            (&w_in.0, in_view),
            (&w_out.0, out_view),
            &mut stats,
            decay as f32,
            utility,
        )
        .unwrap();
        assert_stats(&stats, &want, &format!("{utility:?}"));
    }
}

/// A convolution's channels followed by another convolution: features `[N, C, H, W]`, filters
/// `w_in [C, Cin, k, k]` and `w_out [O, C, k, k]` (means over batch and pixels, over each
/// channel's filter, and over the next layer's filters' slices of the channel).
#[device_test]
fn unit_statistics_of_convolution_channels_match_the_host() {
    let (batch, c, hw, cin, kk, o) = (2, 3, 4, 2, 4, 5);
    let mut rng = HostRng::new(12);
    let h = random(&mut rng, &[batch, c, 2, 2]);
    let w_in = random(&mut rng, &[c, cin, 2, 2]);
    let w_out = random(&mut rng, &[o, c, 2, 2]);
    let decay = 0.99;
    let utility = UnitUtility::AdaptableContribution;
    let mut want = host_stats(c, &mut rng);
    let mut stats = upload(&want, &[c]);
    for j in 0..c {
        let values: Vec<f64> = (0..batch)
            .flat_map(|b| (0..hw).map(move |s| (b * c + j) * hw + s))
            .map(|i| f64::from(h.1[i]))
            .collect();
        let mean_h = values.iter().sum::<f64>() / values.len() as f64;
        let dev =
            |ctr: f64| values.iter().map(|v| (v - ctr).abs()).sum::<f64>() / values.len() as f64;
        let in_mag = (0..cin * kk)
            .map(|k| f64::from(w_in.1[j * cin * kk + k]).abs())
            .sum::<f64>()
            / (cin * kk) as f64;
        let out_mag = (0..o)
            .flat_map(|oo| (0..kk).map(move |k| (oo * c + j) * kk + k))
            .map(|i| f64::from(w_out.1[i]).abs())
            .sum::<f64>()
            / (o * kk) as f64;
        host_unit_step(&mut want, j, mean_h, &dev, in_mag, out_mag, decay, utility);
    }
    let layout = UnitLayout {
        replicas: 1,
        units: c,
        spatial: hw,
    };
    let in_view = WeightView {
        replica_stride: 0,
        unit_stride: (cin * kk) as u32,
        outer: (cin * kk) as u32,
        outer_stride: 1,
        inner: 1,
        inner_stride: 1,
    };
    let out_view = WeightView {
        replica_stride: 0,
        unit_stride: kk as u32,
        outer: o as u32,
        outer_stride: (c * kk) as u32,
        inner: kk as u32,
        inner_stride: 1,
    };
    h.0.unit_utility_step(
        layout,
        (&w_in.0, in_view),
        (&w_out.0, out_view),
        &mut stats,
        decay as f32,
        utility,
    )
    .unwrap();
    assert_stats(&stats, &want, "conv");
}

#[device_test]
fn unit_statistics_reject_bad_sizes_and_views() {
    let d = device();
    let h = Tensor::zeros(&[2, 5], &d).unwrap();
    let w_in = Tensor::zeros(&[3, 5], &d).unwrap();
    let w_out = Tensor::zeros(&[5, 2], &d).unwrap();
    let zeros = || Tensor::zeros(&[5], &d).unwrap();
    let mut stats = UnitStats {
        util: zeros(),
        mean_act: zeros(),
        ages: zeros(),
    };
    let view = |stride: u32, outer: u32| WeightView {
        replica_stride: 0,
        unit_stride: 1,
        outer,
        outer_stride: stride,
        inner: 1,
        inner_stride: 1,
    };
    let layout = |units| UnitLayout {
        replicas: 1,
        units,
        spatial: 1,
    };
    let run = |layout, in_view, stats: &mut UnitStats, decay| {
        h.unit_utility_step(
            layout,
            (&w_in, in_view),
            (&w_out, view(1, 2)),
            stats,
            decay,
            UnitUtility::Contribution,
        )
    };
    let e = run(layout(4), view(5, 3), &mut stats, 0.9)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unit_utility_step") && e.contains("features"),
        "{e}"
    );
    let e = run(layout(5), view(5, 4), &mut stats, 0.9)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input weights"), "{e}");
    let e = run(layout(5), view(5, 3), &mut stats, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("decay"), "{e}");
    run(layout(5), view(5, 3), &mut stats, 0.9).unwrap();
    assert_eq!(stats.ages.to_vec::<f32>().unwrap(), vec![1.0; 5]);
}

#[test]
fn replacement_counts_follow_the_reference() {
    let mut coin = Coin::new(3);
    // Accumulating: 0.3 per step over 10 eligible units is 3 per step; 0.05 is one every other step.
    let mut owed = 0.0;
    assert_eq!(replacement_count(10, 0.3, true, &mut owed, &mut coin), 3);
    let counts: Vec<usize> = (0..6)
        .map(|_| replacement_count(10, 0.05, true, &mut owed, &mut coin))
        .collect();
    assert_eq!(counts, vec![0, 1, 0, 1, 0, 1]);
    // No eligible units or a zero rate: nothing, and nothing owed.
    let mut owed = 0.0;
    assert_eq!(replacement_count(0, 0.5, true, &mut owed, &mut coin), 0);
    assert_eq!(replacement_count(10, 0.0, true, &mut owed, &mut coin), 0);
    assert_eq!(owed, 0.0);
    // Probabilistic: ⌊ρ n⌋ when ρ n ≥ 1, else one with probability ρ n.
    let mut owed = 0.0;
    assert_eq!(replacement_count(10, 0.25, false, &mut owed, &mut coin), 2);
    let draws = 20_000;
    let hits: usize = (0..draws)
        .map(|_| replacement_count(10, 0.02, false, &mut owed, &mut coin))
        .sum();
    let rate = hits as f64 / draws as f64;
    assert!(
        (rate - 0.2).abs() < 0.02,
        "replaced on {rate} of steps, expected 0.2"
    );
}

#[test]
fn the_lowest_utility_eligible_units_are_chosen() {
    let utility = [0.5, 0.1, 0.3, 0.1, 0.0, 0.2];
    let ages = [5, 5, 5, 5, 2, 5];
    // Unit 4 is the lowest but too young; ties go to the lower index.
    assert_eq!(lowest_utility_units(&utility, &ages, 3, 3), vec![1, 3, 5]);
    assert_eq!(
        lowest_utility_units(&utility, &ages, 3, 0),
        Vec::<usize>::new()
    );
    assert_eq!(
        lowest_utility_units(&utility, &ages, 10, 2),
        Vec::<usize>::new()
    );
}

/// A uniform tensor on `[-1, 1)` and its values.
fn random(rng: &mut HostRng, shape: &[usize]) -> (Tensor, Vec<f32>) {
    let data = rng.vec(shape.iter().product(), -1.0, 1.0);
    (Tensor::from_slice(&data, shape, &device()).unwrap(), data)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn param_values(model: &dyn Module, name: &str) -> Vec<f32> {
    let params = model.params();
    let (_, p) = params.iter().find(|(n, _)| n == name).unwrap();
    values(p.value())
}

fn adam_slots(optimizer: &Optimizer, name: &str) -> Vec<Vec<f32>> {
    match optimizer.state(name) {
        Some(ParamState::Adam(_)) => optimizer
            .state(name)
            .unwrap()
            .slots()
            .into_iter()
            .map(|(_, t)| values(t))
            .collect(),
        other => panic!("no Adam state for {name}: {other:?}"),
    }
}

/// Whole steps of the hook on a 3 → 6 → 2 MLP trained with Adam (per-element steps): after each
/// step, the statistics equal the host's, the replaced units are the host's choice, their output
/// weights and input bias are 0, their input weights are fresh draws within the bound, the next
/// bias moved by `Σ W_next[i, :] f̂_i`, every other weight is untouched, and Adam's moments and step
/// counts are zero exactly at the replaced units' entries.
#[device_test]
fn generate_and_test_steps_match_the_host() {
    let d = device();
    let (inputs, n, outputs, batch) = (3, 6, 2, 4);
    let mut rng = Rng::new(5);
    let model = Mlp::new(
        &[inputs, n, outputs],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &d,
    )
    .unwrap();
    let adam = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: false,
    };
    let optimizer = Optimizer::new(adam, ParamGroup::all(0.0))
        .unwrap()
        .with_element_steps()
        .unwrap();
    let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(0.01), Mse);
    let config = GntConfig {
        replacement_rate: 0.2,
        decay: 0.9,
        maturity: 2,
        utility: UnitUtility::AdaptableContribution,
        accumulate: true,
        bias_transfer: true,
        rank_restoring: None,
        init: FreshInit::Kaiming { gain: 2f32.sqrt() },
        seed: 9,
    };
    let bound = config.init.bound(inputs, n);
    let mut gnt = GenerateAndTest::new(config, LayerUnits::stack(1)).unwrap();
    let mut host = HostStats {
        util: vec![0.0; n],
        mean: vec![0.0; n],
        ages: vec![0.0; n],
    };
    let mut owed = 0.0;
    let mut coin = Coin::new(0);
    let mut hrng = HostRng::new(21);
    let mut replaced_total = 0;
    for step in 0..10 {
        let batch_data = Batch {
            inputs: random(&mut hrng, &[batch, inputs]).0,
            targets: random(&mut hrng, &[batch, outputs]).0,
        };
        trainer.step(&batch_data, &mut rng).unwrap();
        // Features: a ReLU-like pattern with unit 0 dead.
        let mut feats = random(&mut hrng, &[batch, n]).1;
        for (i, v) in feats.iter_mut().enumerate() {
            *v = if i % n == 0 { 0.0 } else { v.abs() };
        }
        let h = Tensor::from_vec(feats.clone(), &[batch, n], &d).unwrap();
        let model = &trainer.model;
        let (w_in, b_in) = (
            param_values(model, "layers.0.weight"),
            param_values(model, "layers.0.bias"),
        );
        let (w_out, b_out) = (
            param_values(model, "layers.1.weight"),
            param_values(model, "layers.1.bias"),
        );
        let slots: Vec<Vec<Vec<f32>>> = ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
            .iter()
            .map(|name| adam_slots(&trainer.optimizer, name))
            .collect();
        // Host: statistics, count and choice.
        for j in 0..n {
            let f = |b: usize| f64::from(feats[b * n + j]);
            let mean_h = (0..batch).map(f).sum::<f64>() / batch as f64;
            let dev = |c: f64| (0..batch).map(|b| (f(b) - c).abs()).sum::<f64>() / batch as f64;
            let in_mag = (0..inputs)
                .map(|i| f64::from(w_in[i * n + j]).abs())
                .sum::<f64>()
                / inputs as f64;
            let out_mag = (0..outputs)
                .map(|o| f64::from(w_out[j * outputs + o]).abs())
                .sum::<f64>()
                / outputs as f64;
            host_unit_step(
                &mut host,
                j,
                mean_h,
                &dev,
                in_mag,
                out_mag,
                0.9,
                config.utility,
            );
        }
        let ages: Vec<u64> = host.ages.iter().map(|&a| a as u64).collect();
        let eligible = ages.iter().filter(|&&a| a > config.maturity).count();
        let count = replacement_count(
            eligible,
            config.replacement_rate,
            true,
            &mut owed,
            &mut coin,
        );
        let corrected: Vec<f32> = (0..n)
            .map(|j| (host.util[j] / (1.0 - 0.9f64.powf(host.ages[j]))) as f32)
            .collect();
        let chosen = lowest_utility_units(&corrected, &ages, config.maturity, count);
        let f_hat: Vec<f64> = (0..n)
            .map(|j| host.mean[j] / (1.0 - 0.9f64.powf(host.ages[j])))
            .collect();

        let forward_features = move |_: &str| Ok(h.clone());
        gnt.generate_and_test(
            &mut trainer.model,
            &mut trainer.optimizer,
            &forward_features,
        )
        .unwrap();

        let stats = gnt.stats(0).unwrap();
        let device_util = values(&stats.util);
        for &j in &chosen {
            host.util[j] = 0.0;
            host.mean[j] = 0.0;
            host.ages[j] = 0.0;
        }
        assert_stats(stats, &host, &format!("step {step}"));
        assert!(device_util.iter().all(|v| v.is_finite()));
        let got: Vec<usize> = (0..n).filter(|&j| gnt.ages(0)[j] == 0).collect();
        assert_eq!(got, chosen, "step {step}: replaced units");
        replaced_total += chosen.len();

        let model = &trainer.model;
        let (w_in2, b_in2) = (
            param_values(model, "layers.0.weight"),
            param_values(model, "layers.0.bias"),
        );
        let (w_out2, b_out2) = (
            param_values(model, "layers.1.weight"),
            param_values(model, "layers.1.bias"),
        );
        for i in 0..inputs {
            for j in 0..n {
                let (old, new) = (w_in[i * n + j], w_in2[i * n + j]);
                match chosen.contains(&j) {
                    true => assert!(
                        new.abs() <= bound && new != old,
                        "fresh w_in[{i},{j}] = {new}"
                    ),
                    false => assert_eq!(new, old, "w_in[{i},{j}] untouched"),
                }
            }
        }
        for j in 0..n {
            let replaced = chosen.contains(&j);
            assert_eq!(b_in2[j], if replaced { 0.0 } else { b_in[j] }, "b_in[{j}]");
            for o in 0..outputs {
                let want = if replaced {
                    0.0
                } else {
                    w_out[j * outputs + o]
                };
                assert_eq!(w_out2[j * outputs + o], want, "w_out[{j},{o}]");
            }
        }
        for o in 0..outputs {
            let shift: f64 = chosen
                .iter()
                .map(|&j| f64::from(w_out[j * outputs + o]) * f_hat[j])
                .sum();
            let want = f64::from(b_out[o]) + shift;
            assert!(
                (f64::from(b_out2[o]) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "b_out[{o}]: {} vs {want}",
                b_out2[o]
            );
        }
        // Adam's state: zero at the replaced units' entries, unchanged elsewhere.
        let hit = |name: &str, k: usize| -> bool {
            match name {
                "layers.0.weight" => chosen.contains(&(k % n)),
                "layers.0.bias" => chosen.contains(&k),
                _ => chosen.contains(&(k / outputs)),
            }
        };
        for (p, name) in ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
            .iter()
            .enumerate()
        {
            let after = adam_slots(&trainer.optimizer, name);
            for (slot, (before, after)) in slots[p].iter().zip(&after).enumerate() {
                for k in 0..before.len() {
                    let want = if hit(name, k) { 0.0 } else { before[k] };
                    assert_eq!(after[k], want, "{name} slot {slot} entry {k}");
                }
            }
        }
    }
    assert!(
        replaced_total >= 3,
        "only {replaced_total} replacements in 10 steps"
    );
    assert_eq!(gnt.replaced(0), vec![replaced_total as u64]);
}

/// Per-replica rates: a replica with rate 0 never replaces (and trains as backprop alone).
#[device_test]
fn replicas_replace_at_their_own_rates() {
    let d = device();
    let mut rng = Rng::new(2);
    let nets = (0..2)
        .map(|_| {
            Mlp::new(
                &[3, 8, 1],
                Activation::Relu,
                Init::KaimingUniform,
                true,
                &mut rng,
                &d,
            )
            .unwrap()
        })
        .collect();
    let mut model = dynlab::models::Replicas::stack(nets).unwrap();
    let sgd = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let mut optimizer = Optimizer::new(sgd, ParamGroup::all(0.0)).unwrap();
    let config = GntConfig {
        replacement_rate: 0.0,
        decay: 0.99,
        maturity: 1,
        utility: UnitUtility::Contribution,
        accumulate: true,
        bias_transfer: true,
        rank_restoring: None,
        init: FreshInit::Default,
        seed: 1,
    };
    let mut gnt = GenerateAndTest::new(config, LayerUnits::stack(1))
        .unwrap()
        .with_replica_rates(vec![0.0, 0.25])
        .unwrap();
    let mut hrng = HostRng::new(4);
    let before = values(model.params()[0].1.value());
    for _ in 0..6 {
        let h = random(&mut hrng, &[2, 5, 8]).0.abs().unwrap();
        gnt.generate_and_test(&mut model, &mut optimizer, &|_| Ok(h.clone()))
            .unwrap();
    }
    let replaced = gnt.replaced(0);
    assert_eq!(replaced[0], 0);
    assert!(replaced[1] >= 4, "replica 1 replaced {}", replaced[1]);
    let after = values(model.params()[0].1.value());
    let half = before.len() / 2;
    assert_eq!(
        before[..half],
        after[..half],
        "replica 0's input weights untouched"
    );
    assert_ne!(
        before[half..],
        after[half..],
        "replica 1's input weights redrawn"
    );
    let e = GenerateAndTest::new(config, LayerUnits::stack(1))
        .unwrap()
        .with_replica_rates(vec![0.1])
        .unwrap()
        .generate_and_test(&mut model, &mut optimizer, &|_| {
            Tensor::zeros(&[2, 5, 8], &d)
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("one per replica"), "{e}");
}

/// Convolution units (`convGnT.py`): conv2 → conv3 (the next layer's input-channel slices) and
/// conv3 → fc1 after flattening (the unit's `S` rows), each alone, one step with maturity 0 on a small ConvNet
/// trained with Adam. The replaced channels are the host's choice by utility (`Weight`: the mean
/// magnitude of the next layer's slice, checking the output view; `Adaptation`: `1 / mean|w_in|`,
/// checking the input view); their filters are fresh within the fan-in bound, their biases 0, their
/// slices of the next layer 0, the next bias corrected by `f̂_j Σ W_next` over the slice, and Adam's
/// state zeroed exactly there.
#[device_test]
fn convolution_units_are_replaced_in_filter_banks_and_flattened_rows() {
    let d = device();
    for (utility, l) in [UnitUtility::Weight, UnitUtility::Adaptation]
        .into_iter()
        .flat_map(|u| [(u, 0), (u, 1)])
    {
        let mut rng = Rng::new(7);
        let shape = ConvNetShape {
            channels: [1, 3, 4, 5],
            image: [32, 32],
            hidden: [6, 5],
            classes: 3,
        };
        let model = ConvNet::new(shape, Activation::Relu, &mut rng, &d).unwrap();
        let adam = Method::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        };
        let optimizer = Optimizer::new(adam, ParamGroup::all(0.0))
            .unwrap()
            .with_element_steps()
            .unwrap();
        let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(0.01), Mse);
        let mut hrng = HostRng::new(3);
        let batch = Batch {
            inputs: random(&mut hrng, &[2, 1, 32, 32]).0,
            targets: random(&mut hrng, &[2, 3]).0,
        };
        trainer.step(&batch, &mut rng).unwrap();
        let config = GntConfig {
            replacement_rate: 0.5,
            decay: 0.9,
            maturity: 0,
            utility,
            accumulate: true,
            bias_transfer: true,
            rank_restoring: None,
            init: FreshInit::Kaiming { gain: 2f32.sqrt() },
            seed: 4,
        };
        // One layer at a time (the layers share conv3, which one replaces into and the other out of).
        let layers = vec![LayerUnits::convnet()[l + 1].clone()];
        let mut gnt = GenerateAndTest::new(config, layers.clone()).unwrap();
        // Features of conv2 ([N, 4, 6, 6] after pooling) and conv3 (flattened [N, 5·2·2]).
        let (h1, f1) = random(&mut hrng, &[2, 4, 6, 6]);
        let (h2, f2) = random(&mut hrng, &[2, 20]);
        let (h1, h2) = (h1.abs().unwrap(), h2.abs().unwrap());
        let spec = &layers[0];
        let model = &trainer.model;
        let (w_in, b_in) = (
            param_values(model, &spec.weight_in),
            param_values(model, spec.bias_in.as_ref().unwrap()),
        );
        let (w_out, b_out) = (
            param_values(model, &spec.weight_out),
            param_values(model, spec.bias_out.as_ref().unwrap()),
        );
        let slots_before = adam_slots(&trainer.optimizer, &spec.weight_out);
        let features = move |tap: &str| match tap {
            "hidden.1" => Ok(h1.clone()),
            _ => Ok(h2.clone()),
        };
        gnt.generate_and_test(&mut trainer.model, &mut trainer.optimizer, &features)
            .unwrap();
        // Units, input weights per unit, feature values per unit and example, the features, and
        // the entries of the next layer's weight that belong to unit j.
        let (units, fan_in, spatial, feats) = match l {
            0 => (4, 3 * 9, 36, f1),
            _ => (5, 4 * 9, 4, f2),
        };
        let feats: Vec<f32> = feats.iter().map(|v| v.abs()).collect();
        let slice = |j: usize| -> Vec<usize> {
            match l {
                0 => (0..5)
                    .flat_map(|o| (0..9).map(move |k| o * 36 + j * 9 + k))
                    .collect(),
                _ => (j * 4 * 6..(j + 1) * 4 * 6).collect(),
            }
        };
        let model = &trainer.model;
        {
            let (units, fan_in, spatial) = (&units, &fan_in, &spatial);
            let (w_in, b_in, w_out, b_out) = (&w_in, &b_in, &w_out, &b_out);
            let mag = |w: &[f32], idx: &[usize]| {
                idx.iter().map(|&i| f64::from(w[i]).abs()).sum::<f64>() / idx.len() as f64
            };
            let in_rows = |j: usize| -> Vec<usize> { (j * fan_in..(j + 1) * fan_in).collect() };
            let util: Vec<f32> = (0..*units)
                .map(|j| match utility {
                    UnitUtility::Weight => mag(w_out, &slice(j)) as f32,
                    _ => (1.0 / mag(w_in, &in_rows(j))) as f32,
                })
                .collect();
            let ages = vec![1u64; *units];
            let count = (*units as f64 * 0.5).floor() as usize;
            let chosen = lowest_utility_units(&util, &ages, 0, count);
            let got: Vec<usize> = (0..*units).filter(|&j| gnt.ages(0)[j] == 0).collect();
            let mut want = chosen.clone();
            want.sort();
            assert_eq!(got, want, "{utility:?} layer {l}: replaced channels");
            let (w_in2, b_in2) = (
                param_values(model, &spec.weight_in),
                param_values(model, spec.bias_in.as_ref().unwrap()),
            );
            let (w_out2, b_out2) = (
                param_values(model, &spec.weight_out),
                param_values(model, spec.bias_out.as_ref().unwrap()),
            );
            let bound = config.init.bound(*fan_in, *units);
            for j in 0..*units {
                let replaced = chosen.contains(&j);
                for i in in_rows(j) {
                    match replaced {
                        true => assert!(w_in2[i].abs() <= bound && w_in2[i] != w_in[i]),
                        false => assert_eq!(w_in2[i], w_in[i]),
                    }
                }
                assert_eq!(b_in2[j], if replaced { 0.0 } else { b_in[j] });
                for i in slice(j) {
                    assert_eq!(w_out2[i], if replaced { 0.0 } else { w_out[i] });
                }
            }
            // f̂_j after one step is the mean feature of channel j over examples and positions.
            let n_examples = feats.len() / (units * spatial);
            let f_hat = |j: usize| -> f64 {
                (0..n_examples)
                    .flat_map(|b| (0..*spatial).map(move |s| (b * units + j) * spatial + s))
                    .map(|i| f64::from(feats[i]))
                    .sum::<f64>()
                    / (n_examples * spatial) as f64
            };
            let outputs = b_out.len();
            let per_out = w_out.len() / outputs;
            for (o, (&b0, &b1)) in b_out.iter().zip(&b_out2).enumerate() {
                let shift: f64 = chosen
                    .iter()
                    .map(|&j| {
                        let sum: f64 = slice(j)
                            .into_iter()
                            .filter(|&i| match l {
                                0 => i / per_out == o,
                                _ => i % outputs == o,
                            })
                            .map(|i| f64::from(w_out[i]))
                            .sum();
                        sum * f_hat(j)
                    })
                    .sum();
                let want = f64::from(b0) + shift;
                assert!(
                    (f64::from(b1) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{utility:?} layer {l} bias {o}: {b1} vs {want}"
                );
            }
            let after = adam_slots(&trainer.optimizer, &spec.weight_out);
            let hit: Vec<usize> = chosen.iter().flat_map(|&j| slice(j)).collect();
            for (b, a) in slots_before.iter().zip(&after) {
                for k in 0..b.len() {
                    let want = if hit.contains(&k) { 0.0 } else { b[k] };
                    assert_eq!(a[k], want, "{utility:?} layer {l} slot entry {k}");
                }
            }
        }
    }
}
