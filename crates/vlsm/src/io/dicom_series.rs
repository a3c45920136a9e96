//! A DICOM series as a volume: a folder (searched recursively) of single-frame images of one
//! Series Instance UID, or one multi-frame (enhanced) object, sorted along the slice normal.
//!
//! Voxel (i, j, k) is column i, row j of the k-th slice along the normal (rows x columns of
//! Image Orientation (Patient) crossed), stored at `i + nx * (j + ny * k)`: a slice along axis 2
//! is the DICOM image as displayed, the layout of `io::nifti` volumes. Values are rescaled by
//! each slice's (or frame's) Rescale Slope/Intercept.
//!
//! The affine maps (i, j, k, 1) to patient coordinates in millimetres: [`DicomSeries::affine_lps`]
//! in DICOM's LPS, [`DicomSeries::affine_ras`] in NIfTI's RAS (x and y negated), the convention
//! of a NIfTI sform.
//!
//! Refused, with the files named: several series in the folder, slices of different sizes or
//! orientations, two slices at one position, gaps in the spacing (a missing slice), colour.
//! Files that are not DICOM images (a DICOMDIR, a structured report, a text file) are skipped,
//! with a note.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::dicom::{read_object, Item, Object, Value};
use super::types::Window;

/// Most files a series folder may hold.
const MAX_FILES: usize = 100_000;
/// Most voxels a series may have (as `nifti::DEFAULT_MAX_VOXELS`: 1 GiB of f32).
pub const MAX_SERIES_VOXELS: u64 = 1 << 28;

/// Where one slice came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSource {
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    /// The frame of a multi-frame object (0-based); `None` for a single-frame file.
    pub frame: Option<usize>,
    /// Image Position (Patient) of the slice.
    pub position: [f64; 3],
}

/// A DICOM series read as a volume.
#[derive(Debug, Clone)]
pub struct DicomSeries {
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Rescaled values, i fastest.
    pub values: Vec<f32>,
    /// Column spacing, row spacing, slice spacing (mm).
    pub spacing: [f64; 3],
    /// Direction of increasing column index, of increasing row index, of increasing slice index
    /// (unit vectors, LPS).
    pub directions: [[f64; 3]; 3],
    /// Position of voxel (0, 0, 0) (LPS, mm).
    pub origin: [f64; 3],
    /// One per slice, in slice order.
    pub sources: Vec<SliceSource>,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub frame_of_reference_uid: String,
    /// The first slice's window, when it has one.
    pub window: Option<Window>,
    /// MONOCHROME1 (display inverted).
    pub invert: bool,
    /// Patient/study attributes of the first slice (tag, value), for derived objects.
    pub patient_study: Vec<(u32, String)>,
    /// Files skipped and other things the user should know.
    pub notes: Vec<String>,
}

impl DicomSeries {
    /// Voxel index (i, j, k, 1) to LPS millimetres.
    pub fn affine_lps(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for (r, row) in a.iter_mut().enumerate().take(3) {
            for (c, (dir, sp)) in self.directions.iter().zip(self.spacing).enumerate() {
                row[c] = dir[r] * sp;
            }
            row[3] = self.origin[r];
        }
        a[3][3] = 1.0;
        a
    }
    /// Voxel index to RAS millimetres (a NIfTI sform).
    pub fn affine_ras(&self) -> [[f64; 4]; 4] {
        let mut a = self.affine_lps();
        for row in a.iter_mut().take(2) {
            for v in row.iter_mut() {
                *v = -*v;
            }
        }
        a
    }
}

/// One slice before sorting.
struct Slice {
    src: SliceSource,
    rows: usize,
    cols: usize,
    iop: [f64; 6],
    spacing: [f64; 2],
    values: Vec<f32>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > 32 {
        bail!("{}: folders nested too deeply", dir.display());
    }
    let rd = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: cannot read folder: {e}", dir.display()))?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out, depth + 1)?;
        } else if p.is_file() {
            out.push(p);
            if out.len() > MAX_FILES {
                bail!("{}: more than {MAX_FILES} files", dir.display());
            }
        }
    }
    Ok(())
}

