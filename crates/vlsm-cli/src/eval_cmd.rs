//! `vlsm eval --model DIR --data DIR... --split test (--prompt pK | --all-prompts) --out OUT`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use vlsm::eval::{self, EvalOptions};
use vlsm::pipeline::Segmenter;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory or Hugging Face Hub id `org/name[@revision]` (default: the built-in model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset folders in the medvlsm layout; several are pooled.
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Split to evaluate (anns/<split>.json).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Prompt key to evaluate (p0, p1, ...); repeat for several. Needed unless --all-prompts,
    /// or the model is text-free (UNet), which ignores it.
    #[arg(long = "prompt", conflicts_with = "all_prompts")]
    pub prompts: Vec<String>,
    /// Evaluate every prompt key the records have.
    #[arg(long)]
    pub all_prompts: bool,
    /// Output directory (metrics.json, per_image.csv, masks/, report.html).
    #[arg(long)]
    pub out: PathBuf,
    /// Probability threshold (default: the model's, 0.5 for CLIPSeg).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Seed for drawing one prompt from a list prompt.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Images per batch through the image encoder.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Worst cases shown in report.html.
    #[arg(long, default_value_t = 12)]
    pub worst: usize,
    /// Test-time augmentation: none, or flip (mean over four flips, position words flipped).
    #[arg(long, default_value = "none")]
    pub tta: vlsm::pipeline::Tta,
    /// Mask post-processing before scoring: a comma-separated list of lcc and fill, or none.
    #[arg(long, default_value = "none")]
    pub post: vlsm::pipeline::PostProcess,
    /// Also score each dataset under its own, the empty, another dataset's and a word-shuffled
    /// prompt (metrics.json "ablation", a table in report.html).
    #[arg(long)]
    pub ablation: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(t) = a.threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--threshold must be in 0..1, got {t}");
        }
    }
    let model = match a.model.clone() {
        Some(m) => vlsm::hub::resolve(&m)?,
        None => vlsm::pipeline::default_model_dir()?,
    };
    if is_classifier(&model) {
        return run_classify(&a, &model);
    }
    let seg = Segmenter::load(&model)?;
    if seg.uses_text() && a.prompts.is_empty() && !a.all_prompts {
        bail!("give --prompt pK (repeatable) or --all-prompts");
    }
    let opts = EvalOptions {
        model: model.display().to_string(),
        data: a.data,
        split: a.split,
        prompts: if a.all_prompts { None } else { Some(a.prompts) },
        out: a.out,
        threshold: a.threshold.unwrap_or_else(|| eval::default_threshold(&seg)),
        seed: a.seed,
        batch: a.batch,
        progress: true,
        worst: a.worst,
        tta: a.tta,
        post: a.post,
        ablation: a.ablation,
    };
    let report = eval::evaluate(&seg, &opts)?;
    eval::write_outputs(&report, &opts)?;
    print!("{}", eval::table(&report));
    eprintln!("wrote {}", opts.out.display());
    Ok(())
}

/// A supervised image classifier directory (ViT or Swin `config.json`).
fn is_classifier(dir: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return false };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    matches!(v.get("model_type").and_then(|m| m.as_str()), Some("vit" | "swin"))
}

/// Accuracy and confusion matrix over `DATA/<split>/<class>/*` (or `DATA/<class>/*`).
fn run_classify(a: &EvalArgs, model: &std::path::Path) -> Result<()> {
    use vlsm::classify::{evaluate_folder, format_eval, HfClassifier};
    let [root] = a.data.as_slice() else {
        bail!("--data: a classifier is evaluated on one folder of class folders");
    };
    let split_dir = root.join(&a.split);
    let dir = if split_dir.is_dir() { split_dir } else { root.clone() };
    let m = HfClassifier::load(model, &candle_core::Device::Cpu)?;
    let ev = evaluate_folder(&m, &dir, a.batch)?;
    let json = serde_json::json!({
        "model": model.display().to_string(), "data": dir.display().to_string(),
        "accuracy": ev.accuracy, "classes": ev.classes, "confusion": ev.confusion,
    });
    vlsm::io::write_atomic(&a.out.join("metrics.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
    print!("{}", format_eval(&ev));
    eprintln!("wrote {}", a.out.join("metrics.json").display());
    Ok(())
}
