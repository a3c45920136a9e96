//! The training loop on a tiny conv model and synthetic square masks: the loss falls, val Dice
//! rises, logs and checkpoints appear, and a stopped-and-resumed run ends with bit-identical
//! weights.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlsm::train::{self, Hooks, RunOptions, Split, TrainConfig, Trainable};

const S: usize = 12;

/// Images: a bright square on noise; a second input channel carries a "prompt" value drawn per
/// load from the trainer's RNG, as prompt sampling does.
struct Tiny {
    vars: Vec<(String, Var)>,
    images: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    n_train: usize,
}

impl Tiny {
    fn new(init_seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(init_seed);
        let mut var = |name: &str, shape: &[usize], scale: f32| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (r.random::<f32>() - 0.5) * scale).collect();
            (name.to_string(), Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap())
        };
        let vars = vec![
            var("conv1.weight", &[4, 2, 3, 3], 0.6),
            var("conv1.bias", &[4], 0.2),
            var("conv2.weight", &[1, 4, 1, 1], 0.6),
            var("conv2.bias", &[1], 0.2),
        ];
        let mut d = ChaCha8Rng::seed_from_u64(1234);
        let (mut images, mut masks) = (Vec::new(), Vec::new());
        for i in 0..32 {
            let mut m = vec![0f32; S * S];
            if i % 8 != 0 {
                let (y0, x0, h, w) =
                    (d.random_range(0..6), d.random_range(0..6), d.random_range(3..7), d.random_range(3..7));
                for y in y0..y0 + h {
                    for x in x0..x0 + w {
                        m[y * S + x] = 1.0;
                    }
                }
            }
            images.push(m.iter().map(|&v| v - 0.5 + (d.random::<f32>() - 0.5) * 0.6).collect());
            masks.push(m);
        }
        Tiny { vars, images, masks, n_train: 24 }
    }
}

impl Trainable for Tiny {
    type Input = Tensor;

