//! `vlsm eval`: a model over the test split of medvlsm-layout datasets, per prompt key.
//!
//! Per image and prompt: Dice, IoU and HD95 at the original mask resolution (logits resized
//! bilinearly, then thresholded: the rule `vlsm segment` uses) and Dice, IoU at model
//! resolution (the logits' own size, against the mask resized with PIL nearest, as medvlsm's
//! in-training metrics). Dice/IoU follow MONAI `ignore_empty=False`; means
//! are over images; HD95 skips images where it is undefined and counts them.
//!
//! A list prompt is drawn per image from one RNG seeded with `seed`, so runs repeat exactly.
//!
//! Volume datasets (`images/` and `masks/` holding 3-D NIfTI volumes, same anns): each volume is
//! segmented slice by slice along its last voxel axis as `vlsm segment` does (one window per
//! volume, no presence gating), the predicted mask written as `masks/.../<mask stem>.nii.gz` in
//! the volume's geometry, and scored per volume: 3-D Dice and IoU, HD95 in millimetres with the
//! voxel spacing (|pixdim|, as MONAI `compute_hausdorff_distance(spacing=...)`), Dice and IoU at
//! model resolution (counts pooled over the slices, each slice's target resized with PIL
//! nearest), and the mean per-slice Dice over all slices, where a slice whose target and
//! prediction are both empty scores 1 (MONAI `ignore_empty=False`, the rule of the 2-D Dice).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::{self, Pool};
use crate::metrics;
use crate::pipeline::{self, Segmenter};
use crate::preprocess::{pil_resize_gray, Filter};

#[path = "report.rs"]
pub mod report;

/// The model's own threshold (0.5 for CLIPSeg, 0.35 for CRIS).
pub fn default_threshold(seg: &Segmenter) -> f32 {
    seg.default_threshold()
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// How the model is named in the outputs (its directory).
    pub model: String,
    pub data: Vec<PathBuf>,
    pub split: String,
    /// Prompt keys (p0, p1, ...); `None` = every key that all records of a dataset have.
    pub prompts: Option<Vec<String>>,
    pub out: PathBuf,
    pub threshold: f32,
    pub seed: u64,
    /// Images per encoder batch.
    pub batch: usize,
    pub progress: bool,
    /// Worst cases shown in the report.
    pub worst: usize,
    /// Test-time augmentation.
    pub tta: pipeline::Tta,
    /// Post-processing of the masks at the original size (before scoring).
    pub post: pipeline::PostProcess,
    /// Also score each dataset under altered prompts (see [`Ablation`]).
    pub ablation: bool,
}

/// Does the text matter? Mean Dice (original size) of one dataset under the first prompt key
/// evaluated, with the prompt as it is (`own`), the empty prompt, the same key's prompt of a
/// record of another dataset of the pool (`other`: the next one sharing no prompt string with
/// this one, else the next one; none with one dataset; named in `other_dataset`) and the prompt's words
/// shuffled (`shuffled`, seeded). `present_*`: the share of images where the model says the
/// target is present under each.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ablation {
    pub prompt_key: String,
    pub n: usize,
    pub own: f64,
    pub empty: f64,
    pub other: Option<f64>,
    pub other_dataset: Option<String>,
    pub shuffled: f64,
    pub present_own: f64,
    pub present_empty: f64,
    pub present_other: Option<f64>,
    pub present_shuffled: f64,
}

/// Scores of one image under one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub dataset: String,
    pub image: String,
    pub mask_name: String,
    pub prompt_key: String,
    pub prompt: String,
    pub dice: f64,
    pub iou: f64,
    pub hd95: Option<f64>,
    pub dice_model_res: f64,
    pub iou_model_res: f64,
    /// Whether the model says the target is in the image (see `pipeline::Presence`); an
    /// absent target's predicted mask is empty.
    pub presence: f32,
    pub present: bool,
    /// Where its predicted mask was written, relative to the output directory.
    pub mask_file: String,
    /// Volumes: the mean per-slice Dice (empty target and prediction score 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice_dice: Option<f64>,
    /// Volumes: the slice count along the evaluated axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slices: Option<usize>,
    /// Volumes: the slices with the most wrong voxels, most first (at most 3), for the report.
    #[serde(skip)]
    pub worst_slices: Vec<usize>,
    #[serde(skip)]
    pub image_path: PathBuf,
    #[serde(skip)]
    pub mask_path: PathBuf,
}

