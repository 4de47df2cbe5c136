//! Device transforms against plain f64 host implementations on random inputs (sizes 1, odd and
//! non-square), PyTorch's bilinear weights on known cases, and seeded determinism of the random ones.

use crate::assert_fails;
use dynlab::data::{
    bilinear_matrix, digits, shipped_digits_dir, Flatten, Normalize, Pipeline, RandomCrop,
    RandomHorizontalFlip, Resize, Transform, Transformed,
};
use dynlab::train::{BatchSource, Dataset, Loader};
use dynlab::{Rng, Tensor};
use dynlab_test_support::reference::HostTensor;
use dynlab_test_support::{assert_close, device, device_test, random, HostRng};

/// Element `[n, c, y, x]` of a row-major `[N, C, H, W]` array.
fn at(x: &[f64], [_, c, h, w]: [usize; 4], n: usize, ch: usize, y: usize, xx: usize) -> f64 {
    x[((n * c + ch) * h + y) * w + xx]
}

fn host(shape: [usize; 4], data: Vec<f64>) -> HostTensor {
    HostTensor {
        shape: shape.to_vec(),
        data,
    }
}

#[device_test]
fn normalize_subtracts_the_mean_and_divides_by_the_std_per_channel() {
    let mut rng = HostRng::new(1);
    let shape = [3, 2, 4, 5];
    let (x, hx) = random(&mut rng, &shape, 0.0, 1.0);
    let (mean, std) = ([0.25f32, 0.75], [0.5f32, 2.0]);
    let y = Normalize::new(&mean, &std).unwrap().normalize(&x).unwrap();
    let want: Vec<f64> = (0..hx.data.len())
        .map(|i| {
            let c = i / 20 % 2;
            (hx.data[i] - mean[c] as f64) / std[c] as f64
        })
        .collect();
    assert_close("normalize", &y, &host(shape, want), 1e-6, 1e-6);
    assert_fails(
        Normalize::new(&[0.0], &[0.0]),
        "Normalize::new",
        &["std > 0"],
    );
    let three = Normalize::new(&[0.0; 3], &[1.0; 3]).unwrap();
    assert_fails(three.normalize(&x), "Normalize::normalize", &["[N, 3, …]"]);
}

#[test]
fn bilinear_weights_are_pytorchs_align_corners_false() {
    // F.interpolate([a, b], size=4, mode="linear", align_corners=False) = [a, .75a+.25b, .25a+.75b, b].
    let up = bilinear_matrix(2, 4);
    assert_eq!(up, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
    // Down by 2 averages neighbours; down to 1 takes the middle (sample 1.5 of 4).
    assert_eq!(
        bilinear_matrix(4, 2),
        vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]
    );
    assert_eq!(bilinear_matrix(4, 1), vec![0.0, 0.5, 0.5, 0.0]);
    assert_eq!(bilinear_matrix(1, 3), vec![1.0, 1.0, 1.0]);
    for (i, o) in [(3, 7), (8, 32), (5, 2), (7, 7)] {
        let a = bilinear_matrix(i, o);
        for row in a.chunks(i) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{i}→{o}");
        }
    }
}

/// PyTorch's bilinear resize (align_corners=False), per output pixel, in f64.
fn resize_host(x: &[f64], s: [usize; 4], ho: usize, wo: usize) -> Vec<f64> {
    let [n, c, h, w] = s;
    let coord = |o: usize, out: usize, inp: usize| {
        let src = ((o as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(inp - 1);
        (i0, (i0 + 1).min(inp - 1), src - i0 as f64)
    };
    let mut out = Vec::with_capacity(n * c * ho * wo);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..ho {
                let (y0, y1, ly) = coord(oy, ho, h);
                for ox in 0..wo {
                    let (x0, x1, lx) = coord(ox, wo, w);
                    let p = |y, xx| at(x, s, b, ch, y, xx);
                    let top = (1.0 - lx) * p(y0, x0) + lx * p(y0, x1);
                    let bottom = (1.0 - lx) * p(y1, x0) + lx * p(y1, x1);
                    out.push((1.0 - ly) * top + ly * bottom);
                }
            }
        }
    }
    out
}

