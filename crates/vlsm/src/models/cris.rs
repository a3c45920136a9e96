//! CRIS (Wang et al., CVPR 2022) as medvlsm runs it: CLIP ResNet features, a text-gated FPN
//! neck, a vision-language transformer decoder and a projector whose sentence feature becomes a
//! per-sample 3×3 kernel; logits are upsampled (bicubic, align_corners) to the input size.
//!
//! Model directory (`loader::cris` reads it): `config.json` (`model_type: "cris"`, the fields of
//! [`CrisConfig`]; without `backbone`, or with only some of its fields, the CLIP backbone is read
//! off the weights as OpenAI CLIP's `build_model` does) or, instead of `config.json`,
//! CRIS.pytorch's yaml (its `TRAIN` section: `word_len`, `word_dim`, `vis_dim`, `fpn_in`,
//! `fpn_out`, `num_layers`, `num_head`, `dim_ffn`, `input_size`), and the weights
//! (`cris.pth`/`cris.pt`, any `torch.save` of the state dict at the top or under `state_dict`,
//! with or without DataParallel's `module.` prefix, or `model.safetensors`).

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{conv2d, layer_norm, linear, linear_no_bias, BatchNorm, Conv2d, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::interp;
use super::resnet_clip::{bn, ClipResNet, ClipResNetConfig, ConvBn, PackedAttention};
use super::seg::{square_processor, ModelKind, SegModel, WithTokenizer};
use crate::preprocess::ImageProcessorConfig;
use crate::preprocess::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::tokenize::ClipTokenizer;

fn d_backbone() -> ClipResNetConfig {
    ClipResNetConfig::rn50()
}
fn d_word_len() -> usize {
    77
}
fn d_fpn_in() -> [usize; 3] {
    [512, 1024, 1024]
}
fn d_fpn_out() -> [usize; 3] {
    [256, 512, 1024]
}
fn d_vis() -> usize {
    512
}
fn d_word() -> usize {
    1024
}
fn d_layers() -> usize {
    3
}
fn d_heads() -> usize {
    8
}
fn d_ffn() -> usize {
    2048
}
fn d_img() -> usize {
    416
}
fn d_threshold() -> f32 {
    0.35
}

/// medvlsm's `configs/model/cris.yaml` (RN50) plus the CLIP backbone's hyper-parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct CrisConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default = "d_backbone")]
    pub backbone: ClipResNetConfig,
    #[serde(default = "d_word_len")]
    pub word_len: usize,
    #[serde(default = "d_fpn_in")]
    pub fpn_in: [usize; 3],
    #[serde(default = "d_fpn_out")]
    pub fpn_out: [usize; 3],
    #[serde(default = "d_vis")]
    pub vis_dim: usize,
    #[serde(default = "d_word")]
    pub word_dim: usize,
    #[serde(default = "d_layers")]
    pub num_layers: usize,
    #[serde(default = "d_heads")]
    pub num_head: usize,
    #[serde(default = "d_ffn")]
    pub dim_ffn: usize,
    #[serde(default = "d_img")]
    pub img_size: usize,
    #[serde(default = "d_threshold")]
    pub threshold: f32,
}

impl Default for CrisConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl CrisConfig {
    /// CRIS-R101: `fpn_in [512, 1024, 512]`, `word_dim 512`.
    pub fn rn101() -> Self {
        Self { backbone: ClipResNetConfig::rn101(), fpn_in: [512, 1024, 512], word_dim: 512, ..Self::default() }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        super::unet::validate_threshold(self.threshold)?;
        let b = &self.backbone;
        let (tw, th) = (b.transformer_width, b.transformer_heads);
        if th == 0 || !tw.is_multiple_of(th) {
            return Err(format!(
                "backbone.transformer_heads {th} does not divide the text width {tw} (CLIP's width / 64 is {}; give backbone.transformer_heads)",
                tw / 64
            ));
        }
        let w = b.vision_width;
        let want_in = [w * 8, w * 16, b.embed_dim];
        if self.fpn_in != want_in {
            return Err(format!("fpn_in {:?} does not match the backbone's C3/C4/C5 {want_in:?}", self.fpn_in));
        }
        if self.word_dim != b.embed_dim {
            return Err(format!("word_dim {} must equal the backbone's embed_dim {}", self.word_dim, b.embed_dim));
        }
        if self.vis_dim != self.fpn_out[1] || self.vis_dim != b.transformer_width {
            return Err(format!(
                "vis_dim {} must equal fpn_out[1] {} and the text width {}",
                self.vis_dim, self.fpn_out[1], b.transformer_width
            ));
        }
        if !self.img_size.is_multiple_of(32) {
            return Err(format!("img_size {} is not a multiple of 32", self.img_size));
        }
        Ok(())
    }
}

