//! `vlsm train` for BiomedCLIPSeg (-D) and CRIS on tiny models over a synthetic dataset:
//! learning, the decoder's starting point, frozen parts, exact resume, exported model
//! directories, and errors that name the key or file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use vlsm::train::tasks::clipseg::{self, ClipSegTask};
use vlsm::train::tasks::common::DecoderInit;
use vlsm::train::tasks::cris::{self as cris_train, CrisTask};
use vlsm::train::{Hooks, RunOptions, TrainConfig, Trainable};

use crate::support::{tiny_cris, Synth};

fn fx(rel: &str) -> PathBuf {
    crate::support::fx(rel)
}

/// `n` 40x30 images, each with the same bright square and its mask; train = val.
fn synthetic(dir: &Path, n: usize) -> PathBuf {
    let inside = |x: u32, y: u32| (8..24).contains(&x) && (6..20).contains(&y);
    Synth::new(n as u32, 40, 30)
        .image(move |i, x, y| if inside(x, y) { [230, 200, 190] } else { [(x * 3 + i * 7) as u8, (y * 4) as u8, 60] })
        .mask(move |_, x, y| inside(x, y))
        .prompts(serde_json::json!({"p0": "", "p1": "square", "p2": ["a pink square", "square lesion"]}))
        .write(&dir.join("synth"))
}

fn config(kind: &str, model: &Path, ds: &Path, out: &Path, extra_model: &str, extra: &str) -> TrainConfig {
    let text = format!(
        "output_dir = \"{}\"\nseed = 3\n[model]\nkind = \"{kind}\"\ndir = \"{}\"\n{extra_model}\n[data]\ndatasets = [\"{}\"]\nprompts = [\"p1\", \"p2\"]\n{extra}",
        out.display(),
        model.display(),
        ds.display()
    );
    TrainConfig::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u64> {
    let t = t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap();
    t.to_vec1::<f64>().unwrap().iter().map(|x| x.to_bits()).collect()
}

fn same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, t)| b.get(k).is_some_and(|u| bits(t) == bits(u)))
}

const FAST: &str = "image_size = 64\n[train]\nbatch_size = 4\nlr = 1e-2\n[early_stopping]\npatience = 0\n";

fn epochs(n: usize) -> String {
    FAST.replace("[train]\n", &format!("[train]\nepochs = {n}\nmin_epochs = {n}\n"))
}

#[test]
fn biomedclipseg_decoder_training_learns_and_exports_a_biomedclipseg_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 8);
    let cfg = config("biomedclipseg", &fx("biomedclip/tiny"), &ds, &tmp.path().join("run"), "", &epochs(12));
    let s = clipseg::train(&cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Random).unwrap();
    let (first, last) = (&s.history[0], s.history.last().unwrap());
    assert!(last.train_loss < 0.8 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);

    let best = s.run_dir.join("best");
    assert!(same(&tensors(&best.join("decoder.safetensors")), &tensors(&best.join("weights.safetensors"))));
    let seg = vlsm::pipeline::Segmenter::load(&best).unwrap();
    assert_eq!(seg.kind_name(), "biomedclipseg");
    let img = vlsm::io::read_rgb(&ds.join("images/0.png")).unwrap();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let cond = seg.text_conditional(&["square".to_string()]).unwrap();
    assert_eq!(seg.decode(&f[0], &cond).unwrap().dims(), &[1, 64, 64]);
    // The encoder is the source's, untouched.
    assert_eq!(
        std::fs::read(best.join("open_clip_pytorch_model.bin")).unwrap(),
        std::fs::read(fx("biomedclip/tiny/open_clip_pytorch_model.bin")).unwrap()
    );
}

