//! BiomedCLIPSeg and BiomedCLIPSeg-D (medvlsm): BiomedCLIP's encoders with CLIPSeg's decoder.
//! The decoder reads timm block outputs and is conditioned (FiLM) on the projected BERT [CLS]
//! feature. -D differs only in where the decoder's weights come from (a CLIPSeg checkpoint).
//!
//! Model directory (our format; `loader::biomedclipseg` reads it):
//! - `config.json`: `{"model_type": "biomedclipseg", "extract_layers": [4, 7, 10], "reduce_dim": 64,
//!   "decoder_num_attention_heads": 4, "decoder_intermediate_size": 2048, "conditional_layer": 0,
//!   "use_complex_transposed_convolution": true, "decoder_weights": "decoder.safetensors"}`
//!   (all optional, these are the defaults);
//! - the BiomedCLIP open_clip files: `open_clip_config.json`, `open_clip_pytorch_model.bin`,
//!   `vocab.txt` (+ tokenizer files);
//! - `decoder_weights`: any safetensors/pickle whose `decoder.*` tensors are a CLIPSeg decoder,
//!   e.g. CIDAS/clipseg-rd64-refined's `model.safetensors` itself for BiomedCLIPSeg-D.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::biomedclip::{BiomedClip, BiomedClipConfig};
use super::clipseg::{ClipSegConfig, ClipSegDecoder};
use super::seg::{ModelKind, SegModel, WithTokenizer};
use crate::preprocess::ImageProcessorConfig;
use crate::tokenize::WordPieceTokenizer;

fn d_extract() -> Vec<usize> {
    vec![4, 7, 10]
}
fn d_reduce() -> usize {
    64
}
fn d_heads() -> usize {
    4
}
fn d_inter() -> usize {
    2048
}
fn d_true() -> bool {
    true
}
fn d_eps() -> f64 {
    1e-5
}
fn d_weights() -> String {
    "decoder.safetensors".into()
}

/// `config.json` of a BiomedCLIPSeg directory. `extract_layers` are timm block indices whose
/// outputs feed the decoder: medvlsm's 4, 7, 10 (its `hidden_states[i + 1]` on a list without
/// the embedding output), one block deeper than CLIPSeg's 3, 6, 9.
#[derive(Debug, Clone, Deserialize)]
pub struct BiomedClipSegConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default = "d_extract")]
    pub extract_layers: Vec<usize>,
    #[serde(default = "d_reduce")]
    pub reduce_dim: usize,
    #[serde(default = "d_heads")]
    pub decoder_num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub decoder_intermediate_size: usize,
    #[serde(default)]
    pub conditional_layer: usize,
    #[serde(default = "d_true")]
    pub use_complex_transposed_convolution: bool,
    /// CLIPSeg's decoder LayerNorm eps (its config's, not timm's 1e-6).
    #[serde(default = "d_eps")]
    pub decoder_layer_norm_eps: f64,
    #[serde(default = "d_weights")]
    pub decoder_weights: String,
}

impl Default for BiomedClipSegConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl BiomedClipSegConfig {
    /// The CLIPSeg decoder configuration over this encoder: reduces read the ViT width, FiLM
    /// reads the joint embedding, the head upsamples by the patch size.
    pub fn decoder_config(&self, enc: &BiomedClipConfig) -> std::result::Result<ClipSegConfig, String> {
        let mut c: ClipSegConfig = serde_json::from_str("{}").expect("defaults");
        c.vision_config.hidden_size = enc.vision.width;
        c.vision_config.patch_size = enc.vision.patch_size;
        c.vision_config.num_hidden_layers = enc.vision.depth;
        c.vision_config.image_size = enc.vision.image_size;
        c.vision_config.layer_norm_eps = self.decoder_layer_norm_eps;
        c.projection_dim = enc.embed_dim;
        c.extract_layers = self.extract_layers.clone();
        c.reduce_dim = self.reduce_dim;
        c.decoder_num_attention_heads = self.decoder_num_attention_heads;
        c.decoder_intermediate_size = self.decoder_intermediate_size;
        c.conditional_layer = self.conditional_layer;
        c.use_complex_transposed_convolution = self.use_complex_transposed_convolution;
        c.model_type = Some("biomedclipseg".into());
        c.validate()?;
        Ok(c)
    }
}

