//! `vlsm eval` on BiomedCLIPSeg, CRIS and TextUNet directories: each kind's own threshold, and
//! masks equal to what the library's `Segmenter` predicts for the same prompt.

use std::path::{Path, PathBuf};

use vlsm::pipeline::{self, Segmenter};

use crate::support::{repo_root, squares, tiny_cris, vlsm};

/// A test split of 3 images of 48x36 (the last with an empty mask).
fn dataset(dir: &Path) -> PathBuf {
    squares(3, 48, 36, 70)
        .names("im", "")
        .prompts(serde_json::json!({"p0": "", "p1": "a small polyp"}))
        .write(&dir.join("synth"))
}

fn eval_and_compare(model: &Path, want_threshold: f32) {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("out");
    let (m, d, o) = (model.to_str().unwrap(), ds.to_str().unwrap(), out.to_str().unwrap());
    let (ok, _, err) = vlsm(&["eval", "--model", m, "--data", d, "--prompt", "p1", "--out", o]);
    assert!(ok, "{err}");
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
    eval_and_compare(&repo_root().join("tests/fixtures/biomedclip/tiny"), 0.5);
}

#[test]
fn eval_cris_uses_its_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    eval_and_compare(&tiny_cris(&tmp.path().join("cris"), 5), 0.35);
}

#[test]
fn eval_textunet() {
    let dir = repo_root().join("models/default");
    if !dir.join("config.json").is_file() {
        eprintln!("skipped: no built-in model");
        return;
    }
    let t = Segmenter::load(&dir).unwrap().default_threshold();
    eval_and_compare(&dir, t);
}

#[test]
fn eval_ablation_tta_and_post_processing() {
    let dir = repo_root().join("models/default");
    let tmp = tempfile::tempdir().unwrap();
    let a = dataset(tmp.path());
    let b = squares(3, 40, 40, 50)
        .names("b", "")
        .prompts(serde_json::json!({"p0": "", "p1": "a benign tumor in the breast"}))
        .write(&tmp.path().join("other"));
    let out = tmp.path().join("out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (m, da, db, o) = (s(&dir), s(&a), s(&b), s(&out));
    let args = ["eval", "--model", &m, "--data", &da, &db, "--prompt", "p1", "--out", &o];
    let (ok, _, err) = vlsm(&[&args[..], &["--ablation", "--tta", "flip", "--post", "lcc,fill"]].concat());
    assert!(ok, "{err}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for ds in ["synth", "other"] {
        let ab = &j["ablation"][ds];
        assert_eq!(ab["n"], 3, "{j}");
        for k in ["own", "empty", "other", "shuffled", "present_own", "present_other"] {
            let v = ab[k].as_f64().unwrap_or_else(|| panic!("{ds}.{k} in {ab}"));
            assert!((0.0..=1.0).contains(&v), "{ds}.{k} = {v}");
        }
        assert!(j["prompts"]["p1"]["datasets"][ds]["present_rate"].as_f64().is_some());
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Does the text matter?"));
    // The masks are the library's TTA masks, post-processed.
    let seg = Segmenter::load(&dir).unwrap();
    let img = vlsm::io::read_rgb(&a.join("images/im0.png")).unwrap();
    let t = seg.default_threshold();
    let (l, pres) = seg.segment_image(&img, &["a small polyp".to_string()], t, pipeline::Tta::Flip).unwrap();
    let probs = pipeline::probabilities_at(&l.get(0).unwrap(), 48, 36).unwrap();
    let mut want = pipeline::threshold_mask(&probs, 48, 36, t).unwrap();
    if !pres[0].present {
        want.fill(0);
    }
    "lcc,fill".parse::<pipeline::PostProcess>().unwrap().apply(&mut want);
    let got = vlsm::io::read_mask(&out.join("masks/synth/im0.png")).unwrap();
    assert_eq!(got.as_raw(), want.as_raw());
    // A bad option value is one line naming it.
    let (ok, _, err) = vlsm(&[&args[..], &["--post", "blur"]].concat());
    assert!(!ok && err.contains("blur"), "{err}");
}
