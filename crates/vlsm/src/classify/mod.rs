//! Image classification: top-k labels with probabilities from any [`ImageClassifier`]. The
//! supervised ViT and Swin heads implement it from a model directory; CLIP zero-shot plugs in
//! by implementing the trait with prompts as labels and [`zero_shot_logits`]. [`eval`] measures
//! a classifier on a folder-per-class dataset.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::models::swin::{SwinConfig, SwinForImageClassification};
use crate::models::vit::{ViTConfig, ViTForImageClassification};
use crate::preprocess::{ImageProcessorConfig, ResizeTarget};
use crate::weights;

pub mod eval;

pub use eval::{
    confusion_matrix, evaluate_folder, evaluate_saved, format_eval, is_classifier_dir, ClassFolder, ClassifyEval,
};

/// Anything that maps pixel values to one logit per label.
pub trait ImageClassifier {
    fn labels(&self) -> &[String];
    /// How images become this model's pixel values.
    fn processor(&self) -> &ImageProcessorConfig;
    /// `[B, 3, H, W]` → `[B, labels().len()]`.
    fn logits(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor>;
}

/// One ranked label.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub probability: f32,
}

/// Softmax over one row of logits, then the `k` most probable labels (ties: lower index first).
pub fn top_k(logits: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction {
            index: i,
            label: labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")),
            probability: (e[i] / sum) as f32,
        })
        .collect()
}

/// Classify one image: preprocess, logits, top-k.
pub fn classify(model: &dyn ImageClassifier, img: &RgbImage, k: usize) -> Result<Vec<Prediction>> {
    let pv = model.processor().preprocess(img)?;
    let logits = model.logits(&pv)?.to_dtype(DType::F32)?.squeeze(0)?.to_vec1::<f32>()?;
    if logits.len() != model.labels().len() {
        bail!("model gives {} logits for {} labels", logits.len(), model.labels().len());
    }
    Ok(top_k(&logits, model.labels(), k))
}

/// CLIP zero-shot logits `[B, K]`: `exp(logit_scale) · cos(image_i, text_k)` from unnormalised
/// image `[B, E]` and prompt `[K, E]` features (`get_image_features` / `get_text_features`).
pub fn zero_shot_logits(image: &Tensor, text: &Tensor, logit_scale: f64) -> candle_core::Result<Tensor> {
    use crate::models::clip::l2_normalize;
    l2_normalize(image)?.matmul(&l2_normalize(text)?.t()?)? * logit_scale.exp()
}

enum Net {
    Vit(ViTForImageClassification),
    Swin(SwinForImageClassification),
}

/// A supervised classifier from a Hugging Face directory (`ViTForImageClassification`,
/// `SwinForImageClassification`).
pub struct HfClassifier {
    net: Net,
    labels: Vec<String>,
    processor: ImageProcessorConfig,
    /// `model_type` from config.json.
    pub model_type: String,
}

