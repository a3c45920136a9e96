//! `vlsm bench`: speed of the models and image ops on this machine.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, Subcommand};
use vlsm::models::clipseg::{ClipSeg, ClipSegConfig};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Full-size CLIPSeg (ViT-B/16, reduce_dim 64, random weights): seconds per image.
    Clipseg(ClipsegBench),
}

#[derive(Args, Debug)]
pub struct ClipsegBench {
    /// Input size in pixels (square).
    #[arg(long, default_value_t = 352)]
    pub size: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Clipseg(b) => clipseg(b),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn clipseg(b: ClipsegBench) -> Result<()> {
    if b.batch == 0 || b.reps == 0 || b.size < 16 || b.size % 16 != 0 {
        bail!("--batch and --reps must be >= 1 and --size a positive multiple of 16");
    }
    let dev = Device::Cpu;
    let cfg = ClipSegConfig::rd64_refined();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let model = ClipSeg::new(vb, &cfg)?;
    let pv = Tensor::randn(0f32, 1.0, (b.batch, 3, b.size, b.size), &dev)?;
    // A typical medvlsm prompt length (p6 of kvasir is ~20 tokens).
    let ids: Vec<u32> = std::iter::once(49406).chain((0..18).map(|i| 320 + i)).chain([49407]).collect();
    let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &dev)?;
    let step = || -> Result<()> {
        let cond = model.text_conditional(&ids)?.repeat((b.batch, 1))?;
        let logits = model.forward(&pv, &cond)?;
        let _ = logits.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        Ok(())
    };
    step()?;
    let mut times = Vec::with_capacity(b.reps);
    for _ in 0..b.reps {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64() / b.batch as f64);
    }
    let threads = candle_core::utils::get_num_threads();
    let med = median(&mut times);
    if b.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "clipseg", "impl": "vlsm", "size": b.size, "batch": b.batch, "threads": threads,
                "reps": b.reps, "median_s_per_image": med, "runs_s_per_image": times,
            })
        );
    } else {
        println!(
            "clipseg ViT-B/16 rd64 @{}px batch {} threads {}: median {:.3} s/image over {} runs",
            b.size, b.batch, threads, med, b.reps
        );
    }
    Ok(())
}
