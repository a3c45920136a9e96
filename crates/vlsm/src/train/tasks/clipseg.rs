//! CLIPSeg decoder training over frozen encoders: CLIP (`model.kind = "clipseg"`) or BiomedCLIP
//! (`"biomedclipseg"`, medvlsm's BiomedCLIPSeg; with `model.decoder_from` a CLIPSeg checkpoint,
//! BiomedCLIPSeg-D).
//!
//! The decoder lives in a `VarMap` initialised from the checkpoint's `decoder.*` tensors (or
//! randomly, seeded). Encoder activations are computed once per image into the memory-mapped
//! [`FeatureStore`]; text conditionals are memoised per prompt string, so an epoch runs only the
//! decoder. Targets are masks resized to the model input with PIL nearest (medvlsm's
//! `Resize(interpolation=0)`) and, when the decoder's output is smaller, again to its size.
//!
//! The best checkpoint is also written as a full Hugging Face model directory (`config.json`,
//! `preprocessor_config.json`, tokenizer files, `model.safetensors` = frozen encoders + trained
//! decoder), so `vlsm segment --model RUN/best` loads it. For BiomedCLIPSeg it is a BiomedCLIPSeg
//! directory: the open_clip files (weights hard-linked when possible) plus `decoder.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::common::{
    image_key, init_as_model_dir, load_target, report_store, DecoderInit, MODEL_FILE, TOKENIZER_FILES,
};
use crate::data::{self, Pool, Record};
use crate::models::biomedclip::BiomedClip;
use crate::models::biomedclipseg::BiomedClipSegConfig;
use crate::models::clipseg::{ClipSeg, ClipSegConfig, ClipSegDecoder};
use crate::preprocess::{ImageProcessorConfig, ResizeTarget};
use crate::tokenize::{ClipTokenizer, WordPieceTokenizer};
use crate::train::engine::cache::{hash_bytes, hash_file, FeatureStore, StoreStats};
use crate::train::engine::config::TrainConfig;
use crate::train::engine::log::progress_bar;
use crate::train::engine::state;
use crate::train::engine::trainer::{self, Hooks, RunOptions, RunSummary, Split, Trainable};
use crate::weights;

struct Item {
    dataset: String,
    record: Record,
    cache_key: String,
    /// 0/1 target at decoder output size, row-major.
    target: Vec<u8>,
}

/// The frozen encoders under the CLIPSeg decoder.
enum Encoder {
    Clip(Box<ClipSeg>, ClipTokenizer),
    /// BiomedCLIP and the timm blocks the decoder reads.
    Biomed(Box<BiomedClip>, WordPieceTokenizer, Vec<usize>),
}

/// The CLIPSeg [`Trainable`]: cached activations + memoised text conditionals in, decoder logits out.
pub struct ClipSegTask {
    encoder: Encoder,
    decoder: ClipSegDecoder,
    varmap: VarMap,
    processor: ImageProcessorConfig,
    prompt_keys: Vec<String>,
    train: Vec<Item>,
    val: Vec<Item>,
    text_memo: HashMap<String, Tensor>,
    cache: Option<FeatureStore>,
    /// Decoder output `(h, w)`.
    out_size: (usize, usize),
    exporter: Exporter,
    device: Device,
    /// What opening the feature cache did (None without a cache).
    pub cache_stats: Option<StoreStats>,
}

/// Input of one batch: activations per extracted layer `[B, 1+N, D]` and conditionals `[B, P]`.
pub struct Batch {
    pub activations: Vec<Tensor>,
    pub cond: Tensor,
}

