//! CLIPSeg against transformers: tiny random models written by tools/make_clipseg_fixtures.py,
//! with their reference activations, conditional embeddings and logits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support as common;
use candle_core::{DType, Device, IndexOp, Tensor};
use common::assert_close_tol;
use serde_json::Value;
use vlsm::models::clipseg::{ClipSeg, ClipSegConfig};
use vlsm::pipeline::{self, Segmenter};
use vlsm::preprocess::ImageProcessorConfig;
use vlsm::tokenize::ClipTokenizer;
use vlsm::weights;

fn fixtures() -> PathBuf {
    crate::support::fx("clipseg")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn cases() -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn load_model(dir: &Path) -> ClipSeg {
    let cfg: ClipSegConfig = weights::read_json(&dir.join("config.json")).unwrap();
    let w = weights::find_weights(dir).unwrap();
    let vb = weights::var_builder(&w, DType::F32, &Device::Cpu, None).unwrap();
    ClipSeg::new(vb, &cfg).unwrap()
}

fn rgb(rel: &str) -> image::RgbImage {
    image::open(fixtures().join(rel)).unwrap().to_rgb8()
}

#[test]
fn every_case_matches_transformers() {
    let r = reference();
    let mut checked = 0;
    for case in cases() {
        let kind = case["kind"].as_str().unwrap();
        if kind == "preprocess" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let get = |k: &str| r.get(&format!("{name}.{k}")).unwrap_or_else(|| panic!("{name}.{k} missing")).clone();
        let dir = fixtures().join(case["model_dir"].as_str().unwrap());
        let model = load_model(&dir);
        let proc =
            ImageProcessorConfig::from_file(fixtures().join(case["processor_config"].as_str().unwrap())).unwrap();

        // Pixel values from our processor, within 1e-5 of the reference ones.
        let img = rgb(case["image"].as_str().unwrap());
        let pv = proc.preprocess(&img).unwrap();
        let ref_pv = get("pixel_values");
        let ref_pv0 = ref_pv.i(0..1).unwrap();
        let pv_err = (pv.clone() - &ref_pv0).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(pv_err <= 1e-5, "{name}: pixel values differ by {pv_err}");

        // Image activations at the extracted layers, from the reference pixel values.
        let acts = model.image_activations(&ref_pv0).unwrap();
        let ref_acts = get("activations"); // [n_layers, B, N, D]
        for (l, a) in acts.iter().enumerate() {
            assert_close_tol(&format!("{name} activation {l}"), a, &ref_acts.i((l, 0..1)).unwrap(), 1e-4);
        }

        let ref_cond = get("conditional_embeddings");
        let cond = if kind == "text" {
            let tok = ClipTokenizer::from_dir(&dir).unwrap();
            let prompts: Vec<String> =
                case["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
            // Token ids, padded the way the case was.
            let ref_ids = get("input_ids").to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
            let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
            let pad_to = case["pad_to"].as_u64().map(|v| v as usize);
            let (ids, _mask) = tok.encode_batch_padded(&refs, pad_to).unwrap();
            assert_eq!(ids, ref_ids, "{name}: token ids");
            // Padded batch and unpadded prompts give the same conditional embeddings.
            let (b, l) = (ids.len(), ids[0].len());
            let flat: Vec<u32> = ids.concat();
            let padded = model.text_conditional(&Tensor::from_vec(flat, (b, l), &Device::Cpu).unwrap()).unwrap();
            assert_close_tol(&format!("{name} padded text conditional"), &padded, &ref_cond, 1e-4);
            let mut rows = vec![];
            for p in &prompts {
                let ids = tok.encode(p).unwrap();
                let n = ids.len();
                rows.push(model.text_conditional(&Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap()).unwrap());
            }
            Tensor::cat(&rows, 0).unwrap()
        } else {
            // Visual prompt engineering within ±1 grey level of the fixture's, then the CLIP
            // image embedding of the engineered image.
            let src = rgb(case["prompt_source_image"].as_str().unwrap());
            let mask = image::open(fixtures().join(case["prompt_mask"].as_str().unwrap())).unwrap().to_luma8();
            let ours = pipeline::visual_prompt(&src, &mask).unwrap();
            let theirs = rgb(case["prompt_image"].as_str().unwrap());
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}: engineered prompt size");
            let worst = ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 1, "{name}: engineered prompt differs by {worst} grey levels");
            let cpv = proc.preprocess(&theirs).unwrap();
            assert_close_tol(&format!("{name} prompt pixel values"), &cpv, &get("conditional_pixel_values"), 1e-5);
            model.image_conditional(&cpv).unwrap()
        };
        assert_close_tol(&format!("{name} conditional embeddings"), &cond, &ref_cond, 1e-4);

        // Logits: reference pixel values and conditions through our decoder, and our whole path.
        let ref_logits = get("logits");
        let logits = model.decoder.forward(&acts, &ref_cond).unwrap();
        assert_close_tol(&format!("{name} logits"), &logits, &ref_logits, 1e-4);
        let ours = model.forward(&pv, &cond).unwrap();
        assert_close_tol(&format!("{name} end-to-end logits"), &ours, &ref_logits, 1e-4);
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} model cases in the fixture");
}

#[test]
fn segmenter_loads_both_weight_formats_and_writes_masks() {
    for dir in ["tiny_complex", "tiny_simple"] {
        let seg = Segmenter::load(&fixtures().join(dir)).unwrap();
        let img = rgb("images/kvasir_75x50.png");
        let pv = seg.pixel_values(&[&img]).unwrap();
        let f = seg.encode_images(&pv).unwrap();
        let cond = seg.text_conditional(&["polyp".to_string(), "".to_string()]).unwrap();
        let logits = seg.decode(&f[0], &cond).unwrap();
        assert_eq!(logits.dim(0).unwrap(), 2);
        let probs = pipeline::probabilities_at(&logits.get(0).unwrap(), 75, 50).unwrap();
        assert_eq!(probs.len(), 75 * 50);
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
        let mask = pipeline::threshold_mask(&probs, 75, 50, 0.5).unwrap();
        assert!(mask.pixels().all(|p| p[0] == 0 || p[0] == 255));
    }
}

#[test]
fn mix_interpolates_in_embedding_space() {
    let t = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
    let i = Tensor::new(&[[3f32, 3.0]], &Device::Cpu).unwrap();
    let m = pipeline::mix_conditionals(&t, &i, 0.25).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(m, vec![vec![1.5, 0.75], vec![0.75, 1.5]]);
    assert!(pipeline::mix_conditionals(&t, &i, 1.5).is_err());
}