/// `conv_layer`: Conv (no bias) + BN + ReLU under `.0` / `.1`.
#[derive(Debug, Clone)]
struct ConvLayer(ConvBn);

impl ConvLayer {
    fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        Ok(Self(ConvBn::new(vb.pp("0"), vb.pp("1"), cin, cout, k)?))
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)?.relu()
    }
}

fn up2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    interp::bilinear(x, 2 * h, 2 * w)
}

/// `FPN`: C5 gated by the sentence feature, fused top-down with C4 and C3 at stride 16, then
/// CoordConv.
#[derive(Debug, Clone)]
pub struct Fpn {
    txt_proj: (Linear, BatchNorm),
    f1_v_proj: ConvLayer,
    norm_layer: BatchNorm,
    f2_v_proj: ConvLayer,
    f2_cat: ConvLayer,
    f3_v_proj: ConvLayer,
    f3_cat: ConvLayer,
    f4_proj5: ConvLayer,
    f4_proj4: ConvLayer,
    f4_proj3: ConvLayer,
    aggr: ConvLayer,
    coord: ConvLayer,
    coord2: ConvLayer,
}

impl Fpn {
    pub fn new(vb: VarBuilder, i: [usize; 3], o: [usize; 3]) -> Result<Self> {
        Ok(Self {
            txt_proj: (linear_no_bias(i[2], o[2], vb.pp("txt_proj.0"))?, bn(vb.pp("txt_proj.1"), o[2])?),
            f1_v_proj: ConvLayer::new(vb.pp("f1_v_proj"), i[2], o[2], 1)?,
            norm_layer: bn(vb.pp("norm_layer.0"), o[2])?,
            f2_v_proj: ConvLayer::new(vb.pp("f2_v_proj"), i[1], o[1], 3)?,
            f2_cat: ConvLayer::new(vb.pp("f2_cat"), o[2] + o[1], o[1], 1)?,
            f3_v_proj: ConvLayer::new(vb.pp("f3_v_proj"), i[0], o[0], 3)?,
            f3_cat: ConvLayer::new(vb.pp("f3_cat"), o[0] + o[1], o[1], 1)?,
            f4_proj5: ConvLayer::new(vb.pp("f4_proj5"), o[2], o[1], 3)?,
            f4_proj4: ConvLayer::new(vb.pp("f4_proj4"), o[1], o[1], 3)?,
            f4_proj3: ConvLayer::new(vb.pp("f4_proj3"), o[1], o[1], 3)?,
            aggr: ConvLayer::new(vb.pp("aggr"), 3 * o[1], o[1], 1)?,
            coord: ConvLayer::new(vb.pp("coordconv.0.conv1"), o[1] + 2, o[1], 3)?,
            coord2: ConvLayer::new(vb.pp("coordconv.1"), o[1], o[1], 3)?,
        })
    }

