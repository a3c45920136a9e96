//! Model directories → models. Each kind's directory layout (config, weight files, tokenizer
//! files, an optional `preprocessor_config.json`) is read here, and the network is built with its
//! model file's `new(vb, &cfg)`; model files do no file I/O. [`load`] is the registry of kinds.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::models::bert::BertConfig;
use crate::models::biomedclip::{BiomedClip, BiomedClipConfig, OpenClipConfig, PreprocessCfg};
use crate::models::biomedclipseg::{BiomedClipSeg, BiomedClipSegConfig};
use crate::models::clipseg::{ClipSeg, ClipSegConfig, ClipSegDecoder};
use crate::models::cris::{Cris, CrisConfig};
use crate::models::resnet_clip::ClipResNetConfig;
use crate::models::seg::{ModelKind, SegModel, WithTokenizer};
use crate::models::textunet::{TextUNet, TextUNetConfig};
use crate::models::unet::{UNet, UNetConfig};
use crate::preprocess::{ImageProcessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::tokenize::{ClipTokenizer, WordPieceTokenizer};
use crate::weights;

/// Loads the segmentation model in `dir` (its kind from `config.json`) and its image processor:
/// the model's own, or the directory's `preprocessor_config.json` for the kinds that read one.
/// `dir` may be a Hugging Face Hub id (`org/name[@revision]`, see `hub`).
pub fn load(dir: &Path, dev: &Device) -> Result<(Box<dyn SegModel>, ImageProcessorConfig)> {
    let dir = &crate::hub::resolve(dir)?;
    let dt = DType::F32;
    let (model, reads_preprocessor): (Box<dyn SegModel>, bool) = match weights::detect(dir)? {
        ModelKind::ClipSeg => {
            (Box::new(WithTokenizer { model: clipseg(dir, dt, dev)?, tokenizer: clip_tokenizer(dir)? }), true)
        }
        ModelKind::TextUNet => {
            (Box::new(WithTokenizer { model: textunet(dir, dt, dev)?, tokenizer: clip_tokenizer(dir)? }), true)
        }
        ModelKind::UNet => (Box::new(unet(dir, dt, dev)?), true),
        ModelKind::BiomedClipSeg => {
            let model = biomedclipseg(dir, None, dt, dev)?;
            let tokenizer = wordpiece_tokenizer(dir, model.biomedclip.config.context_length)?;
            (Box::new(WithTokenizer { model, tokenizer }), false)
        }
        ModelKind::Cris => {
            let model = cris(dir, dt, dev)?;
            (Box::new(WithTokenizer { model, tokenizer: clip_tokenizer_or_bundled(dir)? }), false)
        }
    };
    let pp = dir.join("preprocessor_config.json");
    let processor = if reads_preprocessor && pp.is_file() {
        ImageProcessorConfig::from_file(&pp)?
    } else {
        model.image_processor()
    };
    Ok((model, processor))
}

/// The CLIP BPE tokenizer of a model directory: `tokenizer.json`, `vocab.json` + `merges.txt`,
/// or OpenAI's `bpe_simple_vocab_16e6.txt.gz`.
pub fn clip_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    let gz = dir.join(crate::tokenize::BPE_FILE);
    if !dir.join("tokenizer.json").is_file() && !dir.join("vocab.json").is_file() && gz.is_file() {
        return Ok(ClipTokenizer::from_bpe_gz(&gz)?);
    }
    Ok(ClipTokenizer::from_dir(dir)?)
}

/// The directory's CLIP BPE tokenizer, else the BPE file `find_bpe` locates (CRIS and OpenAI
/// CLIP checkpoints ship none); the error is the directory's.
pub fn clip_tokenizer_or_bundled(dir: &Path) -> Result<ClipTokenizer> {
    clip_tokenizer(dir).or_else(|e| {
        crate::tokenize::find_bpe()
            .and_then(|p| Ok(ClipTokenizer::from_bpe_gz(&p)?))
            .map_err(|_| anyhow::anyhow!("{e:#}"))
    })
}

