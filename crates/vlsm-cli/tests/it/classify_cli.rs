//! `vlsm classify`: zero-shot with --labels (CLIP, BiomedCLIP), supervised without.

use crate::support::vlsm;
use std::path::{Path, PathBuf};

fn fx(rel: &str) -> PathBuf {
    crate::support::fx(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn zero_shot_clip_ranks_labels_as_the_reference_does() {
    let img = fx("clipseg/images/kvasir_75x50.png");
    let labels = "polyp,normal colon mucosa,a breast tumour in ultrasound,Café 🩺";
    let (ok, out, err) = vlsm(&["classify", s(&img), "--model", s(&fx("clip/tiny")), "--labels", labels, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model_type"], "clip");
    assert_eq!(v["zero_shot"], true);
    assert_eq!(v["num_labels"], 4);
    // transformers' logits_per_image for this image (tools/make_clip_fixtures.py): label 2 is best.
    let r = candle_core::safetensors::load(fx("clip/reference.safetensors"), &candle_core::Device::Cpu).unwrap();
    let row: Vec<Vec<f32>> = r["logits_per_image"].to_vec2().unwrap();
    let best = (0..4).max_by(|&a, &b| row[0][a].total_cmp(&row[0][b])).unwrap();
    assert_eq!(v["predictions"][0]["index"], best);
    assert_eq!(v["predictions"].as_array().unwrap().len(), 4);

    // Text output, BiomedCLIP, and a template.
    let (ok, out, err) = vlsm(&[
        "classify",
        s(&img),
        "--model",
        s(&fx("biomedclip/tiny")),
        "--labels",
        "polyp,lesion",
        "--template",
        "an endoscopy image of a {}",
        "--top-k",
        "1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("polyp") || out.contains("lesion"), "{out}");
}

#[test]
fn bad_zero_shot_arguments_fail_with_one_line() {
    let img = fx("clipseg/images/kvasir_75x50.png");
    let m = fx("clip/tiny");
    let (ok, _, err) = vlsm(&["classify", s(&img), "--model", s(&m), "--labels", "a,b", "--template", "no slot"]);
    assert!(!ok && err.contains("--template"), "{err}");
    let (ok, _, err) = vlsm(&["classify", s(&img), "--model", s(&m), "--labels", "a,,b"]);
    assert!(!ok && err.contains("--labels"), "{err}");
    let (ok, _, err) = vlsm(&["classify", s(&img), "--model", s(&fx("clipseg/tiny_complex")), "--labels", "a,b"]);
    assert!(!ok && err.contains("config.json"), "{err}");
    // Without --labels a CLIP directory is not a supervised classifier.
    let (ok, _, _) = vlsm(&["classify", s(&img), "--model", s(&m)]);
    assert!(!ok);
}

#[test]
fn without_labels_a_supervised_vit_still_classifies() {
    let img = fx("clipseg/images/kvasir_75x50.png");
    let (ok, out, err) = vlsm(&["classify", s(&img), "--model", s(&fx("vit/tiny_cls")), "--json", "--top-k", "2"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["zero_shot"], false);
    assert_eq!(v["predictions"].as_array().unwrap().len(), 2);
}
