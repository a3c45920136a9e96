//! Training the text-free UNet baseline (`vlsm train` with `model.kind = "unet"`).
//!
//! The data path is TextUNet's (images and masks decoded and resized once, kept as u8), minus
//! the prompts. From scratch with a seeded init; `RUN/best` is kept a loadable model directory.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::common::{
    init_config, init_dir, load_init_weights, load_split, pixels_and_targets, seeded_init, write_model_dir, Sample,
};
use crate::data::Pool;
use crate::models::unet::{UNet, UNetConfig};
use crate::train::engine::config::TrainConfig;
use crate::train::engine::trainer::{self, export_new_best, Hooks, RunOptions, RunSummary, Split, Trainable};

/// The [`Trainable`] for UNet.
pub struct UNetTask {
    pub model: UNet,
    varmap: VarMap,
    train: Vec<Sample>,
    val: Vec<Sample>,
    device: Device,
}

impl UNetTask {
    /// A seeded, untrained UNet over the config's datasets (`channels` overrides the config's
    /// widths, e.g. for tiny test models).
    pub fn new(cfg: &TrainConfig, channels: Option<Vec<usize>>) -> Result<Self> {
        let device = Device::Cpu;
        let size = cfg.data.image_size;
        // From `model.init_from`: that model's architecture, at data.image_size.
        let init = cfg.model.init_from.as_deref().map(init_dir).transpose()?;
        let mut mcfg = match &init {
            Some(dir) => UNetConfig { image_size: size, ..init_config::<UNetConfig>(dir, "unet")? },
            None => UNetConfig { image_size: size, ..UNetConfig::default() },
        };
        if let Some(c) = channels.or_else(|| cfg.model.channels.clone()) {
            mcfg.channels = c;
        }
        mcfg.validate().map_err(|e| anyhow!("model.channels / data.image_size: {e}"))?;
        let train = load_split(&Pool::open(&cfg.data.datasets, "train")?, &[], size as u32)?;
        let val = load_split(&Pool::open(&cfg.data.datasets, "val")?, &[], size as u32)?;
        let varmap = VarMap::new();
        let model = UNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &mcfg)?;
        seeded_init(&varmap, cfg.seed)?;
        if let Some(dir) = &init {
            load_init_weights(dir, &trainer::sorted_vars(&varmap), |_| false)?;
        }
        Ok(Self { model, varmap, train, val, device })
    }
}

/// A UNet model directory: config, weights and processor config.
pub fn export_dir(config: &UNetConfig, weights: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    let json = serde_json::to_string_pretty(config)?;
    write_model_dir(json.as_bytes(), config.image_size, config.image_mean, config.image_std, weights, None, dst)
}

impl Trainable for UNetTask {
    type Input = Tensor;

    fn vars(&self) -> Vec<(String, Var)> {
        trainer::sorted_vars(&self.varmap)
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len(),
            Split::Val => self.val.len(),
        }
    }

    fn batch(&mut self, split: Split, idx: &[usize], _rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor)> {
        let set = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        let c = &self.model.config;
        pixels_and_targets(set, idx, &[], c.image_size, c.image_mean, c.image_std, &self.device)
    }

    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(input)?)
    }
}

/// `vlsm train` for UNet.
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks) -> Result<RunSummary> {
    train_with(cfg, opts, hooks, None)
}

/// `train` with other level widths (tests use tiny ones).
pub fn train_with(
    cfg: &TrainConfig,
    opts: &RunOptions,
    hooks: Hooks,
    channels: Option<Vec<usize>>,
) -> Result<RunSummary> {
    trainer::train(cfg, opts, hooks, || {
        let t0 = std::time::Instant::now();
        let task = UNetTask::new(cfg, channels)?;
        if opts.progress {
            eprintln!(
                "loaded {} train / {} val images at {}px in {:.1}s; {} parameters",
                task.train.len(),
                task.val.len(),
                task.model.config.image_size,
                t0.elapsed().as_secs_f64(),
                task.vars().iter().map(|(_, v)| v.elem_count()).sum::<usize>()
            );
        }
        let config = task.model.config.clone();
        Ok((task, export_new_best(move |w, dst| export_dir(&config, w, dst))))
    })
}
