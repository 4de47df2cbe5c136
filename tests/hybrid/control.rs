use dynlab::algos::hybrid::{
    Action, Controller, HybridConfig, MonitorConfig, Outlook, Phase, Response, Signal, StepSignals,
};

fn config() -> HybridConfig {
    HybridConfig {
        warmup_steps: 5,
        min_full_steps: 3,
        correct_steps: 2,
        correction_interval: 3,
        confidence_threshold: 0.5,
        horizons: vec![4, 8],
        cooldown_steps: 6,
        snapshot_every: 4,
        ..HybridConfig::default()
    }
}

fn outlook(confidence: f64) -> Outlook {
    Outlook {
        confidence,
        loss_slope: -0.5,
        remaining: 0.5,
        falling: true,
    }
}

/// The scripted loss: a smooth decline with the step.
fn loss(step: u64) -> f64 {
    (-0.05 * step as f64).exp()
}

fn signals(action: Action, loss: f64) -> StepSignals {
    StepSignals {
        loss,
        grad_norm: action.has_backward().then_some(1.0),
        predicted_loss: None,
    }
}

/// One step at `confidence` with the scripted loss (or `loss_override`): (phase, action,
/// snapshot, response).
fn step(
    c: &mut Controller,
    confidence: f64,
    loss_override: Option<f64>,
) -> (Phase, Action, bool, Response) {
    let plan = c.plan(outlook(confidence)).unwrap();
    let phase = c.phase();
    let l = loss_override.unwrap_or(loss(c.step()));
    let response = c.observe(plan.action, signals(plan.action, l)).unwrap();
    (phase, plan.action, plan.snapshot, response)
}

