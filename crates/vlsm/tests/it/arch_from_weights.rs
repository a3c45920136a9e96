//! Architectures read off the weights, as the reference code reads them: a CRIS directory with
//! only the checkpoint and CRIS.pytorch's yaml (or a config.json with only the decoder settings),
//! and a BiomedCLIP text tower without its BERT config.json.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use vlsm::models::bert::BertConfig;
use vlsm::models::cris::CrisConfig;
use vlsm::models::resnet_clip::ClipResNetConfig;

fn reference(kind: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(crate::support::fx(kind).join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The tiny CRIS fixture's decoder settings in CRIS.pytorch's format (its
/// config/refcoco/cris_r50.yaml, sizes changed), with the sections and keys CRIS ignores.
const CRIS_YAML: &str = "\
DATA:
  dataset: refcoco
  train_lmdb: datasets/lmdb/refcoco/train.lmdb
TRAIN:
  # Base Arch
  clip_pretrain: pretrain/RN50.pt
  input_size: 96
  word_len: 12
  word_dim: 64
  vis_dim: 64
  fpn_in: [64, 128, 64]
  fpn_out: [32, 64, 64]   # neck widths
  sync_bn: True
  # Decoder
  num_layers: 2
  num_head: 4
  dim_ffn: 48
  dropout: 0.1
  intermediate: False
  weight:  # path to initial weight (default: none)
  exp_name: CRIS_R50
Distributed:
  dist_url: tcp://localhost:3681
  dist_backend: 'nccl'
TEST:
  test_split: val-test
  visualize: False
";

fn cris_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(crate::support::fx("cris/cris.pth"), t.path().join("cris.pth")).unwrap();
    for (name, text) in files {
        std::fs::write(t.path().join(name), text).unwrap();
    }
    t
}

fn cris_logits(dir: &Path) -> Tensor {
    let r = reference("cris");
    let model = vlsm::loader::cris(dir, DType::F32, &Device::Cpu).unwrap();
    let ids = r["ids"].to_dtype(DType::U32).unwrap();
    model.forward_all(&r["img"], &ids).unwrap().logits
}

fn fixture_cris_config() -> CrisConfig {
    serde_json::from_str(&std::fs::read_to_string(crate::support::fx("cris/config.json")).unwrap()).unwrap()
}

#[test]
fn cris_backbone_is_read_off_the_checkpoint() {
    let shapes =
        vlsm::weights::state_dict_shapes(&crate::support::fx("cris/cris.pth"), vlsm::loader::CRIS_PROBE).unwrap();
    let inferred = ClipResNetConfig::from_state_dict(&shapes, "backbone.").unwrap();
    assert_eq!(inferred, fixture_cris_config().backbone);
}

#[test]
fn cris_yaml_directory_gives_the_full_configs_logits() {
    let full = cris_logits(&crate::support::fx("cris"));
    let t = cris_dir_with(&[("cris_r50.yaml", CRIS_YAML)]);
    assert_eq!(vlsm::weights::detect(t.path()).unwrap(), vlsm::weights::ModelKind::Cris);
    let src = vlsm::loader::cris_source(t.path()).unwrap();
    let want = fixture_cris_config();
    assert_eq!(src.config.backbone, want.backbone);
    assert_eq!((src.config.word_len, src.config.img_size, src.config.num_head), (12, 96, 4));
    assert_eq!(values(&cris_logits(t.path())), values(&full));
    // And against the reference CRIS code itself.
    crate::support::assert_close("logits", &cris_logits(t.path()), &reference("cris")["logits"]);
    // Through the segmentation pipeline too (kind detected from the yaml).
    let seg = vlsm::pipeline::Segmenter::load(t.path()).unwrap();
    assert_eq!(seg.kind_name(), "cris");
}

#[test]
fn cris_config_json_with_only_the_decoder_settings() {
    let full = cris_logits(&crate::support::fx("cris"));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::support::fx("cris/config.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("backbone");
    let t = cris_dir_with(&[("config.json", &v.to_string())]);
    assert_eq!(values(&cris_logits(t.path())), values(&full));
    // A partial backbone: the given fields win, the rest come from the tensors.
    v["backbone"] = serde_json::json!({ "transformer_heads": 2 });
    let t = cris_dir_with(&[("config.json", &v.to_string())]);
    assert_eq!(vlsm::loader::cris_source(t.path()).unwrap().config.backbone.transformer_heads, 2);
}

fn cris_err(files: &[(&str, &str)]) -> String {
    let t = cris_dir_with(files);
    let Err(e) = vlsm::loader::cris(t.path(), DType::F32, &Device::Cpu) else { panic!("must fail") };
    let msg = format!("{e:#}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    msg
}

#[test]
fn cris_yaml_errors_name_the_key() {
    let e = cris_err(&[("c.yaml", &CRIS_YAML.replace("  num_head: 4\n", ""))]);
    assert!(e.contains("c.yaml") && e.contains("TRAIN.num_head missing"), "{e}");
    // A decoder size the checkpoint does not have: the tensor and both shapes are named.
    let e = cris_err(&[("c.yaml", &CRIS_YAML.replace("dim_ffn: 48", "dim_ffn: 50"))]);
    assert!(e.contains("cris.pth") && e.contains("decoder.layers.0.ffn.0"), "{e}");
    let e = cris_err(&[("c.yaml", &CRIS_YAML.replace("word_dim: 64", "word_dim: 32"))]);
    assert!(e.contains("word_dim 32"), "{e}");
    let e = cris_err(&[("c.yaml", &CRIS_YAML.replace("fpn_in: [64, 128, 64]", "fpn_in: [64, x, 64]"))]);
    assert!(e.contains("c.yaml"), "{e}");
    let e = cris_err(&[("a.yaml", CRIS_YAML), ("b.yml", CRIS_YAML)]);
    assert!(e.contains("several CRIS yaml files (a.yaml, b.yml)"), "{e}");
    let e = cris_err(&[("notes.yaml", "DATA:\n  x: 1\n")]);
    assert!(e.contains("not a CRIS directory"), "{e}");
}

#[test]
fn cris_backbone_errors_name_the_tensor() {
    // Width 64 gives CLIP's 1 head; a width under 64 needs them given.
    let shapes: HashMap<String, Vec<usize>> =
        vlsm::weights::state_dict_shapes(&crate::support::fx("cris_words/model.safetensors"), vlsm::loader::CRIS_PROBE)
            .unwrap();
    let b = ClipResNetConfig::from_state_dict(&shapes, "backbone.").unwrap();
    assert_eq!((b.transformer_width, b.transformer_heads), (8, 0));
    let c = CrisConfig { backbone: b, ..fixture_cris_config() };
    let e = c.validate().unwrap_err();
    assert!(e.contains("transformer_heads 0"), "{e}");
    let mut missing = shapes.clone();
    missing.remove("backbone.visual.attnpool.positional_embedding");
    let e = ClipResNetConfig::from_state_dict(&missing, "backbone.").unwrap_err();
    assert!(e.contains("backbone.visual.attnpool.positional_embedding"), "{e}");
    let mut odd = shapes;
    odd.insert("backbone.visual.attnpool.positional_embedding".into(), vec![6, 16]);
    let e = ClipResNetConfig::from_state_dict(&odd, "backbone.").unwrap_err();
    assert!(e.contains("6 rows"), "{e}");
}

// ---- BiomedCLIP's text tower ----

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn biomed_copy(bert_config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tiny");
    copy_dir(&crate::support::fx("biomedclip/tiny"), &dir);
    match bert_config {
        Some(text) => std::fs::write(dir.join("bert/config.json"), text).unwrap(),
        None => std::fs::remove_dir_all(dir.join("bert")).unwrap(),
    }
    (t, dir)
}

fn text_features(dir: &Path) -> Tensor {
    let r = reference("biomedclip");
    let model = vlsm::loader::biomedclip(dir, DType::F32, &Device::Cpu).unwrap();
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = r["attention_mask"].to_dtype(DType::U32).unwrap();
    model.text_features(&ids, &mask).unwrap()
}

#[test]
fn bert_sizes_are_read_off_the_weights() {
    let fx = crate::support::fx("biomedclip/tiny");
    let full: BertConfig =
        serde_json::from_str(&std::fs::read_to_string(fx.join("bert/config.json")).unwrap()).unwrap();
    let shapes = vlsm::weights::tensor_shapes(&fx.join("open_clip_pytorch_model.bin"), None).unwrap();
    let heads = serde_json::json!({ "num_attention_heads": 4 });
    let c = BertConfig::from_weights(&shapes, "text.transformer.", heads.as_object().unwrap()).unwrap();
    let key = |c: &BertConfig| {
        (
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.intermediate_size,
            c.max_position_embeddings,
            c.type_vocab_size,
        )
    };
    // The tiny BERT is not BERT-base: 113 words, width 48, 3 layers, 96 inner, 64 positions.
    assert_eq!(key(&c), key(&full));
    assert_eq!(key(&c), (113, 48, 3, 4, 96, 64, 2));
}

#[test]
fn biomedclip_without_a_full_bert_config_gives_the_same_outputs() {
    let want = text_features(&crate::support::fx("biomedclip/tiny"));
    // Only the heads given (no shape shows them; 48 is no multiple of BERT's 64-wide heads).
    let (_t, dir) = biomed_copy(Some(r#"{"num_attention_heads": 4}"#));
    let c = vlsm::loader::biomedclip_config(&dir).unwrap();
    assert_eq!((c.text.vocab_size, c.text.hidden_size, c.text.num_hidden_layers), (113, 48, 3));
    let got = text_features(&dir);
    assert_eq!(values(&got), values(&want));
    crate::support::assert_close("text features", &got, &reference("biomedclip")["text_features"]);
    // The whole BiomedCLIPSeg loads from it too.
    vlsm::pipeline::Segmenter::load(&dir).unwrap();
}

#[test]
fn biomedclip_bert_errors_are_one_line() {
    // No config at all: heads would be 48 / 64; the error says what to give.
    let (_t, dir) = biomed_copy(None);
    let e = format!("{:#}", vlsm::loader::biomedclip_config(&dir).unwrap_err());
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("open_clip_pytorch_model.bin") && e.contains("num_attention_heads"), "{e}");
    // A config that contradicts the weights: the key and both shapes.
    let (_t, dir) = biomed_copy(Some(r#"{"num_attention_heads": 4, "intermediate_size": 128}"#));
    let e = format!("{:#}", vlsm::loader::biomedclip(&dir, DType::F32, &Device::Cpu).err().unwrap());
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("open_clip_pytorch_model.bin") && e.contains("intermediate.dense"), "{e}");
    let (_t, dir) = biomed_copy(Some(r#"{"num_attention_heads": 5}"#));
    let e = format!("{:#}", vlsm::loader::biomedclip_config(&dir).unwrap_err());
    assert!(e.contains("num_attention_heads 5 does not divide hidden_size 48"), "{e}");
}
