//! Fine-tuning ViT on a folder-per-class image dataset (`root/<class>/<image>`), as the ViT paper
//! transfers: the pretrained head is dropped for a zero-initialised `K`-class head, and the
//! position embeddings follow the training resolution by interpolation.
//!
//! To fit the segmentation-shaped [`Trainable`] (logits and targets `[B, H, W]`), logits are
//! `[B, 1, K]` and targets one-hot `[B, 1, K]`; the training loss is softmax cross-entropy, and
//! the loop's "val Dice" on one-hot targets is the one-vs-rest Dice of `logit > 0`. Report
//! accuracy and the confusion matrix with [`evaluate`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::loss::LossKind;
use super::trainer::{Split, Trainable};
use crate::checkpoint;
use crate::models::vit::{ViTConfig, ViTForImageClassification};
use crate::preprocess::ImageProcessorConfig;

const IMAGE_EXTS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// A folder-per-class dataset: class names (sorted subfolder names) and `(image, class)` pairs.
#[derive(Debug, Clone)]
pub struct ClassFolder {
    pub classes: Vec<String>,
    pub samples: Vec<(PathBuf, usize)>,
}

impl ClassFolder {
    /// Scans `root/<class>/*` (sorted, so indices are stable). With `classes`, those names and
    /// order are used and an unknown folder is an error.
    pub fn scan(root: &Path, classes: Option<&[String]>) -> Result<Self> {
        let mut found: Vec<String> = std::fs::read_dir(root)
            .with_context(|| format!("{}: cannot read dataset folder", root.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        found.sort();
        let classes: Vec<String> = match classes {
            Some(c) => {
                if let Some(x) = found.iter().find(|f| !c.contains(f)) {
                    bail!("{}: class folder '{x}' is not one of {c:?}", root.display());
                }
                c.to_vec()
            }
            None => found.clone(),
        };
        if classes.len() < 2 {
            bail!("{}: need at least two class folders, found {found:?}", root.display());
        }
        let mut samples = Vec::new();
        for (k, name) in classes.iter().enumerate() {
            let dir = root.join(name);
            if !dir.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            samples.extend(files.into_iter().map(|p| (p, k)));
        }
        if samples.is_empty() {
            bail!("{}: no images under the class folders", root.display());
        }
        Ok(Self { classes, samples })
    }
}

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
        let model = ViTForImageClassification::with_new_head(vb.clone(), vb.pp("classifier"), cfg, train.classes.clone())?;
        if let Some(dir) = pretrained {
            let w = checkpoint::find_weights(dir)?;
            let file = checkpoint::var_builder(&w, DType::F32, &dev, None)?;
            // ViTModel checkpoints have no `vit.` prefix.
            let prefixed = file.contains_tensor("vit.embeddings.cls_token");
            let data = varmap.data().lock().expect("varmap");
            for (name, var) in data.iter().filter(|(n, _)| n.starts_with("vit.")) {
                let key = if prefixed { name.clone() } else { name["vit.".len()..].to_string() };
                let t = file.get(var.shape(), &key).map_err(|e| checkpoint::load_error(&w, e))?;
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
            imgs.push(image::open(p).with_context(|| format!("{}: cannot read image", p.display()))?.to_rgb8());
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

/// Accuracy and confusion matrix (`m[true][pred]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassifyEval {
    pub classes: Vec<String>,
    pub accuracy: f64,
    pub confusion: Vec<Vec<usize>>,
}

pub fn confusion_matrix(truth: &[usize], pred: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        m[t][p] += 1;
    }
    m
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
                    if k == 0 { image::Rgb([n, 40 + n, 200 - n]) } else { image::Rgb([200 - n, 40 + n, n]) }
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }

    /// candle's CPU RNG cannot be seeded; redraw the random backbone tensors from a seeded RNG so
    /// the run below is the same on every machine.
    fn reseed_backbone(varmap: &VarMap, seed: u64) {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with("vit.")).collect();
        names.sort();
        for name in names {
            let var = &data[name];
            if name.contains("layernorm") {
                continue;
            }
            // Linear weights ~ U(±1/sqrt(fan_in)) as candle draws them; biases and embeddings small.
            let dims = var.dims();
            let b = if name.ends_with(".weight") && dims.len() >= 2 {
                1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt()
            } else {
                0.02
            };
            let v: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-b..b)).collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
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
        reseed_backbone(&task.varmap, 7);
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
            let cfg: ViTConfig = checkpoint::read_json(&fx.join(dir).join("config.json")).unwrap();
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

    #[test]
    fn confusion_counts() {
        assert_eq!(confusion_matrix(&[0, 1, 1, 2], &[0, 2, 1, 2], 3), vec![vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 1]]);
    }
}
