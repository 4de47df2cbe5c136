//! A progress bar on a terminal; on a pipe or in a log, a plain line every tenth of the run.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    total: u64,
    last_line: u64,
}

impl Progress {
    /// Counts `done` of `total` steps; `enabled: false` prints nothing.
    pub fn new(total: u64, done: u64, enabled: bool) -> Progress {
        let bar = if enabled {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} epochs {msg} [{elapsed_precise} < {eta_precise}, {per_sec}]",
            )
            .expect("valid template"),
        );
        bar.set_position(done);
        bar.reset_eta();
        Progress {
            bar,
            total,
            last_line: done,
        }
    }

    /// Moves to `pos` with a status message (also printed as a line when not on a terminal).
    pub fn update(&mut self, pos: u64, message: String, enabled: bool) {
        self.bar.set_position(pos);
        let plain = enabled && self.bar.is_hidden();
        let every = (self.total / 10).max(1);
        if plain && (pos - self.last_line >= every || pos == self.total) {
            println!("epoch {pos}/{}: {message}", self.total);
            self.last_line = pos;
        }
        self.bar.set_message(message);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
