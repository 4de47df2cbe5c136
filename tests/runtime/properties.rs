//! The bad-input property suite: a seeded generator calls the public ops with random shapes, axes,
//! sizes, views and dtypes — small ones, and sizes near and past every limit (0, 1, 2³¹ − 1, 2³¹,
//! 2³², 2⁶³, usize::MAX). Each call must either return an error that names its op, or succeed
//! with a result that matches the f64 oracle (the shape, for views too large to read back). A
//! panic, an accepted bad input, a rejected valid one or a wrong value fails the test with the
//! call that did it.
//!
//! CI runs [`CI_CALLS`] calls with a fixed seed; `DYNLAB_PROPERTY_CALLS=N` (and
//! `DYNLAB_PROPERTY_SEED=S`) run more.

use dynlab::runtime::{Conv2dOptions, MAX_ELEMENTS};
use dynlab::{DType, Tensor};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::{device, device_test, random, HostRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls that returned values checked against the oracle, shapes only, and errors.
static OUTCOMES: [AtomicUsize; 3] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

/// Calls per CI run (a few seconds on Mesa lavapipe).
const CI_CALLS: usize = 5000;

/// Sizes at and past every boundary.
const EXTREMES: [usize; 7] = [0, 1, MAX_ELEMENTS, 1 << 31, 1 << 32, 1 << 63, usize::MAX];

/// Largest result read back for comparison.
const READ_BACK: usize = 1 << 14;

/// What the oracle says a call must do.
enum Expect {
    /// Succeed with these values.
    Values(HostTensor),
    /// Succeed with this shape (too large to read back).
    Shape(Vec<usize>),
    /// Fail with an error naming the op.
    Error,
}

struct Gen {
    rng: HostRng,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.below(xs.len())]
    }

    /// A size: mostly 0..=4, sometimes an extreme.
    fn size(&mut self) -> usize {
        if self.chance(0.1) {
            self.pick(&EXTREMES)
        } else {
            self.rng.below(5)
        }
    }

    fn small_shape(&mut self, max_rank: usize) -> Vec<usize> {
        let rank = self.rng.below(max_rank + 1);
        (0..rank).map(|_| self.rng.below(5)).collect()
    }

    /// An axis in `-rank-1..=rank` (a third of them invalid), sometimes an extreme.
    fn axis(&mut self, rank: usize) -> isize {
        if self.chance(0.05) {
            return self.pick(&[isize::MIN, isize::MAX]);
        }
        self.rng.below(2 * rank + 3) as isize - rank as isize - 1
    }

    /// A random f32 tensor of logical shape `shape` in a random layout: contiguous, a transposed
    /// view of a buffer with the first and last dimensions swapped, or an offset view.
    fn input(&mut self, shape: &[usize]) -> (Tensor, HostTensor, String) {
        let rank = shape.len();
        match self.rng.below(3) {
            1 if rank >= 2 => {
                let mut stored = shape.to_vec();
                stored.swap(0, rank - 1);
                let (t, h) = random(&mut self.rng, &stored, -2.0, 2.0);
                let mut dims: Vec<usize> = (0..rank).collect();
                dims.swap(0, rank - 1);
                let view = t.transpose(0, rank as isize - 1).unwrap();
                (view, r::permute(&h, &dims), format!("transposed {shape:?}"))
            }
            2 => {
                let n = numel(shape);
                let (big, h) = random(&mut self.rng, &[n + 3], -2.0, 2.0);
                let dims: Vec<isize> = shape.iter().map(|&s| s as isize).collect();
                let view = big.narrow(0, 3, n).unwrap().reshape(&dims).unwrap();
                let h = HostTensor::new(shape, h.data[3..].to_vec());
                (view, h, format!("offset view {shape:?}"))
            }
            _ => {
                let (t, h) = random(&mut self.rng, shape, -2.0, 2.0);
                (t, h, format!("{shape:?}"))
            }
        }
    }

    /// An input that is sometimes i32 (for ops that take f32 only).
    fn maybe_int(&mut self, t: Tensor) -> (Tensor, bool) {
        if self.chance(0.1) {
            (t.to_dtype(DType::I32).unwrap(), true)
        } else {
            (t, false)
        }
    }
}

