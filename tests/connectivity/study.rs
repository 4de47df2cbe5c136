//! The runner: config errors, stop/resume, the optimizer's per-path learning rates, and a small
//! network's connectivity recovered end to end.

use dynlab::algos::connectivity::{run, ConnectivityConfig};
use dynlab::harness::{parse_config, RunMode, RunOptions};
use dynlab::models::{Linear, Module};
use dynlab::optim::{Method, Optimizer, ParamGroup};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::{device, device_test};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-connectivity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The CI network: 64 neurons of the four Fig. 2 types, Lorentz connectivity, 4000 frames; the
/// reference's training with 30× / 13× / 10× its learning rates (W / embeddings / MLPs) so that
/// 2000 iterations suffice (measured in release: R² 0.905 at 1500, 0.938 at 2000, 0.963 at 2500).
fn config_text(runs_dir: &std::path::Path) -> String {
    format!(
        r#"
name = "ci"
seed = 16
runs_dir = "{}"

[simulation]
neurons = 64
frames = 4000
burn_in = 500
chunk_frames = 1500

[model]
hidden = 32

[training]
iterations = 2000
log_every = 500
lr_w = 0.03
lr_embedding = 0.01
lr_mlp = 0.005
"#,
        runs_dir.display()
    )
}

fn parse(dir: &std::path::Path, overrides: &[&str]) -> (ConnectivityConfig, String) {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    parse_config::<ConnectivityConfig>(&config_text(dir), "ci", &overrides).unwrap()
}

#[test]
fn config_errors_name_their_key() {
    let dir = scratch("config");
    for (set, key) in [
        (
            "simulation.connectivity=\"ring\"",
            "simulation.connectivity",
        ),
        (
            "simulation.connectivity=\"low_rank\"",
            "simulation.connectivity",
        ),
        ("simulation.neurons=1", "simulation.neurons"),
        ("simulation.filling_factor=0.0", "simulation.filling_factor"),
        ("model.message_passing=\"csr\"", "model.message_passing"),
        ("training.batch_size=0", "training.batch_size"),
        ("training.log_every=7", "training.log_every"),
        ("training.lr_w=-1.0", "training.lr_w"),
        ("training.time_step=0", "training.time_step"),
        (
            "training.noise_recurrent_level=-0.1",
            "training.noise_recurrent_level",
        ),
    ] {
        let (config, _) = parse(&dir, &[set]);
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains(key), "{set}: {err}");
    }
    let (config, _) = parse(&dir, &["training.iterations=0"]);
    assert!(config.plan().is_err());
    // Epochs as the reference counts them: frames · data_augmentation_loop / batch · 0.2.
    let (config, _) = parse(
        &dir,
        &[
            "training.epochs=2",
            "training.data_augmentation_loop=10",
            "training.log_every=1000",
        ],
    );
    let mut config = config;
    config.training.iterations = None;
    assert_eq!(config.plan().unwrap().iterations, 2 * 4000 * 10 / 8 / 5);
}

#[device_test]
fn path_learning_rates_scale_each_group() {
    let mut rng = Rng::new(1);
    let mut layer = Linear::new(
        2,
        3,
        true,
        dynlab::models::Init::KaimingUniform,
        &mut rng,
        &device(),
    )
    .unwrap();
    let before: Vec<Vec<f32>> = layer
        .params()
        .iter()
        .map(|(_, p)| p.value().to_vec::<f32>().unwrap())
        .collect();
    let x = Var::constant(Tensor::ones(&[1, 2], &device()).unwrap());
    let loss = layer
        .forward(&x, &mut dynlab::models::Ctx::train())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let sgd = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let mut opt = Optimizer::new(sgd, ParamGroup::all(0.0))
        .unwrap()
        .with_path_lr("bias", 0.5)
        .unwrap();
    opt.step(&mut layer, &grads, 0.1, 1.0).unwrap();
    // ∂L/∂b = 1 and ∂L/∂W = 1: the bias moves by 0.05, the weight by 0.1.
    for ((name, p), old) in layer.params().iter().zip(&before) {
        let step = if name.starts_with("bias") { 0.05 } else { 0.1 };
        for (new, old) in p.value().to_vec::<f32>().unwrap().iter().zip(old) {
            assert!((old - new - step).abs() < 1e-6, "{name}: {old} → {new}");
        }
    }
    assert!(Optimizer::new(sgd, ParamGroup::all(0.0))
        .unwrap()
        .with_path_lr("W", f32::NAN)
        .is_err());
}

