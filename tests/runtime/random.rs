//! The counter-based generator: known-answer Philox words, determinism, independent streams, and
//! moments within 3 sigma.

use dynlab::{Rng, Tensor};
use dynlab_test_support::*;

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[device_test]
fn philox_matches_the_random123_known_answer() {
    // Philox4x32-10, counter 0, key 0 (Salmon et al. 2011, Random123 kat_vectors).
    let expected: [u32; 4] = [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8];
    let u = Tensor::rand_uniform(&[4], 0.0, 1.0, &mut Rng::new(0), &device()).unwrap();
    let words: Vec<u32> = u
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| (x * 16_777_216.0) as u32)
        .collect();
    let want: Vec<u32> = expected.iter().map(|w| w >> 8).collect();
    assert_eq!(words, want);
}

#[device_test]
fn same_seed_same_bits_and_fresh_numbers_per_call() {
    let d = device();
    let draw = |seed| {
        let mut rng = Rng::new(seed);
        let a = Tensor::rand_normal(&[1001], 0.0, 1.0, &mut rng, &d).unwrap();
        let b = Tensor::rand_uniform(&[7, 3], -1.0, 2.0, &mut rng, &d).unwrap();
        (bits(&a), bits(&b), rng)
    };
    let (a1, b1, rng1) = draw(42);
    let (a2, b2, _) = draw(42);
    assert_eq!((&a1, &b1), (&a2, &b2), "same seed gave different numbers");
    let (a3, _, _) = draw(43);
    assert_ne!(a1, a3, "different seeds gave the same stream");
    assert_ne!(a1[..21], b1[..], "consecutive calls reused the counter");
    // The (seed, offset) state restores the stream exactly.
    let mut restored = Rng::from_state(rng1.seed(), rng1.offset());
    let mut cont = rng1;
    let x = Tensor::rand_uniform(&[9], 0.0, 1.0, &mut cont, &d).unwrap();
    let y = Tensor::rand_uniform(&[9], 0.0, 1.0, &mut restored, &d).unwrap();
    assert_eq!(bits(&x), bits(&y));
    let p1 = Tensor::randperm(100, &mut Rng::new(5), &d)
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    let p2 = Tensor::randperm(100, &mut Rng::new(5), &d)
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    assert_eq!(p1, p2);
}

fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

#[device_test]
fn a_million_normals_have_mean_0_and_variance_1_within_3_sigma() {
    let n = 1_000_000;
    let v = Tensor::rand_normal(&[n], 0.0, 1.0, &mut Rng::new(7), &device())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    let (mean, var) = moments(&v);
    let n = n as f64;
    assert!(mean.abs() < 3.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 3.0 * (2.0 / n).sqrt(), "variance {var}");
    let scaled = Tensor::rand_normal(&[10_000], 3.0, 0.5, &mut Rng::new(8), &device())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let (m, s2) = moments(&scaled);
    assert!((m - 3.0).abs() < 3.0 * 0.5 / 100.0, "shifted mean {m}");
    assert!(
        (s2 - 0.25).abs() < 3.0 * 0.25 * (2.0f64 / 10_000.0).sqrt(),
        "scaled variance {s2}"
    );
}

