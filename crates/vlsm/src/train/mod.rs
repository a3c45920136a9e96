//! Training: the model-independent [`engine`] (loop, optimiser, schedule, losses, run state,
//! feature store, config, logs) and the per-model [`tasks`] it trains.

pub mod engine;
pub mod tasks;

pub use engine::cache::FeatureStore;
pub use engine::config::TrainConfig;
pub use engine::log::EpochRecord;
pub use engine::loss::LossKind;
pub use engine::optim::{clip_grad_norm, AdamW, AdamWParams};
pub use engine::sched::{EarlyStopping, ReduceLrOnPlateau};
pub use engine::trainer::{run, Hooks, RunOptions, RunSummary, Split, Trainable};
