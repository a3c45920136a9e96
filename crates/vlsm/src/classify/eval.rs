//! Classifier evaluation on a folder-per-class dataset (`root/<class>/<image>`): accuracy and
//! the confusion matrix. `vlsm eval` runs [`evaluate_folder`] on a saved model; the ViT
//! fine-tuning task scans its data with [`ClassFolder`] and reports with [`ClassifyEval`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::D;

use super::ImageClassifier;

const IMAGE_EXTS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// A folder-per-class dataset: class names (sorted subfolder names) and `(image, class)` pairs.
#[derive(Debug, Clone)]
pub struct ClassFolder {
    pub classes: Vec<String>,
    pub samples: Vec<(PathBuf, usize)>,
}

impl ClassFolder {
    /// Scans `root/<class>/*` for a model's `labels` (class index = label index); a folder
    /// that is not a label is an error, a label without a folder is fine.
    pub fn scan_known(root: &Path, labels: &[String]) -> Result<Self> {
        if !root.is_dir() {
            bail!("{}: dataset folder not found", root.display());
        }
        Self::scan(root, Some(labels))
    }

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
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
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

/// Runs a saved classifier over `root/<class>/*`; the folders must be among its labels.
pub fn evaluate_folder(model: &dyn ImageClassifier, root: &Path, batch: usize) -> Result<ClassifyEval> {
    let labels = model.labels().to_vec();
    let set = ClassFolder::scan_known(root, &labels)?;
    let (mut truth, mut pred) = (Vec::new(), Vec::new());
    for chunk in set.samples.chunks(batch.max(1)) {
        let imgs = chunk.iter().map(|(p, _)| crate::io::read_rgb(p)).collect::<Result<Vec<_>>>()?;
        let pv = model.processor().preprocess_batch(&imgs)?;
        let p = model.logits(&pv)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        truth.extend(chunk.iter().map(|(_, k)| *k));
        pred.extend(p.iter().map(|&y| y as usize));
    }
    let correct = truth.iter().zip(&pred).filter(|(t, p)| t == p).count();
    Ok(ClassifyEval {
        accuracy: correct as f64 / truth.len() as f64,
        confusion: confusion_matrix(&truth, &pred, labels.len()),
        classes: labels,
    })
}

/// Whether `dir` holds a supervised image classifier (a ViT or Swin `config.json`): `vlsm eval`
/// evaluates those on class folders instead of segmentation splits.
pub fn is_classifier_dir(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return false };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    matches!(v.get("model_type").and_then(|m| m.as_str()), Some("vit" | "swin"))
}

/// `vlsm eval` on the classifier in `model`: accuracy and confusion matrix over
/// `DATA/<split>/<class>/*` (or `DATA/<class>/*` when there is no `DATA/<split>`), `batch`
/// images at a time. Writes `out/metrics.json` atomically and returns the evaluation with
/// metrics.json's content (`model`, `data`, `accuracy`, `classes`, `confusion`).
pub fn evaluate_saved(
    model: &Path,
    data: &[PathBuf],
    split: &str,
    batch: usize,
    out: &Path,
) -> Result<(ClassifyEval, serde_json::Value)> {
    let [root] = data else {
        bail!("--data: a classifier is evaluated on one folder of class folders");
    };
    let split_dir = root.join(split);
    let dir = if split_dir.is_dir() { split_dir } else { root.clone() };
    let m = super::HfClassifier::load(model, &candle_core::Device::Cpu)?;
    let ev = evaluate_folder(&m, &dir, batch)?;
    let json = serde_json::json!({
        "model": model.display().to_string(), "data": dir.display().to_string(),
        "accuracy": ev.accuracy, "classes": ev.classes, "confusion": ev.confusion,
    });
    crate::io::write_atomic(&out.join("metrics.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok((ev, json))
}

/// Accuracy and the confusion matrix as a text table (rows: true class, columns: predicted).
pub fn format_eval(ev: &ClassifyEval) -> String {
    let n: usize = ev.confusion.iter().flatten().sum();
    let w = ev.classes.iter().map(|c| c.len()).max().unwrap_or(4).max(6);
    let mut s = format!("accuracy {:.4} ({n} images)\n{:>w$}", ev.accuracy, "true\\pred");
    for c in &ev.classes {
        s += &format!(" {c:>w$}");
    }
    s.push('\n');
    for (c, row) in ev.classes.iter().zip(&ev.confusion) {
        s += &format!("{c:>w$}");
        for v in row {
            s += &format!(" {v:>w$}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts() {
        assert_eq!(
            confusion_matrix(&[0, 1, 1, 2], &[0, 2, 1, 2], 3),
            vec![vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
    }
}
