//! Task streams: boundaries, seeded determinism, per-task permutations, class maps, serving one task
//! per pass, and the slowly-changing regression's flips and targets against a host recomputation of
//! its LTU network.

use crate::assert_fails;
use dynlab::data::streams::LtuTarget;
use dynlab::data::{
    ClassIncremental, ClassPairs, PerTask, PermutedInputs, PermutedLabels, RegressionConfig,
    Schedule, SlowlyChangingRegression, TaskStream,
};
use dynlab::train::{Batch, BatchSource, Dataset};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test};
use std::collections::BTreeSet;

#[test]
fn schedules_place_task_boundaries_at_whole_tasks_of_steps() {
    let s = Schedule::new(3, 7, 3).unwrap();
    assert_eq!(s.steps_per_task(), 3);
    assert_eq!(s.total_steps(), 9);
    assert_eq!(s.task_boundaries(), vec![0, 3, 6]);
    let tasks: Vec<_> = (0..10).map(|i| s.task_of_step(i)).collect();
    let want = [0, 0, 0, 1, 1, 1, 2, 2, 2].map(Some);
    assert_eq!(&tasks[..9], &want);
    assert_eq!(tasks[9], None);
    assert_eq!(
        s.locate("t", 2).unwrap(),
        (0, 6, 1),
        "the last batch of a task is smaller"
    );
    assert_eq!(s.locate("t", 4).unwrap(), (1, 3, 3));
    assert_fails(s.locate("t", 9), "t", &["step 9", "0..9"]);
    assert_fails(Schedule::new(0, 7, 3), "Schedule::new", &["tasks: 0"]);
    assert_fails(Schedule::new(2, 7, 0), "Schedule::new", &["batch_size: 0"]);
    assert!(Schedule::new(usize::MAX, 2, 1).is_err());
}

/// `n` images `[1, 2, 3]` whose pixel `p` of row `r` is `100 r + p`, labels `r % classes`.
fn coded(n: usize, classes: usize) -> Dataset {
    let d = device();
    let inputs: Vec<f32> = (0..n * 6).map(|i| (100 * (i / 6) + i % 6) as f32).collect();
    let labels: Vec<i32> = (0..n).map(|r| (r % classes) as i32).collect();
    Dataset::new(
        Tensor::from_vec(inputs, &[n, 1, 2, 3], &d).unwrap(),
        Tensor::from_vec(labels, &[n], &d).unwrap(),
    )
    .unwrap()
}

/// Every step of a stream: (task, inputs, targets) read back.
fn drain(stream: &mut dyn TaskStream) -> Vec<(usize, Vec<f32>, Batch)> {
    let mut out = Vec::new();
    while let Some((task, b)) = stream.next_step().unwrap() {
        out.push((task, b.inputs.to_vec::<f32>().unwrap(), b));
    }
    out
}

fn tasks_of(steps: &[(usize, Vec<f32>, Batch)]) -> Vec<usize> {
    steps.iter().map(|s| s.0).collect()
}

/// The base row and the pixel order of each served row of a coded dataset.
fn rows_and_orders(inputs: &[f32]) -> Vec<(usize, Vec<usize>)> {
    inputs
        .chunks(6)
        .map(|px| {
            let row = px[0] as usize / 100;
            (row, px.iter().map(|&v| v as usize - 100 * row).collect())
        })
        .collect()
}

