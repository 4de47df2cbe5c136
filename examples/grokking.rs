//! `cargo run --release --example grokking -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run grokking ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::grokking`.

fn main() {
    dynlab::programs::exit_on_error("grokking");
}
