//! `vlsm eval` on BiomedCLIPSeg, CRIS and TextUNet directories: each kind's own threshold, and
//! masks equal to what the library's `Segmenter` predicts for the same prompt.

use std::path::{Path, PathBuf};
use std::process::Command;

use vlsm::pipeline::{self, Segmenter};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A test split of 3 images of 48x36 (the last with an empty mask).
fn dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("synth");
    for sub in ["images", "masks", "anns"] {
        std::fs::create_dir_all(ds.join(sub)).unwrap();
    }
    let mut recs = Vec::new();
    for i in 0..3u32 {
        let img = image::RgbImage::from_fn(48, 36, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, (i * 70) as u8]));
        img.save(ds.join(format!("images/im{i}.png"))).unwrap();
        let m = image::GrayImage::from_fn(48, 36, |x, y| {
            image::Luma([if i < 2 && (10..30).contains(&x) && (8..24).contains(&y) { 255 } else { 0 }])
        });
        m.save(ds.join(format!("masks/im{i}.png"))).unwrap();
        recs.push(serde_json::json!({"img_name": format!("im{i}.png"), "mask_name": format!("im{i}.png"),
            "prompts": {"p0": "", "p1": "a small polyp"}}));
    }
    std::fs::write(ds.join("anns/test.json"), serde_json::to_string(&recs).unwrap()).unwrap();
    ds
}

fn eval_and_compare(model: &Path, want_threshold: f32) {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vlsm"))
        .args(["eval", "--model", model.to_str().unwrap(), "--data", ds.to_str().unwrap()])
        .args(["--prompt", "p1", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["prompts"]["p1"]["pooled"]["n"], 3, "{m}");
    let t = m["threshold"].as_f64().unwrap_or_else(|| panic!("no threshold in {m}"));
    assert!((t - want_threshold as f64).abs() < 1e-6, "threshold {t}");

    let seg = Segmenter::load(model).unwrap();
    assert!((seg.default_threshold() - want_threshold).abs() < 1e-6);
    let cond = seg.text_conditional(&["a small polyp".to_string()]).unwrap();
    for i in 0..3 {
        let img = vlsm::io::read_rgb(&ds.join(format!("images/im{i}.png"))).unwrap();
        let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
        let logits = seg.decode(&f[0], &cond).unwrap().squeeze(0).unwrap();
        let probs = pipeline::probabilities_at(&logits, 48, 36).unwrap();
        let want = pipeline::threshold_mask(&probs, 48, 36, want_threshold).unwrap();
        let got = vlsm::io::read_mask(&out.join(format!("masks/synth/im{i}.png"))).unwrap();
        assert_eq!(got.dimensions(), (48, 36));
        let differ = got.pixels().zip(want.pixels()).filter(|(a, b)| (a[0] > 0) != (b[0] > 0)).count();
        assert_eq!(differ, 0, "image {i}: {differ} pixels differ from the Segmenter's mask");
    }
}

#[test]
fn eval_biomedclipseg() {
    eval_and_compare(&root().join("tests/fixtures/biomedclip/tiny"), 0.5);
}

#[test]
fn eval_cris_uses_its_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let c = serde_json::json!({
        "backbone": {"embed_dim": 32, "image_resolution": 64, "vision_layers": [1, 1, 1, 1], "vision_width": 8,
                     "context_length": 16, "vocab_size": 49408, "transformer_width": 32,
                     "transformer_heads": 2, "transformer_layers": 1},
        "word_len": 8, "fpn_in": [64, 128, 32], "fpn_out": [16, 32, 32], "vis_dim": 32, "word_dim": 32,
        "num_layers": 1, "num_head": 2, "dim_ffn": 32, "img_size": 64
    });
    let dir = tmp.path().join("cris");
    let bpe = vlsm::tokenize::find_bpe().unwrap();
    vlsm::train::tasks::random_init::write_cris(&dir, &c, 5, Some(&bpe)).unwrap();
    eval_and_compare(&dir, 0.35);
}

#[test]
fn eval_textunet() {
    let dir = root().join("models/default");
    if !dir.join("config.json").is_file() {
        eprintln!("skipped: no built-in model");
        return;
    }
    let t = Segmenter::load(&dir).unwrap().default_threshold();
    eval_and_compare(&dir, t);
}