#[device_test]
fn resize_matches_bilinear_interpolation_on_the_host() {
    let mut rng = HostRng::new(2);
    let cases = [
        ([2, 3, 1, 1], (3, 2)),
        ([2, 1, 8, 8], (16, 16)),
        ([1, 2, 5, 3], (2, 7)),
        ([3, 1, 4, 6], (4, 6)),
        ([1, 2, 3, 5], (1, 1)),
        ([1, 1, 7, 2], (3, 9)),
    ];
    for (shape, (ho, wo)) in cases {
        let (x, hx) = random(&mut rng, &shape, -1.0, 1.0);
        let y = Resize::new(ho, wo).unwrap().resize(&x).unwrap();
        let want = resize_host(&hx.data, shape, ho, wo);
        let what = format!("{shape:?} → {ho}×{wo}");
        assert_close(
            &what,
            &y,
            &host([shape[0], shape[1], ho, wo], want),
            1e-5,
            1e-5,
        );
    }
    let x = Tensor::zeros(&[2, 3], &device()).unwrap();
    assert_fails(
        Resize::new(4, 4).unwrap().resize(&x),
        "Resize::resize",
        &["[N, C, H, W]"],
    );
    assert_fails(Resize::new(0, 4), "Resize::new", &["0 × 4"]);
}

#[device_test]
fn the_digits_resize_to_32_by_32() {
    let data = digits(shipped_digits_dir(), &device()).unwrap();
    let few = data.inputs.narrow(0, 0, 4).unwrap();
    let big = Resize::new(32, 32).unwrap().resize(&few).unwrap();
    assert_eq!(big.shape(), &[4, 1, 32, 32]);
    let hx: Vec<f64> = few
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let want = resize_host(&hx, [4, 1, 8, 8], 32, 32);
    assert_close(
        "digits 32×32",
        &big,
        &host([4, 1, 32, 32], want),
        1e-5,
        1e-5,
    );
}

