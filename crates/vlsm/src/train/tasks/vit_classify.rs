//! Fine-tuning ViT on a folder-per-class image dataset (`root/<class>/<image>`), as the ViT paper
//! transfers: the pretrained head is dropped for a zero-initialised `K`-class head, and the
//! position embeddings follow the training resolution by interpolation.
//!
//! To fit the segmentation-shaped [`Trainable`] (logits and targets `[B, H, W]`), logits are
//! `[B, 1, K]` and targets one-hot `[B, 1, K]`; the training loss is softmax cross-entropy, and
//! the loop's "val Dice" on one-hot targets is the one-vs-rest Dice of `logit > 0`. Report
//! accuracy and the confusion matrix with [`evaluate`] (or
//! [`crate::classify::evaluate_folder`] for a saved model).
//!
//! `vlsm train` with `model.kind = "vit_classify"` runs [`train`]: `model.dir` is a ViT directory
//! (its weights, if any, start the backbone; a `config.json` alone gives a seeded random one),
//! `data.datasets = [ROOT]` with `ROOT/train/<class>/*` and `ROOT/val/<class>/*`, and
//! `data.image_size` the square training resolution. `RUN/best` is kept a
//! `ViTForImageClassification` directory with the new labels.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use crate::classify::{confusion_matrix, ClassFolder, ClassifyEval};
use crate::models::vit::{ViTConfig, ViTForImageClassification};
use crate::preprocess::{ImageProcessorConfig, ResizeTarget};
use crate::train::engine::config::TrainConfig;
use crate::train::engine::loss::LossKind;
use crate::train::engine::trainer::{self, export_new_best, Hooks, RunOptions, RunSummary, Split, Trainable};
use crate::weights;

/// A ViT with a new zero head over a `VarMap`, variables under HF names (`vit.*`,
/// `classifier.*`), so `weights.safetensors` loads as a `ViTForImageClassification`.
pub struct VitClassifyTask {
    pub varmap: VarMap,
    pub model: ViTForImageClassification,
    pub processor: ImageProcessorConfig,
    pub train: ClassFolder,
    pub val: ClassFolder,
    /// Train only the head.
    pub freeze_backbone: bool,
}

impl VitClassifyTask {
    /// `pretrained`: a ViT directory whose backbone weights are copied in (its head, if any, is
    /// ignored); `None` keeps the random initialisation. `val_root` may hold fewer classes.
    pub fn new(
        cfg: &ViTConfig,
        pretrained: Option<&Path>,
        train_root: &Path,
        val_root: &Path,
        processor: ImageProcessorConfig,
        freeze_backbone: bool,
    ) -> Result<Self> {
        let train = ClassFolder::scan(train_root, None)?;
        let val = ClassFolder::scan(val_root, Some(&train.classes))?;
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb: VarBuilder<'static> = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let model =
            ViTForImageClassification::with_new_head(vb.clone(), vb.pp("classifier"), cfg, train.classes.clone())?;
        if let Some(dir) = pretrained {
            let w = weights::find_weights(dir)?;
            let file = weights::var_builder(&w, DType::F32, &dev, None)?;
            // ViTModel checkpoints have no `vit.` prefix.
            let prefixed = file.contains_tensor("vit.embeddings.cls_token");
            let data = varmap.data().lock().expect("varmap");
            for (name, var) in data.iter().filter(|(n, _)| n.starts_with("vit.")) {
                let key = if prefixed { name.clone() } else { name["vit.".len()..].to_string() };
                let t = file.get(var.shape(), &key).map_err(|e| weights::load_error(&w, e))?;
                var.set(&t)?;
            }
        }
        Ok(Self { varmap, model, processor, train, val, freeze_backbone })
    }