impl ClipSegTask {
    /// Loads the model and data and fills the feature cache. Every data, config and checkpoint
    /// error surfaces here, before any training.
    pub fn new(cfg: &TrainConfig, init: DecoderInit, progress: bool) -> Result<Self> {
        cfg.validate()?;
        if !["clipseg", "biomedclipseg"].contains(&cfg.model.kind.as_str()) {
            bail!("model.kind: '{}' is not clipseg or biomedclipseg", cfg.model.kind);
        }
        if !(cfg.is_frozen("vision") && cfg.is_frozen("text")) || cfg.is_frozen("decoder") {
            bail!("model.freeze: CLIPSeg-style training trains the decoder only; use freeze = [\"vision\", \"text\"]");
        }
        // model.init_from: that directory is the model (its config, encoders and decoder).
        let from_init = cfg.model.init_from.is_some();
        let init_cfg = init_as_model_dir(cfg)?;
        let cfg: &TrainConfig = &init_cfg;
        let device = Device::Cpu;
        let dir = &cfg.model.dir;
        let size = cfg.data.image_size;
        let named = |e: anyhow::Error| if from_init { anyhow!("model.init_from: {e:#}") } else { e };
        let l = if cfg.model.kind == "clipseg" {
            load_clipseg(dir, size, &device).map_err(named)?
        } else {
            load_biomed(dir, size, &device).map_err(named)?
        };
        let config = l.decoder_config;
        let processor = l.processor;
        // The decoder's starting weights: model.decoder_from, else the model's own.
        let (dsrc, dvb) = match (&cfg.model.decoder_from, init) {
            (Some(p), DecoderInit::Checkpoint) => {
                let w = weights::find_weights(p)?;
                let vb = weights::var_builder(&w, DType::F32, &device, None)?;
                (Some(w), Some(vb))
            }
            _ => (l.decoder_src.clone(), l.decoder_vb),
        };
        if from_init && dvb.is_none() {
            bail!("model.init_from: {}: no trained decoder ({BIOMED_DECODER_FILE})", dir.display());
        }
        let init = match (&dvb, init) {
            // BiomedCLIPSeg without decoder weights: medvlsm's random decoder.
            (None, _) => DecoderInit::Random,
            (_, i) => i,
        };
        let wpath = l.weights.clone();

        // Data: anns, files, mask sizes and prompt keys are all checked by opening.
        let pools = [Pool::open(&cfg.data.datasets, "train")?, Pool::open(&cfg.data.datasets, "val")?];
        for pool in &pools {
            for k in &cfg.data.prompts {
                pool.require_prompt(k)?;
            }
        }

        let varmap = VarMap::new();
        let decoder = ClipSeg::decoder_only(VarBuilder::from_varmap(&varmap, DType::F32, &device), &config)
            .map_err(|e| anyhow!("decoder: {e}"))?;
        match (&dvb, &dsrc) {
            (Some(vb), Some(src)) => init_decoder(&varmap, init, vb, src, cfg.seed).map_err(named)?,
            _ => init_decoder(&varmap, DecoderInit::Random, &VarBuilder::zeros(DType::F32, &device), &wpath, cfg.seed)?,
        }

        let g = size / config.vision_config.patch_size;
        if g == 0 {
            bail!("data.image_size: {size} is smaller than the patch size {}", config.vision_config.patch_size);
        }
        let shapes: Vec<Vec<usize>> =
            config.extract_layers.iter().map(|_| vec![1 + g * g, config.vision_config.hidden_size]).collect();
        let out_size = decoder_output_size(&decoder, &shapes, config.projection_dim, &device)?;

        let make_items = |pool: &Pool| -> Result<Vec<Item>> {
            let list: Vec<_> = pool.iter().collect();
            list.par_iter()
                .map(|it| {
                    let r = it.record;
                    Ok(Item {
                        dataset: it.dataset.name.clone(),
                        record: r.clone(),
                        cache_key: image_key(&r.image_path)?,
                        target: load_target(&r.mask_path, size, out_size)?,
                    })
                })
                .collect()
        };
        let train = make_items(&pools[0])?;
        let val = make_items(&pools[1])?;

        let mut task = ClipSegTask {
            encoder: l.encoder,
            decoder,
            varmap,
            processor,
            prompt_keys: cfg.data.prompts.clone(),
            train,
            val,
            text_memo: HashMap::new(),
            cache: None,
            out_size,
            exporter: Exporter {
                src_dir: dir.clone(),
                weights: wpath.clone(),
                image_size: size,
                biomed: l.biomed_config,
            },
            device,
            cache_stats: None,
        };
        if cfg.data.feature_cache {
            let model_key = format!(
                "{}\n{}\n{}\n{:?}\n{:?}",
                cfg.model.kind,
                hash_file(&wpath)?,
                hash_bytes(std::fs::read(&l.config_file)?.as_slice()),
                config.extract_layers,
                task.processor
            );
            let paths: Vec<PathBuf> = task.train.iter().chain(&task.val).map(|i| i.record.image_path.clone()).collect();
            let keys: Vec<String> = task.train.iter().chain(&task.val).map(|i| i.cache_key.clone()).collect();
            let pb = progress_bar(keys.len(), "image features (new only)".into(), progress);
            let (cache, stats) =
                FeatureStore::open(&cfg.cache_dir(), &model_key, shapes, &keys, cfg.train.batch_size, |pos| {
                    let ps: Vec<&Path> = pos.iter().map(|&i| paths[i].as_path()).collect();
                    let acts = task.compute_activations(&ps)?;
                    pb.inc(pos.len() as u64);
                    Ok(acts)
                })?;
            pb.finish_and_clear();
            task.cache = Some(cache);
            task.cache_stats = Some(stats);
        }
        Ok(task)
    }

