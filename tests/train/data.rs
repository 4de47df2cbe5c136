//! Modular-arithmetic data: every label right, the split a partition fixed by the seed, tokens, errors.

use crate::common::device;
use dynlab::algos::data::{is_prime, ModOp, ModularData};
use std::collections::HashSet;

#[test]
fn tables_are_right_and_the_split_is_a_seeded_partition() {
    for (op, f) in [
        (ModOp::Add, (|a, b| (a + b) % 11) as fn(i64, i64) -> i64),
        (ModOp::Sub, |a, b| (a - b).rem_euclid(11)),
        (ModOp::Mul, |a, b| a * b % 11),
        (ModOp::Div, |a, b| {
            (0..11).find(|c| c * b % 11 == a).unwrap()
        }),
    ] {
        let d = ModularData::new(11, op, 0.3, 5, &device()).unwrap();
        let total = if op == ModOp::Div { 110 } else { 121 };
        assert_eq!(d.train.len() + d.test.len(), total, "{op:?}");
        assert_eq!(d.train.len(), (0.3f64 * total as f64).round() as usize);
        let mut seen = HashSet::new();
        for split in [&d.train, &d.test] {
            let pairs = split.pairs.to_vec::<i32>().unwrap();
            let labels = split.labels.to_vec::<i32>().unwrap();
            for (ab, c) in pairs.chunks(2).zip(&labels) {
                assert_eq!(f(ab[0] as i64, ab[1] as i64), *c as i64, "{op:?} {ab:?}");
                assert!(seen.insert((ab[0], ab[1])), "pair {ab:?} twice");
            }
        }
        assert_eq!(seen.len(), total);
        let again = ModularData::new(11, op, 0.3, 5, &device()).unwrap();
        assert_eq!(
            again.train.pairs.to_vec::<i32>().unwrap(),
            d.train.pairs.to_vec::<i32>().unwrap()
        );
        let other = ModularData::new(11, op, 0.3, 6, &device()).unwrap();
        assert_ne!(
            other.train.pairs.to_vec::<i32>().unwrap(),
            d.train.pairs.to_vec::<i32>().unwrap()
        );
    }
}

#[test]
fn token_sequences_are_a_op_b_equals() {
    let d = ModularData::new(5, ModOp::Add, 0.5, 0, &device()).unwrap();
    let tokens = d.train.tokens(5).unwrap();
    assert_eq!(tokens.shape(), &[d.train.len(), 4]);
    let pairs = d.train.pairs.to_vec::<i32>().unwrap();
    for (row, ab) in tokens
        .to_vec::<i32>()
        .unwrap()
        .chunks(4)
        .zip(pairs.chunks(2))
    {
        assert_eq!(row, [ab[0], 5, ab[1], 6]);
    }
}

#[test]
fn bad_moduli_and_fractions_are_errors() {
    assert!(is_prime(2) && is_prime(97) && !is_prime(1) && !is_prime(91));
    let e = ModularData::new(12, ModOp::Add, 0.5, 0, &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("p = 12") && e.contains("prime"), "{e}");
    for frac in [0.0, 1.0, -0.1, f64::NAN] {
        let e = ModularData::new(7, ModOp::Add, frac, 0, &device())
            .unwrap_err()
            .to_string();
        assert!(e.contains("train_frac"), "{e}");
    }
    let e = ModularData::new(2, ModOp::Div, 0.01, 0, &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("each side"), "{e}");
}
