//! The experiment programs: each study's command line (`--config FILE.toml [--set key=value ...]
//! [--resume | --overwrite] [--stop-at UNIT] [--quiet]`), run by the `dynlab` binary as
//! `dynlab run <program> ...` and by the thin `examples/<program>.rs`. [`PROGRAMS`] is the registry
//! the command line, the sweeps and the SLURM scripts look programs up in.

pub mod bit_flipping;
pub mod connectivity;
pub mod grokking;
pub mod hybrid;
pub mod landscape;
pub mod spd;
pub mod supervised;

use crate::harness::load_config;
use crate::runtime::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// One experiment program.
#[derive(Clone, Copy)]
pub struct Program {
    /// Its name on the command line (`dynlab run <name>`).
    pub name: &'static str,
    /// One line on what it runs.
    pub about: &'static str,
    /// Runs it on its arguments (without the program name).
    pub main: fn(Vec<String>) -> std::result::Result<(), String>,
    /// Reads a config file, applies `key=value` overrides and returns the resolved TOML (every
    /// default filled in): what a sweep checks its keys and values against.
    pub resolve: fn(&Path, &[String]) -> Result<String>,
}

fn resolve<T: DeserializeOwned + Serialize>(config: &Path, overrides: &[String]) -> Result<String> {
    load_config::<T>(config, overrides).map(|(_, resolved)| resolved)
}

/// Every program, by name.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "grokking",
        about: "grokking on modular arithmetic: MLP, transformer or routed network",
        main: grokking::main,
        resolve: resolve::<crate::algos::grokking::GrokkingConfig>,
    },
    Program {
        name: "bit_flipping",
        about: "loss of plasticity on the slowly-changing regression (bit-flipping) problem",
        main: bit_flipping::main,
        resolve: resolve::<crate::algos::continual::BitFlippingConfig>,
    },
    Program {
        name: "supervised",
        about: "continual supervised task streams (permuted MNIST, class pairs, ...) with the plasticity measures",
        main: supervised::main,
        resolve: resolve::<crate::algos::continual::SupervisedConfig>,
    },
    Program {
        name: "spd",
        about: "stochastic parameter decomposition of a toy model",
        main: spd::main,
        resolve: resolve::<crate::algos::spd::SpdConfig>,
    },
    Program {
        name: "connectivity",
        about: "connectivity recovery: simulate a neural network, fit the message-passing GNN",
        main: connectivity::main,
        resolve: resolve::<crate::algos::connectivity::ConnectivityConfig>,
    },
    Program {
        name: "hybrid",
        about: "hybrid predictive training: skip backward passes by predicting training",
        main: hybrid::main,
        resolve: resolve::<crate::algos::hybrid::HybridRunConfig>,
    },
    Program {
        name: "landscape",
        about: "the deep linear network's loss landscape and Hessian spectrum",
        main: landscape::main,
        resolve: resolve::<crate::algos::landscape::DeepLinearConfig>,
    },
];

/// The program called `name`.
pub fn program(name: &str) -> Result<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        Error::config(
            "program",
            format!("no program `{name}`; the programs are {}", names.join(", ")),
        )
    })
}

impl Program {
    /// Runs the program on `args`; `--help` prints its usage and succeeds.
    pub fn run(&self, args: Vec<String>) -> std::result::Result<(), String> {
        let help = args.iter().any(|a| a == "--help" || a == "-h");
        match (self.main)(args) {
            Err(usage) if help && usage.starts_with("usage:") => {
                println!("{usage}");
                Ok(())
            }
            result => result,
        }
    }
}

/// Runs `program` on the process's arguments and exits with status 1 and the error on failure
/// (what each `examples/<program>.rs` does).
pub fn exit_on_error(program: &str) {
    let args = std::env::args().skip(1).collect();
    if let Err(e) = (self::program(program).map_err(|e| e.to_string())).and_then(|p| p.run(args)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
