//! preprocess → encode image (reusable across prompts) → condition → decode → postprocess.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use image::{GrayImage, RgbImage};

use crate::models::interp;
use crate::models::seg::{ModelKind, SegModel};
use crate::preprocess::ImageProcessorConfig;

pub use crate::default_model::default_model_dir;

/// Encoded image: what the prompt-dependent half of the model reads, for one image.
#[derive(Clone)]
pub struct ImageFeatures {
    pub activations: Vec<Tensor>,
}

/// A loaded model directory, ready to segment: a [`SegModel`] and its image processor. Every
/// method forwards to the model; what is the same for every kind (preprocessing, splitting a
/// batch's features per image, the visual prompt) is done here.
pub struct Segmenter {
    model: Box<dyn SegModel>,
    pub processor: ImageProcessorConfig,
    pub dir: PathBuf,
    pub device: Device,
}

impl Segmenter {
    /// Load a model directory of any [`ModelKind`] (see `loader::load`).
    pub fn load(dir: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let (model, processor) = crate::loader::load(dir, &device)?;
        Ok(Self { model, processor, dir: dir.to_path_buf(), device })
    }

    /// The model behind this segmenter.
    pub fn model(&self) -> &dyn SegModel {
        self.model.as_ref()
    }

    pub fn kind(&self) -> ModelKind {
        self.model.kind()
    }

    /// The probability threshold the model was trained or published with.
    pub fn default_threshold(&self) -> f32 {
        self.model.default_threshold()
    }