#[device_test]
fn permuted_inputs_apply_one_fixed_permutation_per_task() {
    let schedule = Schedule::new(3, 7, 3).unwrap();
    let mut s = PermutedInputs::new(coded(10, 4), schedule, 42).unwrap();
    assert_eq!((s.num_tasks(), s.task_boundaries()), (3, vec![0, 3, 6]));
    let steps = drain(&mut s);
    assert_eq!(tasks_of(&steps), vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(
        steps.iter().map(|s| s.2.rows()).collect::<Vec<_>>(),
        [3, 3, 1].repeat(3)
    );
    for task in 0..3 {
        let perm = s.permutation(task);
        let sorted: BTreeSet<usize> = perm.iter().copied().collect();
        assert_eq!(sorted, (0..6).collect(), "task {task}: a permutation");
        let served: Vec<_> = steps.iter().filter(|s| s.0 == task).collect();
        let mut rows = Vec::new();
        for (_, inputs, batch) in &served {
            assert_eq!(batch.inputs.shape()[1..], [1, 2, 3]);
            let labels = batch.targets.to_vec::<i32>().unwrap();
            for ((row, order), y) in rows_and_orders(inputs).into_iter().zip(labels) {
                assert_eq!(order, perm, "task {task} row {row}: the task's permutation");
                assert_eq!(y as usize, row % 4, "labels kept");
                rows.push(row);
            }
        }
        let distinct: BTreeSet<_> = rows.iter().collect();
        assert_eq!(distinct.len(), 7, "one pass: no row twice within 7 of 10");
    }
    assert_ne!(s.permutation(1), s.permutation(2));
    let identity = PermutedInputs::new(coded(10, 4), schedule, 42)
        .unwrap()
        .with_identity_first(true);
    assert_eq!(identity.permutation(0), (0..6).collect::<Vec<_>>());
    assert_eq!(identity.permutation(1), s.permutation(1));

    // Same seed: identical batches, in order or at random; another seed: different ones.
    let mut again = PermutedInputs::new(coded(10, 4), schedule, 42).unwrap();
    let (task, b) = again.batch_at(4).unwrap();
    assert_eq!(
        (task, b.inputs.to_vec::<f32>().unwrap()),
        (1, steps[4].1.clone())
    );
    let replay = drain(&mut again);
    assert!(replay
        .iter()
        .zip(&steps)
        .all(|(a, b)| a.0 == b.0 && a.1 == b.1));
    let mut other = PermutedInputs::new(coded(10, 4), schedule, 43).unwrap();
    assert_ne!(drain(&mut other)[0].1, steps[0].1);
    // Seeking resumes at a step; past the end is an error.
    again.seek(7).unwrap();
    assert_eq!(again.next_step().unwrap().unwrap().0, 2);
    assert_fails(
        again.seek(10),
        "PermutedInputs::seek",
        &["step 10", "0..=9"],
    );
    assert_fails(again.batch_at(9), "PermutedInputs::batch_at", &["step 9"]);
}

#[device_test]
fn examples_beyond_the_dataset_run_in_fresh_passes() {
    let schedule = Schedule::new(1, 25, 4).unwrap();
    let mut s = PermutedInputs::new(coded(10, 2), schedule, 1).unwrap();
    let steps = drain(&mut s);
    let rows: Vec<usize> = steps
        .iter()
        .flat_map(|s| rows_and_orders(&s.1).into_iter().map(|r| r.0))
        .collect();
    assert_eq!(rows.len(), 25);
    for pass in rows.chunks(10).take(2) {
        assert_eq!(
            pass.iter().collect::<BTreeSet<_>>().len(),
            10,
            "each pass a permutation"
        );
    }
    assert_ne!(rows[..10], rows[10..20], "passes reshuffled");
}

#[device_test]
fn permuted_labels_relabel_classes_by_a_fixed_permutation_per_task() {
    let schedule = Schedule::new(4, 12, 5).unwrap();
    let mut s = PermutedLabels::new(coded(12, 6), schedule, 3).unwrap();
    assert_eq!(s.classes(), 6);
    let steps = drain(&mut s);
    assert_eq!(tasks_of(&steps), vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    for (task, inputs, batch) in &steps {
        let perm = s.permutation(*task);
        assert_eq!(perm.iter().collect::<BTreeSet<_>>().len(), 6);
        let labels = batch.targets.to_vec::<i32>().unwrap();
        for ((row, order), y) in rows_and_orders(inputs).into_iter().zip(labels) {
            assert_eq!(order, (0..6).collect::<Vec<_>>(), "inputs kept");
            assert_eq!(y as usize, perm[row % 6], "task {task}");
        }
    }
    assert!((1..4).any(|t| s.permutation(t) != s.permutation(0)));
    let mut again = PermutedLabels::new(coded(12, 6), schedule, 3).unwrap();
    let replay = drain(&mut again);
    let targets = |v: &[(usize, Vec<f32>, Batch)]| -> Vec<i32> {
        v.iter()
            .flat_map(|s| s.2.targets.to_vec::<i32>().unwrap())
            .collect()
    };
    assert_eq!(targets(&replay), targets(&steps));
    let mut other = PermutedLabels::new(coded(12, 6), schedule, 4).unwrap();
    assert_ne!(targets(&drain(&mut other)), targets(&steps));
}

#[device_test]
fn class_pairs_show_two_classes_mapped_to_zero_and_one() {
    let schedule = Schedule::new(7, 8, 3).unwrap();
    let mut s = ClassPairs::new(coded(30, 6), schedule, 9).unwrap();
    let steps = drain(&mut s);
    assert_eq!(
        tasks_of(&steps),
        [0, 1, 2, 3, 4, 5, 6].map(|t| [t; 3]).concat()
    );
    // The first three tasks use three disjoint pairs covering the six classes.
    let firsts: BTreeSet<usize> = (0..3).flat_map(|t| [s.pair(t).0, s.pair(t).1]).collect();
    assert_eq!(firsts.len(), 6);
    for (task, inputs, batch) in &steps {
        let (a, b) = s.pair(*task);
        assert_ne!(a, b);
        let labels = batch.targets.to_vec::<i32>().unwrap();
        for ((row, _), y) in rows_and_orders(inputs).into_iter().zip(labels) {
            let class = row % 6;
            assert!(
                class == a || class == b,
                "task {task}: class {class} not in ({a}, {b})"
            );
            assert_eq!(y, i32::from(class == b));
        }
    }
    let mut again = ClassPairs::new(coded(30, 6), schedule, 9).unwrap();
    assert!(drain(&mut again)
        .iter()
        .zip(&steps)
        .all(|(a, b)| a.1 == b.1));
    let one_class = coded(4, 1);
    assert_fails(
        ClassPairs::new(one_class, schedule, 0),
        "ClassPairs::new",
        &["2 classes"],
    );
    let gap = Dataset::new(
        Tensor::zeros(&[3, 1], &device()).unwrap(),
        Tensor::from_vec(vec![0i32, 2, 2], &[3], &device()).unwrap(),
    )
    .unwrap();
    assert_fails(
        ClassPairs::new(gap, schedule, 0),
        "ClassPairs::new",
        &["class 1 absent"],
    );
    let sparse = Dataset::new(
        Tensor::zeros(&[2, 1], &device()).unwrap(),
        Tensor::from_vec(vec![0i32, i32::MAX], &[2], &device()).unwrap(),
    )
    .unwrap();
    let r = PermutedLabels::new(sparse, schedule, 0);
    assert_fails(
        r,
        "PermutedLabels::new",
        &["labels up to 2147483647 in 2 rows"],
    );
}

#[device_test]
fn class_incremental_tasks_add_classes_and_keep_labels() {
    let schedule = Schedule::new(4, 10, 5).unwrap();
    let mut s = ClassIncremental::new(coded(30, 6), schedule, 2, 2, 5).unwrap();
    let order = s.class_order().to_vec();
    assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), 6);
    for t in 0..4 {
        assert_eq!(s.classes(t), &order[..(2 + 2 * t).min(6)]);
    }
    let steps = drain(&mut s);
    let mut seen = vec![BTreeSet::new(); 4];
    for (task, inputs, batch) in &steps {
        let labels = batch.targets.to_vec::<i32>().unwrap();
        for ((row, _), y) in rows_and_orders(inputs).into_iter().zip(labels) {
            assert_eq!(y as usize, row % 6, "labels kept");
            assert!(s.classes(*task).contains(&(row % 6)));
            seen[*task].insert(row % 6);
        }
    }
    assert_eq!(
        seen[0].len(),
        2,
        "10 examples of the first 2 classes' 10 rows: both shown"
    );
    let r = ClassIncremental::new(coded(30, 6), schedule, 7, 1, 0);
    assert_fails(r, "ClassIncremental::new", &["7 initial classes of 6"]);
}