fn normalize(axis: isize, rank: usize) -> Option<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

fn extent_ok(shape: &[usize]) -> bool {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))
        .is_some_and(|n| n <= MAX_ELEMENTS)
}

/// Element count, saturating (the sizes may be anything).
fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

/// Runs `call` (a panic fails the test) and checks its outcome against `expect`.
fn check(call: &str, op: &str, expect: Expect, run: impl FnOnce() -> dynlab::Result<Tensor>) {
    let outcome = catch_unwind(AssertUnwindSafe(run))
        .unwrap_or_else(|_| panic!("{call}: panicked instead of returning an error"));
    let kind = match (&expect, &outcome) {
        (Expect::Values(_), Ok(_)) => 0,
        (Expect::Shape(_), Ok(_)) => 1,
        _ => 2,
    };
    OUTCOMES[kind].fetch_add(1, Ordering::Relaxed);
    match (expect, outcome) {
        (Expect::Error, Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains(op),
                "{call}: the error does not name `{op}`: {text}"
            );
        }
        (Expect::Error, Ok(t)) => panic!("{call}: accepted, giving shape {:?}", t.shape()),
        (_, Err(e)) => panic!("{call}: rejected a valid call: {e}"),
        (Expect::Shape(want), Ok(t)) => assert_eq!(t.shape(), &want[..], "{call}: shape"),
        (Expect::Values(want), Ok(t)) => compare(call, &t, &want),
    }
}

fn compare(call: &str, got: &Tensor, want: &HostTensor) {
    assert_eq!(got.shape(), &want.shape[..], "{call}: shape");
    let values: Vec<f64> = match got.dtype() {
        DType::I32 => got
            .to_vec::<i32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect(),
        _ => got
            .contiguous()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect(),
    };
    for (i, (&g, &w)) in values.iter().zip(&want.data).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs()
        };
        assert!(ok, "{call}: element {i} is {g}, expected {w}");
    }
}