    /// Decoder output size `(h, w)`.
    pub fn output_size(&self) -> (usize, usize) {
        self.out_size
    }

    /// Writes `RUN/best` (or any checkpoint dir) as a model directory.
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// Encoder activations for images on disk, computed now.
    fn compute_activations(&self, paths: &[&Path]) -> Result<Vec<Tensor>> {
        let imgs: Vec<image::RgbImage> = paths.par_iter().map(|p| crate::io::read_rgb(p)).collect::<Result<_>>()?;
        let pv = self.processor.preprocess_batch(&imgs)?;
        Ok(match &self.encoder {
            Encoder::Clip(m, _) => m.image_activations(&pv)?,
            Encoder::Biomed(m, _, layers) => {
                let deepest = *layers.iter().max().expect("validated non-empty");
                let blocks = m.visual.trunk.forward_blocks(&pv, deepest)?;
                layers.iter().map(|&i| blocks[i].clone()).collect()
            }
        })
    }

    fn conditionals(&mut self, prompts: &[String]) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(prompts.len());
        for p in prompts {
            if !self.text_memo.contains_key(p) {
                let c = match &self.encoder {
                    Encoder::Clip(m, tok) => {
                        let ids = tok.encode(p)?;
                        let n = ids.len();
                        let ids = Tensor::from_vec(ids, (1, n), &self.device)?;
                        m.text_conditional(&ids)?
                    }
                    Encoder::Biomed(m, tok, _) => {
                        let (ids, mask) = m.tokenize(tok, &[p.as_str()], &self.device)?;
                        m.text_features(&ids, &mask)?
                    }
                };
                self.text_memo.insert(p.clone(), c);
            }
            rows.push(self.text_memo[p].clone());
        }
        Ok(Tensor::cat(&rows, 0)?)
    }

    fn items(&self, split: Split) -> &[Item] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// `(dataset, image name)` of each sample of a split.
    pub fn names(&self, split: Split) -> Vec<(String, String)> {
        self.items(split).iter().map(|i| (i.dataset.clone(), i.record.img_name.clone())).collect()
    }
}

impl Trainable for ClipSegTask {
    type Input = Batch;

    fn vars(&self) -> Vec<(String, Var)> {
        trainer::sorted_vars(&self.varmap)
    }

    fn len(&self, split: Split) -> usize {
        self.items(split).len()
    }

