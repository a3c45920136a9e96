//! `vlsm segment` on NIfTI volumes: `vlsm::volume` slice by slice, masks written in the
//! source's geometry, a progress bar over slices.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use candle_core::Tensor;
use vlsm::io::{self, NiftiHeader, OutputData, Volume, Windowing};
use vlsm::pipeline::Segmenter;
use vlsm::volume;

use crate::segment_cmd::{progress, with_suffix, Condition};

#[derive(Clone, Copy)]
pub(crate) struct VolumeOpts {
    /// Voxel axis the slices are cut along; `None` = the last (2).
    pub axis: Option<usize>,
    pub windowing: Windowing,
    pub batch: usize,
    pub threshold: f32,
    pub probs: bool,
    pub max_voxels: u64,
    /// MONOCHROME1 series: slices displayed inverted (`volume::VolumeOptions::invert`).
    pub invert: bool,
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

/// Segments every slice of the NIfTI volume at `path` (`vlsm::volume::segment_volume`) and
/// writes the outputs of [`volume_outputs`]. The volume is read (and refused) before anything
/// is written. Returns the slice count.
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
    let pred = run_volume(seg, &vol, &p.to_string(), cond, o)?;
    write_nifti_outputs(base, &vol.header, conds, &pred, o.probs)?;
    Ok(vol.slice_dims(o.axis.unwrap_or(2)).2)
}

/// `vlsm::volume::segment_volume` with a progress bar over slices and the speed on stderr;
/// errors name `name`.
pub(crate) fn run_volume(
    seg: &Segmenter,
    vol: &Volume,
    name: &str,
    cond: &Tensor,
    o: &VolumeOpts,
) -> Result<volume::VolumePrediction> {
    let opts = volume::VolumeOptions {
        axis: o.axis.unwrap_or(2),
        windowing: o.windowing,
        batch: o.batch,
        threshold: o.threshold,
        probs: o.probs,
        invert: o.invert,
    };
    let (_, _, n) = vol.slice_dims(opts.axis);
    let bar = progress(n as u64, "slices");
    let t = std::time::Instant::now();
    let pred = volume::segment_volume(seg, vol, cond, &opts, || bar.inc(1)).map_err(|e| anyhow!("{name}: {e}"))?;
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("{name}: {n} slices in {secs:.1} s ({:.2} slices/s)", n as f64 / secs.max(1e-9));
    Ok(pred)
}

/// Writes the files of [`volume_outputs`] in `header`'s geometry.
pub(crate) fn write_nifti_outputs(
    base: &Path,
    header: &NiftiHeader,
    conds: &[Condition],
    pred: &volume::VolumePrediction,
    probs: bool,
) -> Result<()> {
    for (c, cnd) in conds.iter().enumerate() {
        let b = with_suffix(base, &cnd.volume_name);
        if probs {
            io::write_like(&with_suffix(&b, ".probs.nii.gz"), header, OutputData::F32(&pred.probs[c]))?;
        }
        // The mask last: a run killed before it is redone on resume.
        io::write_like(&with_suffix(&b, ".mask.nii.gz"), header, OutputData::U8(&pred.masks[c]))?;
    }
    Ok(())
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
