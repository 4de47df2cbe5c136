//! Constructors, views (no copy) and copies (`contiguous`, `cat`, `stack`, casts) against the host.

use dynlab::{DType, Tensor};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

#[device_test]
fn constructors_write_every_element() {
    let d = device();
    assert_eq!(
        Tensor::zeros(&[2, 3], &d).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0; 6]
    );
    assert_eq!(
        Tensor::ones(&[5], &d).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0; 5]
    );
    assert_eq!(
        Tensor::full(&[], -2.5, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![-2.5]
    );
    assert_eq!(
        Tensor::full(&[0, 4], 1.0, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        Vec::<f32>::new()
    );
    assert_eq!(
        Tensor::arange(0.0, 5.0, 1.0, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0, 1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(
        Tensor::arange(1.0, -1.0, -0.5, &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![1.0, 0.5, 0.0, -0.5]
    );
    assert_eq!(Tensor::arange(3.0, 3.0, 1.0, &d).unwrap().shape(), &[0]);
    let eye = Tensor::eye(3, &d).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(eye, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(Tensor::scalar(4.0, &d).unwrap().item().unwrap(), 4.0);
    let ints = Tensor::from_slice(&[1i32, -2, 3], &[3], &d).unwrap();
    assert_eq!(ints.to_vec::<i32>().unwrap(), vec![1, -2, 3]);
}

#[device_test]
fn views_share_the_buffer_and_read_in_logical_order() {
    let mut rng = HostRng::new(20);
    let (t, h) = random(&mut rng, &[3, 4, 5], -1.0, 1.0);
    let p = t.permute(&[2, 0, 1]).unwrap();
    assert!(!p.is_contiguous());
    assert_close("permute", &p, &r::permute(&h, &[2, 0, 1]), 0.0, 0.0);
    assert_close(
        "transpose",
        &t.transpose(0, -1).unwrap(),
        &r::permute(&h, &[2, 1, 0]),
        0.0,
        0.0,
    );
    assert_close(
        "narrow",
        &t.narrow(1, 1, 2).unwrap(),
        &r::slice(&h, 1, 1, 3, 1),
        0.0,
        0.0,
    );
    assert_close(
        "slice step 2",
        &t.slice(2, 0, 5, 2).unwrap(),
        &r::slice(&h, 2, 0, 5, 2),
        0.0,
        0.0,
    );
    assert_close(
        "slice step 3 from 1",
        &t.slice(2, 1, 5, 3).unwrap(),
        &r::slice(&h, 2, 1, 5, 3),
        0.0,
        0.0,
    );
    assert_eq!(t.slice(0, 2, 2, 1).unwrap().shape(), &[0, 4, 5]);
    let re = t.reshape(&[-1, 5]).unwrap();
    assert_eq!(re.shape(), &[12, 5]);
    assert_close(
        "reshape",
        &re,
        &HostTensor::new(&[12, 5], h.data.clone()),
        0.0,
        0.0,
    );
    // Reshaping a non-contiguous view copies it first.
    let pt = p.reshape(&[5, 12]).unwrap();
    assert_close(
        "reshape of permuted",
        &pt,
        &HostTensor::new(&[5, 12], r::permute(&h, &[2, 0, 1]).data),
        0.0,
        0.0,
    );
    let u = t.unsqueeze(1).unwrap();
    assert_eq!(u.shape(), &[3, 1, 4, 5]);
    assert_eq!(u.squeeze(1).unwrap().shape(), &[3, 4, 5]);
    assert_eq!(t.unsqueeze(3).unwrap().shape(), &[3, 4, 5, 1]);
    let row = t.narrow(0, 1, 1).unwrap();
    let e = row.expand(&[2, 3, 4, 5]).unwrap();
    let hrow = r::slice(&h, 0, 1, 2, 1);
    assert_close(
        "expand",
        &e,
        &r::zip(
            &hrow,
            &HostTensor::new(&[2, 3, 4, 5], vec![0.0; 120]),
            |a, _| a,
        ),
        0.0,
        0.0,
    );
    assert_close(
        "contiguous of permuted",
        &p.contiguous().unwrap(),
        &r::permute(&h, &[2, 0, 1]),
        0.0,
        0.0,
    );
}

#[device_test]
fn cat_and_stack_match_reference() {
    let mut rng = HostRng::new(21);
    let (a, ha) = random(&mut rng, &[2, 3, 4], -1.0, 1.0);
    let (b, hb) = random(&mut rng, &[2, 5, 4], -1.0, 1.0);
    let empty = Tensor::zeros(&[2, 0, 4], &device()).unwrap();
    let hempty = HostTensor::new(&[2, 0, 4], vec![]);
    assert_close(
        "cat dim 1",
        &Tensor::cat(&[&a, &empty, &b], 1).unwrap(),
        &r::cat(&[&ha, &hempty, &hb], 1),
        0.0,
        0.0,
    );
    let at = a.transpose(0, 2).unwrap();
    let hat = r::permute(&ha, &[2, 1, 0]);
    assert_close(
        "cat of transposed views",
        &Tensor::cat(&[&at, &at], 0).unwrap(),
        &r::cat(&[&hat, &hat], 0),
        0.0,
        0.0,
    );
    let (c, hc) = random(&mut rng, &[2, 3, 4], -1.0, 1.0);
    let s = Tensor::stack(&[&a, &c], 1).unwrap();
    assert_eq!(s.shape(), &[2, 2, 3, 4]);
    let unsq = |h: &HostTensor| HostTensor::new(&[2, 1, 3, 4], h.data.clone());
    assert_close("stack", &s, &r::cat(&[&unsq(&ha), &unsq(&hc)], 1), 0.0, 0.0);
    let ints = Tensor::from_slice(&[1i32, 2], &[2], &device()).unwrap();
    assert_eq!(
        Tensor::cat(&[&ints, &ints], 0)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        vec![1, 2, 1, 2]
    );
}

#[device_test]
fn casts_round_trip_where_the_device_stores_the_type() {
    let d = device();
    let values = [0.5f32, -1.25, 3.0, 65504.0, 1.0e-3];
    let t = Tensor::from_slice(&values, &[5], &d).unwrap();
    let i = t.to_dtype(DType::I32).unwrap();
    assert_eq!(i.to_vec::<i32>().unwrap(), vec![0, -1, 3, 65504, 0]);
    assert_eq!(
        i.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, -1.0, 3.0, 65504.0, 0.0]
    );
    for (dtype, rel) in [(DType::F16, 1e-3f32), (DType::BF16, 8e-3)] {
        if d.supports(dtype) {
            let back = t
                .to_dtype(dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            for (b, v) in back.iter().zip(values) {
                assert!(
                    (b - v).abs() <= rel * v.abs(),
                    "{dtype} round trip of {v} gave {b}"
                );
            }
        } else {
            let err = t.to_dtype(dtype).unwrap_err().to_string();
            assert!(
                err.contains(&dtype.to_string()) && err.contains("cannot store"),
                "{err}"
            );
        }
    }
    if d.supports(DType::F16) {
        let h = Tensor::from_slice(&[dynlab::f16::from_f32(1.5)], &[1], &d).unwrap();
        assert_eq!(h.to_vec::<dynlab::f16>().unwrap()[0].to_f32(), 1.5);
        let err = h.exp().unwrap_err().to_string();
        assert!(err.contains("Tensor::exp") && err.contains("f16"), "{err}");
    }
}
