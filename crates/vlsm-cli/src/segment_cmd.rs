//! `vlsm segment`: masks and overlays for images × prompts.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use clap::Args;
use image::{DynamicImage, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use vlsm::io;
use vlsm::pipeline::{self, Segmenter};

use crate::segment_series::{read_series, segment_series, series_stem, OutputFormat};
use crate::segment_volume::{segment_volume, volume_outputs, VolumeOpts};

#[derive(Args, Debug)]
#[command(after_long_help = SEGMENT_HELP)]
pub struct SegmentArgs {
    /// Images, volumes or folders to segment: PNG, JPEG, TIFF, BMP, DICOM (one image), NIfTI
    /// (.nii, .nii.gz: every slice of the volume). A folder is a batch run (see below).
    pub images: Vec<PathBuf>,
    /// A folder holding ONE DICOM series (searched recursively), segmented as one volume; repeat
    /// for several. Unlike a folder given as an image, it is not a batch run.
    #[arg(long = "series", value_name = "DIR")]
    pub series: Vec<PathBuf>,
    /// Output format of volumes: nifti (masks as .nii.gz), or dicom-seg (DICOM series only: one
    /// DICOM Segmentation `<folder>.seg.dcm`, one segment per prompt, labelled with it).
    #[arg(long, value_enum, default_value = "nifti")]
    pub format: OutputFormat,
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
    /// Model directory (Hugging Face CLIPSeg layout, or one written by `vlsm train`), or a
    /// Hugging Face Hub id `org/name[@revision]` (from the HF cache, downloaded when missing
    /// unless HF_HUB_OFFLINE=1); default: the built-in model.
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
    /// Images (or volume slices) per batch through the image encoder.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Intensity window for single-channel data (CT in HU, MR, 16-bit): a preset `soft`
    /// (W400/L40), `lung` (W1500/L-600), `bone` (W1800/L400), `brain` (W80/L40); `W,L` (width,
    /// level); `auto` (the DICOM window when the file has one, else percentiles 0.5-99.5 of the
    /// image, or of the whole volume); `minmax`; `pLOW,HIGH` (percentiles).
    #[arg(long, default_value = "auto", allow_hyphen_values = true)]
    pub window: String,
    /// Volumes: the voxel axis slices are cut along (0, 1 or 2; default the last, 2).
    #[arg(long)]
    pub axis: Option<usize>,
    /// Volumes: also write the probabilities as `<stem>.probs.nii.gz` (float32).
    #[arg(long)]
    pub probs: bool,
    /// Volumes larger than this many voxels (of one 3-D volume) are refused from the header.
    #[arg(long, default_value_t = io::DEFAULT_MAX_VOXELS)]
    pub max_voxels: u64,
    /// Folders: walk sub-folders too (the tree is mirrored under --out).
    #[arg(long)]
    pub recursive: bool,
    /// A JSON list of per-image prompts, `[{"image": "a.nii.gz", "prompts": ["liver"]}]`
    /// (relative images: from the jobs file's folder; no "prompts": the --prompt list).
    #[arg(long)]
    pub jobs: Option<PathBuf>,
    /// Batch runs: take every N-th input from the I-th (0 <= I < N), for job arrays.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Print one JSON record per image and prompt on stdout: image, prompt, mask (its path),
    /// area (mask pixels), presence (in [0, 1]) and present.
    #[arg(long)]
    pub json: bool,
    /// Test-time augmentation: none, or flip (the mean over four flips, each prompt's position
    /// words flipped too; four times the model's work). Text prompts only.
    #[arg(long, default_value = "none")]
    pub tta: pipeline::Tta,
    /// Mask post-processing: a comma-separated list of lcc (keep the largest connected
    /// component) and fill (fill holes), or none.
    #[arg(long, default_value = "none")]
    pub post: pipeline::PostProcess,
}

const SEGMENT_HELP: &str = "\
Outputs, in --out:
  2-D images: <stem>.mask.png (0/255) and <stem>.overlay.png; with several prompts
    <stem>.<k>.mask.png for prompt k (0, 1, ...).
  NIfTI volumes: <stem>.mask.nii.gz (uint8 0/1 in the source's dimensions, affine, sform/qform
    codes and pixdim) and with --probs <stem>.probs.nii.gz (float32); with several prompts
    <stem>.<prompt-slug>.mask.nii.gz, the slug being the prompt in lowercase letters, digits
    and '-' (\"Liver tumour\" -> liver-tumour). A 4-D file gives the masks of its first volume.
  DICOM series (--series DIR, one series per folder): named after the folder, <dir>.mask.nii.gz
    as for NIfTI volumes (sform = the series' patient coordinates in RAS, pixdim = its
    spacing); with --format dicom-seg one <dir>.seg.dcm instead, a binary DICOM SEG with one
    segment per prompt (label = the prompt) referencing the series' instances and Frame of
    Reference. --window auto uses the series' Window Center/Width when it has one.
Batch runs (a folder as input, or --jobs): the input tree is mirrored under --out; inputs whose
  outputs all exist are skipped, so a killed run resumes; a bad file is recorded and the run goes
  on; --out/summary.json (summary.I-of-N.json with --shard) lists done, skipped and failed
  inputs with the reason; the exit code is non-zero when any failed. A folder whose own files
  are two or more DICOM images of one Series Instance UID (any file names) is one input, the
  series, written as for --series (<folder>.mask.nii.gz, or <folder>.seg.dcm with --format
  dicom-seg); a --jobs entry may name such a folder.";

/// One conditioning: the suffix its output files get (".k" for images, ".<slug>" for volumes,
/// when there are several prompts).
pub(crate) struct Condition {
    pub name: String,
    pub volume_name: String,
    /// The text prompt (none for an image prompt alone).
    pub prompt: Option<String>,
}

/// The condition tensor and names for `prompts` (each mixed with the image prompt when there is
/// one), or for the image prompt alone when `prompts` is empty.
fn conditions(
    seg: &Segmenter,
    prompts: &[String],
    image_cond: Option<&candle_core::Tensor>,
    mix: f64,
) -> Result<(candle_core::Tensor, Vec<Condition>)> {
    if prompts.is_empty() {
        let c = image_cond.cloned().ok_or_else(|| anyhow::anyhow!("no prompt"))?;
        return Ok((c, condition_names(prompts)));
    }
    let text = seg.text_conditionals(prompts)?;
    let cond = match image_cond {
        Some(ic) => pipeline::mix_conditionals(&text, ic, mix)?,
        None => text,
    };
    Ok((cond, condition_names(prompts)))
}

/// The output names of `prompts` (one nameless condition for an image prompt alone).
fn condition_names(prompts: &[String]) -> Vec<Condition> {
    if prompts.is_empty() {
        return vec![Condition { name: String::new(), volume_name: String::new(), prompt: None }];
    }
    let many = prompts.len() > 1;
    crate::segment_volume::slugs(prompts)
        .into_iter()
        .zip(prompts)
        .enumerate()
        .map(|(i, (sl, p))| Condition {
            name: if many { format!(".{i}") } else { String::new() },
            volume_name: if many { format!(".{sl}") } else { String::new() },
            prompt: Some(p.clone()),
        })
        .collect()
}

pub fn run(mut a: SegmentArgs) -> Result<()> {
    if a.images.is_empty() && a.jobs.is_none() && a.series.is_empty() {
        bail!("no images given");
    }
    if a.format == OutputFormat::DicomSeg {
        // Folders and --jobs may hold series (a batch run refuses dicom-seg per input that is not one).
        if let Some(p) = a.images.iter().find(|p| !p.is_dir()) {
            bail!("{}: --format dicom-seg is for a DICOM series (--series DIR, or series folders in a batch run), not for an image or a NIfTI volume", p.display());
        }
        if a.probs {
            bail!("--probs writes NIfTI; it cannot go with --format dicom-seg");
        }
    }
    if a.jobs.is_some() && !a.images.is_empty() {
        bail!("give either --jobs FILE or images, not both");
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
    if let Some(ax) = a.axis {
        if ax > 2 {
            bail!("--axis must be 0, 1 or 2 (a voxel axis), got {ax}");
        }
    }
    if a.tta != pipeline::Tta::None && a.prompt_image.is_some() {
        bail!("--tta flip: text prompts only (no --prompt-image)");
    }
    let windowing = io::parse_window(&a.window)?;
    let shard = a.shard.as_deref().map(crate::segment_batch::parse_shard).transpose()?;
    // Folders, --jobs and --shard make a batch run: items are checked as they come.
    let batch_run = a.jobs.is_some() || shard.is_some() || a.images.iter().any(|p| p.is_dir());
    if batch_run && !a.series.is_empty() {
        bail!("--series DIR segments one DICOM series; it does not go with a batch run (a folder as input, --jobs or --shard)");
    }
    let items = if batch_run {
        if a.logits.is_some() {
            bail!("--logits needs exactly one image and one prompt, not a batch run");
        }
        let items = crate::segment_batch::collect(&a.images, a.jobs.as_deref(), a.recursive, &a.out, output_stem)?;
        if items.is_empty() {
            let given: Vec<String> = match &a.jobs {
                Some(j) => vec![j.display().to_string()],
                None => a.images.iter().map(|p| p.display().to_string()).collect(),
            };
            let what = if a.jobs.is_none() && a.images.iter().all(|p| p.is_dir()) {
                "is a directory with no images in it"
            } else {
                "no images found"
            };
            bail!(
                "{}: {what} (PNG, JPEG, TIFF, BMP, DICOM, NIfTI){}",
                given.join(", "),
                if a.recursive { "" } else { "; --recursive walks sub-folders" }
            );
        }
        items
    } else {
        for p in &a.images {
            check_image_header(p, a.max_voxels)?;
        }
        Vec::new()
    };
    // Every series is read (and refused) before any model work or output.
    let mut series = Vec::new();
    for d in &a.series {
        if a.tta != pipeline::Tta::None || !a.post.is_none() || a.json || a.logits.is_some() {
            bail!("{}: --tta, --post, --json and --logits are for 2-D images, not volumes", d.display());
        }
        series.push(read_series(d, a.max_voxels)?);
    }
    let model_dir = match &a.model {
        Some(m) => vlsm::hub::resolve(m)?,
        None => pipeline::default_model_dir()?,
    };
    let seg = Segmenter::load(&model_dir)?;
    let every_job_has_prompts = !items.is_empty() && items.iter().all(|it| it.prompts.is_some());
    if a.prompts.is_empty() && a.prompt_image.is_none() && !every_job_has_prompts {
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
    let global = if a.prompts.is_empty() && image_cond.is_none() {
        None
    } else {
        Some(conditions(&seg, &a.prompts, image_cond.as_ref(), a.mix)?)
    };
    let threshold = a.threshold.unwrap_or(seg.default_threshold());
    let vopts = VolumeOpts {
        axis: a.axis,
        windowing,
        batch: a.batch,
        threshold,
        probs: a.probs,
        max_voxels: a.max_voxels,
        invert: false,
    };
    if batch_run {
        return run_batch(&a, &seg, items, shard, global, image_cond.as_ref(), &vopts);
    }
    let (cond, conds) = global.expect("prompts checked above");
    if a.logits.is_some() && (a.images.len() != 1 || conds.len() != 1) {
        bail!("--logits needs exactly one image and one prompt");
    }
    check_unique_stems(&a.images, &a.series)?;
    if let Some(npy) = &a.logits {
        check_logits_path(npy)?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create output directory", a.out.display()))?;
    clean_stale_temp_files(&a.out);

    let (volumes, images): (Vec<PathBuf>, Vec<PathBuf>) =
        a.images.iter().cloned().partition(|p| matches!(io::file_kind(p), Ok(io::FileKind::Nifti)));
    if a.logits.is_some() && !volumes.is_empty() {
        bail!("--logits is for a 2-D image, not a volume");
    }
    if let Some(v) = volumes.first() {
        check_volume_options(&a, v)?;
    }
    let opts = io::ReadOptions { windowing, slice: None };
    let bar = progress(images.len() as u64, "images");
    // Decode and preprocess the next batch while the model runs on this one.
    let (tx, rx) = mpsc::sync_channel::<Result<(Vec<(PathBuf, RgbImage)>, candle_core::Tensor)>>(1);
    let batches: Vec<Vec<PathBuf>> = images.chunks(a.batch).map(|c| c.to_vec()).collect();
    std::thread::scope(|s| -> Result<()> {
        let seg_ref = &seg;
        s.spawn(move || {
            for batch in batches {
                let item = (|| {
                    let imgs: Vec<(PathBuf, RgbImage)> =
                        batch.iter().map(|p| Ok((p.clone(), io::read_image_any(p, &opts)?))).collect::<Result<_>>()?;
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
            // Under --tta the image is encoded per flip inside `segment_image`.
            let feats = if a.tta == pipeline::Tta::None { seg.encode_images(&pv)? } else { Vec::new() };
            for (j, (path, img)) in imgs.iter().enumerate() {
                // A bounded number of prompts at a time, written as they come: the decoder's
                // activations grow with the prompts it runs at once.
                for (b, chunk) in conds.chunks(PROMPT_BATCH).enumerate() {
                    let (logits, presence) = match feats.get(j) {
                        Some(f) => {
                            let part = cond.narrow(0, b * PROMPT_BATCH, chunk.len())?;
                            seg.decode_with_presence(f, &part, threshold)? // [n, h, w]
                        }
                        None => {
                            let texts: Vec<String> =
                                chunk.iter().map(|c| c.prompt.clone().unwrap_or_default()).collect();
                            seg.segment_image(img, &texts, threshold, a.tta)?
                        }
                    };
                    for (k, c) in chunk.iter().enumerate() {
                        let l = logits.get(k)?;
                        // Logits first: a failure there leaves no masks behind.
                        if let Some(npy) = &a.logits {
                            let (h, w) = l.dims2()?;
                            io::write_npy_f32(npy, &[h, w], &l.flatten_all()?.to_vec1::<f32>()?)?;
                        }
                        let (mask, area) = write_outputs(
                            &a.out.join(output_stem(path)),
                            img,
                            &l,
                            c,
                            threshold,
                            presence[k].present,
                            &a.post,
                        )?;
                        if a.json {
                            let rec = serde_json::json!({
                                "image": path.display().to_string(),
                                "prompt": c.prompt,
                                "mask": mask.display().to_string(),
                                "area": area,
                                "presence": presence[k].presence,
                                "present": presence[k].present,
                            });
                            println!("{rec}");
                        }
                    }
                }
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    for v in &volumes {
        segment_volume(&seg, v, &a.out.join(output_stem(v)), &cond, &conds, &vopts)?;
    }
    for (d, s) in a.series.iter().zip(series) {
        segment_series(&seg, d, s, &a.out.join(series_stem(d)), &cond, &conds, &vopts, a.format)?;
    }
    let series_note = if a.series.is_empty() { String::new() } else { format!(" and {} series", a.series.len()) };
    eprintln!("wrote {} image(s){series_note} x {} prompt(s) to {}", a.images.len(), conds.len(), a.out.display());
    Ok(())
}

/// A batch run: each item with its own prompts (--jobs) or the global ones.
fn run_batch(
    a: &SegmentArgs,
    seg: &Segmenter,
    items: Vec<crate::segment_batch::Item>,
    shard: Option<(usize, usize)>,
    global: Option<(candle_core::Tensor, Vec<Condition>)>,
    image_cond: Option<&candle_core::Tensor>,
    vopts: &VolumeOpts,
) -> Result<()> {
    use io::FileKind;
    // Condition names only depend on the prompts; tensors are made when an item needs them.
    let names = |it: &crate::segment_batch::Item| condition_names(it.prompts.as_deref().unwrap_or(&a.prompts));
    let outputs = |it: &crate::segment_batch::Item, kind: FileKind| -> Vec<PathBuf> {
        let conds = names(it);
        match kind {
            _ if it.series && a.format == OutputFormat::DicomSeg => vec![with_suffix(&it.base, ".seg.dcm")],
            _ if a.format == OutputFormat::DicomSeg => Vec::new(),
            _ if it.series => volume_outputs(&it.base, &conds, vopts.probs),
            FileKind::Nifti => volume_outputs(&it.base, &conds, vopts.probs),
            _ => conds
                .iter()
                .flat_map(|c| {
                    let b = with_suffix(&it.base, &c.name);
                    [with_suffix(&b, ".mask.png"), with_suffix(&b, ".overlay.png")]
                })
                .collect(),
        }
    };
    let opts = io::ReadOptions { windowing: vopts.windowing, slice: None };
    let process = |it: &crate::segment_batch::Item, kind: FileKind| -> Result<()> {
        let own;
        let (cond, conds) = match (&it.prompts, &global) {
            (Some(p), _) => {
                own = conditions(seg, p, image_cond, a.mix)?;
                (&own.0, &own.1)
            }
            (None, Some(g)) => (&g.0, &g.1),
            (None, None) => bail!("no prompts for this image (give --prompt or \"prompts\" in the jobs file)"),
        };
        match kind {
            _ if it.series => check_volume_options(a, &it.input)
                .and_then(|()| read_series(&it.input, vopts.max_voxels))
                .and_then(|s| segment_series(seg, &it.input, s, &it.base, cond, conds, vopts, a.format).map(|_| ())),
            _ if a.format == OutputFormat::DicomSeg => {
                bail!("--format dicom-seg is for DICOM series folders; this is not one")
            }
            FileKind::Nifti => check_volume_options(a, &it.input)
                .and_then(|()| segment_volume(seg, &it.input, &it.base, cond, conds, vopts).map(|_| ())),
            _ => {
                let img = io::read_image_any(&it.input, &opts)?;
                let pv = seg.pixel_values(&[&img])?;
                let f = seg.encode_images(&pv)?.remove(0);
                for (b, chunk) in conds.chunks(PROMPT_BATCH).enumerate() {
                    let (logits, presence) = if a.tta == pipeline::Tta::None {
                        seg.decode_with_presence(&f, &cond.narrow(0, b * PROMPT_BATCH, chunk.len())?, vopts.threshold)?
                    } else {
                        let texts: Vec<String> = chunk.iter().map(|c| c.prompt.clone().unwrap_or_default()).collect();
                        seg.segment_image(&img, &texts, vopts.threshold, a.tta)?
                    };
                    for (k, c) in chunk.iter().enumerate() {
                        let l = logits.get(k)?;
                        write_outputs(&it.base, &img, &l, c, vopts.threshold, presence[k].present, &a.post)?;
                    }
                }
                Ok(())
            }
        }
        .map_err(|e| {
            let msg = crate::segment_batch::one_line(&e);
            let name = it.input.display().to_string();
            if msg.contains(&name) {
                e
            } else {
                anyhow::anyhow!("{name}: {msg}")
            }
        })
    };
    crate::segment_batch::run(items, shard, &a.out, outputs, process)
}

/// --tta, --post and --json are per 2-D image; a volume refuses them rather than ignore them.
fn check_volume_options(a: &SegmentArgs, volume: &Path) -> Result<()> {
    if a.tta != pipeline::Tta::None || !a.post.is_none() || a.json {
        bail!("{}: --tta, --post and --json are for 2-D images, not volumes", volume.display());
    }
    Ok(())
}

pub(crate) use pipeline::PROMPT_BATCH;

/// Writes the mask (empty when the target is not `present`) and overlay; returns the mask's
/// path and its area in pixels.
fn write_outputs(
    base: &Path,
    img: &RgbImage,
    logits: &candle_core::Tensor,
    c: &Condition,
    threshold: f32,
    present: bool,
    post: &pipeline::PostProcess,
) -> Result<(PathBuf, u64)> {
    let (w, h) = img.dimensions();
    let (_, mut mask) = pipeline::probabilities_and_mask(logits, w, h, threshold, present)?;
    post.apply(&mut mask);
    let area = mask.as_raw().iter().filter(|&&v| v > 0).count() as u64;
    let base = with_suffix(base, &c.name);
    let mask_path = with_suffix(&base, ".mask.png");
    io::write_png_atomic(&mask_path, &DynamicImage::ImageLuma8(mask.clone()))?;
    let ov = pipeline::overlay(img, &mask);
    io::write_png_atomic(&with_suffix(&base, ".overlay.png"), &DynamicImage::ImageRgb8(ov))?;
    Ok((mask_path, area))
}

pub(crate) fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The stem output files are named after: the input's file stem, without `.nii` for a
/// `.nii.gz` (bytes that are not UTF-8 become U+FFFD), or "image" when it has none.
fn output_stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".nii.gz") && name.len() > 7 {
        return name[..name.len() - 7].to_string();
    }
    match path.file_stem() {
        Some(s) if !s.is_empty() => s.to_string_lossy().into_owned(),
        _ => "image".to_string(),
    }
}

/// Outputs are named by stem, so two inputs with one output stem would overwrite each other;
/// the check is on the names as they will be written (after the non-UTF-8 replacement).
fn check_unique_stems(images: &[PathBuf], series: &[PathBuf]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    let named = images.iter().map(|p| (p, output_stem(p))).chain(series.iter().map(|d| (d, series_stem(d))));
    for (p, stem) in named {
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
pub(crate) fn clean_stale_temp_files(dir: &Path) {
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

/// Fail before any model work on a missing file or one that is not an image (NIfTI: the
/// header and the voxel limit; DICOM: decoded).
fn check_image_header(p: &Path, max_voxels: u64) -> Result<()> {
    crate::imgproc_cmd::check_input_file(p)?;
    match io::file_kind(p)? {
        io::FileKind::Nifti => {
            let [nx, ny, nz] = io::volume_dimensions(p)?;
            let n = nx as u128 * ny as u128 * nz as u128;
            if n > max_voxels as u128 {
                bail!(
                    "{}: volume is {nx}x{ny}x{nz} = {n} voxels, more than the limit of {max_voxels} (--max-voxels)",
                    p.display()
                );
            }
            return Ok(());
        }
        io::FileKind::Dicom => return io::image_dimensions(p).map(|_| ()),
        io::FileKind::Raster => {}
    }
    // The header as every command reads it (JPEG through libjpeg-turbo, so arithmetic-coded files
    // pass): unknown formats, zero sizes and the pixel limit every command shares.
    vlsm::io::image_dimensions(p)?;
    Ok(())
}

pub fn progress(n: u64, unit: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
