//! The per-model training tasks: each implements [`Trainable`](super::engine::trainer::Trainable)
//! for one model kind and has a `train` that the engine runs ([`super::engine::trainer::train`]).
//! Tasks never import each other: what several share is in [`common`]; [`random_init`] draws
//! seeded weights by parameter name and writes random-weight model directories.

pub mod clipseg;
pub mod common;
pub mod cris;
pub mod random_init;
pub mod textunet;
pub mod unet;
pub mod vit_classify;

use anyhow::Result;

use super::engine::config::TrainConfig;
use super::engine::trainer::{Hooks, RunOptions, RunSummary};
use crate::models::ModelKind;

/// Trains what `cfg` describes (`vlsm train`): every segmentation kind has an arm; a config
/// without one is the ViT classifier ([`vit_classify`]).
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks, init: common::DecoderInit) -> Result<RunSummary> {
    match cfg.model.kind.model_kind() {
        Some(ModelKind::ClipSeg | ModelKind::BiomedClipSeg) => clipseg::train(cfg, opts, hooks, init),
        Some(ModelKind::TextUNet) => textunet::train(cfg, opts, hooks),
        Some(ModelKind::UNet) => unet::train(cfg, opts, hooks),
        Some(ModelKind::Cris) => cris::train(cfg, opts, hooks, init),
        None => vit_classify::train(cfg, opts, hooks),
    }
}

/// The line `vlsm train` ends with: the best validation Dice, its epoch, and where the model is.
pub fn summary_line(cfg: &TrainConfig, s: &RunSummary) -> String {
    match s.best_val_dice {
        Some(d) => format!(
            "{}: best val {} {d:.4} at epoch {} ({} epochs{}); model in {}",
            s.run_dir.display(),
            // A classifier's loop Dice is one-vs-rest on one-hot targets; `vlsm eval` gives accuracy.
            if cfg.model.kind.model_kind().is_none() { "one-vs-rest Dice" } else { "Dice" },
            s.best_epoch,
            s.history.len(),
            if s.stopped_early { ", stopped early" } else { "" },
            s.run_dir.join("best").display()
        ),
        None => format!("{}: no epoch completed", s.run_dir.display()),
    }
}
