//! Message-passing kernels and the simulator step against f64 host computations.

use dynlab::{Graph, Tensor, Var};
use dynlab_test_support::reference::HostTensor;
use dynlab_test_support::{assert_close, check_gradients, device, device_test, random, HostRng};

/// A graph and its edge list on the host.
struct Case {
    name: &'static str,
    nodes: usize,
    src: Vec<usize>,
    dst: Vec<usize>,
}

/// Random graphs with nodes that have no edges, repeated edges and self-loops; a single node; a
/// graph without edges; the complete graph.
fn cases(rng: &mut HostRng) -> Vec<Case> {
    let mut random_case = |name, nodes: usize, edges: usize, active: usize| {
        // Edges only among the first `active` nodes, so the rest have empty segments.
        let (src, dst) = (0..edges)
            .map(|_| (rng.below(active), rng.below(active)))
            .unzip();
        Case {
            name,
            nodes,
            src,
            dst,
        }
    };
    let mut all = vec![
        random_case("random 300 nodes, 700 edges", 300, 700, 300),
        random_case("random with empty rows", 40, 90, 25),
    ];
    let mut repeated = random_case("repeated edges", 7, 6, 7);
    repeated.src.extend([2, 2, 2, 5]);
    repeated.dst.extend([3, 3, 3, 5]);
    all.push(repeated);
    all.push(Case {
        name: "single node with a self-loop",
        nodes: 1,
        src: vec![0, 0],
        dst: vec![0, 0],
    });
    all.push(Case {
        name: "no edges",
        nodes: 5,
        src: vec![],
        dst: vec![],
    });
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    for i in 0..6 {
        for j in (0..6).filter(|&j| j != i) {
            src.push(j);
            dst.push(i);
        }
    }
    all.push(Case {
        name: "complete 6",
        nodes: 6,
        src,
        dst,
    });
    all
}

impl Case {
    fn graph(&self) -> Graph {
        Graph::new(&self.src, &self.dst, self.nodes, &device()).unwrap()
    }

    fn edges(&self) -> usize {
        self.src.len()
    }

    /// `out[key_e] += f(e)` over edges, rows of `width`.
    fn scatter(&self, by_dst: bool, width: usize, f: impl Fn(usize, usize) -> f64) -> HostTensor {
        let mut out = vec![0.0; self.nodes * width];
        for e in 0..self.edges() {
            let key = if by_dst { self.dst[e] } else { self.src[e] };
            for c in 0..width {
                out[key * width + c] += f(e, c);
            }
        }
        HostTensor::new(&[self.nodes, width], out)
    }

    fn spmm(&self, w: &HostTensor, x: &HostTensor, transposed: bool) -> HostTensor {
        let width = x.shape[1];
        self.scatter(!transposed, width, |e, c| {
            let far = if transposed { self.dst[e] } else { self.src[e] };
            w.data[e] * x.data[far * width + c]
        })
    }

    fn edge_dot(&self, a: &HostTensor, b: &HostTensor) -> HostTensor {
        let width = a.shape[1];
        let data = (0..self.edges())
            .map(|e| {
                (0..width)
                    .map(|c| a.data[self.dst[e] * width + c] * b.data[self.src[e] * width + c])
                    .sum()
            })
            .collect();
        HostTensor::new(&[self.edges()], data)
    }
}

