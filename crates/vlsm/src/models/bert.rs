//! BERT encoder (transformers' `BertModel` without the pooling layer) with the reference module
//! names, as open_clip's `HFTextEncoder` wraps it for BiomedCLIP's PubMedBERT text tower.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::HiddenAct;

fn d_vocab() -> usize {
    30522
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
fn d_pos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_act() -> HiddenAct {
    HiddenAct::Gelu
}

/// `BertConfig` (`config.json`); defaults are bert-base-uncased's, which PubMedBERT shares.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: HiddenAct,
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
}

impl Default for BertConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// The `BertConfig` fields that the weights determine.
pub const BERT_SHAPE_FIELDS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
];

impl BertConfig {
    /// The config of the BERT whose tensors lie under `prefix` (e.g. `text.transformer.`):
    /// vocabulary, hidden size, max positions and token types from the embeddings, layers from
    /// the `encoder.layer.N` count, intermediate size from layer 0; `given` (a config.json,
    /// possibly partial) wins field by field; heads, which no shape shows, come from `given`,
    /// else `hidden / 64` (BERT's head size), an error when that does not divide. Errors name
    /// the missing or odd tensor.
    pub fn from_weights(
        shapes: &std::collections::HashMap<String, Vec<usize>>,
        prefix: &str,
        given: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<Self, String> {
        let dims2 = |k: &str| -> std::result::Result<[usize; 2], String> {
            let key = format!("{prefix}{k}");
            match shapes.get(&key).map(|s| s.as_slice()) {
                Some(&[a, b]) => Ok([a, b]),
                Some(s) => Err(format!("tensor {key} has shape {s:?}, expected 2 dimensions")),
                None => Err(format!("no tensor {key} (needed to infer the BERT config)")),
            }
        };
        let [vocab, hidden] = dims2("embeddings.word_embeddings.weight")?;
        let stem = format!("{prefix}encoder.layer.");
        let layers: std::collections::BTreeSet<&str> =
            shapes.keys().filter_map(|k| k.strip_prefix(&stem)).filter_map(|r| r.split('.').next()).collect();
        if layers.is_empty() {
            return Err(format!("no tensor {stem}* (needed to infer the BERT config)"));
        }
        let mut v = serde_json::Map::new();
        v.insert("vocab_size".into(), vocab.into());
        v.insert("hidden_size".into(), hidden.into());
        v.insert("max_position_embeddings".into(), dims2("embeddings.position_embeddings.weight")?[0].into());
        v.insert("type_vocab_size".into(), dims2("embeddings.token_type_embeddings.weight")?[0].into());
        v.insert("num_hidden_layers".into(), layers.len().into());
        v.insert("intermediate_size".into(), dims2("encoder.layer.0.intermediate.dense.weight")?[0].into());
        for (k, x) in given {
            v.insert(k.clone(), x.clone());
        }
        if !v.contains_key("num_attention_heads") {
            let h = v.get("hidden_size").and_then(|h| h.as_u64()).unwrap_or(0) as usize;
            if h < 64 || !h.is_multiple_of(64) {
                return Err(format!(
                    "hidden size {h} is not a multiple of 64, so the attention heads cannot be inferred (hidden / 64); give num_attention_heads in the text tower's config.json (<model dir>/<hf_model_name>/config.json)"
                ));
            }
            v.insert("num_attention_heads".into(), (h / 64).into());
        }
        let c: Self = serde_json::from_value(serde_json::Value::Object(v)).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Sizes the model can be built with: heads divide the hidden size, none is zero.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (h, n) = (self.hidden_size, self.num_attention_heads);
        if n == 0 || !h.is_multiple_of(n) {
            return Err(format!("num_attention_heads {n} does not divide hidden_size {h}"));
        }
        if self.vocab_size == 0 || h == 0 || self.intermediate_size == 0 || self.max_position_embeddings == 0 {
            return Err("vocab_size, hidden_size, intermediate_size and max_position_embeddings must be > 0".into());
        }
        Ok(())
    }
}

/// `embeddings`: word + position + token-type (always type 0), then LayerNorm.
#[derive(Debug, Clone)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        Ok(Self {
            word_embeddings: embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            position_embeddings: vb
                .pp("position_embeddings")
                .get((c.max_position_embeddings, c.hidden_size), "weight")?,
            token_type_embeddings: vb.pp("token_type_embeddings").get((c.type_vocab_size, c.hidden_size), "weight")?,
            layer_norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let l = ids.dim(1)?;
        let pos = self.position_embeddings.narrow(0, 0, l)?;
        let typ = self.token_type_embeddings.narrow(0, 0, 1)?;
        let x = self.word_embeddings.forward(ids)?.broadcast_add(&pos)?.broadcast_add(&typ)?;
        self.layer_norm.forward(&x)
    }
}