    fn vars(&self) -> Vec<(String, Var)> {
        self.vars.clone()
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.n_train,
            Split::Val => self.images.len() - self.n_train,
        }
    }

    fn batch(&mut self, split: Split, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor)> {
        let off = if split == Split::Train { 0 } else { self.n_train };
        let (mut x, mut y) = (Vec::<f32>::new(), Vec::<f32>::new());
        for &i in idx {
            x.extend(&self.images[off + i]);
            let p = if rng.random::<bool>() { 1.0 } else { 0.0 };
            x.extend(std::iter::repeat_n(p, S * S));
            y.extend(&self.masks[off + i]);
        }
        let b = idx.len();
        // Per sample: the image plane, then the prompt plane: [B, 2, S, S].
        Ok((Tensor::from_vec(x, (b, 2, S, S), &Device::Cpu)?, Tensor::from_vec(y, (b, S, S), &Device::Cpu)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let v = |i: usize| self.vars[i].1.as_tensor();
        let h = x.conv2d(v(0), 1, 1, 1, 1)?.broadcast_add(&v(1).reshape((1, 4, 1, 1))?)?.relu()?;
        let o = h.conv2d(v(2), 0, 1, 1, 1)?.broadcast_add(&v(3).reshape((1, 1, 1, 1))?)?;
        Ok(o.squeeze(1)?)
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vlsm-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(out: &Path, epochs: usize) -> TrainConfig {
    let text = format!(
        "output_dir = {out:?}\nseed = 7\n[model]\nkind = \"clipseg\"\ndir = \"unused\"\n\
         [data]\ndatasets = [\"unused\"]\nfeature_cache = false\n\
         [train]\nepochs = {epochs}\nmin_epochs = 0\nbatch_size = 5\nlr = 0.03\ngrad_clip = 1.0\n\
         [scheduler]\npatience = 1\nfactor = 0.5\n[early_stopping]\npatience = 0\n"
    );
    TrainConfig::parse(&text).unwrap()
}

#[test]
fn train_loss_falls_and_val_dice_rises() {
    let out = tmp("falls");
    let s = train::run(&config(&out, 12), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap();
    let h = &s.history;
    assert_eq!(h.len(), 12);
    assert!(s.finished && !s.stopped_early);
    let (first, last) = (&h[0], &h[h.len() - 1]);
    assert!(last.train_loss < 0.6 * first.train_loss, "train loss {} -> {}", first.train_loss, last.train_loss);
    assert!(last.val_loss < first.val_loss, "val loss {} -> {}", first.val_loss, last.val_loss);
    assert!(
        last.val_dice > first.val_dice + 0.2 && last.val_dice > 0.8,
        "val dice {} -> {}",
        first.val_dice,
        last.val_dice
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(csv.starts_with("epoch,train_loss,val_loss,val_dice,lr,seconds\n"));
    assert!(out.join("curves.png").is_file());
    for d in ["last", "best"] {
        for f in ["weights.safetensors", "optimizer.safetensors", "state.json"] {
            assert!(out.join(d).join(f).is_file(), "{d}/{f}");
        }
    }
    let ev = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents"))
        .unwrap();
    let scalars = vlsm::train::engine::tensorboard::read_scalars(&std::fs::read(ev).unwrap()).unwrap();
    let dice: Vec<f32> = scalars.iter().filter(|(_, t, _)| t == "val/dice").map(|s| s.2).collect();
    assert_eq!(dice.len(), 12);
    assert_eq!(dice[11], last.val_dice as f32);
    // The same directory again without resume is refused.
    let e =
        train::run(&config(&out, 12), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap_err().to_string();
    assert!(e.contains("already holds a run"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn train_resume_is_bit_identical() {
    let (a, b) = (tmp("straight"), tmp("resumed"));
    let sa = train::run(&config(&a, 6), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap();
    let sb = train::run(&config(&b, 6), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::stop_after(3)).unwrap();
    assert!(!sb.finished && sb.history.len() == 3);
    // A fresh process: different initial weights, everything comes from the checkpoint.
    let sb = train::run(&config(&b, 6), &mut Tiny::new(99), &RunOptions::quiet().resumed(), Hooks::none()).unwrap();
    assert!(sb.finished);
    for f in ["weights.safetensors", "optimizer.safetensors"] {
        let (x, y) = (std::fs::read(a.join("last").join(f)).unwrap(), std::fs::read(b.join("last").join(f)).unwrap());
        assert!(x == y, "last/{f} differs between the straight and the resumed run");
    }
    let strip = |h: &[train::EpochRecord]| {
        h.iter().map(|r| (r.epoch, r.train_loss, r.val_loss, r.val_dice, r.lr)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&sa.history), strip(&sb.history));
    // Resuming a finished run does nothing.
    let again = train::run(&config(&b, 6), &mut Tiny::new(5), &RunOptions::quiet().resumed(), Hooks::none()).unwrap();
    assert_eq!(again.history.len(), 6);
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

/// A kill while epoch N's `last/` is written leaves `best/` (written first) at epoch N: resuming
/// continues from it, with the same result as a straight run (#17, item 16).
#[test]
fn resume_after_a_kill_during_the_last_write_loses_no_epoch() {
    let (a, b) = (tmp("straight_kill"), tmp("killed"));
    let sa = train::run(&config(&a, 3), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap();
    let sb = train::run(&config(&b, 3), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::stop_after(1)).unwrap();
    assert_eq!(sb.history.len(), 1);
    // Epoch 1 always improves on nothing, so best/ holds it; last/ never got renamed into place.
    std::fs::rename(b.join("last"), b.join(".last.tmp")).unwrap();
    let sb = train::run(&config(&b, 3), &mut Tiny::new(99), &RunOptions::quiet().resumed(), Hooks::none()).unwrap();
    assert_eq!(sb.history.len(), 3, "resumed from epoch 1, not from scratch or nothing");
    let bits = |h: &[train::EpochRecord]| h.iter().map(|r| (r.epoch, r.train_loss, r.val_dice)).collect::<Vec<_>>();
    assert_eq!(bits(&sa.history), bits(&sb.history));
    // A fresh run there is refused.
    let e = train::run(&config(&b, 3), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap_err();
    assert!(e.to_string().contains("already holds a run"), "{e}");
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn train_lr_override_steps_the_learning_rate() {
    let out = tmp("lr");
    train::run(&config(&out, 4), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::stop_after(2)).unwrap();
    let bad = RunOptions::quiet().resumed().with_lr(0.0);
    let e = train::run(&config(&out, 4), &mut Tiny::new(1), &bad, Hooks::none()).unwrap_err().to_string();
    assert!(e.contains("learning rate 0") && e.contains("positive"), "{e}");
    let step = RunOptions::quiet().resumed().with_lr(0.0125);
    let s = train::run(&config(&out, 4), &mut Tiny::new(1), &step, Hooks::none()).unwrap();
    let lrs: Vec<f64> = s.history.iter().map(|r| r.lr).collect();
    assert_eq!(lrs[..3], [0.03, 0.03, 0.0125], "{lrs:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn train_checkpoint_errors_name_the_problem() {
    let out = tmp("errors");
    let e = train::run(&config(&out, 2), &mut Tiny::new(1), &RunOptions::quiet().resumed(), Hooks::none())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no checkpoint to resume"), "{e}");
    train::run(&config(&out, 1), &mut Tiny::new(1), &RunOptions::quiet(), Hooks::none()).unwrap();
    // Weights of another architecture: one parameter renamed.
    let mut other = Tiny::new(1);
    other.vars[3].0 = "head.bias".into();
    let w = out.join("last").join("weights.safetensors");
    let e = train::engine::state::load_weights(&w, &other.vars).unwrap_err().to_string();
    assert!(e.contains("head.bias") && e.contains("weights.safetensors"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}
