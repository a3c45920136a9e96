//! `vlsm prompts DATASET_DIR --class NAME [--split 80/10/10] [--seed S]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct PromptsArgs {
    /// Dataset folder with images/ and masks/ (a mask per image, same stem).
    pub dataset: PathBuf,
    /// Class name used in the prompts (e.g. "polyp").
    #[arg(long = "class")]
    pub class: String,
    /// Train/val/test ratios.
    #[arg(long, default_value = "80/10/10")]
    pub split: String,
    /// Seed of the shuffle before splitting.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(a: PromptsArgs) -> Result<()> {
    let split = vlsm::data::prompts::parse_split(&a.split)?;
    let c = vlsm::data::prompts::generate(&a.dataset, &a.class, split, a.seed)?;
    eprintln!(
        "wrote {}: train {}, val {}, test {} records with prompts p0-p9",
        a.dataset.join("anns").display(),
        c.train,
        c.val,
        c.test
    );
    Ok(())
}
