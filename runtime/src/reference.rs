//! f64 host references.