/// A view op on a small tensor of any layout, with arguments that are often out of range.
fn views(g: &mut Gen) -> usize {
    let shape = g.small_shape(4);
    let (t, h, layout) = g.input(&shape);
    let rank = shape.len();
    let values = |shape: Vec<usize>, f: &dyn Fn() -> HostTensor| {
        if !extent_ok(&shape) {
            Expect::Error
        } else if numel(&shape) <= READ_BACK {
            Expect::Values(f())
        } else {
            Expect::Shape(shape)
        }
    };
    match g.rng.below(7) {
        0 => {
            let target: Vec<isize> = (0..g.rng.below(5))
                .map(|_| match g.rng.below(6) {
                    0 => -1,
                    1 => g.pick(&[-2, isize::MAX, 1 << 40]),
                    _ => g.rng.below(5) as isize,
                })
                .collect();
            let call = format!("{layout}.reshape({target:?})");
            let n = numel(&shape);
            let inferred = target.iter().filter(|&&d| d == -1).count();
            let fixed: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
            let known: Option<usize> = (target.iter().filter(|&&d| d >= 0))
                .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize));
            let resolved = match (inferred, known) {
                _ if target.iter().any(|&d| d < -1) || !extent_ok(&fixed) => None,
                (0, Some(k)) if k == n => Some(fixed),
                (1, Some(k)) if k > 0 && n.is_multiple_of(k) => {
                    let mut s = fixed;
                    let i = target.iter().position(|&d| d == -1).unwrap();
                    s[i] = n / k;
                    Some(s)
                }
                _ => None,
            };
            let expect = match resolved {
                Some(s) => values(s.clone(), &|| HostTensor::new(&s, h.data.clone())),
                None => Expect::Error,
            };
            check(&call, "Tensor::reshape", expect, || t.reshape(&target));
        }
        1 => {
            let dims: Vec<usize> = (0..rank + g.rng.below(2))
                .map(|_| {
                    if g.chance(0.05) {
                        usize::MAX
                    } else {
                        g.rng.below(rank + 1)
                    }
                })
                .collect();
            let call = format!("{layout}.permute({dims:?})");
            let mut sorted = dims.clone();
            sorted.sort();
            let expect = if sorted == (0..rank).collect::<Vec<_>>() {
                Expect::Values(r::permute(&h, &dims))
            } else {
                Expect::Error
            };
            check(&call, "Tensor::permute", expect, || t.permute(&dims));
        }
        2 => {
            let (axis, start, end, step) = (g.axis(rank), g.size(), g.size(), g.size());
            let call = format!("{layout}.slice({axis}, {start}, {end}, {step})");
            let expect = match normalize(axis, rank) {
                Some(d) if step > 0 && start <= end && end <= shape[d] => {
                    Expect::Values(r::slice(&h, d, start, end, step))
                }
                _ => Expect::Error,
            };
            check(&call, "Tensor::slice", expect, || {
                t.slice(axis, start, end, step)
            });
        }
        3 => {
            let (axis, start, len) = (g.axis(rank), g.size(), g.size());
            let call = format!("{layout}.narrow({axis}, {start}, {len})");
            let expect = match (normalize(axis, rank), start.checked_add(len)) {
                (Some(d), Some(end)) if end <= shape[d] => {
                    Expect::Values(r::slice(&h, d, start, end, 1))
                }
                _ => Expect::Error,
            };
            check(&call, "Tensor::narrow", expect, || {
                t.narrow(axis, start, len)
            });
        }
        4 => {
            let lead = g.rng.below(3);
            let mut target: Vec<usize> = (0..lead).map(|_| g.size()).collect();
            for &s in &shape {
                target.push(if s == 1 || g.chance(0.2) { g.size() } else { s });
            }
            let call = format!("{layout}.expand({target:?})");
            let fits = target
                .iter()
                .skip(lead)
                .zip(&shape)
                .all(|(&t, &s)| t == s || s == 1);
            let expect = if fits {
                values(target.clone(), &|| {
                    r::zip(
                        &h,
                        &HostTensor::new(&target, vec![0.0; numel(&target)]),
                        |a, _| a,
                    )
                })
            } else {
                Expect::Error
            };
            check(&call, "Tensor::expand", expect, || t.expand(&target));
        }
        5 => {
            let axis = g.axis(rank);
            let call = format!("{layout}.unsqueeze({axis})");
            let expect = match normalize(axis, rank + 1) {
                Some(d) => {
                    let mut s = shape.clone();
                    s.insert(d, 1);
                    Expect::Values(HostTensor::new(&s, h.data.clone()))
                }
                None => Expect::Error,
            };
            check(&call, "Tensor::unsqueeze", expect, || t.unsqueeze(axis));
        }
        _ => {
            let axis = g.axis(rank);
            let call = format!("{layout}.squeeze({axis})");
            let expect = match normalize(axis, rank) {
                Some(d) if shape[d] == 1 => {
                    let mut s = shape.clone();
                    s.remove(d);
                    Expect::Values(HostTensor::new(&s, h.data.clone()))
                }
                _ => Expect::Error,
            };
            check(&call, "Tensor::squeeze", expect, || t.squeeze(axis));
        }
    }
    1
}

/// `[a, b]` broadcast, or `None`.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() < rank {
                1
            } else {
                a[i + a.len() - rank]
            };
            let db = if i + b.len() < rank {
                1
            } else {
                b[i + b.len() - rank]
            };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Elementwise ops: unary on any layout, binary with shapes that may not broadcast, and i32
