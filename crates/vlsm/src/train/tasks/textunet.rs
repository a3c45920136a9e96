//! Training the built-in TextUNet from scratch (`vlsm train` with `model.kind = "textunet"`).
//!
//! Every image and mask is decoded once, resized to the model input (image: PIL bilinear, as
//! the processor does at inference; mask: PIL nearest, as medvlsm) and kept in memory as u8,
//! so an epoch costs only the network. The token table is built from the training prompts.
//! After every improvement `RUN/best` is also a loadable model directory (`config.json`,
//! `model.safetensors`, `preprocessor_config.json`, the CLIP BPE file), so
//! `vlsm segment --model RUN/best` works during training.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::common::{
    augmented_pixels_and_targets, init_config, init_dir, load_init_weights, load_split, seeded_init, write_model_dir,
    Flip, Sample, Warp,
};
use crate::data::Pool;
use crate::models::textunet::{TextUNet, TextUNetConfig};
use crate::tokenize::{find_bpe, ClipTokenizer};
use crate::train::engine::config::{AugmentConfig, TrainConfig};
use crate::train::engine::loss::{bce_with_logits, LossKind};
use crate::train::engine::trainer::{self, export_new_best, Hooks, RunOptions, RunSummary, Split, Trainable};

/// The [`Trainable`] for TextUNet.
pub struct TextUNetTask {
    pub model: TextUNet,
    varmap: VarMap,
    tokenizer: ClipTokenizer,
    train: Vec<Sample>,
    val: Vec<Sample>,
    token_memo: RefCell<HashMap<String, Vec<u32>>>,
    /// `data.negative_prompts`.
    negatives: f64,
    /// `data.flips`.
    flips: bool,
    /// `[augment]`.
    augment: AugmentConfig,
    /// `loss.presence_weight` (used when the model has a presence head).
    presence_weight: f64,
    /// For each dataset, the datasets whose (non-empty) prompts it shares none of: the only ones
    /// negatives come from (kvasir and clinicdb share "polyp", so a polyp never negates a polyp).
    foreign: HashMap<String, Vec<String>>,
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    device: Device,
}

/// Normalised pixels and the prompts' CLIP BPE ids.
pub struct UNetInput {
    pub pixels: Tensor,
    pub ids: Vec<Vec<u32>>,
}

impl TextUNetTask {
    pub fn new(cfg: &TrainConfig, bpe: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let size = cfg.data.image_size;
        let keys = &cfg.data.prompts;
        let train_pool = Pool::open(&cfg.data.datasets, "train")?;
        let val_pool = Pool::open(&cfg.data.datasets, "val")?;
        let tokenizer = ClipTokenizer::from_bpe_gz(bpe)?;
        let train = load_split(&train_pool, keys, size as u32)?;
        let val = load_split(&val_pool, keys, size as u32)?;
        // Token table: every token of every training prompt variant.
        let mut vocab = BTreeSet::new();
        for s in &train {
            for variants in &s.prompts {
                for p in variants {
                    vocab.extend(tokenizer.encode(p)?);
                }
            }
        }
        // From `model.init_from`: that model's architecture and token table (tokens it lacks
        // share its UNK row), at data.image_size.
        let init = cfg.model.init_from.as_deref().map(init_dir).transpose()?;
        let mut mcfg = match &init {
            Some(dir) => init_config::<TextUNetConfig>(dir, "textunet")?,
            None => TextUNetConfig::new(vocab.into_iter().collect()),
        };
        if let Some(c) = &cfg.model.channels {
            mcfg.channels = c.clone();
        }
        mcfg.image_size = size;
        // A presence head of the init_from model is kept (its architecture); model.presence adds one.
        mcfg.presence |= cfg.model.presence;
        mcfg.validate().map_err(|e| anyhow!("model.channels / data.image_size: {e}"))?;
        let varmap = VarMap::new();
        let model = TextUNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &mcfg)?;
        seeded_init(&varmap, cfg.seed)?;
        if let Some(dir) = &init {
            load_init_weights(dir, &trainer::sorted_vars(&varmap), |n| n.starts_with("presence."))?;
        }
        let (mean, std) = (mcfg.image_mean, mcfg.image_std);
        let (negatives, flips) = (cfg.data.negative_prompts, cfg.data.flips);
        let mut texts: HashMap<String, BTreeSet<&str>> = HashMap::new();
        for s in &train {
            let t = texts.entry(s.dataset.clone()).or_default();
            t.extend(s.prompts.iter().flatten().map(|p| p.trim()).filter(|p| !p.is_empty()));
        }
        let foreign = texts
            .iter()
            .map(|(d, mine)| {
                let other =
                    texts.iter().filter(|(e, theirs)| *e != d && mine.is_disjoint(theirs)).map(|(e, _)| e.clone());
                (d.clone(), other.collect())
            })
            .collect();
        Ok(Self {
            model,
            varmap,
            tokenizer,
            train,
            val,
            token_memo: RefCell::default(),
            negatives,
            flips,
            augment: cfg.augment.clone(),
            presence_weight: cfg.loss.presence_weight,
            foreign,
            size,
            mean,
            std,
            device,
        })
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(v) = self.token_memo.borrow().get(text) {
            return Ok(v.clone());
        }
        let v = self.tokenizer.encode(text)?;
        self.token_memo.borrow_mut().insert(text.to_string(), v.clone());
        Ok(v)
    }

    /// Writes `dst` as a TextUNet model directory from a weights file.
    pub fn export(&self, weights: &Path, bpe: &Path, dst: &Path) -> Result<()> {
        export_dir(&self.model.config, weights, bpe, dst)
    }
}