#[device_test]
fn stop_and_resume_continue_exactly() {
    let short = [
        "simulation.neurons=12",
        "simulation.frames=300",
        "simulation.burn_in=50",
        "simulation.chunk_frames=100",
        "model.hidden=8",
        "training.iterations=6",
        "training.log_every=2",
        "training.checkpoint_every=1",
    ];
    let straight_dir = scratch("straight");
    let (config, resolved) = parse(&straight_dir, &short);
    let straight = run(&config, &resolved, RunOptions::default()).unwrap();
    let resumed_dir = scratch("resumed");
    let (config, resolved) = parse(&resumed_dir, &short);
    let stop = RunOptions {
        stop_at: Some(1),
        ..Default::default()
    };
    run(&config, &resolved, stop).unwrap();
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let resumed = run(&config, &resolved, resume).unwrap();
    for column in ["loss", "connectivity_r2", "cluster_accuracy"] {
        assert_eq!(
            straight.history.numbers(column),
            resumed.history.numbers(column),
            "{column}"
        );
    }
    let dir = resumed.run_dir;
    for file in [
        "analysis.log",
        "curves.png",
        "connectivity.png",
        "summary.toml",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert!(dir.join("data/chunk_002.safetensors").is_file());
}

#[device_test]
fn a_small_network_connectivity_is_recovered() {
    let dir = scratch("recover");
    let (config, resolved) = parse(&dir, &[]);
    let o = run(&config, &resolved, RunOptions::default()).unwrap();
    let get = |k: &str| {
        o.summary
            .get(k)
            .unwrap()
            .to_string()
            .parse::<f64>()
            .unwrap()
    };
    let r2 = get("connectivity_r2");
    assert!(r2 >= 0.9, "connectivity R² {r2}");
    let log = std::fs::read_to_string(o.run_dir.join("analysis.log")).unwrap();
    assert!(
        log.contains("spectral_radius: ") && log.contains("connectivity_R2: "),
        "{log}"
    );
    let first = o.history.numbers("connectivity_r2").unwrap()[0].unwrap();
    assert!(first < r2, "R² rose from {first} to {r2}");
}

#[test]
fn ucb_tree_bookkeeping_on_a_scripted_tree() {
    use dynlab::harness::explore::{explore, mutate, Mutation, UcbTree};
    let mut tree = UcbTree::new(1.0);
    assert_eq!(tree.select(), None);
    assert_eq!(tree.add(None, vec!["a=1".into()], 0.5), 1);
    assert_eq!(tree.add(Some(1), vec!["a=2".into()], 0.9), 2);
    assert_eq!(tree.add(Some(1), vec!["a=3".into()], 0.2), 3);
    assert_eq!(tree.add(Some(2), vec!["a=2".into(), "b=1".into()], 0.95), 4);
    let visits: Vec<u64> = tree.nodes.iter().map(|n| n.visits).collect();
    assert_eq!(visits, vec![4, 2, 1, 1]);
    let ln4 = 4f64.ln();
    let want = [
        0.5 + (ln4 / 4.0).sqrt(),
        0.9 + (ln4 / 2.0).sqrt(),
        0.2 + ln4.sqrt(),
        0.95 + 2f64.ln().sqrt(),
    ];
    for (id, w) in want.iter().enumerate() {
        assert!((tree.ucb(id + 1) - w).abs() < 1e-12, "node {}", id + 1);
    }
    assert_eq!(tree.select(), Some(4));
    let report = tree.report();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "=== UCB Scores (N=4, c=1) ===");
    assert_eq!(lines[2], "Node 4: UCB=1.783, parent=2, visits=1, R2=0.950");
    assert_eq!(lines[3], "Node 2: UCB=1.733, parent=1, visits=2, R2=0.900");
    assert_eq!(
        lines[5],
        "Node 1: UCB=1.089, parent=root, visits=4, R2=0.500"
    );

    // A mutation changes one key to a different value and keeps the rest.
    let space = vec![
        Mutation::parse("training.lr_w=0.01,0.03").unwrap(),
        Mutation::parse("model.hidden=16,32").unwrap(),
    ];
    let child = mutate(
        &[
            "training.lr_w=0.01".to_string(),
            "model.hidden=16".to_string(),
        ],
        &space,
        |_| 0,
    );
    assert_eq!(child, vec!["model.hidden=16", "training.lr_w=0.03"]);
    assert!(Mutation::parse("training.lr_w=0.01").is_err());

    // explore(): each new node mutates the node of highest UCB; scores from a scripted run.
    let dir = scratch("explore");
    let scores = [0.3, 0.8, 0.1, 0.9];
    let mut parents_seen = Vec::new();
    let tree = explore(
        4,
        1.0,
        &space,
        &dir,
        |n| n - 1,
        |id, overrides| {
            parents_seen.push(overrides.len());
            Ok(scores[id - 1])
        },
    )
    .unwrap();
    assert_eq!(tree.nodes.len(), 4);
    assert_eq!(tree.nodes[0].parent, None);
    assert_eq!(tree.nodes[1].parent, Some(1));
    // The file holds the final tree.
    let text = std::fs::read_to_string(dir.join("ucb_scores.txt")).unwrap();
    assert_eq!(text, tree.report());
    assert!(parents_seen.iter().all(|&n| n >= 1));
}

