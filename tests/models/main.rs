//! The models suite: layers against f64 references, initialisations, parameter names and state
//! dicts, and the module contract (taps, visiting by path, errors that name the module,
//! replacements, the RNG of stochastic layers, buffers).

mod contract;
mod layers;
mod plasticity;
