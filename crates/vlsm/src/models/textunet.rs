//! TextUNet: the project's own compact text-prompted segmenter (the built-in model).
//!
//! A U-Net image path (conv-GroupNorm-ReLU blocks, max-pool down, nearest up, skip
//! concatenation) conditioned by FiLM (Perez et al. 2018), as CLIPSeg conditions its decoder, on
//! a small transformer text encoder over CLIP BPE tokens. Trained from scratch, so the token
//! table holds only the tokens seen in training (`vocab`); other tokens share one UNK row.

use std::collections::HashMap;

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::conv::ConvSame2d;
use super::norm::GroupNormRelu2d;
use serde::{Deserialize, Serialize};

use super::clip::EncoderLayer;
use super::HiddenAct;

fn d_size() -> usize { 160 }
fn d_channels() -> Vec<usize> { vec![16, 32, 64, 128, 256] }
fn d_groups() -> usize { 8 }
fn d_text_dim() -> usize { 128 }
fn d_text_layers() -> usize { 2 }
fn d_text_heads() -> usize { 4 }
fn d_max_tokens() -> usize { 77 }
fn d_mean() -> [f32; 3] { [0.485, 0.456, 0.406] }
fn d_std() -> [f32; 3] { [0.229, 0.224, 0.225] }
fn d_threshold() -> f32 { 0.5 }

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
}

impl TextUNetConfig {
    pub fn new(vocab: Vec<u32>) -> Self {
        let mut c: Self = serde_json::from_str(r#"{"model_type":"textunet"}"#).expect("defaults");
        c.vocab = vocab;
        c
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let levels = self.channels.len();
        if levels < 2 {
            return Err("channels needs at least two levels".into());
        }
        let div = 1 << (levels - 1);
        if self.image_size == 0 || self.image_size % div != 0 {
            return Err(format!("image_size {} is not a multiple of {div}", self.image_size));
        }
        if self.text_dim % self.text_heads != 0 {
            return Err(format!("text_dim {} is not divisible by text_heads {}", self.text_dim, self.text_heads));
        }
        Ok(())
    }
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
        let g = groups.min(cout);
        Ok(Self {
            conv1: ConvSame2d::load_no_bias(vb.pp("conv1"), cin, cout, 3)?,
            norm1: GroupNormRelu2d::load(vb.pp("norm1"), g, cout, 1e-5)?,
            conv2: ConvSame2d::load_no_bias(vb.pp("conv2"), cout, cout, 3)?,
            norm2: GroupNormRelu2d::load(vb.pp("norm2"), g, cout, 1e-5)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm1.forward(&self.conv1.forward(x)?)?;
        self.norm2.forward(&self.conv2.forward(&x)?)
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
        let g = (gb.narrow(1, 0, ch)? + 1.0)?.unsqueeze(2)?.unsqueeze(3)?;
        let b = gb.narrow(1, ch, ch)?.unsqueeze(2)?.unsqueeze(3)?;
        x.broadcast_mul(&g)?.broadcast_add(&b)
    }
}

#[derive(Debug, Clone)]
pub struct TextUNet {
    pub text: TextEncoder,
    down: Vec<Block>,
    up: Vec<Block>,
    film: Vec<Film>,
    head: ConvSame2d,
    pub config: TextUNetConfig,
}

impl TextUNet {
    pub fn new(vb: VarBuilder, c: &TextUNetConfig) -> Result<Self> {
        c.validate().map_err(candle_core::Error::Msg)?;
        let ch = &c.channels;
        let n = ch.len();
        let down = (0..n)
            .map(|i| Block::new(vb.pp("down").pp(i), if i == 0 { 3 } else { ch[i - 1] }, ch[i], c.groups))
            .collect::<Result<_>>()?;
        // up.i produces level n-2-i from the level below and the skip.
        let up = (0..n - 1)
            .map(|i| {
                let lvl = n - 2 - i;
                Block::new(vb.pp("up").pp(i), ch[lvl + 1] + ch[lvl], ch[lvl], c.groups)
            })
            .collect::<Result<_>>()?;
        // film.0 on the bottleneck, film.(i+1) after up.i.
        let film = std::iter::once(ch[n - 1])
            .chain((0..n - 1).map(|i| ch[n - 2 - i]))
            .enumerate()
            .map(|(i, c2)| Film::new(vb.pp("film").pp(i), c.text_dim, c2))
            .collect::<Result<_>>()?;
        Ok(Self {
            text: TextEncoder::new(vb.pp("text"), c)?,
            down,
            up,
            film,
            head: ConvSame2d::load(vb.pp("head"), ch[0], 1, 1)?,
            config: c.clone(),
        })
    }

    /// The prompt-independent half: feature maps of every level, shallow to deep.
    pub fn encode(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut feats = Vec::with_capacity(self.down.len());
        let mut h = x.clone();
        for (i, blk) in self.down.iter().enumerate() {
            if i > 0 {
                h = h.max_pool2d(2)?;
            }
            h = blk.forward(&h)?;
            feats.push(h.clone());
        }
        Ok(feats)
    }

    /// FiLM-conditioned decoding of `encode`'s features (batch B or 1, shared by all prompts)
    /// with text features [B, text_dim] → logits [B, H, W].
    pub fn decode(&self, feats: &[Tensor], text: &Tensor) -> Result<Tensor> {
        let b = text.dim(0)?;
        let expand = |t: &Tensor| -> Result<Tensor> {
            if t.dim(0)? == b {
                return Ok(t.clone());
            }
            let (_, c, hh, ww) = t.dims4()?;
            t.broadcast_as((b, c, hh, ww))?.contiguous()
        };
        let n = feats.len();
        let mut h = self.film[0].forward(&expand(&feats[n - 1])?, text)?;
        for (i, blk) in self.up.iter().enumerate() {
            let skip = expand(&feats[n - 2 - i])?;
            let (_, _, sh, sw) = skip.dims4()?;
            let upx = h.upsample_nearest2d(sh, sw)?;
            h = blk.forward(&Tensor::cat(&[&upx, &skip], 1)?)?;
            h = self.film[i + 1].forward(&h, text)?;
        }
        self.head.forward(&h)?.squeeze(1)
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

