//! `cargo run --release --example bit_flipping -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run bit_flipping ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::bit_flipping`.

fn main() {
    dynlab::programs::exit_on_error("bit_flipping");
}