/// One post-norm BERT layer: `attention.{self.{query,key,value}, output.{dense,LayerNorm}}`,
/// `intermediate.dense`, `output.{dense,LayerNorm}`.
#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    act: HiddenAct,
    heads: usize,
}

impl BertLayer {
    fn new(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        if c.num_attention_heads == 0 || h % c.num_attention_heads != 0 {
            candle_core::bail!("hidden size {h} is not divisible by {} attention heads", c.num_attention_heads);
        }
        let a = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, a.pp("self").pp("query"))?,
            key: linear(h, h, a.pp("self").pp("key"))?,
            value: linear(h, h, a.pp("self").pp("value"))?,
            attn_out: linear(h, h, a.pp("output").pp("dense"))?,
            attn_norm: layer_norm(h, eps, a.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, i, vb.pp("intermediate").pp("dense"))?,
            output: linear(i, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, eps, vb.pp("output").pp("LayerNorm"))?,
            act: c.hidden_act,
            heads: c.num_attention_heads,
        })
    }

    /// `mask`: additive [B, 1, 1, L].
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |t: Tensor| t.reshape((b, l, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split((self.query.forward(x)? * (hd as f64).powf(-0.5))?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let att = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let ctx = att.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?;
        let h = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let m = self.output.forward(&self.act.apply(&self.intermediate.forward(&h)?)?)?;
        self.out_norm.forward(&(m + h)?)
    }
}

/// `BertModel(add_pooling_layer=False)`.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pub config: BertConfig,
}

impl BertModel {
    pub fn new(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let lv = vb.pp("encoder").pp("layer");
        Ok(Self {
            embeddings: BertEmbeddings::new(vb.pp("embeddings"), c)?,
            layers: (0..c.num_hidden_layers).map(|i| BertLayer::new(lv.pp(i), c)).collect::<Result<_>>()?,
            config: c.clone(),
        })
    }

    /// Hidden states [B, L, H]: the embedding output, then each layer's (transformers'
    /// `output_hidden_states`). `attention_mask` [B, L] is 1 for tokens, 0 for padding.
    pub fn forward_hidden_states(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Tensor>> {
        let l = ids.dim(1)?;
        if l > self.config.max_position_embeddings {
            candle_core::bail!("{l} tokens exceed the text model's {} positions", self.config.max_position_embeddings);
        }
        let mut h = self.embeddings.forward(ids)?;
        // Padding keys get a large negative bias (transformers uses the dtype's minimum).
        let keep = attention_mask.to_dtype(h.dtype())?;
        let mask = ((keep - 1.0)? * 1e9)?.unsqueeze(1)?.unsqueeze(1)?;
        let mut out = vec![h.clone()];
        for layer in &self.layers {
            h = layer.forward(&h, &mask)?;
            out.push(h.clone());
        }
        Ok(out)
    }

    /// `last_hidden_state` [B, L, H].
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mut hs = self.forward_hidden_states(ids, attention_mask)?;
        Ok(hs.pop().expect("embedding output is always there"))
    }

    /// `attention_mask = ids != pad_token_id`, as open_clip's `HFTextEncoder` builds it.
    pub fn padding_mask(&self, ids: &Tensor) -> Result<Tensor> {
        ids.to_dtype(DType::U32)?.ne(self.config.pad_token_id)?.to_dtype(DType::U32)
    }
}
