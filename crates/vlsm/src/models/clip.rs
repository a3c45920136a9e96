//! CLIP text and vision transformers with Hugging Face's module names (`CLIPTextTransformer`,
//! `CLIPVisionTransformer`; CLIPSeg's copies are identical). The vision tower takes any input
//! size: its position embeddings are resized with PyTorch's bicubic interpolation.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, IndexOp, Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use vlsm_kernels::fused::{self, Act};

use super::{interp, HiddenAct};

fn d_vocab() -> usize {
    49408
}
fn d_text_hidden() -> usize {
    512
}
fn d_text_inter() -> usize {
    2048
}
fn d_layers() -> usize {
    12
}
fn d_text_heads() -> usize {
    8
}
fn d_text_pos() -> usize {
    77
}
fn d_eps() -> f64 {
    1e-5
}
fn d_eos() -> u32 {
    49407
}
fn d_vis_hidden() -> usize {
    768
}
fn d_vis_inter() -> usize {
    3072
}
fn d_vis_heads() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image_size() -> usize {
    224
}
fn d_patch() -> usize {
    32
}

/// `CLIPTextConfig` / `CLIPSegTextConfig`; defaults are transformers' (save_pretrained omits them).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_text_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_text_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_text_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_text_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// 2 is the legacy value that selects argmax pooling; otherwise the first EOS is pooled.
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// `CLIPVisionConfig` / `CLIPSegVisionConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "d_vis_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_vis_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_vis_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image_size")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default)]
    pub hidden_act: HiddenAct,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// Multi-head attention with separate q/k/v projections (`self_attn.{q,k,v,out}_proj`).
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(vb: VarBuilder, dim: usize, num_heads: usize) -> Result<Self> {
        if num_heads == 0 || !dim.is_multiple_of(num_heads) {
            candle_core::bail!("hidden size {dim} is not divisible by {num_heads} attention heads");
        }
        Ok(Self {
            q_proj: linear(dim, dim, vb.pp("q_proj"))?,
            k_proj: linear(dim, dim, vb.pp("k_proj"))?,
            v_proj: linear(dim, dim, vb.pp("v_proj"))?,
            out_proj: linear(dim, dim, vb.pp("out_proj"))?,
            num_heads,
            head_dim: dim / num_heads,
        })
    }

    /// x: [B, N, D]; `mask` is additive, broadcastable to [B, heads, N, N].
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_residual(x, mask, None)
    }

    /// `residual + attention(x)`, the sum fused into the output projection when nothing needs a
    /// gradient.
    pub fn forward_residual(&self, x: &Tensor, mask: Option<&Tensor>, residual: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let mask_ok = mask.is_none_or(|m| m.broadcast_as((b, self.num_heads, n, n)).is_ok());
        if mask_ok && self.fusable(&[Some(x), mask, residual]) {
            let qkv = fused::qkv(x, &self.q_proj, &self.k_proj, &self.v_proj)?;
            let y = fused::attention(&qkv, self.num_heads, mask)?;
            return fused::linear(&y, self.out_proj.weight(), self.out_proj.bias(), residual, Act::None);
        }
        let y = self.forward_composed(x, mask)?;
        match residual {
            Some(r) => r + y,
            None => Ok(y),
        }
    }

    fn fusable(&self, inputs: &[Option<&Tensor>]) -> bool {
        let params = [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj]
            .into_iter()
            .flat_map(|l| std::iter::once(l.weight()).chain(l.bias()));
        let all: Vec<&Tensor> = inputs.iter().flatten().copied().chain(params).collect();
        fused::usable(&all)
    }

    fn forward_composed(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, self.num_heads, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = split((self.q_proj.forward(x)? * scale)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let mut att = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            att = att.broadcast_add(mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.out_proj.forward(&y)
    }
}

/// `mlp.fc1 → act → mlp.fc2`.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: HiddenAct,
}

