//! preprocess → encode image (reusable across prompts) → condition → decode → postprocess.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use image::{GrayImage, RgbImage};

use crate::checkpoint::{self, ModelKind};
use crate::models::clipseg::{ClipSeg, ClipSegConfig};
use crate::models::biomedclip::{BiomedClip, BiomedClipConfig};
use crate::models::biomedclipseg::BiomedClipSeg;
use crate::models::cris::Cris;
use crate::models::interp;
use crate::models::textunet::{TextUNet, TextUNetConfig};
use crate::models::unet::{UNet, UNetConfig};
use crate::preprocess::ImageProcessorConfig;
use crate::tokenize::{ClipTokenizer, WordPieceTokenizer};

pub use crate::default_model::default_model_dir;

/// Encoded image: what the prompt-dependent half of the model reads, for one image.
#[derive(Clone)]
pub struct ImageFeatures {
    pub activations: Vec<Tensor>,
}

/// The networks a `Segmenter` can drive.
#[allow(clippy::large_enum_variant)] // one per loaded model; boxing buys nothing
pub enum Net {
    ClipSeg(ClipSeg),
    TextUNet(TextUNet),
    /// The text-free baseline: prompts are accepted and ignored.
    UNet(UNet),
    /// BiomedCLIPSeg and BiomedCLIPSeg-D (the decoder's origin is a weights matter).
    BiomedClipSeg(BiomedClipSeg, WordPieceTokenizer),
    /// CRIS: the cached image features are the backbone's C3-C5; the text-gated neck runs per prompt.
    Cris(Cris),
}

/// A loaded model directory, ready to segment.
pub struct Segmenter {
    pub net: Net,
    /// The CLIP BPE tokenizer (None for BiomedCLIPSeg, whose WordPiece tokenizer is in `net`).
    pub tokenizer: Option<ClipTokenizer>,
    pub processor: ImageProcessorConfig,
    pub dir: PathBuf,
    pub device: Device,
    threshold: f32,
}

/// The CLIP BPE tokenizer of a model directory: `tokenizer.json`, `vocab.json` + `merges.txt`,
/// or OpenAI's `bpe_simple_vocab_16e6.txt.gz`.
pub fn load_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    let gz = dir.join(crate::tokenize::BPE_FILE);
    if !dir.join("tokenizer.json").is_file() && !dir.join("vocab.json").is_file() && gz.is_file() {
        return Ok(ClipTokenizer::from_bpe_gz(&gz)?);
    }
    Ok(ClipTokenizer::from_dir(dir)?)
}