#[device_test]
fn per_task_passes_end_at_each_task_boundary() {
    let schedule = Schedule::new(3, 5, 2).unwrap();
    let stream = PermutedInputs::new(coded(6, 2), schedule, 0).unwrap();
    let mut source = PerTask::new(stream);
    let mut rng = Rng::new(0);
    let mut passes = Vec::new();
    loop {
        assert_eq!(
            source.current_task(),
            (passes.len() < 3).then_some(passes.len())
        );
        let mut rows = Vec::new();
        while let Some(b) = source.next_batch(&mut rng).unwrap() {
            rows.push(b.rows());
        }
        if rows.is_empty() {
            break;
        }
        passes.push(rows);
    }
    assert_eq!(passes, vec![vec![2, 2, 1]; 3]);
}

/// One regression step read back: task, input rows, targets.
type Step = (usize, Vec<Vec<f32>>, Vec<f32>);

/// A regression stream read back, step by step.
fn regression_steps(config: RegressionConfig) -> (SlowlyChangingRegression, Vec<Step>) {
    let mut s = SlowlyChangingRegression::new(config, &device()).unwrap();
    let width = s.input_width();
    let mut out = Vec::new();
    while let Some((task, b)) = s.next_step().unwrap() {
        assert_eq!(b.inputs.shape(), &[b.rows(), width]);
        assert_eq!(b.targets.shape(), &[b.rows(), 1]);
        let rows = b
            .inputs
            .to_vec::<f32>()
            .unwrap()
            .chunks(width)
            .map(<[f32]>::to_vec)
            .collect();
        out.push((task, rows, b.targets.to_vec::<f32>().unwrap()));
    }
    (s, out)
}

