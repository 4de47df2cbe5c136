//! The run store: run folders found in a runs folder and its sweeps, the index (checked against the
//! files, and read back by a real DuckDB with a query over the histories), filters and groups, the
//! grokking analyses against plain host loops, the sweep table, and (`ui`) the browser in a real
//! headless Chromium.

mod ui;

use dynlab::harness::parquet::to_parquet;
use dynlab::harness::{History, Value};
use dynlab::store::analysis::{
    align, generalisation_gap, group_by, loss_ratio, phases, stats_from_epoch, sweep_table, Phases,
    RESULT_FIELDS,
};
use dynlab::store::web::history_json;
use dynlab::store::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh folder for `test`.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A made-up grokking history: accuracy rising (train first), losses falling, a metric every 3rd
/// epoch.
fn history(epochs: u64, speed: f64) -> History {
    let mut h = History::default();
    for e in 1..=epochs {
        let t = e as f64 * speed;
        let train_acc = (t / 10.0).min(1.0) as f32;
        let test_acc = ((t - 20.0) / 10.0).clamp(0.0, 1.0) as f32;
        let mut cells = vec![
            ("epoch", Value::U64(e)),
            ("train_loss", Value::F32((2.0 / (1.0 + t)) as f32)),
            ("train_acc", Value::F32(train_acc)),
            ("test_loss", Value::F32((3.0 / (1.0 + 0.5 * t)) as f32)),
            ("test_acc", Value::F32(test_acc)),
        ];
        if e % 3 == 0 {
            cells.push(("smoothness", Value::F32(0.5 + 0.01 * e as f32)));
        }
        h.push_cells(&cells).unwrap();
    }
    h
}

/// A run folder `root/<group>/<name>` with a config, a summary (unless `unfinished`) and history.
fn write_run(root: &Path, group: &str, name: &str, lr: f64, p: u64, h: &History, unfinished: bool) {
    let dir = root.join(group).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "name = \"{name}\"\nseed = 0\n\n[data]\np = {p}\nop = \"add\"\n\n[optim]\nmethod = \"adamw\"\nlr = {lr:?}\nbetas = [0.9, 0.98]\n"
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    std::fs::write(dir.join("history.csv"), h.to_csv()).unwrap();
    std::fs::write(dir.join("history.parquet"), to_parquet(h)).unwrap();
    if !unfinished {
        let ph = phases(h, 0.99, 0.95);
        let grokked = ph
            .grokked
            .map_or("\"not reached\"".to_string(), |g| g.to_string());
        let summary = format!(
            "grokked_epoch = {grokked}\nmemorised_epoch = {}\nfinal_test_acc = {}\nfinished = true\n\n[run]\ndevice = \"test\"\n",
            ph.memorised.unwrap(),
            h.last("test_acc").unwrap()
        );
        std::fs::write(dir.join("summary.toml"), summary).unwrap();
    }
}

/// Three sweep runs (`sw/a`, `sw/b`, `sw/c`; c unfinished and never grokking) and one loose run.
fn sample_store(test: &str) -> (PathBuf, Vec<History>) {
    let root = scratch(test);
    let hs = vec![
        history(60, 1.0),
        history(40, 2.0),
        history(30, 0.5),
        history(10, 3.0),
    ];
    write_run(&root, "sw", "a", 1e-3, 7, &hs[0], false);
    write_run(&root, "sw", "b", 3e-3, 7, &hs[1], false);
    write_run(&root, "sw", "c", 1e-3, 11, &hs[2], true);
    write_run(&root, "", "loose", 0.01, 13, &hs[3], false);
    std::fs::create_dir_all(root.join("sw/logs")).unwrap();
    (root, hs)
}