#[derive(Debug)]
pub struct BiomedClipSeg {
    pub biomedclip: BiomedClip,
    pub decoder: ClipSegDecoder,
    pub config: BiomedClipSegConfig,
}

impl BiomedClipSeg {
    /// From an encoder VarBuilder (open_clip keys) and a decoder one (`decoder.*` keys).
    pub fn new(enc: VarBuilder, dec: VarBuilder, enc_cfg: &BiomedClipConfig, c: &BiomedClipSegConfig) -> Result<Self> {
        let dc = c.decoder_config(enc_cfg).map_err(candle_core::Error::Msg)?;
        Ok(Self {
            biomedclip: BiomedClip::new(enc, enc_cfg)?,
            decoder: ClipSegDecoder::new(dec.pp("decoder"), &dc)?,
            config: c.clone(),
        })
    }

    /// Outputs of the `extract_layers` timm blocks, shallow to deep, each [B, 1 + N, D].
    pub fn image_activations(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        let deepest = *self.config.extract_layers.iter().max().expect("validated non-empty");
        let blocks = self.biomedclip.visual.trunk.forward_blocks(pixel_values, deepest)?;
        Ok(self.config.extract_layers.iter().map(|&i| blocks[i].clone()).collect())
    }

    /// The FiLM condition: projected [CLS] feature of the prompt [B, embed].
    pub fn text_conditional(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.biomedclip.text_features(ids, attention_mask)
    }

    /// Logits [B, H, W] for images [B or 1, 3, S, S] and conditions [B, embed].
    pub fn forward(&self, pixel_values: &Tensor, cond: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.image_activations(pixel_values)?, cond)
    }
}

/// BiomedCLIPSeg for `pipeline::Segmenter`: the cached features are the timm blocks' outputs;
/// prompts go through PubMedBERT's WordPiece tokenizer, padded to the context length.
impl SegModel for WithTokenizer<BiomedClipSeg, WordPieceTokenizer> {
    fn kind(&self) -> ModelKind {
        ModelKind::BiomedClipSeg
    }

    fn image_processor(&self) -> ImageProcessorConfig {
        self.model.biomedclip.config.image_processor()
    }

    fn encode_images(&self, pixel_values: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        Ok(self.model.image_activations(pixel_values)?)
    }

    fn text_conditional(&self, prompts: &[String], dev: &Device) -> anyhow::Result<Tensor> {
        let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
        let (ids, mask) = self.model.biomedclip.tokenize(&self.tokenizer, &refs, dev)?;
        Ok(self.model.text_conditional(&ids, &mask)?)
    }

    fn decode(&self, features: &[Tensor], cond: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.model.decoder.forward(features, cond)?)
    }
}

/// Seconds per forward pass of full-size BiomedCLIPSeg (ViT-B/16 at 224, PubMedBERT with 256
/// tokens, rd64 decoder; batch 1) with random weights, after one warm-up; for
/// `vlsm bench biomedclipseg`. Text and image encoders both run, as in medvlsm's forward.
pub fn bench(iters: usize, dev: &Device) -> anyhow::Result<Vec<f64>> {
    use super::biomedclip::VitArch;
    let enc = BiomedClipConfig {
        embed_dim: 512,
        vision: VitArch { width: 768, depth: 12, heads: 12, patch_size: 16, mlp_ratio: 4.0, image_size: 224 },
        text: super::bert::BertConfig::default(),
        context_length: 256,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let vm = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, dev);
    let m = BiomedClipSeg::new(vb.clone(), vb, &enc, &BiomedClipSegConfig::default())?;
    let img = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), dev)?;
    let mut ids = vec![0u32; 256];
    ids[..5].copy_from_slice(&[2, 1000, 2000, 3000, 3]);
    let mask: Vec<u32> = ids.iter().map(|&t| (t != 0) as u32).collect();
    let ids = Tensor::from_vec(ids, (1, 256), dev)?;
    let mask = Tensor::from_vec(mask, (1, 256), dev)?;
    let mut times = vec![];
    for i in 0..=iters {
        let t = std::time::Instant::now();
        let cond = m.text_conditional(&ids, &mask)?;
        m.forward(&img, &cond)?.flatten_all()?.to_vec1::<f32>()?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}
