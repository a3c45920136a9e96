//! The text-free UNet baseline: learns a tiny synthetic task, deterministically from its seed,
//! resumes exactly, exports a model directory that `Segmenter` and `eval` use without prompts,
//! and rejects bad input with errors that name the problem.

use std::path::{Path, PathBuf};

use image::GrayImage;
use vlsm::eval::{self, EvalOptions};
use vlsm::pipeline::Segmenter;
use vlsm::train::{Hooks, RunOptions, TrainConfig};

use crate::support::Synth;

const TINY: &[usize] = &[4, 8, 16];

/// A bright disc somewhere on a noisy-ish dark background; the mask is the disc.
fn write_dataset(root: &Path, n: usize) {
    let inside = |i: u32, x: u32, y: u32| {
        let (cx, cy) = (8.0 + (i * 7 % 16) as f32, 8.0 + (i * 5 % 16) as f32);
        (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 25.0
    };
    Synth::new(n as u32, 32, 32)
        .image(move |i, x, y| {
            let bg = ((x * 13 + y * 7 + i * 3) % 40) as u8 + 20;
            if inside(i, x, y) {
                [200, 180, 60]
            } else {
                [bg, bg, bg + 10]
            }
        })
        .mask(inside)
        .bbox()
        // Prompts are there (medvlsm layout) but a UNet never reads them.
        .prompts(serde_json::json!({"p0": "disc", "p1": ["a disc", "round thing"]}))
        .splits(&["train", "val", "test"])
        .write(root);
}

fn config(dir: &Path, data: &Path, out: &str, epochs: usize, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
output_dir = "{out}"
seed = 5
[model]
kind = "unet"
[data]
datasets = ["{data}"]
image_size = 32
feature_cache = false
[train]
epochs = {epochs}
min_epochs = {epochs}
batch_size = 4
lr = 1e-2
weight_decay = 0.0
grad_clip = 0.0
[loss]
kind = "dice"
{extra}"#,
        out = dir.join(out).display(),
        data = data.display()
    );
    let p = dir.join(format!("{out}.toml"));
    std::fs::write(&p, text).unwrap();
    TrainConfig::load(&p).unwrap()
}

fn train(cfg: &TrainConfig, opts: RunOptions, hooks: Hooks) -> anyhow::Result<vlsm::train::RunSummary> {
    vlsm::train::tasks::unet::train_with(cfg, &opts, hooks, Some(TINY.to_vec()))
}

fn data_dir(tmp: &Path, n: usize) -> PathBuf {
    let d = tmp.join("discs");
    write_dataset(&d, n);
    d
}