#[test]
fn phases_follow_the_transitions_on_a_scripted_loss() {
    use Action::{Full, MicroCorrection as Micro, Predicted as Pred};
    use Phase::{Correct, Full as F, Predict, Warmup};
    let mut c = Controller::new(config()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..18 {
        let (phase, action, snapshot, response) = step(&mut c, 0.9, None);
        assert_eq!(response, Response::Continue);
        seen.push((phase, action, snapshot));
    }
    let want = [
        (Warmup, Full, true), // the first state is saved
        (Warmup, Full, false),
        (Warmup, Full, false),
        (Warmup, Full, false),
        (Warmup, Full, true), // 4 healthy full steps: periodic save
        (F, Full, false),
        (F, Full, false),
        (F, Full, false),
        (Predict, Pred, true), // saved before the episode; horizon 4 (arms tie: the lower)
        (Predict, Pred, false),
        (Predict, Pred, false),
        (Predict, Micro, false), // every 3 predicted steps
        (Predict, Pred, false),  // the 4th predicted step: the horizon
        (Correct, Full, false),
        (Correct, Full, false),
        (F, Full, false),
        (F, Full, true), // 12 healthy full steps (micro-corrections count)
        (F, Full, false),
    ];
    assert_eq!(seen, want);
    assert_eq!(c.rewards.len(), 1);
    let (arm, reward) = c.rewards[0];
    assert_eq!(arm, 0);
    assert!(
        (reward - 4.0 / 8.0).abs() < 1e-12,
        "4 of 8 saved, no loss increase: {reward}"
    );
    // The next episode's arm is the bandit's choice in the same context.
    let scores = c.bandit().scores(&[1.0, 0.9, -0.5, 0.5]).unwrap();
    let best = if scores[1] > scores[0] { 1 } else { 0 };
    let (phase, _, snapshot, _) = step(&mut c, 0.9, None);
    assert_eq!((phase, snapshot), (Predict, true));
    assert_eq!(c.horizon(), config().horizons[best]);
}

#[test]
fn low_confidence_keeps_full_steps_and_ends_an_episode() {
    let mut c = Controller::new(config()).unwrap();
    for _ in 0..20 {
        let (phase, action, _, _) = step(&mut c, 0.4, None);
        assert!(phase != Phase::Predict && action == Action::Full);
    }
    let (phase, ..) = step(&mut c, 0.9, None);
    assert_eq!(phase, Phase::Predict);
    let (phase, ..) = step(&mut c, 0.3, None);
    assert_eq!(
        phase,
        Phase::Correct,
        "confidence below the threshold ends the episode"
    );
}

/// Runs to the first predicted step; returns the step the episode started at.
fn into_episode(c: &mut Controller) -> u64 {
    loop {
        let at = c.step();
        let (phase, ..) = step(c, 0.9, None);
        if phase == Phase::Predict {
            return at;
        }
    }
}

#[test]
fn a_spike_while_predicting_rolls_back_and_replays_with_full_steps() {
    let mut c = Controller::new(config()).unwrap();
    let start = into_episode(&mut c);
    step(&mut c, 0.9, None);
    let (_, action, _, response) = step(&mut c, 0.9, Some(10.0));
    assert_eq!(action, Action::Predicted);
    assert_eq!(response, Response::RollBack(Signal::LossSpike, start));
    assert_eq!(
        (c.step(), c.phase(), c.rollbacks()),
        (start, Phase::Full, 1)
    );
    assert_eq!(
        c.rewards.last().map(|r| r.1),
        Some(-1.0),
        "a divergence earns −1"
    );
    assert!(c.replaying());
    // The replay runs full steps; the fault coming back is recorded, not rolled back again.
    let (_, action, _, response) = step(&mut c, 0.9, None);
    assert_eq!(action, Action::Full);
    let (_, _, _, response2) = step(&mut c, 0.9, Some(10.0));
    assert_eq!(response, Response::Continue);
    assert_eq!(response2, Response::Flagged(Signal::LossSpike));
    // Cool-down: no episode within cooldown_steps of the last divergence.
    let diverged = c.step();
    let mut first_predict = None;
    for _ in 0..30 {
        let at = c.step();
        let (phase, ..) = step(&mut c, 0.9, None);
        if phase == Phase::Predict {
            first_predict = Some(at);
            break;
        }
    }
    let first = first_predict.expect("an episode after the cool-down");
    assert!(
        first >= diverged + config().cooldown_steps,
        "{first} vs {diverged}"
    );
    assert_eq!(
        c.horizon(),
        4,
        "after a divergence only the shorter half of the horizons"
    );
}

#[test]
fn each_rolling_signal_rolls_back_and_the_others_do_not() {
    // NaN on a full step
    let mut c = Controller::new(config()).unwrap();
    for _ in 0..6 {
        step(&mut c, 0.1, None);
    }
    let plan = c.plan(outlook(0.1)).unwrap();
    let r = c
        .observe(plan.action, signals(plan.action, f64::NAN))
        .unwrap();
    assert_eq!(r, Response::RollBack(Signal::NonFinite, 4));
    // gradient explosion and vanishing after the warm-up
    let mut c = Controller::new(config()).unwrap();
    for _ in 0..6 {
        step(&mut c, 0.1, None);
    }
    let l = loss(c.step());
    let plan = c.plan(outlook(0.1)).unwrap();
    let r = c
        .observe(
            plan.action,
            StepSignals {
                loss: l,
                grad_norm: Some(50.0),
                predicted_loss: None,
            },
        )
        .unwrap();
    assert_eq!(r, Response::RollBack(Signal::GradExplode, 4));
    for _ in 0..3 {
        step(&mut c, 0.1, None);
    }
    let at = c.step();
    let plan = c.plan(outlook(0.1)).unwrap();
    let r = c
        .observe(
            plan.action,
            StepSignals {
                loss: loss(at),
                grad_norm: Some(1e-4),
                predicted_loss: None,
            },
        )
        .unwrap();
    assert_eq!(r, Response::Flagged(Signal::GradVanish));
    assert_eq!((c.step(), c.phase()), (at + 1, Phase::Full));
    // a prediction error while predicting
    let mut c = Controller::new(config()).unwrap();
    let start = into_episode(&mut c);
    let plan = c.plan(outlook(0.9)).unwrap();
    assert_eq!(plan.action, Action::Predicted);
    let l = loss(c.step());
    let r = c
        .observe(
            plan.action,
            StepSignals {
                loss: l,
                grad_norm: None,
                predicted_loss: Some(1.5 * l),
            },
        )
        .unwrap();
    assert_eq!(r, Response::RollBack(Signal::PredictionError, start));
}

#[test]
fn oscillation_ends_the_episode_without_a_roll_back() {
    let mut c = Controller::new(HybridConfig {
        monitor: MonitorConfig {
            oscillation_window: 6,
            ..MonitorConfig::default()
        },
        ..config()
    })
    .unwrap();
    let zigzag = |t: u64| 1.0 + if t.is_multiple_of(2) { 0.01 } else { -0.01 };
    let mut last = None;
    for _ in 0..12 {
        let at = c.step();
        let (phase, _, _, r) = step(&mut c, 0.9, Some(zigzag(at)));
        if phase == Phase::Predict {
            last = Some(r);
            break;
        }
        assert_eq!(r, Response::Continue);
    }
    assert_eq!(last, Some(Response::Flagged(Signal::Oscillation)));
    assert_eq!(c.phase(), Phase::Correct);
    assert_eq!(c.rollbacks(), 0);
}

#[test]
fn a_non_finite_loss_in_the_replay_is_an_error() {
    let mut c = Controller::new(config()).unwrap();
    for _ in 0..6 {
        step(&mut c, 0.1, None);
    }
    let plan = c.plan(outlook(0.1)).unwrap();
    c.observe(plan.action, signals(plan.action, f64::NAN))
        .unwrap();
    let plan = c.plan(outlook(0.1)).unwrap();
    let e = c
        .observe(plan.action, signals(plan.action, f64::NAN))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("non-finite") && e.contains("HybridTrainer"),
        "{e}"
    );
}

