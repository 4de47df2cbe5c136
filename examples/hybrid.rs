//! `cargo run --release --example hybrid -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run hybrid ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::hybrid`.

fn main() {
    dynlab::programs::exit_on_error("hybrid");
}