impl HfClassifier {
    /// Reads `config.json`, the weights and `preprocessor_config.json` (transformers'
    /// `ViTImageProcessor` defaults at the model's `image_size` when absent).
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            bail!("{}: not a model directory (no config.json)", dir.display());
        }
        let v: serde_json::Value = weights::read_json(&cfg_path)?;
        let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("").to_string();
        let archs: Vec<String> = v
            .get("architectures")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let w = weights::find_weights(dir)?;
        let vb = weights::var_builder(&w, DType::F32, dev, None)?;
        let parse = |what: &str| anyhow::anyhow!("{}: not a {what} config", cfg_path.display());
        let (net, image_size) = match model_type.as_str() {
            "vit" => {
                let c: ViTConfig = serde_json::from_value(v.clone()).with_context(|| parse("ViT"))?;
                if !vb.contains_tensor("classifier.weight") {
                    bail!("{}: no classifier head (architectures {archs:?}); a ViTForImageClassification checkpoint is needed", w.display());
                }
                let m = ViTForImageClassification::new(vb, &c).map_err(|e| weights::load_error(&w, e))?;
                (Net::Vit(m), c.image_size.hw())
            }
            "swin" => {
                let c: SwinConfig = serde_json::from_value(v.clone()).with_context(|| parse("Swin"))?;
                if !vb.contains_tensor("classifier.weight") {
                    bail!("{}: no classifier head (architectures {archs:?}); a SwinForImageClassification checkpoint is needed", w.display());
                }
                let m = SwinForImageClassification::new(vb, &c).map_err(|e| weights::load_error(&w, e))?;
                (Net::Swin(m), c.image_size.hw())
            }
            "" => bail!("{}: no model_type", cfg_path.display()),
            other => bail!("{}: model_type '{other}' cannot classify (expected vit or swin)", cfg_path.display()),
        };
        let pp = dir.join("preprocessor_config.json");
        let processor = if pp.is_file() {
            ImageProcessorConfig::from_file(&pp)?
        } else {
            let (h, w) = (image_size.0 as u32, image_size.1 as u32);
            ImageProcessorConfig {
                size: ResizeTarget::Exact { height: h, width: w },
                crop_size: (h, w),
                ..ImageProcessorConfig::vit_default()
            }
        };
        let labels = match &net {
            Net::Vit(m) => m.labels.clone(),
            Net::Swin(m) => m.labels.clone(),
        };
        Ok(Self { net, labels, processor, model_type })
    }

    pub fn set_processor(&mut self, p: ImageProcessorConfig) {
        self.processor = p;
    }
}

impl ImageClassifier for HfClassifier {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn processor(&self) -> &ImageProcessorConfig {
        &self.processor
    }

    fn logits(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        match &self.net {
            Net::Vit(m) => m.forward(pixel_values),
            Net::Swin(m) => m.forward(pixel_values),
        }
    }
}

/// What `vlsm bench vit|swin` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub bench: String,
    pub size: usize,
    pub batch: usize,
    pub threads: usize,
    pub params: usize,
    pub median_s_per_image: f64,
    pub runs_s_per_image: Vec<f64>,
}

/// Which full-size classifier to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchModel {
    /// ViT-B/16, 1000 labels.
    VitB16,
    /// Swin-T (patch 4, window 7), 1000 labels.
    SwinT,
}

/// Median seconds per image of a forward pass (logits read back) over `reps` runs after one
/// warm-up, random weights, on the CPU.
pub fn bench(which: BenchModel, size: usize, batch: usize, reps: usize) -> Result<BenchResult> {
    use candle_nn::{VarBuilder, VarMap};
    if batch == 0 || reps == 0 {
        bail!("batch and reps must be >= 1");
    }
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    type Forward = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
    let (name, model): (&str, Forward) = match which {
        BenchModel::VitB16 => {
            let m = ViTForImageClassification::new(vb, &ViTConfig::base_patch16_224(1000))?;
            ("vit-b16", Box::new(move |x| m.forward(x)))
        }
        BenchModel::SwinT => {
            let m = SwinForImageClassification::new(vb, &SwinConfig::tiny_patch4_window7_224(1000))?;
            ("swin-t", Box::new(move |x| m.forward(x)))
        }
    };
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    let pv = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &dev)?;
    let step = || -> Result<()> {
        let _ = model(&pv)?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        Ok(())
    };
    step()?;
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = std::time::Instant::now();
        step()?;
        runs.push(t.elapsed().as_secs_f64() / batch as f64);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    Ok(BenchResult {
        bench: name.into(),
        size,
        batch,
        threads: candle_core::utils::get_num_threads(),
        params,
        median_s_per_image: median,
        runs_s_per_image: runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_sorts_and_normalises() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = top_k(&[1.0, 3.0, 1.0], &labels, 2);
        assert_eq!(p.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 0]);
        let e3 = 3f32.exp();
        let e1 = 1f32.exp();
        assert!((p[0].probability - e3 / (e3 + 2.0 * e1)).abs() < 1e-6);
        assert_eq!(top_k(&[0.0; 3], &labels, 10).len(), 3);
    }
}