/// inputs the float ops must refuse.
fn elementwise(g: &mut Gen) -> usize {
    let sa = g.small_shape(3);
    let sb = if g.chance(0.5) {
        let mut s = sa.clone();
        s.iter_mut().for_each(|d| {
            if g.chance(0.3) {
                *d = 1
            }
        });
        s.drain(..g.rng.below(s.len() + 1));
        s
    } else {
        g.small_shape(3)
    };
    let (a, ha, la) = g.input(&sa);
    let (b, hb, lb) = g.input(&sb);
    let (a, a_int) = g.maybe_int(a);
    if g.chance(0.3) {
        let call = format!("exp({la}{})", if a_int { " as i32" } else { "" });
        let expect = if a_int {
            Expect::Error
        } else {
            Expect::Values(r::map(&ha, f64::exp))
        };
        check(&call, "Tensor::exp", expect, || a.exp());
        return 1;
    }
    let call = format!("{la}{} * {lb}", if a_int { " as i32" } else { "" });
    let expect = match broadcast(&sa, &sb) {
        Some(_) if !a_int => Expect::Values(r::zip(&ha, &hb, |x, y| x * y)),
        _ => Expect::Error,
    };
    check(&call, "Tensor::mul", expect, || a.mul(&b));
    1
}

/// Reductions and row ops along random (often invalid) axes, over empty axes too.
fn reductions(g: &mut Gen) -> usize {
    let shape = g.small_shape(3);
    let (t, h, layout) = g.input(&shape);
    let (t, int) = g.maybe_int(t);
    let axis = g.axis(shape.len());
    let keep = g.chance(0.5);
    let d = normalize(axis, shape.len());
    // Lines to reduce that hold no values (the extreme of no values is undefined).
    let empty_lines = |d: usize| {
        let others: usize = shape
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != d)
            .map(|(_, &s)| s)
            .product();
        shape[d] == 0 && others > 0
    };
    let which = g.rng.below(5);
    let (name, op): (&str, &str) = [
        ("sum", "Tensor::sum"),
        ("mean", "Tensor::mean"),
        ("max", "Tensor::max"),
        ("logsumexp", "Tensor::logsumexp"),
        ("softmax", "Tensor::softmax"),
    ][which];
    let call = format!(
        "{layout}{}.{name}({axis}, keepdim {keep})",
        if int { " as i32" } else { "" }
    );
    let expect = match d {
        _ if int => Expect::Error,
        None => Expect::Error,
        Some(d) if name == "max" && empty_lines(d) => Expect::Error,
        Some(d) => Expect::Values(match name {
            "sum" => r::reduce(&h, d, keep, r::sum),
            "mean" => r::reduce(&h, d, keep, r::mean),
            "max" => r::reduce(&h, d, keep, r::max),
            "logsumexp" => r::reduce(&h, d, keep, r::logsumexp),
            _ => r::along(&h, d, r::softmax),
        }),
    };
    check(&call, op, expect, || match name {
        "sum" => t.sum(axis, keep),
        "mean" => t.mean(axis, keep),
        "max" => t.max(axis, keep),
        "logsumexp" => t.logsumexp(axis, keep),
        _ => t.softmax(axis),
    });
    1
}

