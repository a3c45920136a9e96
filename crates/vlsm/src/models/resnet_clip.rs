//! OpenAI CLIP with a ModifiedResNet image tower (RN50, RN101), with OpenAI's state-dict names,
//! as CRIS uses it: the image tower returns C3, C4 and a spatial attention-pooled C5; the text
//! tower returns per-token features and the projected end-of-text feature.

use candle_core::{DType, IndexOp, Module, ModuleT, Result, Tensor};
use candle_nn::{
    batch_norm, conv2d_no_bias, layer_norm, linear, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, LayerNorm,
    Linear, VarBuilder,
};
use serde::{Deserialize, Serialize};

use super::{clip::pooling_index, interp, quick_gelu};

/// CLIP's hyper-parameters, as `build_model` reads them off a state dict.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ClipResNetConfig {
    pub embed_dim: usize,
    pub image_resolution: usize,
    pub vision_layers: [usize; 4],
    pub vision_width: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub transformer_width: usize,
    pub transformer_heads: usize,
    pub transformer_layers: usize,
}

impl ClipResNetConfig {
    pub fn rn50() -> Self {
        Self {
            embed_dim: 1024,
            image_resolution: 224,
            vision_layers: [3, 4, 6, 3],
            vision_width: 64,
            context_length: 77,
            vocab_size: 49408,
            transformer_width: 512,
            transformer_heads: 8,
            transformer_layers: 12,
        }
    }

    pub fn rn101() -> Self {
        Self { embed_dim: 512, vision_layers: [3, 4, 23, 3], ..Self::rn50() }
    }

    /// The hyper-parameters as OpenAI CLIP's `build_model` reads them off a ResNet state dict
    /// (`shapes`: tensor names and shapes, the CLIP names under `prefix`, e.g. `backbone.`):
    /// vision layers from the block counts of `visual.layer{1..4}`, the width from
    /// `visual.layer1.0.conv1.weight`, the resolution from `visual.attnpool.positional_embedding`,
    /// the text tower from `positional_embedding`, `token_embedding`, `ln_final`,
    /// `text_projection` and `transformer.resblocks`; heads `width / 64` (0 when the width is
    /// under 64: `validate` then asks for them). Errors name the missing or odd tensor.
    pub fn from_state_dict(
        shapes: &std::collections::HashMap<String, Vec<usize>>,
        prefix: &str,
    ) -> std::result::Result<Self, String> {
        let dims = |k: &str, rank: usize| -> std::result::Result<&[usize], String> {
            let key = format!("{prefix}{k}");
            match shapes.get(&key) {
                Some(s) if s.len() == rank => Ok(s.as_slice()),
                Some(s) => Err(format!("tensor {key} has shape {s:?}, expected {rank} dimensions")),
                None => Err(format!("no tensor {key} (needed to infer the CLIP backbone)")),
            }
        };
        if shapes.contains_key(&format!("{prefix}visual.proj")) {
            return Err(format!("{prefix}visual.proj: a ViT CLIP backbone; only the ResNet one is supported"));
        }
        let blocks = |stem: &str| -> usize {
            let stem = format!("{prefix}{stem}.");
            let ids: std::collections::BTreeSet<&str> =
                shapes.keys().filter_map(|k| k.strip_prefix(&stem)).filter_map(|rest| rest.split('.').next()).collect();
            ids.len()
        };
        let mut vision_layers = [0; 4];
        for (i, n) in vision_layers.iter_mut().enumerate() {
            *n = blocks(&format!("visual.layer{}", i + 1));
            if *n == 0 {
                return Err(format!("no tensor {prefix}visual.layer{}.* (needed to infer the CLIP backbone)", i + 1));
            }
        }
        let vision_width = dims("visual.layer1.0.conv1.weight", 4)?[0];
        let pos = dims("visual.attnpool.positional_embedding", 2)?[0];
        let grid = ((pos.saturating_sub(1)) as f64).sqrt().round() as usize;
        if grid == 0 || grid * grid + 1 != pos {
            return Err(format!(
                "tensor {prefix}visual.attnpool.positional_embedding has {pos} rows, not a square grid + 1"
            ));
        }
        let transformer_width = dims("ln_final.weight", 1)?[0];
        let transformer_layers = blocks("transformer.resblocks");
        if transformer_layers == 0 {
            return Err(format!("no tensor {prefix}transformer.resblocks.* (needed to infer the CLIP backbone)"));
        }
        Ok(Self {
            embed_dim: dims("text_projection", 2)?[1],
            image_resolution: grid * 32,
            vision_layers,
            vision_width,
            context_length: dims("positional_embedding", 2)?[0],
            vocab_size: dims("token_embedding.weight", 2)?[0],
            transformer_width,
            transformer_heads: transformer_width / 64,
            transformer_layers,
        })
    }