    /// A short name of the architecture, for reports.
    pub fn kind_name(&self) -> &'static str {
        self.model.kind().as_str()
    }

    /// Whether prompts change the output (false for the text-free UNet, which ignores them).
    pub fn uses_text(&self) -> bool {
        self.model.uses_text()
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
        let acts = self.model.encode_images(pixel_values)?;
        let b = pixel_values.dim(0)?;
        (0..b)
            .map(|i| {
                Ok(ImageFeatures {
                    activations: acts.iter().map(|a| a.narrow(0, i, 1)).collect::<candle_core::Result<_>>()?,
                })
            })
            .collect()
    }

    /// Conditions for N prompts, one row each (CLIP-like models: embeddings [N, D]; each prompt
    /// runs unpadded, since padding after the end token cannot change the pooled feature).
    pub fn text_conditional(&self, prompts: &[String]) -> Result<Tensor> {
        self.model.text_conditional(prompts, &self.device)
    }

    /// Conditional embedding [1, D] from an example image and its mask, with the CLIPSeg paper's
    /// visual prompt engineering (crop to the object, background darkened and blurred).
    pub fn image_conditional(&self, image: &RgbImage, mask: &GrayImage) -> Result<Tensor> {
        if !self.model.takes_image_prompts() {
            if !self.model.uses_text() {
                bail!("{}: this model takes no prompts (a text-free UNet)", self.dir.display());
            }
            bail!("{}: this model takes text prompts only", self.dir.display());
        }
        let engineered = visual_prompt(image, mask)?;
        let pv = self.pixel_values(&[&engineered])?;
        self.model.image_conditional(&pv)
    }

    /// Logits [N, h, w] at model resolution for one image and N conditions.
    pub fn decode(&self, features: &ImageFeatures, cond: &Tensor) -> Result<Tensor> {
        self.model.decode(&features.activations, cond)
    }

    /// [`Self::text_conditional`] for any number of prompts, [`TEXT_BATCH`] at a time (a text
    /// encoder's activations grow with the prompts it runs at once).
    pub fn text_conditionals(&self, prompts: &[String]) -> Result<Tensor> {
        let parts: Vec<Tensor> = prompts.chunks(TEXT_BATCH).map(|c| self.text_conditional(c)).collect::<Result<_>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Logits [h, w] and [`Presence`] for each row of `cond`, in order, decoded
    /// [`PROMPT_BATCH`] at a time (the decoder's activations grow with the prompts it runs at
    /// once) as [`decode_with_presence`](Self::decode_with_presence) does under the mask
    /// `threshold`: `each(k, logits_k, presence_k)`.
    pub fn decode_each(
        &self,
        features: &ImageFeatures,
        cond: &Tensor,
        threshold: f32,
        mut each: impl FnMut(usize, &Tensor, Presence) -> Result<()>,
    ) -> Result<()> {
        let n = cond.dim(0)?;
        for start in (0..n).step_by(PROMPT_BATCH) {
            let len = PROMPT_BATCH.min(n - start);
            let (logits, presence) = self.decode_with_presence(features, &cond.narrow(0, start, len)?, threshold)?;
            for (k, p) in presence.into_iter().enumerate() {
                each(start + k, &logits.get(k)?, p)?;
            }
        }
        Ok(())
    }

    /// Whether the model has a trained presence head (else presence comes from the map).
    pub fn has_presence_head(&self) -> bool {
        self.model.has_presence_head()
    }

    /// [`decode`](Self::decode), and for each condition whether its target is in the image (see
    /// [`Presence`]); `threshold` is the mask threshold in use.
    pub fn decode_with_presence(
        &self,
        features: &ImageFeatures,
        cond: &Tensor,
        threshold: f32,
    ) -> Result<(Tensor, Vec<Presence>)> {
        let (logits, head) = self.model.decode_with_presence(&features.activations, cond)?;
        let presence = match head {
            Some(h) => {
                let t = self.model.presence_threshold();
                let p = candle_nn::ops::sigmoid(&h)?.to_vec1::<f32>()?;
                p.into_iter().map(|p| Presence { presence: p, present: p >= t }).collect()
            }
            None => {
                let n = logits.dim(0)?;
                let max = candle_nn::ops::sigmoid(&logits.reshape((n, ()))?.max(1)?)?.to_vec1::<f32>()?;
                max.into_iter().map(|p| Presence { presence: p, present: p > threshold }).collect()
            }
        };
        Ok((logits, presence))
    }

    /// Logits [N, h, w] and presence for one image and N text prompts under `tta`: with
    /// [`Tta::Flip`], the mean of the logits over the four flips, each image flipped, encoded,
    /// decoded with its prompts' position words flipped too (as training's flips rewrite them)
    /// and flipped back. Presence: the mean head probability, or without a head the rule of
    /// [`decode_with_presence`](Self::decode_with_presence) on the mean logits.
    pub fn segment_image(
        &self,
        image: &RgbImage,
        prompts: &[String],
        threshold: f32,
        tta: Tta,
    ) -> Result<(Tensor, Vec<Presence>)> {
        use crate::train::tasks::common::Flip;
        let flips: &[Flip] = match tta {
            Tta::None => &[Flip { h: false, v: false }],
            Tta::Flip => &[
                Flip { h: false, v: false },
                Flip { h: true, v: false },
                Flip { h: false, v: true },
                Flip { h: true, v: true },
            ],
        };
        let mut sum: Option<Tensor> = None;
        let mut head: Vec<f32> = vec![0.0; prompts.len()];
        for &f in flips {
            let mut img = image.clone();
            if f.h {
                image::imageops::flip_horizontal_in_place(&mut img);
            }
            if f.v {
                image::imageops::flip_vertical_in_place(&mut img);
            }
            let feats = self.encode_images(&self.pixel_values(&[&img])?)?;
            let texts: Vec<String> = prompts.iter().map(|p| f.prompt(p)).collect();
            let cond = self.text_conditional(&texts)?;
            let (mut l, p) = self.decode_with_presence(&feats[0], &cond, threshold)?;
            let (_, hh, ww) = l.dims3()?;
            if f.h {
                let idx = Tensor::from_vec((0..ww as u32).rev().collect::<Vec<_>>(), ww, l.device())?;
                l = l.index_select(&idx, 2)?;
            }
            if f.v {
                let idx = Tensor::from_vec((0..hh as u32).rev().collect::<Vec<_>>(), hh, l.device())?;
                l = l.index_select(&idx, 1)?;
            }
            for (a, q) in head.iter_mut().zip(&p) {
                *a += q.presence;
            }
            sum = Some(match sum {
                None => l,
                Some(s) => (s + l)?,
            });
        }
        let n = flips.len() as f64;
        let logits = (sum.expect("at least one flip") / n)?;
        let presence = if self.has_presence_head() {
            let t = self.model.presence_threshold();
            head.iter().map(|&p| p / n as f32).map(|p| Presence { presence: p, present: p >= t }).collect()
        } else {
            let k = logits.dim(0)?;
            let max = candle_nn::ops::sigmoid(&logits.reshape((k, ()))?.max(1)?)?.to_vec1::<f32>()?;
            max.into_iter().map(|p| Presence { presence: p, present: p > threshold }).collect()
        };
        Ok((logits, presence))
    }
}

