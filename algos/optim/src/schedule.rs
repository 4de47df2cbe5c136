//! Learning rate as a function of the optimizer step: linear warm-up from 0 over `warmup` steps, then
//! constant, or cosine decay to `min_factor · lr` at `total` steps (Loshchilov & Hutter 2017, no
//! restarts): `η_t = η·(m + (1−m)·½(1 + cos(π·(t−w)/(T−w))))`.

/// What follows the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleKind {
    /// The base rate.
    Constant,
    /// Cosine decay to `min_factor · base` at step `total`.
    Cosine {
        /// The step at which the decay ends.
        total: u64,
        /// Final rate as a fraction of the base rate.
        min_factor: f32,
    },
}

/// A learning-rate schedule (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// The peak rate.
    pub base: f32,
    /// Steps of linear warm-up from 0.
    pub warmup: u64,
    /// What follows the warm-up.
    pub kind: ScheduleKind,
}

impl LrSchedule {
    /// `base` at every step.
    pub fn constant(base: f32) -> LrSchedule {
        LrSchedule {
            base,
            warmup: 0,
            kind: ScheduleKind::Constant,
        }
    }

    /// The rate for 1-based step `t` (the step about to be taken).
    pub fn at(&self, t: u64) -> f32 {
        if t <= self.warmup && self.warmup > 0 {
            return self.base * t as f32 / self.warmup as f32;
        }
        match self.kind {
            ScheduleKind::Constant => self.base,
            ScheduleKind::Cosine { total, min_factor } => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let progress = (t.saturating_sub(self.warmup) as f64 / span).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.base * (min_factor + (1.0 - min_factor) * cos as f32)
            }
        }
    }
}
