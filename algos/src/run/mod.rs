//! What every experiment run needs around its training loop: TOML configs with `--set key=value`
//! overrides, a progress bar, and loss/accuracy curves saved as PNG.

mod config;
mod plot;
mod progress;

pub use config::{load_config, parse_config};
pub use plot::plot_curves;
pub use progress::Progress;
