//! ViT (Dosovitskiy et al.) as Hugging Face's `ViTModel` / `ViTForImageClassification`, loading
//! their checkpoints under the hub's key names (`vit.encoder.layer.N.attention.attention.query`).
//! Any input size works: position embeddings are resized with PyTorch's bicubic interpolation,
//! as transformers does with `interpolate_pos_encoding=True`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{layer_norm, linear, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::clip::EncoderLayer;
use super::{interp, HiddenAct};

/// An `int` or `[h, w]` config entry (`image_size`, `patch_size`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    One(usize),
    Two([usize; 2]),
}

impl Size2 {
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::One(s) => (s, s),
            Size2::Two([h, w]) => (h, w),
        }
    }
}

fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_gelu() -> HiddenAct {
    HiddenAct::Gelu
}
fn d_eps() -> f64 {
    1e-12
}
fn d_image() -> Size2 {
    Size2::One(224)
}
fn d_patch() -> Size2 {
    Size2::One(16)
}
fn d_channels() -> usize {
    3
}
fn d_true() -> bool {
    true
}
fn d_tanh() -> String {
    "tanh".into()
}

/// `ViTConfig`; defaults are transformers' (google/vit-base-patch16-224).
#[derive(Debug, Clone, Deserialize)]
pub struct ViTConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_gelu")]
    pub hidden_act: HiddenAct,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_image")]
    pub image_size: Size2,
    #[serde(default = "d_patch")]
    pub patch_size: Size2,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub pooler_output_size: Option<usize>,
    #[serde(default = "d_tanh")]
    pub pooler_act: String,
    /// `{"0": "cat", ...}`; absent means transformers' two default labels.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

impl Default for ViTConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl ViTConfig {
    /// ViT-B/16 at 224 with `k` labels.
    pub fn base_patch16_224(k: usize) -> Self {
        Self { id2label: Some((0..k).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect()), ..Self::default() }
    }

    pub fn labels(&self) -> Vec<String> {
        id2label_vec(self.id2label.as_ref())
    }
}

/// Labels in id order from a config's `id2label` (transformers' `LABEL_0, LABEL_1` when absent).
pub fn id2label_vec(m: Option<&BTreeMap<String, String>>) -> Vec<String> {
    let Some(m) = m else { return vec!["LABEL_0".into(), "LABEL_1".into()] };
    let mut v: Vec<(usize, &String)> = m.iter().filter_map(|(k, l)| k.parse().ok().map(|i| (i, l))).collect();
    v.sort();
    let n = v.last().map(|(i, _)| i + 1).unwrap_or(0);
    let mut out: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
    for (i, l) in v {
        out[i] = l.clone();
    }
    out
}

/// Maps the CLIP layer names of `clip::EncoderLayer` onto ViT's hub names, so the CLIP modules
/// load ViT checkpoints unchanged.
pub fn vit_layer_names(vb: VarBuilder<'static>) -> VarBuilder<'static> {
    rename_at(
        vb,
        &[
            (".self_attn.q_proj.", ".attention.attention.query."),
            (".self_attn.k_proj.", ".attention.attention.key."),
            (".self_attn.v_proj.", ".attention.attention.value."),
            (".self_attn.out_proj.", ".attention.output.dense."),
            (".layer_norm1.", ".layernorm_before."),
            (".layer_norm2.", ".layernorm_after."),
            (".mlp.fc1.", ".intermediate.dense."),
            (".mlp.fc2.", ".output.dense."),
        ],
    )
}

/// `vb` with substring renames of full keys. The renamer sees full paths but looks them up from
/// the root, so it is installed at the root and the prefix re-applied.
pub fn rename_at(vb: VarBuilder<'static>, map: &'static [(&'static str, &'static str)]) -> VarBuilder<'static> {
    let prefix = vb.prefix();
    let r = vb.root().rename_f(move |k: &str| {
        let mut s = k.to_string();
        for (from, to) in map {
            if s.contains(from) {
                s = s.replacen(from, to, 1);
            }
        }
        s
    });
    if prefix.is_empty() {
        r
    } else {
        r.pp(prefix)
    }
}

