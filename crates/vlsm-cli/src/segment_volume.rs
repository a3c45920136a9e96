//! `vlsm segment` on NIfTI volumes: every slice along an axis through the model in batches
//! (the image encoder once per slice for all prompts), masks written in the source's geometry.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{anyhow, bail, Result};
use candle_core::Tensor;
use image::{DynamicImage, GrayImage, RgbImage};
use vlsm::io::{self, OutputData, SliceData, Volume, VoxelData, WindowMap, Windowing};
use vlsm::pipeline::{self, Segmenter};

use crate::segment_cmd::{progress, with_suffix, Condition, PROMPT_BATCH};

pub(crate) struct VolumeOpts {
    /// Voxel axis the slices are cut along; `None` = the last (2).
    pub axis: Option<usize>,
    pub windowing: Windowing,
    pub batch: usize,
    pub threshold: f32,
    pub probs: bool,
    pub max_voxels: u64,
}

/// The files a volume gives: per condition `<base><name>.mask.nii.gz` and, with `probs`,
/// `<base><name>.probs.nii.gz`.
pub(crate) fn volume_outputs(base: &Path, conds: &[Condition], probs: bool) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in conds {
        let b = with_suffix(base, &c.volume_name);
        v.push(with_suffix(&b, ".mask.nii.gz"));
        if probs {
            v.push(with_suffix(&b, ".probs.nii.gz"));
        }
    }
    v
}

/// Slice `k` along `axis` as the picture the model sees: RGB data as is, scalar data through
/// the volume's window, grey replicated.
fn slice_image(vol: &Volume, axis: usize, k: usize, map: Option<&WindowMap>) -> RgbImage {
    let (w, h, _) = vol.slice_dims(axis);
    match (vol.slice_values(axis, k), map) {
        (SliceData::Rgb(v), _) => RgbImage::from_raw(w as u32, h as u32, v).expect("slice size"),
        (SliceData::Scalar(v), Some(m)) => {
            let g = GrayImage::from_raw(w as u32, h as u32, m.apply(&v, false)).expect("slice size");
            DynamicImage::ImageLuma8(g).into_rgb8()
        }
        (SliceData::Scalar(_), None) => unreachable!("scalar volumes have a window"),
    }
}

/// Segments every slice of the NIfTI volume at `path` and writes the outputs of
/// [`volume_outputs`]. The volume is read (and refused) before anything is written; slices
/// stream through the model, so memory holds the volume, one mask per prompt (and one f32
/// probability volume per prompt with `probs`) and one batch of slices. Returns the slice count.
pub(crate) fn segment_volume(
    seg: &Segmenter,
    path: &Path,
    base: &Path,
    cond: &Tensor,
    conds: &[Condition],
    o: &VolumeOpts,
) -> Result<usize> {
    let p = path.display();
    let vol = io::read_volume(path, o.max_voxels)?;
    for n in &vol.notes {
        eprintln!("note: {p}: {n}");
    }
    let axis = o.axis.unwrap_or(2);
    if axis > 2 {
        bail!("--axis must be 0, 1 or 2 (a voxel axis), got {axis}");
    }
    let (w, h, n) = vol.slice_dims(axis);
    if (w as u64) * (h as u64) > io::MAX_PIXELS {
        bail!("{p}: slices along axis {axis} are {w}x{h}, more than the limit of {} pixels", io::MAX_PIXELS);
    }
    // One window for the whole volume, so that a slice's grey levels mean the same as its
    // neighbours'.
    let map = match &vol.data {
        VoxelData::Scalar(v) => Some(io::resolve_window(v, o.windowing, None).map_err(|e| anyhow!("{p}: {e}"))?),
        VoxelData::Rgb(_) => None,
    };
    let nvox = vol.dims.iter().product::<usize>();
    let mut masks: Vec<Vec<u8>> = conds.iter().map(|_| vec![0u8; nvox]).collect();
    let mut probs: Vec<Vec<f32>> = if o.probs { conds.iter().map(|_| vec![0f32; nvox]).collect() } else { Vec::new() };
    let bar = progress(n as u64, "slices");
    // Cut, window and preprocess the next batch while the model runs on this one.
    let (tx, rx) = mpsc::sync_channel::<Result<(Vec<usize>, Tensor)>>(1);
    std::thread::scope(|s| -> Result<()> {
        let (vol_ref, map_ref) = (&vol, map.as_ref());
        s.spawn(move || {
            let ks: Vec<usize> = (0..n).collect();
            for chunk in ks.chunks(o.batch) {
                let item = (|| {
                    let imgs: Vec<RgbImage> = chunk.iter().map(|&k| slice_image(vol_ref, axis, k, map_ref)).collect();
                    let refs: Vec<&RgbImage> = imgs.iter().collect();
                    Ok((chunk.to_vec(), seg.pixel_values(&refs)?))
                })();
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for item in rx {
            let (ks, pv) = item?;
            let feats = seg.encode_images(&pv)?;
            for (&k, f) in ks.iter().zip(&feats) {
                for (b, chunk) in conds.chunks(PROMPT_BATCH).enumerate() {
                    let logits = seg.decode(f, &cond.narrow(0, b * PROMPT_BATCH, chunk.len())?)?; // [n, h, w]
                    for j in 0..chunk.len() {
                        let c = b * PROMPT_BATCH + j;
                        let pr = pipeline::probabilities_at(&logits.get(j)?, w as u32, h as u32)?;
                        let m: Vec<u8> = pr.iter().map(|&p| u8::from(p > o.threshold)).collect();
                        io::put_slice(&mut masks[c], vol.dims, axis, k, &m);
                        if o.probs {
                            io::put_slice(&mut probs[c], vol.dims, axis, k, &pr);
                        }
                    }
                }
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    for (c, cnd) in conds.iter().enumerate() {
        let b = with_suffix(base, &cnd.volume_name);
        if o.probs {
            io::write_like(&with_suffix(&b, ".probs.nii.gz"), &vol.header, OutputData::F32(&probs[c]))?;
        }
        // The mask last: a run killed before it is redone on resume.
        io::write_like(&with_suffix(&b, ".mask.nii.gz"), &vol.header, OutputData::U8(&masks[c]))?;
    }
    Ok(n)
}

/// A file-name part for a prompt: lowercase ASCII letters and digits, other runs as one '-',
/// at most 40 characters; "prompt<k>" when nothing is left.
pub(crate) fn slug(prompt: &str, k: usize) -> String {
    let mut s = String::new();
    for ch in prompt.chars() {
        if ch.is_ascii_alphanumeric() {
            s.push(ch.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        format!("prompt{k}")
    } else {
        s
    }
}

/// Distinct slugs for a list of prompts (a repeated slug gets "-<k>").
pub(crate) fn slugs(prompts: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    prompts
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut s = slug(p, k);
            if !seen.insert(s.clone()) {
                s = format!("{s}-{k}");
                seen.insert(s.clone());
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_distinct_and_safe() {
        let p: Vec<String> = ["Liver tumour", "liver  TUMOUR!", "", "../etc/passwd", "ü"].map(String::from).to_vec();
        assert_eq!(slugs(&p), ["liver-tumour", "liver-tumour-1", "prompt2", "etc-passwd", "prompt4"]);
        assert_eq!(slug(&"a".repeat(100), 0).len(), 40);
    }
}
