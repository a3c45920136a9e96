//! Swin Transformer (Liu et al.) as Hugging Face's `SwinModel` / `SwinForImageClassification`,
//! under the hub's key names (`swin.encoder.layers.S.blocks.B.attention.self.query`).
//!
//! Follows transformers exactly where it matters for parity: zero padding to whole patches and
//! windows (padded tokens are attended to unless the shift mask hides them), -100 in the shift
//! mask, odd feature maps padded before patch merging, and a stage whose map is no larger than
//! the window using one unshifted window.

use std::collections::BTreeMap;

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::clip::{Attention, Mlp};
use super::vit::{id2label_vec, interpolate_grid, rename_at, Size2};
use super::HiddenAct;

fn d_image() -> Size2 {
    Size2::One(224)
}
fn d_patch() -> usize {
    4
}
fn d_channels() -> usize {
    3
}
fn d_embed() -> usize {
    96
}
fn d_depths() -> Vec<usize> {
    vec![2, 2, 6, 2]
}
fn d_heads() -> Vec<usize> {
    vec![3, 6, 12, 24]
}
fn d_window() -> usize {
    7
}
fn d_ratio() -> f64 {
    4.0
}
fn d_true() -> bool {
    true
}
fn d_gelu() -> HiddenAct {
    HiddenAct::Gelu
}
fn d_eps() -> f64 {
    1e-5
}

/// `SwinConfig`; defaults are transformers' (microsoft/swin-tiny-patch4-window7-224).
#[derive(Debug, Clone, Deserialize)]
pub struct SwinConfig {
    #[serde(default = "d_image")]
    pub image_size: Size2,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_embed")]
    pub embed_dim: usize,
    #[serde(default = "d_depths")]
    pub depths: Vec<usize>,
    #[serde(default = "d_heads")]
    pub num_heads: Vec<usize>,
    #[serde(default = "d_window")]
    pub window_size: usize,
    #[serde(default = "d_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default = "d_gelu")]
    pub hidden_act: HiddenAct,
    #[serde(default)]
    pub use_absolute_embeddings: bool,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

impl Default for SwinConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl SwinConfig {
    /// Swin-T (patch 4, window 7, 224) with `k` labels.
    pub fn tiny_patch4_window7_224(k: usize) -> Self {
        Self { id2label: Some((0..k).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect()), ..Self::default() }
    }

    pub fn labels(&self) -> Vec<String> {
        id2label_vec(self.id2label.as_ref())
    }

    /// Channels of stage `i`: `embed_dim * 2^i`.
    pub fn stage_dim(&self, i: usize) -> usize {
        self.embed_dim << i
    }

    pub fn num_features(&self) -> usize {
        self.stage_dim(self.depths.len() - 1)
    }
}

fn swin_names(vb: VarBuilder<'static>) -> VarBuilder<'static> {
    rename_at(
        vb,
        &[
            (".self_attn.q_proj.", ".attention.self.query."),
            (".self_attn.k_proj.", ".attention.self.key."),
            (".self_attn.v_proj.", ".attention.self.value."),
            (".self_attn.out_proj.", ".attention.output.dense."),
            (".mlp.fc1.", ".intermediate.dense."),
            (".mlp.fc2.", ".output.dense."),
        ],
    )
}

/// `[N*N]` lookup of the `(2w-1)^2` bias table for every (query, key) pair of a `w × w` window.
fn relative_position_index(w: usize) -> Vec<u32> {
    let n = w * w;
    let mut idx = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let dh = (i / w) as i64 - (j / w) as i64 + w as i64 - 1;
            let dw = (i % w) as i64 - (j % w) as i64 + w as i64 - 1;
            idx.push((dh * (2 * w as i64 - 1) + dw) as u32);
        }
    }
    idx
}

/// `[nW, 1, N, N]` additive mask of a shifted `hp × wp` map: tokens from different regions of the
/// cyclic shift may not attend to each other.
fn shift_mask(hp: usize, wp: usize, w: usize, s: usize, dtype: DType, dev: &Device) -> Result<Tensor> {
    let region = |i: usize, len: usize| (i >= len - w) as usize + (i >= len - s) as usize;
    let (nh, nw, n) = (hp / w, wp / w, w * w);
    let mut out = Vec::with_capacity(nh * nw * n * n);
    for wy in 0..nh {
        for wx in 0..nw {
            let id: Vec<usize> = (0..n).map(|t| region(wy * w + t / w, hp) * 3 + region(wx * w + t % w, wp)).collect();
            for a in 0..n {
                for b in 0..n {
                    out.push(if id[a] == id[b] { 0f32 } else { -100.0 });
                }
            }
        }
    }
    Tensor::from_vec(out, (nh * nw, 1, n, n), dev)?.to_dtype(dtype)
}

