//! `cargo run --release --example landscape -- --config FILE.toml [--set key=value ...]`: the same as
//! `dynlab run landscape ...`; the program, its options and its outputs are documented in
//! `dynlab::programs::landscape`.

fn main() {
    dynlab::programs::exit_on_error("landscape");
}
