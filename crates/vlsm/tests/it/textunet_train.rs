//! The built-in TextUNet learns a text-dependent task on a tiny synthetic dataset, and its best
//! checkpoint is a model directory that `Segmenter` loads.

use std::path::Path;

use vlsm::pipeline::{self, Segmenter};
use vlsm::train::{Hooks, RunOptions, TrainConfig};

use crate::support::Synth;

/// Each image holds a red square on the left and a blue disc on the right (or the reverse);
/// the mask is the shape the prompt names.
fn write_dataset(root: &Path, n: usize) {
    write_dataset_with(root, n, ["red square", "blue disc"]);
}

pub(crate) fn write_dataset_with(root: &Path, n: usize, [square_prompt, disc_prompt]: [&str; 2]) {
    // (in the square, in the disc) at (x, y) of image i; odd images are flipped.
    let shapes = |i: u32, x: u32, y: u32| {
        let (sx, dx) = if i % 2 == 1 { (20, 4) } else { (4, 20) };
        let in_square = x >= sx && x < sx + 9 && (10..19).contains(&y);
        let (cx, cy) = (dx as f32 + 4.5, 14.5);
        let in_disc = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 20.0;
        (in_square, in_disc)
    };
    let want_square = |i: u32| (i / 2).is_multiple_of(2);
    Synth::new(n as u32, 32, 32)
        .image(|i, x, y| match shapes(i, x, y) {
            (_, true) => [30, 30, 220],
            (true, false) => [220, 30, 30],
            (false, false) => [40, 40, 40],
        })
        .mask(|i, x, y| {
            let (in_square, in_disc) = shapes(i, x, y);
            if want_square(i) {
                in_square
            } else {
                in_disc
            }
        })
        .bbox()
        .prompts_with(|i| {
            let prompt = if want_square(i) { square_prompt } else { disc_prompt };
            serde_json::json!({"p0": prompt, "p1": [prompt, prompt]})
        })
        .splits(&["train", "val", "test"])
        .write(root);
}

#[test]
fn textunet_learns_and_exports_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shapes");
    write_dataset(&data, 8);
    let cfg_text = format!(
        r#"
output_dir = "{out}"
seed = 3
[model]
kind = "textunet"
[data]
datasets = ["{data}"]
prompts = ["p0", "p1"]
image_size = 32
feature_cache = false
[train]
epochs = 25
min_epochs = 25
batch_size = 4
lr = 3e-3
weight_decay = 0.0
grad_clip = 1.0
[loss]
kind = "dice_bce"
bce_weight = 1.0
"#,
        out = tmp.path().join("run").display(),
        data = data.display()
    );
    let cfg_path = tmp.path().join("cfg.toml");
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let cfg = TrainConfig::load(&cfg_path).unwrap();
    let s = vlsm::train::tasks::textunet::train(&cfg, &RunOptions::default(), Hooks::none()).unwrap();
    let first = s.history.first().unwrap();
    let last = s.history.last().unwrap();
    assert!(last.train_loss < 0.6 * first.train_loss, "loss {} -> {}", first.train_loss, last.train_loss);
    let best = s.best_val_dice.unwrap();
    assert!(best > 0.6, "best val Dice {best}");

    // The exported model segments by text: the two prompts pick different regions.
    let seg = Segmenter::load(&s.run_dir.join("best")).unwrap();
    let img = image::open(data.join("images/0.png")).unwrap().to_rgb8();
    let pv = seg.pixel_values(&[&img]).unwrap();
    let f = seg.encode_images(&pv).unwrap();
    let cond = seg.text_conditional(&["red square".to_string(), "blue disc".to_string()]).unwrap();
    let logits = seg.decode(&f[0], &cond).unwrap();
    let sq = pipeline::probabilities_at(&logits.get(0).unwrap(), 32, 32).unwrap();
    let di = pipeline::probabilities_at(&logits.get(1).unwrap(), 32, 32).unwrap();
    // Image 0: square on the left (x < 16), disc on the right.
    let left = |p: &[f32]| (0..32 * 32).filter(|i| i % 32 < 16).map(|i| p[i]).sum::<f32>();
    let right = |p: &[f32]| (0..32 * 32).filter(|i| i % 32 >= 16).map(|i| p[i]).sum::<f32>();
    assert!(left(&sq) > right(&sq), "square prompt should light the left");
    assert!(right(&di) > left(&di), "disc prompt should light the right");
}