/// `[B, H, W, C]` → `[B * nW, w*w, C]`, windows in row-major order per image.
fn window_partition(x: &Tensor, w: usize) -> Result<Tensor> {
    let (b, h, wd, c) = x.dims4()?;
    x.reshape((b, h / w, w, wd / w, w, c))?.transpose(2, 3)?.contiguous()?.reshape((b * (h / w) * (wd / w), w * w, c))
}

fn window_reverse(x: &Tensor, w: usize, b: usize, h: usize, wd: usize) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    x.reshape((b, h / w, wd / w, w, w, c))?.transpose(2, 3)?.contiguous()?.reshape((b, h, wd, c))
}

/// One `SwinLayer`: (shifted) window attention and MLP, each pre-norm with a residual.
#[derive(Debug, Clone)]
pub struct SwinBlock {
    layernorm_before: LayerNorm,
    attention: Attention,
    relative_position_bias_table: Tensor,
    layernorm_after: LayerNorm,
    mlp: Mlp,
    num_heads: usize,
    window: usize,
    shift: usize,
}

impl SwinBlock {
    fn new(vb: VarBuilder, c: &SwinConfig, dim: usize, heads: usize, shift: usize) -> Result<Self> {
        let w = c.window_size;
        let inter = (c.mlp_ratio * dim as f64) as usize;
        Ok(Self {
            layernorm_before: layer_norm(dim, c.layer_norm_eps, vb.pp("layernorm_before"))?,
            attention: Attention::new(vb.pp("self_attn"), dim, heads)?,
            relative_position_bias_table: vb
                .pp("attention")
                .pp("self")
                .get(((2 * w - 1) * (2 * w - 1), heads), "relative_position_bias_table")?,
            layernorm_after: layer_norm(dim, c.layer_norm_eps, vb.pp("layernorm_after"))?,
            mlp: Mlp::new(vb.pp("mlp"), dim, inter, c.hidden_act)?,
            num_heads: heads,
            window: w,
            shift,
        })
    }

    /// `[1, heads, N, N]` bias for the configured window.
    fn relative_bias(&self) -> Result<Tensor> {
        let n = self.window * self.window;
        let idx =
            Tensor::from_vec(relative_position_index(self.window), n * n, self.relative_position_bias_table.device())?;
        self.relative_position_bias_table
            .index_select(&idx, 0)?
            .reshape((n, n, self.num_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)
    }

    /// x: `[B, h*w, C]` on an `h × w` map. `always_partition` keeps the configured window and
    /// shift on small maps (padding them), as transformers' `SwinBackbone`.
    pub fn forward(&self, x: &Tensor, (h, w): (usize, usize), always_partition: bool) -> Result<Tensor> {
        // Otherwise a map no larger than the window is one unshifted window (transformers'
        // set_shift_and_window_size); smaller than the window has no bias table to match.
        let (win, shift) =
            if !always_partition && h.min(w) <= self.window { (h.min(w), 0) } else { (self.window, self.shift) };
        if win != self.window {
            candle_core::bail!(
                "a {h}x{w} stage map is smaller than the {0}x{0} window: the input is too small for this Swin (set always_partition to pad it)",
                self.window
            );
        }
        let (b, _, c) = x.dims3()?;
        let mut t = self.layernorm_before.forward(x)?.reshape((b, h, w, c))?;
        let (hp, wp) = (h.div_ceil(win) * win, w.div_ceil(win) * win);
        if hp > h {
            t = t.pad_with_zeros(1, 0, hp - h)?;
        }
        if wp > w {
            t = t.pad_with_zeros(2, 0, wp - w)?;
        }
        if shift > 0 {
            t = t.roll(-(shift as i32), 1)?.roll(-(shift as i32), 2)?;
        }
        let windows = window_partition(&t, win)?;
        let mut mask = self.relative_bias()?;
        if shift > 0 {
            let m = shift_mask(hp, wp, win, shift, t.dtype(), t.device())?.repeat((b, 1, 1, 1))?;
            mask = mask.broadcast_add(&m)?;
        }
        let a = self.attention.forward(&windows, Some(&mask))?;
        let mut a = window_reverse(&a, win, b, hp, wp)?;
        if shift > 0 {
            a = a.roll(shift as i32, 1)?.roll(shift as i32, 2)?;
        }
        if hp > h || wp > w {
            a = a.i((.., 0..h, 0..w))?;
        }
        let x = (x + a.contiguous()?.reshape((b, h * w, c))?)?;
        &x + self.mlp.forward(&self.layernorm_after.forward(&x)?)?
    }
}

/// `SwinPatchMerging`: 2×2 neighbours concatenated (x0 x1 x2 x3 order of the paper), norm, linear.
#[derive(Debug, Clone)]
pub struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

impl PatchMerging {
    fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            norm: layer_norm(4 * dim, 1e-5, vb.pp("norm"))?,
            reduction: linear_no_bias(4 * dim, 2 * dim, vb.pp("reduction"))?,
        })
    }

    fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let mut t = x.reshape((b, h, w, c))?;
        if h % 2 == 1 {
            t = t.pad_with_zeros(1, 0, 1)?;
        }
        if w % 2 == 1 {
            t = t.pad_with_zeros(2, 0, 1)?;
        }
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // [B, h2, r, w2, c, C] → [B, h2, w2, c, r, C]: channel group c*2 + r = torch's
        // cat([x[:, r::2, c::2] for c in 0..2 for r in 0..2]).
        let t = t.reshape((b, h2, 2, w2, 2, c))?.permute((0, 1, 3, 4, 2, 5))?.contiguous()?;
        let t = t.reshape((b, h2 * w2, 4 * c))?;
        self.reduction.forward(&self.norm.forward(&t)?)
    }
}