/// Means over a set of images.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub dice: f64,
    pub iou: f64,
    /// Mean over images where it is defined (`null` if none).
    pub hd95: Option<f64>,
    /// Images where HD95 is undefined (an empty prediction or target).
    pub hd95_undefined: usize,
    pub dice_model_res: f64,
    pub iou_model_res: f64,
    /// Share of images where the model says the target is present.
    pub present_rate: f64,
    /// Volumes: the mean over volumes of their mean per-slice Dice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice_dice: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptSummary {
    pub datasets: BTreeMap<String, Summary>,
    pub pooled: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub split: String,
    pub threshold: f32,
    /// Unit of every HD95: "px" for 2-D images, "mm" for volumes.
    pub hd95_unit: &'static str,
    /// Per prompt key, in numeric key order.
    pub prompts: BTreeMap<String, PromptSummary>,
    /// Per dataset, with `--ablation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ablation: Option<BTreeMap<String, Ablation>>,
    #[serde(skip)]
    pub results: Vec<ImageResult>,
    #[serde(skip)]
    pub key_order: Vec<String>,
}

pub fn summarize(rs: &[&ImageResult]) -> Summary {
    let n = rs.len().max(1) as f64;
    let (hd, undefined) = metrics::mean_defined(&rs.iter().map(|r| r.hd95).collect::<Vec<_>>());
    Summary {
        n: rs.len(),
        dice: rs.iter().map(|r| r.dice).sum::<f64>() / n,
        iou: rs.iter().map(|r| r.iou).sum::<f64>() / n,
        hd95: hd,
        hd95_undefined: undefined,
        dice_model_res: rs.iter().map(|r| r.dice_model_res).sum::<f64>() / n,
        iou_model_res: rs.iter().map(|r| r.iou_model_res).sum::<f64>() / n,
        present_rate: rs.iter().filter(|r| r.present).count() as f64 / n,
        slice_dice: metrics::mean_defined(&rs.iter().map(|r| r.slice_dice).collect::<Vec<_>>()).0,
    }
}

fn key_num(k: &str) -> (u64, String) {
    (k.trim_start_matches('p').parse().unwrap_or(u64::MAX), k.to_string())
}

/// The keys every record of the dataset has, numerically ordered.
fn common_keys(ds: &data::Dataset) -> Vec<String> {
    let mut keys: Vec<String> = match ds.records.first() {
        Some(r) => r.prompts.keys().cloned().collect(),
        None => return Vec::new(),
    };
    keys.retain(|k| ds.records.iter().all(|r| r.prompts.contains_key(k)));
    keys.sort_by_key(|k| key_num(k));
    keys
}

/// Predicted mask file name: the target's name (with `.`/`..` resolved, inside its folder),
/// as PNG.
fn mask_file_name(mask_name: &str) -> Result<String> {
    let name = data::safe_relative(mask_name)?.to_string_lossy().into_owned();
    Ok(plain_mask_file_name(&name))
}

/// A volume's predicted mask file name: the target's name with `.nii.gz` for its extension.
fn volume_mask_file_name(mask_name: &str) -> Result<String> {
    let name = data::safe_relative(mask_name)?.to_string_lossy().into_owned();
    let lower = name.to_lowercase();
    let stem = [".nii.gz", ".nii"]
        .iter()
        .find(|e| lower.ends_with(*e))
        .map(|e| name[..name.len() - e.len()].to_string())
        .unwrap_or_else(|| Path::new(&name).with_extension("").to_string_lossy().into_owned());
    Ok(format!("{stem}.nii.gz"))
}

/// Whether `ds` holds volumes: any record whose image is a NIfTI file with more than one slice
/// makes it a volume dataset, and then every image and mask must be NIfTI.
fn is_volume_dataset(ds: &data::Dataset) -> Result<bool> {
    use crate::io::FileKind;
    let mut first_volume = None;
    for r in &ds.records {
        if crate::io::file_kind(&r.image_path)? == FileKind::Nifti
            && crate::io::volume_dimensions(&r.image_path)?[2] > 1
        {
            first_volume = Some(r);
            break;
        }
    }
    let Some(v) = first_volume else { return Ok(false) };
    for r in &ds.records {
        if crate::io::file_kind(&r.image_path)? != FileKind::Nifti {
            bail!(
                "{}: a 2-D image in a dataset of volumes (such as {}); evaluate volumes and images as separate datasets",
                r.image_path.display(),
                v.image_path.display()
            );
        }
        if crate::io::file_kind(&r.mask_path)? != FileKind::Nifti {
            bail!(
                "{}: the mask of volume {} must be a NIfTI volume of the same shape",
                r.mask_path.display(),
                r.image_path.display()
            );
        }
    }
    Ok(true)
}