    pub fn forward(&self, v3: &Tensor, v4: &Tensor, v5: &Tensor, state: &Tensor) -> Result<Tensor> {
        let s = self.txt_proj.1.forward_t(&self.txt_proj.0.forward(state)?, false)?.relu()?;
        let s = s.unsqueeze(2)?.unsqueeze(3)?;
        let f5 = self.f1_v_proj.forward(v5)?.broadcast_mul(&s)?;
        let f5 = self.norm_layer.forward_t(&f5, false)?.relu()?;
        let f4 = self.f2_cat.forward(&Tensor::cat(&[&self.f2_v_proj.forward(v4)?, &up2(&f5)?], 1)?)?;
        let f3 = self.f3_v_proj.forward(v3)?.avg_pool2d(2)?;
        let f3 = self.f3_cat.forward(&Tensor::cat(&[&f3, &f4], 1)?)?;
        let q = Tensor::cat(
            &[&self.f4_proj3.forward(&f3)?, &self.f4_proj4.forward(&f4)?, &up2(&self.f4_proj5.forward(&f5)?)?],
            1,
        )?;
        let q = self.aggr.forward(&q)?;
        self.coord2.forward(&self.coord.forward(&add_coord(&q)?)?)
    }
}

/// CoordConv's two extra channels: x then y, each `linspace(-1, 1)`.
fn add_coord(x: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = x.dims4()?;
    let lin = |n: usize| -> Vec<f32> {
        (0..n).map(|i| if n == 1 { -1.0 } else { -1.0 + 2.0 * i as f32 / (n - 1) as f32 }).collect()
    };
    let dev = x.device();
    let xs = Tensor::from_vec(lin(w), (1, 1, 1, w), dev)?.broadcast_as((b, 1, h, w))?;
    let ys = Tensor::from_vec(lin(h), (1, 1, h, 1), dev)?.broadcast_as((b, 1, h, w))?;
    Tensor::cat(&[x, &xs.to_dtype(x.dtype())?, &ys.to_dtype(x.dtype())?], 1)
}

/// 1-D sine position encoding [L, d].
fn pos1d(d: usize, l: usize) -> Vec<f32> {
    let mut pe = vec![0f32; l * d];
    for p in 0..l {
        for i in (0..d).step_by(2) {
            let div = (-(10000f64.ln()) * i as f64 / d as f64).exp() as f32;
            let a = p as f32 * div;
            pe[p * d + i] = a.sin();
            pe[p * d + i + 1] = a.cos();
        }
    }
    pe
}

/// 2-D sine position encoding [H·W, d]: first half of the channels encode x, second half y.
fn pos2d(d: usize, h: usize, w: usize) -> Vec<f32> {
    let half = d / 2;
    let mut pe = vec![0f32; h * w * d];
    for i in (0..half).step_by(2) {
        let div = (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32;
        for y in 0..h {
            for x in 0..w {
                let o = (y * w + x) * d;
                let (ax, ay) = (x as f32 * div, y as f32 * div);
                pe[o + i] = ax.sin();
                pe[o + i + 1] = ax.cos();
                pe[o + half + i] = ay.sin();
                pe[o + half + i + 1] = ay.cos();
            }
        }
    }
    pe
}

/// `TransformerDecoderLayer`: pre-norm self-attention over pixels, cross-attention to words,
/// FFN (Linear → ReLU → LayerNorm → Linear), each attention output normalised before the residual.
#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: PackedAttention,
    multihead_attn: PackedAttention,
    ffn0: Linear,
    ffn3: LayerNorm,
    ffn4: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    self_attn_norm: LayerNorm,
    cross_attn_norm: LayerNorm,
}

impl DecoderLayer {
    fn new(vb: VarBuilder, d: usize, heads: usize, ffn: usize) -> Result<Self> {
        let ln = |n: &str, k: usize| layer_norm(k, 1e-5, vb.pp(n));
        Ok(Self {
            self_attn: PackedAttention::new(vb.pp("self_attn"), d, heads)?,
            multihead_attn: PackedAttention::new(vb.pp("multihead_attn"), d, heads)?,
            ffn0: linear(d, ffn, vb.pp("ffn.0"))?,
            ffn3: ln("ffn.3", ffn)?,
            ffn4: linear(ffn, d, vb.pp("ffn.4"))?,
            norm1: ln("norm1", d)?,
            norm2: ln("norm2", d)?,
            norm3: ln("norm3", d)?,
            self_attn_norm: ln("self_attn_norm", d)?,
            cross_attn_norm: ln("cross_attn_norm", d)?,
        })
    }

