//! Swin against transformers: tiny random models written by tools/make_vit_swin_fixtures.py,
//! including inputs that need padding to whole patches and windows and odd-size merging, and
//! `SwinBackbone`'s `always_partition` windowing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support as common;
use candle_core::{DType, Device, Tensor};
use common::assert_close;
use serde_json::Value;
use vlsm::classify::{HfClassifier, ImageClassifier};
use vlsm::models::swin::{SwinConfig, SwinForImageClassification, SwinModel};
use vlsm::weights;

fn fixtures() -> PathBuf {
    crate::support::fx("swin")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn load(dir: &Path) -> (SwinConfig, candle_nn::VarBuilder<'static>) {
    let c: SwinConfig = weights::read_json(&dir.join("config.json")).unwrap();
    let w = weights::find_weights(dir).unwrap();
    (c, weights::var_builder(&w, DType::F32, &Device::Cpu, None).unwrap())
}

#[test]
fn every_case_matches_transformers() {
    let r = reference();
    let mut n = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let get = |k: &str| r.get(&format!("{name}.{k}")).unwrap_or_else(|| panic!("{name}.{k} missing")).clone();
        let (c, vb) = load(&fixtures().join(case["model_dir"].as_str().unwrap()));
        let pv = get("pixel_values");
        let out = if case["kind"] == "cls" {
            let m = SwinForImageClassification::new(vb, &c).unwrap();
            assert_close(&format!("{name} logits"), &m.forward(&pv).unwrap(), &get("logits"));
            m.swin.forward(&pv).unwrap()
        } else {
            let mut m = SwinModel::new(vb, &c).unwrap();
            m.always_partition = case["always_partition"].as_bool().unwrap_or(false);
            m.forward(&pv).unwrap()
        };
        assert_eq!(out.stages.len(), 4);
        for (i, s) in out.stages.iter().enumerate() {
            assert_close(&format!("{name} stage {i}"), s, &get(&format!("stage{i}")));
        }
        assert_close(&format!("{name} last_hidden_state"), &out.last_hidden_state, &get("last_hidden_state"));
        assert_close(&format!("{name} pooler_output"), &out.pooler_output, &get("pooler_output"));
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn pyramid_shapes_and_strides() {
    let (c, vb) = load(&fixtures().join("tiny_cls"));
    let m = SwinModel::new(vb.pp("swin"), &c).unwrap();
    let pv = Tensor::zeros((1, 3, 69, 90), DType::F32, &Device::Cpu).unwrap();
    let f = m.forward_features(&pv).unwrap();
    let dims: Vec<Vec<usize>> = f.iter().map(|t| t.dims().to_vec()).collect();
    assert_eq!(dims, vec![vec![1, 8, 35, 45], vec![1, 16, 18, 23], vec![1, 32, 9, 12], vec![1, 64, 5, 6]]);
    // Too small for the last stage's window: a clear error, not a shape panic.
    let tiny = Tensor::zeros((1, 3, 40, 40), DType::F32, &Device::Cpu).unwrap();
    let e = m.forward(&tiny).err().unwrap().to_string();
    assert!(e.contains("smaller than the 4x4 window"), "{e}");
    // SwinBackbone's windowing pads instead: 20, 10, 5, 3 maps.
    let mut m = m;
    m.always_partition = true;
    let f = m.forward_features(&tiny).unwrap();
    assert_eq!(f[3].dims(), &[1, 64, 3, 3]);
}

#[test]
fn classifier_directory_loads() {
    let r = reference();
    let m = HfClassifier::load(&fixtures().join("tiny_cls"), &Device::Cpu).unwrap();
    assert_eq!(m.labels(), ["kvasir", "clinicdb", "busi", "other"]);
    assert_close("HfClassifier logits", &m.logits(&r["cls_69x90.pixel_values"]).unwrap(), &r["cls_69x90.logits"]);
}