    fn batch(&mut self, split: Split, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<(Batch, Tensor)> {
        let mut prompts = Vec::with_capacity(idx.len());
        for &i in idx {
            let rec = &self.items(split)[i].record;
            let key = &self.prompt_keys[rng.random_range(0..self.prompt_keys.len())];
            prompts.push(data::prompt(rec, key, rng)?.to_string());
        }
        let cond = self.conditionals(&prompts)?;
        let items = self.items(split);
        let activations = match &self.cache {
            Some(c) => {
                let keys: Vec<&str> = idx.iter().map(|&i| items[i].cache_key.as_str()).collect();
                c.get_batch(&keys, &self.device)?
            }
            None => {
                let ps: Vec<&Path> = idx.iter().map(|&i| items[i].record.image_path.as_path()).collect();
                self.compute_activations(&ps)?
            }
        };
        let (h, w) = self.out_size;
        let t: Vec<f32> = idx.iter().flat_map(|&i| items[i].target.iter().map(|&v| v as f32)).collect();
        let targets = Tensor::from_vec(t, (idx.len(), h, w), &self.device)?;
        Ok((Batch { activations, cond }, targets))
    }

    fn forward(&self, input: &Batch) -> Result<Tensor> {
        Ok(self.decoder.forward(&input.activations, &input.cond)?)
    }
}

/// What the encoder side of a checkpoint gives the decoder trainer.
struct Loaded {
    encoder: Encoder,
    decoder_config: ClipSegConfig,
    processor: ImageProcessorConfig,
    /// The encoder weight file (cache key, export source).
    weights: PathBuf,
    /// The config file whose bytes key the feature cache.
    config_file: PathBuf,
    /// Where the decoder's own starting weights are, if anywhere.
    decoder_src: Option<PathBuf>,
    decoder_vb: Option<VarBuilder<'static>>,
    /// BiomedCLIPSeg's `config.json` (exported with the trained decoder).
    biomed_config: Option<serde_json::Value>,
}

fn load_clipseg(dir: &Path, size: usize, device: &Device) -> Result<Loaded> {
    let cfg_path = dir.join("config.json");
    let kind = weights::detect(dir)?;
    if kind != weights::ModelKind::ClipSeg {
        bail!("{}: a {kind:?} checkpoint, not CLIPSeg (model.kind = \"clipseg\")", cfg_path.display());
    }
    let config: ClipSegConfig = weights::read_json(&cfg_path)?;
    config.validate().map_err(|e| anyhow!("{}: {e}", cfg_path.display()))?;
    let wpath = weights::find_weights(dir)?;
    let vb = weights::var_builder(&wpath, DType::F32, device, None)?;
    let model = ClipSeg::new(vb.clone(), &config).map_err(|e| weights::load_error(&wpath, e))?;
    let tokenizer = ClipTokenizer::from_dir(dir)?;
    Ok(Loaded {
        encoder: Encoder::Clip(Box::new(model), tokenizer),
        decoder_config: config,
        processor: train_processor(dir, size)?,
        weights: wpath.clone(),
        config_file: cfg_path,
        decoder_src: Some(wpath),
        decoder_vb: Some(vb),
        biomed_config: None,
    })
}

/// A BiomedCLIP open_clip directory, with or without a BiomedCLIPSeg `config.json`.
fn load_biomed(dir: &Path, size: usize, device: &Device) -> Result<Loaded> {
    let cpath = dir.join("config.json");
    let (bc, raw): (BiomedClipSegConfig, serde_json::Value) = if cpath.is_file() {
        let raw: serde_json::Value = weights::read_json(&cpath)?;
        match raw.get("model_type").and_then(|t| t.as_str()) {
            Some("biomedclipseg") | None => {}
            Some(t) => {
                bail!("{}: model_type '{t}', not biomedclipseg (model.kind = \"biomedclipseg\")", cpath.display())
            }
        }
        let bc = serde_json::from_value(raw.clone()).map_err(|e| anyhow!("{}: {e}", cpath.display()))?;
        (bc, raw)
    } else {
        (BiomedClipSegConfig::default(), serde_json::json!({}))
    };
    let enc = crate::loader::biomedclip_config(dir)?;
    let dc = bc.decoder_config(&enc).map_err(|e| anyhow!("{}: {e}", cpath.display()))?;
    if size != enc.vision.image_size {
        bail!(
            "data.image_size: {size}, but the BiomedCLIP ViT in {} takes {} px",
            dir.display(),
            enc.vision.image_size
        );
    }
    if let Some(&l) = bc.extract_layers.iter().find(|&&l| l >= enc.vision.depth) {
        bail!("{}: extract_layers has block {l}, the ViT has {}", cpath.display(), enc.vision.depth);
    }
    let ew = crate::loader::biomedclip_weights_file(dir)?;
    let evb = weights::var_builder(&ew, DType::F32, device, None)?;
    let model = BiomedClip::new(evb, &enc).map_err(|e| weights::load_error(&ew, e))?;
    let tok = crate::loader::wordpiece_tokenizer(dir, enc.context_length)?;
    let dw = dir.join(&bc.decoder_weights);
    let dvb = if dw.is_file() { Some(weights::var_builder(&dw, DType::F32, device, None)?) } else { None };
    let mut raw = raw;
    let obj = raw.as_object_mut().ok_or_else(|| anyhow!("{}: expected a JSON object", cpath.display()))?;
    obj.insert("model_type".into(), "biomedclipseg".into());
    obj.insert("decoder_weights".into(), BIOMED_DECODER_FILE.into());
    Ok(Loaded {
        encoder: Encoder::Biomed(Box::new(model), tok, bc.extract_layers.clone()),
        decoder_config: dc,
        processor: enc.image_processor(),
        weights: ew,
        config_file: dir.join("open_clip_config.json"),
        decoder_src: dvb.as_ref().map(|_| dw),
        decoder_vb: dvb,
        biomed_config: Some(raw),
    })
}

/// The trained decoder of an exported BiomedCLIPSeg directory.
pub const BIOMED_DECODER_FILE: &str = "decoder.safetensors";

/// The reference processor with its size set to `size` x `size` (no crop).
fn train_processor(dir: &Path, size: usize) -> Result<ImageProcessorConfig> {
    let pp = dir.join("preprocessor_config.json");
    let mut p = if pp.is_file() { ImageProcessorConfig::from_file(&pp)? } else { ImageProcessorConfig::clipseg(352) };
    p.size = ResizeTarget::Exact { height: size as u32, width: size as u32 };
    p.do_center_crop = false;
    Ok(p)
}

fn decoder_output_size(d: &ClipSegDecoder, shapes: &[Vec<usize>], proj: usize, dev: &Device) -> Result<(usize, usize)> {
    let acts: Vec<Tensor> =
        shapes.iter().map(|s| Tensor::zeros((1, s[0], s[1]), DType::F32, dev)).collect::<candle_core::Result<_>>()?;
    let cond = Tensor::zeros((1, proj), DType::F32, dev)?;
    let (_, h, w) = d.forward(&acts, &cond)?.dims3()?;
    Ok((h, w))
}

fn init_decoder(varmap: &VarMap, init: DecoderInit, ckpt: &VarBuilder, wpath: &Path, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let t = match init {
            DecoderInit::Checkpoint => ckpt.get(dims.as_slice(), name).map_err(|e| {
                anyhow!(
                    "{}: {} (no trained CLIPSeg decoder in this checkpoint?)",
                    wpath.display(),
                    weights::one_line(&e.to_string())
                )
            })?,
            DecoderInit::Random => {
                let n: usize = dims.iter().product();
                let v: Vec<f32> = if name.ends_with("bias") {
                    vec![0.0; n]
                } else if dims.len() == 1 {
                    vec![1.0; n]
                } else {
                    let b = 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-b..b)).collect()
                };
                Tensor::from_vec(v, dims.as_slice(), var.device())?
            }
        };
        var.set(&t)?;
    }
    Ok(())
}

