//! The shipped digits (sizes, class counts and byte sum from `scripts/make_digits_idx.py`), and
//! splits: per-class counts, partitions fixed by the seed, shuffled mini-batches through
//! `dynlab_train::Loader`.

use crate::{assert_fails, scratch};
use dynlab::data::{class_counts, digits, shipped_digits_dir, split_per_class, SplitRule};
use dynlab::train::{BatchSource, Dataset, Loader};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test};
use std::collections::BTreeSet;

/// Class counts of the digits 0–9, as printed by `scripts/make_digits_idx.py`.
const DIGIT_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

#[device_test]
fn the_shipped_digits_load_with_their_known_class_counts() {
    let data = digits(shipped_digits_dir(), &device()).unwrap();
    assert_eq!(data.inputs.shape(), &[1797, 1, 8, 8]);
    assert_eq!(class_counts(&data).unwrap(), DIGIT_COUNTS);
    let labels = data.targets.to_vec::<i32>().unwrap();
    assert_eq!(&labels[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    // Every pixel is min(16 v, 255) / 255 for a source count v in 0..=16; the bytes sum to
    // 8977032 (computed from the file), 10456 of them are 255.
    let pixels = data.inputs.to_vec::<f32>().unwrap();
    let bytes: Vec<u32> = pixels.iter().map(|&p| (p * 255.0).round() as u32).collect();
    assert!(bytes.iter().all(|&b| b % 16 == 0 && b <= 240 || b == 255));
    assert_eq!(bytes.iter().sum::<u32>(), 8_977_032);
    assert_eq!(bytes.iter().filter(|&&b| b == 255).count(), 10_456);
    let r = digits(scratch("no-digits"), &device());
    assert_fails(r, "load_idx", &["digits-images-idx3-ubyte"]);
}

/// `n` rows whose single input is the row's index, labels `row % classes`.
fn indexed(n: usize, classes: usize) -> Dataset {
    let d = device();
    let inputs: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let labels: Vec<i32> = (0..n).map(|i| (i % classes) as i32).collect();
    Dataset::new(
        Tensor::from_vec(inputs, &[n, 1], &d).unwrap(),
        Tensor::from_vec(labels, &[n], &d).unwrap(),
    )
    .unwrap()
}

fn row_ids(data: &Dataset) -> Vec<usize> {
    let v = data.inputs.to_vec::<f32>().unwrap();
    v.iter().map(|&x| x as usize).collect()
}

#[device_test]
fn splits_are_stratified_partitions_fixed_by_the_seed() {
    let data = indexed(40, 3); // classes of 14, 13, 13 rows
    let (train, test) = split_per_class(&data, SplitRule::FirstPerClass(4), 0).unwrap();
    assert_eq!(class_counts(&train).unwrap(), vec![4, 4, 4]);
    assert_eq!(row_ids(&train), (0..12).collect::<Vec<_>>());
    assert_eq!(row_ids(&test), (12..40).collect::<Vec<_>>());

    let (train, test) = split_per_class(&data, SplitRule::Fraction(0.25), 7).unwrap();
    assert_eq!(class_counts(&train).unwrap(), vec![4, 3, 3]); // round(3.5) = 4, round(3.25) = 3
    let (a, b) = (row_ids(&train), row_ids(&test));
    let all: BTreeSet<usize> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 40, "a partition");
    assert!(a.windows(2).all(|w| w[0] < w[1]), "rows keep their order");
    let labels = train.targets.to_vec::<i32>().unwrap();
    assert!(a.iter().zip(&labels).all(|(&r, &y)| r % 3 == y as usize));
    let again = split_per_class(&data, SplitRule::Fraction(0.25), 7).unwrap();
    assert_eq!(row_ids(&again.0), a);
    let other = split_per_class(&data, SplitRule::Fraction(0.25), 8).unwrap();
    assert_ne!(row_ids(&other.0), a);

    let r = split_per_class(&data, SplitRule::Fraction(1.5), 0);
    assert_fails(r, "split_per_class", &["fraction 1.5"]);
    let r = split_per_class(&data, SplitRule::Fraction(1.0), 0);
    assert_fails(r, "split_per_class", &["test part empty"]);
}

#[device_test]
fn the_digits_split_serves_seeded_mini_batches_through_the_loader() {
    let data = digits(shipped_digits_dir(), &device()).unwrap();
    let (train, test) = split_per_class(&data, SplitRule::Fraction(0.8), 0).unwrap();
    let counts = class_counts(&train).unwrap();
    let want: Vec<usize> = DIGIT_COUNTS
        .iter()
        .map(|&n| (0.8 * n as f64).round() as usize)
        .collect();
    assert_eq!(counts, want);
    assert_eq!(train.len() + test.len(), 1797);
    let pass = |seed| {
        let mut loader = Loader::new(train.clone(), Some(500)).unwrap();
        let mut rng = Rng::new(seed);
        let mut sizes = Vec::new();
        let mut first = Vec::new();
        while let Some(b) = loader.next_batch(&mut rng).unwrap() {
            sizes.push(b.rows());
            if first.is_empty() {
                first = b.targets.to_vec::<i32>().unwrap();
            }
        }
        (sizes, first)
    };
    let (sizes, first) = pass(3);
    assert_eq!(sizes, vec![500, 500, 438]);
    assert_eq!(pass(3).1, first);
    assert_ne!(pass(4).1, first);
}
