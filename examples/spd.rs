//! `cargo run --release --example spd -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run spd ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::spd`.

fn main() {
    dynlab::programs::exit_on_error("spd");
}
