//! Modular-arithmetic data: every label right, the split a partition fixed by the seed, tokens,
//! errors. The table is host bookkeeping (no device); one test checks the upload.

use dynlab::algos::grokking::data::{is_prime, ModOp, ModularData, ModularTable};
use dynlab_test_support::{device, device_test};
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
        let d = ModularTable::new(11, op, 0.3, 5).unwrap();
        let total = if op == ModOp::Div { 110 } else { 121 };
        assert_eq!(d.train.pairs.len() + d.test.pairs.len(), total, "{op:?}");
        assert_eq!(
            d.train.pairs.len(),
            (0.3f64 * total as f64).round() as usize
        );
        let mut seen = HashSet::new();
        for split in [&d.train, &d.test] {
            assert_eq!(split.pairs.len(), split.labels.len());
            for (ab, c) in split.pairs.iter().zip(&split.labels) {
                assert_eq!(f(ab[0] as i64, ab[1] as i64), *c as i64, "{op:?} {ab:?}");
                assert!(seen.insert(*ab), "pair {ab:?} twice");
            }
        }
        assert_eq!(seen.len(), total);
        assert_eq!(ModularTable::new(11, op, 0.3, 5).unwrap(), d);
        assert_ne!(ModularTable::new(11, op, 0.3, 6).unwrap().train, d.train);
    }
}

#[device_test]
fn the_device_split_and_its_tokens_match_the_table() {
    let table = ModularTable::new(5, ModOp::Add, 0.5, 0).unwrap();
    let d = ModularData::new(5, ModOp::Add, 0.5, 0, &device()).unwrap();
    let pairs = d.train.pairs.to_vec::<i32>().unwrap();
    let want: Vec<i32> = table
        .train
        .pairs
        .iter()
        .flat_map(|p| p.map(|v| v as i32))
        .collect();
    assert_eq!(pairs, want);
    let labels: Vec<i32> = table.train.labels.iter().map(|&v| v as i32).collect();
    assert_eq!(d.train.labels.to_vec::<i32>().unwrap(), labels);
    let tokens = d.train.tokens(5).unwrap();
    assert_eq!(tokens.shape(), &[d.train.len(), 4]);
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
    let e = ModularTable::new(12, ModOp::Add, 0.5, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("p = 12") && e.contains("prime"), "{e}");
    for frac in [0.0, 1.0, -0.1, f64::NAN] {
        let e = ModularTable::new(7, ModOp::Add, frac, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train_frac"), "{e}");
    }
    let e = ModularTable::new(2, ModOp::Div, 0.01, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("each side"), "{e}");
}