/// Writes a checkpoint directory's trained decoder out as a full model directory.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// The model directory training started from.
    pub src_dir: PathBuf,
    /// Its weight file.
    pub weights: PathBuf,
    pub image_size: usize,
    /// BiomedCLIPSeg's config.json (None: a CLIPSeg export).
    pub biomed: Option<serde_json::Value>,
}

impl Exporter {
    /// The file written last, whose presence marks a complete export.
    fn marker(&self) -> &'static str {
        if self.biomed.is_some() {
            BIOMED_DECODER_FILE
        } else {
            MODEL_FILE
        }
    }

    /// A BiomedCLIPSeg directory: the source's open_clip files, its config and the decoder.
    fn export_biomed(&self, dst: &Path, config: &serde_json::Value) -> Result<()> {
        let mut files: Vec<String> =
            ["open_clip_config.json", "vocab.txt"].iter().chain(TOKENIZER_FILES).map(|s| s.to_string()).collect();
        // The local BERT config open_clip resolves from hf_model_name.
        let oc: serde_json::Value = weights::read_json(&self.src_dir.join("open_clip_config.json"))?;
        if let Some(n) = oc.pointer("/model_cfg/text_cfg/hf_model_name").and_then(|v| v.as_str()) {
            if self.src_dir.join(n).join("config.json").is_file() {
                std::fs::create_dir_all(dst.join(n))
                    .with_context(|| format!("{}: cannot create", dst.join(n).display()))?;
                files.push(format!("{n}/config.json"));
            }
        }
        for f in files {
            let src = self.src_dir.join(&f);
            if src.is_file() {
                let b = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
                crate::io::write_atomic(&dst.join(&f), &b)?;
            }
        }
        // The encoder weights are large and never change: link them when the filesystem allows.
        let name = self.weights.file_name().ok_or_else(|| anyhow!("{}: no file name", self.weights.display()))?;
        let out = dst.join(name);
        if !out.is_file() && std::fs::hard_link(&self.weights, &out).is_err() {
            let b = std::fs::read(&self.weights).with_context(|| format!("{}: cannot read", self.weights.display()))?;
            crate::io::write_atomic(&out, &b)?;
        }
        crate::io::write_atomic(&dst.join("config.json"), serde_json::to_string_pretty(config)?.as_bytes())?;
        let trained = std::fs::read(dst.join(state::WEIGHTS))
            .with_context(|| format!("{}: cannot read", dst.join(state::WEIGHTS).display()))?;
        crate::io::write_atomic(&dst.join(BIOMED_DECODER_FILE), &trained)
    }

    /// Makes `dst` a model directory: its `weights.safetensors` (decoder) over the source's
    /// encoder tensors, config, processor (at the training size) and tokenizer files.
    pub fn export(&self, dst: &Path) -> Result<()> {
        if let Some(c) = &self.biomed {
            return self.export_biomed(dst, c);
        }
        let trained_path = dst.join(state::WEIGHTS);
        let trained = candle_core::safetensors::load(&trained_path, &Device::Cpu)
            .map_err(|e| anyhow!("{}: cannot read: {e}", trained_path.display()))?;
        let mut all: HashMap<String, Tensor> =
            read_all_tensors(&self.weights)?.into_iter().filter(|(k, _)| !k.starts_with("decoder.")).collect();
        all.extend(trained);
        let cfg = std::fs::read(self.src_dir.join("config.json"))
            .with_context(|| format!("{}: cannot read", self.src_dir.join("config.json").display()))?;
        crate::io::write_atomic(&dst.join("config.json"), &cfg)?;
        let pp = processor_json(&self.src_dir.join("preprocessor_config.json"), self.image_size)?;
        crate::io::write_atomic(&dst.join("preprocessor_config.json"), pp.as_bytes())?;
        for f in TOKENIZER_FILES {
            let src = self.src_dir.join(f);
            if src.is_file() {
                let b = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
                crate::io::write_atomic(&dst.join(f), &b)?;
            }
        }
        // Last, so a directory with model.safetensors is always complete.
        crate::io::write_safetensors_atomic(&dst.join(MODEL_FILE), &all)
    }

    /// Exports `run_dir/best` unless it already holds a model (a new best checkpoint replaces
    /// the whole directory, so a missing model file means a new best).
    pub fn export_best(&self, run_dir: &Path) -> Result<()> {
        let best = run_dir.join("best");
        if best.join(state::STATE).is_file() && !best.join(self.marker()).is_file() {
            self.export(&best)?;
        }
        Ok(())
    }
}

