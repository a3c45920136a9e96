//! Training: losses, AdamW with saveable state, LR schedule and early stopping, TOML config,
//! atomic checkpoints with exact resume, CSV/TensorBoard/PNG logging, a memory-mapped feature
//! cache for frozen encoders, and the loop itself (`run`), generic over `Trainable`.

pub mod engine;
pub mod tasks;

pub use engine::{cache, config, log, loss, optim, plot, sched, state as checkpoint, tensorboard, trainer};
pub use tasks::{clipseg, cris, random_init, textunet, unet, vit_classify};

pub use cache::FeatureCache;
pub use config::TrainConfig;
pub use log::EpochRecord;
pub use loss::LossKind;
pub use optim::{clip_grad_norm, AdamW, AdamWParams};
pub use sched::{EarlyStopping, ReduceLrOnPlateau};
pub use trainer::{run, Hooks, RunSummary, Split, Trainable};
