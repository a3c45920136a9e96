//! `vlsm eval --model DIR --data DIR... --split test (--prompt pK | --all-prompts) --out OUT`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use vlsm::eval::{self, EvalOptions};
use vlsm::pipeline::Segmenter;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory (default: the built-in model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset folders in the medvlsm layout; several are pooled.
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Split to evaluate (anns/<split>.json).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Prompt key to evaluate (p0, p1, ...); repeat for several.
    #[arg(
        long = "prompt",
        required_unless_present = "all_prompts",
        conflicts_with = "all_prompts"
    )]
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
    let model = match a.model {
        Some(m) => m,
        None => vlsm::pipeline::default_model_dir()?,
    };
    let seg = Segmenter::load(&model)?;
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
    };
    let report = eval::evaluate(&seg, &opts)?;
    eval::write_outputs(&report, &opts)?;
    print!("{}", eval::table(&report));
    eprintln!("wrote {}", opts.out.display());
    Ok(())
}
