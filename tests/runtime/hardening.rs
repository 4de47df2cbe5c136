//! Regression tests for the bad inputs that were once accepted: geometry arithmetic that wrapped,
//! views longer than a kernel can index, shape products that overflowed beside a zero, buffers past
//! the device's limit, launches past its grid, and messages that did not say what was wrong.

use dynlab::runtime::MAX_ELEMENTS;
use dynlab::runtime::{Conv2dOptions, Window};
use dynlab::{autodiff::hvp, Device, Error, Tensor};
use dynlab_test_support::{device, device_test};

fn conv_error(input: [usize; 4], kernel: [usize; 2], options: Conv2dOptions) -> String {
    let x = Tensor::zeros(&input, &device()).unwrap();
    let w = Tensor::zeros(
        &[input[1], input[1] / options.groups, kernel[0], kernel[1]],
        &device(),
    );
    match w {
        Ok(w) => x.conv2d(&w, None, options).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    }
}

#[device_test]
fn window_arithmetic_that_would_wrap_is_an_error() {
    let big = usize::MAX / 2 + 1;
    for (what, kernel, options) in [
        (
            "padding",
            [1, 1],
            Conv2dOptions {
                padding: [big, 0],
                ..Default::default()
            },
        ),
        (
            "dilation",
            [3, 1],
            Conv2dOptions {
                dilation: [big, 1],
                ..Default::default()
            },
        ),
        (
            "stride",
            [1, 1],
            Conv2dOptions {
                stride: [1 << 40, 1],
                ..Default::default()
            },
        ),
    ] {
        let e = Window::new("test", &[1, 1, 4, 4], kernel, options).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Value { .. }), "{what}: {text}");
        assert!(
            text.contains("test") && text.contains(&options.padding[0].to_string()),
            "{what}: {text}"
        );
    }
    // Once accepted with the same output as padding 0: now the window itself is rejected.
    let e = conv_error(
        [1, 1, 4, 4],
        [1, 1],
        Conv2dOptions {
            padding: [usize::MAX, 0],
            ..Default::default()
        },
    );
    assert!(e.starts_with("conv2d: ") && e.contains("padding"), "{e}");
    // Pooling with a kernel area past 32 bits.
    let x = Tensor::zeros(&[1, 1, 1, 1], &device()).unwrap();
    let pad = Conv2dOptions {
        padding: [1 << 20, 1 << 20],
        ..Default::default()
    };
    let e = x
        .avg_pool2d([1 << 20, 1 << 20], pad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("avg_pool2d") && e.contains("kernel areas"),
        "{e}"
    );
}

#[device_test]
fn views_cannot_outgrow_what_kernels_index() {
    let one = Tensor::ones(&[1], &device()).unwrap();
    for len in [(1usize << 31), 1 << 32, 1 << 40, usize::MAX] {
        let e = one.expand(&[len]).unwrap_err().to_string();
        assert!(
            e.contains("Tensor::expand") && e.contains(&len.to_string()),
            "{e}"
        );
    }
    // Two axes that are each fine but together past the limit.
    let e = one
        .reshape(&[1, 1])
        .unwrap()
        .expand(&[1 << 16, 1 << 16])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Tensor::expand"), "{e}");
    // The largest allowed view is a view, not an error (and nothing is read from it here).
    let widest = one.expand(&[MAX_ELEMENTS]).unwrap();
    assert_eq!(widest.numel(), MAX_ELEMENTS);
    // narrow's end is checked.
    let x = Tensor::zeros(&[4], &device()).unwrap();
    let e = x.narrow(0, usize::MAX, 2).unwrap_err().to_string();
    assert!(
        e.contains("Tensor::narrow") && e.contains("start + len"),
        "{e}"
    );
    // A slice step far beyond the buffer keeps the one element it selects.
    let s = Tensor::arange(0.0, 4.0, 1.0, &device())
        .unwrap()
        .slice(0, 1, 4, usize::MAX)
        .unwrap();
    assert_eq!(s.contiguous().unwrap().to_vec::<f32>().unwrap(), [1.0]);
}

#[device_test]
fn shapes_beside_a_zero_cannot_overflow() {
    let empty = Tensor::zeros(&[0], &device()).unwrap();
    let big = 1isize << 40;
    for shape in [[0, big, big], [big, big, 0], [0, isize::MAX, 2]] {
        let e = empty.reshape(&shape).unwrap_err().to_string();
        assert!(e.contains("Tensor::reshape"), "{shape:?}: {e}");
    }
    let e = Tensor::zeros(&[0, 1 << 40, 1 << 40], &device())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Tensor::zeros") || e.contains("Tensor::full"),
        "{e}"
    );
    // Empty tensors of ordinary shapes still work.
    let ok = empty.reshape(&[0, 5, -1]);
    assert!(
        ok.is_err(),
        "the inferred size of an empty tensor is ambiguous"
    );
    assert_eq!(empty.reshape(&[0, 5, 7]).unwrap().shape(), &[0, 5, 7]);
    let e = Tensor::cat(&[&empty, &empty], 0).unwrap();
    assert_eq!(e.shape(), &[0]);
}

