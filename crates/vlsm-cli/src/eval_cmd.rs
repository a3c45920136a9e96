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
    if vlsm::classify::is_classifier_dir(&model) {
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

/// Accuracy and confusion matrix over `DATA/<split>/<class>/*` (or `DATA/<class>/*`).
fn run_classify(a: &EvalArgs, model: &std::path::Path) -> Result<()> {
    let (ev, _) = vlsm::classify::evaluate_saved(model, &a.data, &a.split, a.batch, &a.out)?;
    print!("{}", vlsm::classify::format_eval(&ev));
    eprintln!("wrote {}", a.out.join("metrics.json").display());
    Ok(())
}