impl Mlp {
    pub fn new(vb: VarBuilder, dim: usize, inter: usize, act: HiddenAct) -> Result<Self> {
        Ok(Self { fc1: linear(dim, inter, vb.pp("fc1"))?, fc2: linear(inter, dim, vb.pp("fc2"))?, act })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_residual(x, None)
    }

    /// `residual + mlp(x)`; bias, activation and residual fused into the products when nothing
    /// needs a gradient.
    pub fn forward_residual(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let params = [&self.fc1, &self.fc2].into_iter().flat_map(|l| std::iter::once(l.weight()).chain(l.bias()));
        let all: Vec<&Tensor> = [Some(x), residual].into_iter().flatten().chain(params).collect();
        if fused::usable(&all) {
            let (act, rest) = match self.act {
                HiddenAct::QuickGelu => (Act::QuickGelu, None),
                HiddenAct::Relu => (Act::Relu, None),
                other => (Act::None, Some(other)),
            };
            let mut h = fused::linear(x, self.fc1.weight(), self.fc1.bias(), None, act)?;
            if let Some(a) = rest {
                h = a.apply(&h)?;
            }
            return fused::linear(&h, self.fc2.weight(), self.fc2.bias(), residual, Act::None);
        }
        let y = self.fc2.forward(&self.act.apply(&self.fc1.forward(x)?)?)?;
        match residual {
            Some(r) => r + y,
            None => Ok(y),
        }
    }
}

/// A pre-norm encoder layer: `h + attn(ln1(h))`, then `h + mlp(ln2(h))`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    pub fn new(vb: VarBuilder, dim: usize, heads: usize, inter: usize, act: HiddenAct, eps: f64) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), dim, heads)?,
            layer_norm1: layer_norm(dim, eps, vb.pp("layer_norm1"))?,
            mlp: Mlp::new(vb.pp("mlp"), dim, inter, act)?,
            layer_norm2: layer_norm(dim, eps, vb.pp("layer_norm2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.self_attn.forward_residual(&fused::ln(&self.layer_norm1, x)?, mask, Some(x))?;
        self.mlp.forward_residual(&fused::ln(&self.layer_norm2, &h)?, Some(&h))
    }
}

fn encoder_layers(
    vb: VarBuilder,
    n: usize,
    dim: usize,
    heads: usize,
    inter: usize,
    act: HiddenAct,
    eps: f64,
) -> Result<Vec<EncoderLayer>> {
    let vb = vb.pp("encoder").pp("layers");
    (0..n).map(|i| EncoderLayer::new(vb.pp(i), dim, heads, inter, act, eps)).collect()
}

/// `text_model`: token + position embeddings, causal pre-norm transformer, final LayerNorm,
/// pooled at the end-of-text token.
#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    token_embedding: candle_nn::Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    pub config: ClipTextConfig,
}

impl ClipTextTransformer {
    pub fn new(vb: VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let e = vb.pp("embeddings");
        let token_embedding = candle_nn::embedding(c.vocab_size, c.hidden_size, e.pp("token_embedding"))?;
        let position_embedding =
            e.pp("position_embedding").get((c.max_position_embeddings, c.hidden_size), "weight")?;
        let layers = encoder_layers(
            vb.clone(),
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            c.hidden_act,
            c.layer_norm_eps,
        )?;
        let final_layer_norm = layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("final_layer_norm"))?;
        Ok(Self { token_embedding, position_embedding, layers, final_layer_norm, config: c.clone() })
    }

    /// Pooled text feature [B, hidden] for token ids [B, L].
    ///
    /// Padding after the first end-of-text token never reaches the pooled token through the
    /// causal mask, so no padding mask is needed and unpadded prompts give the same result.
    pub fn forward_pooled(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        if l > self.config.max_position_embeddings {
            candle_core::bail!("{l} tokens exceed the text model's {} positions", self.config.max_position_embeddings);
        }
        let pos = self.position_embedding.i(0..l)?;
        let mut h = self.token_embedding.forward(ids)?.broadcast_add(&pos)?;
        let mask = causal_mask(l, h.dtype(), h.device())?;
        for layer in &self.layers {
            h = layer.forward(&h, Some(&mask))?;
        }
        let h = fused::ln(&self.final_layer_norm, &h)?;
        let ids_v: Vec<Vec<u32>> = ids.to_dtype(DType::U32)?.to_vec2()?;
        let idx: Vec<u32> = ids_v.iter().map(|row| pooling_index(row, self.config.eos_token_id) as u32).collect();
        let rows: Vec<Tensor> = (0..b).map(|i| h.i((i, idx[i] as usize))).collect::<Result<_>>()?;
        Tensor::stack(&rows, 0)
    }
}

