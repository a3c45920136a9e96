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
    /// End-to-end latency of one image and one prompt (decode, preprocess, model, mask at the
    /// original size) with a model directory, the built-in one by default.
    Segment(SegmentBench),
    /// One training step of the built-in model architecture: images per second.
    Train(TrainBench),
    /// Full-size CRIS (RN50, 416 px, random weights): seconds per image.
    Cris(ItersBench),
    /// Full-size BiomedCLIPSeg (ViT-B/16 + PubMedBERT, 224 px, random weights): seconds per image.
    Biomedclipseg(ItersBench),
    /// ViT-B/16 classifier (random weights): seconds per image.
    Vit(crate::classify_cmd::ClassifierBenchArgs),
    /// Swin-T classifier (random weights): seconds per image.
    Swin(crate::classify_cmd::ClassifierBenchArgs),
    /// The imgproc operations on one image, median milliseconds each (tools/bench_imgproc.py
    /// times the same list in OpenCV).
    Imgproc {
        /// The image (the reference figures use a 1920x1072 Kvasir image).
        #[arg(long)]
        image: std::path::PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Timed runs of each op (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 15)]
        reps: usize,
        /// Only these ops (comma-separated names from the default list).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
    },
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
        BenchCommand::Train(b) => train(b),
        BenchCommand::Segment(b) => segment(b),
        BenchCommand::Cris(b) => iters_bench("cris", b, vlsm::models::cris::bench),
        BenchCommand::Biomedclipseg(b) => iters_bench("biomedclipseg", b, vlsm::models::biomedclipseg::bench),
        BenchCommand::Vit(b) => crate::classify_cmd::run_bench(vlsm::classify::BenchModel::VitB16, b),
        BenchCommand::Swin(b) => crate::classify_cmd::run_bench(vlsm::classify::BenchModel::SwinT, b),
        BenchCommand::Imgproc { image, json, reps, ops } => crate::imgproc_cmd::bench(&image, json, reps, &ops),
    }
}

