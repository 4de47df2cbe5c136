//! Indexing ops against the reference, including repeated indices and bad indices.

use dynlab::{DType, Tensor};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

fn index_tensor(values: &[usize], shape: &[usize]) -> (Tensor, HostTensor) {
    let ints: Vec<i32> = values.iter().map(|&v| v as i32).collect();
    (
        Tensor::from_slice(&ints, shape, &device()).unwrap(),
        HostTensor::new(shape, values.iter().map(|&v| v as f64).collect()),
    )
}

#[device_test]
fn gather_matches_reference_on_each_axis() {
    let mut rng = HostRng::new(30);
    for (layout, x, hx) in layouts(&mut rng, &[4, 6, 3], -1.0, 1.0) {
        for dim in 0..3 {
            let mut ishape = x.shape().to_vec();
            ishape[dim] = 5;
            if dim != 0 {
                ishape[0] -= 1; // smaller than the input off `dim`
            }
            let n: usize = ishape.iter().product();
            let vals: Vec<usize> = (0..n).map(|_| rng.below(x.shape()[dim])).collect();
            let (idx, hidx) = index_tensor(&vals, &ishape);
            assert_close(
                &format!("gather dim {dim} {layout}"),
                &x.gather(dim as isize, &idx).unwrap(),
                &r::gather(&hx, dim, &hidx),
                0.0,
                0.0,
            );
        }
    }
}

#[device_test]
fn index_select_picks_rows_with_repeats() {
    let mut rng = HostRng::new(31);
    let (x, hx) = random(&mut rng, &[5, 3], -1.0, 1.0);
    let (idx, _) = index_tensor(&[4, 0, 4, 2], &[4]);
    let rows = x.index_select(0, &idx).unwrap();
    let want = r::cat(
        &[
            &r::slice(&hx, 0, 4, 5, 1),
            &r::slice(&hx, 0, 0, 1, 1),
            &r::slice(&hx, 0, 4, 5, 1),
            &r::slice(&hx, 0, 2, 3, 1),
        ],
        0,
    );
    assert_close("index_select rows", &rows, &want, 0.0, 0.0);
    let (cidx, _) = index_tensor(&[2, 2], &[2]);
    let cols = x.index_select(1, &cidx).unwrap();
    let col = r::slice(&hx, 1, 2, 3, 1);
    assert_close(
        "index_select cols",
        &cols,
        &r::cat(&[&col, &col], 1),
        0.0,
        0.0,
    );
    let (none, _) = index_tensor(&[], &[0]);
    assert_eq!(x.index_select(0, &none).unwrap().shape(), &[0, 3]);
}

#[device_test]
fn scatter_add_sums_repeated_indices_deterministically() {
    let mut rng = HostRng::new(32);
    let (base, hbase) = random(&mut rng, &[4, 3], -1.0, 1.0);
    let (src, hsrc) = random(&mut rng, &[6, 3], -1.0, 1.0);
    let vals: Vec<usize> = (0..15).map(|_| rng.below(4)).collect();
    let (idx, hidx) = index_tensor(&vals, &[5, 3]);
    let out = base.scatter_add(0, &idx, &src).unwrap();
    assert_close(
        "scatter_add dim 0",
        &out,
        &r::scatter_add(&hbase, 0, &hidx, &hsrc),
        1e-6,
        1e-6,
    );
    let again = base.scatter_add(0, &idx, &src).unwrap();
    let bits = |t: &Tensor| {
        t.to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bits(&out),
        bits(&again),
        "scatter_add is not bitwise reproducible"
    );
    // Along dim 1 with a transposed src view.
    let (src_t, hsrc_t) = random(&mut rng, &[3, 4], -1.0, 1.0);
    let src_view = src_t.transpose(0, 1).unwrap();
    let hsrc_view = r::permute(&hsrc_t, &[1, 0]);
    let vals: Vec<usize> = (0..8).map(|_| rng.below(3)).collect();
    let (idx1, hidx1) = index_tensor(&vals, &[4, 2]);
    assert_close(
        "scatter_add dim 1",
        &base.scatter_add(1, &idx1, &src_view).unwrap(),
        &r::scatter_add(&hbase, 1, &hidx1, &hsrc_view),
        1e-6,
        1e-6,
    );
}

#[device_test]
fn one_hot_encodes_labels() {
    let (labels, _) = index_tensor(&[2, 0, 1], &[3]);
    let oh = labels.one_hot(3).unwrap();
    assert_eq!(oh.shape(), &[3, 3]);
    assert_eq!(oh.dtype(), DType::F32);
    assert_eq!(
        oh.to_vec::<f32>().unwrap(),
        vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    );
    let err = labels.one_hot(2).unwrap_err().to_string();
    assert!(
        err.contains("one_hot") && err.contains("index 2") && err.contains("0..2"),
        "{err}"
    );
}

#[device_test]
fn bad_indices_are_errors_not_reads() {
    let x = Tensor::zeros(&[3, 2], &device()).unwrap();
    let neg = Tensor::from_slice(&[-1i32], &[1], &device()).unwrap();
    let err = x.index_select(0, &neg).unwrap_err().to_string();
    assert!(
        err.contains("index_select") && err.contains("index -1"),
        "{err}"
    );
    let (big, _) = index_tensor(&[3, 1], &[2, 1]);
    assert!(x.gather(0, &big).unwrap_err().to_string().contains("0..3"));
    let (wrong_rank, _) = index_tensor(&[0], &[1]);
    assert!(x
        .gather(0, &wrong_rank)
        .unwrap_err()
        .to_string()
        .contains("same rank"));
    let float_idx = Tensor::zeros(&[2, 1], &device()).unwrap();
    assert!(x
        .gather(0, &float_idx)
        .unwrap_err()
        .to_string()
        .contains("i32"));
    let (idx, _) = index_tensor(&[0, 1], &[2, 1]);
    let small_src = Tensor::zeros(&[1, 1], &device()).unwrap();
    assert!(x
        .scatter_add(0, &idx, &small_src)
        .unwrap_err()
        .to_string()
        .contains("scatter_add"));
}
