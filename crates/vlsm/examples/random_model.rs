//! Writes a model directory with seeded random weights, for training runs without pretrained
//! weights (see docs/training.md):
//!
//!     cargo run --release -p vlsm --example random_model -- cris OUT configs/random/cris_small.json [SEED]
//!     cargo run --release -p vlsm --example random_model -- biomedclipseg OUT configs/random/biomedclipseg_small.json [SEED]
//!
//! The JSON for cris is a CRIS `config.json`; for biomedclipseg it is
//! `{"open_clip": <open_clip_config.json>, "bert": <BERT config.json>, "seg": <config.json>,
//! "vocab": "path/to/vocab.txt"}` (a relative vocab path is relative to the JSON file).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use vlsm::train::tasks::random_init;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: random_model cris|biomedclipseg OUT_DIR CONFIG.json [SEED]");
    }
    let (kind, out, cfg_path) = (&args[0], PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let seed: u64 = match args.get(3) {
        Some(s) => s.parse().map_err(|_| anyhow!("SEED: not a number: {s}"))?,
        None => 42,
    };
    let v: serde_json::Value = vlsm::weights::read_json(&cfg_path)?;
    match kind.as_str() {
        "cris" => {
            let bpe = vlsm::tokenize::find_bpe()?;
            random_init::write_cris(&out, &v, seed, Some(&bpe))?;
        }
        "biomedclipseg" => {
            let get = |k: &str| v.get(k).cloned().ok_or_else(|| anyhow!("{}: no \"{k}\"", cfg_path.display()));
            let vocab = get("vocab")?;
            let vocab = vocab.as_str().ok_or_else(|| anyhow!("{}: \"vocab\" is not a path", cfg_path.display()))?;
            let vocab = cfg_path.parent().unwrap_or(Path::new("")).join(vocab);
            random_init::write_biomedclipseg(
                &out,
                &get("open_clip")?,
                &get("bert")?,
                &get("seg")?,
                &vocab,
                seed,
                false,
            )?;
        }
        other => bail!("unknown kind '{other}' (expected cris or biomedclipseg)"),
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
