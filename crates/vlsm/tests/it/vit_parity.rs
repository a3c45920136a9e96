//! ViT against transformers: tiny random models written by tools/make_vit_swin_fixtures.py, at
//! the trained size and at sizes that need position-embedding interpolation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support as common;
use candle_core::{DType, Device, Tensor};
use common::assert_close;
use serde_json::Value;
use vlsm::classify::{self, HfClassifier, ImageClassifier};
use vlsm::models::vit::{ViTConfig, ViTForImageClassification, ViTModel};
use vlsm::weights;

fn fixtures() -> PathBuf {
    crate::support::fx("vit")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn config(dir: &Path) -> ViTConfig {
    weights::read_json(&dir.join("config.json")).unwrap()
}

#[test]
fn every_case_matches_transformers() {
    let r = reference();
    let mut n = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let get = |k: &str| r.get(&format!("{name}.{k}")).unwrap_or_else(|| panic!("{name}.{k} missing")).clone();
        let dir = fixtures().join(case["model_dir"].as_str().unwrap());
        let c = config(&dir);
        let w = weights::find_weights(&dir).unwrap();
        let vb = weights::var_builder(&w, DType::F32, &Device::Cpu, None).unwrap();
        let pv = get("pixel_values");
        let hidden = get("hidden_states"); // [L+1, B, T, D]
        let model_ref: &ViTModel;
        let cls;
        let plain;
        if case["kind"] == "cls" {
            cls = ViTForImageClassification::new(vb, &c).unwrap();
            assert_close(&format!("{name} logits"), &cls.forward(&pv).unwrap(), &get("logits"));
            model_ref = &cls.vit;
        } else {
            plain = ViTModel::new(vb, &c, true).unwrap();
            let out = plain.forward(&pv).unwrap();
            assert_close(&format!("{name} pooler_output"), out.pooler_output.as_ref().unwrap(), &get("pooler_output"));
            model_ref = &plain;
        }
        let out = model_ref.forward(&pv).unwrap();
        assert_close(&format!("{name} last_hidden_state"), &out.last_hidden_state, &get("last_hidden_state"));
        let hs = model_ref.hidden_states(&pv).unwrap();
        assert_eq!(hs.len(), hidden.dim(0).unwrap());
        for (i, h) in hs.iter().enumerate() {
            assert_close(&format!("{name} hidden_states[{i}]"), h, &hidden.get(i).unwrap());
        }
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn classifier_directory_gives_labels_and_probabilities() {
    let r = reference();
    let m = HfClassifier::load(&fixtures().join("tiny_cls"), &Device::Cpu).unwrap();
    assert_eq!(m.labels(), ["polyp", "normal mucosa", "benign", "malignant", "ulcer"]);
    let pv = r["cls_48x40.pixel_values"].clone();
    let logits = m.logits(&pv).unwrap();
    assert_close("HfClassifier logits", &logits, &r["cls_48x40.logits"]);
    let row: Vec<f32> = r["cls_48x40.logits"].get(0).unwrap().to_vec1().unwrap();
    let top = classify::top_k(&row, m.labels(), 3);
    let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(top[0].index, best);
    assert!(top.windows(2).all(|p| p[0].probability >= p[1].probability));
    // Whole-image path through the processor (ViTImageProcessor defaults at 32x32).
    let img = image::RgbImage::from_fn(50, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, 128]));
    let p = classify::classify(&m, &img, 5).unwrap();
    let total: f32 = p.iter().map(|p| p.probability).sum();
    assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
}

#[test]
fn errors_name_file_key_and_shapes() {
    // A ViTModel checkpoint has no classifier head.
    let e = HfClassifier::load(&fixtures().join("tiny_model"), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("pytorch_model.bin") && e.contains("classifier"), "{e}");
    // Wrong hidden size: the loader names the file, the key and both shapes.
    let dir = fixtures().join("tiny_cls");
    let mut c = config(&dir);
    c.intermediate_size = 65;
    let w = weights::find_weights(&dir).unwrap();
    let vb = weights::var_builder(&w, DType::F32, &Device::Cpu, None).unwrap();
    let err = ViTForImageClassification::new(vb, &c).err().unwrap();
    let msg = weights::load_error(&w, err).to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("intermediate.dense.weight"), "{msg}");
    assert!(msg.contains("65") && msg.contains("64"), "{msg}");
}