/// `embeddings`: patch conv (input zero-padded to whole patches), `norm`, optional absolute
/// position embeddings (bicubic-resized for other grids).
#[derive(Debug, Clone)]
pub struct SwinEmbeddings {
    projection: Conv2d,
    norm: LayerNorm,
    position_embeddings: Option<Tensor>,
    patch: usize,
    grid: (usize, usize),
}

impl SwinEmbeddings {
    fn new(vb: VarBuilder, c: &SwinConfig) -> Result<Self> {
        let (ih, iw) = c.image_size.hw();
        let (p, d) = (c.patch_size, c.embed_dim);
        let grid = (ih / p, iw / p);
        let pv = vb.pp("patch_embeddings").pp("projection");
        // Hints only matter for fresh variables (VarMap).
        let w = pv.get_with_hints((d, c.num_channels, p, p), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = pv.get_with_hints(d, "bias", candle_nn::Init::Const(0.0))?;
        let position_embeddings = if c.use_absolute_embeddings {
            let small = candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 };
            Some(vb.get_with_hints((1, grid.0 * grid.1, d), "position_embeddings", small)?)
        } else {
            None
        };
        Ok(Self {
            projection: Conv2d::new(w, Some(bias), Conv2dConfig { stride: p, ..Default::default() }),
            norm: layer_norm(d, 1e-5, vb.pp("norm"))?,
            position_embeddings,
            patch: p,
            grid,
        })
    }

    /// `[B, 3, H, W]` → (`[B, h*w, C]`, (h, w)).
    fn forward(&self, pv: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (_, _, hh, ww) = pv.dims4()?;
        let p = self.patch;
        let mut x = pv.clone();
        if ww % p != 0 {
            x = x.pad_with_zeros(3, 0, p - ww % p)?;
        }
        if hh % p != 0 {
            x = x.pad_with_zeros(2, 0, p - hh % p)?;
        }
        let e = self.projection.forward(&x)?;
        let (_, _, h, w) = e.dims4()?;
        let mut e = self.norm.forward(&e.flatten_from(2)?.transpose(1, 2)?)?;
        if let Some(pos) = &self.position_embeddings {
            // transformers sizes the grid from the unpadded input (height // patch).
            let (gh, gw) = (hh / p, ww / p);
            if (gh, gw) != (h, w) {
                candle_core::bail!("absolute position embeddings need an input that is a multiple of the {p}px patch");
            }
            let pos = if (h, w) == self.grid {
                pos.clone()
            } else {
                // Same resize as ViT's, without a class token: prepend a dummy one.
                let d = pos.dim(2)?;
                let with_cls = Tensor::cat(&[&Tensor::zeros((1, 1, d), pos.dtype(), pos.device())?, pos], 1)?;
                interpolate_grid(&with_cls, self.grid, h, w)?.i((.., 1..))?
            };
            e = e.broadcast_add(&pos)?;
        }
        Ok((e, (h, w)))
    }
}

/// Everything `SwinModel.forward` gives, plus the pyramid.
#[derive(Debug, Clone)]
pub struct SwinOutput {
    /// Each stage's output before patch merging, `[B, C_i, H_i, W_i]` (strides 4, 8, 16, 32 for
    /// patch 4): transformers' `reshaped_hidden_states[1:]` with
    /// `output_hidden_states_before_downsampling=True`, without the backbone's extra norms.
    pub stages: Vec<Tensor>,
    /// `[B, L, C]` after the final `layernorm`.
    pub last_hidden_state: Tensor,
    /// `[B, C]`, the token average of `last_hidden_state`.
    pub pooler_output: Tensor,
}

