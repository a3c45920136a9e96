//! The per-model training tasks (move in progress).

pub mod clipseg;
pub mod cris;
pub mod random_init;
pub mod textunet;
pub mod unet;
pub mod vit_classify;

use super::engine::{cache, config, log, loss, state as checkpoint, trainer};
