//! Matrix products `out[b] = α · A[b] B[b] (+ β · C[b]) (+ bias)` over a (broadcast) batch.
//!
//! Operands arrive as strided views already expanded to the output's batch shape, so transposes and
//! broadcast batches cost no copies: element `(i, k)` of batch `b` of `A` is at
//! `offset + batch_offset(A, b) + i · stride(r−2) + k · stride(r−1)`. Products accumulate in `F`
//! (f32) whatever the input element type `E` (f32, f16, bf16).
//!
//! Two kernels:
//! - [`matmul_tiled()`]: a cube computes a `BM × BN` block of the output; per step of `BK` along K it
//!   stages an `A` and a `B` tile in shared memory (`A` transposed so a unit's rows are contiguous),
//!   then each unit accumulates a `TM × TN` register block with outer products. A unit's rows and
//!   columns are interleaved with its neighbours' (stride `BM/TM`, `BN/TN`) so adjacent units touch
//!   adjacent words: conflict-free shared memory on GPUs, contiguous SIMD loads on CPU Vulkan.
//! - [`matmul_dot()`]: one unit per output element, a plain dot product along K — for skinny shapes
//!   (matrix-vector, tiny M or N) where tiles would be mostly padding.
//! - [`matmul_register()`] and [`matmul_register_vec()`]: register blocks fed straight from global memory
//!   (no shared memory, no barriers), for CPU Vulkan. There a cube's units run as SIMD lanes, a load
//!   whose address is the same for every lane is one scalar load, and a lane-varying load is a
//!   gather. With one unit row per cube (`BM = TM`) every `A` load is lane-uniform; the vectorised
//!   variant reads `B` four columns per gather, which more than doubles throughput on lavapipe.

use cubecl::prelude::*;

/// Comptime shape of one tiled launch.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Tiling {
    /// Output rows per cube `BM`.
    pub bm: u32,
    /// Output columns per cube `BN`.
    pub bn: u32,
    /// Step along K per shared-memory stage `BK` (the tiled kernel).
    pub bk: u32,
    /// Output rows per unit `TM`.
    pub tm: u32,
    /// Output columns per unit `TN`.
    pub tn: u32,
}

impl Tiling {
    /// Units per cube.
    pub fn units(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
}

/// What the epilogue adds to `α · A B`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Epilogue {
    /// Adds `β · C[b, i, j]` (C a strided view of the output's shape).
    pub accumulate: bool,
    /// Adds `bias[j]`.
    pub bias: bool,
}

/// Offset of batch `batch` (row-major over the leading `rank − 2` dimensions) in view `t`.
#[cube]
fn batch_offset<E: CubePrimitive>(t: &Tensor<E>, batch: usize) -> usize {
    let rank = t.rank();
    let mut rem = batch;
    let mut off = 0usize;
    for k in 0..rank - 2 {
        let d = rank - 3 - k;
        let size = t.shape(d);
        off += (rem % size) * t.stride(d);
        rem /= size;
    }
    off
}

pub use kernels::*;

// `#[cube]` and `#[derive(CubeType)]` emit public items beside each kernel (its launcher module,
// `…Expand`/`…Launch` types) that take no doc attributes; the lint is allowed on this module only.
#[allow(missing_docs)]
mod kernels {
    use super::*;

