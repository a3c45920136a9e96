//! CRIS training (`vlsm train` with `model.kind = "cris"`): end-to-end as medvlsm trains it, or
//! with parts frozen (`model.freeze`: `vision` = the CLIP ResNet incl. `attnpool.connect`,
//! `text` = the CLIP text transformer, `decoder` = neck, vision-language decoder and projector).
//!
//! - Every tensor of the checkpoint becomes a variable; only those of unfrozen parts train.
//! - BatchNorm runs in inference mode: the running statistics stay as loaded (they are never
//!   trained or updated), only the affine scale and shift learn. Batches here are small, where
//!   batch statistics would be noisy, and the model then trains exactly as it infers.
//! - No dropout (medvlsm's CRIS has 0.2): the forward pass is deterministic.
//! - `loss.kind = "contrastive"` is CRIS's text-to-pixel contrastive loss: BCE with logits of the
//!   stride-4 dynamic-kernel response against the mask resized (nearest, `F.interpolate`) to
//!   stride 4; validation Dice is then at stride 4 too. Any other loss is medvlsm's: on the
//!   logits upsampled (bicubic, align_corners) to the input size.
//! - With the vision tower frozen and `data.feature_cache`, its C3-C5 maps are cached per image.
//! - Prompts are CLIP-BPE tokenised and padded with 0 to `word_len`, as `vlsm segment` does.
//!
//! `RUN/best` becomes a CRIS model directory: `config.json`, `model.safetensors` (all tensors,
//! trained ones from the best epoch) and the source's tokenizer files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::common::{
    image_key, init_as_model_dir, load_target, report_store, DecoderInit, MODEL_FILE, TOKENIZER_FILES,
};
use super::random_init;
use crate::data::{self, Pool, Record};
use crate::models::cris::{bicubic_align_corners, Cris, CrisConfig};
use crate::preprocess::ImageProcessorConfig;
use crate::tokenize::ClipTokenizer;
use crate::train::engine::cache::{hash_bytes, hash_file, FeatureStore, StoreStats};
use crate::train::engine::config::{LossName, TrainConfig};
use crate::train::engine::log::progress_bar;
use crate::train::engine::state;
use crate::train::engine::trainer::{self, Hooks, RunOptions, RunSummary, Split, Trainable};
use crate::weights;

/// The model part a parameter belongs to (`vision`, `text`, `decoder`), or None for BatchNorm
/// running statistics, which never train.
pub fn part_of(name: &str) -> Option<&'static str> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if matches!(leaf, "running_mean" | "running_var" | "num_batches_tracked") {
        return None;
    }
    Some(if name.starts_with("backbone.visual.") {
        "vision"
    } else if name.starts_with("backbone.") {
        "text"
    } else {
        "decoder"
    })
}

/// CLIP-BPE ids cut to `word_len` with the end token kept, zero-padded, as inference
/// ([`word_ids`](crate::models::cris::word_ids)); CRIS's `pad_mask` then masks the padding.
pub fn token_ids(tok: &ClipTokenizer, prompt: &str, word_len: usize) -> Result<Vec<u32>> {
    Ok(crate::models::cris::word_ids(&tok.encode(prompt)?, word_len, tok.eot_id()))
}

struct Item {
    record: Record,
    cache_key: String,
    target: Vec<u8>,
}

/// Images of a batch: pixel values, or the cached backbone maps of a frozen vision tower.
pub enum Images {
    Pixels(Tensor),
    Features(Vec<Tensor>),
}

pub struct CrisBatch {
    pub images: Images,
    /// Token ids [B, word_len].
    pub ids: Tensor,
}

pub struct CrisTask {
    model: Cris,
    varmap: VarMap,
    trainable: Vec<String>,
    frozen_vision: bool,
    frozen_text: bool,
    /// Stride-4 output (CRIS's contrastive loss) instead of the input size.
    stride4: bool,
    tokenizer: ClipTokenizer,
    processor: ImageProcessorConfig,
    prompt_keys: Vec<String>,
    train: Vec<Item>,
    val: Vec<Item>,
    cache: Option<FeatureStore>,
    out_size: usize,
    exporter: Exporter,
    device: Device,
    pub cache_stats: Option<StoreStats>,
}

