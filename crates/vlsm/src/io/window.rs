//! Medical formats (NIfTI, DICOM) and 16-bit greyscale, windowed to 8 bits.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, RgbImage};

use super::raster::{check_size, decode_raster, read_bytes};
use super::{dicom, nifti};

/// A DICOM-style linear window: values below `center - width/2` map to 0, above
/// `center + width/2` to 255 (PS3.3 C.11.2.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

/// How single-channel data with more than 8 bits is mapped to 0..255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Windowing {
    /// The file's own window (DICOM Window Center/Width) when it has one, else
    /// `Percentile { low: 0.5, high: 99.5 }`.
    Auto,
    Fixed(Window),
    /// Linear from the `low` to the `high` percentile of the finite values (numpy's linear rule).
    Percentile { low: f64, high: f64 },
    /// Linear from the minimum to the maximum.
    MinMax,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadOptions {
    pub windowing: Windowing,
    /// Slice along the third axis of a NIfTI volume; `None` = the middle slice (nz / 2).
    pub slice: Option<usize>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { windowing: Windowing::Auto, slice: None }
    }
}

/// Decoded medical data before windowing.
pub(crate) enum Decoded {
    Gray { width: u32, height: u32, values: Vec<f32>, file_window: Option<Window>, invert: bool },
    Rgb(RgbImage),
}

#[derive(Clone, Copy)]
pub(crate) enum Medical {
    Nifti,
    Dicom,
}

pub(crate) fn medical_kind(path: &Path, bytes: &[u8]) -> Option<Medical> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        return Some(Medical::Nifti);
    }
    if name.ends_with(".dcm") || name.ends_with(".dicom") {
        return Some(Medical::Dicom);
    }
    if bytes.get(128..132) == Some(b"DICM") {
        return Some(Medical::Dicom);
    }
    if bytes.get(344..348) == Some(b"n+1\0") || bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(Medical::Nifti);
    }
    None
}

fn decode_medical(path: &Path, bytes: &[u8], kind: Medical, slice: Option<usize>) -> Result<Decoded> {
    let d = match kind {
        Medical::Nifti => nifti::decode(bytes, slice),
        Medical::Dicom => dicom::decode(bytes),
    }
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let (w, h) = match &d {
        Decoded::Gray { width, height, .. } => (*width, *height),
        Decoded::Rgb(img) => img.dimensions(),
    };
    check_size(path, w as u64, h as u64)?;
    Ok(d)
}

/// Reads any supported image as 8-bit RGB, dispatching by extension and magic bytes:
/// NIfTI (`.nii`, `.nii.gz`; 2-D, or one slice of a 3-D volume; scl_slope/inter applied),
/// single-frame DICOM (uncompressed; Rescale Slope/Intercept applied, MONOCHROME1 inverted),
/// 16-bit greyscale PNG/TIFF (windowed by `opts.windowing`), and otherwise as [`super::read_rgb`].
pub fn read_image_any(path: &Path, opts: &ReadOptions) -> Result<RgbImage> {
    let bytes = read_bytes(path)?;
    let decoded = match medical_kind(path, &bytes) {
        Some(kind) => decode_medical(path, &bytes, kind, opts.slice)?,
        None => match decode_raster(path, &bytes)? {
            DynamicImage::ImageLuma16(g) => {
                let (width, height) = g.dimensions();
                let values = g.into_raw().into_iter().map(|v| v as f32).collect();
                Decoded::Gray { width, height, values, file_window: None, invert: false }
            }
            other => return Ok(other.into_rgb8()),
        },
    };
    match decoded {
        Decoded::Rgb(img) => Ok(img),
        Decoded::Gray { width, height, values, file_window, invert } => {
            let g = window_to_u8(&values, opts.windowing, file_window, invert)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let gray = GrayImage::from_raw(width, height, g).expect("buffer size matches");
            Ok(DynamicImage::ImageLuma8(gray).into_rgb8())
        }
    }
}

/// Single-channel values before windowing: rescaled DICOM or NIfTI data, or 16-bit greyscale.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarImage {
    pub width: u32,
    pub height: u32,
    /// Row-major, after Rescale Slope/Intercept (DICOM) or scl_slope/scl_inter (NIfTI).
    pub values: Vec<f32>,
    /// DICOM Window Center/Width (the first pair), when present.
    pub file_window: Option<Window>,
    /// DICOM MONOCHROME1: low values are bright.
    pub monochrome1: bool,
}

