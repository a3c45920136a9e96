//! `vlsm classify IMAGE --model DIR`: top-k labels of a supervised classifier (ViT, Swin), or
//! with `--labels a,b,c` zero-shot over those labels with CLIP or BiomedCLIP.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use vlsm::classify::{self, HfClassifier, ImageClassifier};
use vlsm::zero_shot::{ZeroShotClassifier, DEFAULT_TEMPLATE};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Image file (any format the `image` crate reads).
    pub image: PathBuf,
    /// Hugging Face model directory (config.json, model.safetensors or pytorch_model.bin,
    /// optional preprocessor_config.json) of a ViT or Swin image classifier; with --labels, a
    /// CLIP (`CLIPModel`) or BiomedCLIP (open_clip) directory. A Hugging Face Hub id
    /// `org/name[@revision]` is taken from the HF cache (downloaded when missing unless
    /// HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub model: PathBuf,
    /// Comma-separated labels for zero-shot classification (CLIP, BiomedCLIP), each family with
    /// its own classification transform (CLIP: the directory's preprocessor_config.json; BiomedCLIP:
    /// open_clip's: shorter side to the tower's size, bicubic, centre crop).
    #[arg(long)]
    pub labels: Option<String>,
    /// Prompt template for each label ({} is replaced by the label).
    #[arg(long, requires = "labels")]
    pub template: Option<String>,
    /// How many labels to print.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    // The same checks and pixel limit as every other command, from the header, before decoding.
    crate::imgproc_cmd::check_input_file(&a.image)?;
    vlsm::io::image_dimensions(&a.image)?;
    let dir = vlsm::hub::resolve(&a.model)?;
    let (model, model_type): (Box<dyn ImageClassifier>, String) = match &a.labels {
        Some(list) => {
            let labels: Vec<String> = list.split(',').map(|l| l.trim().to_string()).collect();
            let t = a.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
            let m = ZeroShotClassifier::load(&dir, &labels, t, &Device::Cpu)?;
            let f = m.family_name().to_string();
            (Box::new(m), f)
        }
        None => {
            let m = HfClassifier::load(&dir, &Device::Cpu)?;
            let t = m.model_type.clone();
            (Box::new(m), t)
        }
    };
    // The shared reader: JPEG as libjpeg-turbo decodes it (as PIL does for the references).
    let img = vlsm::io::read_rgb(&a.image)?;
    let preds = classify::classify(model.as_ref(), &img, a.top_k).with_context(|| format!("{}", a.image.display()))?;
    if a.json {
        let v = serde_json::json!({
            "image": a.image.display().to_string(),
            "model": a.model.display().to_string(),
            "model_type": model_type,
            "zero_shot": a.labels.is_some(),
            "num_labels": model.labels().len(),
            "predictions": preds,
        });
        println!("{v}");
    } else {
        for p in &preds {
            println!("{:.4}  {}", p.probability, p.label);
        }
    }
    Ok(())
}

/// `vlsm bench vit|swin`: full-size classifier speed.
#[derive(Args, Debug)]
pub struct ClassifierBenchArgs {
    /// Input size in pixels (square).
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// ViT-B/16 or Swin-T with random weights: median seconds per image.
pub fn run_bench(which: classify::BenchModel, a: ClassifierBenchArgs) -> Result<()> {
    let r = classify::bench(which, a.size, a.batch, a.reps)?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["impl"] = "vlsm".into();
        println!("{v}");
    } else {
        println!(
            "{} ({} params) @{}px batch {} threads {}: median {:.4} s/image over {} runs",
            r.bench, r.params, r.size, r.batch, r.threads, r.median_s_per_image, a.reps
        );
    }
    Ok(())
}