#[device_test]
fn message_passing_matches_host_sums() {
    let mut rng = HostRng::new(70);
    for case in cases(&mut rng) {
        let graph = case.graph();
        let (n, e) = (case.nodes, case.edges());
        for width in [1, 3, 8] {
            let what = |op: &str| format!("{op} on {} (F {width})", case.name);
            let (x, hx) = random(&mut rng, &[n, width], -1.0, 1.0);
            let (g, hg) = random(&mut rng, &[n, width], -1.0, 1.0);
            let (w, hw) = random(&mut rng, &[e], -1.0, 1.0);
            let (m, hm) = random(&mut rng, &[e, width], -1.0, 1.0);
            let tol = (1e-5, 1e-5);
            assert_close(
                &what("aggregate"),
                &graph.aggregate(&m).unwrap(),
                &case.scatter(true, width, |e, c| hm.data[e * width + c]),
                tol.0,
                tol.1,
            );
            assert_close(
                &what("aggregate_by_source"),
                &graph.aggregate_by_source(&m).unwrap(),
                &case.scatter(false, width, |e, c| hm.data[e * width + c]),
                tol.0,
                tol.1,
            );
            assert_close(
                &what("spmm"),
                &graph.spmm(&w, &x).unwrap(),
                &case.spmm(&hw, &hx, false),
                tol.0,
                tol.1,
            );
            assert_close(
                &what("spmm_transposed"),
                &graph.spmm_transposed(&w, &g).unwrap(),
                &case.spmm(&hw, &hg, true),
                tol.0,
                tol.1,
            );
            assert_close(
                &what("edge_dot"),
                &graph.edge_dot(&g, &x).unwrap(),
                &case.edge_dot(&hg, &hx),
                tol.0,
                tol.1,
            );
            let gathered: Vec<f64> = case
                .src
                .iter()
                .flat_map(|&s| hx.data[s * width..(s + 1) * width].to_vec())
                .collect();
            assert_close(
                &what("gather_sources"),
                &graph.gather_sources(&x).unwrap(),
                &HostTensor::new(&[e, width], gathered),
                0.0,
                0.0,
            );
        }
    }
}