#[device_test]
fn uniform_bernoulli_and_randint_stay_in_range_with_right_moments() {
    let d = device();
    let n = 200_003;
    let u = Tensor::rand_uniform(&[n], -2.0, 3.0, &mut Rng::new(9), &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    let (mean, var) = moments(&u);
    assert!(
        (mean - 0.5).abs() < 3.0 * (25.0f64 / 12.0 / n as f64).sqrt(),
        "uniform mean {mean}"
    );
    assert!((var - 25.0 / 12.0).abs() < 0.05, "uniform variance {var}");

    let b = Tensor::bernoulli_scalar(&[n], 0.3, &mut Rng::new(10), &d)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(b.iter().all(|&x| x == 0.0 || x == 1.0));
    let p = b.iter().sum::<f32>() as f64 / n as f64;
    assert!(
        (p - 0.3).abs() < 3.0 * (0.21 / n as f64).sqrt(),
        "bernoulli rate {p}"
    );
    let probs = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0], &[4], &d).unwrap();
    assert_eq!(
        probs
            .bernoulli(&mut Rng::new(1))
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0, 1.0, 0.0, 1.0]
    );
    let bad = Tensor::from_slice(&[0.5f32, 1.5], &[2], &d).unwrap();
    assert!(bad
        .bernoulli(&mut Rng::new(1))
        .unwrap_err()
        .to_string()
        .contains("[0, 1]"));

    let k = Tensor::randint(&[n], -3, 5, &mut Rng::new(11), &d)
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    let mut counts = [0usize; 8];
    for &x in &k {
        assert!((-3..5).contains(&x), "randint gave {x}");
        counts[(x + 3) as usize] += 1;
    }
    let expect = n as f64 / 8.0;
    let sigma = (n as f64 * (1.0 / 8.0) * (7.0 / 8.0)).sqrt();
    assert!(
        counts
            .iter()
            .all(|&c| (c as f64 - expect).abs() < 5.0 * sigma),
        "randint counts {counts:?}"
    );
}

#[device_test]
fn randperm_is_a_permutation() {
    let d = device();
    for n in [0usize, 1, 2, 5, 1000, 4097] {
        let mut p = Tensor::randperm(n, &mut Rng::new(n as u64), &d)
            .unwrap()
            .to_vec::<i32>()
            .unwrap();
        let shuffled = p.clone();
        p.sort_unstable();
        assert_eq!(
            p,
            (0..n as i32).collect::<Vec<_>>(),
            "randperm({n}) is not a permutation"
        );
        if n >= 1000 {
            let fixed = shuffled
                .iter()
                .enumerate()
                .filter(|&(i, &v)| i as i32 == v)
                .count();
            assert!(fixed < 10, "randperm({n}) left {fixed} fixed points");
        }
    }
}

/// `x.add_normal_noise(std)` is `x + std_g · z` with `z` the draws `rand_normal(0, 1)` makes from
/// the same generator state (groups of `n / G` elements per std), on odd sizes, size 1 and empty,
/// against the f64 composition; the generator advances as `rand_normal`'s does.
#[device_test]
fn add_normal_noise_adds_the_normal_draws_scaled_per_group() {
    let d = device();
    let mut host = HostRng::new(5);
    for (shape, groups) in [
        (vec![3, 7], 3),
        (vec![1], 1),
        (vec![2, 5, 1], 2),
        (vec![0, 4], 1),
    ] {
        let (x, x_host) = random(&mut host, &shape, -1.0, 1.0);
        let stds: Vec<f32> = (0..groups).map(|g| 0.5 + g as f32).collect();
        let std = Tensor::from_slice(&stds, &[groups], &d).unwrap();
        let mut rng = Rng::new(17);
        let mut twin = rng;
        let got = x.add_normal_noise(&std, &mut rng).unwrap();
        let z = Tensor::rand_normal(&shape, 0.0, 1.0, &mut twin, &d).unwrap();
        assert_eq!(rng, twin, "{shape:?}: generator state");
        let z = z.to_vec::<f32>().unwrap();
        let per = x_host.data.len().max(1) / groups;
        let want: Vec<f64> = (x_host.data.iter().zip(&z).enumerate())
            .map(|(i, (&xv, &zv))| xv + f64::from(stds[i / per]) * f64::from(zv))
            .collect();
        let want = dynlab_test_support::reference::HostTensor {
            shape: shape.clone(),
            data: want,
        };
        assert_close(
            &format!("add_normal_noise {shape:?}"),
            &got,
            &want,
            1e-6,
            1e-6,
        );
    }
    let x = Tensor::zeros(&[5], &d).unwrap();
    let e = x
        .add_normal_noise(&Tensor::ones(&[2], &d).unwrap(), &mut Rng::new(1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("add_normal_noise") && e.contains("2 stds"),
        "{e}"
    );
}
