//! Model directories → models. Each kind's directory layout (config, weight files, tokenizer
//! files, an optional `preprocessor_config.json`) is read here, and the network is built with its
//! model file's `new(vb, &cfg)`; model files do no file I/O. [`load`] is the registry of kinds.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::models::bert::BertConfig;
use crate::models::biomedclip::{BiomedClip, BiomedClipConfig, OpenClipConfig, PreprocessCfg};
use crate::models::biomedclipseg::{BiomedClipSeg, BiomedClipSegConfig};
use crate::models::clipseg::{ClipSeg, ClipSegConfig, ClipSegDecoder};
use crate::models::cris::{Cris, CrisConfig};
use crate::models::seg::{ModelKind, SegModel, WithTokenizer};
use crate::models::textunet::{TextUNet, TextUNetConfig};
use crate::models::unet::{UNet, UNetConfig};
use crate::preprocess::{ImageProcessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::tokenize::{ClipTokenizer, WordPieceTokenizer};
use crate::weights;

/// Loads the segmentation model in `dir` (its kind from `config.json`) and its image processor:
/// the model's own, or the directory's `preprocessor_config.json` for the kinds that read one.
pub fn load(dir: &Path, dev: &Device) -> Result<(Box<dyn SegModel>, ImageProcessorConfig)> {
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
    let cpath = dir.join("config.json");
    let c: CrisConfig = weights::read_json(&cpath)?;
    if let Some(t) = c.model_type.as_deref() {
        if t != "cris" {
            bail!("{}: model_type '{t}', expected cris", cpath.display());
        }
    }
    c.validate().map_err(|e| anyhow!("{}: {e}", cpath.display()))?;
    let w = cris_weights_file(dir)?;
    let vb = weights::state_dict_var_builder(&w, dtype, dev, "backbone.visual.conv1.weight")?;
    Cris::new(vb, &c).map_err(|e| weights::load_error(&w, e))
}

/// Weight file of a CRIS directory.
pub fn cris_weights_file(dir: &Path) -> Result<PathBuf> {
    const NAMES: &[&str] = &["model.safetensors", "cris.pth", "cris.pt", "pytorch_model.bin", "best_model.pth"];
    for n in NAMES {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no CRIS weights (looked for {})", dir.display(), NAMES.join(", "))
}

/// Reads `open_clip_config.json` in `dir`. The BERT config comes from `hf_model_name` when
/// that names a sub-directory with a `config.json` (open_clip resolves it the same way,
/// relative to the working directory); otherwise BERT-base, which PubMedBERT is.
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
    let local = t.hf_model_name.as_deref().map(|n| dir.join(n).join("config.json"));
    let text = match local {
        Some(p) if p.is_file() => weights::read_json(&p)?,
        _ => BertConfig::default(),
    };
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
