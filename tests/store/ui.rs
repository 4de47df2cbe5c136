//! The run browser in a real headless Chromium (Debian's `chromium`; `.ci/run` installs it and sets
//! `DYNLAB_REQUIRE_CHROMIUM=1`, elsewhere the tests say they skipped when there is none): `dynlab
//! serve` on a runs folder with two tiny grokking runs, both selected through the page's
//! `?select=` hook (which ticks their boxes as a click does), a plot of each run in every section
//! found in the DOM, and a screenshot in `target/ui/`; then `dynlab report` as one file.

use super::scratch;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SECTIONS: [&str; 4] = ["training", "curvature", "model", "adam"];
const RUNS: [&str; 2] = ["ui/lr3e-3", "ui/lr0.01"];

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The browser, or `None` (and a note) where there is none and CI did not ask for one.
fn browser() -> Option<&'static str> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("DYNLAB_REQUIRE_CHROMIUM").is_err(),
            "DYNLAB_REQUIRE_CHROMIUM is set but no chromium runs (apt-get install chromium)"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

fn headless(browser: &str, args: &[&str]) -> String {
    // coreutils' timeout: a Chromium that hangs (it can, in containers) fails the test instead.
    let out = Command::new("timeout")
        .args(["120", browser])
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Two 30-epoch runs of a tiny MLP in `<root>/ui/` (a sweep over the learning rate), with every
/// metric of the four sections measured.
fn two_runs(root: &Path) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/configs/validate.toml");
    let sweep = root.join("ui.toml");
    let text = format!(
        "name = \"ui\"\nprogram = \"grokking\"\nconfig = \"{}\"\nruns_dir = \"{}\"\n[global]\n\
         data.p = 7\nmodel.hidden = [[16]]\ntrain.epochs = 30\ntrain.checkpoint_every = 10\n\
         metrics.smoothness_every = 5\nmetrics.jacobian_every = 5\nmetrics.input_hessian_every = 10\n\
         metrics.weight_curvature_every = 10\noptim.lr = [3e-3, 1e-2]\n",
        config.display(),
        root.display()
    );
    std::fs::write(&sweep, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dynlab"))
        .args(["sweep", sweep.to_str().unwrap(), "--workers", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The text of `<section … data-section="key">…</section>` in `dom`.
fn section<'a>(dom: &'a str, key: &str) -> &'a str {
    let start = dom
        .find(&format!("data-section=\"{key}\""))
        .unwrap_or_else(|| panic!("no section {key} in the DOM"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// Every section has plots, and a series of each of `runs`.
fn assert_plots_for(dom: &str, runs: &[&str]) {
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page did not finish drawing"
    );
    assert!(
        dom.contains("<div id=\"banner\" role=\"alert\" hidden=\"\">"),
        "the page shows errors"
    );
    for key in SECTIONS {
        let s = section(dom, key);
        let plots = s.matches("<svg class=\"plot\"").count();
        assert!(plots > 0, "section {key} has no plot");
        for run in runs {
            assert!(
                s.contains(&format!("data-run=\"{run}\"")),
                "section {key} has no series of {run}"
            );
        }
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dynlab serve root --port 0` and its address.
fn serve(root: &Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynlab"))
        .args(["serve", root.to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
    (Server(child), url)
}

#[test]
fn the_served_browser_plots_both_selected_runs_in_every_section() {
    let Some(browser) = browser() else { return };
    let root = scratch("ui-serve");
    two_runs(&root);
    let (_server, url) = serve(&root);
    let page = format!("{url}?select={}", RUNS.join(","));
    let dom = headless(browser, &["--dump-dom", &page]);
    assert!(
        dom.contains("data-mode=\"served\""),
        "the page did not fetch from the server"
    );
    assert_plots_for(&dom, &RUNS);
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("browser.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        browser,
        &[
            "--hide-scrollbars",
            "--window-size=1400,1800",
            &format!("--screenshot={}", shot.display()),
            &page,
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
}

#[test]
fn the_report_is_one_file_with_every_run_plotted() {
    let Some(browser) = browser() else { return };
    let root = scratch("ui-report");
    two_runs(&root);
    let report = root.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_dynlab"))
        .args([
            "report",
            root.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("<!--DYNLAB_DATA-->") && html.contains("id=\"dynlab-data\""));
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(external), "the report loads `{external}…`");
    }
    let dom = headless(
        browser,
        &["--dump-dom", &format!("file://{}", report.display())],
    );
    assert!(dom.contains("data-mode=\"report\""));
    assert_plots_for(&dom, &RUNS);
}