/// torchvision's RandomCrop at given offsets (padded coordinates), zero outside the image.
fn crop_host(
    x: &[f64],
    s: [usize; 4],
    size: (usize, usize),
    pad: usize,
    offsets: &[(usize, usize)],
) -> Vec<f64> {
    let [n, c, h, w] = s;
    let mut out = Vec::new();
    for (b, &(i, j)) in offsets.iter().enumerate().take(n) {
        for ch in 0..c {
            for a in 0..size.0 {
                for bb in 0..size.1 {
                    let (y, xx) = (
                        (i + a) as isize - pad as isize,
                        (j + bb) as isize - pad as isize,
                    );
                    let inside = y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w;
                    out.push(if inside {
                        at(x, s, b, ch, y as usize, xx as usize)
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    out
}

#[device_test]
fn random_crop_matches_padded_crops_at_the_drawn_offsets() {
    let mut hrng = HostRng::new(3);
    let d = device();
    // (images, crop, padding): padding larger than the image, size 1, non-square, no padding.
    let cases = [
        ([6, 2, 5, 4], (4, 3), 2),
        ([3, 1, 1, 1], (1, 1), 0),
        ([4, 3, 2, 3], (3, 5), 3),
        ([2, 1, 6, 6], (6, 6), 0),
        ([5, 2, 3, 7], (2, 2), 1),
    ];
    for (shape, size, pad) in cases {
        let (x, hx) = random(&mut hrng, &shape, -1.0, 1.0);
        let crop = RandomCrop::new(size.0, size.1, pad).unwrap();
        let mut rng = Rng::new(11);
        let offsets = crop
            .draw_offsets(shape[0], shape[2], shape[3], &mut rng, &d)
            .unwrap();
        let (ry, rx) = (shape[2] + 2 * pad - size.0, shape[3] + 2 * pad - size.1);
        assert!(
            offsets.iter().all(|&(i, j)| i <= ry && j <= rx),
            "{offsets:?}"
        );
        let y = crop.crop_at(&x, &offsets).unwrap();
        let want = crop_host(&hx.data, shape, size, pad, &offsets);
        let out = [shape[0], shape[1], size.0, size.1];
        assert_close(&format!("crop {shape:?}"), &y, &host(out, want), 0.0, 0.0);
        // apply draws the same offsets from the same generator state.
        let again = crop.apply(&x, &mut Rng::new(11)).unwrap();
        assert_eq!(again.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
    let crop = RandomCrop::new(4, 4, 1).unwrap();
    let offsets = crop.draw_offsets(400, 4, 4, &mut Rng::new(0), &d).unwrap();
    let distinct: std::collections::BTreeSet<_> = offsets.iter().collect();
    assert_eq!(distinct.len(), 9, "every offset of 0..=2 × 0..=2 drawn");
    let other = crop.draw_offsets(400, 4, 4, &mut Rng::new(1), &d).unwrap();
    assert_ne!(offsets, other);
    let x = Tensor::zeros(&[1, 1, 2, 2], &d).unwrap();
    let r = RandomCrop::new(5, 5, 1)
        .unwrap()
        .apply(&x, &mut Rng::new(0));
    assert_fails(
        r,
        "RandomCrop::draw_offsets",
        &["padded images of at least 5 × 5"],
    );
    let r = crop.crop_at(&Tensor::zeros(&[2, 1, 4, 4], &d).unwrap(), &[(0, 0)]);
    assert_fails(r, "RandomCrop::crop_at", &["1 offsets for 2 images"]);
}

#[device_test]
fn random_horizontal_flip_mirrors_the_chosen_samples() {
    let mut hrng = HostRng::new(4);
    let d = device();
    for shape in [[8, 2, 3, 5], [3, 1, 1, 1], [5, 3, 4, 2]] {
        let (x, hx) = random(&mut hrng, &shape, -1.0, 1.0);
        let flip = RandomHorizontalFlip::default();
        let mask = flip.draw_mask(shape[0], &mut Rng::new(5), &d).unwrap();
        let m = mask.to_vec::<f32>().unwrap();
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
        let y = flip.flip_where(&x, &mask).unwrap();
        let [n, c, h, w] = shape;
        let mut want = Vec::new();
        for (b, &flipped) in m.iter().enumerate().take(n) {
            for ch in 0..c {
                for yy in 0..h {
                    for xx in 0..w {
                        let src = if flipped == 1.0 { w - 1 - xx } else { xx };
                        want.push(at(&hx.data, shape, b, ch, yy, src));
                    }
                }
            }
        }
        assert_close(&format!("flip {shape:?}"), &y, &host(shape, want), 0.0, 0.0);
        let again = flip.apply(&x, &mut Rng::new(5)).unwrap();
        assert_eq!(again.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    }
    let x = Tensor::rand_uniform(&[64, 1, 2, 2], 0.0, 1.0, &mut Rng::new(0), &d).unwrap();
    let mask = |p, seed| {
        let f = RandomHorizontalFlip::new(p).unwrap();
        f.draw_mask(64, &mut Rng::new(seed), &d)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    assert!(mask(0.0, 1).iter().all(|&v| v == 0.0));
    assert!(mask(1.0, 1).iter().all(|&v| v == 1.0));
    let half = mask(0.5, 1);
    let flips = half.iter().filter(|&&v| v == 1.0).count();
    assert!(
        (16..=48).contains(&flips),
        "{flips} of 64 flipped at p = 0.5"
    );
    assert_ne!(half, mask(0.5, 2));
    let unflipped = RandomHorizontalFlip::new(0.0)
        .unwrap()
        .apply(&x, &mut Rng::new(0))
        .unwrap();
    assert_eq!(
        unflipped.to_vec::<f32>().unwrap(),
        x.to_vec::<f32>().unwrap()
    );
    assert_fails(
        RandomHorizontalFlip::new(1.5),
        "RandomHorizontalFlip::new",
        &["p = 1.5"],
    );
}

#[device_test]
fn pipelines_flatten_and_augment_a_loader() {
    let d = device();
    let mut hrng = HostRng::new(6);
    let (x, hx) = random(&mut hrng, &[3, 2, 2, 3], 0.0, 1.0);
    let flat = Flatten.flatten(&x).unwrap();
    assert_eq!(flat.shape(), &[3, 12]);
    assert_close(
        "flatten",
        &flat,
        &HostTensor {
            shape: vec![3, 12],
            data: hx.data.clone(),
        },
        0.0,
        0.0,
    );

    let labels = Tensor::from_vec(vec![0i32, 1, 2], &[3], &d).unwrap();
    let data = Dataset::new(x, labels).unwrap();
    let augment = Pipeline::new()
        .then(RandomCrop::new(2, 2, 1).unwrap())
        .then(RandomHorizontalFlip::default())
        .then(Resize::new(4, 4).unwrap())
        .then(Normalize::new(&[0.5, 0.5], &[0.25, 0.25]).unwrap())
        .then(Flatten);
    let mut source = Transformed::new(Loader::new(data, Some(2)).unwrap(), augment);
    let mut rng = Rng::new(0);
    let mut rows = 0;
    while let Some(b) = source.next_batch(&mut rng).unwrap() {
        assert_eq!(b.inputs.shape(), &[b.rows(), 32]);
        rows += b.rows();
    }
    assert_eq!(rows, 3);
}
