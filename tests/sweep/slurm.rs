//! A sweep as a SLURM job array on a real cluster: `.ci/run` starts a one-node cluster
//! (`scripts/slurm-local.sh start`: munge, slurmctld and slurmd from Debian's packages) and sets
//! `DYNLAB_REQUIRE_SLURM=1`; elsewhere the test runs when `sinfo` answers and says it skipped
//! otherwise.

use super::{check, dynlab, scratch, tiny_sweep, RUNS};
use std::process::Command;
use std::time::{Duration, Instant};

fn cluster_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

#[test]
fn a_four_run_array_completes_on_slurm_and_status_reports_it() {
    if !cluster_up() {
        assert!(
            std::env::var("DYNLAB_REQUIRE_SLURM").is_err(),
            "DYNLAB_REQUIRE_SLURM is set but no SLURM cluster answers (scripts/slurm-local.sh start)"
        );
        eprintln!("skipped: no SLURM cluster answers `sinfo` (scripts/slurm-local.sh start)");
        return;
    }
    let dir = scratch("slurm");
    let file = tiny_sweep(&dir, 30);
    let f = file.to_str().unwrap();
    let out = check(
        &dynlab(
            &dir,
            &["sweep", f, "--slurm", "--cpu", "--max-parallel", "2"],
        ),
        "sbatch submission",
    );
    let job = out
        .lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .and_then(|l| l.split(';').next())
        .unwrap_or_else(|| panic!("no job id in {out}"))
        .to_string();
    let job: String = job.chars().take_while(char::is_ascii_digit).collect();
    let script = std::fs::read_to_string(dir.join("runs/tiny/slurm/1/array.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");
    assert!(script.contains("slurm_logs/%A_%a.out"), "{script}");
    assert!(!script.contains("--gpus-per-task"), "{script}");
    let frozen = dir.join("runs/tiny/slurm/1/sweep.toml");
    assert!(
        script.contains(&format!("sweep {} --index", frozen.display())),
        "{script}"
    );
    let jobs = std::fs::read_to_string(dir.join("runs/tiny/slurm/jobs")).unwrap();
    assert_eq!(jobs.trim(), format!("{job} 1 -"));
    // The tasks read the frozen copy: editing the sweep file now changes nothing they run.
    std::fs::write(&file, "not a sweep").unwrap();

    let sweep = dynlab::sweep::Sweep::load(&frozen, None, &super::resolver).unwrap();
    let slurm_says_completed = || {
        dynlab::sweep::slurm::status(&sweep)
            .iter()
            .all(|s| s.slurm.as_deref() == Some("COMPLETED"))
    };
    let start = Instant::now();
    let status = loop {
        let frozen = frozen.to_str().unwrap();
        let status = check(&dynlab(&dir, &["sweep", "status", frozen]), "status");
        if status.matches("completed").count() == 4 && slurm_says_completed() {
            break status;
        }
        let failed = [
            "failed",
            "cancelled",
            "timeout",
            "node_fail",
            "out_of_memory",
        ];
        assert!(
            !failed.iter().any(|s| status.contains(s)),
            "a task failed:\n{status}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not done after 300 s:\n{status}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    for (task, name) in RUNS.iter().enumerate() {
        super::assert_complete(&dir.join("runs/tiny").join(name), 30);
        let log = dir.join(format!("runs/tiny/slurm_logs/{job}_{task}.out"));
        let text =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert!(
            text.contains(name),
            "task {task}'s log does not name {name}: {text}"
        );
        assert!(status.contains(&format!("{task}  {name}")), "{status}");
    }
}
