//! Segmentation metrics with MONAI semantics (`compute_dice`, `compute_iou`,
//! `compute_hausdorff_distance`, `DiceLoss`), on one binary mask pair at a time.
//!
//! Masks are row-major byte slices; any non-zero byte is foreground.
//!
//! Empty masks:
//! - Dice and IoU follow `ignore_empty=False`: empty target and empty prediction score 1,
//!   empty target with any predicted pixel scores 0 (and a missed target scores 0).
//! - HD95 is undefined when either mask is empty (MONAI returns nan there). We return `None`
//!   and averages skip those images, as MONAI's nan-ignoring mean reduction does; report how
//!   many were skipped next to the mean.

use anyhow::{bail, Result};
use image::GrayImage;

/// Per-image scores at one resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScores {
    pub dice: f64,
    pub iou: f64,
    /// `None` when either mask is empty.
    pub hd95: Option<f64>,
}

/// Foreground counts of a mask pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub pred: u64,
    pub target: u64,
    pub intersection: u64,
}

/// # Panics
/// If the slices differ in length.
pub fn counts(pred: &[u8], target: &[u8]) -> Counts {
    assert_eq!(pred.len(), target.len(), "mask sizes differ");
    let mut c = Counts::default();
    for (&p, &t) in pred.iter().zip(target) {
        let (p, t) = (p != 0, t != 0);
        c.pred += p as u64;
        c.target += t as u64;
        c.intersection += (p && t) as u64;
    }
    c
}

/// Dice = 2|P∩T| / (|P| + |T|); 1 when both are empty.
pub fn dice(pred: &[u8], target: &[u8]) -> f64 {
    dice_from(counts(pred, target))
}

/// IoU = |P∩T| / |P∪T|; 1 when both are empty.
pub fn iou(pred: &[u8], target: &[u8]) -> f64 {
    iou_from(counts(pred, target))
}

pub fn dice_from(c: Counts) -> f64 {
    let denom = c.pred + c.target;
    if denom == 0 {
        1.0
    } else {
        2.0 * c.intersection as f64 / denom as f64
    }
}

pub fn iou_from(c: Counts) -> f64 {
    let union = c.pred + c.target - c.intersection;
    if union == 0 {
        1.0
    } else {
        c.intersection as f64 / union as f64
    }
}

/// Thresholds probabilities as the reference does (`p > threshold`) into 0/1 bytes.
pub fn binarize(probs: &[f32], threshold: f32) -> Vec<u8> {
    probs.iter().map(|&p| (p > threshold) as u8).collect()
}

/// MONAI `DiceLoss` for one sample (no activation, `smooth_nr = smooth_dr = 1e-5`):
/// `1 - (2 Σ p·g + 1e-5) / (Σ p + Σ g + 1e-5)`. Average it over the batch.
pub fn soft_dice_loss(probs: &[f32], target: &[f32]) -> f64 {
    assert_eq!(probs.len(), target.len(), "sizes differ");
    let (mut inter, mut sp, mut sg) = (0f64, 0f64, 0f64);
    for (&p, &g) in probs.iter().zip(target) {
        inter += p as f64 * g as f64;
        sp += p as f64;
        sg += g as f64;
    }
    1.0 - (2.0 * inter + 1e-5) / (sp + sg + 1e-5)
}

/// 95th-percentile symmetric Hausdorff distance in pixels, as MONAI
/// `compute_hausdorff_distance(percentile=95)` with unit spacing: the boundary of a mask is its
/// foreground pixels with a 4-neighbour that is background or outside the image; for each
/// boundary pixel of one mask take the Euclidean distance to the nearest boundary pixel of the
/// other; take the 95th percentile (linear interpolation) in each direction and the larger.
/// `None` when either mask is empty.
pub fn hd95(pred: &[u8], target: &[u8], width: usize, height: usize) -> Option<f64> {
    hausdorff(pred, target, width, height, 95.0)
}