#[test]
fn biomedclipseg_d_starts_from_a_clipseg_decoder_and_random_init_is_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 4);
    let clipseg = fx("biomedclip/clipseg_tiny.safetensors");
    let d = format!("decoder_from = \"{}\"", clipseg.display());
    let cfg = config("biomedclipseg", &fx("biomedclip/tiny"), &ds, &tmp.path().join("run"), &d, FAST);
    let task = ClipSegTask::new(&cfg, DecoderInit::Checkpoint, false).unwrap();
    let src = tensors(&clipseg);
    let vars = task.vars();
    assert!(!vars.is_empty());
    for (name, v) in &vars {
        assert_eq!(bits(v.as_tensor()), bits(&src[name]), "{name} is not the CLIPSeg decoder's");
    }
    // Without decoder_from: the directory's own decoder.safetensors.
    let own = config("biomedclipseg", &fx("biomedclip/tiny"), &ds, &tmp.path().join("run"), "", FAST);
    let dec = tensors(&fx("biomedclip/tiny/decoder.safetensors"));
    for (name, v) in ClipSegTask::new(&own, DecoderInit::Checkpoint, false).unwrap().vars() {
        assert_eq!(bits(v.as_tensor()), bits(&dec[&name]), "{name}");
    }
    // Random init: the same seed gives the same decoder.
    let a = ClipSegTask::new(&own, DecoderInit::Random, false).unwrap().vars();
    let b = ClipSegTask::new(&own, DecoderInit::Random, false).unwrap().vars();
    assert!(a.iter().zip(&b).all(|(x, y)| bits(x.1.as_tensor()) == bits(y.1.as_tensor())));
    assert!(a.iter().any(|(n, v)| bits(v.as_tensor()) != bits(&dec[n])));
}

#[test]
fn cris_end_to_end_with_the_contrastive_loss_learns_and_exports_a_cris_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_cris(&tmp.path().join("cris_tiny"), 11);
    let ds = synthetic(tmp.path(), 8);
    let extra = epochs(10).replace("lr = 1e-2", "lr = 2e-3") + "[loss]\nkind = \"contrastive\"\n";
    let cfg = config(
        "cris",
        &model,
        &ds,
        &tmp.path().join("run"),
        "freeze = []",
        &extra.replace("image_size = 64\n", "image_size = 64\nfeature_cache = false\n"),
    );
    let task = CrisTask::new(&cfg, DecoderInit::Checkpoint, false).unwrap();
    assert_eq!(task.output_size(), 16, "the contrastive loss works at stride 4");
    let names = task.trainable_names();
    assert!(names.iter().any(|n| n.starts_with("backbone.visual.")));
    assert!(names.iter().any(|n| n == "backbone.token_embedding.weight"));
    assert!(!names.iter().any(|n| n.ends_with("running_mean") || n.ends_with("running_var")));
    drop(task);

    let s = cris_train::train(&cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    let (first, last) = (&s.history[0], s.history.last().unwrap());
    assert!(last.train_loss < 0.8 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);

    // RUN/best is a CRIS directory; BatchNorm statistics are the source's (inference mode).
    let best = s.run_dir.join("best");
    let exported = tensors(&best.join("model.safetensors"));
    let src = tensors(&model.join("model.safetensors"));
    assert_eq!(exported.len(), src.len());
    for (k, v) in &src {
        if k.ends_with("running_mean") || k.ends_with("running_var") {
            assert_eq!(bits(v), bits(&exported[k]), "{k} changed");
        }
    }
    for (k, v) in tensors(&best.join("weights.safetensors")) {
        assert_eq!(bits(&v), bits(&exported[&k]), "{k} is not the best epoch's");
    }
    let seg = vlsm::pipeline::Segmenter::load(&best).unwrap();
    assert_eq!(seg.kind_name(), "cris");
    let img = vlsm::io::read_rgb(&ds.join("images/0.png")).unwrap();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let cond = seg.text_conditional(&["square".to_string()]).unwrap();
    assert_eq!(seg.decode(&f[0], &cond).unwrap().dims(), &[1, 64, 64]);
}

