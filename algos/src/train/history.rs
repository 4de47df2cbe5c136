//! One row per epoch: losses, accuracies, norms and optimizer diagnostics, written as CSV. Floats
//! are printed in Rust's shortest round-trip form, so a history read back is bit-identical.

use dynlab_runtime::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpochRecord {
    pub epoch: u64,
    /// Optimizer steps taken by the end of the epoch.
    pub step: u64,
    pub lr: f32,
    pub train_loss: f32,
    pub train_acc: f32,
    pub test_loss: f32,
    pub test_acc: f32,
    /// Global gradient norm, mean over the epoch's steps (before clipping).
    pub grad_norm: f32,
    /// `√(Σ‖θ‖²)` over all parameters after the epoch.
    pub weight_norm: f32,
    /// Mean ℓ2 norm of the last hidden representation over the training samples.
    pub repr_norm: f32,
    /// Adam: mean `η/(√v̂+ε)` (NaN for SGD).
    pub adam_effective_step: f32,
    /// Adam: mean `|m̂|/(√v̂+ε)` (NaN for SGD).
    pub adam_moment_ratio: f32,
    /// AdamW: `‖update‖ / ‖decay‖` (NaN without decoupled decay).
    pub update_to_decay: f32,
    /// Wall-clock seconds of training so far (across resumes).
    pub seconds: f64,
}

const COLUMNS: &str = "epoch,step,lr,train_loss,train_acc,test_loss,test_acc,grad_norm,weight_norm,repr_norm,adam_effective_step,adam_moment_ratio,update_to_decay,seconds";

impl EpochRecord {
    /// The record without its wall time (what must match between a resumed and a straight run).
    pub fn without_time(&self) -> EpochRecord {
        EpochRecord {
            seconds: 0.0,
            ..*self
        }
    }

    fn to_csv(self) -> String {
        let r = self;
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.epoch,
            r.step,
            r.lr,
            r.train_loss,
            r.train_acc,
            r.test_loss,
            r.test_acc,
            r.grad_norm,
            r.weight_norm,
            r.repr_norm,
            r.adam_effective_step,
            r.adam_moment_ratio,
            r.update_to_decay,
            r.seconds
        )
    }

    fn from_csv(line: &str) -> Option<EpochRecord> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != COLUMNS.split(',').count() {
            return None;
        }
        let x = |i: usize| f[i].parse::<f32>().ok();
        Some(EpochRecord {
            epoch: f[0].parse().ok()?,
            step: f[1].parse().ok()?,
            lr: x(2)?,
            train_loss: x(3)?,
            train_acc: x(4)?,
            test_loss: x(5)?,
            test_acc: x(6)?,
            grad_norm: x(7)?,
            weight_norm: x(8)?,
            repr_norm: x(9)?,
            adam_effective_step: x(10)?,
            adam_moment_ratio: x(11)?,
            update_to_decay: x(12)?,
            seconds: f[13].parse().ok()?,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub records: Vec<EpochRecord>,
}

impl History {
    pub fn to_csv(&self) -> String {
        let mut s = String::from(COLUMNS);
        s.push('\n');
        for r in &self.records {
            s.push_str(&r.to_csv());
            s.push('\n');
        }
        s
    }

    pub fn from_csv(text: &str) -> Result<History> {
        let mut lines = text.lines();
        if lines.next() != Some(COLUMNS) {
            return Err(Error::value(
                "History::from_csv",
                "an unknown header",
                format!("the header `{COLUMNS}`"),
            ));
        }
        let records = lines
            .enumerate()
            .map(|(i, l)| {
                EpochRecord::from_csv(l).ok_or_else(|| {
                    Error::value(
                        "History::from_csv",
                        format!("line {}: `{l}`", i + 2),
                        "a record",
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(History { records })
    }

    /// First epoch whose `metric` reaches `threshold`.
    pub fn first_epoch(&self, metric: impl Fn(&EpochRecord) -> f32, threshold: f32) -> Option<u64> {
        self.records
            .iter()
            .find(|r| metric(r) >= threshold)
            .map(|r| r.epoch)
    }
}
