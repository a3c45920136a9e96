//! What several training tasks share: the decoder's starting point, the files of exported model
//! directories, image keys and targets for the encoder-feature tasks (CLIPSeg, CRIS), and the
//! in-memory samples, flips, seeded initialisation and model-directory writer of the tasks
//! trained from scratch (TextUNet, UNet).

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{Pool, Prompt};
use crate::preprocess::{pil_resize, pil_resize_gray, Filter};
use crate::tokenize::BPE_FILE;
use crate::train::engine::cache::StoreStats;
use crate::train::engine::config::TrainConfig;

/// Where the trainable decoder starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecoderInit {
    /// The checkpoint's `decoder.*` tensors.
    #[default]
    Checkpoint,
    /// PyTorch-style uniform(±1/sqrt(fan_in)) weights, zero biases, unit LayerNorm scales,
    /// drawn from the run seed.
    Random,
}

/// Tokenizer files copied into an exported model directory when present.
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];
/// The full model written into `RUN/best/`.
pub const MODEL_FILE: &str = "model.safetensors";

/// Cache key of an image file: its path, length and modification time.
pub(crate) fn image_key(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?;
    let mtime =
        m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(format!("{}|{}|{mtime}", abs.display(), m.len()))
}

/// The mask as 0/1 at `size` x `size` (PIL nearest), then at the decoder output size.
pub(crate) fn load_target(path: &Path, size: usize, out: (usize, usize)) -> Result<Vec<u8>> {
    let m = crate::io::read_mask(path)?;
    let mut m = pil_resize_gray(&m, size as u32, size as u32, Filter::Nearest);
    if (out.0, out.1) != (size, size) {
        m = pil_resize_gray(&m, out.1 as u32, out.0 as u32, Filter::Nearest);
    }
    Ok(m.as_raw().iter().map(|&v| (v > 0) as u8).collect())
}

/// A training sample decoded and resized once, kept as u8.
pub(crate) struct Sample {
    /// RGB, row-major, at the model input size.
    pub(crate) image: Vec<u8>,
    /// Grey mask, row-major, at the model input size.
    pub(crate) mask: Vec<u8>,
    /// Per prompt key, its variants.
    pub(crate) prompts: Vec<Vec<String>>,
    /// Which dataset of the pool it comes from (negative prompts come from another).
    pub(crate) dataset: String,
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

/// Re-draws every parameter from the run seed (candle's CPU RNG cannot be seeded), as PyTorch
/// initialises them: uniform(±1/sqrt(fan_in)) for conv/linear weights and biases, N(0, 1) token
/// and N(0, 0.02) position embeddings, norms at one and zero.
pub(crate) fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
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
    augmented_pixels_and_targets(set, idx, flips, &[], size, mean, std, device)
}

/// A training sample's geometric and colour augmentation (`[augment]`), applied after its flips.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    /// Zoom (> 1 zooms in).
    pub scale: f32,
    /// Rotation in radians.
    pub angle: f32,
    /// Shift of the centre, in pixels of the output.
    pub dx: f32,
    pub dy: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl Default for Warp {
    fn default() -> Self {
        Warp { scale: 1.0, angle: 0.0, dx: 0.0, dy: 0.0, brightness: 1.0, contrast: 1.0, saturation: 1.0 }
    }
}

impl Warp {
    /// One draw from `aug` for an S x S input. The draws are made in a fixed order (all seven,
    /// whichever are on), so a run repeats exactly.
    pub fn draw(aug: &crate::train::engine::config::AugmentConfig, size: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut u = |lo: f64, hi: f64| -> f32 {
            let r: f64 = rng.random();
            (lo + (hi - lo) * r) as f32
        };
        let (ls0, ls1) = (aug.scale[0].ln(), aug.scale[1].ln());
        let scale = u(ls0, ls1).exp();
        let angle = u(-aug.rotate, aug.rotate).to_radians();
        let t = aug.translate * size as f64;
        let (dx, dy) = (u(-t, t), u(-t, t));
        let brightness = u(1.0 - aug.brightness, 1.0 + aug.brightness);
        let contrast = u(1.0 - aug.contrast, 1.0 + aug.contrast);
        let saturation = u(1.0 - aug.saturation, 1.0 + aug.saturation);
        Warp { scale, angle, dx, dy, brightness, contrast, saturation }
    }