/// `v · [W x + b > τ] + c` in f64 from the target's signs.
fn ltu_host(t: &LtuTarget, x: &[f32]) -> f64 {
    let m = x.len();
    let mut y = t.out_bias as f64;
    for i in 0..t.bias.len() {
        let pre: f64 = (0..m)
            .map(|j| t.weights[i * m + j] as f64 * x[j] as f64)
            .sum::<f64>()
            + t.bias[i] as f64;
        if pre > t.thresholds[i] as f64 {
            y += t.out_weights[i] as f64;
        }
    }
    y
}

#[device_test]
fn the_regression_stream_flips_one_bit_per_task_and_matches_its_ltu_targets() {
    let config = RegressionConfig {
        inputs: 6,
        flipping: 3,
        flip_every: 5,
        hidden: 8,
        beta: 0.7,
        batch_size: 2,
        tasks: 6,
        bias_input: true,
        redraw_all: false,
        seed: 17,
    };
    let (s, steps) = regression_steps(config);
    assert_eq!(
        tasks_of_regression(&steps),
        [0, 1, 2, 3, 4, 5].map(|t| [t; 3]).concat()
    );
    let t = s.target();
    // The target's thresholds are the reference's: β (m + 1) − (m − Σ_j W_ij + b_i) / 2.
    for i in 0..8 {
        let sum: f32 = t.weights[i * 6..(i + 1) * 6].iter().sum();
        let want = 0.7 * 7.0 - (6.0 - sum + t.bias[i]) / 2.0;
        assert!((t.thresholds[i] - want).abs() < 1e-5);
        assert!(t.weights[i * 6..(i + 1) * 6].iter().all(|w| w.abs() == 1.0));
    }
    let mut random_columns = BTreeSet::new();
    for (task, rows, targets) in &steps {
        let bits = s.flipping_bits(*task).unwrap();
        for (x, &y) in rows.iter().zip(targets) {
            let flip: Vec<u8> = x[..3].iter().map(|&v| v as u8).collect();
            assert_eq!(flip, bits, "task {task}: the flipping bits are the task's");
            assert!(x[3..6].iter().all(|&v| v == 0.0 || v == 1.0));
            assert_eq!(x[6], 1.0, "bias input");
            random_columns.insert(x[3..6].iter().map(|&v| v as u8).collect::<Vec<_>>());
            assert_eq!(y as f64, ltu_host(t, &x[..6]), "target of {x:?}");
        }
    }
    assert!(
        random_columns.len() > 3,
        "the other bits vary from example to example"
    );
    for task in 1..6 {
        let (a, b) = (
            s.flipping_bits(task - 1).unwrap(),
            s.flipping_bits(task).unwrap(),
        );
        let changed: Vec<usize> = (0..3).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(
            changed,
            vec![s.flipped_bit(task).unwrap()],
            "exactly one bit flips"
        );
    }
    // Same seed: the same stream; another seed: another target network and other bits.
    let (_, replay) = regression_steps(config);
    assert_eq!(replay, steps);
    let (other, other_steps) = regression_steps(RegressionConfig { seed: 18, ..config });
    assert_ne!(other.target(), s.target());
    assert_ne!(other_steps, steps);
}

fn tasks_of_regression(steps: &[Step]) -> Vec<usize> {
    steps.iter().map(|s| s.0).collect()
}

