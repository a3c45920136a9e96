//! `vlsm segment`: masks and overlays for images × prompts.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use clap::Args;
use image::{DynamicImage, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use vlsm::io;
use vlsm::pipeline::{self, Segmenter};

#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Images to segment (PNG, JPEG, TIFF, BMP).
    pub images: Vec<PathBuf>,
    /// A text prompt; repeat for several. The empty prompt "" is valid.
    #[arg(long = "prompt", short = 'p')]
    pub prompts: Vec<String>,
    /// An example image whose masked object is the prompt.
    #[arg(long)]
    pub prompt_image: Option<PathBuf>,
    /// The mask of the object in --prompt-image.
    #[arg(long, requires = "prompt_image")]
    pub prompt_mask: Option<PathBuf>,
    /// With text and image prompts: 0 = text only, 1 = image only.
    #[arg(long, default_value_t = 0.5)]
    pub mix: f64,
    /// Model directory (Hugging Face CLIPSeg layout, or one written by `vlsm train`);
    /// default: the built-in model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Probability threshold for the mask (default: the model's, 0.5 for CLIPSeg).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Write the raw logits at model resolution as float32 .npy [H, W] (one image, one prompt).
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Images per batch through the image encoder.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
}

/// One conditioning: the suffix its output files get (".k" when there are several prompts).
struct Condition {
    name: String,
}