#[test]
fn the_store_finds_runs_in_the_folder_and_its_sweeps() {
    let (root, _) = sample_store("open");
    let store = Store::open(&root).unwrap();
    let ids: Vec<&str> = store.runs().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["loose", "sw/a", "sw/b", "sw/c"]);
    assert_eq!(store.group("sw").len(), 3);
    assert_eq!(store.group("")[0].name, "loose");
    let finished: Vec<bool> = store.runs().iter().map(|r| r.finished()).collect();
    assert_eq!(finished, [true, true, true, false]);
    let a = store.run("sw/a").unwrap();
    assert_eq!(a.number("optim.lr"), Some(1e-3));
    assert_eq!(a.number("grokked_epoch"), Some(30.0));
    assert_eq!(a.value("run.device").and_then(|v| v.as_str()), Some("test"));
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
    // A folder whose summary cannot be read is left out with a warning; the others stay.
    std::fs::write(root.join("sw/b/summary.toml"), "grokked_epoch = [").unwrap();
    let partial = Store::open(&root).unwrap();
    assert_eq!(partial.runs().len(), 3);
    assert_eq!(partial.warnings().len(), 1);
    assert!(
        partial.warnings()[0].contains("sw/b/summary.toml"),
        "{:?}",
        partial.warnings()
    );
    let e = store.run("sw/z").unwrap_err().to_string();
    assert!(e.contains("run `sw/z`"), "{e}");

    let picked: Vec<&str> = store
        .select(&["optim.lr=1e-3".into(), "data.p=7".into()])
        .unwrap()
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(picked, ["sw/a"]);
    let adamw = store.select(&["optim.method=adamw".into()]).unwrap();
    assert_eq!(adamw.len(), 4);
    assert!(store.select(&["optim.lr".into()]).is_err());

    let runs: Vec<_> = store.runs().iter().collect();
    let groups = group_by(&runs, "optim.lr");
    let labels: Vec<(&str, usize)> = groups.iter().map(|(l, r)| (l.as_str(), r.len())).collect();
    assert_eq!(labels, [("0.001", 2), ("0.003", 1), ("0.01", 1)]);
}

#[test]
fn histories_load_with_their_nulls() {
    let (root, hs) = sample_store("history");
    let store = Store::open(&root).unwrap();
    let h = store.run("sw/a").unwrap().history().unwrap();
    assert_eq!(h.rows(), 60);
    for column in ["epoch", "train_loss", "test_acc", "smoothness"] {
        let single = |h: &History| -> Vec<Option<f32>> {
            h.numbers(column)
                .unwrap()
                .into_iter()
                .map(|v| v.map(|x| x as f32))
                .collect()
        };
        assert_eq!(single(&h), single(&hs[0]), "{column}");
    }
    assert_eq!(
        h.numbers("smoothness").unwrap().iter().flatten().count(),
        20
    );
    let thin = history_json(&h, Some(7));
    let epochs = thin["columns"]["epoch"].as_array().unwrap();
    assert_eq!(epochs.len(), 7);
    assert_eq!(
        (epochs[0].as_f64(), epochs[6].as_f64()),
        (Some(1.0), Some(60.0))
    );
    assert!(thin["columns"]["smoothness"][0].is_null());
}

