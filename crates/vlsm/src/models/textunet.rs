//! TextUNet: the project's own compact text-prompted segmenter (the built-in model).
//!
//! A U-Net image path (conv-GroupNorm-ReLU blocks, max-pool down, nearest up, skip
//! concatenation) conditioned by FiLM (Perez et al. 2018), as CLIPSeg conditions its decoder, on
//! a small transformer text encoder over CLIP BPE tokens. Trained from scratch, so the token
//! table holds only the tokens seen in training (`vocab`); other tokens share one UNK row.

use std::collections::HashMap;

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::unet::{validate_levels, UNetBody};
use serde::{Deserialize, Serialize};

use super::clip::EncoderLayer;
use super::seg::{square_processor, ModelKind, SegModel, WithTokenizer};
use super::HiddenAct;
use crate::preprocess::ImageProcessorConfig;
use crate::tokenize::ClipTokenizer;

fn d_size() -> usize {
    160
}
fn d_channels() -> Vec<usize> {
    vec![16, 32, 64, 128, 256]
}
fn d_groups() -> usize {
    8
}
fn d_text_dim() -> usize {
    128
}
fn d_text_layers() -> usize {
    2
}
fn d_text_heads() -> usize {
    4
}
fn d_max_tokens() -> usize {
    77
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
fn is_false(b: &bool) -> bool {
    !*b
}

/// `config.json` of a TextUNet directory (`model_type: "textunet"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextUNetConfig {
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
    #[serde(default = "d_text_dim")]
    pub text_dim: usize,
    #[serde(default = "d_text_layers")]
    pub text_layers: usize,
    #[serde(default = "d_text_heads")]
    pub text_heads: usize,
    #[serde(default = "d_max_tokens")]
    pub max_tokens: usize,
    /// CLIP BPE ids with their own embedding row; row 0 is UNK.
    #[serde(default)]
    pub vocab: Vec<u32>,
    #[serde(default = "d_mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "d_std")]
    pub image_std: [f32; 3],
    #[serde(default = "d_threshold")]
    pub threshold: f32,
    /// A presence head (`presence.weight`, `presence.bias`): a logit that the prompt's target is
    /// in the image, from the text-conditioned bottleneck (mean and max pooled). Models without
    /// one (generation 1) take presence from the probability map.
    #[serde(default, skip_serializing_if = "is_false")]
    pub presence: bool,
    /// `present` is `presence >= presence_threshold`.
    #[serde(default = "d_threshold")]
    pub presence_threshold: f32,
}

impl TextUNetConfig {
    pub fn new(vocab: Vec<u32>) -> Self {
        let mut c: Self = serde_json::from_str(r#"{"model_type":"textunet"}"#).expect("defaults");
        c.vocab = vocab;
        c
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_levels(self.image_size, &self.channels, self.groups)?;
        super::unet::validate_threshold(self.threshold)?;
        if !(self.presence_threshold > 0.0 && self.presence_threshold < 1.0) {
            return Err(format!("presence_threshold must be in (0, 1) (got {})", self.presence_threshold));
        }
        if !self.text_dim.is_multiple_of(self.text_heads) {
            return Err(format!("text_dim {} is not divisible by text_heads {}", self.text_dim, self.text_heads));
        }
        Ok(())
    }
}

/// The text encoder: token + position embeddings, bidirectional pre-norm layers, mean pool.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embedding: candle_nn::Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    proj: Linear,
    index: HashMap<u32, u32>,
    max_tokens: usize,
}

impl TextEncoder {
    fn new(vb: VarBuilder, c: &TextUNetConfig) -> Result<Self> {
        let d = c.text_dim;
        let e = vb.pp("embeddings");
        let token_embedding = candle_nn::embedding(c.vocab.len() + 1, d, e.pp("token_embedding"))?;
        let position_embedding = e.get_with_hints(
            (c.max_tokens, d),
            "position_embedding",
            candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        )?;
        let lv = vb.pp("layers");
        let layers = (0..c.text_layers)
            .map(|i| EncoderLayer::new(lv.pp(i), d, c.text_heads, 2 * d, HiddenAct::Gelu, 1e-5))
            .collect::<Result<_>>()?;
        let index = c.vocab.iter().enumerate().map(|(i, &t)| (t, i as u32 + 1)).collect();
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm: layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
            proj: linear(d, d, vb.pp("proj"))?,
            index,
            max_tokens: c.max_tokens,
        })
    }

    /// Rows of the token table for CLIP BPE ids (UNK = 0).
    pub fn rows(&self, ids: &[u32]) -> Vec<u32> {
        ids.iter().take(self.max_tokens).map(|t| *self.index.get(t).unwrap_or(&0)).collect()
    }

    /// One prompt's CLIP BPE ids (with start/end tokens) → [1, text_dim].
    pub fn forward_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let rows = self.rows(ids);
        let n = rows.len().max(1);
        let rows = if rows.is_empty() { vec![0] } else { rows };
        let t = Tensor::from_vec(rows, (1, n), self.position_embedding.device())?;
        let mut h = self.token_embedding.forward(&t)?.broadcast_add(&self.position_embedding.narrow(0, 0, n)?)?;
        for l in &self.layers {
            h = l.forward(&h, None)?;
        }
        let h = self.final_layer_norm.forward(&h)?.mean(1)?;
        self.proj.forward(&h)
    }

    /// Several prompts → [N, text_dim].
    pub fn forward(&self, prompts: &[Vec<u32>]) -> Result<Tensor> {
        let rows: Vec<Tensor> = prompts.iter().map(|p| self.forward_ids(p)).collect::<Result<_>>()?;
        Tensor::cat(&rows, 0)
    }
}