/// `SwinModel`.
#[derive(Debug, Clone)]
pub struct SwinModel {
    embeddings: SwinEmbeddings,
    stages: Vec<(Vec<SwinBlock>, Option<PatchMerging>)>,
    layernorm: LayerNorm,
    pub config: SwinConfig,
    /// Pad small stage maps to whole windows instead of shrinking the window (`SwinBackbone`'s
    /// `always_partition=True`): any input size works. Off by default, as `SwinModel`.
    pub always_partition: bool,
}

impl SwinModel {
    /// `vb` at the model root (`swin` inside a classifier).
    pub fn new(vb: VarBuilder<'static>, c: &SwinConfig) -> Result<Self> {
        if !c.qkv_bias {
            candle_core::bail!("qkv_bias = false is not supported");
        }
        if c.depths.len() != c.num_heads.len() || c.depths.is_empty() {
            candle_core::bail!("depths {:?} and num_heads {:?} differ in length", c.depths, c.num_heads);
        }
        let vb = swin_names(vb);
        let n = c.depths.len();
        let mut stages = Vec::with_capacity(n);
        for s in 0..n {
            let sv = vb.pp("encoder").pp("layers").pp(s);
            let dim = c.stage_dim(s);
            let blocks = (0..c.depths[s])
                .map(|i| {
                    let shift = if i % 2 == 0 { 0 } else { c.window_size / 2 };
                    SwinBlock::new(sv.pp("blocks").pp(i), c, dim, c.num_heads[s], shift)
                })
                .collect::<Result<Vec<_>>>()?;
            let down = if s + 1 < n { Some(PatchMerging::new(sv.pp("downsample"), dim)?) } else { None };
            stages.push((blocks, down));
        }
        Ok(Self {
            embeddings: SwinEmbeddings::new(vb.pp("embeddings"), c)?,
            stages,
            layernorm: layer_norm(c.num_features(), c.layer_norm_eps, vb.pp("layernorm"))?,
            config: c.clone(),
            always_partition: false,
        })
    }

    pub fn forward(&self, pixel_values: &Tensor) -> Result<SwinOutput> {
        let (mut x, mut hw) = self.embeddings.forward(pixel_values)?;
        let b = x.dim(0)?;
        let mut stages = Vec::with_capacity(self.stages.len());
        for (blocks, down) in &self.stages {
            for blk in blocks {
                x = blk.forward(&x, hw, self.always_partition)?;
            }
            let c = x.dim(2)?;
            stages.push(x.reshape((b, hw.0, hw.1, c))?.permute((0, 3, 1, 2))?.contiguous()?);
            if let Some(m) = down {
                x = m.forward(&x, hw)?;
                hw = (hw.0.div_ceil(2), hw.1.div_ceil(2));
            }
        }
        let last_hidden_state = self.layernorm.forward(&x)?;
        let pooler_output = last_hidden_state.mean(1)?;
        Ok(SwinOutput { stages, last_hidden_state, pooler_output })
    }

    /// The four-stage pyramid `[B, C_i, H_i, W_i]`, for use as a segmentation encoder.
    pub fn forward_features(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self.forward(pixel_values)?.stages)
    }
}

/// `SwinForImageClassification`: `classifier(mean(layernorm(h)))`.
#[derive(Debug, Clone)]
pub struct SwinForImageClassification {
    pub swin: SwinModel,
    pub classifier: Linear,
    pub labels: Vec<String>,
}

impl SwinForImageClassification {
    pub fn new(vb: VarBuilder<'static>, c: &SwinConfig) -> Result<Self> {
        let labels = c.labels();
        Ok(Self {
            swin: SwinModel::new(vb.pp("swin"), c)?,
            classifier: linear(c.num_features(), labels.len(), vb.pp("classifier"))?,
            labels,
        })
    }

    /// Logits `[B, num_labels]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.swin.forward(pixel_values)?.pooler_output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_index_matches_transformers() {
        // torch: SwinRelativePositionBias(1, (2, 2)).relative_position_index
        assert_eq!(relative_position_index(2), vec![4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
    }

    #[test]
    fn shift_mask_blocks_other_regions() {
        // 4x4 map, window 2, shift 1: the last window mixes four regions.
        let m = shift_mask(4, 4, 2, 1, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.dims(), &[4, 1, 4, 4]);
        let v: Vec<f32> = m.i((0, 0)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&x| x == 0.0));
        let last: Vec<f32> = m.i((3, 0, 0)).unwrap().to_vec1().unwrap();
        assert_eq!(last, vec![0.0, -100.0, -100.0, -100.0]);
    }
}
