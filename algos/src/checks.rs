//! The config checks every study's `plan` shares: each error names the key and what it accepts.

use dynlab_runtime::{Error, Result};

/// `value > 0`.
pub(crate) fn positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::config(key, "must be positive"));
    }
    Ok(())
}

/// `value` finite and `≥ 0`.
pub(crate) fn finite_non_negative(key: &str, value: f32) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Error::config(
            key,
            format!("{value} is not a finite non-negative number"),
        ));
    }
    Ok(())
}