#[device_test]
fn buffers_past_the_device_limit_are_refused_at_the_call() {
    let d = device();
    let limit = d.limits().max_buffer_bytes;
    let past = (limit / 4 + 1) as usize;
    let e = Tensor::zeros(&[past], &d).unwrap_err();
    if past <= MAX_ELEMENTS {
        let text = e.to_string();
        assert!(matches!(e, Error::DeviceLimit { .. }), "{text}");
        assert!(
            text.contains("Tensor::zeros")
                && text.contains(&limit.to_string())
                && text.contains(d.name()),
            "{text}"
        );
    } else {
        // On devices with larger buffers, the tensor size limit comes first.
        assert!(e.to_string().contains("at most"), "{e}");
    }
    // The device is unharmed: ordinary work still runs and reads back.
    let x = Tensor::full(&[3], 2.0, &d).unwrap();
    assert_eq!(x.sum_all().unwrap().item().unwrap(), 6.0);
    let data = vec![0f32; 8];
    assert!(Tensor::from_slice(&data, &[8], &d).is_ok());
}

#[device_test]
fn launches_past_the_grid_limit_are_refused() {
    let d = device();
    let max_x = d.limits().max_cube_count[0] as usize;
    // One image whose pixel count needs more cubes along x than the device has (256 pixels each).
    let side = ((max_x * 256) as f64).sqrt() as usize + 2;
    if side * side * 4 > d.limits().max_buffer_bytes as usize {
        return;
    }
    let x = Tensor::zeros(&[1, 1, side, side], &d).unwrap();
    let window = Window::new("test", x.shape(), [1, 1], Conv2dOptions::default()).unwrap();
    let e = x.im2col(&window).unwrap_err();
    assert!(matches!(e, Error::DeviceLimit { .. }), "{e}");
    assert!(e.to_string().contains("im2col"), "{e}");
    assert_eq!(
        Tensor::ones(&[2], &d)
            .unwrap()
            .sum_all()
            .unwrap()
            .item()
            .unwrap(),
        2.0
    );
}

#[test]
fn device_names_that_do_not_exist_list_what_does() {
    for name in ["wgpu:discrete:7", "wgpu:integrated:9"] {
        let e = Device::from_name(name).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
        for leak in ["unwrap", "RecvError", "panicked"] {
            assert!(!e.contains(leak), "{e}");
        }
        if !e.contains("no GPU adapter was found") {
            assert!(
                e.contains("adapters are") && e.contains("DYNLAB_DEVICE"),
                "{e}"
            );
            assert!(
                !e.contains("install"),
                "an installed driver is not to be installed again: {e}"
            );
        }
    }
    let e = Device::from_name("tpu").unwrap_err().to_string();
    assert!(
        e.contains("unknown device name") && e.contains("wgpu:cpu"),
        "{e}"
    );
}

#[device_test]
fn messages_name_the_shapes() {
    let a = Tensor::zeros(&[2, 3, 4, 5], &device()).unwrap();
    let b = Tensor::zeros(&[3, 2, 5, 6], &device()).unwrap();
    let e = a.matmul(&b).unwrap_err().to_string();
    assert!(
        e.contains("[2, 3, 4, 5]") && e.contains("[3, 2, 5, 6]"),
        "{e}"
    );
    let p = Tensor::zeros(&[2, 2], &device()).unwrap();
    let v = Tensor::zeros(&[4], &device()).unwrap();
    let e = hvp(|x| x[0].sum_all(), &[p], &[v]).unwrap_err().to_string();
    assert!(e.contains("[[2, 2]]") && e.contains("[[4]]"), "{e}");
}

#[device_test]
fn eigh_takes_finite_matrices_whose_norm_overflows_f32() {
    use dynlab::runtime::linalg::EighOptions;
    for scale in [1e30f32, 1e-30] {
        let a = Tensor::from_slice(
            &[2.0 * scale, scale, scale, 2.0 * scale],
            &[2, 2],
            &device(),
        )
        .unwrap();
        let e = a.eigh(EighOptions::default()).unwrap();
        let v = e.values.to_vec::<f32>().unwrap();
        for (got, want) in v.iter().zip([scale, 3.0 * scale]) {
            assert!((got - want).abs() <= 1e-5 * want.abs(), "{v:?} vs {scale}");
        }
    }
    let bad = Tensor::from_slice(&[f32::INFINITY, 0.0, 0.0, 1.0], &[2, 2], &device()).unwrap();
    let e = bad.eigh(EighOptions::default()).unwrap_err().to_string();
    assert!(e.contains("NaN or Inf"), "{e}");
}
