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
    hausdorff_grid(pred, target, [width, height, 1], [1.0; 3], percentile, false)
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

/// [`hausdorff`] for volumes, in millimetres: masks of `dims` (x fastest), voxel `spacing` along
/// x, y, z, as MONAI's `compute_hausdorff_distance(..., percentile, spacing=...)`: edges are the
/// mask XOR its erosion by the 6-neighbour cross (zero outside), distances the exact Euclidean
/// distance transform with the spacing. `None` when either mask is empty.
pub fn hausdorff_3d(pred: &[u8], target: &[u8], dims: [usize; 3], spacing: [f64; 3], percentile: f64) -> Option<f64> {
    let n = dims.iter().product::<usize>();
    assert_eq!(pred.len(), n, "pred size is not the product of dims");
    assert_eq!(target.len(), n, "target size is not the product of dims");
    hausdorff_grid(pred, target, dims, spacing, percentile, true)
}

/// The one Hausdorff implementation of [`hausdorff`] (2-D: `dims[2] == 1`, `use_z` false, unit
/// spacing) and [`hausdorff_3d`]: masks cropped to the bounding box of both (distances between
/// their edges do not change, and the crop holds every foreground voxel, so edges do not
/// either), edges = mask XOR its erosion by the cross of the axes in use (z only when
/// `use_z`; zero outside), exact Euclidean distance transforms with `spacing`, then the
/// percentile of each direction and the larger. `None` when either mask is empty.
fn hausdorff_grid(
    pred: &[u8],
    target: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    percentile: f64,
    use_z: bool,
) -> Option<f64> {
    let [nx, ny, _] = dims;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (i, (&p, &t)) in pred.iter().zip(target).enumerate() {
        if p != 0 || t != 0 {
            let c = [i % nx, (i / nx) % ny, i / (nx * ny)];
            for a in 0..3 {
                lo[a] = lo[a].min(c[a]);
                hi[a] = hi[a].max(c[a]);
            }
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let cd = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
    let crop = |m: &[u8]| -> Vec<u8> {
        let mut v = Vec::with_capacity(cd[0] * cd[1] * cd[2]);
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                let s = lo[0] + nx * (y + ny * z);
                v.extend_from_slice(&m[s..s + cd[0]]);
            }
        }
        v
    };
    let ep = edges_3d(&crop(pred), cd, use_z);
    let et = edges_3d(&crop(target), cd, use_z);
    if !ep.iter().any(|&e| e) || !et.iter().any(|&e| e) {
        return None;
    }
    // One distance map at a time (8 bytes per voxel of the crop).
    let dir = |from: &[bool], to: &[bool]| {
        let d = sq_distance_to_3d(to, cd, spacing);
        let mut v: Vec<f64> = from.iter().zip(&d).filter(|(&e, _)| e).map(|(_, &d)| d.sqrt()).collect();
        v.sort_unstable_by(f64::total_cmp);
        quantile(&v, percentile / 100.0)
    };
    Some(dir(&ep, &et).max(dir(&et, &ep)))
}

/// The scores of one volume (masks of `dims`, x fastest; voxel `spacing` in mm).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeScores {
    /// Over all voxels ([`dice_from`], [`iou_from`]).
    pub dice: f64,
    pub iou: f64,
    /// [`hd95_3d`] in mm; `None` when either mask is empty.
    pub hd95: Option<f64>,
    /// Dice of each slice along the scored axis; a slice whose target and prediction are both
    /// empty scores 1, one with only one of them empty 0 (MONAI `ignore_empty=False`).
    pub slice_dice: Vec<f64>,
    /// Up to 3 slices with the most wrong voxels (most first; ties: more target voxels, then
    /// the lower index).
    pub worst_slices: Vec<usize>,
}

impl VolumeScores {
    /// The mean of [`VolumeScores::slice_dice`] (0 slices: 0).
    pub fn mean_slice_dice(&self) -> f64 {
        self.slice_dice.iter().sum::<f64>() / self.slice_dice.len().max(1) as f64
    }
}