/// Where the text feature is read: argmax of the ids for the legacy `eos_token_id == 2`,
/// else the first EOS token (the last token when there is none).
pub fn pooling_index(ids: &[u32], eos: u32) -> usize {
    if eos == 2 {
        let mut best = 0;
        for (i, &t) in ids.iter().enumerate() {
            if t > ids[best] {
                best = i;
            }
        }
        best
    } else {
        ids.iter().position(|&t| t == eos).unwrap_or(ids.len().saturating_sub(1))
    }
}

fn causal_mask(l: usize, dtype: DType, dev: &candle_core::Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..l).flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(v, (1, 1, l, l), dev)?.to_dtype(dtype)
}

/// `vision_model.embeddings`: patch conv, class token, position embeddings (resized on demand).
#[derive(Debug)]
pub struct VisionEmbeddings {
    class_embedding: Tensor,
    patch_embedding: Conv2d,
    position_embedding: Tensor,
    patch_size: usize,
    grid: usize,
    /// Interpolated position embeddings per (rows, cols) of patches.
    cache: Mutex<HashMap<(usize, usize), Tensor>>,
}

impl VisionEmbeddings {
    pub fn new(vb: VarBuilder, c: &ClipVisionConfig) -> Result<Self> {
        let grid = c.image_size / c.patch_size;
        let n_pos = grid * grid + 1;
        let conv_cfg = Conv2dConfig { stride: c.patch_size, ..Default::default() };
        let w = vb.pp("patch_embedding").get((c.hidden_size, c.num_channels, c.patch_size, c.patch_size), "weight")?;
        Ok(Self {
            class_embedding: vb.get(c.hidden_size, "class_embedding")?,
            patch_embedding: Conv2d::new(w, None, conv_cfg),
            position_embedding: vb.pp("position_embedding").get((n_pos, c.hidden_size), "weight")?,
            patch_size: c.patch_size,
            grid,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Position embeddings for a `rows × cols` patch grid: `F.interpolate(bicubic,
    /// align_corners=False)` of the trained grid, as transformers' `interpolate_pos_encoding`.
    pub fn position_embeddings(&self, rows: usize, cols: usize) -> Result<Tensor> {
        if rows == self.grid && cols == self.grid {
            return Ok(self.position_embedding.clone());
        }
        let mut cache = self.cache.lock().expect("position cache poisoned");
        if let Some(t) = cache.get(&(rows, cols)) {
            return Ok(t.clone());
        }
        let d = self.position_embedding.dim(1)?;
        let cls = self.position_embedding.i(0..1)?;
        let patches = self.position_embedding.i(1..)?; // [g*g, D], token p = r*g + c
        let x = patches.t()?.reshape((1, d, self.grid, self.grid))?;
        let y = interp::bicubic(&x, rows, cols)?; // [1, D, rows, cols]
        let y = y.reshape((d, rows * cols))?.t()?;
        let t = Tensor::cat(&[&cls, &y], 0)?.contiguous()?;
        cache.insert((rows, cols), t.clone());
        Ok(t)
    }

    /// pixel_values [B, C, H, W] → [B, 1 + (H/p)(W/p), D].
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = pixel_values.dims4()?;
        let (rows, cols) = (h / self.patch_size, w / self.patch_size);
        if rows == 0 || cols == 0 {
            candle_core::bail!("input {h}x{w} is smaller than one {0}x{0} patch", self.patch_size);
        }
        let p = self.patch_embedding.forward(pixel_values)?; // [B, D, rows, cols]
        let d = p.dim(1)?;
        let p = p.flatten_from(2)?.transpose(1, 2)?; // [B, rows*cols, D]
        let cls = self.class_embedding.reshape((1, 1, d))?.broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&cls, &p], 1)?;
        x.broadcast_add(&self.position_embeddings(rows, cols)?)
    }
}