pub(crate) fn read_all_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let r = if ext == "safetensors" {
        candle_core::safetensors::load(path, &Device::Cpu).map(|m| m.into_iter().collect())
    } else {
        candle_core::pickle::read_all(path)
    };
    r.map_err(|e| anyhow!("{}: cannot read weights: {}", path.display(), weights::one_line(&e.to_string())))
}

/// The source `preprocessor_config.json` (or the CLIPSeg one) with `size` set to the training size.
fn processor_json(src: &Path, size: usize) -> Result<String> {
    let mut v: serde_json::Value = if src.is_file() {
        weights::read_json(src)?
    } else {
        serde_json::json!({
            "do_resize": true, "resample": 2, "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor"
        })
    };
    let obj = v.as_object_mut().ok_or_else(|| anyhow!("{}: expected a JSON object", src.display()))?;
    obj.insert("size".into(), serde_json::json!({"height": size, "width": size}));
    obj.insert("do_center_crop".into(), serde_json::Value::Bool(false));
    Ok(serde_json::to_string_pretty(&v)?)
}

/// `vlsm train` for CLIPSeg and BiomedCLIPSeg: builds the task, trains, and keeps `RUN/best` a
/// loadable model directory after every improvement.
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks, init: DecoderInit) -> Result<RunSummary> {
    trainer::train(cfg, opts, hooks, || {
        let task = ClipSegTask::new(cfg, init, opts.progress)?;
        report_store(task.cache_stats.as_ref(), opts.progress);
        let exporter = task.exporter();
        Ok((task, move |run_dir: &Path| exporter.export_best(run_dir)))
    })
}