    /// Tiled, register-blocked product. Cube `(x, y, z)` covers columns `x·BN..`, rows `y·BM..` of
    /// batch `z`; its units form a `(BN/TN) × (BM/TM)` grid.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_tiled<E: Float, F: Float + CubeElement>(
        a: &Tensor<E>,
        b: &Tensor<E>,
        out: &mut Array<F>,
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        a_offset: u32,
        b_offset: u32,
        c_offset: u32,
        #[comptime] tiling: Tiling,
        #[comptime] epilogue: Epilogue,
    ) {
        let (bm, bn, bk, tm, tn) = (tiling.bm, tiling.bn, tiling.bk, tiling.tm, tiling.tn);
        let units = comptime!(tiling.units());
        // A unit owns rows `ty + i·(BM/TM)` and columns `tx + j·(BN/TN)`: neighbouring units read
        // neighbouring shared-memory words and write neighbouring outputs.
        let rows_per_step = comptime!(bm / tm);
        let cols_per_step = comptime!(bn / tn);
        let rank = a.rank();
        let m = a.shape(rank - 2);
        let k = a.shape(rank - 1);
        let n = b.shape(rank - 1);
        let (a_rs, a_cs) = (a.stride(rank - 2), a.stride(rank - 1));
        let (b_rs, b_cs) = (b.stride(rank - 2), b.stride(rank - 1));
        let batch = CUBE_POS_Z as usize;
        let a_base = a_offset as usize + batch_offset::<E>(a, batch);
        let b_base = b_offset as usize + batch_offset::<E>(b, batch);
        let row0 = (CUBE_POS_Y * bm) as usize;
        let col0 = (CUBE_POS_X * bn) as usize;
        let tid = UNIT_POS;
        let tx = UNIT_POS_X;
        let ty = UNIT_POS_Y;

        let mut a_tile = SharedMemory::<F>::new(comptime!((bk * bm) as usize));
        let mut b_tile = SharedMemory::<F>::new(comptime!((bk * bn) as usize));
        let mut acc = Array::<F>::new(comptime!((tm * tn) as usize));
        #[unroll]
        for r in 0..tm * tn {
            acc[r as usize] = F::new(0.0);
        }
        let mut a_reg = Array::<F>::new(comptime!(tm as usize));
        let mut b_reg = Array::<F>::new(comptime!(tn as usize));

        let steps = k.div_ceil(bk as usize);
        for step in 0..steps {
            let k0 = step * bk as usize;
            // Stage A (transposed into [BK][BM]) and B ([BK][BN]); out-of-range elements are zeros.
            #[unroll]
            for l in 0..comptime!((bm * bk).div_ceil(units)) {
                let idx = tid + l * units;
                if idx < bm * bk {
                    let (i, kk) = ((idx / bk) as usize, (idx % bk) as usize);
                    let (gi, gk) = (row0 + i, k0 + kk);
                    let inside = gi < m && gk < k;
                    let v = a[select(inside, a_base + gi * a_rs + gk * a_cs, 0)];
                    a_tile[kk * bm as usize + i] = select(inside, F::cast_from(v), F::new(0.0));
                }
            }
            #[unroll]
            for l in 0..comptime!((bk * bn).div_ceil(units)) {
                let idx = tid + l * units;
                if idx < bk * bn {
                    let (kk, j) = ((idx / bn) as usize, (idx % bn) as usize);
                    let (gk, gj) = (k0 + kk, col0 + j);
                    let inside = gk < k && gj < n;
                    let v = b[select(inside, b_base + gk * b_rs + gj * b_cs, 0)];
                    b_tile[kk * bn as usize + j] = select(inside, F::cast_from(v), F::new(0.0));
                }
            }
            sync_cube();
            #[unroll]
            for kk in 0..bk {
                #[unroll]
                for i in 0..tm {
                    a_reg[i as usize] = a_tile[(kk * bm + i * rows_per_step + ty) as usize];
                }
                #[unroll]
                for j in 0..tn {
                    b_reg[j as usize] = b_tile[(kk * bn + j * cols_per_step + tx) as usize];
                }
                #[unroll]
                for i in 0..tm {
                    #[unroll]
                    for j in 0..tn {
                        let r = (i * tn + j) as usize;
                        acc[r] += a_reg[i as usize] * b_reg[j as usize];
                    }
                }
            }
            sync_cube();
        }

        let out_base = batch * m * n;
        let c_at = c_view::<F>(c, c_offset, batch);
        #[unroll]
        for i in 0..tm {
            #[unroll]
            for j in 0..tn {
                let gi = row0 + (i * rows_per_step + ty) as usize;
                let gj = col0 + (j * cols_per_step + tx) as usize;
                if gi < m && gj < n {
                    let value = acc[(i * tn + j) as usize];
                    let pos = out_base + gi * n + gj;
                    write_at::<F>(
                        out, c, bias, alpha, beta, c_at, gi, gj, pos, value, epilogue,
                    );
                }
            }
        }
    }

    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn write_at<F: Float>(
        out: &mut Array<F>,
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        c_at: CView,
        i: usize,
        j: usize,
        pos: usize,
        value: F,
        #[comptime] epilogue: Epilogue,
    ) {
        out[pos] = finish::<F>(c, bias, alpha, beta, c_at, i, j, value, epilogue);
    }

    /// Where batch `b` of the accumulated view `C` starts, and its row and column strides: computed
    /// once per unit, not once per written element (the batch decoding is a loop, and unrolled
    /// epilogues of hundreds of elements would each carry one).
    #[derive(CubeType, Clone, Copy)]
    pub struct CView {
        base: usize,
        row_stride: usize,
        col_stride: usize,
    }

    #[cube]
    fn c_view<F: Float>(c: &Tensor<F>, c_offset: u32, batch: usize) -> CView {
        let rank = c.rank();
        CView {
            base: c_offset as usize + batch_offset::<F>(c, batch),
            row_stride: c.stride(rank - 2),
            col_stride: c.stride(rank - 1),
        }
    }

    /// `α · value (+ β · C[b, i, j]) (+ bias[j])`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn finish<F: Float>(
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        c_at: CView,
        i: usize,
        j: usize,
        value: F,
        #[comptime] epilogue: Epilogue,
    ) -> F {
        let mut v = alpha * value;
        if epilogue.accumulate {
            v += beta * c[c_at.base + i * c_at.row_stride + j * c_at.col_stride];
        }
        if epilogue.bias {
            v += bias[j];
        }
        v
    }

    /// One unit per output element: `out[b, i, j] = Σ_k A[b, i, k] B[b, k, j]`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_dot<E: Float, F: Float + CubeElement>(
        a: &Tensor<E>,
        b: &Tensor<E>,
        out: &mut Array<F>,
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        a_offset: u32,
        b_offset: u32,
        c_offset: u32,
        #[comptime] epilogue: Epilogue,
    ) {
        let rank = a.rank();
        let m = a.shape(rank - 2);
        let k = a.shape(rank - 1);
        let n = b.shape(rank - 1);
        let pos = ABSOLUTE_POS;
        let per_batch = m * n;
        let batch = pos / per_batch.max(1);
        let total = per_batch * out_batches::<E>(a);
        if pos < total {
            let i = (pos % per_batch) / n;
            let j = pos % n;
            let (a_rs, a_cs) = (a.stride(rank - 2), a.stride(rank - 1));
            let (b_rs, b_cs) = (b.stride(rank - 2), b.stride(rank - 1));
            let a_row = a_offset as usize + batch_offset::<E>(a, batch) + i * a_rs;
            let b_col = b_offset as usize + batch_offset::<E>(b, batch) + j * b_cs;
            let mut acc = F::new(0.0);
            for kk in 0..k {
                acc += F::cast_from(a[a_row + kk * a_cs]) * F::cast_from(b[b_col + kk * b_rs]);
            }
            let c_at = c_view::<F>(c, c_offset, batch);
            write_at::<F>(out, c, bias, alpha, beta, c_at, i, j, pos, acc, epilogue);
        }
    }

    /// Number of batches: the product of the leading `rank − 2` sizes.
    #[cube]
    fn out_batches<E: CubePrimitive>(t: &Tensor<E>) -> usize {
        let rank = t.rank();
        let mut count = 1usize;
        for d in 0..rank - 2 {
            count *= t.shape(d);
        }
        count
    }

    /// Register-blocked product without shared memory: each unit reads its `TM` rows of `A` and `TN`
    /// columns of `B` straight from global memory (caches do the staging on CPU devices). Cube of
    /// `(BN/TN) × (BM/TM)` units covers a `BM × BN` block.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_register<E: Float, F: Float + CubeElement>(
        a: &Tensor<E>,
        b: &Tensor<E>,
        out: &mut Array<F>,
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        a_offset: u32,
        b_offset: u32,
        c_offset: u32,
        #[comptime] tiling: Tiling,
        #[comptime] epilogue: Epilogue,
    ) {
        let (bm, bn, tm, tn) = (tiling.bm, tiling.bn, tiling.tm, tiling.tn);
        let rows_per_step = comptime!(bm / tm);
        let cols_per_step = comptime!(bn / tn);
        let rank = a.rank();
        let m = a.shape(rank - 2);
        let k = a.shape(rank - 1);
        let n = b.shape(rank - 1);
        let (a_rs, a_cs) = (a.stride(rank - 2), a.stride(rank - 1));
        let (b_rs, b_cs) = (b.stride(rank - 2), b.stride(rank - 1));
        let batch = CUBE_POS_Z as usize;
        let a_base = a_offset as usize + batch_offset::<E>(a, batch);
        let b_base = b_offset as usize + batch_offset::<E>(b, batch);
        // With one unit row per cube (BM = TM) the rows depend on the cube alone: every unit of the cube
        // loads the same A elements, which a CPU device turns into scalar loads and broadcasts.
        let row0 = if comptime!(bm == tm) {
            (CUBE_POS_Y * bm) as usize
        } else {
            (CUBE_POS_Y * bm + UNIT_POS_Y) as usize
        };
        let col0 = (CUBE_POS_X * bn + UNIT_POS_X) as usize;

        let mut acc = Array::<F>::new(comptime!((tm * tn) as usize));
        #[unroll]
        for r in 0..tm * tn {
            acc[r as usize] = F::new(0.0);
        }
        let mut a_reg = Array::<F>::new(comptime!(tm as usize));
        let mut b_reg = Array::<F>::new(comptime!(tn as usize));
        // Clamp rows/columns into range (their results are never written) so loads need no branches.
        let mut a_rows = Array::<usize>::new(comptime!(tm as usize));
        let mut b_cols = Array::<usize>::new(comptime!(tn as usize));
        #[unroll]
        for i in 0..tm {
            let r = row0 + (i * rows_per_step) as usize;
            a_rows[i as usize] = a_base + select(r < m, r, 0) * a_rs;
        }
        #[unroll]
        for j in 0..tn {
            let col = col0 + (j * cols_per_step) as usize;
            b_cols[j as usize] = b_base + select(col < n, col, 0) * b_cs;
        }
        for kk in 0..k {
            #[unroll]
            for i in 0..tm {
                a_reg[i as usize] = F::cast_from(a[a_rows[i as usize] + kk * a_cs]);
            }
            #[unroll]
            for j in 0..tn {
                b_reg[j as usize] = F::cast_from(b[b_cols[j as usize] + kk * b_rs]);
            }
            #[unroll]
            for i in 0..tm {
                #[unroll]
                for j in 0..tn {
                    acc[(i * tn + j) as usize] += a_reg[i as usize] * b_reg[j as usize];
                }
            }
        }
        let out_base = batch * m * n;
        let c_at = c_view::<F>(c, c_offset, batch);
        #[unroll]
        for i in 0..tm {
            #[unroll]
            for j in 0..tn {
                let gi = row0 + (i * rows_per_step) as usize;
                let gj = col0 + (j * cols_per_step) as usize;
                if gi < m && gj < n {
                    let pos = out_base + gi * n + gj;
                    write_at::<F>(
                        out,
                        c,
                        bias,
                        alpha,
                        beta,
                        c_at,
                        gi,
                        gj,
                        pos,
                        acc[(i * tn + j) as usize],
                        epilogue,
                    );
                }
            }
        }
    }

    /// [`matmul_register()`] with `B` read as `Vector<E, N>` along its rows (unit column stride, `N`
    /// dividing the row stride, the batch strides, the offset and `n`): one load brings `N` columns, so
    /// the lane-varying operand costs `N` times fewer loads. `TN` counts scalar columns (a multiple of
    /// `N`); unit `tx` owns vector columns `tx + j·(BN/TN)`. Cube `(x, y, z)` covers rows `x·BM..`,
    /// columns `y·BN..` of batch `z`; the output is written as vectors too.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_register_vec<E: Float, F: Float + CubeElement, N: Size>(
        a: &Tensor<E>,
        b: &Tensor<E>,
        b_vec: &Array<Vector<E, N>>,
        out: &mut Array<Vector<F, N>>,
        c: &Tensor<F>,
        bias: &Array<F>,
        alpha: F,
        beta: F,
        a_offset: u32,
        b_offset: u32,
        c_offset: u32,
        #[comptime] tiling: Tiling,
        #[comptime] epilogue: Epilogue,
    ) {
        let (bm, bn, tm, tn) = (tiling.bm, tiling.bn, tiling.tm, tiling.tn);
        let width = N::value().comptime() as u32;
        let tv = comptime!(tn / width);
        let rows_per_step = comptime!(bm / tm);
        let vecs_per_step = comptime!(bn / tn);
        let rank = a.rank();
        let m = a.shape(rank - 2);
        let k = a.shape(rank - 1);
        let n = b.shape(rank - 1);
        let n_vec = n / width as usize;
        let (a_rs, a_cs) = (a.stride(rank - 2), a.stride(rank - 1));
        let b_rs_vec = b.stride(rank - 2) / width as usize;
        let batch = CUBE_POS_Z as usize;
        let a_base = a_offset as usize + batch_offset::<E>(a, batch);
        let b_base_vec = (b_offset as usize + batch_offset::<E>(b, batch)) / width as usize;
        // Row blocks along `x` (see the launcher): consecutive cubes share their panel of `B`.
        let row0 = if comptime!(bm == tm) {
            (CUBE_POS_X * bm) as usize
        } else {
            (CUBE_POS_X * bm + UNIT_POS_Y) as usize
        };
        let vcol0 = (CUBE_POS_Y * (bn / width) + UNIT_POS_X) as usize;

        let mut acc = Array::<Vector<F, N>>::new(comptime!((tm * tv) as usize));
        #[unroll]
        for r in 0..tm * tv {
            acc[r as usize] = Vector::new(F::new(0.0));
        }
        let mut a_reg = Array::<F>::new(comptime!(tm as usize));
        let mut b_reg = Array::<Vector<F, N>>::new(comptime!(tv as usize));
        let mut a_rows = Array::<usize>::new(comptime!(tm as usize));
        let mut b_cols = Array::<usize>::new(comptime!(tv as usize));
        #[unroll]
        for i in 0..tm {
            let r = row0 + (i * rows_per_step) as usize;
            a_rows[i as usize] = a_base + select(r < m, r, 0) * a_rs;
        }
        #[unroll]
        for j in 0..tv {
            let col = vcol0 + (j * vecs_per_step) as usize;
            b_cols[j as usize] = b_base_vec + select(col < n_vec, col, 0);
        }
        for kk in 0..k {
            #[unroll]
            for i in 0..tm {
                a_reg[i as usize] = F::cast_from(a[a_rows[i as usize] + kk * a_cs]);
            }
            #[unroll]
            for j in 0..tv {
                b_reg[j as usize] = Vector::cast_from(b_vec[b_cols[j as usize] + kk * b_rs_vec]);
            }
            #[unroll]
            for i in 0..tm {
                let a_i = Vector::<F, N>::new(a_reg[i as usize]);
                #[unroll]
                for j in 0..tv {
                    acc[(i * tv + j) as usize] += a_i * b_reg[j as usize];
                }
            }
        }
        let out_base = batch * m * n;
        let c_at = c_view::<F>(c, c_offset, batch);
        #[unroll]
        for i in 0..tm {
            let gi = row0 + (i * rows_per_step) as usize;
            #[unroll]
            for j in 0..tv {
                let vc = vcol0 + (j * vecs_per_step) as usize;
                if gi < m && vc < n_vec {
                    let mut v = acc[(i * tv + j) as usize];
                    #[unroll]
                    for e in 0..width {
                        let gj = vc * width as usize + e as usize;
                        v[e as usize] = finish::<F>(
                            c,
                            bias,
                            alpha,
                            beta,
                            c_at,
                            gi,
                            gj,
                            v[e as usize],
                            epilogue,
                        );
                    }
                    out[(out_base + gi * n) / width as usize + vc] = v;
                }
            }
        }
    }
}
