//! Seeded random initialisation by parameter name, and random-weight model directories for
//! BiomedCLIPSeg and CRIS (smoke tests and training runs without pretrained weights).
//!
//! candle's own initialisers draw from an RNG that cannot be seeded, so every value here comes
//! from a ChaCha8 stream over the sorted parameter names: the same seed gives the same weights
//! on every machine.

use std::path::Path;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::models::biomedclip::BiomedClip;
use crate::models::biomedclipseg::BiomedClipSegConfig;
use crate::models::clipseg::ClipSegDecoder;
use crate::models::cris::{Cris, CrisConfig};
use crate::models::seg::ModelKind;

/// PyTorch-like values for a parameter, chosen by its name: BatchNorm statistics 0/1, biases 0,
/// norm scales 1, embeddings ~U(±0.035) (std 0.02), other weights U(±1/sqrt(fan_in)).
pub fn value_for(name: &str, dims: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let emb = name.contains("embedding") || name.contains("embed") || leaf == "cls_token";
    match leaf {
        "running_mean" | "bias" | "beta" => return vec![0.0; n],
        "running_var" | "gamma" => return vec![1.0; n],
        "logit_scale" => return vec![(1.0f32 / 0.07).ln(); n],
        _ => {}
    }
    if dims.len() <= 1 && (leaf == "weight" || !emb) {
        return vec![1.0; n];
    }
    let b = if emb || dims.len() <= 1 { 0.035 } else { 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt() };
    (0..n).map(|_| rng.random_range(-b..b)).collect()
}

/// Sets every variable of `varmap` whose name passes `filter` from the seeded stream.
pub fn fill(varmap: &VarMap, seed: u64, stream: u64, filter: impl Fn(&str) -> bool) -> Result<()> {
    let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
    let mut names: Vec<&String> = data.keys().filter(|k| filter(k)).collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let v = value_for(name, &dims, &mut rng);
        var.set(&Tensor::from_vec(v, dims.as_slice(), var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    crate::io::write_atomic(path, serde_json::to_string_pretty(v)?.as_bytes())
}

fn save_varmap(vm: &VarMap, path: &Path) -> Result<()> {
    crate::io::write_atomic_with(path, |tmp| vm.save(tmp).map_err(std::io::Error::other))
}

/// Writes a CRIS model directory with seeded random weights: `config.json` (`config`, whose
/// `model_type` is set to "cris"), `model.safetensors` and, when given, the CLIP BPE file.
pub fn write_cris(dir: &Path, config: &serde_json::Value, seed: u64, bpe: Option<&Path>) -> Result<()> {
    let mut config = config.clone();
    config
        .as_object_mut()
        .ok_or_else(|| anyhow!("CRIS config: expected a JSON object"))?
        .insert("model_type".into(), ModelKind::Cris.as_str().into());
    let c: CrisConfig = serde_json::from_value(config.clone()).map_err(|e| anyhow!("CRIS config: {e}"))?;
    c.validate().map_err(|e| anyhow!("CRIS config: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create: {e}", dir.display()))?;
    let vm = VarMap::new();
    Cris::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), &c)?;
    fill(&vm, seed, 0, |_| true)?;
    if let Some(b) = bpe {
        let bytes = std::fs::read(b).map_err(|e| anyhow!("{}: cannot read: {e}", b.display()))?;
        crate::io::write_atomic(&dir.join(crate::tokenize::BPE_FILE), &bytes)?;
    }
    save_varmap(&vm, &dir.join("model.safetensors"))?;
    write_json(&dir.join("config.json"), &config)
}

/// Writes a BiomedCLIPSeg directory with seeded random weights: `open_clip_config.json`
/// (`open_clip`), `bert/config.json` (`bert`), `open_clip_model.safetensors`, `vocab.txt`
/// (copied from `vocab`), `config.json` (`seg`) and, with `with_decoder`, a random
/// `decoder.safetensors`. The BERT vocabulary size is set to the vocab file's line count.
pub fn write_biomedclipseg(
    dir: &Path,
    open_clip: &serde_json::Value,
    bert: &serde_json::Value,
    seg: &serde_json::Value,
    vocab: &Path,
    seed: u64,
    with_decoder: bool,
) -> Result<()> {
    let vocab_text = std::fs::read_to_string(vocab).map_err(|e| anyhow!("{}: cannot read: {e}", vocab.display()))?;
    let n_vocab = vocab_text.lines().count();
    let mut oc = open_clip.clone();
    if let Some(t) = oc.pointer_mut("/model_cfg/text_cfg") {
        t["hf_model_name"] = "bert".into();
        t["hf_tokenizer_name"] = "bert".into();
    }
    let mut bert = bert.clone();
    bert["vocab_size"] = n_vocab.into();
    let mut seg = seg.clone();
    seg["model_type"] = ModelKind::BiomedClipSeg.as_str().into();
    seg["decoder_weights"] = "decoder.safetensors".into();
    std::fs::create_dir_all(dir.join("bert")).map_err(|e| anyhow!("{}: cannot create: {e}", dir.display()))?;
    write_json(&dir.join("open_clip_config.json"), &oc)?;
    write_json(&dir.join("bert/config.json"), &bert)?;
    crate::io::write_atomic(&dir.join("vocab.txt"), vocab_text.as_bytes())?;
    let enc = crate::loader::biomedclip_config(dir)?;
    let sc: BiomedClipSegConfig =
        serde_json::from_value(seg.clone()).map_err(|e| anyhow!("BiomedCLIPSeg config: {e}"))?;
    let dc = sc.decoder_config(&enc).map_err(|e| anyhow!("BiomedCLIPSeg config: {e}"))?;
    let vm = VarMap::new();
    BiomedClip::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), &enc)?;
    fill(&vm, seed, 0, |_| true)?;
    save_varmap(&vm, &dir.join("open_clip_model.safetensors"))?;
    if with_decoder {
        let dm = VarMap::new();
        ClipSegDecoder::new(VarBuilder::from_varmap(&dm, DType::F32, &Device::Cpu).pp("decoder"), &dc)?;
        fill(&dm, seed, 1, |_| true)?;
        save_varmap(&dm, &dir.join("decoder.safetensors"))?;
    }
    write_json(&dir.join("config.json"), &seg)
}
