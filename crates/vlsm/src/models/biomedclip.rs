//! BiomedCLIP (Zhang et al. 2023) as open_clip's `CustomTextCLIP`: a timm ViT image tower
//! (`visual.trunk.*`, linear `visual.head.proj`) and a BERT text tower (`text.transformer.*`)
//! pooled at [CLS] and projected by an MLP (`text.proj.{0,2}`). `loader::biomedclip` reads a
//! directory laid out like `microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`.

use candle_core::{Device, IndexOp, Module, Result, Tensor};
use candle_nn::{layer_norm, linear, linear_no_bias, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::bert::{BertConfig, BertModel};
use crate::preprocess::{ImageProcessorConfig, ResizeTarget};
use crate::tokenize::WordPieceTokenizer;

fn d_embed() -> usize {
    512
}
fn d_image() -> usize {
    224
}
fn d_context() -> usize {
    256
}
fn d_proj_type() -> String {
    "mlp".into()
}
fn d_pooler() -> String {
    "cls_last_hidden_state_pooler".into()
}
fn d_timm_proj() -> String {
    "linear".into()
}

/// `vision_cfg` of open_clip's config. For a timm tower open_clip reads only the timm name;
/// `width`/`layers`/`head_width`/`patch_size`/`mlp_ratio` (open_clip's own fields) override
/// it, which is how tiny test models describe themselves.
#[derive(Debug, Clone, Deserialize)]
pub struct TimmVisionCfg {
    #[serde(default)]
    pub timm_model_name: Option<String>,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_timm_proj")]
    pub timm_proj: String,
    #[serde(default)]
    pub timm_pool: String,
    pub width: Option<usize>,
    pub layers: Option<usize>,
    pub head_width: Option<usize>,
    pub patch_size: Option<usize>,
    pub mlp_ratio: Option<f64>,
}

/// The resolved timm ViT architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitArch {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub patch_size: usize,
    pub mlp_ratio: f64,
    pub image_size: usize,
}

impl TimmVisionCfg {
    pub fn arch(&self) -> std::result::Result<VitArch, String> {
        let name = self.timm_model_name.as_deref().unwrap_or("");
        // timm's `vit_{size}_patch{P}_{res}` family (width, depth, heads).
        let base = match name.split('_').nth(1) {
            Some("tiny") => Some((192, 12, 3)),
            Some("small") => Some((384, 12, 6)),
            Some("base") => Some((768, 12, 12)),
            Some("large") => Some((1024, 24, 16)),
            _ => None,
        };
        let patch = name.split('_').find_map(|p| p.strip_prefix("patch").and_then(|n| n.parse().ok()));
        let (w, d, h) = match (base, self.width) {
            (Some(b), _) => b,
            (None, Some(w)) => (w, 12, w / 64),
            (None, None) => return Err(format!("unknown timm model '{name}' and no vision_cfg.width")),
        };
        let width = self.width.unwrap_or(w);
        let heads = match self.head_width {
            Some(hw) if hw > 0 && width.is_multiple_of(hw) => width / hw,
            Some(hw) => return Err(format!("width {width} is not a multiple of head_width {hw}")),
            None => h,
        };
        let patch_size = self.patch_size.or(patch).unwrap_or(16);
        if patch_size == 0 || !self.image_size.is_multiple_of(patch_size) {
            return Err(format!("image_size {} is not a multiple of patch_size {patch_size}", self.image_size));
        }
        if self.timm_proj != "linear" || !self.timm_pool.is_empty() {
            return Err(format!(
                "only timm_proj 'linear' with timm_pool '' is supported (got '{}', '{}')",
                self.timm_proj, self.timm_pool
            ));
        }
        Ok(VitArch {
            width,
            depth: self.layers.unwrap_or(d),
            heads,
            patch_size,
            mlp_ratio: self.mlp_ratio.unwrap_or(4.0),
            image_size: self.image_size,
        })
    }
}