    fn forward(&self, v: &Tensor, txt: &Tensor, vis_pos: &Tensor, txt_pos: &Tensor, pad: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(v)?;
        let q = h.broadcast_add(vis_pos)?;
        let v = (v + self.self_attn_norm.forward(&self.self_attn.forward(&q, &q, &h, None)?)?)?;
        let h = self.norm2.forward(&v)?;
        let a =
            self.multihead_attn.forward(&h.broadcast_add(vis_pos)?, &txt.broadcast_add(txt_pos)?, txt, Some(pad))?;
        let v = (v + self.cross_attn_norm.forward(&a)?)?;
        let f = self.ffn4.forward(&self.ffn3.forward(&self.ffn0.forward(&self.norm3.forward(&v)?)?.relu()?)?)?;
        v + f
    }
}

#[derive(Debug, Clone)]
pub struct TransformerDecoder {
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
}

impl TransformerDecoder {
    pub fn new(vb: VarBuilder, n: usize, d: usize, heads: usize, ffn: usize) -> Result<Self> {
        Ok(Self {
            layers: (0..n).map(|i| DecoderLayer::new(vb.pp("layers").pp(i), d, heads, ffn)).collect::<Result<_>>()?,
            norm: layer_norm(d, 1e-5, vb.pp("norm"))?,
        })
    }

    /// vis [B, C, H, W], txt [B, L, C], `pad` [B, L] true (1) where the word is padding.
    pub fn forward(&self, vis: &Tensor, txt: &Tensor, pad: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = vis.dims4()?;
        let l = txt.dim(1)?;
        let dev = vis.device();
        let vis_pos = Tensor::from_vec(pos2d(c, h, w), (1, h * w, c), dev)?.to_dtype(vis.dtype())?;
        let txt_pos = Tensor::from_vec(pos1d(txt.dim(2)?, l), (1, l, txt.dim(2)?), dev)?.to_dtype(vis.dtype())?;
        // key_padding_mask → additive [B, 1, 1, L].
        let pad = (pad.to_dtype(vis.dtype())? * -1e9)?.reshape((b, 1, 1, l))?;
        let mut v = vis.flatten_from(2)?.transpose(1, 2)?; // [B, HW, C]
        for layer in &self.layers {
            v = layer.forward(&v, txt, &vis_pos, &txt_pos, &pad)?;
        }
        self.norm.forward(&v)?.transpose(1, 2)?.reshape((b, c, h, w))
    }
}

/// `Projector`: visual features up to stride 4, convolved with a 3×3 kernel (+ bias) that a
/// linear layer makes from each sample's sentence feature.
#[derive(Debug, Clone)]
pub struct Projector {
    vis1: ConvLayer,
    vis3: ConvLayer,
    vis4: Conv2d,
    txt: Linear,
    in_dim: usize,
}

impl Projector {
    pub fn new(vb: VarBuilder, word_dim: usize, in_dim: usize) -> Result<Self> {
        let v = vb.pp("vis");
        Ok(Self {
            vis1: ConvLayer::new(v.pp("1"), 2 * in_dim, 2 * in_dim, 3)?,
            vis3: ConvLayer::new(v.pp("3"), 2 * in_dim, in_dim, 3)?,
            vis4: conv2d(in_dim, in_dim, 1, Default::default(), v.pp("4"))?,
            txt: linear(word_dim, in_dim * 9 + 1, vb.pp("txt"))?,
            in_dim,
        })
    }

    /// Pixel features [B, in_dim, 4h, 4w] (the z_v of the contrastive loss).
    pub fn pixel_features(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.vis1.forward(&up2(x)?)?;
        self.vis4.forward(&self.vis3.forward(&up2(&x)?)?)
    }

