//! The second generation's training keys: augmentation, the cosine schedule, the weights'
//! moving average, `model.init_from` and the presence head.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use vlsm::pipeline::Segmenter;
use vlsm::train::engine::trainer::cosine_lr;
use vlsm::train::tasks::textunet::TextUNetTask;
use vlsm::train::{Hooks, RunOptions, Split, TrainConfig, Trainable};

use crate::textunet_train::write_dataset_with;

const PROMPTS: [&str; 2] = ["red square", "blue disc"];

fn dataset(root: &Path) -> PathBuf {
    let d = root.join("shapes");
    write_dataset_with(&d, 8, PROMPTS);
    d
}

/// A textunet config over `data` writing to `root/out`, with `extra` TOML appended (sections
/// after the [data] table).
fn config(root: &Path, data: &Path, out: &str, model_extra: &str, extra: &str) -> TrainConfig {
    let text = format!(
        "output_dir = \"{}\"\nseed = 5\n[model]\nkind = \"textunet\"\nchannels = [4, 8, 16]\n{model_extra}\n\
         [data]\ndatasets = [\"{}\"]\nprompts = [\"p0\"]\nimage_size = 32\nfeature_cache = false\n{extra}",
        root.join(out).display(),
        data.display()
    );
    let p = root.join(format!("{out}.toml"));
    std::fs::write(&p, text).unwrap();
    TrainConfig::load(&p).unwrap()
}

fn bpe() -> PathBuf {
    vlsm::tokenize::find_bpe().unwrap()
}

#[test]
fn cosine_lr_warms_up_then_decays_to_min_lr() {
    let lrs: Vec<f64> = (0..100).map(|s| cosine_lr(s, 100, 10, 1.0, 0.01)).collect();
    assert!((lrs[0] - 0.1).abs() < 1e-12 && (lrs[9] - 1.0).abs() < 1e-12, "{:?}", &lrs[..10]);
    assert!(lrs[..10].windows(2).all(|w| w[1] > w[0]), "warmup rises");
    assert!(lrs[10..].windows(2).all(|w| w[1] < w[0]), "decay falls");
    assert!((cosine_lr(55, 100, 10, 1.0, 0.01) - 0.505).abs() < 1e-9, "half way is the mean");
    assert!((cosine_lr(100, 100, 10, 1.0, 0.01) - 0.01).abs() < 1e-12);
    assert!((cosine_lr(0, 10, 0, 1.0, 0.0) - 1.0).abs() < 1e-12, "no warmup starts at the peak");
}

#[test]
fn augmentation_moves_image_and_mask_together_and_keeps_val_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let aug = "[augment]\nscale = [0.8, 1.25]\nrotate = 20.0\ntranslate = 0.1\nbrightness = 0.2\ncontrast = 0.2\nsaturation = 0.2\n";
    let cfg = config(tmp.path(), &data, "run", "", aug);
    let plain = config(tmp.path(), &data, "run2", "", "");
    let mut task = TextUNetTask::new(&cfg, &bpe()).unwrap();
    let mut plain_task = TextUNetTask::new(&plain, &bpe()).unwrap();
    let idx = [0usize, 1, 2, 3];
    // Val batches are the originals.
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (va, vt) = task.batch(Split::Val, &idx, &mut r1).unwrap();
    let (pa, pt) = plain_task.batch(Split::Val, &idx, &mut r2).unwrap();
    assert_eq!(vt.to_vec3::<f32>().unwrap(), pt.to_vec3::<f32>().unwrap());
    assert_eq!(
        va.pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        pa.pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // Training batches: the target is where the named shape's colour is. The square is red
    // (R > B), the disc blue (B > R): inside the warped target, the colour must still be the
    // shape's (bilinear borders aside), and the target must have moved away from the original.
    let (mut moved, mut checked) = (0, 0);
    for seed in 0..4 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (input, targets) = task.batch(Split::Train, &idx, &mut rng).unwrap();
        let t = targets.to_vec3::<f32>().unwrap();
        let orig = vt.to_vec3::<f32>().unwrap();
        for (b, &i) in idx.iter().enumerate() {
            let px: Vec<Vec<Vec<f32>>> = input.pixels.get(b).unwrap().to_vec3().unwrap();
            let square = (i / 2) % 2 == 0;
            let inside: Vec<(usize, usize)> =
                (0..32).flat_map(|y| (0..32).map(move |x| (y, x))).filter(|&(y, x)| t[b][y][x] > 0.5).collect();
            assert!(!inside.is_empty(), "seed {seed} sample {b}: the mild warp lost the target");
            let agree = inside
                .iter()
                .filter(|&&(y, x)| if square { px[0][y][x] > px[2][y][x] } else { px[2][y][x] > px[0][y][x] })
                .count();
            assert!(
                agree * 10 >= inside.len() * 8,
                "seed {seed} sample {b}: {agree}/{} target pixels have the shape's colour",
                inside.len()
            );
            if t[b] != orig[b] {
                moved += 1;
            }
            checked += 1;
        }
    }
    assert!(moved * 2 > checked, "only {moved}/{checked} targets were warped");
}

