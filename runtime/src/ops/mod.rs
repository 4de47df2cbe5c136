//! Eager tensor operations, one family per file.

mod elementwise;
