//! Zero-shot image classification with CLIP (a Hugging Face `CLIPModel` directory,
//! `model_type: "clip"`) or BiomedCLIP (an open_clip directory): each label becomes a prompt
//! through a template, and the logits are `exp(logit_scale) · cos(image, prompt)` as in
//! `CLIPModel.forward`'s `logits_per_image` and open_clip's `CLIP.forward`. Images go through each
//! family's own classification transform: transformers' (PIL) `CLIPImageProcessor` from
//! `preprocessor_config.json` for CLIP, open_clip's evaluation transform ([`open_clip_processor`])
//! for BiomedCLIP.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::classify::{zero_shot_logits, ImageClassifier};
use crate::models::biomedclip::BiomedClip;
use crate::models::biomedclip::BiomedClipConfig;
use crate::models::clip::{ClipModel, ClipTextConfig, ClipVisionConfig};
use crate::preprocess::{Filter, ImageProcessorConfig};
use crate::tokenize::{ClipTokenizer, WordPieceTokenizer};
use crate::weights;

/// The template CLIP's paper uses for ImageNet-style labels.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

fn d_proj() -> usize {
    512
}

/// `CLIPConfig` (`config.json` of a `CLIPModel`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub model_type: Option<String>,
    #[serde(default)]
    pub text_config: ClipTextConfig,
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    #[serde(default = "d_proj")]
    pub projection_dim: usize,
}

enum Encoder {
    Clip(Box<ClipModel>, ClipTokenizer),
    Biomed(Box<BiomedClip>, WordPieceTokenizer),
}

/// A zero-shot classifier over fixed labels.
pub struct ZeroShotClassifier {
    encoder: Encoder,
    labels: Vec<String>,
    prompts: Vec<String>,
    /// Prompt features [K, E] (not normalised).
    text: Tensor,
    logit_scale: f64,
    processor: ImageProcessorConfig,
    device: Device,
}

/// The keys of `open_clip_config.json`'s `preprocess_cfg` that choose open_clip's evaluation
/// transform (mean and std come resolved in [`BiomedClipConfig`]).
#[derive(Debug, Default, Deserialize)]
struct OpenClipTransformKeys {
    interpolation: Option<String>,
    resize_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OpenClipTransformJson {
    #[serde(default)]
    preprocess_cfg: Option<OpenClipTransformKeys>,
}

/// open_clip's classification transform for an open_clip directory (`image_transform` with
/// `is_train=False`): the tower's image size, bicubic unless `interpolation` says "bilinear",
/// resize mode "shortest" (default) or "squash". This is not medvlsm's segmentation transform
/// (`BiomedClipConfig::image_processor`, a plain bilinear resize).
pub fn open_clip_processor(dir: &Path, c: &BiomedClipConfig) -> Result<ImageProcessorConfig> {
    let path = dir.join("open_clip_config.json");
    let j: OpenClipTransformJson = weights::read_json(&path)?;
    let keys = j.preprocess_cfg.unwrap_or_default();
    // open_clip: "random" interpolation is bicubic at evaluation.
    let resample = match keys.interpolation.as_deref().unwrap_or("bicubic") {
        "bicubic" | "random" => Filter::Bicubic,
        "bilinear" => Filter::Bilinear,
        other => bail!(
            "{}: preprocess_cfg.interpolation '{other}' (open_clip has bicubic, bilinear, random)",
            path.display()
        ),
    };
    let squash = match keys.resize_mode.as_deref().unwrap_or("shortest") {
        "shortest" => false,
        "squash" => true,
        other => {
            bail!("{}: preprocess_cfg.resize_mode '{other}' is not supported (shortest and squash are)", path.display())
        }
    };
    let size = c.vision.image_size as u32;
    Ok(ImageProcessorConfig::open_clip(size, resample, squash, c.mean, c.std))
}

/// `template` with `{}` replaced by `label`.
pub fn fill_template(template: &str, label: &str) -> Result<String> {
    if !template.contains("{}") {
        bail!("--template: '{template}' has no {{}} for the label");
    }
    Ok(template.replace("{}", label))
}

/// The `logit_scale` scalar of a weight file.
fn logit_scale(path: &Path, dev: &Device) -> Result<f64> {
    let vb = weights::var_builder(path, DType::F32, dev, None)?;
    let t = vb
        .get((), "logit_scale")
        .or_else(|_| vb.get(1, "logit_scale").and_then(|t| t.squeeze(0)))
        .map_err(|e| weights::load_error(path, e))?;
    Ok(t.to_scalar::<f32>()? as f64)
}

impl ZeroShotClassifier {
    /// Which family a directory holds: "biomedclip" (open_clip_config.json) or "clip".
    pub fn family(dir: &Path) -> Result<&'static str> {
        if dir.join("open_clip_config.json").is_file() {
            return Ok("biomedclip");
        }
        let cfg = dir.join("config.json");
        if !cfg.is_file() {
            bail!(
                "{}: neither a CLIP (config.json) nor an open_clip (open_clip_config.json) model directory",
                dir.display()
            );
        }
        let c: ClipConfig = weights::read_json(&cfg)?;
        match c.model_type.as_deref() {
            Some("clip") => Ok("clip"),
            Some(t) => bail!(
                "{}: model_type '{t}' is not a CLIP model (expected \"clip\") for zero-shot labels",
                cfg.display()
            ),
            None => bail!("{}: no model_type", cfg.display()),
        }
    }

