//! The `dynlab` command line (see `dynlab::cli`): `dynlab run <program> ...`, `dynlab sweep ...`,
//! `dynlab runs ...`, `dynlab serve ...`, `dynlab report ...`.

fn main() {
    if let Err(e) = dynlab::cli::run(std::env::args().skip(1).collect()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
