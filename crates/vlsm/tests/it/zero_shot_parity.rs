//! Zero-shot classification against transformers' `CLIPModel` (tiny random, real CLIP vocabulary)
//! and open_clip's BiomedCLIP forward (tools/make_clip_fixtures.py): tokens, pixel values,
//! features and logits within 1e-4 of the largest magnitude.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use vlsm::classify::{self, ImageClassifier};
use vlsm::zero_shot::{ZeroShotClassifier, DEFAULT_TEMPLATE};

use crate::support as common;
use common::assert_close;

fn fx(rel: &str) -> PathBuf {
    crate::support::fx(rel)
}

fn cases(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn clip_zero_shot_matches_transformers() {
    let dev = Device::Cpu;
    let c = cases(&fx("clip/cases.json"));
    let labels = strings(&c["labels"]);
    let template = c["template"].as_str().unwrap();
    assert_eq!(template, DEFAULT_TEMPLATE);
    let r = candle_core::safetensors::load(fx("clip/reference.safetensors"), &dev).unwrap();
    let zs = ZeroShotClassifier::load(&fx("clip/tiny"), &labels, template, &dev).unwrap();
    assert_eq!(zs.family_name(), "clip");
    assert!((zs.logit_scale() - 2.0).abs() < 1e-6);

    // Tokens: each prompt's ids are the reference row up to its attention mask.
    let tok = vlsm::tokenize::ClipTokenizer::from_bpe_gz(vlsm::tokenize::find_bpe().unwrap()).unwrap();
    let ids: Vec<Vec<i64>> = r["input_ids"].to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = r["attention_mask"].to_vec2().unwrap();
    for (i, p) in zs.prompts().iter().enumerate() {
        let want: Vec<u32> = ids[i].iter().zip(&mask[i]).filter(|(_, m)| **m == 1).map(|(t, _)| *t as u32).collect();
        assert_eq!(tok.encode(p).unwrap(), want, "{p}");
    }
    assert_close("text_embeds", &zs.text_features(zs.prompts()).unwrap(), &r["text_embeds"]);
    let pv = &r["pixel_values"];
    assert_close("image_embeds", &zs.image_features(pv).unwrap(), &r["image_embeds"]);
    assert_close("logits_per_image", &zs.logits(pv).unwrap(), &r["logits_per_image"]);

    // End to end from the image files, through vlsm's CLIP preprocessing.
    for (i, name) in strings(&c["images"]).iter().enumerate() {
        let img = image::open(fx("clipseg/images").join(name)).unwrap().to_rgb8();
        let ours = zs.processor().preprocess(&img).unwrap();
        assert_close(&format!("pixel_values {name}"), &ours, &pv.i(i..i + 1).unwrap());
        let preds = classify::classify(&zs, &img, labels.len()).unwrap();
        let want: Vec<f32> = r["logits_per_image"].i(i).unwrap().to_vec1().unwrap();
        let best = (0..want.len()).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        assert_eq!(preds[0].index, best, "{name}");
        let s: f32 = preds.iter().map(|p| p.probability).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}

#[test]
fn biomedclip_zero_shot_matches_open_clip() {
    let dev = Device::Cpu;
    let c = cases(&fx("biomedclip/cases.json"));
    let prompts = strings(&c["prompts"]);
    let z = candle_core::safetensors::load(fx("biomedclip/zero_shot.safetensors"), &dev).unwrap();
    let keep: Vec<i64> = z["prompt_index"].to_vec1().unwrap();
    let labels: Vec<String> = keep.iter().map(|&i| prompts[i as usize].clone()).collect();
    let r = candle_core::safetensors::load(fx("biomedclip/reference.safetensors"), &dev).unwrap();
    let zs = ZeroShotClassifier::load(&fx("biomedclip/tiny"), &labels, "{}", &dev).unwrap();
    assert_eq!(zs.family_name(), "biomedclip");
    let logits = zs.logits(&r["pixel_values"].to_dtype(DType::F32).unwrap()).unwrap();
    assert_close("biomedclip logits_per_image", &logits, &z["logits_per_image"]);
}

#[test]
fn bad_templates_labels_and_models_are_named() {
    let dev = Device::Cpu;
    let l = vec!["polyp".to_string()];
    let err = |r: anyhow::Result<ZeroShotClassifier>| format!("{:#}", r.err().expect("an error"));
    assert!(err(ZeroShotClassifier::load(&fx("clip/tiny"), &l, "a photo", &dev)).contains("--template"));
    let e = err(ZeroShotClassifier::load(&fx("clip/tiny"), &["a".into(), " ".into()], "{}", &dev));
    assert!(e.contains("--labels"), "{e}");
    let e = err(ZeroShotClassifier::load(&fx("clipseg/tiny_complex"), &l, "{}", &dev));
    assert!(e.contains("config.json") && e.contains("'clipseg'"), "{e}");
    let e = err(ZeroShotClassifier::load(&fx("nowhere"), &l, "{}", &dev));
    assert!(e.contains("nowhere"), "{e}");
    let _ = Tensor::zeros(1, DType::F32, &dev);
}

/// Non-square images from the file to the probabilities, through each family's own
/// classification transform (tools/make_zero_shot_nonsquare_fixtures.py): transformers' PIL
/// `CLIPImageProcessor` for CLIP, open_clip's evaluation transform for BiomedCLIP.
#[test]
fn non_square_images_classify_as_the_reference_transforms_do() {
    let dev = Device::Cpu;
    let c = cases(&fx("zero_shot/cases.json"));
    let r = candle_core::safetensors::load(fx("zero_shot/reference.safetensors"), &dev).unwrap();
    let clip_labels = strings(&cases(&fx("clip/cases.json"))["labels"]);
    let bm_prompts = strings(&cases(&fx("biomedclip/cases.json"))["prompts"]);
    let keep: Vec<i64> = candle_core::safetensors::load(fx("biomedclip/zero_shot.safetensors"), &dev).unwrap()
        ["prompt_index"]
        .to_vec1()
        .unwrap();
    let bm_labels: Vec<String> = keep.iter().map(|&i| bm_prompts[i as usize].clone()).collect();
    let models = [
        ("clip", ZeroShotClassifier::load(&fx("clip/tiny"), &clip_labels, DEFAULT_TEMPLATE, &dev).unwrap()),
        ("biomedclip", ZeroShotClassifier::load(&fx("biomedclip/tiny"), &bm_labels, "{}", &dev).unwrap()),
    ];
    for (family, zs) in &models {
        assert_eq!(zs.family_name(), *family);
        for (i, name) in strings(&c["images"]).iter().enumerate() {
            let img = vlsm::io::read_rgb(&fx("zero_shot").join(name)).unwrap();
            assert_ne!(img.width(), img.height());
            let what = format!("{family} {name}");
            let pv = zs.processor().preprocess(&img).unwrap();
            assert_close(
                &format!("{what} pixel_values"),
                &pv,
                &r[&format!("{family}.pixel_values")].i(i..i + 1).unwrap(),
            );
            let logits = zs.logits(&pv).unwrap();
            let want = r[&format!("{family}.logits_per_image")].i(i..i + 1).unwrap();
            assert_close(&format!("{what} logits"), &logits, &want);
            // The probabilities `vlsm classify` prints, in label order.
            let preds = classify::classify(zs, &img, zs.labels().len()).unwrap();
            let mut probs = vec![0f32; preds.len()];
            for p in &preds {
                probs[p.index] = p.probability;
            }
            let probs = Tensor::new(probs, &dev).unwrap();
            assert_close(&format!("{what} probabilities"), &probs, &r[&format!("{family}.probs")].i(i).unwrap());
        }
    }
}
