//! CRIS against the reference CRIS code on a tiny random configuration written by
//! tools/make_cris_fixtures.py: backbone, neck, decoder, projector, logits and the loss.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::support as common;
use candle_core::{DType, Device, Tensor};
use common::assert_close;
use vlsm::models::cris::{self, Cris, CrisConfig};

fn fixtures() -> PathBuf {
    crate::support::fx("cris")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn every_stage_matches_the_reference() {
    let r = reference();
    // The checkpoint is a DataParallel torch.save: {"state_dict": {"module.backbone...": ...}}.
    let model = vlsm::loader::cris(&fixtures(), DType::F32, &Device::Cpu).unwrap();
    let ids = r["ids"].to_dtype(DType::U32).unwrap();
    let out = model.forward_all(&r["img"], &ids).unwrap();
    for (name, t) in [
        ("c3", &out.c3),
        ("c4", &out.c4),
        ("c5", &out.c5),
        ("word_feats", &out.word_feats),
        ("state", &out.state),
        ("fq", &out.fq),
        ("decoded", &out.decoded),
        ("pred", &out.pred),
        ("logits", &out.logits),
    ] {
        assert_close(name, t, &r[name]);
    }
    let loss = cris::contrastive_loss(&out.pred, &r["mask"]).unwrap();
    assert_close("loss", &loss.reshape(1).unwrap(), &r["loss"]);
    assert_eq!(model.config.threshold, 0.35);
}

#[test]
fn defaults_are_medvlsms_rn50() {
    let c = CrisConfig::default();
    c.validate().unwrap();
    assert_eq!((c.img_size, c.word_len, c.vis_dim, c.word_dim), (416, 77, 512, 1024));
    assert_eq!(c.backbone.vision_layers, [3, 4, 6, 3]);
    CrisConfig::rn101().validate().unwrap();
}

/// The fixture checkpoint's tensors without DataParallel's prefix.
fn plain_tensors() -> HashMap<String, Tensor> {
    let p = fixtures().join("cris.pth");
    let vb = candle_core::pickle::read_all_with_key(&p, Some("state_dict")).unwrap();
    vb.into_iter()
        .map(|(k, v)| (k.trim_start_matches("module.").to_string(), v.to_dtype(DType::F32).unwrap()))
        .collect()
}

fn scratch_with(tensors: &HashMap<String, Tensor>, config: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    candle_core::safetensors::save(tensors, t.path().join("model.safetensors")).unwrap();
    std::fs::write(t.path().join("config.json"), config).unwrap();
    t
}

fn config_text() -> String {
    std::fs::read_to_string(fixtures().join("config.json")).unwrap()
}

#[test]
fn backbone_from_an_openai_clip_state_dict() {
    let r = reference();
    let all = plain_tensors();
    // OpenAI CLIP's names (no `backbone.`), and no attnpool.connect, which CRIS adds.
    let clip: HashMap<String, Tensor> = all
        .iter()
        .filter(|(k, _)| k.starts_with("backbone.") && !k.contains("connect"))
        .map(|(k, v)| (k["backbone.".len()..].to_string(), v.clone()))
        .collect();
    let dev = Device::Cpu;
    let clip_vb = candle_nn::VarBuilder::from_tensors(clip, DType::F32, &dev);
    let rest_vb = candle_nn::VarBuilder::from_tensors(all, DType::F32, &dev);
    let c: CrisConfig = serde_json::from_str(&config_text()).unwrap();
    let m = Cris::with_backbone(clip_vb, rest_vb, &c).unwrap();
    let logits = m.forward(&r["img"], &r["ids"].to_dtype(DType::U32).unwrap()).unwrap();
    assert_close("logits", &logits, &r["logits"]);
}

#[test]
fn plain_safetensors_and_errors_name_file_key_and_shapes() {
    let all = plain_tensors();
    // A plain (unprefixed) safetensors export loads too.
    let t = scratch_with(&all, &config_text());
    vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu).unwrap();

    // Wrong shape: a config whose FFN width disagrees with the weights.
    let t = scratch_with(&all, &config_text().replace("\"dim_ffn\": 48", "\"dim_ffn\": 40"));
    let e = vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("decoder.layers.0.ffn.0.weight"), "{e}");
    assert!(e.contains("40") && e.contains("48"), "{e}");

    // Missing key.
    let mut less = all.clone();
    less.remove("proj.txt.weight");
    let t = scratch_with(&less, &config_text());
    let e = vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("proj.txt.weight"), "{e}");

    // Not a CRIS checkpoint at all, and an inconsistent config.
    let mut other = HashMap::new();
    other.insert("foo".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap());
    let t = scratch_with(&other, &config_text());
    let e = vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("backbone.visual.conv1.weight"), "{e}");
    let t = scratch_with(&all, &config_text().replace("\"vis_dim\": 64", "\"vis_dim\": 32"));
    let e = vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("vis_dim"), "{e}");
}
