//! Types shared by the format readers and the dispatcher: windows, read options, decoded data,
//! the size limit.

use std::path::Path;

use anyhow::{bail, Result};
use image::RgbImage;

/// Largest image (width * height) we decode; guards against decompression bombs.
pub const MAX_PIXELS: u64 = 100_000_000;

static INFLATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts bytes a gzip or deflate reader produced (see [`inflated_bytes`]).
pub(crate) fn count_inflated(n: u64) {
    INFLATED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Bytes inflated so far by this process's `.nii.gz` and deflated-DICOM readers: lets a test
/// prove that a decompression bomb was refused before it was inflated.
pub fn inflated_bytes() -> u64 {
    INFLATED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Errors unless `w` x `h` is non-empty and at most [`MAX_PIXELS`].
pub(crate) fn check_size(path: &Path, w: u64, h: u64) -> Result<()> {
    if w == 0 || h == 0 {
        bail!("{}: image has zero size ({w}x{h})", path.display());
    }
    if w.saturating_mul(h) > MAX_PIXELS {
        bail!("{}: image is {w}x{h} = {} pixels, more than the limit of {MAX_PIXELS}", path.display(), w * h);
    }
    Ok(())
}

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
    Percentile {
        low: f64,
        high: f64,
    },
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

/// Decoded data before windowing, as the format readers return it.
pub(crate) enum Decoded {
    Gray { width: u32, height: u32, values: Vec<f32>, file_window: Option<Window>, invert: bool },
    Rgb(RgbImage),
}

impl Decoded {
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        match self {
            Decoded::Gray { width, height, .. } => (*width, *height),
            Decoded::Rgb(img) => img.dimensions(),
        }
    }
}