#[derive(Args, Debug)]
pub struct SegmentBench {
    /// The image.
    #[arg(long)]
    pub image: std::path::PathBuf,
    /// The prompt.
    #[arg(long, default_value = "polyp")]
    pub prompt: String,
    /// Model directory or Hugging Face Hub id `org/name[@revision]` (default: the built-in model).
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn segment(b: SegmentBench) -> Result<()> {
    use vlsm::pipeline::{self, Segmenter};
    let dir = match b.model {
        Some(d) => vlsm::hub::resolve(&d)?,
        None => pipeline::default_model_dir()?,
    };
    let seg = Segmenter::load(&dir)?;
    let prompts = vec![b.prompt.clone()];
    let step = || -> Result<()> {
        let img = vlsm::io::read_rgb(&b.image)?;
        let pv = seg.pixel_values(&[&img])?;
        let f = seg.encode_images(&pv)?;
        let logits = seg.decode(&f[0], &seg.text_conditional(&prompts)?)?;
        let (w, h) = img.dimensions();
        let probs = pipeline::probabilities_at(&logits.get(0)?, w, h)?;
        let _ = pipeline::threshold_mask(&probs, w, h, seg.default_threshold())?;
        Ok(())
    };
    let mut t = timed(b.reps.max(1), step)?;
    let med = median(&mut t);
    let threads = candle_core::utils::get_num_threads();
    if b.json {
        println!(
            "{}",
            serde_json::json!({"bench": "segment", "model": seg.kind_name(), "threads": threads,
                "median_s_per_image": med, "runs_s": t})
        );
    } else {
        println!(
            "segment {} ({}) threads {threads}: median {:.1} ms per image",
            b.image.display(),
            seg.kind_name(),
            med * 1e3
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ItersBench {
    /// Timed forward passes (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn iters_bench(name: &str, b: ItersBench, f: fn(usize, &Device) -> Result<Vec<f64>>) -> Result<()> {
    if b.iters == 0 {
        bail!("--iters must be >= 1");
    }
    let mut t = f(b.iters, &Device::Cpu)?;
    let med = median(&mut t);
    if b.json {
        println!(
            "{}",
            serde_json::json!({"bench": name, "impl": "vlsm", "batch": 1,
                "threads": candle_core::utils::get_num_threads(), "median_s_per_image": med, "runs_s": t})
        );
    } else {
        println!(
            "{name} batch 1 threads {}: median {:.3} s/image over {} runs",
            candle_core::utils::get_num_threads(),
            med,
            b.iters
        );
    }
    Ok(())
}

/// Seconds of each of `reps` calls, after one warm-up call.
fn timed(reps: usize, mut step: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    step()?;
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            step()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn clipseg(b: ClipsegBench) -> Result<()> {
    if b.batch == 0 || b.reps == 0 || b.size < 16 || !b.size.is_multiple_of(16) {
        bail!("--batch and --reps must be >= 1 and --size a positive multiple of 16");
    }
    let dev = Device::Cpu;
    let cfg = ClipSegConfig::rd64_refined();
    // Random weights as plain tensors, as a loaded checkpoint gives (no gradient tracking).
    let vm = VarMap::new();
    ClipSeg::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), &cfg)?;
    let frozen =
        vm.data().lock().expect("varmap lock").iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let model = ClipSeg::new(VarBuilder::from_tensors(frozen, DType::F32, &dev), &cfg)?;
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
    let mut times: Vec<f64> = timed(b.reps, step)?.into_iter().map(|t| t / b.batch as f64).collect();
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

#[derive(Args, Debug)]
pub struct TrainBench {
    /// Images per training step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Input size in pixels (square).
    #[arg(long, default_value_t = 160)]
    pub size: usize,
    /// Timed steps (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One training step (forward, backward, AdamW) of the built-in TextUNet architecture.
fn train(b: TrainBench) -> Result<()> {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    use vlsm::models::textunet::{TextUNet, TextUNetConfig};
    if b.batch == 0 || b.reps == 0 {
        bail!("--batch and --reps must be >= 1");
    }
    let dev = Device::Cpu;
    let mut cfg = TextUNetConfig::new((0..400).map(|i| 300 + i).collect());
    cfg.image_size = b.size;
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let vm = VarMap::new();
    let model = TextUNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), &cfg)?;
    let mut opt = AdamW::new(vm.all_vars(), ParamsAdamW { lr: 1e-3, weight_decay: 1e-3, ..Default::default() })?;
    let x = Tensor::randn(0f32, 1.0, (b.batch, 3, b.size, b.size), &dev)?;
    let y = Tensor::rand(0f32, 1.0, (b.batch, b.size, b.size), &dev)?.ge(0.5)?.to_dtype(DType::F32)?;
    let prompts: Vec<Vec<u32>> = (0..b.batch).map(|i| vec![49406, 300 + i as u32, 320, 49407]).collect();
    let step = || -> Result<()> {
        let t = model.text.forward(&prompts)?;
        let logits = model.forward(&x, &t)?;
        let loss = candle_nn::loss::binary_cross_entropy_with_logit(&logits, &y)?;
        opt.backward_step(&loss)?;
        Ok(())
    };
    let mut times = timed(b.reps, step)?;
    let med = median(&mut times);
    let ips = b.batch as f64 / med;
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    if b.json {
        println!(
            "{}",
            serde_json::json!({"bench": "train", "impl": "vlsm", "model": "textunet", "size": b.size,
                "batch": b.batch, "threads": candle_core::utils::get_num_threads(), "params": params,
                "median_s_per_step": med, "images_per_s": ips})
        );
    } else {
        println!(
            "train textunet ({params} params) @{}px batch {}: {:.3} s/step, {:.1} images/s",
            b.size, b.batch, med, ips
        );
    }
    Ok(())
}