/// Allocating constructors with sizes near and past every limit.
fn creation(g: &mut Gen) -> usize {
    let d = device();
    let limit_elems = (d.limits().max_buffer_bytes / 4).min(MAX_ELEMENTS as u64) as usize;
    let shape: Vec<usize> = (0..g.rng.below(4)).map(|_| g.size()).collect();
    let fits = extent_ok(&shape) && numel(&shape).max(1) <= limit_elems;
    let small = numel(&shape) <= READ_BACK;
    match g.rng.below(4) {
        0 => {
            let call = format!("zeros({shape:?})");
            let expect = match (fits, small) {
                (false, _) => Expect::Error,
                (true, true) => Expect::Values(HostTensor::new(&shape, vec![0.0; numel(&shape)])),
                (true, false) => Expect::Shape(shape.clone()),
            };
            check(&call, "Tensor::zeros", expect, || Tensor::zeros(&shape, &d));
        }
        1 => {
            let n = g.size();
            let call = format!("eye({n})");
            let square = [n, n];
            let fits = extent_ok(&square) && n.saturating_mul(n).max(1) <= limit_elems;
            let expect = match fits {
                false => Expect::Error,
                true if n * n <= READ_BACK => Expect::Values(HostTensor::new(
                    &square,
                    (0..n * n).map(|i| r::mask(i / n == i % n)).collect(),
                )),
                true => Expect::Shape(square.to_vec()),
            };
            check(&call, "Tensor::eye", expect, || Tensor::eye(n, &d));
        }
        2 => {
            let (start, end, step) = (
                g.pick(&[0.0f32, -3.5, 1e30, f32::NAN]),
                g.pick(&[4.0f32, -1.0, 1e38, f32::INFINITY]),
                g.pick(&[1.0f32, 0.5, -1.0, 0.0, 1e-30]),
            );
            let call = format!("arange({start}, {end}, {step})");
            let count = ((end as f64 - start as f64) / step as f64).ceil();
            let finite = start.is_finite() && end.is_finite() && step.is_finite() && step != 0.0;
            let expect = if !finite || count > limit_elems as f64 {
                Expect::Error
            } else {
                let n = count.max(0.0) as usize;
                Expect::Values(HostTensor::new(
                    &[n],
                    (0..n).map(|i| (start + i as f32 * step) as f64).collect(),
                ))
            };
            check(&call, "Tensor::arange", expect, || {
                Tensor::arange(start, end, step, &d)
            });
        }
        _ => {
            let classes = g.size();
            let labels: Vec<i32> = (0..g.rng.below(4))
                .map(|_| g.pick(&[0, 1, 3, -1, i32::MAX]))
                .collect();
            let call = format!("one_hot({labels:?}, {classes})");
            let n = labels.len();
            let out = [n, classes];
            let in_range = labels.iter().all(|&l| l >= 0 && (l as usize) < classes);
            let fits = extent_ok(&out) && numel(&out).max(1) <= limit_elems && classes <= 1 << 24;
            let expect = match (in_range, fits) {
                (true, true) if numel(&out) <= READ_BACK => Expect::Values(HostTensor::new(
                    &out,
                    (0..n * classes)
                        .map(|i| r::mask(labels[i / classes] as usize == i % classes))
                        .collect(),
                )),
                (true, true) => Expect::Shape(out.to_vec()),
                _ => Expect::Error,
            };
            let t = Tensor::from_slice(&labels, &[n], &d).unwrap();
            check(&call, "Tensor::one_hot", expect, || t.one_hot(classes));
        }
    }
    1
}

/// Batched products with shapes that may not line up.
fn matmul(g: &mut Gen) -> usize {
    let (m, k, n) = (g.rng.below(4), g.rng.below(4), g.rng.below(4));
    let k2 = if g.chance(0.2) { g.rng.below(4) } else { k };
    let batch_a = g.small_shape(2);
    let batch_b = if g.chance(0.7) {
        batch_a.clone()
    } else {
        g.small_shape(2)
    };
    let sa: Vec<usize> = batch_a.iter().copied().chain([m, k]).collect();
    let sb: Vec<usize> = batch_b.iter().copied().chain([k2, n]).collect();
    let (a, ha, la) = g.input(&sa);
    let (b, hb, lb) = g.input(&sb);
    let call = format!("{la} @ {lb}");
    let expect = match broadcast(&batch_a, &batch_b) {
        Some(_) if k == k2 => Expect::Values(r::matmul(&ha, &hb)),
        _ => Expect::Error,
    };
    check(&call, "Tensor::matmul", expect, || a.matmul(&b));
    1
}

