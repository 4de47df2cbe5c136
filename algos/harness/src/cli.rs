//! The command line every experiment example shares:
//! `--config FILE.toml [--set key=value ...] [--resume [--extra-epochs N] | --overwrite]
//! [--stop-at UNIT] [--quiet]` (`--extra-units` is the same flag for experiments counted otherwise).

use crate::experiment::RunOptions;
use crate::run::RunMode;

/// What the command line asked for.
#[derive(Clone, Debug)]
pub struct RunArgs {
    /// The config file.
    pub config: String,
    /// `key=value` overrides, in order.
    pub overrides: Vec<String>,
    /// New, resume or overwrite; progress; where to stop.
    pub options: RunOptions,
}

/// Parses `args` (without the program name); `usage` is the line printed with every error and for
/// `--help`.
pub fn parse_run_args(
    args: impl IntoIterator<Item = String>,
    usage: &str,
) -> Result<RunArgs, String> {
    let mut config = None;
    let mut overrides = Vec::new();
    let mut options = RunOptions {
        progress: true,
        ..Default::default()
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{usage}"))
        };
        match flag.as_str() {
            "--config" => config = Some(value()?),
            "--set" => overrides.push(value()?),
            "--stop-at" => {
                let v = value()?;
                options.stop_at = Some(v.parse().map_err(|e| format!("--stop-at {v}: {e}"))?)
            }
            "--extra-epochs" | "--extra-units" => {
                let v = value()?;
                let parsed = v.parse().map_err(|e| format!("{flag} {v}: {e}"))?;
                options.extra_units = Some(parsed)
            }
            "--resume" | "--overwrite" if options.mode != RunMode::New => {
                return Err(format!(
                    "--resume and --overwrite exclude each other\n{usage}"
                ))
            }
            "--resume" => options.mode = RunMode::Resume,
            "--overwrite" => options.mode = RunMode::Overwrite,
            "--quiet" => options.progress = false,
            "--help" | "-h" => return Err(usage.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{usage}")),
        }
    }
    let config = config.ok_or_else(|| format!("--config is required\n{usage}"))?;
    if options.extra_units.is_some() && options.mode != RunMode::Resume {
        return Err(format!("--extra-epochs needs --resume\n{usage}"));
    }
    Ok(RunArgs {
        config,
        overrides,
        options,
    })
}