    /// Logits [B, 1, 4h, 4w]: each sample's pixels against its own dynamic kernel.
    pub fn forward(&self, x: &Tensor, state: &Tensor) -> Result<Tensor> {
        let x = self.pixel_features(x)?;
        let (b, c, h, w) = x.dims4()?;
        let k = self.txt.forward(state)?;
        let weight = k.narrow(1, 0, c * 9)?.reshape((b, c, 3, 3))?.contiguous()?;
        let bias = k.narrow(1, c * 9, 1)?.reshape((1, b, 1, 1))?;
        // One grouped convolution: group i is sample i's channels with kernel i.
        let y = x.reshape((1, b * c, h, w))?.conv2d(&weight, 1, 1, 1, b)?;
        debug_assert_eq!(self.in_dim, c);
        y.broadcast_add(&bias)?.transpose(0, 1)
    }
}

/// `F.interpolate(x, size, mode="bicubic", align_corners=True)` along one axis, as a matrix.
fn bicubic_ac_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let c1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = if n_out > 1 { (n_in as f64 - 1.0) / (n_out as f64 - 1.0) } else { 0.0 };
    let mut m = vec![0f64; n_out * n_in];
    for o in 0..n_out {
        let real = scale * o as f64;
        let i0 = real.floor();
        let t = real - i0;
        for (k, wk) in [c2(t + 1.0), c1(t), c1(1.0 - t), c2(2.0 - t)].iter().enumerate() {
            let idx = (i0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += wk;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Bicubic (align_corners=True) resize of [B, C, H, W] to `size`×`size` by two matmuls.
pub fn bicubic_align_corners(x: &Tensor, size: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let dev = x.device();
    let ah = Tensor::from_vec(bicubic_ac_matrix(h, size), (size, h), dev)?.to_dtype(x.dtype())?;
    let aw = Tensor::from_vec(bicubic_ac_matrix(w, size), (size, w), dev)?.to_dtype(x.dtype())?;
    let y = x.reshape((b * c * h, w))?.matmul(&aw.t()?)?.reshape((b * c, h, size))?;
    ah.broadcast_left(b * c)?.matmul(&y)?.reshape((b, c, size, size))
}

/// `F.interpolate(mask, (h, w), mode="nearest")`: source index `floor(dst * in / out)`.
pub fn nearest(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = x.dims4()?;
    let idx = |n_in: usize, n_out: usize| -> Vec<u32> {
        (0..n_out).map(|o| (((o as f64) * n_in as f64 / n_out as f64).floor() as usize).min(n_in - 1) as u32).collect()
    };
    let dev = x.device();
    let rows = Tensor::new(idx(ih, h), dev)?;
    let cols = Tensor::new(idx(iw, w), dev)?;
    x.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// The text-to-pixel contrastive loss as CRIS trains it: binary cross-entropy with logits of
/// the dynamic-kernel response `pred` [B, 1, h, w] against `mask` [B, 1, H, W] resized
/// (nearest) to h×w, averaged over pixels.
pub fn contrastive_loss(pred: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = pred.dims4()?;
    let y = nearest(mask, h, w)?.to_dtype(pred.dtype())?;
    // max(x, 0) - x·y + log(1 + exp(-|x|)), the stable form.
    let l = ((pred.relu()? - (pred * &y)?)? + (pred.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    l.mean_all()
}

/// Intermediate results of one forward pass (for tests and inspection).
#[derive(Debug)]
pub struct CrisOutputs {
    pub c3: Tensor,
    pub c4: Tensor,
    pub c5: Tensor,
    pub word_feats: Tensor,
    pub state: Tensor,
    pub fq: Tensor,
    pub decoded: Tensor,
    /// Stride-4 logits [B, 1, S/4, S/4].
    pub pred: Tensor,
    /// medvlsm's logits at the input size [B, 1, S, S].
    pub logits: Tensor,
}

#[derive(Debug, Clone)]
pub struct Cris {
    pub backbone: ClipResNet,
    pub neck: Fpn,
    pub decoder: TransformerDecoder,
    pub proj: Projector,
    pub config: CrisConfig,
}

impl Cris {
    /// All weights from one VarBuilder, CRIS's names (`backbone.*`, `neck.*`, `decoder.*`, `proj.*`).
    pub fn new(vb: VarBuilder, c: &CrisConfig) -> Result<Self> {
        Self::with_backbone(vb.pp("backbone"), vb, c)
    }

    /// The backbone from an OpenAI CLIP ResNet state dict (`visual.*`, `transformer.*`, ...),
    /// the rest, and `backbone.visual.attnpool.connect.*` which CLIP lacks, from `vb`.
    pub fn with_backbone(clip: VarBuilder, vb: VarBuilder, c: &CrisConfig) -> Result<Self> {
        c.validate().map_err(candle_core::Error::Msg)?;
        let connect = vb.pp("backbone.visual.attnpool.connect");
        Ok(Self {
            backbone: ClipResNet::new(clip, connect, &c.backbone)?,
            neck: Fpn::new(vb.pp("neck"), c.fpn_in, c.fpn_out)?,
            decoder: TransformerDecoder::new(vb.pp("decoder"), c.num_layers, c.vis_dim, c.num_head, c.dim_ffn)?,
            proj: Projector::new(vb.pp("proj"), c.word_dim, c.vis_dim / 2)?,
            config: c.clone(),
        })
    }

    /// `pad_mask` as CRIS builds it: id 0 is padding. (medvlsm feeds CLIP-tokenizer ids
    /// padded with 49407, so nothing is masked there.)
    pub fn pad_mask(ids: &Tensor) -> Result<Tensor> {
        ids.to_dtype(DType::U32)?.eq(0u32)
    }

    pub fn forward_all(&self, img: &Tensor, ids: &Tensor) -> Result<CrisOutputs> {
        let (c3, c4, c5) = self.backbone.encode_image(img)?;
        let (word_feats, state) = self.backbone.encode_text(ids)?;
        let fq = self.neck.forward(&c3, &c4, &c5, &state)?;
        let decoded = self.decoder.forward(&fq, &word_feats, &Self::pad_mask(ids)?)?;
        let pred = self.proj.forward(&decoded, &state)?;
        let (_, _, h, w) = img.dims4()?;
        if h != w {
            candle_core::bail!("CRIS takes square inputs, got {h}x{w}");
        }
        let logits = bicubic_align_corners(&pred, h)?;
        Ok(CrisOutputs { c3, c4, c5, word_feats, state, fq, decoded, pred, logits })
    }

    /// Logits [B, 1, S, S] for images [B, 3, S, S] and token ids [B, word_len].
    pub fn forward(&self, img: &Tensor, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_all(img, ids)?.logits)
    }

    /// Probabilities above the threshold (0.35 in CRIS and medvlsm).
    pub fn predict_mask(&self, logits: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(logits)?.ge(self.config.threshold as f64)
    }
}

/// CRIS.pytorch's `tokenize(text, word_len, truncate=True)` (utils/dataset.py) on the CLIP
/// tokenizer's `[sot, …, eot]` ids: cut to `word_len` with the end token `eot` as the last id
/// (CRIS pools the sentence feature at the largest id, the end token), then zero-padded.
pub fn word_ids(ids: &[u32], word_len: usize, eot: u32) -> Vec<u32> {
    let mut v: Vec<u32> = ids.iter().copied().take(word_len).collect();
    if ids.len() > word_len {
        if let Some(last) = v.last_mut() {
            *last = eot;
        }
    }
    v.resize(word_len, 0);
    v
}

/// CRIS for `pipeline::Segmenter`: the cached features are the backbone's C3-C5; the text
/// encoder, text-gated neck, decoder and projector run per prompt.
impl SegModel for WithTokenizer<Cris, ClipTokenizer> {
    fn kind(&self) -> ModelKind {
        ModelKind::Cris
    }

    /// As medvlsm: resize to the square input, CLIP mean/std.
    fn image_processor(&self) -> ImageProcessorConfig {
        square_processor(self.model.config.img_size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    }

    fn default_threshold(&self) -> f32 {
        self.model.config.threshold
    }

    fn encode_images(&self, pixel_values: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        let (c3, c4, c5) = self.model.backbone.encode_image(pixel_values)?;
        Ok(vec![c3, c4, c5])
    }

    /// CRIS reads word features too, so the "conditional" is the token ids themselves, truncated
    /// or zero-padded to `word_len` ([N, word_len]).
    fn text_conditional(&self, prompts: &[String], dev: &Device) -> anyhow::Result<Tensor> {
        let l = self.model.config.word_len;
        let mut rows = Vec::with_capacity(prompts.len());
        for p in prompts {
            rows.push(word_ids(&self.tokenizer.encode(p)?, l, self.tokenizer.eot_id()));
        }
        let n = rows.len();
        Ok(Tensor::from_vec(rows.concat(), (n, l), dev)?)
    }

    /// Text encoder, text-gated FPN, decoder and projector for each prompt (ids [N, L]) over
    /// one image's cached C3-C5 → logits [N, S, S].
    fn decode(&self, features: &[Tensor], ids: &Tensor) -> anyhow::Result<Tensor> {
        let m = &self.model;
        let n = ids.dim(0)?;
        let expand = |t: &Tensor| -> Result<Tensor> {
            let (_, ch, h, w) = t.dims4()?;
            t.broadcast_as((n, ch, h, w))?.contiguous()
        };
        let (c3, c4, c5) = (expand(&features[0])?, expand(&features[1])?, expand(&features[2])?);
        let (words, state) = m.backbone.encode_text(ids)?;
        let fq = m.neck.forward(&c3, &c4, &c5, &state)?;
        let dec = m.decoder.forward(&fq, &words, &Cris::pad_mask(ids)?)?;
        let pred = m.proj.forward(&dec, &state)?;
        let (_, _, ph, _) = pred.dims4()?;
        Ok(bicubic_align_corners(&pred, ph * 4)?.squeeze(1)?)
    }
}

/// Seconds per forward pass of full-size CRIS (RN50, 416 px, batch 1, word_len 77) with random
/// weights, after one warm-up pass; for `vlsm bench cris`.
pub fn bench(iters: usize, dev: &Device) -> anyhow::Result<Vec<f64>> {
    let c = CrisConfig::default();
    let vm = candle_nn::VarMap::new();
    let m = Cris::new(VarBuilder::from_varmap(&vm, DType::F32, dev), &c)?;
    let img = Tensor::randn(0f32, 1.0, (1, 3, c.img_size, c.img_size), dev)?;
    let mut ids = vec![0u32; c.word_len];
    ids[..4].copy_from_slice(&[49406, 320, 1929, 49407]);
    let ids = Tensor::from_vec(ids, (1, c.word_len), dev)?;
    let mut times = vec![];
    for i in 0..=iters {
        let t = std::time::Instant::now();
        m.forward(&img, &ids)?.flatten_all()?.to_vec1::<f32>()?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_corners_keeps_the_corners() {
        let m = bicubic_ac_matrix(4, 7);
        assert!((m[0] - 1.0).abs() < 1e-6 && (m[6 * 4 + 3] - 1.0).abs() < 1e-6);
        for r in 0..7 {
            let s: f32 = m[r * 4..(r + 1) * 4].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn loss_is_bce_with_logits() {
        let dev = Device::Cpu;
        let pred = Tensor::new(&[[[[2f32, -1.0], [0.0, 3.0]]]], &dev).unwrap();
        let mask = Tensor::new(&[[[[1f32, 0.0], [1.0, 0.0]]]], &dev).unwrap();
        let got = contrastive_loss(&pred, &mask).unwrap().to_scalar::<f32>().unwrap();
        let bce =
            |x: f32, y: f32| -(y * (1.0 / (1.0 + (-x).exp())).ln() + (1.0 - y) * (1.0 - 1.0 / (1.0 + (-x).exp())).ln());
        let want = (bce(2.0, 1.0) + bce(-1.0, 0.0) + bce(0.0, 1.0) + bce(3.0, 0.0)) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