/// Gathers with indices that may be negative or out of range.
fn indexing(g: &mut Gen) -> usize {
    let shape: Vec<usize> = (0..1 + g.rng.below(3)).map(|_| g.rng.below(4)).collect();
    let (t, h, layout) = g.input(&shape);
    let axis = g.axis(shape.len());
    let indices: Vec<i32> = (0..g.rng.below(5))
        .map(|_| g.pick(&[0, 1, 2, 3, -1, i32::MAX, i32::MIN]))
        .collect();
    let idx = Tensor::from_slice(&indices, &[indices.len()], &device()).unwrap();
    let call = format!("{layout}.index_select({axis}, {indices:?})");
    let expect = match normalize(axis, shape.len()) {
        Some(d) if indices.iter().all(|&i| i >= 0 && (i as usize) < shape[d]) => {
            let parts: Vec<HostTensor> = indices
                .iter()
                .map(|&i| r::slice(&h, d, i as usize, i as usize + 1, 1))
                .collect();
            if parts.is_empty() {
                let mut s = shape.clone();
                s[d] = 0;
                Expect::Values(HostTensor::new(&s, vec![]))
            } else {
                Expect::Values(r::cat(&parts.iter().collect::<Vec<_>>(), d))
            }
        }
        _ => Expect::Error,
    };
    check(&call, "Tensor::index_select", expect, || {
        t.index_select(axis, &idx)
    });
    1
}