    fn is_geometric(&self) -> bool {
        self.scale != 1.0 || self.angle != 0.0 || self.dx != 0.0 || self.dy != 0.0
    }

    /// The source point (x, y) of output pixel (x, y): the inverse of zooming by `scale` and
    /// rotating by `angle` about the centre, then shifting by (dx, dy).
    fn source(&self, x: f32, y: f32, size: usize) -> (f32, f32) {
        let c = (size as f32 - 1.0) / 2.0;
        let (px, py) = (x - c - self.dx, y - c - self.dy);
        let (sn, cs) = self.angle.sin_cos();
        let (rx, ry) = ((cs * px + sn * py) / self.scale, (-sn * px + cs * py) / self.scale);
        (rx + c, ry + c)
    }
}

/// [`pixels_and_targets`] with each sample also warped by its entry of `warps` (none where
/// `warps` is shorter): image bilinear, mask nearest, zero (black, background) outside; then
/// brightness, contrast (about the image's mean grey) and saturation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn augmented_pixels_and_targets(
    set: &[Sample],
    idx: &[usize],
    flips: &[Flip],
    warps: &[Warp],
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
        let Some(w) = warps.get(k).filter(|w| **w != Warp::default()) else {
            for c in 0..3 {
                let (m, sd) = (mean[c], std[c]);
                px.extend(src.iter().map(|&p| (smp.image[p * 3 + c] as f32 / 255.0 - m) / sd));
            }
            tg.extend(src.iter().map(|&p| if smp.mask[p] > 127 { 1f32 } else { 0.0 }));
            continue;
        };
        // The flipped sample in [0, 1], then warped.
        let mut rgb: Vec<[f32; 3]> =
            src.iter().map(|&p| [0, 1, 2].map(|c| smp.image[p * 3 + c] as f32 / 255.0)).collect();
        let mut mask: Vec<f32> = src.iter().map(|&p| if smp.mask[p] > 127 { 1f32 } else { 0.0 }).collect();
        if w.is_geometric() {
            let (rgb0, mask0) = (rgb, mask);
            let s = size as isize;
            let at = |x: isize, y: isize| -> Option<usize> {
                (x >= 0 && y >= 0 && x < s && y < s).then(|| (y * s + x) as usize)
            };
            rgb = Vec::with_capacity(hw);
            mask = Vec::with_capacity(hw);
            for p in 0..hw {
                let (sx, sy) = w.source((p % size) as f32, (p / size) as f32, size);
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as isize, y0 as isize);
                let mut v = [0f32; 3];
                for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                    for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                        if let Some(q) = at(x0 + dx, y0 + dy) {
                            for c in 0..3 {
                                v[c] += wx * wy * rgb0[q][c];
                            }
                        }
                    }
                }
                rgb.push(v);
                mask.push(at(sx.round() as isize, sy.round() as isize).map_or(0.0, |q| mask0[q]));
            }
        }
        if (w.brightness, w.contrast, w.saturation) != (1.0, 1.0, 1.0) {
            let grey = |v: &[f32; 3]| 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
            let mean_grey = rgb.iter().map(grey).sum::<f32>() / hw as f32;
            for v in rgb.iter_mut() {
                let g = grey(v);
                for c in v.iter_mut() {
                    let mut x = *c * w.brightness;
                    x = (x - mean_grey * w.brightness) * w.contrast + mean_grey * w.brightness;
                    let gx = ((g * w.brightness) - mean_grey * w.brightness) * w.contrast + mean_grey * w.brightness;
                    x = gx + (x - gx) * w.saturation;
                    *c = x.clamp(0.0, 1.0);
                }
            }
        }
        for c in 0..3 {
            let (m, sd) = (mean[c], std[c]);
            px.extend(rgb.iter().map(|v| (v[c] - m) / sd));
        }
        tg.extend(mask);
    }
    let b = idx.len();
    Ok((Tensor::from_vec(px, (b, 3, size, size), device)?, Tensor::from_vec(tg, (b, size, size), device)?))
}