    /// Loads a CLIP or BiomedCLIP directory and encodes one prompt per label.
    pub fn load(dir: &Path, labels: &[String], template: &str, dev: &Device) -> Result<Self> {
        if labels.is_empty() {
            bail!("--labels: no labels");
        }
        if let Some(l) = labels.iter().find(|l| l.trim().is_empty()) {
            bail!("--labels: empty label {l:?}");
        }
        let prompts: Vec<String> = labels.iter().map(|l| fill_template(template, l)).collect::<Result<_>>()?;
        let (encoder, processor, scale) = match Self::family(dir)? {
            "biomedclip" => {
                let c = crate::loader::biomedclip_config(dir)?;
                let m = crate::loader::biomedclip(dir, DType::F32, dev)?;
                let tok = crate::loader::wordpiece_tokenizer(dir, c.context_length)?;
                let s = logit_scale(&crate::loader::biomedclip_weights_file(dir)?, dev)?;
                let processor = open_clip_processor(dir, &c)?;
                (Encoder::Biomed(Box::new(m), tok), processor, s)
            }
            _ => {
                let cpath = dir.join("config.json");
                let c: ClipConfig = weights::read_json(&cpath)?;
                let w = weights::find_weights(dir)?;
                let vb = weights::var_builder(&w, DType::F32, dev, None)?;
                let m = ClipModel::new(vb, &c.text_config, &c.vision_config, c.projection_dim)
                    .map_err(|e| weights::load_error(&w, e))?;
                let tok = crate::loader::clip_tokenizer_or_bundled(dir)?;
                let pp = dir.join("preprocessor_config.json");
                let processor = if pp.is_file() {
                    ImageProcessorConfig::from_file(&pp)?
                } else {
                    ImageProcessorConfig::clip_default()
                };
                let s = logit_scale(&w, dev)?;
                (Encoder::Clip(Box::new(m), tok), processor, s)
            }
        };
        let mut zs = Self {
            encoder,
            labels: labels.to_vec(),
            prompts,
            text: Tensor::zeros((1, 1), DType::F32, dev)?,
            logit_scale: scale,
            processor,
            device: dev.clone(),
        };
        zs.text = zs.text_features(&zs.prompts.clone())?;
        Ok(zs)
    }

    /// The prompt each label became.
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    pub fn family_name(&self) -> &'static str {
        match self.encoder {
            Encoder::Clip(..) => "clip",
            Encoder::Biomed(..) => "biomedclip",
        }
    }

    /// `exp(logit_scale)`'s argument, as stored in the weights.
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale
    }

    /// Unnormalised text features [K, E] (`get_text_features` / `encode_text`).
    pub fn text_features(&self, prompts: &[String]) -> Result<Tensor> {
        Ok(match &self.encoder {
            Encoder::Clip(m, tok) => {
                // One prompt at a time, unpadded: padding after the end token cannot change the
                // pooled feature of the causal text model.
                let rows = prompts
                    .iter()
                    .map(|p| {
                        let ids = tok.encode(p)?;
                        let n = ids.len();
                        Ok(m.text_features(&Tensor::from_vec(ids, (1, n), &self.device)?)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)?
            }
            Encoder::Biomed(m, tok) => {
                let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
                let (ids, mask) = m.tokenize(tok, &refs, &self.device)?;
                m.text_features(&ids, &mask)?
            }
        })
    }

    /// Unnormalised image features [B, E].
    pub fn image_features(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        match &self.encoder {
            Encoder::Clip(m, _) => m.image_features(pixel_values),
            Encoder::Biomed(m, _) => m.image_features(pixel_values),
        }
    }
}

impl ImageClassifier for ZeroShotClassifier {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn processor(&self) -> &ImageProcessorConfig {
        &self.processor
    }

    fn logits(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        zero_shot_logits(&self.image_features(pixel_values)?, &self.text, self.logit_scale)
    }
}
