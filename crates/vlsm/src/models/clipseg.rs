//! CLIPSeg (Lüddecke & Ecker, CVPR 2022) as Hugging Face's `CLIPSegForImageSegmentation`:
//! a frozen CLIP, activations of a few ViT layers, FiLM conditioning on a text or image
//! embedding, three small post-norm transformer layers and a transposed-convolution head.

use candle_core::{Device, IndexOp, Module, Result, Tensor};
use candle_nn::{
    conv2d, layer_norm, linear, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, LayerNorm, Linear, VarBuilder,
};
use serde::Deserialize;
use vlsm_kernels::fused;

use super::seg::{ModelKind, SegModel, WithTokenizer};
use crate::preprocess::ImageProcessorConfig;
use crate::tokenize::ClipTokenizer;

use super::clip::{Attention, ClipModel, ClipTextConfig, ClipVisionConfig, Mlp};
use super::HiddenAct;

fn d_projection() -> usize {
    512
}
fn d_extract() -> Vec<usize> {
    vec![3, 6, 9]
}
fn d_reduce() -> usize {
    64
}
fn d_dec_heads() -> usize {
    4
}
fn d_dec_inter() -> usize {
    2048
}

/// `CLIPSegConfig` (`config.json` of e.g. `CIDAS/clipseg-rd64-refined`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipSegConfig {
    #[serde(default)]
    pub text_config: ClipTextConfig,
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    #[serde(default = "d_projection")]
    pub projection_dim: usize,
    #[serde(default = "d_extract")]
    pub extract_layers: Vec<usize>,
    #[serde(default = "d_reduce")]
    pub reduce_dim: usize,
    #[serde(default = "d_dec_heads")]
    pub decoder_num_attention_heads: usize,
    #[serde(default = "d_dec_inter")]
    pub decoder_intermediate_size: usize,
    #[serde(default)]
    pub conditional_layer: usize,
    #[serde(default)]
    pub use_complex_transposed_convolution: bool,
    #[serde(default)]
    pub model_type: Option<String>,
}

impl ClipSegConfig {
    /// The full-size architecture of `CIDAS/clipseg-rd64-refined` (ViT-B/16, reduce_dim 64).
    pub fn rd64_refined() -> Self {
        let mut c: Self = serde_json::from_str("{}").expect("defaults");
        c.vision_config.patch_size = 16;
        c.use_complex_transposed_convolution = true;
        c.model_type = Some("clipseg".into());
        c
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.vision_config.num_hidden_layers;
        if self.extract_layers.is_empty() {
            return Err("extract_layers is empty".into());
        }
        if let Some(&l) = self.extract_layers.iter().find(|&&l| l >= n) {
            return Err(format!("extract_layers has {l} but the vision model has {n} layers"));
        }
        if self.conditional_layer >= self.extract_layers.len() {
            return Err(format!(
                "conditional_layer {} >= number of extract_layers {}",
                self.conditional_layer,
                self.extract_layers.len()
            ));
        }
        if self.use_complex_transposed_convolution && self.vision_config.patch_size < 4 {
            return Err("the complex head needs patch_size >= 4".into());
        }
        Ok(())
    }
}

/// `CLIPSegDecoderLayer`: post-norm, unlike CLIP's layers, with ReLU hard-coded by HF.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl DecoderLayer {
    pub fn new(vb: VarBuilder, c: &ClipSegConfig) -> Result<Self> {
        let (d, eps) = (c.reduce_dim, c.vision_config.layer_norm_eps);
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), d, c.decoder_num_attention_heads)?,
            layer_norm1: layer_norm(d, eps, vb.pp("layer_norm1"))?,
            mlp: Mlp::new(vb.pp("mlp"), d, c.decoder_intermediate_size, HiddenAct::Relu)?,
            layer_norm2: layer_norm(d, eps, vb.pp("layer_norm2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = fused::ln(&self.layer_norm1, &self.self_attn.forward_residual(x, None, Some(x))?)?;
        fused::ln(&self.layer_norm2, &self.mlp.forward_residual(&h, Some(&h))?)
    }
}