impl Segmenter {
    /// Load a model directory: a Hugging Face CLIPSeg (`config.json`, weights,
    /// `preprocessor_config.json`, tokenizer files) or a TextUNet written by `vlsm train`.
    pub fn load(dir: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let kind = checkpoint::detect(dir)?;
        let cfg_path = dir.join("config.json");
        let pp = dir.join("preprocessor_config.json");
        match kind {
            ModelKind::BiomedClipSeg => {
                let m = BiomedClipSeg::load(dir, None, DType::F32, &device)?;
                let enc = BiomedClipConfig::from_dir(dir)?;
                let tok = BiomedClip::tokenizer(dir, enc.context_length)?;
                let processor = enc.image_processor();
                return Ok(Self {
                    net: Net::BiomedClipSeg(m, tok),
                    tokenizer: None,
                    processor,
                    dir: dir.to_path_buf(),
                    device,
                    threshold: 0.5,
                });
            }
            ModelKind::Cris => {
                let m = Cris::load(dir, DType::F32, &device)?;
                let threshold = m.config.threshold;
                let processor = cris_processor(m.config.img_size as u32);
                return Ok(Self {
                    net: Net::Cris(m),
                    tokenizer: Some(load_tokenizer(dir).or_else(|_| {
                        crate::tokenize::find_bpe().and_then(|p| Ok(ClipTokenizer::from_bpe_gz(&p)?))
                    })?),
                    processor,
                    dir: dir.to_path_buf(),
                    device,
                    threshold,
                });
            }
            ModelKind::UNet => {
                let config: UNetConfig = checkpoint::read_json(&cfg_path)?;
                config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
                let weights = checkpoint::find_weights(dir)?;
                let vb = checkpoint::var_builder(&weights, DType::F32, &device, None)?;
                let m = UNet::new(vb, &config).map_err(|e| checkpoint::load_error(&weights, e))?;
                let processor = if pp.is_file() {
                    ImageProcessorConfig::from_file(&pp)?
                } else {
                    unet_processor(&config)
                };
                let threshold = config.threshold;
                return Ok(Self { net: Net::UNet(m), tokenizer: None, processor, dir: dir.to_path_buf(), device, threshold });
            }
            _ => {}
        }
        let weights = checkpoint::find_weights(dir)?;
        let vb = checkpoint::var_builder(&weights, DType::F32, &device, None)?;
        let (net, default_processor, threshold) = match kind {
            ModelKind::ClipSeg => {
                let config: ClipSegConfig = checkpoint::read_json(&cfg_path)?;
                config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
                let m = ClipSeg::new(vb, &config).map_err(|e| checkpoint::load_error(&weights, e))?;
                (Net::ClipSeg(m), ImageProcessorConfig::clipseg(352), 0.5)
            }
            ModelKind::TextUNet => {
                let config: TextUNetConfig = checkpoint::read_json(&cfg_path)?;
                config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
                let m = TextUNet::new(vb, &config).map_err(|e| checkpoint::load_error(&weights, e))?;
                let t = config.threshold;
                let pp = textunet_processor(&config);
                (Net::TextUNet(m), pp, t)
            }
            ModelKind::BiomedClipSeg | ModelKind::Cris | ModelKind::UNet => unreachable!("handled above"),
        };
        let tokenizer = load_tokenizer(dir)?;
        let processor = if pp.is_file() { ImageProcessorConfig::from_file(&pp)? } else { default_processor };
        Ok(Self { net, tokenizer: Some(tokenizer), processor, dir: dir.to_path_buf(), device, threshold })
    }

    /// The probability threshold the model was trained or published with.
    pub fn default_threshold(&self) -> f32 {
        self.threshold
    }

