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

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::checkpoint;
use super::config::TrainConfig;
use super::trainer::{self, Hooks, RunSummary, Split, Trainable};
use crate::data::{Pool, Prompt};
use crate::models::textunet::{TextUNet, TextUNetConfig};
use crate::pipeline::textunet_processor;
use crate::preprocess::{pil_resize, pil_resize_gray, Filter};
use crate::tokenize::{find_bpe, ClipTokenizer, BPE_FILE};

pub(crate) struct Sample {
    image: Vec<u8>,
    mask: Vec<u8>,
    pub(crate) prompts: Vec<Vec<String>>,
    /// Which dataset of the pool it comes from (negative prompts come from another).
    dataset: String,
}

/// Decoded, resized samples of one split, in pool order. No `keys`: a text-free model.
pub(crate) fn load_split(pool: &Pool, keys: &[String], size: u32) -> Result<Vec<Sample>> {
    let items: Vec<_> = pool.iter().collect();
    items
        .par_iter()
        .map(|it| {
            let r = it.record;
            let img = crate::io::read_rgb(&r.image_path)?;
            let mask = crate::io::read_mask(&r.mask_path)?;
            if img.dimensions() != mask.dimensions() {
                bail!(
                    "{}: mask is {:?} but its image {} is {:?}",
                    r.mask_path.display(),
                    mask.dimensions(),
                    r.image_path.display(),
                    img.dimensions()
                );
            }
            let image = pil_resize(&img, size, size, Filter::Bilinear).into_raw();
            let mask = pil_resize_gray(&mask, size, size, Filter::Nearest).into_raw();
            // Keys a record lacks are skipped (BUSI has p0-p6, the polyp sets p0-p9).
            let prompts: Vec<Vec<String>> = keys
                .iter()
                .filter_map(|k| match r.prompts.get(k) {
                    Some(Prompt::One(s)) => Some(vec![s.clone()]),
                    Some(Prompt::Many(v)) if !v.is_empty() => Some(v.clone()),
                    _ => None,
                })
                .collect();
            if prompts.is_empty() && !keys.is_empty() {
                bail!(
                    "{}: record {} has none of the prompts {}",
                    it.dataset.root.join("anns").display(),
                    r.img_name,
                    keys.join(", ")
                );
            }
            Ok(Sample { image, mask, prompts, dataset: it.dataset.name.clone() })
        })
        .collect()
}

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
        let mut mcfg = TextUNetConfig::new(vocab.into_iter().collect());
        mcfg.image_size = size;
        mcfg.validate().map_err(|e| anyhow!("data.image_size: {e}"))?;
        let varmap = VarMap::new();
        let model = TextUNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &mcfg)?;
        seeded_init(&varmap, cfg.seed)?;
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
                let other = texts.iter().filter(|(e, theirs)| *e != d && mine.is_disjoint(theirs)).map(|(e, _)| e.clone());
                (d.clone(), other.collect())
            })
            .collect();
        Ok(Self { model, varmap, tokenizer, train, val, token_memo: RefCell::default(), negatives, flips, foreign, size, mean, std, device })
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

/// Re-draws every parameter from the run seed (candle's CPU RNG cannot be seeded), as PyTorch
/// initialises them: uniform(±1/sqrt(fan_in)) for conv/linear weights and biases, N(0, 1) token
/// and N(0, 0.02) position embeddings, norms at one and zero.
pub(crate) fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    use rand::SeedableRng;
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let fan_in = |name: &str| -> Option<usize> {
        let w = data.get(&format!("{}.weight", name.strip_suffix(".bias")?))?;
        Some(w.dims()[1..].iter().product())
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = |std: f32, rng: &mut ChaCha8Rng| -> f32 {
        // Box-Muller; 1 - u keeps the log finite.
        let (u, v): (f32, f32) = (rng.random(), rng.random());
        std * (-2.0 * (1.0 - u).ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let is_norm = name.contains("norm");
        let v: Vec<f32> = if name.ends_with("token_embedding.weight") {
            (0..n).map(|_| normal(1.0, &mut rng)).collect()
        } else if name.ends_with("position_embedding") {
            (0..n).map(|_| normal(0.02, &mut rng)).collect()
        } else if is_norm {
            vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; n]
        } else {
            let fi = if dims.len() >= 2 { dims[1..].iter().product() } else { fan_in(name).unwrap_or(n) };
            let b = 1.0 / (fi as f32).sqrt();
            (0..n).map(|_| rng.random_range(-b..b)).collect()
        };
        var.set(&Tensor::from_vec(v, dims.as_slice(), var.device())?)?;
    }
    Ok(())
}

/// A TextUNet model directory: config, weights, processor config and the BPE file.
pub fn export_dir(config: &TextUNetConfig, weights: &Path, bpe: &Path, dst: &Path) -> Result<()> {
    let p = textunet_processor(config);
    let json = serde_json::to_string_pretty(config)?;
    write_model_dir(json.as_bytes(), config.image_size, p.image_mean, p.image_std, weights, Some(bpe), dst)
}

/// A model directory: `config.json`, the weights, a processor config for a square
/// `image_size` input (PIL bilinear resize, then mean/std) and, for text models, the BPE file.
pub(crate) fn write_model_dir(
    config_json: &[u8],
    image_size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    weights: &Path,
    bpe: Option<&Path>,
    dst: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("{}: cannot create", dst.display()))?;
    let w = std::fs::read(weights).with_context(|| format!("{}: cannot read", weights.display()))?;
    crate::io::write_atomic(&dst.join("model.safetensors"), &w)?;
    let pp = serde_json::json!({
        "image_processor_type": "ViTImageProcessor", "do_resize": true,
        "size": {"height": image_size, "width": image_size}, "resample": 2,
        "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
        "image_mean": mean, "image_std": std,
    });
    crate::io::write_atomic(&dst.join("preprocessor_config.json"), serde_json::to_string_pretty(&pp)?.as_bytes())?;
    if let Some(bpe) = bpe {
        let b = std::fs::read(bpe).with_context(|| format!("{}: cannot read", bpe.display()))?;
        crate::io::write_atomic(&dst.join(BPE_FILE), &b)?;
    }
    // config.json last: its presence marks the directory complete.
    crate::io::write_atomic(&dst.join("config.json"), config_json)?;
    Ok(())
}

