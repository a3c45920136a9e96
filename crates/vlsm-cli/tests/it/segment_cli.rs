//! `vlsm segment` end to end: outputs, and one-line errors with no output files left behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support::vlsm;
use candle_core::{Device, Tensor};

fn fixtures() -> PathBuf {
    crate::support::fx("clipseg")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the tiny model directory whose weights went through `edit`.
fn edited_model(tmp: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let src = fixtures().join("tiny_complex");
    let dst = tmp.join("model");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut t = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, dst.join("model.safetensors")).unwrap();
    dst
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    }
}

fn assert_one_line_error(ok: bool, err: &str, needles: &[&str]) {
    assert!(!ok, "expected failure");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} does not mention {n:?}");
    }
}

#[test]
fn writes_masks_overlays_and_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let model = fixtures().join("tiny_complex");
    let img = fixtures().join("images/kvasir_75x50.png");
    let npy = tmp.path().join("l.npy");
    let (ok, _, err) =
        vlsm(&["segment", s(&img), "--prompt", "polyp", "--model", s(&model), "--out", s(&out), "--logits", s(&npy)]);
    assert!(ok, "{err}");
    let mask = image::open(out.join("kvasir_75x50.mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (75, 50));
    assert!(mask.pixels().all(|p| p[0] == 0 || p[0] == 255));
    let ov = image::open(out.join("kvasir_75x50.overlay.png")).unwrap();
    assert_eq!((ov.width(), ov.height()), (75, 50));
    let (shape, data) = vlsm::io::read_npy_f32(&npy).unwrap();
    assert_eq!(shape, vec![16, 16]);
    assert!(data.iter().all(|v| v.is_finite()));

    // Several images and prompts, plus an image prompt mixed in.
    let out2 = tmp.path().join("out2");
    let img2 = fixtures().join("images/clinicdb_64.png");
    let (ok, _, err) = vlsm(&[
        "segment",
        s(&img),
        s(&img2),
        "-p",
        "polyp",
        "-p",
        "",
        "--prompt-image",
        s(&fixtures().join("images/kvasir_75x50.png")),
        "--prompt-mask",
        s(&fixtures().join("images/kvasir_75x50_mask.png")),
        "--mix",
        "0.3",
        "--model",
        s(&model),
        "--out",
        s(&out2),
        "--batch",
        "1",
    ]);
    assert!(ok, "{err}");
    let mut files = files_in(&out2);
    files.sort();
    assert_eq!(
        files,
        [
            "clinicdb_64.0.mask.png",
            "clinicdb_64.0.overlay.png",
            "clinicdb_64.1.mask.png",
            "clinicdb_64.1.overlay.png",
            "kvasir_75x50.0.mask.png",
            "kvasir_75x50.0.overlay.png",
            "kvasir_75x50.1.mask.png",
            "kvasir_75x50.1.overlay.png",
        ]
    );
}

#[test]
fn bad_model_directories_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fixtures().join("images/kvasir_75x50.png");
    let out = tmp.path().join("out");
    let run = |model: &Path| vlsm(&["segment", s(&img), "-p", "x", "--model", s(model), "--out", s(&out)]);

    let (ok, _, err) = run(&tmp.path().join("nope"));
    assert_one_line_error(ok, &err, &["nope", "not found"]);

    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("config.json"), "{ not json").unwrap();
    let (ok, _, err) = run(&bad);
    assert_one_line_error(ok, &err, &["config.json", "malformed JSON"]);

    let t1 = tempfile::tempdir().unwrap();
    let missing = edited_model(t1.path(), |t| {
        t.remove("decoder.film_mul.weight");
    });
    let (ok, _, err) = run(&missing);
    assert_one_line_error(ok, &err, &["model.safetensors", "decoder.film_mul.weight"]);

    let t2 = tempfile::tempdir().unwrap();
    let wrong = edited_model(t2.path(), |t| {
        t.insert(
            "decoder.reduces.1.weight".into(),
            Tensor::zeros((16, 31), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let (ok, _, err) = run(&wrong);
    assert_one_line_error(ok, &err, &["model.safetensors", "decoder.reduces.1.weight", "[16, 32]", "[16, 31]"]);

    let t3 = tempfile::tempdir().unwrap();
    let trunc = edited_model(t3.path(), |_| {});
    std::fs::write(trunc.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let (ok, _, err) = run(&trunc);
    assert_one_line_error(ok, &err, &["model.safetensors"]);

    assert!(files_in(&out).is_empty(), "outputs left behind: {:?}", files_in(&out));
}

#[test]
fn bad_inputs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("tiny_complex");
    let out = tmp.path().join("out");
    let good = fixtures().join("images/kvasir_75x50.png");
    let corrupt = tmp.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();

    let (ok, _, err) = vlsm(&["segment", "-p", "x", "--model", s(&model), "--out", s(&out)]);
    assert_one_line_error(ok, &err, &["no images"]);

    let (ok, _, err) = vlsm(&["segment", s(&good), s(&corrupt), "-p", "x", "--model", s(&model), "--out", s(&out)]);
    assert_one_line_error(ok, &err, &["corrupt.png"]);

    let missing = tmp.path().join("missing.jpg");
    let (ok, _, err) = vlsm(&["segment", s(&missing), "-p", "x", "--model", s(&model), "--out", s(&out)]);
    assert_one_line_error(ok, &err, &["missing.jpg"]);

    let (ok, _, err) = vlsm(&[
        "segment",
        s(&good),
        s(&good),
        "-p",
        "a",
        "-p",
        "b",
        "--model",
        s(&model),
        "--logits",
        s(&tmp.path().join("x.npy")),
        "--out",
        s(&out),
    ]);
    assert_one_line_error(ok, &err, &["--logits"]);

    let (ok, _, err) = vlsm(&[
        "segment",
        s(&good),
        "--prompt-image",
        s(&good),
        "--prompt-mask",
        s(&fixtures().join("images/busi_60x45_mask.png")),
        "--model",
        s(&model),
        "--out",
        s(&out),
    ]);
    assert_one_line_error(ok, &err, &["busi_60x45_mask.png", "75x50"]);

    assert!(files_in(&out).is_empty(), "outputs left behind: {:?}", files_in(&out));
}

/// Many prompts are decoded in bounded chunks (#17 item 7): 40 prompts give exactly the masks
/// that 40 one-prompt runs give, across the chunk boundaries.
#[test]
fn many_prompts_in_chunks_equal_one_prompt_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, model) = (fixtures().join("images/kvasir_75x50.png"), fixtures().join("tiny_complex"));
    let prompts: Vec<String> = (0..40).map(|i| format!("a polyp number {i} in the image")).collect();
    let all = tmp.path().join("all");
    let mut args = vec!["segment", s(&img), "--model", s(&model), "--out", s(&all)];
    for p in &prompts {
        args.extend(["--prompt", p.as_str()]);
    }
    let (ok, _, err) = vlsm(&args);
    assert!(ok, "{err}");
    let mut seen = std::collections::HashSet::new();
    for k in [0, 15, 16, 31, 32, 39] {
        let one = tmp.path().join(format!("one{k}"));
        let (ok, _, err) = vlsm(&["segment", s(&img), "--model", s(&model), "--prompt", &prompts[k], "--out", s(&one)]);
        assert!(ok, "{err}");
        let a = std::fs::read(all.join(format!("kvasir_75x50.{k}.mask.png"))).unwrap();
        let b = std::fs::read(one.join("kvasir_75x50.mask.png")).unwrap();
        assert!(a == b, "prompt {k}: the mask from the 40-prompt run differs from its own run");
        seen.insert(a);
    }
    // The prompts give different masks, so a prompt written under another's index would show.
    assert_eq!(seen.len(), 6);
}

#[test]
fn json_prints_one_record_per_image_and_prompt_with_presence() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let ex = crate::support::repo_root().join("examples");
    let busi = ex.join("busi_20_benign.jpg");
    let clinic = ex.join("clinicdb_382.png");
    let model = crate::support::repo_root().join("models/default");
    let tumour = "Tumor in the breast ultrasound image.";
    let (ok, stdout, err) = vlsm(&[
        "segment",
        s(&busi),
        s(&clinic),
        "-p",
        tumour,
        "-p",
        "polyp",
        "--model",
        s(&model),
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(ok, "{err}");
    let recs: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 4, "{stdout}");
    for r in &recs {
        let mask = image::open(r["mask"].as_str().unwrap()).unwrap().to_luma8();
        let area = mask.pixels().filter(|p| p[0] > 0).count() as u64;
        assert_eq!(r["area"].as_u64(), Some(area), "{r}");
        let p = r["presence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r}");
        // The first-generation model has no head: present is "the mask has a pixel".
        assert_eq!(r["present"].as_bool(), Some(area > 0), "{r}");
    }
    let find = |img: &str, prompt: &str| {
        recs.iter().find(|r| r["image"].as_str().unwrap().ends_with(img) && r["prompt"] == prompt).unwrap().clone()
    };
    assert_eq!(find("busi_20_benign.jpg", tumour)["present"], true);
    assert_eq!(find("busi_20_benign.jpg", "polyp")["present"], false);
    assert_eq!(find("clinicdb_382.png", "polyp")["present"], true);
    assert_eq!(find("clinicdb_382.png", tumour)["present"], false);
    assert_eq!(find("clinicdb_382.png", "polyp")["mask"].as_str().unwrap(), s(&out.join("clinicdb_382.1.mask.png")));
}