/// Reads the raw values of a NIfTI slice, a greyscale DICOM, or a greyscale PNG/TIFF
/// (8 or 16 bits); colour data is an error.
pub fn read_scalar(path: &Path, slice: Option<usize>) -> Result<ScalarImage> {
    let bytes = read_bytes(path)?;
    let decoded = match medical_kind(path, &bytes) {
        Some(kind) => decode_medical(path, &bytes, kind, slice)?,
        None => match decode_raster(path, &bytes)? {
            DynamicImage::ImageLuma16(g) => {
                let (width, height) = g.dimensions();
                let values = g.into_raw().into_iter().map(|v| v as f32).collect();
                Decoded::Gray { width, height, values, file_window: None, invert: false }
            }
            DynamicImage::ImageLuma8(g) => {
                let (width, height) = g.dimensions();
                let values = g.into_raw().into_iter().map(|v| v as f32).collect();
                Decoded::Gray { width, height, values, file_window: None, invert: false }
            }
            _ => bail!("{}: a colour image has no single-channel values", path.display()),
        },
    };
    match decoded {
        Decoded::Gray { width, height, values, file_window, invert } => {
            Ok(ScalarImage { width, height, values, file_window, monochrome1: invert })
        }
        Decoded::Rgb(_) => bail!("{}: a colour image has no single-channel values", path.display()),
    }
}

/// Reads a NIfTI/DICOM mask: any non-zero value (after scaling) is foreground (255).
pub(crate) fn read_medical_mask(path: &Path, bytes: &[u8], kind: Medical, slice: Option<usize>) -> Result<GrayImage> {
    match decode_medical(path, bytes, kind, slice)? {
        Decoded::Gray { width, height, values, .. } => {
            let v = values.iter().map(|&x| if x != 0.0 && !x.is_nan() { 255 } else { 0 }).collect();
            Ok(GrayImage::from_raw(width, height, v).expect("buffer size matches"))
        }
        Decoded::Rgb(img) => {
            let (w, h) = img.dimensions();
            let v = img.pixels().map(|p| if p.0 != [0, 0, 0] { 255 } else { 0 }).collect();
            Ok(GrayImage::from_raw(w, h, v).expect("buffer size matches"))
        }
    }
}

/// Maps values to 0..255. Non-finite values map to 0.
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
pub fn window_to_u8(
    values: &[f32],
    windowing: Windowing,
    file_window: Option<Window>,
    invert: bool,
) -> Result<Vec<u8>> {
    let auto = Windowing::Percentile { low: 0.5, high: 99.5 };
    let w = match windowing {
        Windowing::Auto => file_window.map(Windowing::Fixed).unwrap_or(auto),
        w => w,
    };
    let map: Box<dyn Fn(f64) -> f64> = match w {
        Windowing::Fixed(Window { center: c, width: wd }) => {
            if !(wd >= 1.0) || !c.is_finite() || !wd.is_finite() {
                bail!("window width must be >= 1 and finite (center {c}, width {wd})");
            }
            let (lo, hi) = (c - 0.5 - (wd - 1.0) / 2.0, c - 0.5 + (wd - 1.0) / 2.0);
            Box::new(move |x| {
                if x <= lo {
                    0.0
                } else if x > hi {
                    255.0
                } else {
                    ((x - (c - 0.5)) / (wd - 1.0) + 0.5) * 255.0
                }
            })
        }
        Windowing::Percentile { low, high } => {
            if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                bail!("percentiles must satisfy 0 <= low < high <= 100 (got {low}, {high})");
            }
            let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_unstable_by(f32::total_cmp);
            linear(percentile(&v, low), percentile(&v, high))
        }
        Windowing::MinMax => {
            let fin = values.iter().copied().filter(|x| x.is_finite());
            let lo = fin.clone().fold(f32::INFINITY, f32::min) as f64;
            let hi = fin.fold(f32::NEG_INFINITY, f32::max) as f64;
            linear(lo, hi)
        }
        Windowing::Auto => unreachable!(),
    };
    Ok(values
        .iter()
        .map(|&x| {
            let y = if x.is_finite() { map(x as f64).round().clamp(0.0, 255.0) as u8 } else { 0 };
            if invert { 255 - y } else { y }
        })
        .collect())
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
fn linear(lo: f64, hi: f64) -> Box<dyn Fn(f64) -> f64> {
    if !(hi > lo) {
        // Constant (or empty) data: everything maps to 0.
        return Box::new(|_| 0.0);
    }
    Box::new(move |x| (x - lo) / (hi - lo) * 255.0)
}

/// numpy.percentile with the default linear interpolation, on sorted data.
fn percentile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    let f = pos - i as f64;
    sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * f
}