    fn split(&self, s: Split) -> &ClassFolder {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Pixel values and class indices of `idx` in `split`.
    pub fn load(&self, split: Split, idx: &[usize]) -> Result<(Tensor, Vec<u32>)> {
        let set = self.split(split);
        let mut imgs = Vec::with_capacity(idx.len());
        let mut ys = Vec::with_capacity(idx.len());
        for &i in idx {
            let (p, k) = &set.samples[i];
            // The shared reader (JPEG as libjpeg-turbo decodes it, as the reference's PIL does).
            imgs.push(crate::io::read_rgb(p)?);
            ys.push(*k as u32);
        }
        Ok((self.processor.preprocess_batch(&imgs)?, ys))
    }
}

impl Trainable for VitClassifyTask {
    type Input = Tensor;

    fn vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap");
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| !self.freeze_backbone || n.starts_with("classifier."))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn len(&self, split: Split) -> usize {
        self.split(split).samples.len()
    }

    fn batch(&mut self, split: Split, idx: &[usize], _rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor)> {
        let (pv, ys) = self.load(split, idx)?;
        let k = self.train.classes.len();
        let onehot: Vec<f32> = ys.iter().flat_map(|&y| (0..k).map(move |c| (c as u32 == y) as u8 as f32)).collect();
        Ok((pv, Tensor::from_vec(onehot, (idx.len(), 1, k), &Device::Cpu)?))
    }

    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(input)?.unsqueeze(1)?)
    }

    /// Softmax cross-entropy, whatever the configured segmentation loss.
    fn loss(&self, input: &Tensor, targets: &Tensor, _loss: &LossKind) -> Result<Tensor> {
        let logits = self.model.forward(input)?;
        let y = targets.squeeze(1)?.argmax(D::Minus1)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &y)?)
    }
}

/// Redraws the backbone (`vit.*`) from a seeded RNG, since candle's CPU RNG cannot be seeded:
/// weights U(±1/sqrt(fan_in)) as candle draws them, biases and embeddings U(±0.02), layer norms
/// left at one and zero. The zero head is untouched.
pub fn seed_backbone(varmap: &VarMap, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = varmap.data().lock().expect("varmap");
    let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with("vit.")).collect();
    names.sort();
    for name in names {
        let var = &data[name];
        if name.contains("layernorm") {
            continue;
        }
        let dims = var.dims();
        let b = if name.ends_with(".weight") && dims.len() >= 2 {
            1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt()
        } else {
            0.02
        };
        let v: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-b..b)).collect();
        var.set(&Tensor::from_vec(v, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// Runs the task's model over a split in batches.
pub fn evaluate(task: &VitClassifyTask, split: Split, batch: usize) -> Result<ClassifyEval> {
    let n = task.len(split);
    let (mut truth, mut pred) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (pv, ys) = task.load(split, chunk)?;
        let p = task.model.forward(&pv)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        truth.extend(ys.iter().map(|&y| y as usize));
        pred.extend(p.iter().map(|&y| y as usize));
    }
    let k = task.train.classes.len();
    let correct = truth.iter().zip(&pred).filter(|(t, p)| t == p).count();
    Ok(ClassifyEval {
        classes: task.train.classes.clone(),
        accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 },
        confusion: confusion_matrix(&truth, &pred, k),
    })
}

/// The training processor: the model directory's mean/std (ViT defaults without one),
/// PIL bilinear resize to `size` x `size`.
fn train_processor(dir: &Path, size: u32) -> Result<ImageProcessorConfig> {
    let pp = dir.join("preprocessor_config.json");
    let src = if pp.is_file() { ImageProcessorConfig::from_file(&pp)? } else { ImageProcessorConfig::vit_default() };
    Ok(ImageProcessorConfig {
        size: ResizeTarget::Exact { height: size, width: size },
        crop_size: (size, size),
        image_mean: src.image_mean,
        image_std: src.image_std,
        ..ImageProcessorConfig::vit_default()
    })
}