#[device_test]
fn the_regression_stream_generates_tasks_in_chunks_and_checks_its_config() {
    let config = RegressionConfig {
        inputs: 5,
        flipping: 2,
        flip_every: 5000,
        hidden: 4,
        batch_size: 1000,
        tasks: 2,
        bias_input: false,
        ..RegressionConfig::default()
    };
    let (s, steps) = regression_steps(config);
    assert_eq!(
        tasks_of_regression(&steps),
        vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    );
    // Chunks of 4000 rows: the random bits of the two chunks of a task differ, and every target is
    // the network's.
    let (first, fifth) = (&steps[0].1, &steps[4].1);
    assert_ne!(first[..5], fifth[..5]);
    for (task, rows, targets) in &steps {
        for (x, &y) in rows.iter().zip(targets).step_by(97) {
            assert_eq!(
                x[..2].iter().map(|&v| v as u8).collect::<Vec<_>>(),
                s.flipping_bits(*task).unwrap()
            );
            assert_eq!(y as f64, ltu_host(s.target(), x));
        }
    }
    let mean: f32 = steps[0].1.iter().map(|x| x[4]).sum::<f32>() / 1000.0;
    assert!(
        (0.4..0.6).contains(&mean),
        "random bits are fair coins: mean {mean}"
    );
    let bad = RegressionConfig {
        flipping: 6,
        ..config
    };
    let r = SlowlyChangingRegression::new(bad, &device());
    assert_fails(r, "SlowlyChangingRegression::new", &["flipping <= inputs"]);
    assert_eq!(RegressionConfig::default().inputs, 20);
    assert_eq!(RegressionConfig::default().flipping, 15);
    assert_eq!(RegressionConfig::default().flip_every, 10_000);
    assert_eq!(RegressionConfig::default().hidden, 100);
    assert_eq!(RegressionConfig::default().batch_size, 1);
}

#[device_test]
fn task_views_show_another_dataset_as_each_task_does() {
    let schedule = Schedule::new(3, 6, 3).unwrap();
    let (train, held_out) = (coded(12, 6), coded(9, 6));
    let rows_of = |d: &Dataset| rows_and_orders(&d.inputs.to_vec::<f32>().unwrap());
    let labels_of = |d: &Dataset| d.targets.to_vec::<i32>().unwrap();

    let s = PermutedInputs::new(train.clone(), schedule, 5).unwrap();
    let view = s.task_view(2, &held_out).unwrap();
    assert_eq!(view.inputs.shape(), &[9, 1, 2, 3]);
    let rows = rows_of(&view);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|r| r.1 == s.permutation(2)));
    assert_eq!(labels_of(&view), labels_of(&held_out));
    assert_fails(
        s.task_view(3, &held_out),
        "PermutedInputs::task_view",
        &["task 3", "0..3"],
    );

    let s = PermutedLabels::new(train.clone(), schedule, 5).unwrap();
    let view = s.task_view(1, &held_out).unwrap();
    let perm = s.permutation(1);
    let want: Vec<i32> = (0..9).map(|r| perm[r % 6] as i32).collect();
    assert_eq!(labels_of(&view), want);

    let s = ClassPairs::new(train.clone(), schedule, 5).unwrap();
    let (a, b) = s.pair(0);
    let view = s.task_view(0, &held_out).unwrap();
    let rows: Vec<usize> = rows_of(&view).into_iter().map(|r| r.0).collect();
    let want: Vec<usize> = (0..9).filter(|r| r % 6 == a || r % 6 == b).collect();
    assert_eq!(rows, want);
    let y: Vec<i32> = rows.iter().map(|r| i32::from(r % 6 == b)).collect();
    assert_eq!(labels_of(&view), y);

    let s = ClassIncremental::new(train, schedule, 1, 2, 5).unwrap();
    let view = s.task_view(1, &held_out).unwrap();
    let classes = s.classes(1).to_vec();
    let rows: Vec<usize> = rows_of(&view).into_iter().map(|r| r.0).collect();
    let want: Vec<usize> = (0..9).filter(|r| classes.contains(&(r % 6))).collect();
    assert_eq!(rows, want);

    let config = RegressionConfig {
        hidden: 4,
        tasks: 2,
        flip_every: 4,
        ..Default::default()
    };
    let s = SlowlyChangingRegression::new(config, &device()).unwrap();
    assert_fails(
        s.task_view(0, &held_out),
        "TaskStream::task_view",
        &["does not draw from a dataset"],
    );
}