impl CrisTask {
    /// Loads model and data (and fills the feature cache); every error comes before training.
    /// `DecoderInit::Random` re-draws neck, decoder and projector from the run seed.
    pub fn new(cfg: &TrainConfig, init: DecoderInit, progress: bool) -> Result<Self> {
        cfg.validate()?;
        if cfg.model.kind != "cris" {
            bail!("model.kind: '{}' is not cris", cfg.model.kind);
        }
        // model.init_from: that directory is the model (its config and every tensor).
        let from_init = cfg.model.init_from.is_some();
        let init_cfg = init_as_model_dir(cfg)?;
        let cfg: &TrainConfig = &init_cfg;
        let named = |e: anyhow::Error| if from_init { anyhow!("model.init_from: {e:#}") } else { e };
        let device = Device::Cpu;
        let dir = &cfg.model.dir;
        match weights::detect(dir)? {
            weights::ModelKind::Cris => {}
            k => bail!("{}: a {k:?} checkpoint, not CRIS (model.kind = \"cris\")", dir.join("config.json").display()),
        }
        // config.json or CRIS.pytorch's yaml, the backbone read off the weights when left out.
        let src = crate::loader::cris_source(dir)?;
        let c: CrisConfig = src.config.clone();
        let cpath = src.config_path.clone();
        let size = cfg.data.image_size;
        if !size.is_multiple_of(32) {
            bail!("data.image_size: {size} is not a multiple of 32 (CRIS's stride)");
        }
        let wpath = src.weights.clone();
        let ckpt = weights::state_dict_var_builder(&wpath, DType::F32, &device, crate::loader::CRIS_PROBE)?;
        // Missing keys and wrong shapes are named here, against the checkpoint itself.
        Cris::new(ckpt.clone(), &c).map_err(|e| named(weights::load_error(&wpath, e)))?;
        let varmap = VarMap::new();
        let model = Cris::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &c)?;
        {
            let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
            for (name, var) in data.iter() {
                let t = ckpt.get(var.dims(), name).map_err(|e| weights::load_error(&wpath, e))?;
                var.set(&t)?;
            }
        }
        if init == DecoderInit::Random {
            random_init::fill(&varmap, cfg.seed, 2, |n| part_of(n) == Some("decoder"))?;
        }
        let mut trainable: Vec<String> = {
            let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
            data.keys().filter(|n| part_of(n).is_some_and(|p| !cfg.is_frozen(p))).cloned().collect()
        };
        trainable.sort();
        if trainable.is_empty() {
            bail!("model.freeze: nothing of the CRIS model would train");
        }
        let tokenizer = crate::loader::clip_tokenizer_or_bundled(dir)?;
        let processor = crate::models::seg::square_processor(
            size,
            crate::preprocess::OPENAI_CLIP_MEAN,
            crate::preprocess::OPENAI_CLIP_STD,
        );
        let stride4 = cfg.loss.kind == LossName::Contrastive;
        let out_size = if stride4 { size / 4 } else { size };

