//! Eager tensor operations, one family per file.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod conv_algorithm;
mod elementwise;
pub(crate) mod graph;
pub(crate) mod index;
pub(crate) mod matmul;
pub(crate) mod multi;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod random;
mod reduce;
pub(crate) mod rows;
mod softmax;
pub(crate) mod units;