/// The Hugging Face layout: `config.json` (deserialised, then `validate`d) and the weights
/// beside it, built by `new`; errors name the file.
fn config_and_weights<C: serde::de::DeserializeOwned, M>(
    dir: &Path,
    dtype: DType,
    dev: &Device,
    validate: impl FnOnce(&C) -> std::result::Result<(), String>,
    new: impl FnOnce(VarBuilder<'static>, &C) -> candle_core::Result<M>,
) -> Result<M> {
    let cfg_path = dir.join("config.json");
    let config: C = weights::read_json(&cfg_path)?;
    validate(&config).map_err(|e| anyhow!("{}: {e}", cfg_path.display()))?;
    let weights = weights::find_weights(dir)?;
    let vb = weights::var_builder(&weights, dtype, dev, None)?;
    new(vb, &config).map_err(|e| weights::load_error(&weights, e))
}

/// A Hugging Face CLIPSeg directory (`config.json`, weights).
pub fn clipseg(dir: &Path, dtype: DType, dev: &Device) -> Result<ClipSeg> {
    config_and_weights(dir, dtype, dev, ClipSegConfig::validate, ClipSeg::new)
}

/// A TextUNet directory as `vlsm train` writes it.
pub fn textunet(dir: &Path, dtype: DType, dev: &Device) -> Result<TextUNet> {
    config_and_weights(dir, dtype, dev, TextUNetConfig::validate, TextUNet::new)
}

/// A UNet directory as `vlsm train` writes it.
pub fn unet(dir: &Path, dtype: DType, dev: &Device) -> Result<UNet> {
    config_and_weights(dir, dtype, dev, UNetConfig::validate, UNet::new)
}

/// A BiomedCLIPSeg directory (see `models::biomedclipseg`); `decoder` overrides the config's
/// `decoder_weights` (e.g. a CLIPSeg checkpoint for BiomedCLIPSeg-D). Relative paths are
/// relative to `dir`.
pub fn biomedclipseg(dir: &Path, decoder: Option<&Path>, dtype: DType, dev: &Device) -> Result<BiomedClipSeg> {
    let cpath = dir.join("config.json");
    let c: BiomedClipSegConfig = if cpath.is_file() { weights::read_json(&cpath)? } else { Default::default() };
    if let Some(t) = c.model_type.as_deref() {
        if t != "biomedclipseg" {
            bail!("{}: model_type '{t}', expected biomedclipseg", cpath.display());
        }
    }
    let enc_cfg = biomedclip_config(dir)?;
    let dc = c.decoder_config(&enc_cfg).map_err(|e| anyhow!("{}: {e}", cpath.display()))?;
    let ew = biomedclip_weights_file(dir)?;
    let dw: PathBuf = dir.join(decoder.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&c.decoder_weights)));
    let evb = weights::var_builder(&ew, dtype, dev, None)?;
    let dvb = weights::var_builder(&dw, dtype, dev, None)?;
    let biomedclip = BiomedClip::new(evb, &enc_cfg).map_err(|e| weights::load_error(&ew, e))?;
    let decoder = ClipSegDecoder::new(dvb.pp("decoder"), &dc).map_err(|e| weights::load_error(&dw, e))?;
    Ok(BiomedClipSeg { biomedclip, decoder, config: c })
}

/// A CRIS directory (see `models::cris`).
pub fn cris(dir: &Path, dtype: DType, dev: &Device) -> Result<Cris> {
    let src = cris_source(dir)?;
    let vb = weights::state_dict_var_builder(&src.weights, dtype, dev, CRIS_PROBE)?;
    Cris::new(vb, &src.config).map_err(|e| weights::load_error(&src.weights, e))
}

/// A key every CRIS checkpoint holds.
pub const CRIS_PROBE: &str = "backbone.visual.conv1.weight";

/// What a CRIS directory says: the config (the backbone filled in from the weights when the
/// file leaves it out), the same as complete `config.json` text, the file it came from and the
/// weight file.
#[derive(Debug, Clone)]
pub struct CrisSource {
    pub config: CrisConfig,
    pub json: serde_json::Value,
    pub config_path: PathBuf,
    pub weights: PathBuf,
}

/// Reads a CRIS directory's `config.json` or, without one, CRIS.pytorch's yaml; a missing or
/// partial `backbone` is read off the weights (`ClipResNetConfig::from_state_dict`).
pub fn cris_source(dir: &Path) -> Result<CrisSource> {
    let cpath = dir.join("config.json");
    let (json, config_path) = if cpath.is_file() {
        (weights::read_json::<serde_json::Value>(&cpath)?, cpath)
    } else if let Some(y) = cris_yaml_file(dir)? {
        (cris_yaml_config(&y)?, y)
    } else if !dir.is_dir() {
        bail!("{}: model directory not found", dir.display());
    } else {
        bail!("{}: not a CRIS directory (no config.json or CRIS.pytorch yaml)", dir.display());
    };
    let serde_json::Value::Object(mut obj) = json else {
        bail!("{}: expected a JSON object", config_path.display());
    };
    if let Some(t) = obj.get("model_type") {
        if t.as_str() != Some("cris") {
            bail!("{}: model_type {t}, expected \"cris\"", config_path.display());
        }
    }
    obj.insert("model_type".into(), "cris".into());
    let w = cris_weights_file(dir)?;
    let given = match obj.get("backbone") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(b)) => b.clone(),
        Some(_) => bail!("{}: backbone: expected an object", config_path.display()),
    };
    let complete = ["embed_dim", "image_resolution", "vision_layers", "vision_width", "context_length"]
        .iter()
        .chain(&["vocab_size", "transformer_width", "transformer_heads", "transformer_layers"])
        .all(|k| given.contains_key(*k));
    if !complete {
        let shapes = weights::state_dict_shapes(&w, CRIS_PROBE)?;
        let inferred =
            ClipResNetConfig::from_state_dict(&shapes, "backbone.").map_err(|e| anyhow!("{}: {e}", w.display()))?;
        let mut b = match serde_json::to_value(inferred)? {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a struct serialises to an object"),
        };
        b.extend(given);
        obj.insert("backbone".into(), serde_json::Value::Object(b));
    }
    let json = serde_json::Value::Object(obj);
    let config: CrisConfig =
        serde_json::from_value(json.clone()).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    config.validate().map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    Ok(CrisSource { config, json, config_path, weights: w })
}

