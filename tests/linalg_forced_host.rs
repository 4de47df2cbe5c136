//! `DYNLAB_FORCE_HOST_EIGH=1` sends every eigendecomposition and SVD to the f64 host solver, and the
//! result says so. A binary of its own: the variable is process-wide.

use dynlab::runtime::linalg::{host_fallbacks, EighOptions, EighPath, FallbackReason};
use dynlab::Tensor;
use dynlab_test_support::device_test;

#[device_test]
fn forced_host_path_is_taken_and_reported() {
    std::env::set_var("DYNLAB_FORCE_HOST_EIGH", "1");
    let device = dynlab_test_support::device();
    let a = Tensor::from_slice(&[2.0f32, 1.0, 1.0, 2.0], &[2, 2], &device).unwrap();
    let before = host_fallbacks();
    let e = a.eigh(EighOptions::default()).unwrap();
    assert_eq!(e.path, EighPath::Host(FallbackReason::Forced));
    let v = e.values.to_vec::<f32>().unwrap();
    assert!(
        (v[0] - 1.0).abs() < 1e-6 && (v[1] - 3.0).abs() < 1e-6,
        "{v:?}"
    );
    let svd = a.svd(EighOptions::default()).unwrap();
    assert_eq!(svd.path, EighPath::Host(FallbackReason::Forced));
    let s = svd.s.to_vec::<f32>().unwrap();
    assert!(
        (s[0] - 3.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6,
        "{s:?}"
    );
    assert_eq!(host_fallbacks(), before + 2);
}
