//! `cargo run --release --example supervised -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run supervised ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::supervised`.

fn main() {
    dynlab::programs::exit_on_error("supervised");
}