#[test]
fn unet_learns_deterministically_and_evaluates_without_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path(), 8);
    let a = train(&config(tmp.path(), &data, "a", 20, ""), RunOptions::quiet(), Hooks::none()).unwrap();
    let (first, last) = (a.history.first().unwrap(), a.history.last().unwrap());
    let trace: Vec<_> = a.history.iter().map(|r| (r.train_loss as f32, r.val_dice as f32)).collect();
    // Soft Dice falls slowly while the logits are small; the thresholded Dice shows the learning.
    assert!(last.train_loss < 0.85 * first.train_loss, "loss, val Dice: {trace:?}");
    let best = a.best_val_dice.unwrap();
    assert!(best > 0.85 && first.val_dice < 0.6, "loss, val Dice: {trace:?}");

    // Same seed, same run: the init and the shuffling come from the seed alone.
    let b = train(&config(tmp.path(), &data, "b", 3, ""), RunOptions::quiet(), Hooks::none()).unwrap();
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(x.train_loss, y.train_loss, "epoch {}", x.epoch);
        assert_eq!(x.val_dice, y.val_dice, "epoch {}", x.epoch);
    }

    // The best checkpoint is a model directory; prompts do not change its output.
    let seg = Segmenter::load(&a.run_dir.join("best")).unwrap();
    assert!(!seg.uses_text());
    assert_eq!(seg.kind_name(), "unet");
    let img = image::open(data.join("images/0.png")).unwrap().to_rgb8();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let cond = seg.text_conditional(&["disc".into(), "something else".into()]).unwrap();
    let l = seg.decode(&f[0], &cond).unwrap();
    assert_eq!(l.dims(), &[2, 32, 32]);
    let diff = (l.get(0).unwrap() - l.get(1).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    assert!(seg.image_conditional(&img, &GrayImage::new(32, 32)).is_err());

    // eval with no prompt key: one pass under "none"; a key given is ignored but named.
    for (prompts, key) in [(None, "none"), (Some(vec!["p1".to_string(), "p0".to_string()]), "p1")] {
        let out = tmp.path().join(format!("eval-{key}"));
        let opts = EvalOptions {
            model: "unet".into(),
            data: vec![data.clone()],
            split: "test".into(),
            prompts,
            out: out.clone(),
            threshold: 0.5,
            seed: 42,
            batch: 3,
            progress: false,
            worst: 2,
            tta: Default::default(),
            post: Default::default(),
            ablation: false,
        };
        let r = eval::evaluate(&seg, &opts).unwrap();
        assert_eq!(r.prompts.keys().collect::<Vec<_>>(), vec![key]);
        let d = r.prompts[key].pooled.dice;
        assert!((d - best).abs() < 0.15 && d > 0.6, "test Dice {d}, val Dice {best}");
        eval::write_outputs(&r, &opts).unwrap();
        assert!(out.join("metrics.json").is_file());
        assert!(out.join("masks/discs/0.png").is_file());
    }
}

#[test]
fn unet_resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path(), 6);
    let whole = train(&config(tmp.path(), &data, "whole", 4, ""), RunOptions::quiet(), Hooks::none()).unwrap();

    let cfg = config(tmp.path(), &data, "split", 4, "");
    let part = train(&cfg, RunOptions::quiet(), Hooks::stop_after(2)).unwrap();
    assert!(!part.finished);
    assert_eq!(part.history.len(), 2);
    // A second fresh start into the same output_dir is refused.
    let e = train(&cfg, RunOptions::quiet(), Hooks::none()).unwrap_err().to_string();
    assert!(e.contains("already holds a run"), "{e}");
    let resumed = train(&cfg, RunOptions::quiet().resumed(), Hooks::none()).unwrap();
    assert!(resumed.finished);
    let losses = |s: &vlsm::train::RunSummary| s.history.iter().map(|r| (r.train_loss, r.val_dice)).collect::<Vec<_>>();
    assert_eq!(losses(&whole), losses(&resumed));
    assert!(cfg.output_dir.join("best/config.json").is_file());
}

#[test]
fn unet_bad_input_is_an_error_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path(), 4);

    // Three levels need a size divisible by 4.
    let mut cfg = config(tmp.path(), &data, "size", 1, "");
    cfg.data.image_size = 34;
    let e = train(&cfg, RunOptions::quiet(), Hooks::none()).unwrap_err().to_string();
    assert!(e.contains("data.image_size") && e.contains("34"), "{e}");

    let mut cfg = config(tmp.path(), &data, "missing", 1, "");
    cfg.data.datasets = vec![tmp.path().join("nowhere")];
    let e = format!("{:#}", train(&cfg, RunOptions::quiet(), Hooks::none()).unwrap_err());
    assert!(e.contains("nowhere"), "{e}");

    // A mask whose size differs from its image names the mask file.
    GrayImage::new(10, 10).save(data.join("masks/2.png")).unwrap();
    let cfg = config(tmp.path(), &data, "mask", 1, "");
    let e = format!("{:#}", train(&cfg, RunOptions::quiet(), Hooks::none()).unwrap_err());
    assert!(e.contains("2.png") && e.contains("mask"), "{e}");

    // A UNet directory with a broken config fails to load, naming config.json.
    let d = tmp.path().join("broken");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), r#"{"model_type": "unet", "image_size": 30}"#).unwrap();
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    let e = format!("{:#}", Segmenter::load(&d).err().unwrap());
    assert!(e.contains("config.json") && e.contains("image_size"), "{e}");
}