/// A TextUNet model directory: config, weights, processor config and the BPE file.
pub fn export_dir(config: &TextUNetConfig, weights: &Path, bpe: &Path, dst: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(config)?;
    write_model_dir(json.as_bytes(), config.image_size, config.image_mean, config.image_std, weights, Some(bpe), dst)
}

impl Trainable for TextUNetTask {
    type Input = UNetInput;

    fn vars(&self) -> Vec<(String, Var)> {
        trainer::sorted_vars(&self.varmap)
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len(),
            Split::Val => self.val.len(),
        }
    }

    fn batch(&mut self, split: Split, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<(UNetInput, Tensor)> {
        let set = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        // Flips are drawn first and only when on, so runs without them repeat exactly.
        let flips: Vec<Flip> = if split == Split::Train && self.flips {
            idx.iter().map(|_| Flip { h: rng.random(), v: rng.random() }).collect()
        } else {
            Vec::new()
        };
        // Likewise the warps: drawn only when [augment] is on.
        let warps: Vec<Warp> = if split == Split::Train && !self.augment.is_off() {
            idx.iter().map(|_| Warp::draw(&self.augment, self.size, rng)).collect()
        } else {
            Vec::new()
        };
        let (pixels, mut targets) =
            augmented_pixels_and_targets(set, idx, &flips, &warps, self.size, self.mean, self.std, &self.device)?;
        let pick = |smp: &Sample, rng: &mut ChaCha8Rng| {
            let variants = &smp.prompts[rng.random_range(0..smp.prompts.len())];
            variants[rng.random_range(0..variants.len())].clone()
        };
        let mut texts = Vec::with_capacity(idx.len());
        let mut keep = Vec::with_capacity(idx.len());
        for (k, &i) in idx.iter().enumerate() {
            let smp = &set[i];
            let flip = flips.get(k).copied().unwrap_or_default();
            // A negative: another dataset's prompt for this image, and an empty target. (No
            // draws at all when off, so runs without negatives repeat exactly.)
            if split == Split::Train && self.negatives > 0.0 && rng.random::<f64>() < self.negatives {
                // A few draws find a foreign dataset's sample (there may be none); an empty
                // prompt negates nothing.
                let foreign = &self.foreign[&smp.dataset];
                if let Some(j) =
                    (0..8).map(|_| rng.random_range(0..set.len())).find(|&j| foreign.contains(&set[j].dataset))
                {
                    let text = pick(&set[j], rng);
                    if !text.trim().is_empty() {
                        texts.push(text);
                        keep.push(0f32);
                        continue;
                    }
                }
            }
            texts.push(flip.prompt(&pick(smp, rng)));
            keep.push(1.0);
        }
        if keep.contains(&0.0) {
            let n = keep.len();
            targets = targets.broadcast_mul(&Tensor::from_vec(keep, (n, 1, 1), &self.device)?)?;
        }
        let ids = texts.iter().map(|t| self.ids(t)).collect::<Result<_>>()?;
        Ok((UNetInput { pixels, ids }, targets))
    }

    fn forward(&self, input: &UNetInput) -> Result<Tensor> {
        let t = self.model.text.forward(&input.ids)?;
        Ok(self.model.forward(&input.pixels, &t)?)
    }

    /// The segmentation loss, plus `loss.presence_weight` times the presence head's BCE against
    /// "the target has a pixel" (negatives and crops that lose the target are absent).
    fn loss(&self, input: &UNetInput, targets: &Tensor, loss: &LossKind) -> Result<Tensor> {
        let t = self.model.text.forward(&input.ids)?;
        let feats = self.model.encode(&input.pixels)?;
        let (logits, presence) = self.model.decode_with_presence(&feats, &t)?;
        let seg = loss.compute(&logits, targets)?;
        match presence {
            None => Ok(seg),
            Some(p) => {
                let present = targets.flatten_from(1)?.max(1)?;
                Ok((seg + (bce_with_logits(&p, &present)? * self.presence_weight)?)?)
            }
        }
    }
}

/// `vlsm train` for TextUNet: trains, keeping `RUN/best` a loadable model directory.
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks) -> Result<RunSummary> {
    trainer::train(cfg, opts, hooks, || {
        let bpe = find_bpe()?;
        let t0 = std::time::Instant::now();
        let task = TextUNetTask::new(cfg, &bpe)?;
        if opts.progress {
            eprintln!(
                "loaded {} train / {} val images at {}px in {:.1}s; {} prompt tokens; {} parameters",
                task.train.len(),
                task.val.len(),
                task.size,
                t0.elapsed().as_secs_f64(),
                task.model.config.vocab.len(),
                task.vars().iter().map(|(_, v)| v.elem_count()).sum::<usize>()
            );
        }
        let config = task.model.config.clone();
        Ok((task, export_new_best(move |w, dst| export_dir(&config, w, &bpe, dst))))
    })
}

/// Items of a split as (dataset, image name), in the order `batch` indexes them.
pub fn names(cfg: &TrainConfig, split: &str) -> Result<Vec<(String, String)>> {
    let pool = Pool::open(&cfg.data.datasets, split)?;
    Ok(pool.iter().map(|it| (it.dataset.name.clone(), it.record.img_name.clone())).collect())
}