#[test]
fn negative_prompts_pair_images_with_another_datasets_prompt_and_an_empty_mask() {
    use rand::SeedableRng;
    use vlsm::train::{Split, Trainable};
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    write_dataset_with(&a, 8, ["red square", "blue disc"]);
    write_dataset_with(&b, 8, ["green box", "yellow ball"]);
    // c shares a prompt with a: the two never negate each other.
    write_dataset_with(&c, 8, ["red square", "purple ring"]);
    let cfg_text = |neg: f64| {
        format!(
            "output_dir = \"{}\"\n[model]\nkind = \"textunet\"\n[data]\ndatasets = [\"{}\", \"{}\", \"{}\"]\nprompts = [\"p0\"]\n\
             image_size = 32\nfeature_cache = false\nnegative_prompts = {neg}\n",
            tmp.path().join("run").display(),
            a.display(),
            b.display(),
            c.display()
        )
    };
    let cfg_path = tmp.path().join("cfg.toml");
    std::fs::write(&cfg_path, cfg_text(0.5)).unwrap();
    let cfg = TrainConfig::load(&cfg_path).unwrap();
    let mut task = vlsm::train::tasks::textunet::TextUNetTask::new(&cfg, &vlsm::tokenize::find_bpe().unwrap()).unwrap();
    // The token ids of each prompt, from the val split (never negatives): records 0 and 2 of
    // dataset a are "red square" and "blue disc", records 8 and 10 (dataset b) the others.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (val, _) = task.batch(Split::Val, &[0, 2, 8, 10, 16, 18], &mut rng).unwrap();
    let (own_a, own_b, own_c) = (&val.ids[..2], &val.ids[2..4], &val.ids[4..]);
    let idx: Vec<usize> = (0..24).collect();
    let (mut negatives, mut positives) = (0, 0);
    for seed in 0..4 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (input, targets) = task.batch(Split::Train, &idx, &mut rng).unwrap();
        let area = targets.sum((1, 2)).unwrap().to_vec1::<f32>().unwrap();
        for (i, ids) in input.ids.iter().enumerate() {
            // a and c are each foreign only to b; b to both.
            let (own, foreign): (&[Vec<u32>], Vec<&Vec<u32>>) = match i / 8 {
                0 => (own_a, own_b.iter().collect()),
                1 => (own_b, own_a.iter().chain(own_c).collect()),
                _ => (own_c, own_b.iter().collect()),
            };
            if area[i] == 0.0 {
                assert!(foreign.contains(&ids), "sample {i}: an empty target with a prompt not foreign to it");
                negatives += 1;
            } else {
                assert!(own.contains(ids), "sample {i}: a mask with another dataset's prompt");
                positives += 1;
            }
        }
    }
    // About half of 96 are negatives (a few draws may miss a foreign dataset).
    assert!((24..=72).contains(&negatives), "{negatives} negatives, {positives} positives");

    // Out of range, or for another model kind: a clear error naming the key.
    std::fs::write(&cfg_path, cfg_text(1.0)).unwrap();
    let e = TrainConfig::load(&cfg_path).and_then(|c| c.validate()).unwrap_err().to_string();
    assert!(e.contains("data.negative_prompts"), "{e}");
}