/// `decoder.transposed_convolution`: either one ConvTranspose2d(reduce, 1, p, stride p) or
/// Conv3x3 → ReLU → ConvT(p/4) → ReLU → ConvT(p/4) (`use_complex_transposed_convolution`).
#[derive(Debug, Clone)]
pub enum Head {
    Simple(ConvTranspose2d),
    Complex { conv: candle_nn::Conv2d, up1: ConvTranspose2d, up2: ConvTranspose2d },
}

fn conv_t(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<ConvTranspose2d> {
    let cfg = ConvTranspose2dConfig { stride: k, ..Default::default() };
    // PyTorch stores ConvTranspose2d weights as [in, out, kH, kW].
    let w = vb.get((cin, cout, k, k), "weight")?;
    let b = vb.get(cout, "bias")?;
    Ok(ConvTranspose2d::new(w, Some(b), cfg))
}

impl Head {
    pub fn new(vb: VarBuilder, c: &ClipSegConfig) -> Result<Self> {
        let (r, p) = (c.reduce_dim, c.vision_config.patch_size);
        let vb = vb.pp("transposed_convolution");
        if c.use_complex_transposed_convolution {
            let k = p / 4;
            Ok(Head::Complex {
                conv: conv2d(r, r, 3, Conv2dConfig { padding: 1, ..Default::default() }, vb.pp(0))?,
                up1: conv_t(vb.pp(2), r, r / 2, k)?,
                up2: conv_t(vb.pp(4), r / 2, 1, k)?,
            })
        } else {
            Ok(Head::Simple(conv_t(vb, r, 1, p)?))
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Head::Simple(up) => up.forward(x),
            Head::Complex { conv, up1, up2 } => {
                let x = conv.forward(x)?.relu()?;
                let x = up1.forward(&x)?.relu()?;
                up2.forward(&x)
            }
        }
    }
}

/// `CLIPSegDecoder`.
#[derive(Debug, Clone)]
pub struct ClipSegDecoder {
    film_mul: Linear,
    film_add: Linear,
    reduces: Vec<Linear>,
    layers: Vec<DecoderLayer>,
    head: Head,
    conditional_layer: usize,
}

impl ClipSegDecoder {
    pub fn new(vb: VarBuilder, c: &ClipSegConfig) -> Result<Self> {
        let n = c.extract_layers.len();
        let (r, v) = (c.reduce_dim, c.vision_config.hidden_size);
        Ok(Self {
            film_mul: linear(c.projection_dim, r, vb.pp("film_mul"))?,
            film_add: linear(c.projection_dim, r, vb.pp("film_add"))?,
            reduces: (0..n).map(|i| linear(v, r, vb.pp("reduces").pp(i))).collect::<Result<_>>()?,
            layers: (0..n).map(|i| DecoderLayer::new(vb.pp("layers").pp(i), c)).collect::<Result<_>>()?,
            head: Head::new(vb.clone(), c)?,
            conditional_layer: c.conditional_layer,
        })
    }

    /// `activations`: the extracted ViT layers, shallow to deep, each [B or 1, 1+N, D];
    /// `cond`: [B, projection_dim]. Returns logits [B, H, W].
    ///
    /// An activation batch of 1 is shared by all B conditions (one image, many prompts).
    pub fn forward(&self, activations: &[Tensor], cond: &Tensor) -> Result<Tensor> {
        let b = cond.dim(0)?;
        let mut out: Option<Tensor> = None;
        for (i, (act, (layer, reduce))) in
            activations.iter().rev().zip(self.layers.iter().zip(&self.reduces)).enumerate()
        {
            let a = reduce.forward(act)?;
            let a = if a.dim(0)? != b { a.broadcast_as((b, a.dim(1)?, a.dim(2)?))?.contiguous()? } else { a };
            let mut o = match out {
                Some(prev) => (a + prev)?,
                None => a,
            };
            if i == self.conditional_layer {
                // FiLM: every token, CLS included, scaled and shifted by the condition.
                let mul = self.film_mul.forward(cond)?.unsqueeze(1)?;
                let add = self.film_add.forward(cond)?.unsqueeze(1)?;
                o = o.broadcast_mul(&mul)?.broadcast_add(&add)?;
            }
            out = Some(layer.forward(&o)?);
        }
        let out = out.ok_or_else(|| candle_core::Error::Msg("no activations".into()))?;
        let (b, n, d) = out.dims3()?;
        let tokens = n - 1;
        let size = (tokens as f64).sqrt() as usize;
        if size * size != tokens {
            candle_core::bail!("CLIPSeg needs a square patch grid, got {tokens} patches");
        }
        let grid = out.i((.., 1..))?.transpose(1, 2)?.reshape((b, d, size, size))?;
        self.head.forward(&grid)?.squeeze(1)
    }
}

/// `CLIPSegForImageSegmentation`: `clip` + `decoder`.
#[derive(Debug)]
pub struct ClipSeg {
    pub clip: ClipModel,
    pub decoder: ClipSegDecoder,
    pub config: ClipSegConfig,
}

impl ClipSeg {
    pub fn new(vb: VarBuilder, c: &ClipSegConfig) -> Result<Self> {
        c.validate().map_err(candle_core::Error::Msg)?;
        Ok(Self {
            clip: ClipModel::new(vb.pp("clip"), &c.text_config, &c.vision_config, c.projection_dim)?,
            decoder: ClipSegDecoder::new(vb.pp("decoder"), c)?,
            config: c.clone(),
        })
    }

    /// The decoder alone, for training it over cached activations.
    pub fn decoder_only(vb: VarBuilder, c: &ClipSegConfig) -> Result<ClipSegDecoder> {
        c.validate().map_err(candle_core::Error::Msg)?;
        ClipSegDecoder::new(vb.pp("decoder"), c)
    }

    /// The ViT activations the decoder reads: outputs of `extract_layers`, shallow to deep.
    pub fn image_activations(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        self.clip.vision_model.forward_layers(pixel_values, &self.config.extract_layers)
    }

    /// Conditional embedding from token ids [B, L].
    pub fn text_conditional(&self, ids: &Tensor) -> Result<Tensor> {
        self.clip.text_features(ids)
    }

    /// Conditional embedding from (already prompt-engineered) example images [B, 3, H, W].
    pub fn image_conditional(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.clip.image_features(pixel_values)
    }

    /// Logits [B, H, W] for images [B or 1, 3, H, W] and conditions [B, projection_dim].
    pub fn forward(&self, pixel_values: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let acts = self.image_activations(pixel_values)?;
        self.decoder.forward(&acts, cond)
    }
}

/// CLIPSeg for `pipeline::Segmenter`: the cached features are the extracted ViT layers; text and
/// example-image prompts both become CLIP embeddings.
impl SegModel for WithTokenizer<ClipSeg, ClipTokenizer> {
    fn kind(&self) -> ModelKind {
        ModelKind::ClipSeg
    }

    fn image_processor(&self) -> ImageProcessorConfig {
        ImageProcessorConfig::clipseg(352)
    }

    fn takes_image_prompts(&self) -> bool {
        true
    }

    fn encode_images(&self, pixel_values: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        Ok(self.model.image_activations(pixel_values)?)
    }

    /// Each prompt runs unpadded (padding after the end token cannot change the pooled feature).
    fn text_conditional(&self, prompts: &[String], dev: &Device) -> anyhow::Result<Tensor> {
        let ids_all = prompts.iter().map(|p| self.tokenizer.encode(p)).collect::<std::result::Result<Vec<_>, _>>()?;
        let mut rows = Vec::with_capacity(prompts.len());
        for ids in ids_all {
            let n = ids.len();
            let ids = Tensor::from_vec(ids, (1, n), dev)?;
            rows.push(self.model.text_conditional(&ids)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }

    fn image_conditional(&self, pixel_values: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.model.image_conditional(pixel_values)?)
    }

    fn decode(&self, features: &[Tensor], cond: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.model.decoder.forward(features, cond)?)
    }
}