/// `embeddings`: patch conv, `cls_token`, `position_embeddings` (resized on demand).
#[derive(Debug)]
pub struct ViTEmbeddings {
    cls_token: Tensor,
    projection: Conv2d,
    position_embeddings: Tensor,
    patch: (usize, usize),
    grid: (usize, usize),
    cache: Mutex<HashMap<(usize, usize), Tensor>>,
}

impl ViTEmbeddings {
    pub fn new(vb: VarBuilder, c: &ViTConfig) -> Result<Self> {
        let (ih, iw) = c.image_size.hw();
        let (ph, pw) = c.patch_size.hw();
        if ph != pw {
            candle_core::bail!("non-square patches {ph}x{pw} are not supported");
        }
        let grid = (ih / ph, iw / pw);
        let d = c.hidden_size;
        let p = vb.pp("patch_embeddings").pp("projection");
        // Hints only matter for fresh variables (VarMap): HF's trunc-normal(0.02) in spirit.
        let w = p.get_with_hints((d, c.num_channels, ph, pw), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let b = p.get_with_hints(d, "bias", candle_nn::Init::Const(0.0))?;
        let small = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        Ok(Self {
            cls_token: vb.get_with_hints((1, 1, d), "cls_token", small)?,
            projection: Conv2d::new(w, Some(b), Conv2dConfig { stride: ph, ..Default::default() }),
            position_embeddings: vb.get_with_hints((1, grid.0 * grid.1 + 1, d), "position_embeddings", small)?,
            patch: (ph, pw),
            grid,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `[1, 1 + rows*cols, D]`: bicubic resize of the trained grid (size-based, no scale offset,
    /// as `ViTEmbeddings.interpolate_pos_encoding`).
    pub fn position_embeddings(&self, rows: usize, cols: usize) -> Result<Tensor> {
        if (rows, cols) == self.grid {
            return Ok(self.position_embeddings.clone());
        }
        if let Some(t) = self.cache.lock().expect("cache").get(&(rows, cols)) {
            return Ok(t.clone());
        }
        let t = interpolate_grid(&self.position_embeddings, self.grid, rows, cols)?;
        self.cache.lock().expect("cache").insert((rows, cols), t.clone());
        Ok(t)
    }

    /// pixel_values [B, C, H, W] → [B, 1 + (H/p)(W/p), D] (a remainder of less than a patch is
    /// dropped by the strided conv, as in transformers).
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = pixel_values.dims4()?;
        let (rows, cols) = (h / self.patch.0, w / self.patch.1);
        if rows == 0 || cols == 0 {
            candle_core::bail!("input {h}x{w} is smaller than one {}x{} patch", self.patch.0, self.patch.1);
        }
        let p = self.projection.forward(pixel_values)?.flatten_from(2)?.transpose(1, 2)?;
        let d = p.dim(2)?;
        let cls = self.cls_token.broadcast_as((b, 1, d))?;
        Tensor::cat(&[&cls, &p], 1)?.broadcast_add(&self.position_embeddings(rows, cols)?)
    }
}

/// Resize `[1, 1 + g0*g1, D]` position embeddings (class token first) to a `rows × cols` grid.
pub fn interpolate_grid(pos: &Tensor, grid: (usize, usize), rows: usize, cols: usize) -> Result<Tensor> {
    let d = pos.dim(2)?;
    let cls = pos.i((.., 0..1))?;
    let x = pos.i((0, 1..))?.t()?.reshape((1, d, grid.0, grid.1))?;
    let y = interp::bicubic(&x, rows, cols)?.reshape((d, rows * cols))?.t()?.unsqueeze(0)?;
    Tensor::cat(&[&cls, &y], 1)?.contiguous()
}

/// `ViTModel`: embeddings, pre-norm encoder, final `layernorm`, optional `pooler`.
#[derive(Debug)]
pub struct ViTModel {
    pub embeddings: ViTEmbeddings,
    layers: Vec<EncoderLayer>,
    layernorm: LayerNorm,
    pooler: Option<Linear>,
    pub config: ViTConfig,
}

/// What `ViTModel.forward` returns.
#[derive(Debug, Clone)]
pub struct ViTOutput {
    /// `[B, T, D]` after the final layernorm.
    pub last_hidden_state: Tensor,
    /// `tanh(dense(last_hidden_state[:, 0]))`, when the checkpoint has a pooler.
    pub pooler_output: Option<Tensor>,
}

impl ViTModel {
    /// `vb` at the model root (`vit` inside a classifier). The pooler is loaded when asked for.
    pub fn new(vb: VarBuilder<'static>, c: &ViTConfig, with_pooler: bool) -> Result<Self> {
        if !c.qkv_bias {
            candle_core::bail!("qkv_bias = false is not supported");
        }
        let vb = vit_layer_names(vb);
        let lv = vb.pp("encoder").pp("layer");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                EncoderLayer::new(
                    lv.pp(i),
                    c.hidden_size,
                    c.num_attention_heads,
                    c.intermediate_size,
                    c.hidden_act,
                    c.layer_norm_eps,
                )
            })
            .collect::<Result<_>>()?;
        let pooler = if with_pooler {
            if c.pooler_act != "tanh" {
                candle_core::bail!("pooler_act '{}' is not supported (tanh only)", c.pooler_act);
            }
            let out = c.pooler_output_size.unwrap_or(c.hidden_size);
            Some(linear(c.hidden_size, out, vb.pp("pooler").pp("dense"))?)
        } else {
            None
        };
        Ok(Self {
            embeddings: ViTEmbeddings::new(vb.pp("embeddings"), c)?,
            layers,
            layernorm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("layernorm"))?,
            pooler,
            config: c.clone(),
        })
    }

    /// HF's `hidden_states`: the embeddings, then every layer's output (before the final norm).
    pub fn hidden_states(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = self.embeddings.forward(pixel_values)?;
        let mut out = Vec::with_capacity(self.layers.len() + 1);
        out.push(h.clone());
        for layer in &self.layers {
            h = layer.forward(&h, None)?;
            out.push(h.clone());
        }
        Ok(out)
    }

    pub fn forward(&self, pixel_values: &Tensor) -> Result<ViTOutput> {
        let mut h = self.embeddings.forward(pixel_values)?;
        for layer in &self.layers {
            h = layer.forward(&h, None)?;
        }
        let last_hidden_state = self.layernorm.forward(&h)?;
        let pooler_output = match &self.pooler {
            Some(p) => Some(p.forward(&last_hidden_state.i((.., 0))?)?.tanh()?),
            None => None,
        };
        Ok(ViTOutput { last_hidden_state, pooler_output })
    }
}

/// `ViTForImageClassification`: `classifier(layernorm(h)[:, 0])`, no pooler.
#[derive(Debug)]
pub struct ViTForImageClassification {
    pub vit: ViTModel,
    pub classifier: Linear,
    pub labels: Vec<String>,
}

impl ViTForImageClassification {
    pub fn new(vb: VarBuilder<'static>, c: &ViTConfig) -> Result<Self> {
        let labels = c.labels();
        Ok(Self {
            vit: ViTModel::new(vb.pp("vit"), c, false)?,
            classifier: linear(c.hidden_size, labels.len(), vb.pp("classifier"))?,
            labels,
        })
    }

    /// A new `K`-class head initialised to zero, as the ViT paper fine-tunes: `vb` supplies the
    /// backbone (`vit.*`), `head` (usually a `VarMap`) the `classifier.*` variables.
    pub fn with_new_head(
        vb: VarBuilder<'static>,
        head: VarBuilder,
        c: &ViTConfig,
        labels: Vec<String>,
    ) -> Result<Self> {
        let k = labels.len();
        let init = candle_nn::Init::Const(0.0);
        let w = head.get_with_hints((k, c.hidden_size), "weight", init)?;
        let b = head.get_with_hints(k, "bias", init)?;
        Ok(Self { vit: ViTModel::new(vb.pp("vit"), c, false)?, classifier: Linear::new(w, Some(b)), labels })
    }

    /// The `[B, D]` feature the head reads: the final-normed class token.
    pub fn features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.vit.forward(pixel_values)?.last_hidden_state.i((.., 0))
    }

    /// Logits `[B, num_labels]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.features(pixel_values)?)
    }
}
