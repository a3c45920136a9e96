//! `vlsm train --config FILE.toml [--resume]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use vlsm::models::ModelKind;
use vlsm::train::tasks::common::DecoderInit;
use vlsm::train::tasks::{clipseg, cris, textunet, unet, vit_classify};
use vlsm::train::{Hooks, RunOptions, TrainConfig};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training configuration (TOML; keys documented in docs/training.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue the run in the config's output_dir from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Learning rate from the next epoch on, instead of train.lr or, with --resume, the
    /// checkpoint's (a manual step; the plateau scheduler's patience count restarts).
    #[arg(long, value_parser = positive, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Start the decoder from random weights instead of the checkpoint's (CRIS: neck, decoder
    /// and projector).
    #[arg(long)]
    pub random_decoder: bool,
}

fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let cfg = TrainConfig::load(&a.config)?;
    let init = if a.random_decoder { DecoderInit::Random } else { DecoderInit::Checkpoint };
    let opts = RunOptions { resume: a.resume, lr: a.lr, progress: true };
    let hooks = Hooks::none();
    // Every segmentation kind has an arm; `None` is the ViT classifier (`vit_classify`).
    let s = match cfg.model.kind.model_kind() {
        Some(ModelKind::ClipSeg | ModelKind::BiomedClipSeg) => clipseg::train(&cfg, &opts, hooks, init)?,
        Some(ModelKind::TextUNet) => textunet::train(&cfg, &opts, hooks)?,
        Some(ModelKind::UNet) => unet::train(&cfg, &opts, hooks)?,
        Some(ModelKind::Cris) => cris::train(&cfg, &opts, hooks, init)?,
        None => vit_classify::train(&cfg, &opts, hooks)?,
    };
    match s.best_val_dice {
        Some(d) => eprintln!(
            "{}: best val {} {d:.4} at epoch {} ({} epochs{}); model in {}",
            s.run_dir.display(),
            // A classifier's loop Dice is one-vs-rest on one-hot targets; `vlsm eval` gives accuracy.
            if cfg.model.kind.model_kind().is_none() { "one-vs-rest Dice" } else { "Dice" },
            s.best_epoch,
            s.history.len(),
            if s.stopped_early { ", stopped early" } else { "" },
            s.run_dir.join("best").display()
        ),
        None => eprintln!("{}: no epoch completed", s.run_dir.display()),
    }
    Ok(())
}
