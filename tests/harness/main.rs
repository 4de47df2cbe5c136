//! The run harness, on the host only (no device needed): histories (declared schema, columns added
//! by name and null before, exact CSV round trip), the Parquet writer against a file that pyarrow,
//! pandas and DuckDB read, run folders (new, resume, overwrite), and the generic experiment driver
//! (checkpoints, resume continuing exactly, the summary's provenance).

use dynlab::harness::{
    history_row,
    parquet::{from_parquet, to_parquet},
    parse_run_args, run_experiment, ColumnType, Experiment, History, RunDir, RunMode, RunOptions,
    Summary, Value,
};
use dynlab::models::Record;
use dynlab::{Device, Result};
use std::path::PathBuf;

history_row! {
    /// A row with every column type and nullable cells.
    struct Row {
        step: u64,
        loss: f32,
        wall: f64,
        task: String,
        acc: Option<f32>,
    }
}

fn sample() -> History {
    let mut h = History::of::<Row>();
    let rows = [
        (1, 2.5, 0.125, "a,b", Some(0.5)),
        (2, f32::NAN, 0.001, "say \"hi\"", None),
        (3, -0.0, 3.0, "", Some(1.0)),
    ];
    for (step, loss, wall, task, acc) in rows {
        h.push(&Row {
            step,
            loss,
            wall,
            task: task.into(),
            acc,
        })
        .unwrap();
    }
    h.set("extra", Value::F32(7.5)).unwrap();
    h.push_cells(&[("step", Value::U64(u64::MAX)), ("task", Value::Null)])
        .unwrap();
    h
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-harness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn histories_keep_a_declared_schema_and_add_columns_by_name() {
    let h = sample();
    let names: Vec<&str> = h.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["step", "loss", "wall", "task", "acc", "extra"]);
    assert_eq!(h.rows(), 4);
    assert_eq!(
        h.column("extra").unwrap().values,
        [Value::Null, Value::Null, Value::F32(7.5), Value::Null]
    );
    assert_eq!(h.column("acc").unwrap().values[1], Value::Null);
    assert_eq!(h.last("step"), Some(u64::MAX as f64));
    assert_eq!(h.first_row_reaching("acc", 0.9), Some(2));
    let mut h2 = h.clone();
    let e = h2.set("step", Value::F32(1.0)).unwrap_err().to_string();
    assert!(e.contains("`step`") && e.contains("U64"), "{e}");
    assert!(History::default().set("x", Value::U64(1)).is_err());
}

#[test]
fn first_rows_reaching_per_replica_match_a_scan_of_each_replica() {
    // Three replicas interleaved epoch by epoch, a null and a NaN accuracy, a key outside 0..3.
    let mut h = History::default();
    let accs = [
        0.1,
        0.5,
        f32::NAN,
        0.95,
        0.2,
        0.99,
        0.97,
        0.3,
        0.99,
        1.0,
        0.9,
        0.96,
    ];
    for (row, &acc) in accs.iter().enumerate() {
        let replica = if row == 10 { 7 } else { row as u64 % 3 };
        let acc = if row == 4 {
            Value::Null
        } else {
            Value::F32(acc)
        };
        h.push_cells(&[("replica", Value::U64(replica)), ("acc", acc)])
            .unwrap();
    }
    let scan = |k: u64, threshold: f64| {
        (0..h.rows()).find(|&r| {
            h.cell("replica", r).unwrap().as_f64() == Some(k as f64)
                && h.cell("acc", r)
                    .unwrap()
                    .as_f64()
                    .is_some_and(|a| a >= threshold)
        })
    };
    for threshold in [0.0, 0.9, 0.96, 0.999, 2.0] {
        let want: Vec<Option<usize>> = (0..4).map(|k| scan(k, threshold)).collect();
        assert_eq!(
            h.first_rows_reaching_per("acc", threshold, "replica", 4),
            want,
            "threshold {threshold}"
        );
    }
    assert_eq!(
        h.first_rows_reaching_per("acc", 0.9, "replica", 3),
        [Some(3), None, Some(5)]
    );
    assert_eq!(
        h.first_rows_reaching_per("missing", 0.0, "replica", 2),
        [None, None]
    );
}

