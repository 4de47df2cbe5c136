//! Config parsing: defaults, overrides, and clear errors for unknown keys and invalid values.

use dynlab::algos::grokking::GrokkingConfig;
use dynlab::harness::parse_config;

const BASE: &str = r#"
name = "t"
[data]
p = 7
train_frac = 0.5
[model]
hidden = [16]
[optim]
lr = 1e-3
[train]
epochs = 10
"#;

fn parse(overrides: &[&str]) -> dynlab::Result<GrokkingConfig> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let (config, _) = parse_config::<GrokkingConfig>(BASE, "base.toml", &o)?;
    config.plan()?;
    Ok(config)
}

#[test]
fn defaults_and_overrides() {
    let c = parse(&[]).unwrap();
    assert_eq!(
        (c.optim.method.as_str(), c.optim.betas),
        ("adamw", [0.9, 0.98])
    );
    let c = parse(&[
        "optim.lr=3e-4",
        "model.hidden=[8, 8]",
        "optim.method=sgd",
        "train.stop_after_grokking=5",
    ])
    .unwrap();
    assert_eq!(c.optim.lr, 3e-4);
    assert_eq!(c.model.hidden, vec![8, 8]);
    assert_eq!(c.optim.method, "sgd");
    assert_eq!(c.train.stop_after_grokking, Some(5));
    let (_, resolved) =
        parse_config::<GrokkingConfig>(BASE, "base.toml", &["seed=9".into()]).unwrap();
    assert!(resolved.contains("seed = 9"), "{resolved}");
}

#[test]
fn bad_configs_say_what_is_wrong() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["model.widht=3"], &["unknown field", "widht"]),
        (&["colour=red"], &["unknown field", "colour"]),
        (&["data.p=91"], &["data.p", "91 is not prime"]),
        (
            &["data.train_frac=1.0"],
            &["data.train_frac", "strictly between 0 and 1"],
        ),
        (&["data.train_frac=0"], &["data.train_frac"]),
        (
            &["optim.method=rmsprop"],
            &["optim.method", "rmsprop", "adamw"],
        ),
        (&["data.op=pow"], &["data.op", "pow"]),
        (&["optim.lr=-1"], &["optim.lr"]),
        (&["data.p=seven"], &["invalid type"]),
        (&["noequals"], &["--set noequals", "key=value"]),
        (&["data.p.x=3"], &["`p` is a value"]),
    ];
    for (overrides, needles) in cases {
        let e = parse(overrides).unwrap_err().to_string();
        for n in *needles {
            assert!(e.contains(n), "{overrides:?}: `{e}` lacks `{n}`");
        }
    }
}
