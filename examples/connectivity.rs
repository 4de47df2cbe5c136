//! `cargo run --release --example connectivity -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run connectivity ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::connectivity`.

fn main() {
    dynlab::programs::exit_on_error("connectivity");
}