    /// Attention-pool heads: `width * 32 // 64`, as CLIP derives them.
    pub fn vision_heads(&self) -> usize {
        self.vision_width * 32 / 64
    }
}

/// `Conv2d(bias=False)` + `BatchNorm2d` (eval statistics), the unit of the whole ResNet.
#[derive(Debug, Clone)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

pub fn bn(vb: VarBuilder, c: usize) -> Result<BatchNorm> {
    batch_norm(c, BatchNormConfig { eps: 1e-5, ..Default::default() }, vb)
}

impl ConvBn {
    /// `conv` and `bn` under separate prefixes (`conv1`/`bn1`, `0`/`1`, ...).
    pub fn new(conv_vb: VarBuilder, bn_vb: VarBuilder, cin: usize, cout: usize, k: usize) -> Result<Self> {
        let cfg = Conv2dConfig { padding: k / 2, ..Default::default() };
        Ok(Self { conv: conv2d_no_bias(cin, cout, k, cfg, conv_vb)?, bn: bn(bn_vb, cout)? })
    }

    pub fn strided(
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let cfg = Conv2dConfig { padding: k / 2, stride, ..Default::default() };
        Ok(Self { conv: conv2d_no_bias(cin, cout, k, cfg, conv_vb)?, bn: bn(bn_vb, cout)? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, false)
    }
}

/// Bottleneck with anti-aliased downsampling: an avgpool before the stride, not a strided conv.
#[derive(Debug, Clone)]
struct Bottleneck {
    c1: ConvBn,
    c2: ConvBn,
    c3: ConvBn,
    downsample: Option<ConvBn>,
    stride: usize,
}

impl Bottleneck {
    fn new(vb: VarBuilder, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride > 1 || inplanes != out {
            let d = vb.pp("downsample");
            Some(ConvBn::new(d.pp("0"), d.pp("1"), inplanes, out, 1)?)
        } else {
            None
        };
        Ok(Self {
            c1: ConvBn::new(vb.pp("conv1"), vb.pp("bn1"), inplanes, planes, 1)?,
            c2: ConvBn::new(vb.pp("conv2"), vb.pp("bn2"), planes, planes, 3)?,
            c3: ConvBn::new(vb.pp("conv3"), vb.pp("bn3"), planes, out, 1)?,
            downsample,
            stride,
        })
    }

    fn pool(&self, x: &Tensor) -> Result<Tensor> {
        if self.stride > 1 {
            x.avg_pool2d(self.stride)
        } else {
            Ok(x.clone())
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.c2.forward(&self.c1.forward(x)?.relu()?)?.relu()?;
        let out = self.c3.forward(&self.pool(&out)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(&self.pool(x)?)?,
            None => x.clone(),
        };
        (out + identity)?.relu()
    }
}

/// nn.MultiheadAttention's packed projections (`in_proj_weight`, `in_proj_bias`, `out_proj`),
/// batch-first here. Also the layout of CRIS's decoder attention.
#[derive(Debug, Clone)]
pub struct PackedAttention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    out_proj: Linear,
    heads: usize,
}

impl PackedAttention {
    pub fn new(vb: VarBuilder, d: usize, heads: usize) -> Result<Self> {
        if heads == 0 || !d.is_multiple_of(heads) {
            candle_core::bail!("width {d} is not divisible by {heads} attention heads");
        }
        let w = vb.get((3 * d, d), "in_proj_weight")?;
        let b = vb.get(3 * d, "in_proj_bias")?;
        let part =
            |i: usize| -> Result<Linear> { Ok(Linear::new(w.narrow(0, i * d, d)?, Some(b.narrow(0, i * d, d)?))) };
        Ok(Self { wq: part(0)?, wk: part(1)?, wv: part(2)?, out_proj: linear(d, d, vb.pp("out_proj"))?, heads })
    }

    /// Separate `q_proj`/`k_proj`/`v_proj`/`c_proj` (CLIP's attention pool).
    pub fn separate(vb: VarBuilder, d: usize, out: usize, heads: usize) -> Result<Self> {
        if heads == 0 || !d.is_multiple_of(heads) {
            candle_core::bail!("width {d} is not divisible by {heads} attention heads");
        }
        Ok(Self {
            wq: linear(d, d, vb.pp("q_proj"))?,
            wk: linear(d, d, vb.pp("k_proj"))?,
            wv: linear(d, d, vb.pp("v_proj"))?,
            out_proj: linear(d, out, vb.pp("c_proj"))?,
            heads,
        })
    }

