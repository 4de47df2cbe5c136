//! The connectivity suite: message-passing kernels against f64 host sums (random graphs with
//! empty rows, repeated edges, self-loops, a single node, no edges) and their gradient checks, the
//! simulator's steps against a host f64 Euler step, the connectivity generators' statistics, the
//! published metrics on known inputs, the Signal_Propagation model (dense and sparse messages)
//! against a host forward, config errors, stop/resume, and a small network's connectivity
//! recovered end to end.

mod kernels;
mod model;
mod study;
