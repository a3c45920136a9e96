//! Training: losses, AdamW with saveable state, LR schedule and early stopping, TOML config,
//! atomic checkpoints with exact resume, CSV/TensorBoard/PNG logging, a memory-mapped feature
//! cache for frozen encoders, and the loop itself (`run`), generic over `Trainable`.

pub mod cache;
pub mod checkpoint;
pub mod clipseg;
pub mod config;
pub mod cris;
pub mod log;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod random_init;
pub mod sched;
pub mod tensorboard;
pub mod textunet;
pub mod unet;
pub mod trainer;
pub mod vit_classify;

pub use cache::FeatureCache;
pub use config::TrainConfig;
pub use log::EpochRecord;
pub use loss::LossKind;
pub use optim::{clip_grad_norm, AdamW, AdamWParams};
pub use sched::{EarlyStopping, ReduceLrOnPlateau};
pub use trainer::{run, Hooks, RunSummary, Split, Trainable};
