//! `vlsm segment --series DIR`: a DICOM series folder as one volume (`io::read_dicom_series`),
//! segmented like a NIfTI volume, written as NIfTI masks in the series' geometry or as one
//! DICOM SEG (`--format dicom-seg`).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_core::Tensor;
use vlsm::io::{self, DicomSeries, NiftiHeader, Volume, VoxelData, Windowing};
use vlsm::pipeline::Segmenter;

use crate::segment_cmd::{with_suffix, Condition};
use crate::segment_volume::{run_volume, write_nifti_outputs, VolumeOpts};

/// What `vlsm segment` writes for a volume.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `<stem>.mask.nii.gz` per prompt (and `.probs.nii.gz` with --probs).
    Nifti,
    /// `<series-folder>.seg.dcm`: one DICOM Segmentation, one segment per prompt (--series only).
    DicomSeg,
}

/// The name a series' outputs get: the folder's name ("series" when it has none, as `.`).
pub(crate) fn series_stem(dir: &Path) -> String {
    let name =
        dir.file_name().map(|n| n.to_owned()).or_else(|| dir.canonicalize().ok()?.file_name().map(|n| n.to_owned()));
    match name {
        Some(n) if !n.is_empty() && n != ".." => n.to_string_lossy().into_owned(),
        _ => "series".to_string(),
    }
}

/// Reads the series in `dir` and checks it against the voxel limit; errors are one line naming
/// the folder or its files.
pub(crate) fn read_series(dir: &Path, max_voxels: u64) -> Result<DicomSeries> {
    let s = io::read_dicom_series(dir)?;
    let [nx, ny, nz] = s.dims;
    let n = nx as u64 * ny as u64 * nz as u64;
    if n > max_voxels {
        bail!(
            "{}: series is {nx}x{ny}x{nz} = {n} voxels, more than the limit of {max_voxels} (--max-voxels)",
            dir.display()
        );
    }
    Ok(s)
}

/// The series as a NIfTI volume: its values, a header whose sform is the series' RAS affine
/// and pixdim its spacing. The values move out of `s`.
pub(crate) fn series_volume(s: &mut DicomSeries) -> Result<Volume> {
    let header = NiftiHeader::for_grid(s.dims, s.spacing, s.affine_ras())?;
    Ok(Volume { header, dims: s.dims, data: VoxelData::Scalar(std::mem::take(&mut s.values)), notes: Vec::new() })
}

/// Segments the series `s` read from `dir` and writes its outputs under `base`. The window
/// under `--window auto` is the series' own (Window Center/Width of its first slice) when it
/// has one, else percentiles over the volume. Returns the slice count.
#[allow(clippy::too_many_arguments)] // the volume path's arguments, plus the series and the format
pub(crate) fn segment_series(
    seg: &Segmenter,
    dir: &Path,
    mut s: DicomSeries,
    base: &Path,
    cond: &Tensor,
    conds: &[Condition],
    o: &VolumeOpts,
    format: OutputFormat,
) -> Result<usize> {
    let d = dir.display().to_string();
    for n in &s.notes {
        eprintln!("note: {d}: {n}");
    }
    let vol = series_volume(&mut s).map_err(|e| anyhow!("{d}: {e}"))?;
    let windowing = match (o.windowing, s.window) {
        (Windowing::Auto, Some(w)) => Windowing::Fixed(w),
        (w, _) => w,
    };
    // MONOCHROME1: windowed as the values are, then displayed inverted (as viewers do).
    let o = VolumeOpts { windowing, invert: s.invert, ..*o };
    let pred = run_volume(seg, &vol, &d, cond, &o)?;
    match format {
        OutputFormat::Nifti => write_nifti_outputs(base, &vol.header, conds, &pred, o.probs)?,
        OutputFormat::DicomSeg => {
            let labels: Vec<String> = conds
                .iter()
                .enumerate()
                .map(|(k, c)| match c.prompt.as_deref() {
                    Some(p) if !p.trim().is_empty() => p.to_string(),
                    _ => format!("segment {}", k + 1),
                })
                .collect();
            let masks: Vec<&[u8]> = pred.masks.iter().map(|m| m.as_slice()).collect();
            let path = with_suffix(base, ".seg.dcm");
            io::write_dicom_seg(&path, &s, &labels, &masks, &io::SegOptions::default())
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
    }
    Ok(s.dims[2])
}