    /// A short name of the architecture, for reports.
    pub fn kind_name(&self) -> &'static str {
        match self.net {
            Net::ClipSeg(_) => "clipseg",
            Net::TextUNet(_) => "textunet",
            Net::UNet(_) => "unet",
            Net::BiomedClipSeg(..) => "biomedclipseg",
            Net::Cris(_) => "cris",
        }
    }

    /// Whether prompts change the output (false for the text-free UNet, which ignores them).
    pub fn uses_text(&self) -> bool {
        !matches!(self.net, Net::UNet(_))
    }

    /// Pixel values [B, 3, H, W] as the reference image processor makes them.
    pub fn pixel_values(&self, images: &[&RgbImage]) -> Result<Tensor> {
        if images.is_empty() {
            bail!("no images");
        }
        let t: Vec<Tensor> =
            images.iter().map(|im| self.processor.preprocess(im)).collect::<std::result::Result<_, _>>()?;
        Ok(Tensor::cat(&t, 0)?)
    }

    /// Prompt-independent features for a batch of pixel values, split per image.
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Vec<ImageFeatures>> {
        let acts = match &self.net {
            Net::ClipSeg(m) => m.image_activations(pixel_values)?,
            Net::TextUNet(m) => m.encode(pixel_values)?,
            Net::UNet(m) => m.encode(pixel_values)?,
            Net::BiomedClipSeg(m, _) => m.image_activations(pixel_values)?,
            Net::Cris(m) => {
                let (c3, c4, c5) = m.backbone.encode_image(pixel_values)?;
                vec![c3, c4, c5]
            }
        };
        let b = pixel_values.dim(0)?;
        (0..b)
            .map(|i| {
                Ok(ImageFeatures {
                    activations: acts.iter().map(|a| a.narrow(0, i, 1)).collect::<candle_core::Result<_>>()?,
                })
            })
            .collect()
    }

    /// Conditional embeddings [N, D] for N prompts. Each prompt runs unpadded (for CLIP,
    /// padding after the end token cannot change the pooled feature).
    pub fn text_conditional(&self, prompts: &[String]) -> Result<Tensor> {
        if let Net::UNet(_) = &self.net {
            // No text path: one placeholder row per prompt, so decode yields one map each.
            return Ok(Tensor::zeros((prompts.len(), 1), DType::F32, &self.device)?);
        }
        if let Net::BiomedClipSeg(m, tok) = &self.net {
            let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
            let (ids, mask) = m.biomedclip.tokenize(tok, &refs, &self.device)?;
            return Ok(m.text_conditional(&ids, &mask)?);
        }
        let tokenizer = self.tokenizer.as_ref().expect("CLIP models carry a BPE tokenizer");
        let mut ids_all = Vec::with_capacity(prompts.len());
        for p in prompts {
            ids_all.push(tokenizer.encode(p)?);
        }
        match &self.net {
            Net::Cris(m) => {
                // CRIS reads word features too, so the "conditional" is the padded ids themselves.
                let l = m.config.word_len;
                let rows: Vec<Vec<u32>> =
                    ids_all.iter().map(|v| crate::models::cris::word_ids(v, l, tokenizer.eot_id())).collect();
                let n = rows.len();
                Ok(Tensor::from_vec(rows.concat(), (n, l), &self.device)?)
            }
            Net::BiomedClipSeg(..) | Net::UNet(_) => unreachable!("handled above"),
            Net::ClipSeg(m) => {
                let mut rows = Vec::with_capacity(prompts.len());
                for ids in ids_all {
                    let n = ids.len();
                    let ids = Tensor::from_vec(ids, (1, n), &self.device)?;
                    rows.push(m.text_conditional(&ids)?);
                }
                Ok(Tensor::cat(&rows, 0)?)
            }
            Net::TextUNet(m) => Ok(m.text.forward(&ids_all)?),
        }
    }

    /// Conditional embedding [1, D] from an example image and its mask, with the CLIPSeg paper's
    /// visual prompt engineering (crop to the object, background darkened and blurred).
    pub fn image_conditional(&self, image: &RgbImage, mask: &GrayImage) -> Result<Tensor> {
        match &self.net {
            Net::ClipSeg(m) => {
                let engineered = visual_prompt(image, mask)?;
                let pv = self.pixel_values(&[&engineered])?;
                Ok(m.image_conditional(&pv)?)
            }
            Net::UNet(_) => bail!("{}: this model takes no prompts (a text-free UNet)", self.dir.display()),
            _ => bail!("{}: this model takes text prompts only", self.dir.display()),
        }
    }

    /// Logits [N, h, w] at model resolution for one image and N conditions.
    pub fn decode(&self, features: &ImageFeatures, cond: &Tensor) -> Result<Tensor> {
        Ok(match &self.net {
            Net::ClipSeg(m) => m.decoder.forward(&features.activations, cond)?,
            Net::TextUNet(m) => m.decode(&features.activations, cond)?,
            Net::UNet(m) => m.decode(&features.activations, cond.dim(0)?)?,
            Net::BiomedClipSeg(m, _) => m.decoder.forward(&features.activations, cond)?,
            Net::Cris(m) => cris_decode(m, &features.activations, cond)?,
        })
    }
}

/// CRIS from cached backbone features: text encoder, text-gated FPN, decoder and projector for
/// each prompt (ids [N, L]) → logits [N, S, S].
fn cris_decode(m: &Cris, c: &[Tensor], ids: &Tensor) -> candle_core::Result<Tensor> {
    let n = ids.dim(0)?;
    let expand = |t: &Tensor| -> candle_core::Result<Tensor> {
        let (_, ch, h, w) = t.dims4()?;
        t.broadcast_as((n, ch, h, w))?.contiguous()
    };
    let (c3, c4, c5) = (expand(&c[0])?, expand(&c[1])?, expand(&c[2])?);
    let (words, state) = m.backbone.encode_text(ids)?;
    let fq = m.neck.forward(&c3, &c4, &c5, &state)?;
    let dec = m.decoder.forward(&fq, &words, &Cris::pad_mask(ids)?)?;
    let pred = m.proj.forward(&dec, &state)?;
    let (_, _, ph, _) = pred.dims4()?;
    let s = ph * 4;
    crate::models::cris::bicubic_align_corners(&pred, s)?.squeeze(1)
}

