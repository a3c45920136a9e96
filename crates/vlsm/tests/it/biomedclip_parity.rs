//! BiomedCLIP and BiomedCLIPSeg against open_clip + medvlsm's forward, on the tiny random models
//! written by tools/make_biomedclip_fixtures.py.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::support as common;
use candle_core::{DType, Device, IndexOp, Tensor};
use common::{assert_close, rel_err};

fn fixtures() -> PathBuf {
    crate::support::fx("biomedclip")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn prompts() -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    v["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

fn model_dir() -> PathBuf {
    fixtures().join("tiny")
}

#[test]
fn tokens_match_open_clip() {
    let r = reference();
    let dir = model_dir();
    let c = vlsm::loader::biomedclip_config(&dir).unwrap();
    let model = vlsm::loader::biomedclip(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = vlsm::loader::wordpiece_tokenizer(&dir, c.context_length).unwrap();
    let p = prompts();
    let refs: Vec<&str> = p.iter().map(String::as_str).collect();
    let (ids, mask) = model.tokenize(&tok, &refs, &Device::Cpu).unwrap();
    let want_ids = r["input_ids"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    let want_mask = r["attention_mask"].to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    assert_eq!(ids.to_vec2::<u32>().unwrap(), want_ids);
    assert_eq!(mask.to_vec2::<u32>().unwrap(), want_mask);
    // open_clip's HFTextEncoder derives the mask from the pad id; so do we.
    let derived = model.text.transformer.padding_mask(&ids).unwrap();
    assert_eq!(derived.to_vec2::<u32>().unwrap(), want_mask);
}

#[test]
fn features_and_blocks_match_open_clip() {
    let r = reference();
    let model = vlsm::loader::biomedclip(&model_dir(), DType::F32, &Device::Cpu).unwrap();
    let pv = &r["pixel_values"];
    let blocks = model.visual.trunk.forward_blocks(pv, model.visual.trunk.blocks.len() - 1).unwrap();
    let want = &r["vision.blocks"];
    assert_eq!(blocks.len(), want.dim(0).unwrap());
    for (i, b) in blocks.iter().enumerate() {
        assert_close(&format!("vit block {i}"), b, &want.i(i).unwrap());
    }
    assert_close("image features", &model.image_features(pv).unwrap(), &r["image_features"]);

    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = r["attention_mask"].to_dtype(DType::U32).unwrap();
    let hs = model.text.transformer.forward_hidden_states(&ids, &mask).unwrap();
    let want = &r["text.hidden_states"];
    assert_eq!(hs.len(), want.dim(0).unwrap());
    for (i, h) in hs.iter().enumerate() {
        // Padding positions attend only to real tokens, so they match too.
        assert_close(&format!("bert hidden state {i}"), h, &want.i(i).unwrap());
    }
    assert_close("text features", &model.text_features(&ids, &mask).unwrap(), &r["text_features"]);
}

#[test]
fn biomedclipseg_logits_match_medvlsm() {
    let r = reference();
    let dir = model_dir();
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = r["attention_mask"].to_dtype(DType::U32).unwrap();
    let pv = &r["pixel_values"];
    // BiomedCLIPSeg: the directory's own decoder; -D: a whole CLIPSeg checkpoint's decoder.*.
    let clipseg = fixtures().join("clipseg_tiny.safetensors");
    for (name, dec) in [("seg", None), ("seg_d", Some(clipseg.as_path()))] {
        let m = vlsm::loader::biomedclipseg(&dir, dec, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.config.extract_layers, vec![4, 7, 10]);
        let cond = m.text_conditional(&ids, &mask).unwrap();
        assert_close(&format!("{name} condition"), &cond, &r["text_features"]);
        let acts = m.image_activations(pv).unwrap();
        for (a, &l) in acts.iter().zip(&m.config.extract_layers) {
            assert_close(&format!("{name} activation {l}"), a, &r["vision.blocks"].i(l).unwrap());
        }
        let logits = m.forward(pv, &cond).unwrap();
        assert_close(&format!("{name} logits"), &logits, &r[&format!("{name}.logits")]);
    }
    // The two decoders differ, so the -D case really read the other file.
    assert!(rel_err(&r["seg.logits"], &r["seg_d.logits"]) > 1e-2);
}

#[test]
fn image_processor_is_medvlsms() {
    let c = vlsm::loader::biomedclip_config(&model_dir()).unwrap();
    let p = c.image_processor();
    assert_eq!(p.image_mean, [0.48145466, 0.4578275, 0.40821073]);
    let img = image::RgbImage::from_pixel(100, 70, image::Rgb([10, 200, 30]));
    let t = p.preprocess(&img).unwrap();
    assert_eq!(t.dims(), &[1, 3, 64, 64]);
}

/// A copy of the tiny model directory to break.
fn scratch() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(model_dir()).unwrap() {
        let e = e.unwrap();
        let to = t.path().join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    t
}

#[test]
fn wrong_shapes_and_missing_keys_are_named() {
    // A config that disagrees with the weights: the file, the key and both shapes.
    let t = scratch();
    let cfg = t.path().join("open_clip_config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"width\": 32", "\"width\": 40");
    std::fs::write(&cfg, text).unwrap();
    let e = vlsm::loader::biomedclip(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("open_clip_pytorch_model.bin"), "{e}");
    assert!(e.contains("visual.trunk."), "{e}");
    assert!(e.contains("40") && e.contains("32"), "{e}");

    // A decoder file without decoder.* tensors: the file and the missing key.
    let t = scratch();
    let e = vlsm::loader::biomedclipseg(
        t.path(),
        Some(&t.path().join("open_clip_pytorch_model.bin")),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("open_clip_pytorch_model.bin") && e.contains("decoder.film_mul.weight"), "{e}");

    // Missing files and a wrong model_type are named too.
    let t = scratch();
    std::fs::remove_file(t.path().join("open_clip_pytorch_model.bin")).unwrap();
    let e = vlsm::loader::biomedclip(t.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("open_clip_pytorch_model.bin"), "{e}");
    let t = scratch();
    std::fs::write(t.path().join("config.json"), r#"{"model_type": "clipseg"}"#).unwrap();
    let e = vlsm::loader::biomedclipseg(t.path(), None, DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("clipseg"), "{e}");
}