/// [`VolumeScores`] of a predicted volume against its target, slices cut along `axis` (0..=2;
/// as [`crate::io::take_slice`]).
///
/// # Panics
/// If a mask's length is not the product of `dims`, or `axis > 2`.
pub fn score_volume(pred: &[u8], target: &[u8], dims: [usize; 3], spacing: [f64; 3], axis: usize) -> VolumeScores {
    assert!(axis < 3, "axis must be 0, 1 or 2");
    let c = counts(pred, target);
    let n = dims[axis];
    let mut slice_dice = Vec::with_capacity(n);
    // (wrong voxels, target voxels, slice)
    let mut errors: Vec<(u64, u64, usize)> = Vec::with_capacity(n);
    for k in 0..n {
        let (p, t) = (crate::io::take_slice(pred, dims, axis, k, 1), crate::io::take_slice(target, dims, axis, k, 1));
        let sc = counts(&p, &t);
        slice_dice.push(dice_from(sc));
        errors.push((sc.pred + sc.target - 2 * sc.intersection, sc.target, k));
    }
    errors.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    VolumeScores {
        dice: dice_from(c),
        iou: iou_from(c),
        hd95: hd95_3d(pred, target, dims, spacing),
        slice_dice,
        worst_slices: errors.iter().take(3).map(|e| e.2).collect(),
    }
}

/// [`hausdorff_3d`] at the 95th percentile.
pub fn hd95_3d(pred: &[u8], target: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> Option<f64> {
    hausdorff_3d(pred, target, dims, spacing, 95.0)
}

/// Mask XOR its erosion by the 6-neighbour cross (`use_z`; else the 4-neighbour cross of each
/// x-y plane, scipy's 2-D `binary_erosion`), zero outside.
fn edges_3d(m: &[u8], d: [usize; 3], use_z: bool) -> Vec<bool> {
    let [w, h, n] = d;
    let fg = |x: isize, y: isize, z: isize| {
        x >= 0
            && y >= 0
            && z >= 0
            && (x as usize) < w
            && (y as usize) < h
            && (z as usize) < n
            && m[x as usize + w * (y as usize + h * z as usize)] != 0
    };
    let mut e = vec![false; w * h * n];
    for z in 0..n as isize {
        for y in 0..h as isize {
            for x in 0..w as isize {
                if fg(x, y, z)
                    && !(fg(x - 1, y, z)
                        && fg(x + 1, y, z)
                        && fg(x, y - 1, z)
                        && fg(x, y + 1, z)
                        && (!use_z || (fg(x, y, z - 1) && fg(x, y, z + 1))))
                {
                    e[x as usize + w * (y as usize + h * z as usize)] = true;
                }
            }
        }
    }
    e
}

/// Exact squared Euclidean distance (with voxel spacing) from every voxel to the nearest `true`
/// voxel: the separable transform one axis at a time. Needs at least one `true`.
fn sq_distance_to_3d(seeds: &[bool], d: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    const INF: f64 = 1e20;
    let mut dist: Vec<f64> = seeds.iter().map(|&s| if s { 0.0 } else { INF }).collect();
    let [w, h, n] = d;
    let m = w.max(h).max(n);
    let (mut f, mut out, mut v, mut z) = (vec![0.0; m], vec![0.0; m], vec![0usize; m], vec![0.0; m + 1]);
    let strides = [1, w, w * h];
    for axis in 0..3 {
        let len = d[axis];
        let s2 = spacing[axis] * spacing[axis];
        let stride = strides[axis];
        // Every line along `axis`: its start index runs over the other two axes.
        let (a, b) = match axis {
            0 => ((h, w), (n, w * h)),
            1 => ((w, 1), (n, w * h)),
            _ => ((w, 1), (h, w)),
        };
        for i in 0..a.0 {
            for j in 0..b.0 {
                let start = i * a.1 + j * b.1;
                for q in 0..len {
                    f[q] = dist[start + q * stride];
                }
                dt1d_spaced(&f[..len], &mut out[..len], &mut v, &mut z, s2);
                for q in 0..len {
                    dist[start + q * stride] = out[q];
                }
            }
        }
    }
    dist
}

/// [`dt1d`] with grid spacing: parabolas s²·(q − p)² + f[p].
fn dt1d_spaced(f: &[f64], out: &mut [f64], v: &mut [usize], z: &mut [f64], s2: f64) {
    let n = f.len();
    let mut k = 0;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s;
        loop {
            let p = v[k];
            let (qf, pf) = (q as f64, p as f64);
            s = ((f[q] + s2 * qf * qf) - (f[p] + s2 * pf * pf)) / (2.0 * s2 * (qf - pf));
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                break;
            }
        }
        if s <= z[k] {
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
        *o = s2 * dq * dq + f[p];
    }
}