/// `ROOT/train` and `ROOT/val` of a classification config.
fn split_roots(cfg: &TrainConfig) -> Result<(PathBuf, PathBuf)> {
    let [root] = cfg.data.datasets.as_slice() else {
        bail!("data.datasets: vit_classify takes one folder (with train/ and val/ class folders)");
    };
    let (t, v) = (root.join("train"), root.join("val"));
    for d in [&t, &v] {
        if !d.is_dir() {
            bail!("{}: not found (vit_classify needs ROOT/train/<class>/ and ROOT/val/<class>/)", d.display());
        }
    }
    Ok((t, v))
}

/// `vlsm train` for `model.kind = "vit_classify"`.
pub fn train(cfg: &TrainConfig, opts: &RunOptions, hooks: Hooks) -> Result<RunSummary> {
    trainer::train(cfg, opts, hooks, || {
        let dir = &cfg.model.dir;
        let cfg_path = dir.join("config.json");
        let raw: serde_json::Value = weights::read_json(&cfg_path)?;
        if raw.get("model_type").and_then(|m| m.as_str()) != Some("vit") {
            bail!("{}: model.dir must be a ViT directory (model_type \"vit\")", cfg_path.display());
        }
        let vit: ViTConfig = serde_json::from_value(raw.clone())
            .map_err(|e| anyhow::anyhow!("{}: not a ViT config: {e}", cfg_path.display()))?;
        // Weights are optional: a config alone means a random backbone.
        let pretrained = weights::find_weights(dir).is_ok();
        let (train_root, val_root) = split_roots(cfg)?;
        let size = cfg.data.image_size as u32;
        let processor = train_processor(dir, size)?;
        let task = VitClassifyTask::new(
            &vit,
            pretrained.then_some(dir.as_path()),
            &train_root,
            &val_root,
            processor.clone(),
            cfg.is_frozen("vision"),
        )?;
        if !pretrained {
            seed_backbone(&task.varmap, cfg.seed)?;
        }
        if opts.progress {
            eprintln!(
                "{} train / {} val images, {} classes {:?}; backbone {} and {}",
                task.train.samples.len(),
                task.val.samples.len(),
                task.train.classes.len(),
                task.train.classes,
                if pretrained { "pretrained" } else { "random (seeded)" },
                if task.freeze_backbone { "frozen" } else { "trained" }
            );
        }
        let (varmap, classes) = (task.varmap.clone(), task.train.classes.clone());
        let keep_best = export_new_best(move |w, dst| export_classifier(&raw, &classes, &varmap, w, &processor, dst));
        Ok((task, keep_best))
    })
}