/// `vision_model`: embeddings, `pre_layrnorm` (sic), pre-norm encoder, `post_layernorm`.
#[derive(Debug)]
pub struct ClipVisionTransformer {
    pub embeddings: VisionEmbeddings,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    pub config: ClipVisionConfig,
}

impl ClipVisionTransformer {
    pub fn new(vb: VarBuilder, c: &ClipVisionConfig) -> Result<Self> {
        Ok(Self {
            embeddings: VisionEmbeddings::new(vb.pp("embeddings"), c)?,
            pre_layrnorm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers: encoder_layers(
                vb.clone(),
                c.num_hidden_layers,
                c.hidden_size,
                c.num_attention_heads,
                c.intermediate_size,
                c.hidden_act,
                c.layer_norm_eps,
            )?,
            post_layernorm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("post_layernorm"))?,
            config: c.clone(),
        })
    }

    /// Outputs of the encoder layers in `layers` (0-based, i.e. HF `hidden_states[i + 1]`),
    /// running no layer past the deepest one asked for.
    pub fn forward_layers(&self, pixel_values: &Tensor, layers: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&deepest) = layers.iter().max() else { return Ok(vec![]) };
        if deepest >= self.layers.len() {
            candle_core::bail!("layer {deepest} asked for, the vision model has {}", self.layers.len());
        }
        let mut h = fused::ln(&self.pre_layrnorm, &self.embeddings.forward(pixel_values)?)?;
        let mut out: Vec<Option<Tensor>> = vec![None; layers.len()];
        for (i, layer) in self.layers.iter().enumerate().take(deepest + 1) {
            h = layer.forward(&h, None)?;
            for (slot, &want) in out.iter_mut().zip(layers) {
                if want == i {
                    *slot = Some(h.clone());
                }
            }
        }
        Ok(out.into_iter().map(|t| t.expect("every layer <= deepest was visited")).collect())
    }

    /// `post_layernorm(last_hidden_state[:, 0])`, the pooled image feature [B, D].
    pub fn forward_pooled(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let h = self.forward_layers(pixel_values, &[last])?.remove(0);
        self.post_layernorm.forward(&h.i((.., 0))?.contiguous()?)
    }
}

/// The parts of `CLIPModel` that CLIPSeg uses (its `clip` submodule).
#[derive(Debug)]
pub struct ClipModel {
    pub text_model: ClipTextTransformer,
    pub vision_model: ClipVisionTransformer,
    visual_projection: Linear,
    text_projection: Linear,
}

impl ClipModel {
    pub fn new(
        vb: VarBuilder,
        text: &ClipTextConfig,
        vision: &ClipVisionConfig,
        projection_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            text_model: ClipTextTransformer::new(vb.pp("text_model"), text)?,
            vision_model: ClipVisionTransformer::new(vb.pp("vision_model"), vision)?,
            visual_projection: linear_no_bias(vision.hidden_size, projection_dim, vb.pp("visual_projection"))?,
            text_projection: linear_no_bias(text.hidden_size, projection_dim, vb.pp("text_projection"))?,
        })
    }

    /// `get_text_features`: projected pooled text feature, not normalised.
    pub fn text_features(&self, ids: &Tensor) -> Result<Tensor> {
        self.text_projection.forward(&self.text_model.forward_pooled(ids)?)
    }

    /// `get_image_features`: projected pooled image feature, not normalised.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.visual_projection.forward(&self.vision_model.forward_pooled(pixel_values)?)
    }
}

/// L2-normalise along the last dimension (for zero-shot classification).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