/// FiLM: `x · (1 + γ(t)) + β(t)`; the 1 + γ keeps an untrained layer close to identity.
#[derive(Debug, Clone)]
struct Film {
    lin: Linear,
}

impl Film {
    fn new(vb: VarBuilder, text_dim: usize, ch: usize) -> Result<Self> {
        Ok(Self { lin: linear(text_dim, 2 * ch, vb)? })
    }

    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let ch = x.dim(1)?;
        let gb = self.lin.forward(t)?; // [B, 2C]
        let g = (gb.narrow(1, 0, ch)? + 1.0)?;
        let b = gb.narrow(1, ch, ch)?;
        vlsm_kernels::unet_ops::film(x, &g, &b)
    }
}

#[derive(Debug, Clone)]
pub struct TextUNet {
    pub text: TextEncoder,
    body: UNetBody,
    film: Vec<Film>,
    presence: Option<Linear>,
    pub config: TextUNetConfig,
}

impl TextUNet {
    pub fn new(vb: VarBuilder, c: &TextUNetConfig) -> Result<Self> {
        c.validate().map_err(candle_core::Error::Msg)?;
        let ch = &c.channels;
        let n = ch.len();
        // film.0 on the bottleneck, film.(i+1) after up.i.
        let film = std::iter::once(ch[n - 1])
            .chain((0..n - 1).map(|i| ch[n - 2 - i]))
            .enumerate()
            .map(|(i, c2)| Film::new(vb.pp("film").pp(i), c.text_dim, c2))
            .collect::<Result<_>>()?;
        Ok(Self {
            text: TextEncoder::new(vb.pp("text"), c)?,
            body: UNetBody::new(&vb, ch, c.groups)?,
            film,
            presence: if c.presence { Some(linear(2 * ch[n - 1], 1, vb.pp("presence"))?) } else { None },
            config: c.clone(),
        })
    }

    /// Whether the model has a presence head.
    pub fn has_presence(&self) -> bool {
        self.presence.is_some()
    }

    /// [`decode`](Self::decode), and the presence logits [B] when the model has a head: a linear
    /// map of the FiLM-conditioned bottleneck's channel means and maxima.
    pub fn decode_with_presence(&self, feats: &[Tensor], text: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let Some(head) = &self.presence else { return Ok((self.decode(feats, text)?, None)) };
        let pooled = std::cell::RefCell::new(None);
        let logits = self.body.decode(feats, text.dim(0)?, |k, h| {
            let h = self.film[k].forward(&h, text)?;
            if k == 0 {
                let flat = h.flatten_from(2)?;
                *pooled.borrow_mut() = Some(Tensor::cat(&[flat.mean(2)?, flat.max(2)?], 1)?);
            }
            Ok(h)
        })?;
        let p = pooled.into_inner().expect("bottleneck visited");
        Ok((logits, Some(head.forward(&p)?.squeeze(1)?)))
    }

    /// The prompt-independent half: feature maps of every level, shallow to deep.
    pub fn encode(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.body.encode(x)
    }

    /// FiLM-conditioned decoding of `encode`'s features (batch B or 1, shared by all prompts)
    /// with text features [B, text_dim] → logits [B, H, W].
    pub fn decode(&self, feats: &[Tensor], text: &Tensor) -> Result<Tensor> {
        self.body.decode(feats, text.dim(0)?, |k, h| self.film[k].forward(&h, text))
    }

    /// Logits [B, H, W] for normalised images [B or 1, 3, H, W] and text features [B, text_dim].
    pub fn forward(&self, x: &Tensor, text: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?, text)
    }

    /// Number of scalar parameters.
    pub fn count_params(vars: &[candle_core::Var]) -> usize {
        vars.iter().map(|v| v.elem_count()).sum()
    }
}

/// TextUNet for `pipeline::Segmenter`: the cached features are every level's feature maps; each
/// prompt's CLIP BPE ids go through the small text encoder.
impl SegModel for WithTokenizer<TextUNet, ClipTokenizer> {
    fn kind(&self) -> ModelKind {
        ModelKind::TextUNet
    }

    fn image_processor(&self) -> ImageProcessorConfig {
        let c = &self.model.config;
        square_processor(c.image_size, c.image_mean, c.image_std)
    }

    fn default_threshold(&self) -> f32 {
        self.model.config.threshold
    }

    fn encode_images(&self, pixel_values: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        Ok(self.model.encode(pixel_values)?)
    }

    fn text_conditional(&self, prompts: &[String], _dev: &Device) -> anyhow::Result<Tensor> {
        let ids = prompts.iter().map(|p| self.tokenizer.encode(p)).collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(self.model.text.forward(&ids)?)
    }

    fn decode(&self, features: &[Tensor], cond: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.model.decode(features, cond)?)
    }

    fn has_presence_head(&self) -> bool {
        self.model.has_presence()
    }

    fn decode_with_presence(&self, features: &[Tensor], cond: &Tensor) -> anyhow::Result<(Tensor, Option<Tensor>)> {
        Ok(self.model.decode_with_presence(features, cond)?)
    }

    fn presence_threshold(&self) -> f32 {
        self.model.config.presence_threshold
    }
}