#[test]
fn flip_prompt_swaps_only_the_position_words() {
    use vlsm::train::tasks::common::Flip;
    let (h, v, hv) = (Flip { h: true, v: false }, Flip { h: false, v: true }, Flip { h: true, v: true });
    let p = "one medium pink right ear polyp, located in bottom right of the image";
    assert_eq!(h.prompt(p), "one medium pink right ear polyp, located in bottom left of the image");
    assert_eq!(v.prompt(p), "one medium pink right ear polyp, located in top right of the image");
    assert_eq!(hv.prompt(p), "one medium pink right ear polyp, located in top left of the image");
    assert_eq!(Flip::default().prompt(p), p);
    let b = "Two small benign tumors at the top left, center in the breast ultrasound image.";
    assert_eq!(hv.prompt(b), "Two small benign tumors at the bottom right, center in the breast ultrasound image.");
    assert_eq!(
        h.prompt("polyp which is a small lump in the lining of colon"),
        "polyp which is a small lump in the lining of colon"
    );
    assert_eq!(h.prompt(""), "");
}

#[test]
fn flips_turn_image_mask_and_prompt_together() {
    use rand::SeedableRng;
    use vlsm::train::tasks::common::Flip;
    use vlsm::train::{Split, Trainable};
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let prompts = ["red square, located in top left of the image", "blue disc, located in right of the image"];
    write_dataset_with(&a, 4, prompts);
    let cfg_text = |kind: &str| {
        format!(
            "output_dir = \"{}\"\n[model]\nkind = \"{kind}\"\n[data]\ndatasets = [\"{}\"]\nprompts = [\"p0\"]\n\
             image_size = 32\nfeature_cache = false\nflips = true\n",
            tmp.path().join("run").display(),
            a.display(),
        )
    };
    let cfg_path = tmp.path().join("cfg.toml");
    std::fs::write(&cfg_path, cfg_text("textunet")).unwrap();
    let cfg = TrainConfig::load(&cfg_path).unwrap();
    let bpe = vlsm::tokenize::find_bpe().unwrap();
    let tok = vlsm::tokenize::ClipTokenizer::from_bpe_gz(&bpe).unwrap();
    let mut task = vlsm::train::tasks::textunet::TextUNetTask::new(&cfg, &bpe).unwrap();
    let idx = [0usize, 1, 2, 3];
    // Val batches are never flipped: they are the originals.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (orig, orig_t) = task.batch(Split::Val, &idx, &mut rng).unwrap();
    let ot = orig_t.to_vec3::<f32>().unwrap();
    let op: Vec<Vec<Vec<Vec<f32>>>> = (0..4).map(|b| orig.pixels.get(b).unwrap().to_vec3().unwrap()).collect();
    let flip2 = |m: &Vec<Vec<f32>>, f: Flip| -> Vec<Vec<f32>> {
        (0..32)
            .map(|y| (0..32).map(|x| m[if f.v { 31 - y } else { y }][if f.h { 31 - x } else { x }]).collect())
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    for seed in 0..6 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (input, targets) = task.batch(Split::Train, &idx, &mut rng).unwrap();
        let t = targets.to_vec3::<f32>().unwrap();
        for b in 0..4 {
            let px: Vec<Vec<Vec<f32>>> = input.pixels.get(b).unwrap().to_vec3().unwrap();
            // Which flip it got, from the mask; the image and the prompt must agree.
            let f = [(false, false), (true, false), (false, true), (true, true)]
                .map(|(h, v)| Flip { h, v })
                .into_iter()
                .find(|&f| flip2(&ot[b], f) == t[b])
                .unwrap_or_else(|| panic!("seed {seed} sample {b}: the target is no flip of the mask"));
            for c in 0..3 {
                assert_eq!(px[c], flip2(&op[b][c], f), "seed {seed} sample {b}: image and mask flipped apart");
            }
            let text = prompts[(b / 2) % 2];
            assert_eq!(
                input.ids[b],
                tok.encode(&f.prompt(text)).unwrap(),
                "seed {seed} sample {b}: prompt not flipped with {f:?}"
            );
            seen.insert((f.h, f.v));
        }
    }
    // 24 draws: every flip came up (a square and disc pair is never symmetric, so all are told apart).
    assert_eq!(seen.len(), 4, "{seen:?}");

    // Another model kind: a clear error naming the key.
    std::fs::write(&cfg_path, cfg_text("unet")).unwrap();
    let e = TrainConfig::load(&cfg_path).and_then(|c| c.validate()).unwrap_err().to_string();
    assert!(e.contains("data.flips"), "{e}");
}