    /// q [B, Lq, D], k and v [B, Lk, D]; `mask` additive, broadcastable to [B, heads, Lq, Lk].
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, lq, d) = q.dims3()?;
        let lk = k.dim(1)?;
        let hd = d / self.heads;
        let split = |t: Tensor, l: usize| t.reshape((b, l, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split((self.wq.forward(q)? * (hd as f64).powf(-0.5))?, lq)?;
        let k = split(self.wk.forward(k)?, lk)?;
        let v = split(self.wv.forward(v)?, lk)?;
        let mut att = q.matmul(&k.t()?)?;
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        self.out_proj.forward(&att.matmul(&v)?.transpose(1, 2)?.reshape((b, lq, d))?)
    }
}

/// CRIS's `AttentionPool2d`: self-attention over all H·W positions (no pooled token) with
/// bicubically resized position embeddings, plus a 1×1 conv + BN residual (`connect`), ReLU.
#[derive(Debug, Clone)]
struct AttnPool {
    positional_embedding: Tensor,
    attn: PackedAttention,
    connect: ConvBn,
    grid: usize,
}

impl AttnPool {
    fn new(vb: VarBuilder, connect_vb: VarBuilder, grid: usize, d: usize, heads: usize, out: usize) -> Result<Self> {
        Ok(Self {
            positional_embedding: vb.get((grid * grid + 1, d), "positional_embedding")?,
            attn: PackedAttention::separate(vb.clone(), d, out, heads)?,
            connect: ConvBn::new(connect_vb.pp("0"), connect_vb.pp("1"), d, out, 1)?,
            grid,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let res = self.connect.forward(x)?;
        let g = self.grid;
        let pos = self.positional_embedding.i(1..)?.t()?.reshape((1, c, g, g))?;
        let pos = interp::bicubic(&pos, h, w)?.reshape((1, c, h * w))?;
        // contiguous: candle 0.11's Linear gave wrong results on this transposed [B, HW, C] view.
        let t = x.reshape((b, c, h * w))?.broadcast_add(&pos)?.transpose(1, 2)?.contiguous()?;
        let y = self.attn.forward(&t, &t, &t, None)?; // [B, HW, out]
        let y = y.transpose(1, 2)?.reshape((b, (), h, w))?;
        (y + res)?.relu()
    }
}

/// `visual`: three-conv stem, avgpool, layer1-4, attention pool. Returns (C3, C4, C5).
#[derive(Debug, Clone)]
pub struct ModifiedResNet {
    stem: [ConvBn; 3],
    layers: [Vec<Bottleneck>; 4],
    attnpool: AttnPool,
}

impl ModifiedResNet {
    /// `connect_vb` holds `attnpool.connect.*`, which OpenAI's checkpoints lack (CRIS adds it).
    pub fn new(vb: VarBuilder, connect_vb: VarBuilder, c: &ClipResNetConfig) -> Result<Self> {
        let w = c.vision_width;
        let stem = [
            ConvBn::strided(vb.pp("conv1"), vb.pp("bn1"), 3, w / 2, 3, 2)?,
            ConvBn::new(vb.pp("conv2"), vb.pp("bn2"), w / 2, w / 2, 3)?,
            ConvBn::new(vb.pp("conv3"), vb.pp("bn3"), w / 2, w, 3)?,
        ];
        let mut inplanes = w;
        let mut make = |i: usize, planes: usize, n: usize, stride: usize| -> Result<Vec<Bottleneck>> {
            let lv = vb.pp(format!("layer{}", i + 1));
            let mut v = vec![Bottleneck::new(lv.pp(0), inplanes, planes, stride)?];
            inplanes = planes * 4;
            for j in 1..n {
                v.push(Bottleneck::new(lv.pp(j), inplanes, planes, 1)?);
            }
            Ok(v)
        };
        let l = c.vision_layers;
        let layers =
            [make(0, w, l[0], 1)?, make(1, w * 2, l[1], 2)?, make(2, w * 4, l[2], 2)?, make(3, w * 8, l[3], 2)?];
        let attnpool = AttnPool::new(
            vb.pp("attnpool"),
            connect_vb,
            c.image_resolution / 32,
            w * 32,
            c.vision_heads(),
            c.embed_dim,
        )?;
        Ok(Self { stem, layers, attnpool })
    }

    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let mut x = x.clone();
        for s in &self.stem {
            x = s.forward(&x)?.relu()?;
        }
        let run = |x: Tensor, blocks: &[Bottleneck]| blocks.iter().try_fold(x, |h, b| b.forward(&h));
        let x = run(x.avg_pool2d(2)?, &self.layers[0])?;
        let c3 = run(x, &self.layers[1])?;
        let c4 = run(c3.clone(), &self.layers[2])?;
        let c5 = self.attnpool.forward(&run(c4.clone(), &self.layers[3])?)?;
        Ok((c3, c4, c5))
    }
}

/// `transformer.resblocks.N`: pre-norm, packed attention, quick-GELU MLP (`c_fc`, `c_proj`).
#[derive(Debug, Clone)]
struct ResidualAttentionBlock {
    attn: PackedAttention,
    ln_1: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
}

impl ResidualAttentionBlock {
    fn new(vb: VarBuilder, d: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            attn: PackedAttention::new(vb.pp("attn"), d, heads)?,
            ln_1: layer_norm(d, 1e-5, vb.pp("ln_1"))?,
            c_fc: linear(d, 4 * d, vb.pp("mlp").pp("c_fc"))?,
            c_proj: linear(4 * d, d, vb.pp("mlp").pp("c_proj"))?,
            ln_2: layer_norm(d, 1e-5, vb.pp("ln_2"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.ln_1.forward(x)?;
        let x = (x + self.attn.forward(&h, &h, &h, Some(mask))?)?;
        let m = self.c_proj.forward(&quick_gelu(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?)?;
        x + m
    }
}

/// OpenAI CLIP with a ResNet image tower (`visual`) and its causal text transformer.
#[derive(Debug, Clone)]
pub struct ClipResNet {
    pub visual: ModifiedResNet,
    token_embedding: candle_nn::Embedding,
    positional_embedding: Tensor,
    resblocks: Vec<ResidualAttentionBlock>,
    ln_final: LayerNorm,
    text_projection: Tensor,
    pub config: ClipResNetConfig,
}

impl ClipResNet {
    pub fn new(vb: VarBuilder, connect_vb: VarBuilder, c: &ClipResNetConfig) -> Result<Self> {
        let d = c.transformer_width;
        let rb = vb.pp("transformer").pp("resblocks");
        Ok(Self {
            visual: ModifiedResNet::new(vb.pp("visual"), connect_vb, c)?,
            token_embedding: candle_nn::embedding(c.vocab_size, d, vb.pp("token_embedding"))?,
            positional_embedding: vb.get((c.context_length, d), "positional_embedding")?,
            resblocks: (0..c.transformer_layers)
                .map(|i| ResidualAttentionBlock::new(rb.pp(i), d, c.transformer_heads))
                .collect::<Result<_>>()?,
            ln_final: layer_norm(d, 1e-5, vb.pp("ln_final"))?,
            text_projection: vb.get((d, c.embed_dim), "text_projection")?,
            config: c.clone(),
        })
    }

    /// (C3, C4, C5) for images [B, 3, H, W] (H, W multiples of 32).
    pub fn encode_image(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        self.visual.forward(x)
    }

    /// CRIS's `encode_text`: per-token features `ln_final(x)` [B, L, width] and the projected
    /// feature at the end-of-text token (the largest id) [B, embed_dim].
    pub fn encode_text(&self, ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, l) = ids.dims2()?;
        if l > self.config.context_length {
            candle_core::bail!("{l} tokens exceed the text model's {} positions", self.config.context_length);
        }
        let mut x = self.token_embedding.forward(ids)?.broadcast_add(&self.positional_embedding.i(0..l)?)?;
        let mask: Vec<f32> =
            (0..l).flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (1, 1, l, l), ids.device())?.to_dtype(x.dtype())?;
        for blk in &self.resblocks {
            x = blk.forward(&x, &mask)?;
        }
        let x = self.ln_final.forward(&x)?;
        let rows: Vec<Vec<u32>> = ids.to_dtype(DType::U32)?.to_vec2()?;
        let eot: Vec<Tensor> =
            rows.iter().enumerate().map(|(i, r)| x.i((i, pooling_index(r, 2)))).collect::<Result<_>>()?;
        let state = Tensor::stack(&eot, 0)?.matmul(&self.text_projection)?;
        debug_assert_eq!(state.dim(0)?, b);
        Ok((x, state))
    }
}