/// CRIS.pytorch's config in a directory: the one `*.yaml`/`*.yml` file with a `TRAIN` section
/// (`None` without one; an error when several qualify).
pub fn cris_yaml_file(dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut found: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml") && p.is_file())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.trim_end().starts_with("TRAIN:"))))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{}: several CRIS yaml files ({}); keep one, or write a config.json",
            dir.display(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The decoder settings of CRIS.pytorch's yaml (`TRAIN`: `word_len`, `word_dim`, `vis_dim`,
/// `fpn_in`, `fpn_out`, `num_layers`, `num_head`, `dim_ffn`, and `input_size` if given) as
/// `config.json` fields; errors name the file and the key.
pub fn cris_yaml_config(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let train = yaml_section(&text, "TRAIN").map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut out = serde_json::Map::new();
    for key in ["word_len", "word_dim", "vis_dim", "fpn_in", "fpn_out", "num_layers", "num_head", "dim_ffn"] {
        match train.get(key) {
            Some(v) => {
                out.insert(key.into(), v.clone());
            }
            None => bail!("{}: TRAIN.{key} missing", path.display()),
        }
    }
    if let Some(v) = train.get("input_size") {
        out.insert("img_size".into(), v.clone());
    }
    Ok(serde_json::Value::Object(out))
}

/// The `key: value` entries of one top-level section of a yaml file as CRIS.pytorch writes it
/// (two levels; scalars, `[a, b]` flow lists and `- x` block lists; `#` comments).
fn yaml_section(text: &str, section: &str) -> std::result::Result<serde_json::Map<String, serde_json::Value>, String> {
    fn strip_comment(line: &str) -> &str {
        let mut quote = None;
        let mut prev_space = true;
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if prev_space => return &line[..i],
                _ => {}
            }
            prev_space = c.is_whitespace();
        }
        line
    }
    fn scalar(s: &str) -> serde_json::Value {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let items = inner.split(',').map(str::trim).filter(|i| !i.is_empty());
            return serde_json::Value::Array(items.map(scalar).collect());
        }
        if let Ok(i) = s.parse::<i64>() {
            return i.into();
        }
        if let Ok(f) = s.parse::<f64>() {
            return serde_json::Number::from_f64(f).map(serde_json::Value::Number).unwrap_or_else(|| s.into());
        }
        match s {
            "" | "~" | "null" | "Null" | "NULL" => serde_json::Value::Null,
            "true" | "True" | "TRUE" => true.into(),
            "false" | "False" | "FALSE" => false.into(),
            _ => {
                let unq = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\''));
                let unq = unq.or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')));
                unq.unwrap_or(s).into()
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut found = false;
    let mut inside = false;
    let mut last_key: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim_end();
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        if line.starts_with('\t') {
            return Err(format!("line {}: tab indentation", n + 1));
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if indent == 0 {
            inside = body.strip_suffix(':').is_some_and(|k| k.trim() == section);
            found |= inside;
            last_key = None;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(item) = body.strip_prefix("- ").or_else(|| (body == "-").then_some("")) {
            let Some(k) = &last_key else {
                return Err(format!("line {}: list item outside a key", n + 1));
            };
            match out.get_mut(k) {
                Some(serde_json::Value::Array(a)) => a.push(scalar(item)),
                Some(v @ serde_json::Value::Null) => *v = serde_json::Value::Array(vec![scalar(item)]),
                _ => return Err(format!("line {}: list item after a value for {section}.{k}", n + 1)),
            }
            continue;
        }
        let Some((k, v)) = body.split_once(':') else {
            return Err(format!("line {}: expected 'key: value'", n + 1));
        };
        let k = k.trim().to_string();
        out.insert(k.clone(), scalar(v));
        last_key = Some(k);
    }
    if !found {
        return Err(format!("no {section} section"));
    }
    Ok(out)
}

/// Weight file of a CRIS directory.
pub fn cris_weights_file(dir: &Path) -> Result<PathBuf> {
    const NAMES: &[&str] = crate::hub::CRIS_WEIGHTS;
    for n in NAMES {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no CRIS weights (looked for {})", dir.display(), NAMES.join(", "))
}

/// Reads `open_clip_config.json` in `dir`; the BERT config as [`biomedclip_bert_config`] finds it.
pub fn biomedclip_config(dir: &Path) -> Result<BiomedClipConfig> {
    let path = dir.join("open_clip_config.json");
    let oc: OpenClipConfig = weights::read_json(&path)?;
    let m = &oc.model_cfg;
    let vision = m.vision_cfg.arch().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let t = &m.text_cfg;
    if t.hf_proj_type != "mlp" || t.hf_pooler_type != "cls_last_hidden_state_pooler" {
        bail!(
            "{}: only hf_proj_type 'mlp' with 'cls_last_hidden_state_pooler' is supported (got '{}', '{}')",
            path.display(),
            t.hf_proj_type,
            t.hf_pooler_type
        );
    }
    let text = biomedclip_bert_config(dir, t.hf_model_name.as_deref())?;
    let pre = oc.preprocess_cfg.unwrap_or(PreprocessCfg { mean: None, std: None });
    Ok(BiomedClipConfig {
        embed_dim: m.embed_dim,
        vision,
        text,
        context_length: t.context_length,
        mean: pre.mean.unwrap_or(OPENAI_CLIP_MEAN),
        std: pre.std.unwrap_or(OPENAI_CLIP_STD),
    })
}

/// The text tower's BERT config. A `config.json` is looked for where open_clip would find it
/// for `hf_model_name`: a sub-directory of `dir` of that name, else that Hub id in the Hugging
/// Face cache (never downloaded). A complete one is used as it is; otherwise every size is read
/// off the weights (`BertConfig::from_weights`), the fields a partial config gives winning, and
/// the heads, which no shape shows, from the config or `hidden / 64`.
pub fn biomedclip_bert_config(dir: &Path, hf_model_name: Option<&str>) -> Result<BertConfig> {
    let local = hf_model_name.map(|n| dir.join(n).join("config.json")).filter(|p| p.is_file());
    let found = local.or_else(|| hf_model_name.and_then(|n| crate::hub::cached_file(n, "config.json")));
    let given: serde_json::Map<String, serde_json::Value> = match &found {
        Some(p) => match weights::read_json::<serde_json::Value>(p)? {
            serde_json::Value::Object(m) => m,
            _ => bail!("{}: expected a JSON object", p.display()),
        },
        None => serde_json::Map::new(),
    };
    if let Some(p) = &found {
        if crate::models::bert::BERT_SHAPE_FIELDS.iter().all(|k| given.contains_key(*k)) {
            let c: BertConfig = serde_json::from_value(serde_json::Value::Object(given))
                .map_err(|e| anyhow!("{}: {e}", p.display()))?;
            c.validate().map_err(|e| anyhow!("{}: {e}", p.display()))?;
            return Ok(c);
        }
    }
    let w = biomedclip_weights_file(dir)?;
    let shapes = weights::tensor_shapes(&w, None)?;
    BertConfig::from_weights(&shapes, "text.transformer.", &given).map_err(|e| anyhow!("{}: {e}", w.display()))
}

/// Loads `open_clip_pytorch_model.bin` (or `open_clip_model.safetensors`) from `dir`;
/// errors name the file, the key and both shapes.
pub fn biomedclip(dir: &Path, dtype: DType, dev: &Device) -> Result<BiomedClip> {
    let c = biomedclip_config(dir)?;
    let w = biomedclip_weights_file(dir)?;
    let vb = weights::var_builder(&w, dtype, dev, None)?;
    BiomedClip::new(vb, &c).map_err(|e| weights::load_error(&w, e))
}

/// The tokenizer of a BiomedCLIP directory (`vocab.txt`), truncating to the context length.
pub fn wordpiece_tokenizer(dir: &Path, context_length: usize) -> Result<WordPieceTokenizer> {
    Ok(WordPieceTokenizer::from_vocab_txt(dir.join("vocab.txt"), context_length)?)
}

/// open_clip's weight file in `dir`.
pub fn biomedclip_weights_file(dir: &Path) -> Result<PathBuf> {
    for name in ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no open_clip_pytorch_model.bin or open_clip_model.safetensors", dir.display())
}
