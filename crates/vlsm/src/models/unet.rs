//! UNet: the paper's text-free baseline, and the image path TextUNet conditions with FiLM.
//!
//! conv3x3-GroupNorm-ReLU blocks, max-pool down, nearest up, skip concatenation, a 1x1 head.
//! The paper's UNet is segmentation-models-pytorch's with an ImageNet ResNet-50 encoder; we
//! have no pretrained weights, so this one is the plain U-Net and trains from scratch.
//! Parameter names (`down.i.conv1.weight`, `up.i.norm2.bias`, `head.weight`, ...) are shared
//! with TextUNet, whose checkpoints add `film.*` and `text.*`.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::seg::{square_processor, ModelKind, SegModel};
use crate::preprocess::ImageProcessorConfig;
use vlsm_kernels::conv::ConvSame2d;
use vlsm_kernels::norm::{conv_norm_relu, GroupNormRelu2d};
use vlsm_kernels::unet_ops::{max_pool2, upsample_cat};

fn d_size() -> usize {
    160
}
fn d_channels() -> Vec<usize> {
    vec![16, 32, 64, 128, 256]
}
fn d_groups() -> usize {
    8
}
fn d_mean() -> [f32; 3] {
    [0.485, 0.456, 0.406]
}
fn d_std() -> [f32; 3] {
    [0.229, 0.224, 0.225]
}
fn d_threshold() -> f32 {
    0.5
}

/// `config.json` of a UNet directory (`model_type: "unet"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub model_type: String,
    /// Square input size; must be divisible by 2^(levels-1).
    #[serde(default = "d_size")]
    pub image_size: usize,
    /// Channels per level, shallow to deep.
    #[serde(default = "d_channels")]
    pub channels: Vec<usize>,
    /// GroupNorm groups (capped at the channel count).
    #[serde(default = "d_groups")]
    pub groups: usize,
    #[serde(default = "d_mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "d_std")]
    pub image_std: [f32; 3],
    #[serde(default = "d_threshold")]
    pub threshold: f32,
}

impl Default for UNetConfig {
    fn default() -> Self {
        serde_json::from_str(r#"{"model_type":"unet"}"#).expect("defaults")
    }
}

impl UNetConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_type != "unet" {
            return Err(format!("model_type is '{}', expected 'unet'", self.model_type));
        }
        validate_levels(self.image_size, &self.channels, self.groups)?;
        validate_threshold(self.threshold)
    }
}

/// A model's default threshold is a probability.
pub(crate) fn validate_threshold(t: f32) -> std::result::Result<(), String> {
    if !(0.0..=1.0).contains(&t) {
        return Err(format!("threshold {t} is not a probability (0 to 1)"));
    }
    Ok(())
}

/// Checks shared by UNet and TextUNet configs.
pub(crate) fn validate_levels(image_size: usize, channels: &[usize], groups: usize) -> std::result::Result<(), String> {
    let levels = channels.len();
    if levels < 2 {
        return Err("channels needs at least two levels".into());
    }
    if levels > 12 {
        return Err(format!("channels has {levels} levels (at most 12)"));
    }
    if channels.contains(&0) || groups == 0 {
        return Err("channels and groups must be at least 1".into());
    }
    let div = 1 << (levels - 1);
    if image_size == 0 || !image_size.is_multiple_of(div) {
        return Err(format!("image_size {image_size} is not a multiple of {div}"));
    }
    Ok(())
}

/// conv3x3 → GroupNorm → ReLU, twice (no conv bias: the norm's shift takes its place).
#[derive(Debug, Clone)]
struct Block {
    conv1: ConvSame2d,
    norm1: GroupNormRelu2d,
    conv2: ConvSame2d,
    norm2: GroupNormRelu2d,
}

