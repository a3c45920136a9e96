//! CLIPSeg decoder training on the tiny random CLIPSeg over a 20-image subset of ../shared/data:
//! learning, exact resume, the exported model directory, and errors before training.

use crate::support::shared_data;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlsm::train::engine::loss::dice_per_image;
use vlsm::train::tasks::clipseg::{self, ClipSegTask};
use vlsm::train::tasks::common::DecoderInit;
use vlsm::train::{Hooks, RunOptions, Split, TrainConfig, Trainable};

use crate::support::{tiny_clipseg, Synth};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `clinicdb_polyp` with its first 16 train and 4 val records (images and masks linked).
fn subset(data: &Path, dir: &Path) -> PathBuf {
    let ds = dir.join("clinicdb_polyp");
    std::fs::create_dir_all(ds.join("anns")).unwrap();
    let src = data.join("clinicdb_polyp");
    for sub in ["images", "masks"] {
        std::os::unix::fs::symlink(std::fs::canonicalize(src.join(sub)).unwrap(), ds.join(sub)).unwrap();
    }
    for (split, n) in [("train", 16), ("val", 4)] {
        let text = std::fs::read_to_string(src.join("anns").join(format!("{split}.json"))).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        std::fs::write(ds.join("anns").join(format!("{split}.json")), serde_json::to_string(&v[..n]).unwrap()).unwrap();
    }
    ds
}

fn config(ds: &Path, out: &Path, cache: &Path, epochs: usize) -> TrainConfig {
    let text = format!(
        r#"output_dir = "{}"
seed = 7
[model]
kind = "clipseg"
dir = "{}"
[data]
datasets = ["{}"]
prompts = ["p1", "p2"]
image_size = 32
cache_dir = "{}"
[train]
epochs = {epochs}
min_epochs = {epochs}
batch_size = 4
lr = 1e-2
[early_stopping]
patience = 0
"#,
        out.display(),
        tiny_clipseg().display(),
        ds.display(),
        cache.display()
    );
    TrainConfig::parse(&text).unwrap()
}

