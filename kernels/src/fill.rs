//! Constructors that write every element: `full`, `arange`, `eye`.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

/// `output[i] = value` for every element.
#[cube(launch_unchecked)]
pub fn fill<T: Numeric + CubeElement>(output: &mut Array<T>, value: T) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        output[i] = value;
    }
}

/// `output[i] = start + i · step`.
#[cube(launch_unchecked)]
pub fn arange<F: Float + CubeElement>(output: &mut Array<F>, start: F, step: F) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        output[i] = start + F::cast_from(i as u32) * step;
    }
}

/// Row-major `rows × cols` identity: 1 where row == col.
#[cube(launch_unchecked)]
pub fn eye<F: Float>(output: &mut Array<F>, cols: u32) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        let c = cols as usize;
        output[i] = select(i / c == i % c, F::new(1.0), F::new(0.0));
    }
}