/// CRIS preprocessing as medvlsm: resize to the square input, CLIP mean/std.
#[allow(clippy::excessive_precision)] // the constants as CLIP publishes them
pub fn cris_processor(size: u32) -> ImageProcessorConfig {
    let mut p = ImageProcessorConfig::clipseg(size);
    p.image_mean = [0.48145466, 0.4578275, 0.40821073];
    p.image_std = [0.26862954, 0.26130258, 0.27577711];
    p
}

/// TextUNet preprocessing: PIL bilinear resize to the square input size, then normalise.
pub fn textunet_processor(c: &TextUNetConfig) -> ImageProcessorConfig {
    let mut p = ImageProcessorConfig::clipseg(c.image_size as u32);
    p.image_mean = c.image_mean;
    p.image_std = c.image_std;
    p
}

/// UNet preprocessing: PIL bilinear resize to the square input size, then normalise.
pub fn unet_processor(c: &UNetConfig) -> ImageProcessorConfig {
    let mut p = ImageProcessorConfig::clipseg(c.image_size as u32);
    p.image_mean = c.image_mean;
    p.image_std = c.image_std;
    p
}

/// Blend text and image conditions: `(1 - mix) · text + mix · image`.
pub fn mix_conditionals(text: &Tensor, image: &Tensor, mix: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&mix) {
        bail!("--mix must be in 0..1, got {mix}");
    }
    let image = image.broadcast_as(text.shape())?;
    Ok(((text * (1.0 - mix))? + (image * mix)?)?)
}

/// Logits [h, w] → probabilities resized to `(height, width)` (bilinear, align_corners=False,
/// as `F.interpolate`) → row-major f32.
pub fn probabilities_at(logits: &Tensor, width: u32, height: u32) -> Result<Vec<f32>> {
    let (h, w) = logits.dims2()?;
    let x = logits.reshape((1, 1, h, w))?;
    let y = if (h, w) == (height as usize, width as usize) {
        x
    } else {
        interp::bilinear(&x, height as usize, width as usize)?
    };
    let p = candle_nn::ops::sigmoid(&y)?;
    Ok(p.flatten_all()?.to_vec1::<f32>()?)
}

/// 0/255 mask from probabilities.
pub fn threshold_mask(probs: &[f32], width: u32, height: u32, threshold: f32) -> Result<GrayImage> {
    let data: Vec<u8> = probs.iter().map(|&p| if p > threshold { 255 } else { 0 }).collect();
    GrayImage::from_raw(width, height, data).context("mask size does not match its probabilities")
}

/// The image with the mask laid over it in translucent green and its border in solid green.
pub fn overlay(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    let inside = |x: i64, y: i64| -> bool {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && mask.get_pixel(x as u32, y as u32)[0] > 0
    };
    for y in 0..h {
        for x in 0..w {
            if !inside(x as i64, y as i64) {
                continue;
            }
            let (xi, yi) = (x as i64, y as i64);
            let edge = !(inside(xi - 1, yi) && inside(xi + 1, yi) && inside(xi, yi - 1) && inside(xi, yi + 1));
            let p = out.get_pixel_mut(x, y);
            if edge {
                *p = image::Rgb([0, 255, 0]);
            } else {
                p[0] = (p[0] as f32 * 0.6) as u8;
                p[1] = (p[1] as f32 * 0.6 + 255.0 * 0.4) as u8;
                p[2] = (p[2] as f32 * 0.6) as u8;
            }
        }
    }
    out
}

/// Visual prompt engineering of the CLIPSeg paper, as the fixture script defines it.
pub fn visual_prompt(image: &RgbImage, mask: &GrayImage) -> Result<RgbImage> {
    if image.dimensions() != mask.dimensions() {
        bail!("prompt mask is {:?} but its image is {:?}", mask.dimensions(), image.dimensions());
    }
    Ok(crate::preprocess::visual_prompt(image, mask)?)
}
