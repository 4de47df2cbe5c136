//! Seeded test inputs, the shape and layout cases every op test covers, and comparison against the
//! f64 oracle. NaN never passes unless the oracle is NaN.

use crate::device;
use crate::reference::{permute, HostTensor};
use dynlab_runtime::Tensor;

/// SplitMix64: a tiny seeded generator for test inputs.
pub struct HostRng(u64);

impl HostRng {
    pub fn new(seed: u64) -> HostRng {
        HostRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (lo as f64 + u * (hi - lo) as f64) as f32
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A random f32 tensor on the device and its f64 host twin.
pub fn random(rng: &mut HostRng, shape: &[usize], lo: f32, hi: f32) -> (Tensor, HostTensor) {
    let n = shape.iter().product();
    let data = rng.vec(n, lo, hi);
    (
        Tensor::from_slice(&data, shape, &device()).unwrap(),
        HostTensor::from_f32(shape, &data),
    )
}

/// Asserts shape equality and `|got - want| <= atol + rtol·|want|` everywhere; NaN must match NaN
/// and infinities must match exactly.
pub fn assert_close(what: &str, got: &Tensor, want: &HostTensor, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), &want.shape[..], "{what}: shape");
    let values = got.to_vec::<f32>().unwrap();
    for (i, (&g, &w)) in values.iter().zip(&want.data).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{what}: element {i} is {g}, expected {w} (atol {atol}, rtol {rtol})"
        );
    }
}

/// The shapes every elementwise test runs on: empty, scalar, size 1, odd sizes not a multiple of
/// the vector width, and a 3-D block.
pub const SHAPES: &[&[usize]] = &[&[0], &[], &[1], &[7], &[33, 5], &[3, 4, 17]];

/// Layout variants of one random tensor: contiguous, transposed (non-contiguous), and an offset
/// view into a larger buffer; each with its f64 twin in logical order.
pub fn layouts(
    rng: &mut HostRng,
    shape: &[usize],
    lo: f32,
    hi: f32,
) -> Vec<(String, Tensor, HostTensor)> {
    let (t, h) = random(rng, shape, lo, hi);
    let mut out = vec![(format!("contiguous {shape:?}"), t.clone(), h.clone())];
    if shape.len() >= 2 {
        let r = shape.len() as isize;
        let mut dims: Vec<usize> = (0..shape.len()).collect();
        dims.swap(0, shape.len() - 1);
        out.push((
            format!("transposed {shape:?}"),
            t.transpose(0, r - 1).unwrap(),
            permute(&h, &dims),
        ));
    }
    let n: usize = shape.iter().product();
    let mut data = rng.vec(3, lo, hi);
    data.extend(h.data.iter().map(|&v| v as f32));
    let big = Tensor::from_slice(&data, &[n + 3], &device()).unwrap();
    let dims: Vec<isize> = shape.iter().map(|&s| s as isize).collect();
    let view = big.narrow(0, 3, n).unwrap().reshape(&dims).unwrap();
    out.push((format!("offset view {shape:?}"), view, h));
    out
}

/// A tensor's values as f64, row-major.
pub fn host_f64(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect()
}