/// Writes a `ViTForImageClassification` directory: every variable of `varmap`, overridden by
/// the checkpoint's trained ones (a frozen backbone is not in the checkpoint), the source config
/// with the new labels, and the training processor.
fn export_classifier(
    src_config: &serde_json::Value,
    classes: &[String],
    varmap: &VarMap,
    weights: &Path,
    processor: &ImageProcessorConfig,
    dst: &Path,
) -> Result<()> {
    use std::collections::HashMap;
    let mut all: HashMap<String, Tensor> = {
        let data = varmap.data().lock().expect("varmap");
        data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect::<candle_core::Result<_>>()?
    };
    let trained = candle_core::safetensors::load(weights, &Device::Cpu)
        .with_context(|| format!("{}: cannot read weights", weights.display()))?;
    all.extend(trained);
    std::fs::create_dir_all(dst).with_context(|| format!("{}: cannot create", dst.display()))?;
    crate::io::write_safetensors_atomic(&dst.join("model.safetensors"), &all)?;
    let mut c = src_config.clone();
    let id2label: serde_json::Map<String, serde_json::Value> =
        classes.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        classes.iter().enumerate().map(|(i, n)| (n.clone(), i.into())).collect();
    c["id2label"] = id2label.into();
    c["label2id"] = label2id.into();
    c["architectures"] = serde_json::json!(["ViTForImageClassification"]);
    let (h, w) = processor.crop_size;
    let pp = serde_json::json!({
        "image_processor_type": "ViTImageProcessor", "do_resize": true,
        "size": {"height": h, "width": w}, "resample": 2,
        "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
        "image_mean": processor.image_mean, "image_std": processor.image_std,
    });
    crate::io::write_atomic(&dst.join("preprocessor_config.json"), serde_json::to_string_pretty(&pp)?.as_bytes())?;
    // config.json last: its presence marks the directory complete.
    crate::io::write_atomic(&dst.join("config.json"), serde_json::to_string_pretty(&c)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ResizeTarget;
    use crate::train::{AdamW, AdamWParams};
    use rand::SeedableRng;

    /// Two classes told apart by colour, with noise.
    fn write_dataset(root: &Path, per_class: usize) {
        for (k, name) in ["blue", "red"].iter().enumerate() {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(20, 20, |x, y| {
                    let n = ((x * 7 + y * 13 + i as u32 * 31) % 60) as u8;
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

    fn tiny() -> ViTConfig {
        serde_json::from_value(serde_json::json!({
            "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
            "image_size": 16, "patch_size": 8
        }))
        .unwrap()
    }

    #[test]
    fn zero_head_then_loss_falls() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), 6);
        let proc = ImageProcessorConfig {
            size: ResizeTarget::Exact { height: 16, width: 16 },
            crop_size: (16, 16),
            ..ImageProcessorConfig::vit_default()
        };
        let mut task = VitClassifyTask::new(&tiny(), None, dir.path(), dir.path(), proc, false).unwrap();
        seed_backbone(&task.varmap, 7).unwrap();
        assert_eq!(task.train.classes, ["blue", "red"]);
        assert_eq!(task.len(Split::Train), 12);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let idx: Vec<usize> = (0..12).collect();
        let (x, y) = task.batch(Split::Train, &idx, &mut rng).unwrap();
        // Zero head: uniform prediction, loss ln 2.
        assert!(task.forward(&x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() == 0.0);
        let kind = LossKind::Bce;
        let l0 = task.loss(&x, &y, &kind).unwrap().to_scalar::<f32>().unwrap();
        assert!((l0 - 2f32.ln()).abs() < 1e-5, "{l0}");
        let mut opt = AdamW::new(task.vars(), AdamWParams { lr: 3e-3, ..Default::default() }).unwrap();
        let mut last = l0;
        for _ in 0..100 {
            let loss = task.loss(&x, &y, &kind).unwrap();
            last = loss.to_scalar::<f32>().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        assert!(last < 0.3 * l0, "loss {l0} -> {last}");
        let ev = evaluate(&task, Split::Val, 5).unwrap();
        assert_eq!(ev.accuracy, 1.0);
        assert_eq!(ev.confusion, vec![vec![6, 0], vec![0, 6]]);
        // Variables carry HF names, so weights.safetensors is a ViTForImageClassification.
        let names: Vec<String> = task.vars().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"classifier.weight".to_string()));
        assert!(names.contains(&"vit.encoder.layer.0.attention.attention.query.weight".to_string()), "{names:?}");
    }

    #[test]
    fn pretrained_backbone_is_copied() {
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vit");
        let r = candle_core::safetensors::load(fx.join("reference.safetensors"), &Device::Cpu).unwrap();
        let data = tempfile::tempdir().unwrap();
        write_dataset(data.path(), 1);
        for (dir, case) in [("tiny_cls", "cls_48x40"), ("tiny_model", "model_36x30")] {
            let cfg: ViTConfig = weights::read_json(&fx.join(dir).join("config.json")).unwrap();
            let proc = ImageProcessorConfig::vit_default();
            let task = VitClassifyTask::new(&cfg, Some(&fx.join(dir)), data.path(), data.path(), proc, true).unwrap();
            let h = task.model.vit.forward(&r[&format!("{case}.pixel_values")]).unwrap().last_hidden_state;
            let want = &r[&format!("{case}.last_hidden_state")];
            let err = (h - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(err < 1e-4, "{dir}: {err}");
            // Frozen backbone: only the new 2-class head trains.
            let v = task.vars();
            assert_eq!(v.len(), 2);
            assert_eq!(v[1].1.dims(), &[2, cfg.hidden_size]);
        }
    }
}