pub fn run(mut a: SegmentArgs) -> Result<()> {
    if a.images.is_empty() {
        bail!("no images given");
    }
    if a.prompt_image.is_some() && a.prompt_mask.is_none() {
        bail!("--prompt-image needs --prompt-mask");
    }
    if let Some(t) = a.threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--threshold must be in 0..1, got {t}");
        }
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    for p in &a.images {
        check_image_header(p)?;
    }
    let model_dir = match &a.model {
        Some(m) => m.clone(),
        None => pipeline::default_model_dir()?,
    };
    let seg = Segmenter::load(&model_dir)?;
    if a.prompts.is_empty() && a.prompt_image.is_none() {
        if seg.uses_text() {
            bail!("give at least one --prompt TEXT or --prompt-image IMG --prompt-mask MASK");
        }
        // A text-free model needs no prompt; one placeholder gives its one mask per image.
        a.prompts.push(String::new());
    }
    // Conditions: every text prompt (mixed with the image prompt when both are given), or the
    // image prompt alone.
    let image_cond = match (&a.prompt_image, &a.prompt_mask) {
        (Some(img), Some(mask)) => {
            let im = io::read_rgb(img)?;
            let m = io::read_mask(mask)?;
            if im.dimensions() != m.dimensions() {
                bail!(
                    "{}: mask is {}x{} but {} is {}x{}",
                    mask.display(),
                    m.width(),
                    m.height(),
                    img.display(),
                    im.width(),
                    im.height()
                );
            }
            if m.pixels().all(|p| p[0] == 0) {
                bail!("{}: the prompt mask is empty", mask.display());
            }
            Some(seg.image_conditional(&im, &m).with_context(|| format!("{}", img.display()))?)
        }
        _ => None,
    };
    let (cond, conds) = if a.prompts.is_empty() {
        let c = image_cond.clone().expect("checked above");
        (c, vec![Condition { name: String::new() }])
    } else {
        let text = seg.text_conditionals(&a.prompts)?;
        let cond = match &image_cond {
            Some(ic) => pipeline::mix_conditionals(&text, ic, a.mix)?,
            None => text,
        };
        let many = a.prompts.len() > 1;
        let conds = a
            .prompts
            .iter()
            .enumerate()
            .map(|(i, _)| Condition { name: if many { format!(".{i}") } else { String::new() } })
            .collect();
        (cond, conds)
    };
    if a.logits.is_some() && (a.images.len() != 1 || conds.len() != 1) {
        bail!("--logits needs exactly one image and one prompt");
    }
    check_unique_stems(&a.images)?;
    if let Some(npy) = &a.logits {
        check_logits_path(npy)?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create output directory", a.out.display()))?;
    clean_stale_temp_files(&a.out);

    let threshold = a.threshold.unwrap_or(seg.default_threshold());
    let bar = progress(a.images.len() as u64);
    // Decode and preprocess the next batch while the model runs on this one.
    let (tx, rx) = mpsc::sync_channel::<Result<(Vec<(PathBuf, RgbImage)>, candle_core::Tensor)>>(1);
    let batches: Vec<Vec<PathBuf>> = a.images.chunks(a.batch).map(|c| c.to_vec()).collect();
    std::thread::scope(|s| -> Result<()> {
        let seg_ref = &seg;
        s.spawn(move || {
            for batch in batches {
                let item = (|| {
                    let imgs: Vec<(PathBuf, RgbImage)> =
                        batch.iter().map(|p| Ok((p.clone(), io::read_rgb(p)?))).collect::<Result<_>>()?;
                    let refs: Vec<&RgbImage> = imgs.iter().map(|(_, i)| i).collect();
                    let pv = seg_ref.pixel_values(&refs)?;
                    Ok((imgs, pv))
                })();
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for item in rx {
            let (imgs, pv) = item?;
            let feats = seg.encode_images(&pv)?;
            for ((path, img), f) in imgs.iter().zip(&feats) {
                // A bounded number of prompts at a time, written as they come.
                seg.decode_each(f, &cond, |k, l| {
                    // Logits first: a failure there leaves no masks behind.
                    if let Some(npy) = &a.logits {
                        let (h, w) = l.dims2()?;
                        io::write_npy_f32(npy, &[h, w], &l.flatten_all()?.to_vec1::<f32>()?)?;
                    }
                    write_outputs(&a, path, img, l, &conds[k], threshold)
                })?;
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    eprintln!("wrote {} image(s) x {} prompt(s) to {}", a.images.len(), conds.len(), a.out.display());
    Ok(())
}

fn write_outputs(
    a: &SegmentArgs,
    path: &Path,
    img: &RgbImage,
    logits: &candle_core::Tensor,
    c: &Condition,
    threshold: f32,
) -> Result<()> {
    let (w, h) = img.dimensions();
    let (_, mask) = pipeline::probabilities_and_mask(logits, w, h, threshold)?;
    let base = a.out.join(format!("{}{}", output_stem(path), c.name));
    io::write_png_atomic(&with_suffix(&base, ".mask.png"), &DynamicImage::ImageLuma8(mask.clone()))?;
    let ov = pipeline::overlay(img, &mask);
    io::write_png_atomic(&with_suffix(&base, ".overlay.png"), &DynamicImage::ImageRgb8(ov))?;
    Ok(())
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The stem output files are named after: the input's file stem (bytes that are not UTF-8
/// become U+FFFD), or "image" when it has none.
fn output_stem(path: &Path) -> String {
    match path.file_stem() {
        Some(s) if !s.is_empty() => s.to_string_lossy().into_owned(),
        _ => "image".to_string(),
    }
}

/// Outputs are named by stem, so two inputs with one output stem would overwrite each other;
/// the check is on the names as they will be written (after the non-UTF-8 replacement).
fn check_unique_stems(images: &[PathBuf]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for p in images {
        let stem = output_stem(p);
        if let Some(prev) = seen.insert(stem.clone(), p) {
            bail!(
                "{} and {} would both be written as {stem}.mask.png, so their outputs would collide; rename one",
                prev.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// A `--logits` path that cannot be written fails before any mask is: not a directory, and its
/// folder exists (or can be made) and takes a file.
fn check_logits_path(path: &Path) -> Result<()> {
    let p = path.display();
    if path.is_dir() {
        bail!("--logits {p}: is a directory; give a file name (.npy)");
    }
    let name = path.file_name().ok_or_else(|| anyhow::anyhow!("--logits {p}: not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("--logits {p}: cannot create directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".{}.probe.{}", name.to_string_lossy(), std::process::id()));
    std::fs::File::create(&probe).map_err(|e| anyhow::anyhow!("--logits {p}: cannot write: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Removes `.NAME.tmp.PID.N` files (left by `io::write_atomic` in a killed run) whose process
/// is gone. Linux only (where a live PID shows in /proc); elsewhere such files stay.
fn clean_stale_temp_files(dir: &Path) {
    if !cfg!(target_os = "linux") || !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = stale_temp_pid(name) {
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() && e.path().is_file() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The PID in a `.NAME.tmp.PID.N` name.
fn stale_temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let mut parts = rest.rsplitn(3, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let head = parts.next()?;
    if !head.ends_with(".tmp") || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Fail before any model work on a missing file or one that is not an image.
fn check_image_header(p: &Path) -> Result<()> {
    crate::imgproc_cmd::check_input_file(p)?;
    let r = image::ImageReader::open(p).map_err(|e| anyhow::anyhow!("{}: cannot open: {e}", p.display()))?;
    let r = r.with_guessed_format().map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", p.display()))?;
    if r.format().is_none() {
        bail!("{}: not a PNG, JPEG, TIFF or BMP image", p.display());
    }
    let (w, h) = r.into_dimensions().map_err(|e| anyhow::anyhow!("{}: unreadable image: {e}", p.display()))?;
    if w == 0 || h == 0 {
        bail!("{}: image has zero size ({w}x{h})", p.display());
    }
    // The limit every command shares (also checked again when decoding).
    vlsm::io::image_dimensions(p)?;
    Ok(())
}

pub fn progress(n: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