#[device_test]
fn recurrent_loss_is_the_rollout_error_over_dt_t() {
    use dynlab::algos::connectivity::{simulate_network, SignalTrainer};
    use dynlab::models::Ctx;
    let dir = scratch("recurrent");
    let (config, _) = parse(
        &dir,
        &[
            "simulation.neurons=10",
            "simulation.frames=60",
            "simulation.burn_in=10",
            "simulation.chunk_frames=25",
            "model.hidden=8",
            "training.batch_size=3",
            "training.time_step=4",
            "training.iterations=2",
            "training.log_every=1",
        ],
    );
    let plan = config.plan().unwrap();
    let truth = simulate_network(&config, &plan, &device()).unwrap();
    let mut trainer = SignalTrainer::new(&config, &plan, truth.xnorm, &device()).unwrap();
    // The same draws by hand: starts aligned to multiples of T = 4, then 4 Euler steps.
    let mut draws = trainer.draws.clone();
    let starts: Vec<usize> = (0..3)
        .map(|_| {
            let k = draws.below(60 - 4);
            k - k % 4
        })
        .collect();
    assert!(starts.iter().all(|k| k % 4 == 0));
    let ends: Vec<usize> = starts.iter().map(|k| k + 4).collect();
    let (u0, _) = truth.recording.gather(&starts).unwrap();
    let (target, _) = truth.recording.gather(&ends).unwrap();
    let mut u = u0.to_vec::<f32>().unwrap();
    for _ in 0..4 {
        let x = Var::constant(Tensor::from_slice(&u, &[3, 10], &device()).unwrap());
        let pred = dynlab::no_grad(|| trainer.model.forward(&x, &mut Ctx::eval()))
            .unwrap()
            .value()
            .to_vec::<f32>()
            .unwrap();
        u.iter_mut().zip(&pred).for_each(|(u, p)| *u += 0.01 * p);
    }
    let target = target.to_vec::<f32>().unwrap();
    let want = u
        .iter()
        .zip(&target)
        .map(|(a, b)| ((a - b) as f64 / 0.04).powi(2))
        .sum::<f64>()
        .sqrt();
    let got = trainer
        .step(&truth.recording)
        .unwrap()
        .fit
        .value()
        .item()
        .unwrap() as f64;
    assert!(
        (got - want).abs() < 1e-4 * want,
        "recurrent loss {got} vs {want}"
    );
}

#[device_test]
fn euler_neural_ode_equals_the_recurrent_rollout_and_adjoint_trains() {
    use dynlab::algos::connectivity::{simulate_network, SignalTrainer};
    let dir = scratch("ode");
    let base = [
        "simulation.neurons=10",
        "simulation.frames=60",
        "simulation.burn_in=10",
        "simulation.chunk_frames=25",
        "model.hidden=8",
        "training.batch_size=3",
        "training.time_step=3",
        "training.iterations=2",
        "training.log_every=1",
    ];
    let loss_of = |extra: &[&str]| {
        let mut all = base.to_vec();
        all.extend(extra);
        let (config, _) = parse(&dir, &all);
        let plan = config.plan().unwrap();
        let truth = simulate_network(&config, &plan, &device()).unwrap();
        let mut trainer = SignalTrainer::new(&config, &plan, truth.xnorm, &device()).unwrap();
        let first = trainer
            .step(&truth.recording)
            .unwrap()
            .fit
            .value()
            .item()
            .unwrap();
        let second = trainer
            .step(&truth.recording)
            .unwrap()
            .fit
            .value()
            .item()
            .unwrap();
        (first, second)
    };
    let recurrent = loss_of(&[]);
    let euler = loss_of(&[
        "training.neural_ode=true",
        "training.ode_method=\"euler\"",
        "training.ode_adjoint=false",
    ]);
    let adjoint = loss_of(&["training.neural_ode=true", "training.ode_method=\"euler\""]);
    assert!(
        (recurrent.0 - euler.0).abs() <= 1e-5 * recurrent.0,
        "{recurrent:?} {euler:?}"
    );
    // The same first loss; after one update by adjoint gradients the second stays close.
    assert!(
        (adjoint.0 - euler.0).abs() <= 1e-5 * euler.0,
        "{adjoint:?} {euler:?}"
    );
    assert!(
        (adjoint.1 - euler.1).abs() <= 1e-2 * euler.1,
        "{adjoint:?} {euler:?}"
    );
    let dopri = loss_of(&["training.neural_ode=true"]);
    assert!(dopri.0.is_finite() && dopri.1.is_finite());
    let (config, _) = parse(
        &dir,
        &["training.neural_ode=true", "training.ode_method=\"rk45\""],
    );
    let err = config.plan().unwrap_err().to_string();
    assert!(err.contains("training.ode_method"), "{err}");
}