#[test]
fn ema_is_validated_saved_exported_and_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let extra = "[train]\nepochs = 3\nmin_epochs = 3\nbatch_size = 4\nlr = 3e-3\nema = 0.9\n\
                 [scheduler]\nkind = \"cosine\"\nwarmup_epochs = 1\nmin_lr = 1e-5\n";
    let a = config(tmp.path(), &data, "straight", "", extra);
    let b = config(tmp.path(), &data, "resumed", "", extra);
    let sa = vlsm::train::tasks::textunet::train(&a, &RunOptions::quiet(), Hooks::none()).unwrap();
    vlsm::train::tasks::textunet::train(&b, &RunOptions::quiet(), Hooks::stop_after(1)).unwrap();
    let sb = vlsm::train::tasks::textunet::train(&b, &RunOptions::quiet().resumed(), Hooks::none()).unwrap();
    assert_eq!(sa.history.len(), 3);
    // The cosine schedule: warmup in epoch 1, then lower each epoch.
    let lrs: Vec<f64> = sa.history.iter().map(|r| r.lr).collect();
    assert!(lrs[1] > lrs[2], "{lrs:?}");
    for f in ["weights.safetensors", "ema.safetensors", "optimizer.safetensors"] {
        let x = std::fs::read(sa.run_dir.join("last").join(f)).unwrap();
        let y = std::fs::read(sb.run_dir.join("last").join(f)).unwrap();
        assert!(x == y, "last/{f} differs between the straight and the resumed run");
    }
    // The average differs from the raw weights, and the exported model is the average.
    let best = sa.run_dir.join("best");
    let ema = std::fs::read(best.join("ema.safetensors")).unwrap();
    assert!(ema != std::fs::read(best.join("weights.safetensors")).unwrap());
    assert!(ema == std::fs::read(best.join("model.safetensors")).unwrap(), "best/ exports the EMA weights");
    // --lr with the cosine schedule is refused, naming the key to edit.
    let e = vlsm::train::tasks::textunet::train(&b, &RunOptions::quiet().resumed().with_lr(1e-3), Hooks::none());
    assert!(e.unwrap_err().to_string().contains("train.lr"));
}