/// [`hd95`] at any percentile in 0..=100 (100 = the classic Hausdorff distance).
pub fn hausdorff(pred: &[u8], target: &[u8], width: usize, height: usize, percentile: f64) -> Option<f64> {
    assert_eq!(pred.len(), width * height, "pred size is not width * height");
    assert_eq!(target.len(), width * height, "target size is not width * height");
    let ep = edges(pred, width, height);
    let et = edges(target, width, height);
    if !ep.iter().any(|&e| e) || !et.iter().any(|&e| e) {
        return None;
    }
    let dt = sq_distance_to(&et, width, height);
    let dp = sq_distance_to(&ep, width, height);
    let dir = |from: &[bool], d: &[f64]| {
        let mut v: Vec<f64> = from.iter().zip(d).filter(|(&e, _)| e).map(|(_, &d)| d.sqrt()).collect();
        v.sort_unstable_by(f64::total_cmp);
        quantile(&v, percentile / 100.0)
    };
    Some(dir(&ep, &dt).max(dir(&et, &dp)))
}

/// Scores for a predicted 0/255 mask against a target mask of the same size.
pub fn score_masks(pred: &GrayImage, target: &GrayImage) -> Result<ImageScores> {
    if pred.dimensions() != target.dimensions() {
        let (a, b) = (pred.dimensions(), target.dimensions());
        bail!("prediction is {}x{} but the target mask is {}x{}", a.0, a.1, b.0, b.1);
    }
    let (w, h) = pred.dimensions();
    let c = counts(pred.as_raw(), target.as_raw());
    Ok(ImageScores {
        dice: dice_from(c),
        iou: iou_from(c),
        hd95: hd95(pred.as_raw(), target.as_raw(), w as usize, h as usize),
    })
}

/// Mean of the defined values and how many were undefined (skipped); `None` if all were.
pub fn mean_defined(values: &[Option<f64>]) -> (Option<f64>, usize) {
    let def: Vec<f64> = values.iter().flatten().copied().collect();
    let skipped = values.len() - def.len();
    if def.is_empty() {
        (None, skipped)
    } else {
        (Some(def.iter().sum::<f64>() / def.len() as f64), skipped)
    }
}

/// Linear-interpolation quantile (numpy/torch default) of sorted data, `q` in 0..=1.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + (sorted[j] - sorted[i]) * (pos - i as f64)
}

/// Mask XOR its erosion by a 3x3 cross with zero outside the image (scipy `binary_erosion`).
fn edges(m: &[u8], w: usize, h: usize) -> Vec<bool> {
    let fg = |x: isize, y: isize| {
        x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h && m[y as usize * w + x as usize] != 0
    };
    let mut e = vec![false; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            if fg(x, y) && !(fg(x - 1, y) && fg(x + 1, y) && fg(x, y - 1) && fg(x, y + 1)) {
                e[y as usize * w + x as usize] = true;
            }
        }
    }
    e
}

/// Exact squared Euclidean distance from every pixel to the nearest `true` pixel
/// (Felzenszwalb & Huttenlocher's separable transform). Needs at least one `true`.
fn sq_distance_to(seeds: &[bool], w: usize, h: usize) -> Vec<f64> {
    const INF: f64 = 1e20;
    let mut d: Vec<f64> = seeds.iter().map(|&s| if s { 0.0 } else { INF }).collect();
    let n = w.max(h);
    let (mut f, mut out, mut v, mut z) = (vec![0.0; n], vec![0.0; n], vec![0usize; n], vec![0.0; n + 1]);
    for x in 0..w {
        for y in 0..h {
            f[y] = d[y * w + x];
        }
        dt1d(&f[..h], &mut out[..h], &mut v, &mut z);
        for y in 0..h {
            d[y * w + x] = out[y];
        }
    }
    for y in 0..h {
        f[..w].copy_from_slice(&d[y * w..(y + 1) * w]);
        dt1d(&f[..w], &mut out[..w], &mut v, &mut z);
        d[y * w..(y + 1) * w].copy_from_slice(&out[..w]);
    }
    d
}

/// 1-D squared distance transform: lower envelope of parabolas rooted at (q, f[q]).
fn dt1d(f: &[f64], out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k = 0;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s;
        loop {
            let p = v[k];
            s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * q as f64 - 2.0 * p as f64);
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                break;
            }
        }
        if s <= z[k] {
            // k == 0: the new parabola is below the first everywhere.
            v[0] = q;
            z[0] = f64::NEG_INFINITY;
            z[1] = f64::INFINITY;
            continue;
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let dq = q as f64 - p as f64;
        *o = dq * dq + f[p];
    }
}