/// Test-time augmentation (`--tta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tta {
    #[default]
    None,
    /// The mean of the logits under the identity, a left-right, a top-bottom and both flips
    /// (each flipped back), the prompt's position words rewritten with each flip.
    Flip,
}

impl std::str::FromStr for Tta {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Tta::None),
            "flip" => Ok(Tta::Flip),
            _ => Err(format!("--tta: unknown '{s}' (expected none or flip)")),
        }
    }
}

/// Mask post-processing (`--post`), applied at the original size after thresholding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PostProcess {
    /// Keep only the largest 8-connected component.
    pub largest_component: bool,
    /// Fill holes: background not 4-connected to the border becomes foreground.
    pub fill_holes: bool,
}

impl std::str::FromStr for PostProcess {
    type Err = String;
    /// A comma-separated list of `lcc` and `fill` (or `none`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut p = PostProcess::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "lcc" => p.largest_component = true,
                "fill" => p.fill_holes = true,
                "none" | "" => {}
                _ => return Err(format!("--post: unknown '{part}' (expected a list of lcc, fill, or none)")),
            }
        }
        Ok(p)
    }
}

impl PostProcess {
    pub fn is_none(&self) -> bool {
        *self == PostProcess::default()
    }

    /// Applies the steps to a 0/255 mask (holes first, then the largest component).
    pub fn apply(&self, mask: &mut GrayImage) {
        if self.fill_holes {
            fill_holes(mask);
        }
        if self.largest_component {
            keep_largest_component(mask);
        }
    }
}

/// Labels of the foreground (or background) pixels' components, by flood fill.
fn components(mask: &GrayImage, fg: bool, eight: bool) -> (Vec<u32>, Vec<usize>) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let raw = mask.as_raw();
    let is = |i: usize| (raw[i] > 0) == fg;
    let mut label = vec![0u32; w * h];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !is(start) || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        sizes.push(0);
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            sizes[id as usize] += 1;
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    if (dx == 0 && dy == 0) || (!eight && dx != 0 && dy != 0) {
                        continue;
                    }
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if is(j) && label[j] == 0 {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (label, sizes)
}

/// Keeps the largest 8-connected foreground component of a 0/255 mask (the first on a tie).
pub fn keep_largest_component(mask: &mut GrayImage) {
    let (label, sizes) = components(mask, true, true);
    let Some(best) = (1..sizes.len()).max_by_key(|&i| (sizes[i], std::cmp::Reverse(i))) else { return };
    for (v, &l) in mask.iter_mut().zip(&label) {
        if l != best as u32 {
            *v = 0;
        }
    }
}

/// Fills the holes of a 0/255 mask: background components (4-connected) that do not touch the
/// border become foreground.
pub fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let (label, sizes) = components(mask, false, false);
    let mut outside = vec![false; sizes.len()];
    for x in 0..w {
        outside[label[x] as usize] = true;
        outside[label[(h - 1) * w + x] as usize] = true;
    }
    for y in 0..h {
        outside[label[y * w] as usize] = true;
        outside[label[y * w + w - 1] as usize] = true;
    }
    for (v, &l) in mask.iter_mut().zip(&label) {
        if l != 0 && !outside[l as usize] {
            *v = 255;
        }
    }
}

/// Whether a prompt's target is in the image. With a presence head (`TextUNet` trained with
/// `model.presence`): `presence` is the head's probability and `present` is `presence >=` the
/// model's `presence_threshold`. Without one: `presence` is the largest pixel probability of the
/// map (at model resolution) and `present` is `presence >` the mask threshold, i.e. whether the
/// mask would have any pixel. An absent target's mask is empty.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Presence {
    pub presence: f32,
    pub present: bool,
}

/// Prompts encoded at once by the text encoder.
pub const TEXT_BATCH: usize = 64;
/// Prompts decoded at once for one image.
pub const PROMPT_BATCH: usize = 16;

/// What `vlsm segment` makes of one prompt's logits [h, w] for a `width`×`height` image:
/// probabilities at the image size ([`probabilities_at`]) and the 0/255 mask above `threshold`,
/// empty when the target is not [`present`](Presence) (before any `--post`).
pub fn probabilities_and_mask(
    logits: &Tensor,
    width: u32,
    height: u32,
    threshold: f32,
    present: bool,
) -> Result<(Vec<f32>, GrayImage)> {
    let probs = probabilities_at(logits, width, height)?;
    let mut mask = threshold_mask(&probs, width, height, threshold)?;
    if !present {
        mask.fill(0);
    }
    Ok((probs, mask))
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