#[test]
fn init_from_starts_from_a_trained_model_and_names_mismatches() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let one = "[train]\nepochs = 1\nmin_epochs = 1\nbatch_size = 4\n";
    let src = config(tmp.path(), &data, "src", "", one);
    let s = vlsm::train::tasks::textunet::train(&src, &RunOptions::quiet(), Hooks::none()).unwrap();
    let dir = s.run_dir.join("best");
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();

    // Same architecture (from the directory: no channels key), another input size and a new
    // presence head: every stored tensor is loaded, the head starts fresh.
    let text = format!(
        "output_dir = \"{}\"\n[model]\nkind = \"textunet\"\ninit_from = \"{}\"\npresence = true\n\
         [data]\ndatasets = [\"{}\"]\nprompts = [\"p0\"]\nimage_size = 64\nfeature_cache = false\n",
        tmp.path().join("ft").display(),
        dir.display(),
        data.display()
    );
    let p = tmp.path().join("ft.toml");
    std::fs::write(&p, &text).unwrap();
    let cfg = TrainConfig::load(&p).unwrap();
    let task = TextUNetTask::new(&cfg, &bpe()).unwrap();
    assert_eq!(task.model.config.channels, vec![4, 8, 16]);
    assert_eq!(task.model.config.image_size, 64);
    assert!(task.model.has_presence());
    let vars = task.vars();
    for (k, t) in &weights {
        let (_, v) = vars.iter().find(|(n, _)| n == k).unwrap();
        let (a, b) =
            (t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), v.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a, b, "{k} not loaded from init_from");
    }
    assert!(vars.iter().any(|(n, _)| n == "presence.weight") && !weights.contains_key("presence.weight"));

    // A shape mismatch names the key; so does a tensor the model lacks; another kind names it.
    let mut bad = weights.clone();
    let w = bad["film.0.weight"].clone();
    bad.insert("film.0.weight".into(), w.narrow(0, 0, 2).unwrap());
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::copy(dir.join("config.json"), bad_dir.join("config.json")).unwrap();
    candle_core::safetensors::save(&bad, bad_dir.join("model.safetensors")).unwrap();
    std::fs::write(&p, text.replace(&dir.display().to_string(), &bad_dir.display().to_string())).unwrap();
    let e = TextUNetTask::new(&TrainConfig::load(&p).unwrap(), &bpe()).err().unwrap().to_string();
    assert!(e.contains("film.0.weight") && e.contains("shape"), "{e}");
    let mut extra = weights.clone();
    extra.insert("decoder.extra".into(), w);
    candle_core::safetensors::save(&extra, bad_dir.join("model.safetensors")).unwrap();
    let e = TextUNetTask::new(&TrainConfig::load(&p).unwrap(), &bpe()).err().unwrap().to_string();
    assert!(e.contains("decoder.extra"), "{e}");
    std::fs::write(bad_dir.join("config.json"), r#"{"model_type": "unet"}"#).unwrap();
    let e = TextUNetTask::new(&TrainConfig::load(&p).unwrap(), &bpe()).err().unwrap().to_string();
    assert!(e.contains("model.init_from") && e.contains("textunet"), "{e}");

    // The built-in model ("default") starts a textunet; its 160 px weights at 64 px.
    let text = text.replace(&format!("init_from = \"{}\"", dir.display()), "init_from = \"default\"");
    std::fs::write(&p, &text).unwrap();
    let task = TextUNetTask::new(&TrainConfig::load(&p).unwrap(), &bpe()).unwrap();
    assert_eq!(task.model.config.channels, vec![16, 32, 64, 128, 256]);
}

#[test]
fn unet_init_from_loads_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let cfg = |out: &str, model: &str| {
        let text = format!(
            "output_dir = \"{}\"\n[model]\nkind = \"unet\"\n{model}\n[data]\ndatasets = [\"{}\"]\nimage_size = 32\n\
             feature_cache = false\n[train]\nepochs = 1\nmin_epochs = 1\nbatch_size = 4\n",
            tmp.path().join(out).display(),
            data.display()
        );
        let p = tmp.path().join(format!("{out}.toml"));
        std::fs::write(&p, text).unwrap();
        TrainConfig::load(&p).unwrap()
    };
    let s =
        vlsm::train::tasks::unet::train(&cfg("u", "channels = [4, 8]"), &RunOptions::quiet(), Hooks::none()).unwrap();
    let dir = s.run_dir.join("best");
    let task = vlsm::train::tasks::unet::UNetTask::new(&cfg("v", &format!("init_from = \"{}\"", dir.display())), None)
        .unwrap();
    assert_eq!(task.model.config.channels, vec![4, 8]);
    let w = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    for (k, v) in task.vars() {
        assert_eq!(
            w[&k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{k}"
        );
    }
    // A textunet directory is no unet.
    let e = vlsm::train::tasks::unet::UNetTask::new(&cfg("w", "init_from = \"default\""), None).err().unwrap();
    assert!(e.to_string().contains("expected unet"), "{e}");
}

