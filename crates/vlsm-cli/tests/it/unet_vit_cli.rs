//! `vlsm train` / `eval` / `segment` / `classify` for the text-free UNet and for ViT
//! classification, on tiny synthetic data.

use crate::support::{tiny_vit, vlsm, Synth};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Eight 32x32 images with a yellow square each; every split is the same records.
fn seg_dataset(dir: &Path) -> PathBuf {
    let inside = |i: u32, x: u32, y: u32| (4 + i..16 + i).contains(&x) && (6 + i / 2..18 + i / 2).contains(&y);
    Synth::new(8, 32, 32)
        .image(move |i, x, y| if inside(i, x, y) { [220, 200, 40] } else { [30, 30, 90] })
        .mask(inside)
        .prompts(serde_json::json!({"p1": "square"}))
        .splits(&["train", "val", "test"])
        .write(&dir.join("squares"))
}

#[test]
fn unet_trains_evaluates_and_segments_without_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = seg_dataset(tmp.path());
    let cfg = tmp.path().join("unet.toml");
    std::fs::write(
        &cfg,
        format!(
            "output_dir = \"run\"\n[model]\nkind = \"unet\"\nchannels = [4, 8, 16]\n[data]\ndatasets = [\"{}\"]\nimage_size = 32\nfeature_cache = false\n[train]\nepochs = 12\nmin_epochs = 12\nbatch_size = 4\nlr = 1e-2\nweight_decay = 0.0\ngrad_clip = 0.0\n[loss]\nkind = \"dice\"\n",
            s(&ds)
        ),
    )
    .unwrap();
    let (ok, _, err) = vlsm(&["--threads", "1", "train", "--config", s(&cfg)]);
    assert!(ok, "{err}");
    let best = tmp.path().join("run/best");
    assert!(best.join("config.json").is_file() && best.join("model.safetensors").is_file());
    let csv = std::fs::read_to_string(tmp.path().join("run/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "{csv}");

    // eval with no --prompt: one row under "none"; the masks are good.
    let out = tmp.path().join("eval");
    let (ok, stdout, err) = vlsm(&["eval", "--model", s(&best), "--data", s(&ds), "--out", s(&out)]);
    assert!(ok, "{err}");
    assert!(stdout.contains("none"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let dice = m["prompts"]["none"]["pooled"]["dice"].as_f64().unwrap();
    assert!(dice > 0.8, "test Dice {dice}");
    // A prompt key is accepted and ignored (the paper's `--prompt p1` runs).
    let out1 = tmp.path().join("eval-p1");
    let (ok, _, err) = vlsm(&["eval", "--model", s(&best), "--data", s(&ds), "--prompt", "p1", "--out", s(&out1)]);
    assert!(ok, "{err}");
    let m1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out1.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m1["prompts"]["p1"]["pooled"]["dice"].as_f64().unwrap(), dice);

    // segment with no prompt.
    let seg_out = tmp.path().join("seg");
    let (ok, _, err) = vlsm(&["segment", s(&ds.join("images/3.png")), "--model", s(&best), "--out", s(&seg_out)]);
    assert!(ok, "{err}");
    assert!(std::fs::read_dir(&seg_out).unwrap().count() > 0);

    // Resuming the finished run is a no-op; a fresh start into it is refused.
    let (ok, _, err) = vlsm(&["train", "--config", s(&cfg), "--resume"]);
    assert!(ok, "{err}");
    let (ok, _, err) = vlsm(&["train", "--config", s(&cfg)]);
    assert!(!ok && err.contains("already holds a run"), "{err}");
}

#[test]
fn text_models_still_need_a_prompt_key_and_bad_unet_configs_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = seg_dataset(tmp.path());
    let clipseg = crate::support::fx("clipseg/tiny_complex");
    let (ok, _, err) = vlsm(&["eval", "--model", s(&clipseg), "--data", s(&ds), "--out", s(&tmp.path().join("o"))]);
    assert!(!ok && err.contains("--prompt"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    for (extra, key) in [("channels = [4, 8, 16]\n", "data.image_size"), ("channels = [4]\n", "channels")] {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!(
                "output_dir = \"bad\"\n[model]\nkind = \"unet\"\n{extra}[data]\ndatasets = [\"{}\"]\nimage_size = 34\n",
                s(&ds)
            ),
        )
        .unwrap();
        let (ok, _, err) = vlsm(&["train", "--config", s(&cfg)]);
        assert!(!ok && err.contains(key), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// `root/{train,val}/{blue,red}/*.png`, told apart by colour.
fn class_dataset(root: &Path, per_class: usize) {
    for split in ["train", "val"] {
        for (k, name) in ["blue", "red"].iter().enumerate() {
            let d = root.join(split).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(20, 20, |x, y| {
                    let n = ((x * 7 + y * 13 + i as u32 * 31 + split.len() as u32) % 60) as u8;
                    if k == 0 {
                        image::Rgb([n, 40 + n, 200 - n])
                    } else {
                        image::Rgb([200 - n, 40 + n, n])
                    }
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

fn vit_config(dir: &Path, vit: &Path, data: &Path, out: &str) -> PathBuf {
    let p = dir.join(format!("{out}.toml"));
    std::fs::write(
        &p,
        format!(
            "output_dir = \"{out}\"\nseed = 3\n[model]\nkind = \"vit_classify\"\ndir = \"{}\"\nfreeze = []\n[data]\ndatasets = [\"{}\"]\nimage_size = 16\nfeature_cache = false\n[train]\nepochs = 20\nmin_epochs = 20\nbatch_size = 6\nlr = 3e-3\nweight_decay = 0.0\ngrad_clip = 0.0\n[loss]\nkind = \"bce\"\n",
            s(vit),
            s(data)
        ),
    )
    .unwrap();
    p
}

#[test]
fn vit_classify_trains_and_evaluates_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("colours");
    class_dataset(&data, 6);
    let vit = tiny_vit(&tmp.path().join("tiny_vit"));
    let cfg = vit_config(tmp.path(), &vit, &data, "run");
    let (ok, _, err) = vlsm(&["--threads", "1", "train", "--config", s(&cfg)]);
    assert!(ok, "{err}");
    // Seeded: a second run repeats the first exactly (seconds aside).
    let (ok, _, err) = vlsm(&["--threads", "1", "train", "--config", s(&vit_config(tmp.path(), &vit, &data, "again"))]);
    assert!(ok, "{err}");
    let losses = |run: &str| -> Vec<String> {
        let t = std::fs::read_to_string(tmp.path().join(run).join("metrics.csv")).unwrap();
        t.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
    };
    assert_eq!(losses("run"), losses("again"));
    let first: f64 = losses("run")[1].split(',').nth(1).unwrap().parse().unwrap();
    let last: f64 = losses("run").last().unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!(last < 0.5 * first, "train loss {first} -> {last}");

    let best = tmp.path().join("run/best");
    let out = tmp.path().join("eval");
    let (ok, stdout, err) =
        vlsm(&["eval", "--model", s(&best), "--data", s(&data), "--split", "val", "--out", s(&out)]);
    assert!(ok, "{err}");
    assert!(stdout.contains("accuracy 1.0000 (12 images)"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["accuracy"].as_f64(), Some(1.0));
    assert_eq!(m["classes"], serde_json::json!(["blue", "red"]));
    assert_eq!(m["confusion"], serde_json::json!([[6, 0], [0, 6]]));

    // The best checkpoint is a ViTForImageClassification with the new labels.
    let (ok, stdout, err) = vlsm(&["classify", s(&data.join("val/red/0.png")), "--model", s(&best), "--top-k", "1"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("red"), "{stdout}");
}

#[test]
fn vit_classify_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("colours");
    class_dataset(&data, 2);
    let vit = tiny_vit(&tmp.path().join("tiny_vit"));
    // No train/ folder under the data root.
    let cfg = vit_config(tmp.path(), &vit, &data.join("train"), "r1");
    let (ok, _, err) = vlsm(&["train", "--config", s(&cfg)]);
    assert!(!ok && err.contains("train") && err.contains("not found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // model.dir is not a ViT.
    let clipseg = crate::support::fx("clipseg/tiny_complex");
    let cfg = vit_config(tmp.path(), &clipseg, &data, "r2");
    let (ok, _, err) = vlsm(&["train", "--config", s(&cfg)]);
    assert!(!ok && err.contains("config.json") && err.contains("ViT"), "{err}");
    // A val class the train split lacks.
    std::fs::create_dir_all(data.join("val/green")).unwrap();
    let cfg = vit_config(tmp.path(), &vit, &data, "r3");
    let (ok, _, err) = vlsm(&["train", "--config", s(&cfg)]);
    assert!(!ok && err.contains("green"), "{err}");
}