#[test]
fn too_many_roll_backs_are_an_error() {
    let mut c = Controller::new(HybridConfig {
        max_rollbacks: 1,
        ..config()
    })
    .unwrap();
    let mut result = Ok(Response::Continue);
    for _ in 0..40 {
        let at = c.step();
        let plan = c.plan(outlook(0.1)).unwrap();
        // Every step from 6 on explodes, replays included (only the first is rolled back).
        let g = if at >= 6 && !c.replaying() { 50.0 } else { 1.0 };
        result = c.observe(
            plan.action,
            StepSignals {
                loss: loss(at),
                grad_norm: Some(g),
                predicted_loss: None,
            },
        );
        if result.is_err() {
            break;
        }
    }
    let e = result.unwrap_err().to_string();
    assert!(e.contains("hybrid.max_rollbacks"), "{e}");
}

#[test]
fn config_checks_name_the_key() {
    for (config, key) in [
        (
            HybridConfig {
                horizons: vec![8, 4],
                ..config()
            },
            "hybrid.horizons",
        ),
        (
            HybridConfig {
                horizons: vec![],
                ..config()
            },
            "hybrid.horizons",
        ),
        (
            HybridConfig {
                warmup_steps: 1,
                ..config()
            },
            "hybrid.warmup_steps",
        ),
        (
            HybridConfig {
                confidence_threshold: 1.5,
                ..config()
            },
            "hybrid.confidence_threshold",
        ),
        (
            HybridConfig {
                direction_beta: 1.0,
                ..config()
            },
            "hybrid.direction_beta",
        ),
    ] {
        let e = Controller::new(config).unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
    let e = toml::from_str::<HybridConfig>("horizon = [1]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("horizon"), "{e}");
    let parsed: HybridConfig = toml::from_str("warmup_steps = 7\n[dynamics]\nmembers = 3").unwrap();
    assert_eq!((parsed.warmup_steps, parsed.dynamics.members), (7, 3));
}

#[test]
fn a_loss_above_the_episodes_best_ends_it() {
    let mut c = Controller::new(config()).unwrap();
    into_episode(&mut c);
    let at = c.step();
    let (phase, action, _, response) = step(&mut c, 0.9, Some(1.02 * loss(at - 1)));
    assert_eq!(
        (phase, action, response),
        (Phase::Predict, Action::Predicted, Response::Continue)
    );
    let (phase, ..) = step(&mut c, 0.9, None);
    assert_eq!(phase, Phase::Correct, "no progress: back to full steps");
    let mut tolerant = Controller::new(HybridConfig {
        stall_tolerance: 0.05,
        ..config()
    })
    .unwrap();
    into_episode(&mut tolerant);
    let at = tolerant.step();
    step(&mut tolerant, 0.9, Some(1.02 * loss(at - 1)));
    let (phase, ..) = step(&mut tolerant, 0.9, None);
    assert_eq!(phase, Phase::Predict, "within the tolerance");
}

#[test]
fn a_roll_back_restores_the_monitor_statistics_of_its_target() {
    let mut c = Controller::new(config()).unwrap();
    let mut before = std::collections::BTreeMap::new();
    let start = loop {
        let at = c.step();
        before.insert(at, c.monitor().loss_stats());
        if step(&mut c, 0.9, None).0 == Phase::Predict {
            break at;
        }
    };
    // Predicted steps far below the script pull the statistics down.
    for _ in 0..2 {
        let low = 0.2 * loss(c.step());
        step(&mut c, 0.9, Some(low));
    }
    assert_ne!(c.monitor().loss_stats(), before[&start]);
    let (.., response) = step(&mut c, 0.9, Some(10.0));
    assert_eq!(response, Response::RollBack(Signal::LossSpike, start));
    assert_eq!(c.monitor().loss_stats(), before[&start]);
    // The replay on the script and the steps after it raise nothing.
    for _ in 0..20 {
        let (.., response) = step(&mut c, 0.1, None);
        assert_eq!(response, Response::Continue);
    }
}

#[test]
fn a_kept_flagged_step_joins_the_statistics() {
    let mut c = Controller::new(config()).unwrap();
    into_episode(&mut c);
    step(&mut c, 0.9, Some(10.0));
    assert!(c.replaying());
    let (mean, _) = c.monitor().loss_stats();
    // A new level during the replay is flagged once, kept, and becomes the statistics' level.
    let (.., response) = step(&mut c, 0.1, Some(3.0));
    assert_eq!(response, Response::Flagged(Signal::LossSpike));
    let (after, _) = c.monitor().loss_stats();
    assert!(
        (after - (0.9 * mean + 0.1 * 3.0)).abs() < 1e-12,
        "{mean} → {after}"
    );
}

#[test]
fn episodes_start_only_while_the_loss_falls_unless_told_otherwise() {
    let rising = |c: &mut Controller| {
        let plan = c
            .plan(Outlook {
                falling: false,
                ..outlook(0.9)
            })
            .unwrap();
        let phase = c.phase();
        let l = loss(c.step());
        c.observe(plan.action, signals(plan.action, l)).unwrap();
        phase
    };
    let mut c = Controller::new(config()).unwrap();
    assert!((0..30).all(|_| rising(&mut c) != Phase::Predict));
    let mut c = Controller::new(HybridConfig {
        predict_only_while_falling: false,
        ..config()
    })
    .unwrap();
    assert!((0..30).any(|_| rising(&mut c) == Phase::Predict));
}