#[test]
fn csv_round_trips_exactly() {
    let h = sample();
    let csv = h.to_csv();
    assert_eq!(
        csv,
        "step,loss,wall,task,acc,extra\n\
         1,2.5,0.125,\"a,b\",0.5,\n\
         2,NaN,0.001,\"say \"\"hi\"\"\",,\n\
         3,-0,3,\"\",1,7.5\n\
         18446744073709551615,,,,,\n"
    );
    let back = History::from_csv(&csv, &h.types()).unwrap();
    assert_eq!(format!("{back:?}"), format!("{h:?}"));
    let e = History::from_csv("a,b\n1\n", &[ColumnType::U64, ColumnType::F32])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    let e = History::from_csv("a\nx\n", &[ColumnType::F64])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a`"), "{e}");
}

/// The Parquet file of [`sample`], byte for byte. Read with pyarrow 26.0.1, pandas 3.1.1 and DuckDB 2.0.1
/// when it was written: the schema `step: uint64, loss: float, wall: double, task: string,
/// acc: float, extra: float`, the nulls, NaN and the text as in the history.
const SAMPLE_PARQUET: &[u8] = include_bytes!("sample.parquet");

#[test]
fn parquet_matches_the_file_other_readers_accept() {
    let bytes = to_parquet(&sample());
    if bytes != SAMPLE_PARQUET {
        let path = std::env::temp_dir().join("dynlab-sample.parquet");
        std::fs::write(&path, &bytes).unwrap();
        panic!("the writer's output changed; it is at {}", path.display());
    }
    let empty = to_parquet(&History::of::<Row>());
    assert!(empty.starts_with(b"PAR1") && empty.ends_with(b"PAR1"));
}

#[test]
fn parquet_reads_back_exactly_and_refuses_what_it_cannot_read() {
    // Compared as CSV (shortest round-trip floats, so exact) and types: NaN is not equal to itself.
    let same = |a: &History, b: &History| a.to_csv() == b.to_csv() && a.types() == b.types();
    let h = sample();
    assert!(same(&from_parquet(SAMPLE_PARQUET, "sample").unwrap(), &h));
    assert!(same(&from_parquet(&to_parquet(&h), "sample").unwrap(), &h));
    let empty = History::of::<Row>();
    assert!(same(
        &from_parquet(&to_parquet(&empty), "empty").unwrap(),
        &empty
    ));
    for (bytes, needle) in [
        (&b"PAR1 not a file PAR1"[..], "footer"),
        (&SAMPLE_PARQUET[..SAMPLE_PARQUET.len() - 1], "magic"),
        (&b"hello"[..], "magic"),
    ] {
        let e = from_parquet(bytes, "bad.parquet").unwrap_err().to_string();
        assert!(e.contains("bad.parquet") && e.contains(needle), "{e}");
    }
    // Every truncation of the body is an error, never a panic or a wrong history.
    let bytes = to_parquet(&h);
    for cut in (4..bytes.len() - 8).step_by(7) {
        let mut damaged = bytes.clone();
        damaged[cut] ^= 0xff;
        if let Ok(read) = from_parquet(&damaged, "damaged") {
            assert_eq!(read.rows(), h.rows(), "byte {cut} flipped");
        }
    }
}

#[test]
fn run_folders_refuse_to_overwrite_unless_asked() {
    let dir = tmp("folders");
    let run = RunDir::open(&dir, "r", RunMode::New).unwrap();
    run.write("note.txt", b"x").unwrap();
    let e = RunDir::open(&dir, "r", RunMode::New)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume") && e.contains("--overwrite"), "{e}");
    let e = RunDir::open(&dir, "r", RunMode::Resume)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no checkpoint"), "{e}");
    let run = RunDir::open(&dir, "r", RunMode::Overwrite).unwrap();
    assert!(!run.file("note.txt").exists());
    for bad in ["", "a/b", ".hidden"] {
        assert!(RunDir::open(&dir, bad, RunMode::New).is_err(), "{bad}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A host-only experiment: a random walk whose state is its position and step count.
struct Walk {
    position: u64,
    units: u64,
    finished: bool,
}

impl Experiment for Walk {
    fn device(&self) -> Option<&Device> {
        None
    }

    fn units(&self) -> u64 {
        self.units
    }

    fn unit_name(&self) -> &str {
        "steps"
    }

    fn checkpoint_every(&self) -> u64 {
        3
    }

    fn run_unit(&mut self, unit: u64, history: &mut History) -> Result<String> {
        self.position = self
            .position
            .wrapping_mul(6364136223846793005)
            .wrapping_add(unit);
        history.push_cells(&[
            ("unit", Value::U64(unit)),
            ("position", Value::U64(self.position >> 40)),
        ])?;
        Ok(format!("at {}", self.position >> 40))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default().with_value("position", self.position))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.position = record.value("position")?;
        Ok(())
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        self.finished = true;
        run.write("end.txt", history.rows().to_string().as_bytes())?;
        summary.set("final_position", history.last("position").unwrap() as i64);
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        vec![("walk", 11)]
    }
}

fn walk() -> Walk {
    Walk {
        position: 11,
        units: 10,
        finished: false,
    }
}

#[test]
fn experiments_resume_exactly_and_record_provenance() {
    let dir = tmp("experiments");
    let runs = dir.to_str().unwrap();
    let straight = run_experiment(
        &mut walk(),
        runs,
        "straight",
        "a = 1\n",
        History::default(),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!((straight.units_run, straight.history.rows()), (10, 10));
    let half = RunOptions {
        stop_at: Some(4),
        ..Default::default()
    };
    let mut first = walk();
    let part = run_experiment(
        &mut first,
        runs,
        "split",
        "a = 1\n",
        History::default(),
        half,
    )
    .unwrap();
    assert_eq!(part.history.rows(), 4);
    assert!(first.finished);
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let mut second = walk();
    let rest = run_experiment(
        &mut second,
        runs,
        "split",
        "a = 1\n",
        History::default(),
        resume,
    )
    .unwrap();
    assert_eq!(rest.units_run, 6);
    let without_time = |h: &History| {
        let columns = h.columns().iter().filter(|c| c.name != "seconds");
        columns.cloned().collect::<Vec<_>>()
    };
    assert_eq!(without_time(&rest.history), without_time(&straight.history));
    // Wall time accumulates across the resume.
    let seconds = rest.history.numbers("seconds").unwrap();
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]));
    let folder = dir.join("split");
    for file in [
        "config.toml",
        "checkpoint.safetensors",
        "history.csv",
        "history.parquet",
        "summary.toml",
        "end.txt",
    ] {
        assert!(folder.join(file).is_file(), "{file}");
    }
    let summary: toml::Table = std::fs::read_to_string(folder.join("summary.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(summary["steps"].as_integer(), Some(10));
    assert_eq!(
        summary["final_position"].as_integer(),
        straight.history.last("position").map(|p| p as i64)
    );
    let run = summary["run"].as_table().unwrap();
    assert_eq!(run["device"].as_str(), Some("none"));
    assert_eq!(run["seeds"]["walk"].as_integer(), Some(11));
    let rev = run["git_revision"].as_str().unwrap();
    assert!(rev.len() >= 40 || rev == "unknown", "{rev}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn extra_units_run_past_the_planned_end_on_resume() {
    let runs_dir = std::env::temp_dir().join(format!("dynlab-extra-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs_dir);
    let runs = runs_dir.to_str().unwrap();
    let go = |options: RunOptions| {
        run_experiment(
            &mut walk(),
            runs,
            "extra",
            "a = 1\n",
            History::default(),
            options,
        )
    };
    let done = go(RunOptions::default()).unwrap();
    assert_eq!(done.history.rows(), 10);
    let more = RunOptions {
        mode: RunMode::Resume,
        extra_units: Some(3),
        ..Default::default()
    };
    let o = go(more).unwrap();
    assert_eq!((o.units_run, o.history.rows()), (3, 13));
    let e = go(RunOptions {
        extra_units: Some(3),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("without --resume"), "{e}");
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let parsed = parse_run_args(args("--config c.toml --resume --extra-epochs 7"), "u").unwrap();
    assert_eq!(parsed.options.extra_units, Some(7));
    assert!(
        parse_run_args(args("--config c.toml --extra-epochs 7"), "u")
            .unwrap_err()
            .contains("--resume")
    );
    std::fs::remove_dir_all(&runs_dir).unwrap();
}
