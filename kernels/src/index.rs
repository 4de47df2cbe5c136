//! Indexing kernels: `gather` (and `index_select`, a gather through a broadcast index view) and a
//! deterministic `scatter_add`.
//!
//! `gather(x, dim, index)[c] = x[c with c_dim := index[c]]`.
//! `scatter_add(base, dim, index, src)[c] = base[c] + Σ_{k : index[c with c_dim := k] = c_dim} src[c with
//! c_dim := k]`, summed in increasing `k`: one unit per output element walks its line of the index, so
//! repeated indices give the same bits on every run (no atomics). Cost O(out · index.size(dim)).
//! Indices are validated by the runtime; the kernels clamp them so no access leaves the buffer.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::layout::strided_offset;
use cubecl::prelude::*;

#[cube]
fn clamp_index(j: i32, size: usize) -> usize {
    let hi = size as i32 - 1;
    select(j < 0, 0, select(j > hi, hi, j)) as usize
}

/// `output` has the index view's shape; `dim` is the gathered dimension.
#[cube(launch_unchecked)]
pub fn gather<T: CubePrimitive>(
    input: &Tensor<T>,
    index: &Tensor<i32>,
    output: &mut Array<T>,
    in_offset: u32,
    index_offset: u32,
    dim: u32,
) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        let j = index[strided_offset::<i32>(index, index_offset, i)];
        let rank = index.rank();
        let mut rem = i;
        let mut pos = in_offset as usize;
        for k in 0..rank {
            let d = rank - 1 - k;
            let size = index.shape(d);
            let c = rem % size;
            rem /= size;
            if d == dim as usize {
                pos += clamp_index(j, input.shape(d)) * input.stride(d);
            } else {
                pos += c * input.stride(d);
            }
        }
        output[i] = input[pos];
    }
}

/// `output` has the base view's shape; `index` and `src` views share the index's shape.
#[cube(launch_unchecked)]
pub fn scatter_add<F: Float>(
    base: &Tensor<F>,
    index: &Tensor<i32>,
    src: &Tensor<F>,
    output: &mut Array<F>,
    base_offset: u32,
    index_offset: u32,
    src_offset: u32,
    dim: u32,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let rank = base.rank();
        // Coordinates of `o` off `dim`, mapped into the index and src views; `target` is c_dim.
        let mut rem = o;
        let mut idx_pos = index_offset as usize;
        let mut src_pos = src_offset as usize;
        let mut target = 0usize;
        let mut inside = true;
        for k in 0..rank {
            let d = rank - 1 - k;
            let size = base.shape(d);
            let c = rem % size;
            rem /= size;
            if d == dim as usize {
                target = c;
            } else {
                inside = inside && c < index.shape(d);
                idx_pos += c * index.stride(d);
                src_pos += c * src.stride(d);
            }
        }
        let mut acc = base[strided_offset::<F>(base, base_offset, o)];
        if inside {
            let d = dim as usize;
            let n = index.shape(d);
            for k in 0..n {
                if index[idx_pos + k * index.stride(d)] == target as i32 {
                    acc += src[src_pos + k * src.stride(d)];
                }
            }
        }
        output[o] = acc;
    }
}