fn plain_mask_file_name(mask_name: &str) -> String {
    let p = Path::new(mask_name);
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => mask_name.to_string(),
        _ => p.with_extension("png").to_string_lossy().into_owned(),
    }
}

/// Runs the model over every record and prompt, writing predicted masks under `out/masks/`
/// (`masks/<dataset>/<mask>` for one prompt key, `masks/<key>/<dataset>/<mask>` for several).
pub fn evaluate(seg: &Segmenter, opts: &EvalOptions) -> Result<EvalReport> {
    if !(0.0..=1.0).contains(&opts.threshold) {
        bail!("--threshold must be in 0..1, got {}", opts.threshold);
    }
    let pool = Pool::open(&opts.data, &opts.split)?;
    for ds in &pool.datasets {
        if ds.is_empty() {
            bail!(
                "{}: the {} split has no records; nothing to evaluate",
                anns_path(ds, &opts.split).display(),
                opts.split
            );
        }
    }
    let volume_of: Vec<bool> = pool.datasets.iter().map(is_volume_dataset).collect::<Result<_>>()?;
    let volumes = volume_of.iter().any(|&v| v);
    if volumes {
        let vi = volume_of.iter().position(|&v| v).expect("a volume dataset");
        if let Some(ii) = volume_of.iter().position(|&v| !v) {
            bail!(
                "{}: a dataset of volumes cannot be pooled with {}, a dataset of 2-D images (HD95 is in mm for one, pixels for the other); evaluate them in separate runs",
                pool.datasets[vi].root.display(),
                pool.datasets[ii].root.display()
            );
        }
        let root = pool.datasets[vi].root.display();
        if opts.tta != pipeline::Tta::None || !opts.post.is_none() {
            bail!("{root}: --tta and --post are for 2-D images, not volumes");
        }
        if opts.ablation {
            bail!("{root}: --ablation is for 2-D images, not volumes");
        }
    }
    // Keys per dataset, checked before any model work.
    let mut keys_of: Vec<Vec<String>> = Vec::new();
    // A text-free model gives the same mask under every prompt: one pass, under the first
    // key asked for (or "none"), with no prompt looked up.
    let text_free_key = opts.prompts.as_ref().and_then(|k| k.first()).map_or("none", |k| k.as_str());
    for ds in &pool.datasets {
        let keys = match &opts.prompts {
            _ if !seg.uses_text() => vec![text_free_key.to_string()],
            Some(ks) => {
                for k in ks {
                    ds.require_prompt(k)?;
                }
                ks.clone()
            }
            None => common_keys(ds),
        };
        if keys.is_empty() && !ds.is_empty() {
            bail!("{} ({} split): its records share no prompt key", ds.name, opts.split);
        }
        keys_of.push(keys);
    }
    let mut key_order: Vec<String> = keys_of.iter().flatten().cloned().collect();
    key_order.sort_by_key(|k| key_num(k));
    key_order.dedup();
    let per_key_dirs = key_order.len() > 1;
    // Output names, checked before any model work: each stays under `out/masks/` and no two
    // records write the same file (which would overwrite one prediction with another).
    let mut names_of: Vec<Vec<String>> = Vec::new();
    for ((ds, keys), &is_vol) in pool.datasets.iter().zip(&keys_of).zip(&volume_of) {
        let anns = anns_path(ds, &opts.split);
        if per_key_dirs {
            for k in keys {
                plain_component(k).map_err(|e| anyhow!("{}: prompt key {k:?}: {e}", anns.display()))?;
            }
        }
        plain_component(&ds.name).map_err(|e| anyhow!("{}: dataset name {:?}: {e}", ds.root.display(), ds.name))?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::with_capacity(ds.len());
        for (i, rec) in ds.records.iter().enumerate() {
            let name = if is_vol { volume_mask_file_name(&rec.mask_name) } else { mask_file_name(&rec.mask_name) }
                .map_err(|e| anyhow!("{}: record {i} ({}): mask_name: {e}", anns.display(), rec.img_name))?;
            if let Some(j) = seen.insert(name.to_lowercase(), i) {
                bail!(
                    "{}: records {j} ({}) and {i} ({}) would both write their prediction to masks/{}/{name} (mask_name {:?} and {:?}); eval needs distinct mask names",
                    anns.display(),
                    ds.records[j].img_name,
                    rec.img_name,
                    ds.name,
                    ds.records[j].mask_name,
                    rec.mask_name
                );
            }
            names.push(name);
        }
        names_of.push(names);
    }
    // Predictions go to a staging folder inside `out` and are moved into place only when every
    // image has been scored, so a failed run leaves no masks behind.
    let staging = Staging::new(&opts.out)?;

    let total: usize = pool.datasets.iter().map(|d| d.len()).sum();
    let bar = progress_bar(total as u64, opts.progress);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut memo: HashMap<String, candle_core::Tensor> = HashMap::new();
    let mut results = Vec::new();
    for (((ds, keys), names), &is_vol) in pool.datasets.iter().zip(&keys_of).zip(&names_of).zip(&volume_of) {
        if is_vol {
            for (rec, name) in ds.records.iter().zip(names) {
                let (texts, cond) = record_conditions(seg, rec, keys, &mut rng, &mut memo)?;
                let (vol, scores) = score_volume(seg, opts, rec, &cond)?;
                for ((k, text), sc) in keys.iter().zip(&texts).zip(scores) {
                    let rel = if per_key_dirs {
                        format!("masks/{k}/{}/{name}", ds.name)
                    } else {
                        format!("masks/{}/{name}", ds.name)
                    };
                    staging.write_nifti(&rel, &vol.header, &sc.pred)?;
                    results.push(ImageResult {
                        dataset: ds.name.clone(),
                        image: rec.img_name.clone(),
                        mask_name: rec.mask_name.clone(),
                        prompt_key: k.clone(),
                        prompt: text.clone(),
                        dice: sc.scores.dice,
                        iou: sc.scores.iou,
                        hd95: sc.scores.hd95,
                        dice_model_res: sc.dice_model_res,
                        iou_model_res: sc.iou_model_res,
                        presence: sc.presence,
                        present: sc.present,
                        mask_file: rel,
                        slice_dice: Some(sc.scores.mean_slice_dice()),
                        slices: Some(sc.scores.slice_dice.len()),
                        worst_slices: sc.scores.worst_slices.clone(),
                        image_path: rec.image_path.clone(),
                        mask_path: rec.mask_path.clone(),
                    });
                }
                bar.inc(1);
            }
            continue;
        }
        for (ci, chunk) in ds.records.chunks(opts.batch.max(1)).enumerate() {
            let imgs: Vec<RgbImage> = chunk.par_iter().map(|r| read_image(&r.image_path)).collect::<Result<_>>()?;
            let refs: Vec<&RgbImage> = imgs.iter().collect();
            let feats = if opts.tta == pipeline::Tta::None {
                seg.encode_images(&seg.pixel_values(&refs)?)?
            } else {
                Vec::new()
            };
            for (ri, (rec, img)) in chunk.iter().zip(&imgs).enumerate() {
                let name = &names[ci * opts.batch.max(1) + ri];
                let (texts, cond) = record_conditions(seg, rec, keys, &mut rng, &mut memo)?;
                let (logits, presence) = match feats.get(ri) {
                    Some(f) => seg.decode_with_presence(f, &cond, opts.threshold)?,
                    None => seg.segment_image(img, &texts, opts.threshold, opts.tta)?,
                };
                let target = crate::io::read_mask(&rec.mask_path)?;
                let (w, h) = img.dimensions();
                if target.dimensions() != (w, h) {
                    let (tw, th) = target.dimensions();
                    bail!("{}: mask is {tw}x{th} but its image is {w}x{h}", rec.mask_path.display());
                }
                let (_, mh, mw) = logits.dims3()?;
                let target_model = pil_resize_gray(&target, mw as u32, mh as u32, Filter::Nearest);
                for (ki, (k, text)) in keys.iter().zip(&texts).enumerate() {
                    let l = logits.get(ki)?;
                    let probs = pipeline::probabilities_at(&l, w, h)?;
                    let mut pred = pipeline::threshold_mask(&probs, w, h, opts.threshold)?;
                    let present = presence[ki].present;
                    if !present {
                        pred.fill(0);
                    }
                    opts.post.apply(&mut pred);
                    let s = metrics::score_masks(&pred, &target)?;
                    let mut pm =
                        metrics::binarize(&pipeline::probabilities_at(&l, mw as u32, mh as u32)?, opts.threshold);
                    if !present {
                        pm.fill(0);
                    }
                    let c = metrics::counts(&pm, target_model.as_raw());
                    let rel = if per_key_dirs {
                        format!("masks/{k}/{}/{name}", ds.name)
                    } else {
                        format!("masks/{}/{name}", ds.name)
                    };
                    staging.write_png(&rel, &DynamicImage::ImageLuma8(pred))?;
                    results.push(ImageResult {
                        dataset: ds.name.clone(),
                        image: rec.img_name.clone(),
                        mask_name: rec.mask_name.clone(),
                        prompt_key: k.clone(),
                        prompt: text.clone(),
                        dice: s.dice,
                        iou: s.iou,
                        hd95: s.hd95,
                        dice_model_res: metrics::dice_from(c),
                        iou_model_res: metrics::iou_from(c),
                        presence: presence[ki].presence,
                        present,
                        mask_file: rel,
                        slice_dice: None,
                        slices: None,
                        worst_slices: Vec::new(),
                        image_path: rec.image_path.clone(),
                        mask_path: rec.mask_path.clone(),
                    });
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    staging.commit()?;

    let mut prompts = BTreeMap::new();
    for k in &key_order {
        let of_key: Vec<&ImageResult> = results.iter().filter(|r| &r.prompt_key == k).collect();
        let mut datasets = BTreeMap::new();
        for ds in &pool.datasets {
            let rs: Vec<&ImageResult> = of_key.iter().copied().filter(|r| r.dataset == ds.name).collect();
            if !rs.is_empty() {
                datasets.insert(ds.name.clone(), summarize(&rs));
            }
        }
        prompts.insert(k.clone(), PromptSummary { datasets, pooled: summarize(&of_key) });
    }
    let ablation = if opts.ablation && seg.uses_text() { Some(ablate(seg, opts, &pool, &keys_of)?) } else { None };
    Ok(EvalReport {
        model: opts.model.clone(),
        split: opts.split.clone(),
        threshold: opts.threshold,
        hd95_unit: if volumes { "mm" } else { "px" },
        prompts,
        ablation,
        results,
        key_order,
    })
}

/// The words of `text` in a seeded random order.
/// The prompt texts of `rec` under `keys` (drawn with `rng`, as `vlsm segment` would be given
/// them) and their text conditions, one row per key; `memo` encodes each distinct text once a run.
fn record_conditions(
    seg: &Segmenter,
    rec: &data::Record,
    keys: &[String],
    rng: &mut ChaCha8Rng,
    memo: &mut HashMap<String, candle_core::Tensor>,
) -> Result<(Vec<String>, candle_core::Tensor)> {
    let mut texts = Vec::with_capacity(keys.len());
    for k in keys {
        texts.push(if seg.uses_text() { data::prompt(rec, k, rng)?.to_string() } else { String::new() });
    }
    let mut rows = Vec::with_capacity(texts.len());
    for t in &texts {
        if !memo.contains_key(t) {
            memo.insert(t.clone(), seg.text_conditional(std::slice::from_ref(t))?);
        }
        rows.push(memo[t].clone());
    }
    Ok((texts, candle_core::Tensor::cat(&rows, 0)?))
}

pub fn shuffle_words(text: &str, rng: &mut ChaCha8Rng) -> String {
    use rand::seq::SliceRandom;
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.shuffle(rng);
    words.join(" ")
}

/// [`Ablation`] of every dataset under its first prompt key (an RNG seeded with `seed + 1`, so
/// the main results are not disturbed).
fn ablate(
    seg: &Segmenter,
    opts: &EvalOptions,
    pool: &Pool,
    keys_of: &[Vec<String>],
) -> Result<BTreeMap<String, Ablation>> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(1));
    let mut out = BTreeMap::new();
    for (di, (ds, keys)) in pool.datasets.iter().zip(keys_of).enumerate() {
        let Some(key) = keys.first() else { continue };
        // Another dataset of the pool that has this key: the next one sharing no non-empty
        // prompt string with this one (another modality: kvasir and clinicdb share "polyp"),
        // else the next one.
        let texts_of = |d: &data::Dataset| -> std::collections::BTreeSet<String> {
            let mut t = std::collections::BTreeSet::new();
            for r in &d.records {
                for p in r.prompts.values() {
                    match p {
                        data::Prompt::One(s) => t.insert(s.trim().to_string()),
                        data::Prompt::Many(v) => {
                            t.extend(v.iter().map(|s| s.trim().to_string()));
                            true
                        }
                    };
                }
            }
            t.remove("");
            t
        };
        let mine = texts_of(ds);
        let candidates: Vec<&data::Dataset> = (1..pool.datasets.len())
            .map(|o| &pool.datasets[(di + o) % pool.datasets.len()])
            .filter(|o| o.records.iter().all(|r| r.prompts.contains_key(key)))
            .collect();
        let other = candidates.iter().find(|o| mine.is_disjoint(&texts_of(o))).or(candidates.first()).copied();
        let mut sums = [0f64; 4];
        let mut present = [0usize; 4];
        for (i, rec) in ds.records.iter().enumerate() {
            let own = data::prompt(rec, key, &mut rng)?.to_string();
            let mut texts = vec![own.clone(), String::new(), shuffle_words(&own, &mut rng)];
            if let Some(o) = other {
                texts.push(data::prompt(&o.records[i % o.records.len()], key, &mut rng)?.to_string());
            }
            let img = read_image(&rec.image_path)?;
            let target = crate::io::read_mask(&rec.mask_path)?;
            let (w, h) = img.dimensions();
            let (logits, pres) = seg.segment_image(&img, &texts, opts.threshold, opts.tta)?;
            // Slots: own, empty, other, shuffled.
            for (ti, slot) in [0usize, 1, 3, 2].into_iter().enumerate().take(texts.len()) {
                let probs = pipeline::probabilities_at(&logits.get(ti)?, w, h)?;
                let mut pred = pipeline::threshold_mask(&probs, w, h, opts.threshold)?;
                if !pres[ti].present {
                    pred.fill(0);
                }
                opts.post.apply(&mut pred);
                sums[slot] += metrics::score_masks(&pred, &target)?.dice;
                present[slot] += pres[ti].present as usize;
            }
        }
        let n = ds.records.len().max(1) as f64;
        let has_other = other.is_some();
        out.insert(
            ds.name.clone(),
            Ablation {
                prompt_key: key.clone(),
                n: ds.records.len(),
                own: sums[0] / n,
                empty: sums[1] / n,
                other: has_other.then(|| sums[2] / n),
                other_dataset: other.map(|o| o.name.clone()),
                shuffled: sums[3] / n,
                present_own: present[0] as f64 / n,
                present_empty: present[1] as f64 / n,
                present_other: has_other.then(|| present[2] as f64 / n),
                present_shuffled: present[3] as f64 / n,
            },
        );
    }
    Ok(out)
}

/// The scores of one volume under one condition, and its predicted 0/1 mask.
struct VolumeResult {
    scores: metrics::VolumeScores,
    dice_model_res: f64,
    iou_model_res: f64,
    presence: f32,
    present: bool,
    pred: Vec<u8>,
}

/// The axis volumes are cut along: the last voxel axis (`vlsm segment`'s default).
pub const VOLUME_AXIS: usize = 2;

/// A volume's mask as 0/1: any non-zero, non-NaN value (RGB: any non-black voxel) is foreground.
pub fn volume_mask(v: &crate::io::Volume) -> Vec<u8> {
    match &v.data {
        crate::io::VoxelData::Scalar(x) => x.iter().map(|&x| u8::from(x != 0.0 && !x.is_nan())).collect(),
        crate::io::VoxelData::Rgb(x) => x.chunks(3).map(|p| u8::from(p != [0, 0, 0])).collect(),
    }
}

/// Segments the volume of `rec` under each row of `cond` and scores it against its mask.
fn score_volume(
    seg: &Segmenter,
    opts: &EvalOptions,
    rec: &data::Record,
    cond: &candle_core::Tensor,
) -> Result<(crate::io::Volume, Vec<VolumeResult>)> {
    use crate::io::{self, put_slice, take_slice};
    let vol = io::read_volume(&rec.image_path, io::DEFAULT_MAX_VOXELS)?;
    let tv = io::read_volume(&rec.mask_path, io::DEFAULT_MAX_VOXELS)?;
    if tv.dims != vol.dims {
        let ([a, b, c], [d, e, f]) = (tv.dims, vol.dims);
        bail!(
            "{}: mask is {a}x{b}x{c} but its volume {} is {d}x{e}x{f}",
            rec.mask_path.display(),
            rec.image_path.display()
        );
    }
    for n in &vol.notes {
        eprintln!("note: {}: {n}", rec.image_path.display());
    }
    let target = volume_mask(&tv);
    drop(tv);
    let (dims, axis) = (vol.dims, VOLUME_AXIS);
    let (w, h, _) = vol.slice_dims(axis);
    let nc = cond.dim(0)?;
    let vo = crate::volume::VolumeOptions {
        axis,
        windowing: io::Windowing::Auto,
        batch: opts.batch.max(1),
        threshold: opts.threshold,
        probs: false,
        // NIfTI volumes only: no MONOCHROME1.
        invert: false,
    };
    let nvox = dims.iter().product::<usize>();
    let mut preds: Vec<Vec<u8>> = (0..nc).map(|_| vec![0u8; nvox]).collect();
    let mut max_prob = vec![0f32; nc];
    let mut model_counts = vec![metrics::Counts::default(); nc];
    // The current slice's target at model resolution (PIL nearest, as the 2-D path).
    let mut target_model: Option<(usize, Vec<u8>)> = None;
    crate::volume::volume_logits(seg, &vol, cond, &vo, |k, c, logits| {
        let pr = pipeline::probabilities_at(logits, w as u32, h as u32)?;
        max_prob[c] = pr.iter().copied().fold(max_prob[c], f32::max);
        put_slice(&mut preds[c], dims, axis, k, &metrics::binarize(&pr, opts.threshold));
        let (mh, mw) = logits.dims2()?;
        if target_model.as_ref().map(|t| t.0) != Some(k) {
            let t: Vec<u8> = take_slice(&target, dims, axis, k, 1).iter().map(|&v| v * 255).collect();
            let g = GrayImage::from_raw(w as u32, h as u32, t).expect("slice size");
            target_model = Some((k, pil_resize_gray(&g, mw as u32, mh as u32, Filter::Nearest).into_raw()));
        }
        let pm = metrics::binarize(&pipeline::probabilities_at(logits, mw as u32, mh as u32)?, opts.threshold);
        let cm = metrics::counts(&pm, &target_model.as_ref().expect("set above").1);
        let acc = &mut model_counts[c];
        acc.pred += cm.pred;
        acc.target += cm.target;
        acc.intersection += cm.intersection;
        Ok(())
    })
    .map_err(|e| anyhow!("{}: {e}", rec.image_path.display()))?;
    let spacing = vol.header.spacing();
    let mut out = Vec::with_capacity(nc);
    for (c, pred) in preds.into_iter().enumerate() {
        out.push(VolumeResult {
            scores: metrics::score_volume(&pred, &target, dims, spacing, axis),
            dice_model_res: metrics::dice_from(model_counts[c]),
            iou_model_res: metrics::iou_from(model_counts[c]),
            presence: max_prob[c],
            present: pred.iter().any(|&v| v != 0),
            pred,
        });
    }
    Ok((vol, out))
}

fn anns_path(ds: &data::Dataset, split: &str) -> PathBuf {
    ds.root.join("anns").join(format!("{split}.json"))
}

/// `s` must be one plain path component (no separator, not `.` or `..`): it names a folder
/// under `out/masks/`.
fn plain_component(s: &str) -> Result<()> {
    let mut c = Path::new(s).components();
    match (c.next(), c.next()) {
        (Some(std::path::Component::Normal(n)), None) if n == std::ffi::OsStr::new(s) && !s.contains('\\') => Ok(()),
        _ => bail!("not usable as a folder name under masks/"),
    }
}

/// A folder `out/.vlsm-eval.tmp.PID` that collects the predicted masks until [`Staging::commit`]
/// moves them to their place under `out`; dropped uncommitted, it is removed with its files.
struct Staging {
    out: PathBuf,
    dir: PathBuf,
    files: std::sync::Mutex<Vec<String>>,
}

impl Staging {
    fn new(out: &Path) -> Result<Staging> {
        let dir = out.join(format!(".vlsm-eval.tmp.{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| anyhow!("{}: cannot remove: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: cannot create directory: {e}", dir.display()))?;
        Ok(Staging { out: out.to_path_buf(), dir, files: Default::default() })
    }

    /// Writes `rel` (a checked path under `out`) into the staging folder.
    fn write_png(&self, rel: &str, img: &DynamicImage) -> Result<()> {
        let rel_path = data::safe_relative(rel)?;
        crate::io::write_png_atomic(&self.dir.join(&rel_path), img)
            .map_err(|e| anyhow!("{}: {e}", self.out.join(&rel_path).display()))?;
        self.files.lock().expect("not poisoned").push(rel.to_string());
        Ok(())
    }

    /// Writes the 0/1 mask volume `mask` in `like`'s geometry as `rel` (gzipped NIfTI).
    fn write_nifti(&self, rel: &str, like: &crate::io::NiftiHeader, mask: &[u8]) -> Result<()> {
        let rel_path = data::safe_relative(rel)?;
        let path = self.dir.join(&rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow!("{}: cannot create directory: {e}", self.out.join(&rel_path).display()))?;
        }
        crate::io::write_like(&path, like, crate::io::OutputData::U8(mask))
            .map_err(|e| anyhow!("{}: {e}", self.out.join(&rel_path).display()))?;
        self.files.lock().expect("not poisoned").push(rel.to_string());
        Ok(())
    }

    /// Moves every staged file to `out/<rel>` (replacing an older one) and removes the folder.
    fn commit(self) -> Result<()> {
        let files = std::mem::take(&mut *self.files.lock().expect("not poisoned"));
        for rel in &files {
            let rel_path = data::safe_relative(rel)?;
            let (from, to) = (self.dir.join(&rel_path), self.out.join(&rel_path));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| anyhow!("{}: cannot create directory: {e}", parent.display()))?;
            }
            std::fs::rename(&from, &to).map_err(|e| anyhow!("{}: cannot write: {e}", to.display()))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn progress_bar(n: u64, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "eval {bar:30} {pos}/{len} images [{elapsed_precise}<{eta_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// The results table: one row per prompt key and dataset, then the pooled row.
pub fn table(r: &EvalReport) -> String {
    let mut s = format!(
        "{:<6} {:<20} {:>5} {:>7} {:>7} {:>8} {:>6} {:>9} {:>9}\n",
        "prompt", "dataset", "n", "dice", "iou", "hd95", "no_hd", "dice@mdl", "iou@mdl"
    );
    if r.hd95_unit == "mm" {
        s.insert_str(s.len() - 1, &format!(" {:>9}", "sliceDice"));
        s.insert_str(0, "(volumes: 3-D Dice and IoU, HD95 in mm, sliceDice = mean per-slice Dice)\n");
    }
    let row = |s: &mut String, k: &str, name: &str, m: &Summary| {
        let hd = m.hd95.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{k:<6} {name:<20} {:>5} {:>7.4} {:>7.4} {hd:>8} {:>6} {:>9.4} {:>9.4}",
            m.n, m.dice, m.iou, m.hd95_undefined, m.dice_model_res, m.iou_model_res
        ));
        if let Some(sd) = m.slice_dice {
            s.push_str(&format!(" {sd:>9.4}"));
        }
        s.push('\n');
    };
    for k in &r.key_order {
        let p = &r.prompts[k];
        for (name, m) in &p.datasets {
            row(&mut s, k, name, m);
        }
        if p.datasets.len() > 1 {
            row(&mut s, k, "(pooled)", &p.pooled);
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per image (volume) and prompt key; volumes add `hd95_mm` (empty when undefined),
/// `slice_dice` and `slices`.
pub fn per_image_csv(r: &EvalReport) -> String {
    let volumes = r.hd95_unit == "mm";
    let mut s = String::from("dataset,image,prompt,dice,iou");
    s.push_str(if volumes { ",hd95_mm,slice_dice,slices\n" } else { "\n" });
    for x in &r.results {
        s.push_str(&format!(
            "{},{},{},{:.6},{:.6}",
            csv_field(&x.dataset),
            csv_field(&x.image),
            csv_field(&x.prompt_key),
            x.dice,
            x.iou
        ));
        if volumes {
            let hd = x.hd95.map(|v| format!("{v:.6}")).unwrap_or_default();
            s.push_str(&format!(",{hd},{:.6},{}", x.slice_dice.unwrap_or(f64::NAN), x.slices.unwrap_or(0)));
        }
        s.push('\n');
    }
    s
}

/// Writes `metrics.json`, `per_image.csv` and `report.html` into `out`.
pub fn write_outputs(r: &EvalReport, opts: &EvalOptions) -> Result<()> {
    crate::io::write_atomic(&opts.out.join("metrics.json"), &serde_json::to_vec_pretty(r)?)?;
    crate::io::write_atomic(&opts.out.join("per_image.csv"), per_image_csv(r).as_bytes())?;
    let html = report::html(r, opts)?;
    crate::io::write_atomic(&opts.out.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// The image with the predicted mask (green) and the target's outline (red), at most `max_w` wide.
pub fn case_image(image: &RgbImage, pred: &GrayImage, target: &GrayImage, max_w: u32) -> RgbImage {
    let mut out = pipeline::overlay(image, pred);
    let (w, h) = target.dimensions();
    let fg = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && target.get_pixel(x as u32, y as u32)[0] > 0
    };
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            if fg(x, y) && !(fg(x - 1, y) && fg(x + 1, y) && fg(x, y - 1) && fg(x, y + 1)) {
                out.put_pixel(x as u32, y as u32, image::Rgb([255, 0, 0]));
            }
        }
    }
    if w > max_w {
        let nh = ((h as f64 * max_w as f64 / w as f64).round() as u32).max(1);
        out = image::imageops::resize(&out, max_w, nh, image::imageops::FilterType::Triangle);
    }
    out
}

/// A record's image, read as `vlsm segment` reads it (rasters, 2-D DICOM and NIfTI, the default
/// window), so eval's masks are the ones segment would write.
fn read_image(path: &std::path::Path) -> Result<image::RgbImage> {
    crate::io::read_image_any(path, &crate::io::ReadOptions::default())
}