        let pools = [Pool::open(&cfg.data.datasets, "train")?, Pool::open(&cfg.data.datasets, "val")?];
        for pool in &pools {
            for k in &cfg.data.prompts {
                pool.require_prompt(k)?;
            }
        }
        let make_items = |pool: &Pool| -> Result<Vec<Item>> {
            let list: Vec<_> = pool.iter().collect();
            list.par_iter()
                .map(|it| {
                    let r = it.record;
                    Ok(Item {
                        record: r.clone(),
                        cache_key: image_key(&r.image_path)?,
                        target: mask_at(&r.mask_path, size, out_size)?,
                    })
                })
                .collect()
        };
        let train = make_items(&pools[0])?;
        let val = make_items(&pools[1])?;
        let frozen_vision = cfg.is_frozen("vision");
        let mut task = CrisTask {
            model,
            varmap: varmap.clone(),
            trainable,
            frozen_vision,
            frozen_text: cfg.is_frozen("text"),
            stride4,
            tokenizer,
            processor,
            prompt_keys: cfg.data.prompts.clone(),
            train,
            val,
            cache: None,
            out_size,
            exporter: Exporter { src_dir: dir.clone(), config: src.json, varmap },
            device,
            cache_stats: None,
        };
        if cfg.data.feature_cache && frozen_vision {
            let model_key = format!(
                "cris\n{}\n{}\n{}\n{:?}",
                hash_file(&wpath)?,
                hash_bytes(std::fs::read(&cpath)?.as_slice()),
                size,
                task.processor
            );
            let shapes = vec![
                vec![c.fpn_in[0], size / 8, size / 8],
                vec![c.fpn_in[1], size / 16, size / 16],
                vec![c.fpn_in[2], size / 32, size / 32],
            ];
            let paths: Vec<PathBuf> = task.train.iter().chain(&task.val).map(|i| i.record.image_path.clone()).collect();
            let keys: Vec<String> = task.train.iter().chain(&task.val).map(|i| i.cache_key.clone()).collect();
            let pb = progress_bar(keys.len(), "image features (new only)".into(), progress);
            let (cache, stats) =
                FeatureStore::open(&cfg.cache_dir(), &model_key, shapes, &keys, cfg.train.batch_size, |pos| {
                    let ps: Vec<&Path> = pos.iter().map(|&i| paths[i].as_path()).collect();
                    let (c3, c4, c5) = task.model.backbone.encode_image(&task.pixels(&ps)?)?;
                    pb.inc(pos.len() as u64);
                    Ok(vec![c3, c4, c5])
                })?;
            pb.finish_and_clear();
            task.cache = Some(cache);
            task.cache_stats = Some(stats);
        }
        Ok(task)
    }

    /// Output side length of `forward` (input size, or a quarter of it for the contrastive loss).
    pub fn output_size(&self) -> usize {
        self.out_size
    }

    /// Names of the trainable parameters.
    pub fn trainable_names(&self) -> &[String] {
        &self.trainable
    }

    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    fn pixels(&self, paths: &[&Path]) -> Result<Tensor> {
        let imgs: Vec<image::RgbImage> = paths.par_iter().map(|p| crate::io::read_rgb(p)).collect::<Result<_>>()?;
        Ok(self.processor.preprocess_batch(&imgs)?)
    }

    fn items(&self, split: Split) -> &[Item] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// 0/1 mask at `size` (PIL nearest), then at `out` with `F.interpolate(mode="nearest")`'s
/// `floor(dst * in / out)` sampling, as CRIS shrinks its targets.
fn mask_at(path: &Path, size: usize, out: usize) -> Result<Vec<u8>> {
    let full = load_target(path, size, (size, size))?;
    if out == size {
        return Ok(full);
    }
    let idx: Vec<usize> = (0..out).map(|o| (o * size / out).min(size - 1)).collect();
    Ok(idx.iter().flat_map(|&y| idx.iter().map(move |&x| (y, x))).map(|(y, x)| full[y * size + x]).collect())
}

impl Trainable for CrisTask {
    type Input = CrisBatch;