fn seq_item(item: &Item, tag: u32) -> Option<&Item> {
    item.iter().find(|e| e.0 == tag).and_then(|e| match &e.1 {
        Value::Seq(items) => items.first(),
        Value::Bytes(_) => None,
    })
}

fn item_numbers(item: &Item, tag: u32) -> Option<Vec<f64>> {
    item.iter().find(|e| e.0 == tag).and_then(|e| match &e.1 {
        Value::Bytes(b) => super::dicom::parse_numbers(
            String::from_utf8_lossy(b).trim_matches(|c: char| c == '\0' || c.is_whitespace()),
        ),
        Value::Seq(_) => None,
    })
}

/// A functional-group attribute: in the frame's item, else in the shared item.
fn group_numbers(per: Option<&Item>, shared: Option<&Item>, seq: u32, tag: u32) -> Option<Vec<f64>> {
    [per, shared].into_iter().flatten().find_map(|g| seq_item(g, seq).and_then(|i| item_numbers(i, tag)))
}

fn arr<const N: usize>(v: Option<Vec<f64>>, what: &str) -> Result<[f64; N]> {
    let v = v.ok_or_else(|| anyhow!("no {what}"))?;
    v.get(..N).and_then(|s| s.try_into().ok()).ok_or_else(|| anyhow!("{what} has {} values, {N} needed", v.len()))
}