#[test]
fn presence_head_learns_absent_targets_and_segmenter_reports_presence() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_dataset_with(&a, 8, PROMPTS);
    // Another modality: a green box on white, the only prompt "green box".
    crate::support::Synth::new(8, 32, 32)
        .image(|i, x, y| {
            let o = 4 + 2 * (i % 4);
            if (o..o + 12).contains(&x) && (o..o + 10).contains(&y) {
                [30, 200, 30]
            } else {
                [230, 230, 230]
            }
        })
        .mask(|i, x, y| {
            let o = 4 + 2 * (i % 4);
            (o..o + 12).contains(&x) && (o..o + 10).contains(&y)
        })
        .bbox()
        .prompts_with(|_| serde_json::json!({"p0": "green box"}))
        .splits(&["train", "val", "test"])
        .write(&b);
    let text = format!(
        "output_dir = \"{}\"\nseed = 3\n[model]\nkind = \"textunet\"\nchannels = [8, 16, 32]\npresence = true\n\
         [data]\ndatasets = [\"{}\", \"{}\"]\nprompts = [\"p0\"]\nimage_size = 32\nfeature_cache = false\n\
         negative_prompts = 0.4\n[train]\nepochs = 20\nmin_epochs = 20\nbatch_size = 8\nlr = 3e-3\nweight_decay = 0.0\n\
         [loss]\nbce_weight = 1.0\npresence_weight = 1.0\n",
        tmp.path().join("run").display(),
        a.display(),
        b.display()
    );
    let p = tmp.path().join("p.toml");
    std::fs::write(&p, text).unwrap();
    let cfg = TrainConfig::load(&p).unwrap();
    let s = vlsm::train::tasks::textunet::train(&cfg, &RunOptions::quiet(), Hooks::none()).unwrap();
    let seg = Segmenter::load(&s.run_dir.join("best")).unwrap();
    assert!(seg.has_presence_head());
    // Image 0 of dataset a: its own prompts are present, dataset b's absent.
    let img = image::open(a.join("images/0.png")).unwrap().to_rgb8();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let prompts: Vec<String> = ["red square", "blue disc", "green box"].map(String::from).to_vec();
    let cond = seg.text_conditional(&prompts).unwrap();
    let (_, pres) = seg.decode_with_presence(&f[0], &cond, 0.5).unwrap();
    let ps: Vec<f32> = pres.iter().map(|p| p.presence).collect();
    assert!(pres[0].present && pres[1].present, "own prompts: {ps:?}");
    assert!(!pres[2].present, "a foreign prompt: {ps:?}");
    // And the other way round.
    let img = image::open(b.join("images/1.png")).unwrap().to_rgb8();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let (_, pres) = seg.decode_with_presence(&f[0], &cond, 0.5).unwrap();
    let ps: Vec<f32> = pres.iter().map(|p| p.presence).collect();
    assert!(!pres[0].present && !pres[1].present && pres[2].present, "on the green box image: {ps:?}");
    assert!(ps.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn without_a_head_presence_is_the_largest_probability() {
    let seg = Segmenter::load(&crate::support::repo_root().join("models/default")).unwrap();
    assert!(!seg.has_presence_head());
    let img = image::open(crate::support::repo_root().join("examples/busi_20_benign.jpg")).unwrap().to_rgb8();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let prompts = vec!["Tumor in the breast ultrasound image.".to_string(), "polyp".to_string()];
    let cond = seg.text_conditional(&prompts).unwrap();
    let logits = seg.decode(&f[0], &cond).unwrap();
    let (l2, pres) = seg.decode_with_presence(&f[0], &cond, 0.5).unwrap();
    assert_eq!(
        logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        l2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    for (k, p) in pres.iter().enumerate() {
        let max = logits.get(k).unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let want = 1.0 / (1.0 + (-max).exp());
        assert!((p.presence - want).abs() < 1e-6, "prompt {k}: {} vs {want}", p.presence);
        assert_eq!(p.present, want > 0.5);
    }
    assert!(pres[0].present, "the tumour is found");
    assert!(!pres[1].present, "no polyp in a breast ultrasound image");
}

#[test]
fn new_keys_are_validated_with_one_line_naming_the_key() {
    let base = "output_dir = \"o\"\n[model]\nkind = \"textunet\"\n[data]\ndatasets = [\"d\"]\n";
    let cases = [
        (format!("{base}[augment]\nscale = [1.2, 0.8]\n"), "augment.scale"),
        (format!("{base}[augment]\nrotate = 200.0\n"), "augment.rotate"),
        (format!("{base}[augment]\ntranslate = 0.5\n"), "augment.translate"),
        (format!("{base}[augment]\nbrightness = 1.0\n"), "augment.brightness"),
        (format!("{base}[augment]\nshear = 1.0\n"), "shear"),
        (format!("{base}[train]\nema = 1.0\n"), "train.ema"),
        (format!("{base}[scheduler]\nwarmup_epochs = 2\n"), "scheduler.warmup_epochs"),
        (format!("{base}[scheduler]\nkind = \"cosine\"\nwarmup_epochs = 2000\n"), "scheduler.warmup_epochs"),
        (format!("{base}[scheduler]\nkind = \"step\"\n"), "step"),
        (format!("{base}[loss]\npresence_weight = -1.0\n"), "loss.presence_weight"),
        (base.replace("textunet\"\n", "textunet\"\ninit_from = \"\"\n"), "model.init_from"),
        (base.replace("textunet\"\n", "textunet\"\ninit_from = \"x\"\nchannels = [8, 16]\n"), "model.channels"),
        (base.replace("textunet", "unet").replace("unet\"\n", "unet\"\npresence = true\n"), "model.presence"),
        (format!("{}[augment]\nrotate = 5.0\n", base.replace("textunet", "unet")), "augment"),
        (
            "output_dir = \"o\"\n[model]\nkind = \"clipseg\"\ndir = \"m\"\ninit_from = \"x\"\n[data]\ndatasets = [\"d\"]\n".into(),
            "model.init_from",
        ),
    ];
    for (text, key) in cases {
        let e = TrainConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains(key), "error for {key} does not name it: {e}");
        // Ours are one line (the TOML parser's own errors quote the line).
        if key.contains('.') || key == "augment" {
            assert!(!e.trim().contains('\n'), "not one line: {e}");
        }
    }
}

#[test]
fn tta_flip_is_flip_equivariant_and_none_is_plain_decoding() {
    use vlsm::pipeline::Tta;
    let seg = Segmenter::load(&crate::support::repo_root().join("models/default")).unwrap();
    // At the model's input size, so the resize is the identity and flips commute with it.
    let src = image::open(crate::support::repo_root().join("examples/clinicdb_382.png")).unwrap().to_rgb8();
    let img = image::imageops::resize(&src, 160, 160, image::imageops::FilterType::Triangle);
    let prompts = vec!["polyp, located in left of the image".to_string(), "polyp".to_string()];
    let (plain, p0) = seg.segment_image(&img, &prompts, 0.5, Tta::None).unwrap();
    let f = seg.encode_images(&seg.pixel_values(&[&img]).unwrap()).unwrap();
    let (l, p1) = seg.decode_with_presence(&f[0], &seg.text_conditional(&prompts).unwrap(), 0.5).unwrap();
    assert_eq!(
        plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        l.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(p0, p1);

    let (tta, _) = seg.segment_image(&img, &prompts, 0.5, Tta::Flip).unwrap();
    let diff = (&tta - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 1e-3, "TTA changed nothing");
    // The mirrored image with the mirrored prompt gives the mirrored answer.
    let mirrored = image::imageops::flip_horizontal(&img);
    let mp = vec!["polyp, located in right of the image".to_string(), "polyp".to_string()];
    let (m, _) = seg.segment_image(&mirrored, &mp, 0.5, Tta::Flip).unwrap();
    let idx =
        candle_core::Tensor::from_vec((0..160u32).rev().collect::<Vec<_>>(), 160, &candle_core::Device::Cpu).unwrap();
    let back = m.index_select(&idx, 2).unwrap();
    let diff = (&back - &tta).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-3, "not flip-equivariant: {diff}");
}

#[test]
fn post_processing_keeps_the_largest_component_and_fills_holes() {
    use vlsm::pipeline::PostProcess;
    // A 6x6 ring (hole in the middle) and a 2x2 blob; background touching the border stays.
    let mut m = image::GrayImage::new(12, 8);
    for y in 1..7 {
        for x in 1..7 {
            if !(3..5).contains(&x) || !(3..5).contains(&y) {
                m.put_pixel(x, y, image::Luma([255]));
            }
        }
    }
    for (x, y) in [(9, 2), (10, 2), (9, 3), (10, 3)] {
        m.put_pixel(x, y, image::Luma([255]));
    }
    let count = |m: &image::GrayImage| m.pixels().filter(|p| p[0] > 0).count();
    assert_eq!(count(&m), 32 + 4);
    let mut a = m.clone();
    "lcc".parse::<PostProcess>().unwrap().apply(&mut a);
    assert_eq!(count(&a), 32);
    assert_eq!(a.get_pixel(9, 2)[0], 0);
    let mut b = m.clone();
    "fill".parse::<PostProcess>().unwrap().apply(&mut b);
    assert_eq!(count(&b), 36 + 4);
    let mut c = m.clone();
    "lcc,fill".parse::<PostProcess>().unwrap().apply(&mut c);
    assert_eq!(count(&c), 36);
    assert!("none".parse::<PostProcess>().unwrap().is_none());
    let e = "lcc,blur".parse::<PostProcess>().unwrap_err();
    assert!(e.contains("blur"), "{e}");
    assert!("rotate".parse::<vlsm::pipeline::Tta>().unwrap_err().contains("--tta"));
}
