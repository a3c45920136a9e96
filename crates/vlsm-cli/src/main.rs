//! `vlsm`: language-guided medical image segmentation from the command line.

mod bench_cmd;
mod classify_cmd;
mod eval_cmd;
mod imgproc_cmd;
mod prompts_cmd;
mod segment_batch;
mod segment_cmd;
mod segment_series;
mod segment_volume;
mod serve_cmd;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vlsm", version, about = "Language-guided medical image segmentation (CLIPSeg and friends)")]
struct Cli {
    /// Worker threads for the model and image ops (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment images with text and/or image prompts.
    Segment(segment_cmd::SegmentArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
    /// Train a model (CLIPSeg decoder or the built-in TextUNet) from a TOML config.
    Train(train_cmd::TrainArgs),
    /// Evaluate a model on dataset splits: metrics, masks and an HTML report.
    Eval(eval_cmd::EvalArgs),
    /// Write anns/{train,val,test}.json with prompts p0-p9 for a dataset.
    Prompts(prompts_cmd::PromptsArgs),
    /// Classical image processing with OpenCV semantics.
    Imgproc(imgproc_cmd::ImgprocArgs),
    /// Top-k labels of an image from a ViT or Swin classifier.
    Classify(classify_cmd::ClassifyArgs),
    /// Serve the HTTP API and web page for interactive segmentation.
    Serve(serve_cmd::ServeArgs),
}

/// Tensors of tens of MB are allocated and freed on every op. By default glibc gives each back
/// to the kernel and the next one faults its pages in again (zeroed): 15–25% of a training step
/// here. Keep freed memory in the heap instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        // The same cap as `threads` in training configs.
        let n = vlsm::threads::cap(n, "--threads");
        // candle and rayon both read this on first use; nothing has started threads yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = match cli.command {
        Command::Segment(a) => segment_cmd::run(a),
        Command::Bench(b) => bench_cmd::run(b),
        Command::Train(a) => train_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Prompts(a) => prompts_cmd::run(a),
        Command::Imgproc(a) => imgproc_cmd::run(a),
        Command::Classify(a) => classify_cmd::run(a),
        Command::Serve(a) => serve_cmd::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context and the root cause.
            let mut msg = e.to_string();
            let root = e.root_cause().to_string();
            if root != msg && !msg.contains(&root) {
                msg = format!("{msg}: {root}");
            }
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