#[test]
fn cris_with_a_frozen_backbone_trains_the_head_only_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_cris(&tmp.path().join("cris_tiny"), 11);
    let ds = synthetic(tmp.path(), 6);
    let cache = format!("cache_dir = \"{}\"\n", tmp.path().join("cache").display());
    let extra = epochs(3).replace("image_size = 64\n", &format!("image_size = 64\n{cache}"));
    let mk = |name: &str| config("cris", &model, &ds, &tmp.path().join(name), "", &extra);
    let full = mk("full");
    let task = CrisTask::new(&full, DecoderInit::Checkpoint, false).unwrap();
    assert_eq!(task.output_size(), 64, "medvlsm's loss works at the input size");
    assert!((task.threshold() - 0.35).abs() < 1e-6, "validation Dice at CRIS's threshold");
    assert!(task.trainable_names().iter().all(|n| !n.starts_with("backbone.")));
    assert_eq!(task.cache_stats.as_ref().unwrap().computed, 6);
    drop(task);
    let a = cris_train::train(&full, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    assert!(a.finished);

    let part = mk("part");
    let s = cris_train::train(&part, &RunOptions::quiet(), Hooks::stop_after(2), DecoderInit::Checkpoint).unwrap();
    assert!(!s.finished);
    let b = cris_train::train(&part, &RunOptions::quiet().resumed(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    assert!(b.finished);
    for f in ["weights.safetensors", "optimizer.safetensors"] {
        assert!(same(&tensors(&a.run_dir.join("last").join(f)), &tensors(&b.run_dir.join("last").join(f))), "{f}");
    }
    let h = |r: &[vlsm::train::EpochRecord]| r.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(h(&a.history), h(&b.history));
    // The frozen backbone is exported unchanged.
    let exported = tensors(&a.run_dir.join("best/model.safetensors"));
    let src = tensors(&model.join("model.safetensors"));
    for (k, v) in src.iter().filter(|(k, _)| k.starts_with("backbone.")) {
        assert_eq!(bits(v), bits(&exported[k]), "{k}");
    }
}

fn err(r: anyhow::Result<impl Sized>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn wrong_kinds_keys_and_shapes_are_named_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 2);
    let out = tmp.path().join("run");
    let biomed = fx("biomedclip/tiny");
    let cris = tiny_cris(&tmp.path().join("cris_tiny"), 11);

    // A CRIS config over a BiomedCLIPSeg directory, and the other way round.
    let e = err(CrisTask::new(&config("cris", &biomed, &ds, &out, "", FAST), DecoderInit::Checkpoint, false));
    assert!(e.contains("config.json") && e.contains("not CRIS"), "{e}");
    let e = err(ClipSegTask::new(&config("biomedclipseg", &cris, &ds, &out, "", FAST), DecoderInit::Checkpoint, false));
    assert!(e.contains("config.json") && e.contains("'cris'"), "{e}");
    // Config keys that do not fit the kind.
    let text = "output_dir = \"o\"\n[model]\nkind = \"clipseg\"\ndir = \"m\"\n[data]\ndatasets = [\"d\"]\n[loss]\nkind = \"contrastive\"\n".to_string();
    assert!(err(TrainConfig::parse(&text)).contains("loss.kind"));
    let text =
        "output_dir = \"o\"\n[model]\nkind = \"cris\"\ndir = \"m\"\ndecoder_from = \"x\"\n[data]\ndatasets = [\"d\"]\n"
            .to_string();
    assert!(err(TrainConfig::parse(&text)).contains("model.decoder_from"));
    // Image size the ViT cannot take; CRIS size not a multiple of 32.
    let e = err(ClipSegTask::new(
        &config("biomedclipseg", &biomed, &ds, &out, "", &FAST.replace("64", "96")),
        DecoderInit::Random,
        false,
    ));
    assert!(e.contains("data.image_size"), "{e}");
    let e = err(CrisTask::new(
        &config("cris", &cris, &ds, &out, "", &FAST.replace("64", "80")),
        DecoderInit::Checkpoint,
        false,
    ));
    assert!(e.contains("data.image_size"), "{e}");
    // A CLIPSeg decoder of another width for BiomedCLIPSeg-D: file and key named.
    let d = format!("decoder_from = \"{}\"", fx("clipseg/tiny_complex").display());
    let e =
        err(ClipSegTask::new(&config("biomedclipseg", &biomed, &ds, &out, &d, FAST), DecoderInit::Checkpoint, false));
    assert!(e.contains("tiny_complex") && e.contains("decoder."), "{e}");
    // A CRIS checkpoint missing a tensor.
    let mut t = tensors(&cris.join("model.safetensors"));
    t.remove("neck.aggr.0.weight");
    candle_core::safetensors::save(&t, cris.join("model.safetensors")).unwrap();
    let e = err(CrisTask::new(&config("cris", &cris, &ds, &out, "", FAST), DecoderInit::Checkpoint, false));
    assert!(e.contains("model.safetensors") && e.contains("neck.aggr.0.weight"), "{e}");
    assert!(!out.join("last").exists());
}

#[test]
fn validation_dice_uses_the_threshold() {
    use vlsm::train::engine::loss::{dice_per_image, dice_per_image_at};
    // sigmoid = 0.4 everywhere: foreground at 0.35, background at 0.5.
    let l = Tensor::full((0.4f32 / 0.6).ln(), (1, 2, 2), &Device::Cpu).unwrap();
    let t = Tensor::ones((1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(dice_per_image_at(&l, &t, 0.35).unwrap(), vec![1.0]);
    assert_eq!(dice_per_image_at(&l, &t, 0.5).unwrap(), vec![0.0]);
    assert_eq!(dice_per_image(&l, &t).unwrap(), vec![0.0]);
}

#[test]
fn cris_training_reads_a_partial_config_and_exports_it_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_cris(&tmp.path().join("cris_tiny"), 11);
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    // Only the decoder settings and the heads (width 32 is under CLIP's 64-wide heads).
    let mut partial = full.clone();
    partial["backbone"] = serde_json::json!({"transformer_heads": 2});
    std::fs::write(model.join("config.json"), partial.to_string()).unwrap();
    let ds = synthetic(tmp.path(), 4);
    let cfg = config("cris", &model, &ds, &tmp.path().join("run"), "", &epochs(1));
    let r = cris_train::train(&cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.run_dir.join("best/config.json")).unwrap()).unwrap();
    assert_eq!(exported["backbone"], full["backbone"]);
    assert_eq!(exported["model_type"], "cris");
    vlsm::loader::cris(&r.run_dir.join("best"), candle_core::DType::F32, &Device::Cpu).unwrap();
}

/// A config that starts from `init` (`model.init_from`, no `model.dir`).
fn init_config(kind: &str, init: &Path, ds: &Path, out: &Path, extra: &str) -> TrainConfig {
    let text = format!(
        "output_dir = \"{}\"\nseed = 3\n[model]\nkind = \"{kind}\"\ninit_from = \"{}\"\n[data]\ndatasets = [\"{}\"]\nprompts = [\"p1\", \"p2\"]\n{extra}",
        out.display(),
        init.display(),
        ds.display()
    );
    TrainConfig::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

/// The task's variables equal the tensors of `file` of the same names.
fn vars_equal_file(vars: &[(String, candle_core::Var)], file: &Path) {
    let t = tensors(file);
    assert!(!vars.is_empty());
    for (n, v) in vars {
        let x = t.get(n).unwrap_or_else(|| panic!("{n} not in {}", file.display()));
        assert_eq!(bits(v.as_tensor()), bits(x), "{n} not loaded from init_from");
    }
}

#[test]
fn clipseg_init_from_a_trained_run_continues_its_decoder_and_names_mismatches() {
    use crate::support::tiny_clipseg;
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 4);
    let fast = epochs(2).replace("64", "32");
    // A decoder trained by `vlsm train`: RUN/best is a full CLIPSeg directory.
    let first = config("clipseg", &tiny_clipseg(), &ds, &tmp.path().join("run1"), "", &fast);
    clipseg::train(&first, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    let best = tmp.path().join("run1/best");
    assert!(best.join("model.safetensors").is_file());
    let dec = tensors(&best.join("model.safetensors"));
    let own = tensors(&tiny_clipseg().join("model.safetensors"));
    assert!(!same(
        &dec.iter().filter(|(k, _)| k.starts_with("decoder.")).map(|(k, v)| (k.clone(), v.clone())).collect(),
        &own.iter().filter(|(k, _)| k.starts_with("decoder.")).map(|(k, v)| (k.clone(), v.clone())).collect()
    ));

    // init_from: the decoder starts from the run's, not from the base checkpoint's; it trains on.
    let cfg = init_config("clipseg", &best, &ds, &tmp.path().join("run2"), &fast);
    let task = ClipSegTask::new(&cfg, DecoderInit::Checkpoint, false).unwrap();
    vars_equal_file(&task.vars(), &best.join("model.safetensors"));
    drop(task);
    let s = clipseg::train(&cfg, &RunOptions::quiet(), Hooks::none(), DecoderInit::Checkpoint).unwrap();
    assert_eq!(s.history.len(), 2);
    assert!(tmp.path().join("run2/best/model.safetensors").is_file());

    // With model.dir or decoder_from too: refused, naming the key.
    let both = format!("output_dir = \"o\"\n[model]\nkind = \"clipseg\"\ndir = \"m\"\ninit_from = \"{}\"\n[data]\ndatasets = [\"d\"]\n", best.display());
    assert!(err(TrainConfig::parse(&both)).contains("model.dir"));
    // Another kind's directory.
    let cris = tiny_cris(&tmp.path().join("cris_tiny"), 11);
    let e = err(ClipSegTask::new(
        &init_config("clipseg", &cris, &ds, &tmp.path().join("r3"), &fast),
        DecoderInit::Checkpoint,
        false,
    ));
    assert!(e.contains("model.init_from") && e.contains("cris") && e.contains("expected clipseg"), "{e}");
    // A config whose decoder is wider than the weights: the key is named.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in std::fs::read_dir(&best).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, bad.join(f.file_name().unwrap())).unwrap();
        }
    }
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best.join("config.json")).unwrap()).unwrap();
    let rd = c["reduce_dim"].as_u64().unwrap();
    c["reduce_dim"] = (rd + 8).into();
    std::fs::write(bad.join("config.json"), c.to_string()).unwrap();
    let e = err(ClipSegTask::new(
        &init_config("clipseg", &bad, &ds, &tmp.path().join("r4"), &fast),
        DecoderInit::Checkpoint,
        false,
    ));
    assert!(e.contains("model.init_from") && e.contains("decoder."), "{e}");
    assert!(!tmp.path().join("r4/last").exists());
}

#[test]
fn cris_init_from_loads_every_tensor_and_names_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = synthetic(tmp.path(), 2);
    let model = tiny_cris(&tmp.path().join("cris_tiny"), 11);
    let cfg = init_config("cris", &model, &ds, &tmp.path().join("run"), &epochs(1));
    let task = CrisTask::new(&cfg, DecoderInit::Checkpoint, false).unwrap();
    vars_equal_file(&task.vars(), &model.join("model.safetensors"));
    drop(task);
    let mut t = tensors(&model.join("model.safetensors"));
    t.remove("neck.aggr.0.weight");
    candle_core::safetensors::save(&t, model.join("model.safetensors")).unwrap();
    let e = err(CrisTask::new(&cfg, DecoderInit::Checkpoint, false));
    assert!(e.contains("model.init_from") && e.contains("neck.aggr.0.weight"), "{e}");
    assert!(!tmp.path().join("run/last").exists());
}