/// A training sample's flips: left-right (`h`) and top-bottom (`v`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flip {
    pub h: bool,
    pub v: bool,
}

impl Flip {
    /// The pixel index that lands at (y, x) of an S x S image.
    fn source(self, y: usize, x: usize, size: usize) -> usize {
        let sy = if self.v { size - 1 - y } else { y };
        let sx = if self.h { size - 1 - x } else { x };
        sy * size + sx
    }

    /// `text` as it describes the flipped image: in the position phrase that ends the medvlsm
    /// prompts ("located in bottom right of the image", BUSI's "at the top left, center in ..."),
    /// left and right swap under `h`, top and bottom under `v`. Words before it are left alone
    /// ("right ear polyp" names a shape).
    pub fn prompt(self, text: &str) -> String {
        let start = ["located in", " at the "].iter().filter_map(|m| text.rfind(m)).max();
        let Some(start) = start.filter(|_| self.h || self.v) else { return text.to_string() };
        let (head, tail) = text.split_at(start);
        let mut out = String::with_capacity(text.len());
        out.push_str(head);
        let mut word = String::new();
        let swap = |w: &str| -> Option<&'static str> {
            Some(match (w, self.h, self.v) {
                ("left", true, _) => "right",
                ("right", true, _) => "left",
                ("top", _, true) => "bottom",
                ("bottom", _, true) => "top",
                _ => return None,
            })
        };
        let flush = |word: &mut String, out: &mut String| {
            out.push_str(swap(word).unwrap_or(word));
            word.clear();
        };
        for ch in tail.chars() {
            if ch.is_alphabetic() {
                word.push(ch);
            } else {
                flush(&mut word, &mut out);
                out.push(ch);
            }
        }
        flush(&mut word, &mut out);
        out
    }
}

/// Normalised pixels [B, 3, S, S] and {0,1} targets [B, S, S] of samples `idx`, each flipped
/// by its entry of `flips` (none where `flips` is shorter).
pub(crate) fn pixels_and_targets(
    set: &[Sample],
    idx: &[usize],
    flips: &[Flip],
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let hw = size * size;
    let mut px = Vec::with_capacity(idx.len() * 3 * hw);
    let mut tg = Vec::with_capacity(idx.len() * hw);
    for (k, &i) in idx.iter().enumerate() {
        let smp = &set[i];
        let f = flips.get(k).copied().unwrap_or_default();
        let src: Vec<usize> = (0..hw).map(|p| f.source(p / size, p % size, size)).collect();
        for c in 0..3 {
            let (m, sd) = (mean[c], std[c]);
            px.extend(src.iter().map(|&p| (smp.image[p * 3 + c] as f32 / 255.0 - m) / sd));
        }
        tg.extend(src.iter().map(|&p| if smp.mask[p] > 127 { 1f32 } else { 0.0 }));
    }
    let b = idx.len();
    Ok((Tensor::from_vec(px, (b, 3, size, size), device)?, Tensor::from_vec(tg, (b, size, size), device)?))
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
        let (pixels, mut targets) = pixels_and_targets(set, idx, &flips, self.size, self.mean, self.std, &self.device)?;
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
                if let Some(j) = (0..8).map(|_| rng.random_range(0..set.len())).find(|&j| foreign.contains(&set[j].dataset)) {
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
}

/// `vlsm train` for TextUNet: trains, keeping `RUN/best` a loadable model directory.
pub fn train(cfg: &TrainConfig, hooks: Hooks) -> Result<RunSummary> {
    cfg.validate()?;
    trainer::apply_threads(cfg.threads);
    if !hooks.resume && checkpoint::resolve(&cfg.output_dir, "last").is_some() {
        bail!("{}: already holds a run (last/); resume it or choose another output_dir", cfg.output_dir.display());
    }
    let bpe = find_bpe()?;
    let t0 = std::time::Instant::now();
    let mut task = TextUNetTask::new(cfg, &bpe)?;
    if hooks.progress {
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
    run_exporting(cfg, &mut task, hooks, move |w, dst| export_dir(&config, w, &bpe, dst))
}

/// `trainer::run`, keeping `RUN/best` a loadable model directory: after an epoch that improved,
/// `export(weights, RUN/best)` writes the rest of it.
pub(crate) fn run_exporting<T: Trainable>(
    cfg: &TrainConfig,
    task: &mut T,
    hooks: Hooks,
    export: impl Fn(&Path, &Path) -> Result<()> + 'static,
) -> Result<RunSummary> {
    let best = cfg.output_dir.join("best");
    trainer::run_with(cfg, task, hooks, move || {
        let w = best.join(checkpoint::WEIGHTS);
        if w.is_file() && !best.join("config.json").is_file() {
            export(&w, &best)?;
        }
        Ok(())
    })
}

/// Items of a split as (dataset, image name), in the order `batch` indexes them.
pub fn names(cfg: &TrainConfig, split: &str) -> Result<Vec<(String, String)>> {
    let pool = Pool::open(&cfg.data.datasets, split)?;
    Ok(pool.iter().map(|it| (it.dataset.name.clone(), it.record.img_name.clone())).collect())
}