/// `SELECT …` through DuckDB's Python package (`.ci/run` installs it): every row, `|`-joined.
fn duckdb(query: &str) -> Vec<String> {
    let script = format!(
        "import duckdb\nfor row in duckdb.sql(\"\"\"{query}\"\"\").fetchall(): print('|'.join(map(str, row)))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "DuckDB query failed (`python3 -m pip install duckdb`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_index_has_a_row_per_run_and_duckdb_reads_it_and_the_histories() {
    let (root, hs) = sample_store("index");
    let store = Store::open(&root).unwrap();
    let index = store.index().unwrap();
    assert_eq!(index.rows(), 4);
    let names: Vec<&str> = index.columns().iter().map(|c| c.name.as_str()).collect();
    for c in [
        "id",
        "name",
        "group",
        "seed",
        "data.p",
        "optim.lr",
        "optim.betas",
        "grokked_epoch",
        "run.device",
    ] {
        assert!(names.contains(&c), "no column {c} in {names:?}");
    }
    let path = store.write_index().unwrap();
    assert!(root.join("index.csv").is_file());
    let rows = duckdb(&format!(
        "SELECT id, \"optim.lr\", \"data.p\", grokked_epoch, \"optim.betas\" FROM '{}' ORDER BY id",
        path.display()
    ));
    let grokked = |h: &History| {
        phases(h, 0.99, 0.95)
            .grokked
            .map_or("None".into(), |g| format!("{g}.0"))
    };
    assert_eq!(
        rows,
        [
            format!("loose|0.01|13.0|{}|[0.9, 0.98]", grokked(&hs[3])),
            format!("sw/a|0.001|7.0|{}|[0.9, 0.98]", grokked(&hs[0])),
            format!("sw/b|0.003|7.0|{}|[0.9, 0.98]", grokked(&hs[1])),
            "sw/c|0.001|11.0|None|[0.9, 0.98]".to_string(),
        ]
    );
    let glob = root.join("sw/*/history.parquet");
    let counts = duckdb(&format!(
        "SELECT count(*), count(smoothness) FROM read_parquet('{}', union_by_name = true)",
        glob.display()
    ));
    let rows: usize = hs[..3].iter().map(History::rows).sum();
    let smooth: usize = hs[..3].iter().map(|h| h.rows() / 3).sum();
    assert_eq!(counts, [format!("{rows}|{smooth}")]);
}

/// The phases, gap, ratio, statistics and alignment against plain loops over the rows.
#[test]
fn the_analyses_match_plain_loops() {
    let hs = [history(60, 1.0), history(40, 2.0), history(25, 0.4)];
    for h in &hs {
        let acc = |c: &str| h.numbers(c).unwrap();
        let epochs = acc("epoch");
        let first = |c: &str, t: f64| {
            let v = acc(c);
            (0..h.rows())
                .find(|&i| v[i].unwrap() >= t)
                .map(|i| epochs[i].unwrap() as u64)
        };
        let want = Phases {
            memorised: first("train_acc", 0.99),
            grokked: first("test_acc", 0.95),
        };
        assert_eq!(phases(h, 0.99, 0.95), want);
        let (tr, te, trl, tel) = (
            acc("train_acc"),
            acc("test_acc"),
            acc("train_loss"),
            acc("test_loss"),
        );
        let gap = generalisation_gap(h);
        let ratio = loss_ratio(h);
        for i in 0..h.rows() {
            assert_eq!(gap[i], Some(tr[i].unwrap() - te[i].unwrap()));
            assert_eq!(ratio[i], Some(tel[i].unwrap() / trl[i].unwrap()));
        }
        if let Some(g) = want.grokked {
            let s = stats_from_epoch(h, "test_loss", g).unwrap();
            let v: Vec<f64> = (0..h.rows())
                .filter(|&i| epochs[i].unwrap() >= g as f64)
                .map(|i| tel[i].unwrap())
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            assert_eq!(s.n, v.len());
            assert!((s.mean - mean).abs() < 1e-12 && (s.std - var.sqrt()).abs() < 1e-12);
            assert_eq!(want.delay(), Some(g - want.memorised.unwrap()));
        }
    }
    assert_eq!(phases(&hs[2], 0.99, 0.95).grokked, None);
    assert!(stats_from_epoch(&hs[0], "test_loss", 1000).is_none());

    let aligned = align(&[&hs[0], &hs[2]], "smoothness");
    assert_eq!(aligned.epochs, (1..=60).collect::<Vec<u64>>());
    for (k, e) in aligned.epochs.iter().enumerate() {
        let want0 = (e % 3 == 0).then_some((0.5 + 0.01 * *e as f32) as f64);
        let want2 = (e % 3 == 0 && *e <= 25).then_some((0.5 + 0.01 * *e as f32) as f64);
        assert_eq!(
            (aligned.values[0][k], aligned.values[1][k]),
            (want0, want2),
            "epoch {e}"
        );
    }
}

#[test]
fn the_sweep_table_shows_what_differs_and_the_results() {
    let (root, _) = sample_store("table");
    let store = Store::open(&root).unwrap();
    let table = sweep_table(&store.group("sw"), &RESULT_FIELDS);
    assert_eq!(
        table.columns,
        [
            "run",
            "data.p",
            "optim.lr",
            "memorised_epoch",
            "grokked_epoch",
            "final_test_acc"
        ]
    );
    let md = table.markdown();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| run | data.p | optim.lr | memorised_epoch | grokked_epoch | final_test_acc |"
    );
    assert_eq!(lines[1], "|---|---|---|---|---|---|");
    assert_eq!(lines[2], "| a | 7 | 0.001 | 10 | 30 | 1 |");
    assert_eq!(lines[4], "| c | 11 | 0.001 |  |  |  |");
    let csv = table.csv();
    assert_eq!(csv.lines().nth(2), Some("b,7,0.003,5,15,1"));
}
