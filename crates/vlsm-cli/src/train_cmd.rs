//! `vlsm train --config FILE.toml [--resume]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use vlsm::train::tasks::{self, common::DecoderInit};
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
    let s = tasks::train(&cfg, &opts, Hooks::none(), init)?;
    eprintln!("{}", tasks::summary_line(&cfg, &s));
    Ok(())
}