impl Block {
    fn new(vb: VarBuilder, cin: usize, cout: usize, groups: usize) -> Result<Self> {
        // The largest group count <= groups that divides cout.
        let g = (1..=groups.min(cout)).rev().find(|g| cout.is_multiple_of(*g)).unwrap_or(1);
        Ok(Self {
            conv1: ConvSame2d::load_no_bias(vb.pp("conv1"), cin, cout, 3)?,
            norm1: GroupNormRelu2d::load(vb.pp("norm1"), g, cout, 1e-5)?,
            conv2: ConvSame2d::load_no_bias(vb.pp("conv2"), cout, cout, 3)?,
            norm2: GroupNormRelu2d::load(vb.pp("norm2"), g, cout, 1e-5)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = conv_norm_relu(&self.conv1, &self.norm1, x)?;
        conv_norm_relu(&self.conv2, &self.norm2, &x)
    }
}

/// The U-shaped network itself; `decode` takes a hook so TextUNet can FiLM its levels.
#[derive(Debug, Clone)]
pub(crate) struct UNetBody {
    down: Vec<Block>,
    up: Vec<Block>,
    head: ConvSame2d,
}

impl UNetBody {
    pub(crate) fn new(vb: &VarBuilder, ch: &[usize], groups: usize) -> Result<Self> {
        let n = ch.len();
        let down = (0..n)
            .map(|i| Block::new(vb.pp("down").pp(i), if i == 0 { 3 } else { ch[i - 1] }, ch[i], groups))
            .collect::<Result<_>>()?;
        // up.i produces level n-2-i from the level below and the skip.
        let up = (0..n - 1)
            .map(|i| {
                let lvl = n - 2 - i;
                Block::new(vb.pp("up").pp(i), ch[lvl + 1] + ch[lvl], ch[lvl], groups)
            })
            .collect::<Result<_>>()?;
        Ok(Self { down, up, head: ConvSame2d::load(vb.pp("head"), ch[0], 1, 1)? })
    }

    /// Feature maps of every level, shallow to deep.
    pub(crate) fn encode(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut feats = Vec::with_capacity(self.down.len());
        let mut h = x.clone();
        for (i, blk) in self.down.iter().enumerate() {
            if i > 0 {
                h = max_pool2(&h)?;
            }
            h = blk.forward(&h)?;
            feats.push(h.clone());
        }
        Ok(feats)
    }

    /// Decodes `feats` (batch `b` or 1, broadcast to `b`) → logits [b, H, W]. `hook(k, h)` runs
    /// on the bottleneck (k = 0) and after each up block (k = i + 1).
    pub(crate) fn decode(
        &self,
        feats: &[Tensor],
        b: usize,
        hook: impl Fn(usize, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let expand = |t: &Tensor| -> Result<Tensor> {
            if t.dim(0)? == b {
                return Ok(t.clone());
            }
            let (_, c, hh, ww) = t.dims4()?;
            t.broadcast_as((b, c, hh, ww))?.contiguous()
        };
        let n = feats.len();
        let mut h = hook(0, expand(&feats[n - 1])?)?;
        for (i, blk) in self.up.iter().enumerate() {
            let skip = expand(&feats[n - 2 - i])?;
            h = hook(i + 1, blk.forward(&upsample_cat(&h, &skip)?)?)?;
        }
        self.head.forward(&h)?.squeeze(1)
    }
}

#[derive(Debug, Clone)]
pub struct UNet {
    body: UNetBody,
    pub config: UNetConfig,
}

impl UNet {
    pub fn new(vb: VarBuilder, c: &UNetConfig) -> Result<Self> {
        c.validate().map_err(candle_core::Error::Msg)?;
        Ok(Self { body: UNetBody::new(&vb, &c.channels, c.groups)?, config: c.clone() })
    }

    /// Feature maps of every level for normalised images [B, 3, H, W].
    pub fn encode(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.body.encode(x)
    }

    /// Logits [n, H, W] from `encode`'s features (batch n, or 1 repeated n times).
    pub fn decode(&self, feats: &[Tensor], n: usize) -> Result<Tensor> {
        self.body.decode(feats, n, |_, h| Ok(h))
    }

    /// Logits [B, H, W] for normalised images [B, 3, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?, x.dim(0)?)
    }
}

/// The text-free UNet for `pipeline::Segmenter`: prompts are accepted and ignored, each giving
/// one placeholder condition row so that decoding yields one map per prompt.
impl SegModel for UNet {
    fn kind(&self) -> ModelKind {
        ModelKind::UNet
    }

    fn image_processor(&self) -> ImageProcessorConfig {
        let c = &self.config;
        square_processor(c.image_size, c.image_mean, c.image_std)
    }

    fn default_threshold(&self) -> f32 {
        self.config.threshold
    }

    fn uses_text(&self) -> bool {
        false
    }

    fn encode_images(&self, pixel_values: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        Ok(self.encode(pixel_values)?)
    }

    fn text_conditional(&self, prompts: &[String], dev: &Device) -> anyhow::Result<Tensor> {
        Ok(Tensor::zeros((prompts.len(), 1), DType::F32, dev)?)
    }

    fn decode(&self, features: &[Tensor], cond: &Tensor) -> anyhow::Result<Tensor> {
        Ok(UNet::decode(self, features, cond.dim(0)?)?)
    }
}