/// The model directory `model.init_from` names (`"default"`: the built-in model).
pub(crate) fn init_dir(p: &Path) -> Result<std::path::PathBuf> {
    if p.as_os_str() == "default" {
        return crate::default_model::default_model_dir();
    }
    if !p.is_dir() {
        bail!("model.init_from: {}: not a model directory", p.display());
    }
    Ok(p.to_path_buf())
}

/// `config.json` of an `init_from` directory, which must be a `kind` model.
pub(crate) fn init_config<C: serde::de::DeserializeOwned>(dir: &Path, kind: &str) -> Result<C> {
    let path = dir.join("config.json");
    let v: serde_json::Value = crate::weights::read_json(&path)?;
    let t = v.get("model_type").and_then(|t| t.as_str()).unwrap_or("");
    if t != kind {
        bail!("model.init_from: {}: model_type '{t}', expected {kind}", path.display());
    }
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// For the kinds that load a whole model directory (clipseg, biomedclipseg, cris): the config
/// with `model.dir` set to the `model.init_from` directory (checked to be a `kind` model), so the
/// architecture, encoders and decoder all come from it; unchanged without `init_from`.
pub(crate) fn init_as_model_dir(cfg: &TrainConfig) -> Result<std::borrow::Cow<'_, TrainConfig>> {
    let Some(p) = cfg.model.init_from.as_deref() else {
        return Ok(std::borrow::Cow::Borrowed(cfg));
    };
    let dir = init_dir(p)?;
    let kind = cfg.model.kind.as_str();
    let found = crate::weights::detect(&dir).map_err(|e| anyhow::anyhow!("model.init_from: {e:#}"))?;
    if found.as_str() != kind {
        bail!("model.init_from: {}: a {} model, expected {kind}", dir.display(), found.as_str());
    }
    let mut c = cfg.clone();
    c.model.dir = dir;
    Ok(std::borrow::Cow::Owned(c))
}

/// Sets `vars` from the weights of the `init_from` directory `dir`. Every tensor there must be
/// a variable of the same shape; variables it lacks keep their seeded init only when `fresh`
/// says they are new parts (e.g. a presence head); any other mismatch names the key.
pub(crate) fn load_init_weights(
    dir: &Path,
    vars: &[(String, candle_core::Var)],
    fresh: impl Fn(&str) -> bool,
) -> Result<()> {
    let path = crate::weights::find_weights(dir)?;
    let t = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("{}: cannot read weights: {e}", path.display()))?;
    for (k, x) in &t {
        match vars.iter().find(|(n, _)| n == k) {
            None => bail!("model.init_from: {}: tensor '{k}' is not in the model", path.display()),
            Some((_, v)) if v.dims() != x.dims() => bail!(
                "model.init_from: {}: '{k}' has shape {:?}, the model expects {:?}",
                path.display(),
                x.dims(),
                v.dims()
            ),
            _ => {}
        }
    }
    if let Some((n, _)) = vars.iter().find(|(n, _)| !t.contains_key(n) && !fresh(n)) {
        bail!("model.init_from: {}: no tensor '{n}'", path.display());
    }
    for (n, v) in vars {
        if let Some(x) = t.get(n) {
            v.set(&x.to_dtype(candle_core::DType::F32)?)?;
        }
    }
    Ok(())
}

/// Prints what opening the feature store did, when showing progress.
pub(crate) fn report_store(stats: Option<&StoreStats>, progress: bool) {
    if let (Some(s), true) = (stats, progress) {
        eprintln!("feature cache: {} reused, {} computed in {:.1}s", s.reused, s.computed, s.compute_seconds);
    }
}
