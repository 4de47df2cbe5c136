//! Bad input gives a clear error naming the op, what it got and what it expected.

use dynlab::{Device, Tensor};
use dynlab_test_support::*;

#[device_test]
fn wrong_shapes_are_named() {
    let d = device();
    let a = Tensor::zeros(&[2, 3], &d).unwrap();
    let b = Tensor::zeros(&[4], &d).unwrap();
    let msg = a.add(&b).unwrap_err().to_string();
    assert!(
        msg.contains("Tensor::add")
            && msg.contains("[2, 3]")
            && msg.contains("[4]")
            && msg.contains("broadcast"),
        "{msg}"
    );
    let msg = Tensor::from_slice(&[1.0f32, 2.0], &[3], &d)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("from_slice") && msg.contains("2 values") && msg.contains("3 values"),
        "{msg}"
    );
    let msg = a.reshape(&[4, 2]).unwrap_err().to_string();
    assert!(
        msg.contains("reshape") && msg.contains("6 elements"),
        "{msg}"
    );
    let msg = a.permute(&[0, 0]).unwrap_err().to_string();
    assert!(
        msg.contains("permute") && msg.contains("permutation"),
        "{msg}"
    );
    let msg = a.expand(&[3, 3]).unwrap_err().to_string();
    assert!(msg.contains("expand"), "{msg}");
    let msg = Tensor::cat(&[&a, &b], 0).unwrap_err().to_string();
    assert!(msg.contains("cat"), "{msg}");
    let msg = a.narrow(1, 2, 2).unwrap_err().to_string();
    assert!(msg.contains("narrow") && msg.contains("size 3"), "{msg}");
    let msg = a.item().unwrap_err().to_string();
    assert!(
        msg.contains("item") && msg.contains("exactly one element"),
        "{msg}"
    );
}

#[device_test]
fn bad_axes_are_named() {
    let a = Tensor::zeros(&[2, 3], &device()).unwrap();
    for (msg, axis) in [
        (a.sum(2, false).unwrap_err().to_string(), 2),
        (a.softmax(-3).unwrap_err().to_string(), -3),
        (a.transpose(0, 5).unwrap_err().to_string(), 5),
    ] {
        assert!(
            msg.contains(&format!("axis {axis} is out of range"))
                && msg.contains("rank 2")
                && msg.contains("-2..2"),
            "{msg}"
        );
    }
    let msg = a.squeeze(0).unwrap_err().to_string();
    assert!(msg.contains("squeeze") && msg.contains("size 1"), "{msg}");
}

#[device_test]
fn bad_values_are_named() {
    let d = device();
    let a = Tensor::zeros(&[2], &d).unwrap();
    assert!(a
        .clamp(1.0, 0.0)
        .unwrap_err()
        .to_string()
        .contains("min <= max"));
    assert!(Tensor::arange(0.0, 1.0, 0.0, &d)
        .unwrap_err()
        .to_string()
        .contains("non-zero step"));
    assert!(
        Tensor::rand_uniform(&[2], 1.0, 1.0, &mut dynlab::Rng::new(0), &d)
            .unwrap_err()
            .to_string()
            .contains("low < high")
    );
    assert!(
        Tensor::rand_normal(&[2], 0.0, -1.0, &mut dynlab::Rng::new(0), &d)
            .unwrap_err()
            .to_string()
            .contains("std >= 0")
    );
    assert!(Tensor::randint(&[2], 3, 3, &mut dynlab::Rng::new(0), &d)
        .unwrap_err()
        .to_string()
        .contains("low < high"));
    assert!(a
        .norm(f32::NAN, 0, false)
        .unwrap_err()
        .to_string()
        .contains("norm"));
    let msg = a.to_vec::<i32>().unwrap_err().to_string();
    assert!(msg.contains("to_vec") && msg.contains("f32"), "{msg}");
    let msg = Tensor::zeros(&[usize::MAX, 2], &d).unwrap_err().to_string();
    assert!(msg.contains("elements"), "{msg}");
}

#[device_test]
fn unknown_devices_say_what_to_set_or_build() {
    let msg = Device::from_name("tpu").unwrap_err().to_string();
    assert!(
        msg.contains("`tpu`") && msg.contains("wgpu") && msg.contains("cuda:N"),
        "{msg}"
    );
    let msg = Device::from_name("wgpu:discrete:x")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a device index"), "{msg}");
    if !cfg!(feature = "cuda") {
        let msg = Device::from_name("cuda:0").unwrap_err().to_string();
        assert!(msg.contains("--features cuda"), "{msg}");
    }
    if !cfg!(feature = "metal") {
        assert!(Device::from_name("metal")
            .unwrap_err()
            .to_string()
            .contains("--features metal"));
    }
}

#[device_test]
fn the_default_device_reports_itself() {
    let d = device();
    assert!(
        d.name().starts_with("wgpu")
            || d.name().starts_with("cuda")
            || d.name().starts_with("vulkan"),
        "{}",
        d.name()
    );
    d.sync().unwrap();
    let before = d.memory_in_use().unwrap();
    let t = Tensor::zeros(&[1 << 20], &d).unwrap();
    assert!(
        d.memory_in_use().unwrap() >= (1 << 22).min(before + (1 << 22)),
        "a 4 MiB tensor did not show in memory use"
    );
    drop(t);
}