/// The slices of one object (one, or one per frame).
fn slices_of(path: &Path, o: &Object) -> Result<Vec<Slice>> {
    if o.samples != 1 {
        bail!("colour ({} samples per pixel) is not supported in a series", o.samples);
    }
    let sop = o.text(0x0008_0018).unwrap_or_default().to_string();
    let class = o.text(0x0008_0016).unwrap_or_default().to_string();
    let n = o.rows * o.cols;
    let mut out = Vec::with_capacity(o.frames);
    let per = o.sequence(0x5200_9230);
    let shared = o.sequence(0x5200_9229).and_then(|s| s.first());
    if o.frames > 1 || per.is_some() {
        let per = per.ok_or_else(|| anyhow!("multi-frame object without per-frame functional groups (5200,9230)"))?;
        if per.len() != o.frames {
            bail!("{} frames but {} per-frame functional groups", o.frames, per.len());
        }
        for (f, g) in per.iter().enumerate() {
            let g = Some(g);
            let ipp =
                arr::<3>(group_numbers(g, shared, 0x0020_9113, 0x0020_0032), "Image Position (Patient) of a frame")
                    .map_err(|e| anyhow!("frame {f}: {e}"))?;
            let iop = arr::<6>(group_numbers(g, shared, 0x0020_9116, 0x0020_0037), "Image Orientation (Patient)")
                .map_err(|e| anyhow!("frame {f}: {e}"))?;
            let spacing = arr::<2>(group_numbers(g, shared, 0x0028_9110, 0x0028_0030), "Pixel Spacing")
                .map_err(|e| anyhow!("frame {f}: {e}"))?;
            let (s0, i0) = o.slope_intercept()?;
            let slope =
                group_numbers(g, shared, 0x0028_9145, 0x0028_1053).and_then(|v| v.first().copied()).unwrap_or(s0);
            let inter =
                group_numbers(g, shared, 0x0028_9145, 0x0028_1052).and_then(|v| v.first().copied()).unwrap_or(i0);
            let values = o.raw_frame(f).into_iter().map(|v| (v as f64 * slope + inter) as f32).collect();
            out.push(Slice {
                src: SliceSource {
                    path: path.to_path_buf(),
                    sop_instance_uid: sop.clone(),
                    sop_class_uid: class.clone(),
                    frame: Some(f),
                    position: ipp,
                },
                rows: o.rows,
                cols: o.cols,
                iop,
                spacing,
                values,
            });
        }
        return Ok(out);
    }
    let ipp = arr::<3>(o.numbers(0x0020_0032), "Image Position (Patient) (0020,0032)")?;
    let iop = arr::<6>(o.numbers(0x0020_0037), "Image Orientation (Patient) (0020,0037)")?;
    let spacing = arr::<2>(o.numbers(0x0028_0030), "Pixel Spacing (0028,0030)")?;
    let (slope, inter) = o.slope_intercept()?;
    let values: Vec<f32> = o.raw_frame(0).into_iter().map(|v| (v as f64 * slope + inter) as f32).collect();
    debug_assert_eq!(values.len(), n);
    out.push(Slice {
        src: SliceSource {
            path: path.to_path_buf(),
            sop_instance_uid: sop,
            sop_class_uid: class,
            frame: None,
            position: ipp,
        },
        rows: o.rows,
        cols: o.cols,
        iop,
        spacing,
        values,
    });
    Ok(out)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(a, a).sqrt();
    (n > 1e-6).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

fn name(s: &SliceSource) -> String {
    match s.frame {
        Some(f) => format!("{} (frame {f})", s.path.display()),
        None => s.path.display().to_string(),
    }
}

/// The Series Instance UID of the DICOM image `path` (from its header; empty when absent), or
/// `None` when it is not a DICOM image (not DICOM, or no pixel data). For grouping the files of
/// a folder before reading them.
pub fn dicom_series_uid(path: &Path) -> Result<Option<String>> {
    let bytes = super::read::read_bytes(path)?;
    match super::dicom::series_uid(&bytes) {
        Ok(uid) => Ok(uid),
        Err(e) if e.to_string().starts_with("not a DICOM") => Ok(None),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

/// Reads the series in `dir` (recursively); errors are one line naming the folder or the files.
pub fn read_dicom_series(dir: &Path) -> Result<DicomSeries> {
    let d = dir.display();
    if !dir.is_dir() {
        bail!("{d}: not a folder");
    }
    let mut files = Vec::new();
    walk(dir, &mut files, 0)?;
    let mut notes = Vec::new();
    // Series UID -> (objects).
    let mut series: Vec<(String, Vec<(PathBuf, Object)>)> = Vec::new();
    let mut voxels = 0u64;
    for p in files {
        let bytes = super::read::read_bytes(&p)?;
        let o = match read_object(&bytes) {
            Ok(o) => o,
            // Not DICOM, or DICOM without an image: skipped.
            Err(e) if e.to_string().starts_with("not a DICOM") || e.to_string() == "no pixel data" => {
                notes.push(format!("skipped {} ({e})", p.display()));
                continue;
            }
            Err(e) => bail!("{}: {e}", p.display()),
        };
        voxels += (o.rows * o.cols * o.frames) as u64;
        if voxels > MAX_SERIES_VOXELS {
            bail!("{d}: the series has more than the limit of {MAX_SERIES_VOXELS} voxels");
        }
        let uid = o.text(0x0020_000E).unwrap_or_default().to_string();
        match series.iter_mut().find(|s| s.0 == uid) {
            Some(s) => s.1.push((p, o)),
            None => series.push((uid, vec![(p, o)])),
        }
    }
    if series.is_empty() {
        bail!("{d}: no DICOM images in the folder");
    }
    if series.len() > 1 {
        let list: Vec<String> = series
            .iter()
            .map(|(u, v)| {
                format!("{} ({} files, e.g. {})", if u.is_empty() { "no UID" } else { u }, v.len(), v[0].0.display())
            })
            .collect();
        bail!("{d}: holds {} series: {}; give the folder of one", series.len(), list.join("; "));
    }
    let (uid, objects) = series.pop().expect("one series");
    let first = &objects[0].1;
    let study = first.text(0x0020_000D).unwrap_or_default().to_string();
    let frame_of_ref = first.text(0x0020_0052).unwrap_or_default().to_string();
    let window = first.window().map_err(|e| anyhow!("{}: {e}", objects[0].0.display()))?;
    let invert = first.photometric == "MONOCHROME1";
    let thickness = first.numbers(0x0018_0050).and_then(|v| v.first().copied()).filter(|v| *v > 0.0);
    let patient_study = super::dicom::KEPT
        .iter()
        .filter(|t| {
            (**t >> 16) == 0x0010 || matches!(**t, 0x0008_0020 | 0x0008_0030 | 0x0008_0050 | 0x0008_0090 | 0x0020_0010)
        })
        .filter_map(|&t| first.text(t).map(|v| (t, v.to_string())))
        .collect();
    if objects.iter().filter(|o| o.1.frames > 1).count() > 0 && objects.len() > 1 {
        bail!(
            "{d}: a multi-frame object ({}) with other files in one series",
            objects.iter().find(|o| o.1.frames > 1).unwrap().0.display()
        );
    }
    let mut slices = Vec::new();
    for (p, o) in &objects {
        slices.extend(slices_of(p, o).map_err(|e| anyhow!("{}: {e}", p.display()))?);
    }
    drop(objects);
    let r0 = &slices[0];
    for s in &slices[1..] {
        if (s.rows, s.cols) != (r0.rows, r0.cols) {
            bail!(
                "{d}: mixed sizes: {} is {}x{}, {} is {}x{}",
                name(&s.src),
                s.cols,
                s.rows,
                name(&r0.src),
                r0.cols,
                r0.rows
            );
        }
        if s.iop.iter().zip(&r0.iop).any(|(a, b)| (a - b).abs() > 1e-4) {
            bail!(
                "{d}: mixed orientations: {} and {} differ in Image Orientation (Patient)",
                name(&s.src),
                name(&r0.src)
            );
        }
        if s.spacing.iter().zip(&r0.spacing).any(|(a, b)| (a - b).abs() > 1e-4) {
            bail!("{d}: mixed pixel spacings: {} and {}", name(&s.src), name(&r0.src));
        }
    }
    let (rows, cols, iop, pspacing, r0name) = (r0.rows, r0.cols, r0.iop, r0.spacing, name(&r0.src));
    let row = unit([iop[0], iop[1], iop[2]]);
    let col = unit([iop[3], iop[4], iop[5]]);
    let (Some(row), Some(col)) = (row, col) else {
        bail!("{r0name}: Image Orientation (Patient) is not two directions")
    };
    if dot(row, col).abs() > 1e-3 {
        bail!("{r0name}: Image Orientation (Patient) rows and columns are not perpendicular");
    }
    let normal = cross(row, col);
    slices.sort_by(|a, b| dot(a.src.position, normal).total_cmp(&dot(b.src.position, normal)));
    let pos: Vec<f64> = slices.iter().map(|s| dot(s.src.position, normal)).collect();
    for w in 0..pos.len().saturating_sub(1) {
        if (pos[w + 1] - pos[w]).abs() < 1e-3 {
            bail!(
                "{d}: two slices at one position ({:.3} mm along the normal): {} and {}",
                pos[w],
                name(&slices[w].src),
                name(&slices[w + 1].src)
            );
        }
    }
    let nz = slices.len();
    let dz = if nz > 1 {
        let mut gaps: Vec<f64> = pos.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let step = gaps[0];
        for w in 0..nz - 1 {
            let g = pos[w + 1] - pos[w];
            if (g - step).abs() > 0.01 * step + 1e-3 {
                let missing = (g / step).round() as i64 - 1;
                let what = if missing >= 1 { format!("{missing} slice(s) missing") } else { "uneven spacing".into() };
                bail!(
                    "{d}: {what} between {} and {} ({g:.3} mm apart, the others {step:.3} mm)",
                    name(&slices[w].src),
                    name(&slices[w + 1].src)
                );
            }
        }
        (pos[nz - 1] - pos[0]) / (nz - 1) as f64
    } else {
        thickness.unwrap_or(1.0)
    };
    // The slice direction from the positions (equal to the normal unless the stack is sheared).
    let kdir = if nz > 1 {
        let (a, b) = (slices[0].src.position, slices[nz - 1].src.position);
        unit([b[0] - a[0], b[1] - a[1], b[2] - a[2]]).unwrap_or(normal)
    } else {
        normal
    };
    let spacing = [pspacing[1], pspacing[0], dz];
    let origin = slices[0].src.position;
    let mut values = Vec::with_capacity(rows * cols * nz);
    let mut sources = Vec::with_capacity(nz);
    for s in slices {
        values.extend_from_slice(&s.values);
        sources.push(s.src);
    }
    Ok(DicomSeries {
        dims: [cols, rows, nz],
        values,
        spacing,
        directions: [row, col, kdir],
        origin,
        sources,
        series_instance_uid: uid,
        study_instance_uid: study,
        frame_of_reference_uid: frame_of_ref,
        window,
        invert,
        patient_study,
        notes,
    })
}