/// `text_cfg` of open_clip's config (an HF text tower).
#[derive(Debug, Clone, Deserialize)]
pub struct HfTextCfg {
    #[serde(default)]
    pub hf_model_name: Option<String>,
    #[serde(default)]
    pub hf_tokenizer_name: Option<String>,
    #[serde(default = "d_proj_type")]
    pub hf_proj_type: String,
    #[serde(default = "d_pooler")]
    pub hf_pooler_type: String,
    #[serde(default = "d_context")]
    pub context_length: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipModelCfg {
    #[serde(default = "d_embed")]
    pub embed_dim: usize,
    pub vision_cfg: TimmVisionCfg,
    pub text_cfg: HfTextCfg,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreprocessCfg {
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

/// `open_clip_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenClipConfig {
    pub model_cfg: OpenClipModelCfg,
    #[serde(default)]
    pub preprocess_cfg: Option<PreprocessCfg>,
}

/// A resolved BiomedCLIP configuration: open_clip's config plus the BERT config.
#[derive(Debug, Clone)]
pub struct BiomedClipConfig {
    pub embed_dim: usize,
    pub vision: VitArch,
    pub text: BertConfig,
    pub context_length: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl BiomedClipConfig {
    /// medvlsm's transform: a plain resize to the tower's size (PIL bilinear), mean/std.
    pub fn image_processor(&self) -> ImageProcessorConfig {
        let s = self.vision.image_size as u32;
        ImageProcessorConfig {
            size: ResizeTarget::Exact { height: s, width: s },
            crop_size: (s, s),
            image_mean: self.mean,
            image_std: self.std,
            ..ImageProcessorConfig::vit_default()
        }
    }
}

/// timm `Block`: pre-norm, fused `attn.qkv`, erf GELU MLP, LayerNorm eps 1e-6.
#[derive(Debug, Clone)]
pub struct VitBlock {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl VitBlock {
    pub fn new(vb: VarBuilder, a: &VitArch) -> Result<Self> {
        let (d, eps) = (a.width, 1e-6);
        let hidden = (d as f64 * a.mlp_ratio) as usize;
        Ok(Self {
            norm1: layer_norm(d, eps, vb.pp("norm1"))?,
            qkv: linear(d, 3 * d, vb.pp("attn").pp("qkv"))?,
            proj: linear(d, d, vb.pp("attn").pp("proj"))?,
            norm2: layer_norm(d, eps, vb.pp("norm2"))?,
            fc1: linear(d, hidden, vb.pp("mlp").pp("fc1"))?,
            fc2: linear(hidden, d, vb.pp("mlp").pp("fc2"))?,
            heads: a.heads,
        })
    }

    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        // qkv rows are [q; k; v], each split into heads.
        let qkv = self.qkv.forward(x)?.reshape((b, n, 3, self.heads, hd))?.permute((2, 0, 3, 1, 4))?;
        let q = (qkv.i(0)?.contiguous()? * (hd as f64).powf(-0.5))?;
        let (k, v) = (qkv.i(1)?.contiguous()?, qkv.i(2)?.contiguous()?);
        let att = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        self.proj.forward(&att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attention(&self.norm1.forward(x)?)?)?;
        let m = self.fc2.forward(&self.fc1.forward(&self.norm2.forward(&x)?)?.gelu_erf()?)?;
        x + m
    }
}

/// timm `VisionTransformer` (class token, learned absolute positions, no `norm_pre`).
#[derive(Debug, Clone)]
pub struct TimmVit {
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    pub blocks: Vec<VitBlock>,
    norm: LayerNorm,
    pub arch: VitArch,
}

impl TimmVit {
    pub fn new(vb: VarBuilder, a: &VitArch) -> Result<Self> {
        let (d, p) = (a.width, a.patch_size);
        let grid = a.image_size / p;
        let pe = vb.pp("patch_embed").pp("proj");
        let w = pe.get((d, 3, p, p), "weight")?;
        let b = pe.get(d, "bias")?;
        Ok(Self {
            patch_embed: Conv2d::new(w, Some(b), Conv2dConfig { stride: p, ..Default::default() }),
            cls_token: vb.get((1, 1, d), "cls_token")?,
            pos_embed: vb.get((1, grid * grid + 1, d), "pos_embed")?,
            blocks: (0..a.depth).map(|i| VitBlock::new(vb.pp("blocks").pp(i), a)).collect::<Result<_>>()?,
            norm: layer_norm(d, 1e-6, vb.pp("norm"))?,
            arch: *a,
        })
    }

    /// `patch_embed` → `_pos_embed`: [B, 1 + N, D].
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let s = self.arch.image_size;
        if h != s || w != s {
            candle_core::bail!("the ViT takes {s}x{s} images, got {h}x{w}");
        }
        let p = self.patch_embed.forward(x)?.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, self.arch.width))?;
        Tensor::cat(&[&cls, &p], 1)?.broadcast_add(&self.pos_embed)
    }

