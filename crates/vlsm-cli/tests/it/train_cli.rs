//! `vlsm train`: a short run on the tiny CLIPSeg, then `vlsm segment --model RUN/best`; config errors.

use crate::support::{tiny_clipseg as tiny_model, vlsm_stderr as vlsm, Synth};
use std::path::{Path, PathBuf};

/// Six 40x30 images with a square each, as both train and val split.
fn dataset(dir: &Path) -> PathBuf {
    let inside = |i: u32, x: u32, y: u32| (5 + i..20 + i).contains(&x) && (5..20).contains(&y);
    Synth::new(6, 40, 30)
        .image(move |i, x, y| if inside(i, x, y) { [220, 200, 40] } else { [30, 30, 90] })
        .mask(inside)
        .prompts(serde_json::json!({"p1": "square"}))
        .write(&dir.join("squares"))
}

fn write_config(dir: &Path, ds: &Path, extra: &str) -> PathBuf {
    let p = dir.join("train.toml");
    let text = format!(
        "output_dir = \"run\"\n{extra}[model]\nkind = \"clipseg\"\ndir = \"{}\"\n[data]\ndatasets = [\"{}\"]\nprompts = [\"p1\"]\nimage_size = 32\n[train]\nepochs = 3\nmin_epochs = 3\nbatch_size = 3\nlr = 1e-2\n",
        tiny_model().display(),
        ds.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn trains_resumes_and_segments_with_the_best_model() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let cfg = write_config(tmp.path(), &ds, "");
    let (ok, err) = vlsm(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
    let run = tmp.path().join("run");
    for f in [
        "metrics.csv",
        "curves.png",
        "config.toml",
        "best/model.safetensors",
        "best/config.json",
        "best/tokenizer.json",
        "last/weights.safetensors",
    ] {
        assert!(run.join(f).is_file(), "no {f}");
    }
    assert_eq!(std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count(), 4);
    // Training again into the same run needs --resume; resuming a finished run is a no-op.
    let (ok, err) = vlsm(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("resume"), "{err}");
    assert!(vlsm(&["train", "--config", cfg.to_str().unwrap(), "--resume"]).0);

    let out = tmp.path().join("seg");
    let (ok, err) = vlsm(&[
        "segment",
        "--model",
        run.join("best").to_str().unwrap(),
        "-p",
        "square",
        "--out",
        out.to_str().unwrap(),
        ds.join("images/0.png").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(vlsm::io::read_mask(&out.join("0.mask.png")).unwrap().dimensions(), (40, 30));
}

#[test]
fn config_errors_name_the_key_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    for (extra, key) in [("bogus_key = 1\n", "bogus_key"), ("seed = -3\n", "seed")] {
        let cfg = write_config(tmp.path(), &ds, extra);
        let (ok, err) = vlsm(&["train", "--config", cfg.to_str().unwrap()]);
        assert!(!ok && err.contains(key) && err.contains("train.toml"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let cfg = write_config(tmp.path(), &ds, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("lr = 1e-2", "lr = 0.0");
    std::fs::write(&cfg, text).unwrap();
    let (ok, err) = vlsm(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("train.lr"), "{err}");
    for bad in ["0", "-1e-3", "nan", "fast"] {
        let (ok, err) = vlsm(&["train", "--config", cfg.to_str().unwrap(), "--lr", bad]);
        assert!(!ok && err.contains("--lr") && err.contains("not a positive number"), "{bad}: {err}");
    }
    assert!(!tmp.path().join("run").exists());
}