fn val_dice(task: &mut ClipSegTask, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = task.len(Split::Val);
    let (input, targets) = task.batch(Split::Val, &(0..n).collect::<Vec<_>>(), &mut rng).unwrap();
    let d = dice_per_image(&task.forward(&input).unwrap(), &targets).unwrap();
    d.iter().sum::<f64>() / n as f64
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> bool {
    let bits = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    a.len() == b.len() && a.iter().all(|(k, t)| b.get(k).is_some_and(|u| bits(t) == bits(u)))
}

#[test]
fn decoder_training_lowers_loss_and_raises_val_dice() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ds = subset(&data, tmp.path());
    let cfg = config(&ds, &tmp.path().join("run"), &tmp.path().join("cache"), 25);
    let mut task = ClipSegTask::new(&cfg, DecoderInit::Checkpoint, false).unwrap();
    assert_eq!(task.output_size(), (16, 16), "tiny_complex at 32 px decodes at 16 px");
    let before = val_dice(&mut task, 1);
    drop(task);

    let s = clipseg::train(&cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    assert!(s.finished);
    let (first, last) = (&s.history[0], s.history.last().unwrap());
    assert!(last.train_loss < 0.8 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);
    let best = s.best_val_dice.unwrap();
    assert!(best > before + 0.03, "val Dice {before:.4} before training, best {best:.4}");

    // RUN/best is a model directory `vlsm segment` can load, holding the best decoder.
    let best_dir = s.run_dir.join("best");
    let model = tensors(&best_dir.join("model.safetensors"));
    let trained = tensors(&best_dir.join("weights.safetensors"));
    let dec: HashMap<String, Tensor> =
        model.iter().filter(|(k, _)| k.starts_with("decoder.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(same(&dec, &trained));
    let seg = vlsm::pipeline::Segmenter::load(&best_dir).unwrap();
    let img = vlsm::io::read_rgb(&ds.join("images/1.png")).unwrap();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let cond = seg.text_conditional(&["polyp".to_string()]).unwrap();
    assert_eq!(seg.decode(&f[0], &cond).unwrap().dims(), &[1, 16, 16]);
    assert!(s.run_dir.join("curves.png").is_file() && s.run_dir.join("metrics.csv").is_file());
}

#[test]
fn killed_run_resumes_to_bit_identical_weights() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ds = subset(&data, tmp.path());
    let cache = tmp.path().join("cache");
    let full = config(&ds, &tmp.path().join("full"), &cache, 4);
    let a = clipseg::train(&full, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();

    let part = config(&ds, &tmp.path().join("part"), &cache, 4);
    let s = clipseg::train(&part, &RunOptions::quiet(), Hooks::stop_after(2), DecoderInit::Checkpoint).unwrap();
    assert!(!s.finished);
    assert_eq!(s.history.len(), 2);
    let b = clipseg::train(&part, &RunOptions::quiet().resumed(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    assert!(b.finished);

    for f in ["weights.safetensors", "optimizer.safetensors"] {
        let (x, y) = (tensors(&a.run_dir.join("last").join(f)), tensors(&b.run_dir.join("last").join(f)));
        assert!(same(&x, &y), "{f} differs after resume");
    }
    let losses =
        |h: &[vlsm::train::EpochRecord]| h.iter().map(|r| (r.train_loss, r.val_loss, r.val_dice)).collect::<Vec<_>>();
    assert_eq!(losses(&a.history), losses(&b.history));
}

/// A tiny synthetic dataset: `n` 40x30 images with square masks; `bad_mask` gets a 20x20 mask.
fn synthetic(dir: &Path, n: usize, bad_mask: Option<usize>) -> PathBuf {
    let square = |x: u32, y: u32| (10..20).contains(&x) && (5..15).contains(&y);
    let ds = Synth::new(n as u32, 40, 30)
        .image(|i, x, y| [(x * 6) as u8, (y * 8) as u8, (i * 20) as u8])
        .mask(|_, x, y| square(x, y))
        .prompts(serde_json::json!({"p0": "", "p1": "square"}))
        .write(&dir.join("synth"));
    if let Some(i) = bad_mask {
        let m = image::GrayImage::from_fn(20, 20, |x, y| image::Luma([if square(x, y) { 255 } else { 0 }]));
        m.save(ds.join(format!("masks/{i}.png"))).unwrap();
    }
    ds
}

fn error_of(cfg: &TrainConfig) -> String {
    let e = clipseg::train(cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap_err();
    assert!(!cfg.output_dir.join("last").exists(), "training started despite: {e}");
    format!("{e:#}")
}

#[test]
fn data_and_checkpoint_errors_come_before_training_and_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cache = tmp.path().join("cache");

    let ds = synthetic(tmp.path(), 3, None);
    std::fs::remove_file(ds.join("masks/1.png")).unwrap();
    let e = error_of(&config(&ds, &out, &cache, 1).with_prompts(&["p1"]));
    assert!(e.contains("masks/1.png") && e.contains("not found"), "{e}");

    let tmp2 = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp2.path(), 3, Some(2));
    let e = error_of(&config(&ds, &out, &cache, 1).with_prompts(&["p1"]));
    assert!(e.contains("masks/2.png") && e.contains("20x20"), "{e}");

    // A prompt key the records lack.
    let tmp3 = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp3.path(), 3, None);
    let e = error_of(&config(&ds, &out, &cache, 1));
    assert!(e.contains("p2") && e.contains("synth"), "{e}");

    // Another architecture's checkpoint.
    let other = tmp.path().join("bert");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let mut cfg = config(&ds, &out, &cache, 1).with_prompts(&["p1"]);
    cfg.model.dir = other.clone();
    let e = error_of(&cfg);
    assert!(e.contains("config.json") && e.contains("bert"), "{e}");

    // A CLIPSeg config whose weights are another model's: names the weight file and the key.
    let mismatched = tmp.path().join("mismatched");
    std::fs::create_dir_all(&mismatched).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_clipseg().join("config.json")).unwrap()).unwrap();
    c["vision_config"]["hidden_size"] = 48.into();
    std::fs::write(mismatched.join("config.json"), c.to_string()).unwrap();
    std::fs::copy(tiny_clipseg().join("model.safetensors"), mismatched.join("model.safetensors")).unwrap();
    cfg.model.dir = mismatched;
    let e = error_of(&cfg);
    assert!(e.contains("model.safetensors") && e.contains("vision_model"), "{e}");
}

#[test]
fn random_decoder_init_follows_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 2, None);
    let mut cfg = config(&ds, &tmp.path().join("run"), &tmp.path().join("cache"), 1).with_prompts(&["p1"]);
    cfg.data.feature_cache = false;
    let vals = |cfg: &TrainConfig, init| {
        let t = ClipSegTask::new(cfg, init, false).unwrap();
        t.vars()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect::<Vec<_>>()
    };
    let a = vals(&cfg, DecoderInit::Random);
    assert_eq!(a, vals(&cfg, DecoderInit::Random));
    assert_ne!(a, vals(&cfg, DecoderInit::Checkpoint));
    assert!(a.iter().all(|(n, _)| n.starts_with("decoder.")));
    cfg.seed += 1;
    assert_ne!(a, vals(&cfg, DecoderInit::Random));
}

trait WithPrompts {
    fn with_prompts(self, p: &[&str]) -> Self;
}

impl WithPrompts for TrainConfig {
    fn with_prompts(mut self, p: &[&str]) -> Self {
        self.data.prompts = p.iter().map(|s| s.to_string()).collect();
        self
    }
}

#[test]
fn example_configs_parse() {
    for e in std::fs::read_dir(root().join("configs")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        if p.extension().is_some_and(|x| x == "toml") && text.contains("[model]") && text.contains("output_dir") {
            TrainConfig::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}
