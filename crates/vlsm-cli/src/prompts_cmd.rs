//! `vlsm prompts DATASET_DIR --class NAME [--split 80/10/10] [--seed S]`.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
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

/// "80/10/10" → [80, 10, 10].
pub fn parse_split(s: &str) -> Result<[u32; 3]> {
    let bad = || anyhow!("--split: expected three whole numbers like 80/10/10, got '{s}'");
    let parts: Vec<u32> = s
        .split('/')
        .map(|p| {
            let p = p.trim();
            p.parse::<u32>().map_err(|_| {
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    anyhow!("--split: ratio {p} is larger than {} in '{s}'", u32::MAX)
                } else {
                    bad()
                }
            })
        })
        .collect::<Result<_>>()?;
    let arr: [u32; 3] = parts.try_into().map_err(|_| bad())?;
    if arr.iter().all(|&v| v == 0) {
        return Err(anyhow!("--split: the ratios must not all be zero, got '{s}'"));
    }
    Ok(arr)
}

pub fn run(a: PromptsArgs) -> Result<()> {
    let split = parse_split(&a.split)?;
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