#[device_test]
fn sums_are_bitwise_reproducible() {
    let mut rng = HostRng::new(71);
    let case = &cases(&mut rng)[0];
    let graph = case.graph();
    let (m, _) = random(&mut rng, &[case.edges(), 4], -1.0, 1.0);
    let first = graph.aggregate(&m).unwrap().to_vec::<f32>().unwrap();
    let again = graph.aggregate(&m).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(
        first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        again.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[device_test]
fn message_passing_gradients_match_central_differences() {
    let mut rng = HostRng::new(72);
    let all = cases(&mut rng);
    for case in all.iter().filter(|c| c.edges() > 0 && c.nodes < 100) {
        let graph = case.graph();
        let (n, e, width) = (case.nodes, case.edges(), 3);
        let g = graph.clone();
        check_gradients(
            &format!("spmm on {}", case.name),
            vec![
                random(&mut rng, &[e], -1.0, 1.0),
                random(&mut rng, &[n, width], -1.0, 1.0),
            ],
            &move |v: &[Var]| v[0].spmm(&g, &v[1]),
            &|h: &[HostTensor]| case.spmm(&h[0], &h[1], false),
            &mut rng,
        );
        let g = graph.clone();
        check_gradients(
            &format!("spmm_transposed on {}", case.name),
            vec![
                random(&mut rng, &[e], -1.0, 1.0),
                random(&mut rng, &[n, width], -1.0, 1.0),
            ],
            &move |v: &[Var]| v[0].spmm_transposed(&g, &v[1]),
            &|h: &[HostTensor]| case.spmm(&h[0], &h[1], true),
            &mut rng,
        );
        let g = graph.clone();
        check_gradients(
            &format!("edge_dot on {}", case.name),
            vec![
                random(&mut rng, &[n, width], -1.0, 1.0),
                random(&mut rng, &[n, width], -1.0, 1.0),
            ],
            &move |v: &[Var]| v[0].edge_dot(&g, &v[1]),
            &|h: &[HostTensor]| case.edge_dot(&h[0], &h[1]),
            &mut rng,
        );
        let g = graph.clone();
        check_gradients(
            &format!("gather, square, aggregate on {}", case.name),
            vec![random(&mut rng, &[n, width], -1.0, 1.0)],
            &move |v: &[Var]| {
                v[0].gather_sources(&g)?
                    .square()?
                    .aggregate(&g)?
                    .gather_destinations(&g)?
                    .aggregate_by_source(&g)
            },
            &|h: &[HostTensor]| {
                let x = &h[0];
                let per_node =
                    case.scatter(true, width, |e, c| x.data[case.src[e] * width + c].powi(2));
                case.scatter(false, width, |e, c| per_node.data[case.dst[e] * width + c])
            },
            &mut rng,
        );
    }
}

#[device_test]
fn second_derivatives_of_spmm_are_exact() {
    // L = Σ (A x)² ⇒ ∂L/∂x = 2 Aᵀ A x; its derivative along x in direction v is 2 Aᵀ A v.
    let mut rng = HostRng::new(73);
    let case = &cases(&mut rng)[1];
    let graph = case.graph();
    let (n, e) = (case.nodes, case.edges());
    let (w, hw) = random(&mut rng, &[e], -1.0, 1.0);
    let (x, _) = random(&mut rng, &[n, 2], -1.0, 1.0);
    let (v, hv) = random(&mut rng, &[n, 2], -1.0, 1.0);
    let x = Var::param(x);
    let w = Var::constant(w);
    let loss = w
        .spmm(&graph, &x)
        .unwrap()
        .square()
        .unwrap()
        .sum_all()
        .unwrap();
    let options = dynlab::GradOptions {
        create_graph: true,
        ..Default::default()
    };
    let gx = dynlab::grad(&loss, &[&x], options).unwrap().remove(0);
    let directional = gx.mul(&Var::constant(v)).unwrap().sum_all().unwrap();
    let hvp = dynlab::grad(&directional, &[&x], Default::default())
        .unwrap()
        .remove(0);
    let av = case.spmm(&hw, &hv, false);
    let mut want = case.spmm(&hw, &av, true);
    want.data.iter_mut().for_each(|d| *d *= 2.0);
    assert_close(
        "Hessian-vector product of Σ (A x)²",
        hvp.value(),
        &want,
        1e-4,
        1e-4,
    );
}

#[test]
fn bad_graphs_and_shapes_are_errors() {
    let d = device();
    let err = Graph::new(&[0, 4], &[1, 2], 4, &d).unwrap_err().to_string();
    assert!(
        err.contains("Graph::new") && err.contains("edge 1"),
        "{err}"
    );
    let err = Graph::new(&[0], &[1, 2], 4, &d).unwrap_err().to_string();
    assert!(err.contains("1 sources and 2 destinations"), "{err}");
    let graph = Graph::new(&[0, 1], &[1, 2], 3, &d).unwrap();
    let x = Tensor::zeros(&[4, 2], &d).unwrap();
    let err = graph
        .spmm(&Tensor::zeros(&[2], &d).unwrap(), &x)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Graph::spmm") && err.contains("[4, 2]"),
        "{err}"
    );
    let x = Tensor::zeros(&[3, 2], &d).unwrap();
    let err = graph
        .spmm(&Tensor::zeros(&[3], &d).unwrap(), &x)
        .unwrap_err()
        .to_string();
    assert!(err.contains("edge values [3]"), "{err}");
    let err = graph.aggregate(&x).unwrap_err().to_string();
    assert!(
        err.contains("Graph::aggregate") && err.contains("[2, F]"),
        "{err}"
    );
}

/// `steps` host f64 Euler steps of the signal model; frames `[steps + 1, n]` and rates.
fn host_rollout(
    w: &[f64],
    params: &[f64],
    u0: &[f64],
    steps: usize,
    dt: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = u0.len();
    let (mut frames, mut rates) = (u0.to_vec(), Vec::new());
    for t in 0..steps {
        let u = frames[t * n..(t + 1) * n].to_vec();
        for i in 0..n {
            let msg: f64 = (0..n).map(|j| w[i * n + j] * u[j].tanh()).sum();
            let du = -params[2 * n + i] * u[i] + params[n + i] * u[i].tanh() + params[i] * msg;
            rates.push(du);
        }
        for i in 0..n {
            frames.push(u[i] + dt * rates[t * n + i]);
        }
    }
    (frames, rates)
}

#[device_test]
fn simulator_steps_match_a_host_euler_step() {
    let mut rng = HostRng::new(74);
    // 300 neurons: two tiles of the kernel's 256-wide shared block, the second partial.
    for (n, steps) in [(1, 2), (5, 3), (300, 2)] {
        let (w, hw) = random(&mut rng, &[n, n], -0.2, 0.2);
        let (params, hp) = random(&mut rng, &[3, n], 0.5, 2.0);
        let (u0, hu) = random(&mut rng, &[n], -3.0, 3.0);
        let wt = w.transpose(0, 1).unwrap().contiguous().unwrap();
        let (frames, rates) = u0.signal_rollout(&wt, &params, steps, 0.01).unwrap();
        let (want_frames, want_rates) = host_rollout(&hw.data, &hp.data, &hu.data, steps, 0.01);
        assert_close(
            &format!("frames, n {n}"),
            &frames,
            &HostTensor::new(&[steps + 1, n], want_frames),
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("rates, n {n}"),
            &rates,
            &HostTensor::new(&[steps, n], want_rates),
            1e-4,
            1e-5,
        );
    }
    let d = device();
    let err = Tensor::zeros(&[3], &d)
        .unwrap()
        .signal_rollout(
            &Tensor::zeros(&[3, 2], &d).unwrap(),
            &Tensor::zeros(&[3, 3], &d).unwrap(),
            1,
            0.01,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Tensor::signal_rollout") && err.contains("Wᵀ [3, 2]"),
        "{err}"
    );
}

/// `out[.., indices[k], ..] += x[.., k, ..]` along `dim` on the host.
fn host_index_add(x: &HostTensor, dim: usize, indices: &[usize], size: usize) -> HostTensor {
    let mut shape = x.shape.clone();
    shape[dim] = size;
    let outer: usize = x.shape[..dim].iter().product();
    let inner: usize = x.shape[dim + 1..].iter().product();
    let count = x.shape[dim];
    let mut out = vec![0.0; outer * size * inner];
    for o in 0..outer {
        for (k, &i) in indices.iter().enumerate() {
            for r in 0..inner {
                out[(o * size + i) * inner + r] += x.data[(o * count + k) * inner + r];
            }
        }
    }
    HostTensor::new(&shape, out)
}

#[device_test]
fn index_add_matches_host_sums_on_both_paths() {
    let mut rng = HostRng::new(75);
    // Small sums run as scatter_add; the large ones (outputs × indices > 2²⁴) as segment sums.
    for (shape, dim, size) in [
        (vec![5, 3], 0, 4),
        (vec![2, 6, 3], 1, 2),
        (vec![1000, 8], 0, 3000),
        (vec![3, 1000, 2], 1, 4000),
    ] {
        let (x, hx) = random(&mut rng, &shape, -1.0, 1.0);
        // Repeated indices, and targets that receive nothing.
        let indices: Vec<usize> = (0..shape[dim]).map(|_| rng.below(size / 2 + 1)).collect();
        let ints: Vec<i32> = indices.iter().map(|&i| i as i32).collect();
        let idx = Tensor::from_slice(&ints, &[ints.len()], &device()).unwrap();
        assert_close(
            &format!("index_add {shape:?} dim {dim} into {size}"),
            &x.index_add(dim as isize, &idx, size).unwrap(),
            &host_index_add(&hx, dim, &indices, size),
            1e-5,
            1e-5,
        );
        // The gradient of index_select is index_add.
        let v = Var::param(
            Tensor::zeros(
                &{
                    let mut s = shape.clone();
                    s[dim] = size;
                    s
                },
                &device(),
            )
            .unwrap(),
        );
        let picked = v.index_select(dim as isize, &idx).unwrap();
        let g = picked
            .mul(&Var::constant(x.clone()))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_close(
            &format!("index_select gradient {shape:?}"),
            g.tensor(&v).unwrap(),
            &host_index_add(&hx, dim, &indices, size),
            1e-5,
            1e-5,
        );
    }
    let err = Tensor::zeros(&[4, 2], &device())
        .unwrap()
        .index_add(
            0,
            &Tensor::from_slice(&[0i32, 5, 1, 2], &[4], &device()).unwrap(),
            3,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Tensor::index_add") && err.contains("index 5"),
        "{err}"
    );
}
