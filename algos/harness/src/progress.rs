//! A progress bar on a terminal; on a pipe or in a log, a plain line every tenth of the run.

use indicatif::{ProgressBar, ProgressStyle};

/// Progress of a run in units (epochs, tasks).
pub struct Progress {
    bar: ProgressBar,
    total: u64,
    last_line: u64,
    unit: String,
    enabled: bool,
}

impl Progress {
    /// Counts `done` of `total` units called `unit`; `enabled: false` prints nothing.
    pub fn new(total: u64, done: u64, unit: &str, enabled: bool) -> Progress {
        let bar = if enabled {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        let template = format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}} < {{eta_precise}}]"
        );
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
        bar.set_position(done);
        bar.reset_eta();
        Progress {
            bar,
            total,
            last_line: done,
            unit: unit.to_string(),
            enabled,
        }
    }

    /// Moves to `pos` with a status message (also printed as a line when not on a terminal).
    pub fn update(&mut self, pos: u64, message: String) {
        self.bar.set_position(pos);
        let plain = self.enabled && self.bar.is_hidden();
        let every = (self.total / 10).max(1);
        if plain && (pos - self.last_line >= every || pos == self.total) {
            println!("{} {pos}/{}: {message}", self.unit, self.total);
            self.last_line = pos;
        }
        self.bar.set_message(message);
    }

    /// Leaves the bar at its final state.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