    /// Outputs of blocks 0..=`last` (medvlsm's `hidden_states`: no embedding output).
    pub fn forward_blocks(&self, x: &Tensor, last: usize) -> Result<Vec<Tensor>> {
        if last >= self.blocks.len() {
            candle_core::bail!("block {last} asked for, the ViT has {}", self.blocks.len());
        }
        let mut h = self.embed(x)?;
        let mut out = Vec::with_capacity(last + 1);
        for block in &self.blocks[..=last] {
            h = block.forward(&h)?;
            out.push(h.clone());
        }
        Ok(out)
    }

    /// `norm(x)[:, 0]`: the pooled ('token') feature [B, D].
    pub fn forward_pooled(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.forward_blocks(x, self.blocks.len() - 1)?.pop().expect("at least one block");
        self.norm.forward(&h)?.i((.., 0))
    }
}

/// `visual`: `trunk` + `head.proj`.
#[derive(Debug, Clone)]
pub struct TimmVisual {
    pub trunk: TimmVit,
    head_proj: Linear,
}

/// `text`: `transformer` (BERT) + `proj` = Linear → GELU → Linear, no biases.
#[derive(Debug, Clone)]
pub struct HfText {
    pub transformer: BertModel,
    proj0: Linear,
    proj2: Linear,
}

impl HfText {
    pub fn new(vb: VarBuilder, c: &BertConfig, embed: usize) -> Result<Self> {
        let hidden = (c.hidden_size + embed) / 2;
        Ok(Self {
            transformer: BertModel::new(vb.pp("transformer"), c)?,
            proj0: linear_no_bias(c.hidden_size, hidden, vb.pp("proj").pp(0))?,
            proj2: linear_no_bias(hidden, embed, vb.pp("proj").pp(2))?,
        })
    }

    /// CLS pooling then the MLP projection: [B, embed].
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let h = self.transformer.forward(ids, attention_mask)?;
        self.project(&h.i((.., 0))?)
    }

    pub fn project(&self, pooled: &Tensor) -> Result<Tensor> {
        self.proj2.forward(&self.proj0.forward(pooled)?.gelu_erf()?)
    }
}

/// open_clip `CustomTextCLIP` with a timm ViT and a BERT text tower.
#[derive(Debug, Clone)]
pub struct BiomedClip {
    pub visual: TimmVisual,
    pub text: HfText,
    pub config: BiomedClipConfig,
}

impl BiomedClip {
    pub fn new(vb: VarBuilder, c: &BiomedClipConfig) -> Result<Self> {
        let v = vb.pp("visual");
        Ok(Self {
            visual: TimmVisual {
                trunk: TimmVit::new(v.pp("trunk"), &c.vision)?,
                head_proj: linear_no_bias(c.vision.width, c.embed_dim, v.pp("head").pp("proj"))?,
            },
            text: HfText::new(vb.pp("text"), &c.text, c.embed_dim)?,
            config: c.clone(),
        })
    }

    /// `encode_image` without normalisation: [B, embed].
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.visual.head_proj.forward(&self.visual.trunk.forward_pooled(pixel_values)?)
    }

    /// `encode_text` without normalisation: [B, embed].
    pub fn text_features(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.text.forward(ids, attention_mask)
    }

    /// Token ids and attention mask [B, context_length], padded as open_clip's HFTokenizer pads.
    pub fn tokenize(&self, tok: &WordPieceTokenizer, texts: &[&str], dev: &Device) -> anyhow::Result<(Tensor, Tensor)> {
        let l = self.config.context_length;
        let (ids, mask) = tok.encode_batch_padded(texts, Some(l))?;
        let b = ids.len();
        Ok((Tensor::from_vec(ids.concat(), (b, l), dev)?, Tensor::from_vec(mask.concat(), (b, l), dev)?))
    }
}