    fn vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock");
        self.trainable.iter().map(|n| (n.clone(), data[n].clone())).collect()
    }

    fn len(&self, split: Split) -> usize {
        self.items(split).len()
    }

    fn batch(&mut self, split: Split, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<(CrisBatch, Tensor)> {
        let l = self.model.config.word_len;
        let mut ids = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            let rec = &self.items(split)[i].record;
            let key = &self.prompt_keys[rng.random_range(0..self.prompt_keys.len())];
            ids.extend(token_ids(&self.tokenizer, data::prompt(rec, key, rng)?, l)?);
        }
        let ids = Tensor::from_vec(ids, (idx.len(), l), &self.device)?;
        let items = self.items(split);
        let images = match &self.cache {
            Some(c) => {
                let keys: Vec<&str> = idx.iter().map(|&i| items[i].cache_key.as_str()).collect();
                Images::Features(c.get_batch(&keys, &self.device)?)
            }
            None => {
                let ps: Vec<&Path> = idx.iter().map(|&i| items[i].record.image_path.as_path()).collect();
                Images::Pixels(self.pixels(&ps)?)
            }
        };
        let s = self.out_size;
        let t: Vec<f32> = idx.iter().flat_map(|&i| items[i].target.iter().map(|&v| v as f32)).collect();
        Ok((CrisBatch { images, ids }, Tensor::from_vec(t, (idx.len(), s, s), &self.device)?))
    }

    fn threshold(&self) -> f64 {
        self.model.config.threshold as f64
    }

    fn forward(&self, input: &CrisBatch) -> Result<Tensor> {
        let m = &self.model;
        let (c3, c4, c5) = match &input.images {
            Images::Features(f) => (f[0].clone(), f[1].clone(), f[2].clone()),
            Images::Pixels(p) => {
                let (a, b, c) = m.backbone.encode_image(p)?;
                if self.frozen_vision {
                    (a.detach(), b.detach(), c.detach())
                } else {
                    (a, b, c)
                }
            }
        };
        let (mut words, mut state) = m.backbone.encode_text(&input.ids)?;
        if self.frozen_text {
            (words, state) = (words.detach(), state.detach());
        }
        let fq = m.neck.forward(&c3, &c4, &c5, &state)?;
        let dec = m.decoder.forward(&fq, &words, &Cris::pad_mask(&input.ids)?)?;
        let pred = m.proj.forward(&dec, &state)?;
        let out = if self.stride4 { pred } else { bicubic_align_corners(&pred, self.out_size)? };
        Ok(out.squeeze(1)?)
    }
}

/// Writes a checkpoint directory out as a CRIS model directory.
#[derive(Clone)]
pub struct Exporter {
    pub src_dir: PathBuf,
    /// The source's config as complete `config.json` fields (`loader::cris_source`).
    config: serde_json::Value,
    /// All of the model's variables (frozen ones never change; trained ones are taken from the
    /// checkpoint being exported).
    varmap: VarMap,
}

impl Exporter {
    pub fn export(&self, dst: &Path) -> Result<()> {
        let trained_path = dst.join(state::WEIGHTS);
        let trained = candle_core::safetensors::load(&trained_path, &Device::Cpu)
            .map_err(|e| anyhow!("{}: cannot read: {e}", trained_path.display()))?;
        let mut all: HashMap<String, Tensor> = {
            let data = self.varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
            data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect::<candle_core::Result<_>>()?
        };
        all.extend(trained);
        crate::io::write_atomic(&dst.join("config.json"), serde_json::to_string_pretty(&self.config)?.as_bytes())?;
        for f in TOKENIZER_FILES.iter().chain(&[crate::tokenize::BPE_FILE]) {
            let src = self.src_dir.join(f);
            if src.is_file() {
                let b = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
                crate::io::write_atomic(&dst.join(f), &b)?;
            }
        }
        // Last, so a directory with model.safetensors is always complete.
        crate::io::write_safetensors_atomic(&dst.join(MODEL_FILE), &all)
    }

    /// Exports `run_dir/best` unless it already holds a model.
    pub fn export_best(&self, run_dir: &Path) -> Result<()> {
        let best = run_dir.join("best");
        if best.join(state::STATE).is_file() && !best.join(MODEL_FILE).is_file() {
            self.export(&best)?;
        }
        Ok(())
    }
}

/// `vlsm train` for CRIS: builds the task, trains, keeps `RUN/best` a loadable model directory.
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks, init: DecoderInit) -> Result<RunSummary> {
    trainer::train(cfg, opts, hooks, || {
        let task = CrisTask::new(cfg, init, opts.progress)?;
        report_store(task.cache_stats.as_ref(), opts.progress);
        let exporter = task.exporter();
        Ok((task, move |run_dir: &Path| exporter.export_best(run_dir)))
    })
}
