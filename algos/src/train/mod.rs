//! Training loops for classifiers (full batch or mini-batch), the per-epoch history they log, and
//! checkpoints that let a run resume exactly where it stopped.

mod checkpoint;
mod classifier;
mod history;

pub use checkpoint::Checkpoint;
pub use classifier::{
    evaluate, train_epoch, Classifier, EpochTrainStats, Evaluation, LabeledData, StepOptions,
};
pub use history::{EpochRecord, History};
