//! The grokking study's suite: the transformer against a host f64 transformer (forward, every
//! gradient, tied embeddings), the metrics against brute-force f64 computations, and the runner
//! end to end with the transformer.

mod fisher;
mod metrics;
mod routed;
mod study;
mod transformer;