/// Convolution and pooling windows with sizes near and past the limits.
fn windows(g: &mut Gen) -> usize {
    let [hh, ww] = [1 + g.rng.below(6), 1 + g.rng.below(6)];
    let c = 1 + g.rng.below(2);
    let kernel = [
        if g.chance(0.1) {
            g.pick(&EXTREMES)
        } else {
            1 + g.rng.below(3)
        },
        1 + g.rng.below(3),
    ];
    let pick = |g: &mut Gen, small: usize| {
        if g.chance(0.1) {
            g.pick(&EXTREMES)
        } else {
            small
        }
    };
    let options = Conv2dOptions {
        stride: [
            {
                let small = 1 + g.rng.below(2);
                pick(g, small)
            },
            1,
        ],
        padding: [
            {
                let small = g.rng.below(2);
                pick(g, small)
            },
            0,
        ],
        dilation: [pick(g, 1), 1],
        groups: 1,
    };
    let (x, hx, layout) = g.input(&[1, c, hh, ww]);
    let geometry = |d: usize, size: usize| -> Option<usize> {
        let span = options.dilation[d]
            .checked_mul(kernel[d].checked_sub(1)?)?
            .checked_add(1)?;
        let padded = size.checked_add(options.padding[d].checked_mul(2)?)?;
        let limit = i32::MAX as usize;
        let area = kernel[0].checked_mul(kernel[1])?;
        let ok =
            options.stride[d] > 0 && options.dilation[d] > 0 && kernel[d] > 0 && padded >= span;
        let ok = ok
            && [padded, span, options.stride[d], options.dilation[d], area]
                .iter()
                .all(|&v| v <= limit);
        ok.then(|| (padded - span) / options.stride[d] + 1)
    };
    let out = geometry(0, hh).zip(geometry(1, ww));
    let win = r::Window2d {
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    let small = |o: (usize, usize)| o.0 * o.1 * c <= READ_BACK && options.padding[0] < 64;
    if g.chance(0.5) {
        let call = format!("max_pool2d({layout}, {kernel:?}, {options:?})");
        // Pooling windows pad at most half their width, as in PyTorch.
        let half = (0..2).all(|d| options.padding[d] <= kernel[d] / 2);
        let expect = match out.filter(|_| half) {
            Some(o) if small(o) => Expect::Values(r::pool2d(&hx, kernel, win, true)),
            Some(o) => Expect::Shape(vec![1, c, o.0, o.1]),
            None => Expect::Error,
        };
        check(&call, "max_pool2d", expect, || {
            Ok(x.max_pool2d(kernel, options)?.0)
        });
    } else {
        if kernel[0] > 3 {
            return 0;
        }
        let (w, hw, _) = g.input(&[c, c, kernel[0], kernel[1]]);
        let call = format!("conv2d({layout}, {kernel:?}, {options:?})");
        let expect = match out {
            Some(o) if small(o) => Expect::Values(r::conv2d(&hx, &hw, None, win, 1)),
            Some(o) => Expect::Shape(vec![1, c, o.0, o.1]),
            None => Expect::Error,
        };
        check(&call, "conv2d", expect, || x.conv2d(&w, None, options));
    }
    1
}

/// Concatenations of up to three tensors whose other sizes (and dtypes) may not agree.
fn concatenation(g: &mut Gen) -> usize {
    let base = g.small_shape(3);
    let rank = base.len();
    let parts: Vec<(Tensor, HostTensor, Vec<usize>)> = (0..g.rng.below(4))
        .map(|_| {
            let mut shape = base.clone();
            if rank > 0 {
                let d = g.rng.below(rank);
                shape[d] = g.rng.below(4);
            }
            let (t, h, _) = g.input(&shape);
            (t, h, shape)
        })
        .collect();
    let axis = g.axis(rank);
    let int = g.chance(0.1) && !parts.is_empty();
    let tensors: Vec<Tensor> = parts
        .iter()
        .enumerate()
        .map(|(i, (t, _, _))| {
            if int && i == 0 {
                t.to_dtype(DType::I32).unwrap()
            } else {
                t.clone()
            }
        })
        .collect();
    let shapes: Vec<&Vec<usize>> = parts.iter().map(|p| &p.2).collect();
    let call = format!(
        "cat({shapes:?}, {axis}){}",
        if int { " with an i32 first" } else { "" }
    );
    let expect = match normalize(axis, rank) {
        Some(d) if !(parts.is_empty() || int && parts.len() > 1) => {
            let agree = shapes
                .iter()
                .all(|s| (0..rank).all(|i| i == d || s[i] == shapes[0][i]));
            if agree {
                let hosts: Vec<&HostTensor> = parts.iter().map(|p| &p.1).collect();
                let joined = r::cat(&hosts, d);
                // A lone i32 part comes back as it was cast: truncated toward zero.
                Expect::Values(if int {
                    r::map(&joined, f64::trunc)
                } else {
                    joined
                })
            } else {
                Expect::Error
            }
        }
        _ => Expect::Error,
    };
    let refs: Vec<&Tensor> = tensors.iter().collect();
    check(&call, "Tensor::cat", expect, || Tensor::cat(&refs, axis));
    1
}

/// `gather` with index tensors of any shape and values in or out of range.
fn gathering(g: &mut Gen) -> usize {
    let shape: Vec<usize> = (0..1 + g.rng.below(3))
        .map(|_| 1 + g.rng.below(3))
        .collect();
    let (t, h, layout) = g.input(&shape);
    let axis = g.axis(shape.len());
    let index_shape: Vec<usize> = if g.chance(0.8) {
        shape.iter().map(|&s| g.rng.below(s + 1)).collect()
    } else {
        g.small_shape(3)
    };
    let values: Vec<i32> = (0..numel(&index_shape))
        .map(|_| {
            if g.chance(0.9) {
                g.rng.below(3) as i32
            } else {
                g.pick(&[-1, i32::MAX])
            }
        })
        .collect();
    let index = Tensor::from_slice(&values, &index_shape, &device()).unwrap();
    let call = format!("{layout}.gather({axis}, {index_shape:?} {values:?})");
    let expect = match normalize(axis, shape.len()) {
        Some(d)
            if index_shape.len() == shape.len()
                && (0..shape.len()).all(|i| i == d || index_shape[i] <= shape[i])
                && values.iter().all(|&v| v >= 0 && (v as usize) < shape[d]) =>
        {
            let hi = HostTensor::new(&index_shape, values.iter().map(|&v| v as f64).collect());
            Expect::Values(r::gather(&h, d, &hi))
        }
        _ => Expect::Error,
    };
    check(&call, "Tensor::gather", expect, || t.gather(axis, &index));
    1
}

/// Cross-entropy with labels out of range or of the wrong shape.
fn cross_entropy(g: &mut Gen) -> usize {
    let (n, c) = (g.rng.below(4), g.rng.below(4));
    let (logits, h, layout) = g.input(&[n, c]);
    let n_labels = if g.chance(0.85) { n } else { g.rng.below(4) };
    let labels: Vec<i32> = (0..n_labels)
        .map(|_| {
            if g.chance(0.9) {
                g.rng.below(c.max(1)) as i32
            } else {
                g.pick(&[-1, 4, i32::MAX])
            }
        })
        .collect();
    let t = Tensor::from_slice(&labels, &[n_labels], &device()).unwrap();
    let call = format!("{layout}.cross_entropy_per_sample({labels:?})");
    let valid = n_labels == n && labels.iter().all(|&l| l >= 0 && (l as usize) < c);
    let expect = if valid {
        let ls: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        Expect::Values(HostTensor::new(&[n], r::cross_entropy(&h, &ls)))
    } else {
        Expect::Error
    };
    check(&call, "Tensor::cross_entropy", expect, || {
        logits.cross_entropy_per_sample(&t)
    });
    1
}

/// Layer normalisation with affine parameters of the right or wrong width, and odd epsilons.
fn layer_norm(g: &mut Gen) -> usize {
    let shape: Vec<usize> = (0..1 + g.rng.below(3)).map(|_| g.rng.below(5)).collect();
    let (x, h, layout) = g.input(&shape);
    let d = *shape.last().unwrap();
    let width = if g.chance(0.85) { d } else { g.rng.below(5) };
    let (gamma, hg, _) = g.input(&[width]);
    let (beta, hb, _) = g.input(&[width]);
    let eps = g.pick(&[1e-5f32, 0.1, -1.0, f32::NAN]);
    let call = format!("{layout}.layer_norm(γ, β [{width}], eps {eps})");
    // Normalising over no features is undefined.
    let valid = width == d && eps.is_finite() && eps >= 0.0 && d > 0;
    let expect = if valid && numel(&shape) == 0 {
        Expect::Values(HostTensor::new(&shape, vec![]))
    } else if valid {
        Expect::Values(r::layer_norm(&h, Some((&hg, &hb)), eps as f64))
    } else {
        Expect::Error
    };
    check(&call, "Tensor::layer_norm", expect, || {
        Ok(x.layer_norm(Some((&gamma, &beta)), eps)?.y)
    });
    1
}

/// Random permutations of extreme lengths.
fn permutations(g: &mut Gen) -> usize {
    let n = g.size();
    let limit_elems = (device().limits().max_buffer_bytes / 4) as usize;
    let call = format!("randperm({n})");
    let mut rng = dynlab::Rng::new(g.rng.next_u64());
    let expect = if n <= MAX_ELEMENTS && n.max(1) <= limit_elems && n <= READ_BACK {
        Expect::Values(HostTensor::new(&[n], (0..n).map(|i| i as f64).collect()))
    } else if n <= MAX_ELEMENTS && n.max(1) <= limit_elems {
        Expect::Shape(vec![n])
    } else {
        Expect::Error
    };
    // The oracle is the sorted permutation: sort what comes back before comparing.
    check(&call, "Tensor::randperm", expect, || {
        let p = Tensor::randperm(n, &mut rng, &device())?;
        if p.numel() > READ_BACK {
            return Ok(p);
        }
        let mut v = p.to_vec::<i32>()?;
        v.sort();
        Tensor::from_vec(v, &[n], &device())
    });
    1
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[device_test]
fn public_ops_return_an_error_or_the_right_value() {
    let calls = setting("DYNLAB_PROPERTY_CALLS", CI_CALLS as u64) as usize;
    let seed = setting("DYNLAB_PROPERTY_SEED", 2026);
    let mut g = Gen {
        rng: HostRng::new(seed),
    };
    let families: [fn(&mut Gen) -> usize; 13] = [
        views,
        views,
        elementwise,
        reductions,
        creation,
        matmul,
        indexing,
        windows,
        concatenation,
        gathering,
        cross_entropy,
        layer_norm,
        permutations,
    ];
    let mut made = 0;
    while made < calls {
        let family = g.rng.below(families.len());
        made += families[family](&mut g);
    }
    let [values, shapes, errors] = OUTCOMES.each_ref().map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "property suite: {made} calls (seed {seed}): {values} results checked against the oracle, \
         {shapes} large results checked by shape, {errors} clean errors"
    );
}
