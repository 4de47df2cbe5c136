//! Modular arithmetic `c = (a ∘ b) mod p` for `a, b ∈ [0, p)` (Power et al. 2022, "Grokking"):
//! `∘ ∈ {+, −, ×, ÷}`, division meaning `a · b^{p−2} mod p` (Fermat), so `b = 0` is left out for it
//! and `p` must be prime. The table is split into train and test by a seeded shuffle on the host
//! (the same split on every device), `train_frac` of the pairs for training: [`ModularTable`] holds
//! it on the host (no device needed), [`ModularData`] on the device.
//!
//! Inputs come as operand pairs `[N, 2]` (i32, for one-hot or embedding models) or as token
//! sequences `a ∘ b =` `[N, 4]` with `∘` token `p` and `=` token `p + 1` (for transformers).

use dynlab_models::GrokTransformer;
use dynlab_runtime::{Device, Error, Result, Tensor};

/// The operation `∘`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a · b⁻¹` (`b ≠ 0`).
    Div,
}

impl ModOp {
    /// Parses `add`, `sub`, `mul`, `div` (the config spelling).
    pub fn parse(name: &str) -> Option<ModOp> {
        Some(match name {
            "add" => ModOp::Add,
            "sub" => ModOp::Sub,
            "mul" => ModOp::Mul,
            "div" => ModOp::Div,
            _ => return None,
        })
    }

    /// `(a ∘ b) mod p`.
    pub fn apply(self, a: u64, b: u64, p: u64) -> u64 {
        match self {
            ModOp::Add => (a + b) % p,
            ModOp::Sub => (a + p - b) % p,
            ModOp::Mul => a * b % p,
            ModOp::Div => a * pow_mod(b, p - 2, p) % p,
        }
    }
}

fn pow_mod(mut base: u64, mut exp: u64, p: u64) -> u64 {
    let mut acc = 1 % p;
    base %= p;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    acc
}

/// Whether `p` is prime (trial division).
pub fn is_prime(p: usize) -> bool {
    p >= 2
        && (2..)
            .take_while(|d| d * d <= p)
            .all(|d| !p.is_multiple_of(d))
}

/// One side of the split, on the device.
#[derive(Clone, Debug)]
pub struct ModularSplit {
    /// Operand pairs `[N, 2]`, i32.
    pub pairs: Tensor,
    /// Results `[N]`, i32.
    pub labels: Tensor,
}

impl ModularSplit {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.shape()[0]
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token sequences `a ∘ b =` as `[N, 4]` i32 (operator token `p`, equals token `p + 1`).
    pub fn tokens(&self, p: usize) -> Result<Tensor> {
        GrokTransformer::tokens(&self.pairs, p)
    }
}

/// One side of the split on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModularRows {
    /// Operand pairs `(a, b)`.
    pub pairs: Vec<[u32; 2]>,
    /// Results `(a ∘ b) mod p`.
    pub labels: Vec<u32>,
}

impl ModularRows {
    fn to_device(&self, device: &Device) -> Result<ModularSplit> {
        let flat: Vec<i32> = self
            .pairs
            .iter()
            .flat_map(|r| r.map(|v| v as i32))
            .collect();
        let labels: Vec<i32> = self.labels.iter().map(|&v| v as i32).collect();
        Ok(ModularSplit {
            pairs: Tensor::from_vec(flat, &[self.pairs.len(), 2], device)?,
            labels: Tensor::from_vec(labels, &[self.labels.len()], device)?,
        })
    }
}

/// The split table on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModularTable {
    /// The modulus.
    pub p: usize,
    /// The operation.
    pub op: ModOp,
    /// Training pairs.
    pub train: ModularRows,
    /// Held-out pairs.
    pub test: ModularRows,
}

impl ModularTable {
    /// The full table for `p` (prime) and `op`, split with `train_frac ∈ (0, 1)` of the pairs for
    /// training by a shuffle seeded with `seed`.
    pub fn new(p: usize, op: ModOp, train_frac: f64, seed: u64) -> Result<ModularTable> {
        let name = "ModularData::new";
        if !is_prime(p) || p > 46_337 {
            return Err(Error::value(
                name,
                format!("p = {p}"),
                "a prime below 46337",
            ));
        }
        if !(train_frac > 0.0 && train_frac < 1.0) {
            return Err(Error::value(
                name,
                format!("train_frac = {train_frac}"),
                "a fraction strictly between 0 and 1",
            ));
        }
        let first_b = if op == ModOp::Div { 1 } else { 0 };
        let mut pairs: Vec<[u64; 2]> = (0..p as u64)
            .flat_map(|a| (first_b..p as u64).map(move |b| [a, b]))
            .collect();
        shuffle(&mut pairs, seed);
        let n_train = (train_frac * pairs.len() as f64).round() as usize;
        if n_train == 0 || n_train == pairs.len() {
            return Err(Error::value(
                name,
                format!("train_frac = {train_frac} of {} pairs", pairs.len()),
                "at least one pair on each side of the split",
            ));
        }
        let (train, test) = pairs.split_at(n_train);
        let rows = |rows: &[[u64; 2]]| ModularRows {
            pairs: rows.iter().map(|r| [r[0] as u32, r[1] as u32]).collect(),
            labels: rows
                .iter()
                .map(|r| op.apply(r[0], r[1], p as u64) as u32)
                .collect(),
        };
        Ok(ModularTable {
            p,
            op,
            train: rows(train),
            test: rows(test),
        })
    }

    /// The table on `device`.
    pub fn to_device(&self, device: &Device) -> Result<ModularData> {
        Ok(ModularData {
            p: self.p,
            op: self.op,
            train: self.train.to_device(device)?,
            test: self.test.to_device(device)?,
        })
    }
}

/// The split table on the device.
#[derive(Clone, Debug)]
pub struct ModularData {
    /// The modulus.
    pub p: usize,
    /// The operation.
    pub op: ModOp,
    /// Training pairs.
    pub train: ModularSplit,
    /// Held-out pairs.
    pub test: ModularSplit,
}

impl ModularData {
    /// [`ModularTable::new`] on `device`.
    pub fn new(p: usize, op: ModOp, train_frac: f64, seed: u64, device: &Device) -> Result<Self> {
        ModularTable::new(p, op, train_frac, seed)?.to_device(device)
    }
}

/// Fisher–Yates with SplitMix64 (Steele et al. 2014): a split that depends only on the seed.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
