//! Parallel cyclic Jacobi for batched symmetric eigenproblems (Golub & Van Loan, §8.5; Brent & Luk
//! 1985 round-robin ordering). A sweep is `m − 1` rounds (`m` = n rounded up to even); each round
//! rotates `m/2` disjoint index pairs at once: `jacobi_rotations` picks for pair `(p, q)` the rotation
//! `J = [[c, s], [−s, c]]` that zeroes `a_pq` (`τ = (a_qq − a_pp)/(2a_pq)`,
//! `t = sign(τ)/(|τ| + √(1+τ²))`, `c = 1/√(1+t²)`, `s = t·c`), then `jacobi_columns` forms `A J` and
//! `V J`, and `jacobi_rows` forms `Jᵀ (A J)`. Pairs touching the padding index `n` are identities.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

/// Pair `k` of round `round` among `m` (even) indices: index `m − 1` stays fixed while the others
/// rotate, so every unordered pair meets exactly once per `m − 1` rounds. Returns `(min, max)`.
#[cube]
fn round_robin_pair(round: u32, k: u32, m: u32) -> (u32, u32) {
    let last = m - 1;
    let mut a = round;
    let mut b = last;
    if k > 0 {
        a = (round + k) % last;
        b = (round + last - k) % last;
    }
    (select(a < b, a, b), select(a < b, b, a))
}

/// One unit per (batch, pair): writes `(c, s)` of the pair's rotation to `rot[2·unit ..]`.
#[cube(launch_unchecked)]
pub fn jacobi_rotations<F: Float>(a: &Array<F>, rot: &mut Array<F>, n: u32, m: u32, round: u32) {
    let half = m / 2;
    let unit = ABSOLUTE_POS as u32;
    if (unit as usize) < rot.len() / 2 {
        let b = unit / half;
        let (p, q) = round_robin_pair(round, unit % half, m);
        let mut c = F::new(1.0);
        let mut s = F::new(0.0);
        if q < n {
            let base = (b * n * n) as usize;
            let nn = n as usize;
            let (pu, qu) = (p as usize, q as usize);
            let apq = a[base + pu * nn + qu];
            if apq != F::new(0.0) {
                let tau = (a[base + qu * nn + qu] - a[base + pu * nn + pu]) / (F::new(2.0) * apq);
                let sign = select(tau >= F::new(0.0), F::new(1.0), F::new(-1.0));
                let t = sign / (F::abs(tau) + F::sqrt(F::new(1.0) + tau * tau));
                c = F::new(1.0) / F::sqrt(F::new(1.0) + t * t);
                s = t * c;
            }
        }
        rot[(2 * unit) as usize] = c;
        rot[(2 * unit + 1) as usize] = s;
    }
}

/// One unit per (batch, row, pair): columns `p, q` of `A` and `V` become `c·x − s·y` and `s·x + c·y`.
#[cube(launch_unchecked)]
pub fn jacobi_columns<F: Float>(
    a: &mut Array<F>,
    v: &mut Array<F>,
    rot: &Array<F>,
    n: u32,
    m: u32,
    round: u32,
) {
    let half = m / 2;
    let unit = ABSOLUTE_POS as u32;
    let per_batch = n * half;
    if (unit as usize) < (rot.len() / 2) * n as usize {
        let b = unit / per_batch;
        let row = (unit % per_batch) / half;
        let k = unit % half;
        let (p, q) = round_robin_pair(round, k, m);
        if q < n {
            let r = (2 * (b * half + k)) as usize;
            let (c, s) = (rot[r], rot[r + 1]);
            let base = (b * n * n + row * n) as usize;
            let (ip, iq) = (base + p as usize, base + q as usize);
            let (x, y) = (a[ip], a[iq]);
            a[ip] = c * x - s * y;
            a[iq] = s * x + c * y;
            let (x, y) = (v[ip], v[iq]);
            v[ip] = c * x - s * y;
            v[iq] = s * x + c * y;
        }
    }
}

/// One unit per (batch, pair, column): rows `p, q` of `A` become `c·x − s·y` and `s·x + c·y`.
#[cube(launch_unchecked)]
pub fn jacobi_rows<F: Float>(a: &mut Array<F>, rot: &Array<F>, n: u32, m: u32, round: u32) {
    let half = m / 2;
    let unit = ABSOLUTE_POS as u32;
    let per_batch = n * half;
    if (unit as usize) < (rot.len() / 2) * n as usize {
        let b = unit / per_batch;
        let k = (unit % per_batch) / n;
        let col = unit % n;
        let (p, q) = round_robin_pair(round, k, m);
        if q < n {
            let r = (2 * (b * half + k)) as usize;
            let (c, s) = (rot[r], rot[r + 1]);
            let base = (b * n * n) as usize;
            let (ip, iq) = (base + (p * n + col) as usize, base + (q * n + col) as usize);
            let (x, y) = (a[ip], a[iq]);
            a[ip] = c * x - s * y;
            a[iq] = s * x + c * y;
        }
    }
}
