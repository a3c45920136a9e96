//! The dispatcher: sniffs each file's format and hands it to the raster, DICOM or NIfTI reader,
//! then windows single-channel data to 8 bits. The readers never call back into this module.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, RgbImage};

use super::raster::{decode_raster, raster_dimensions, to_luma_pil};
use super::sniff::{read_head, sniff, Format};
use super::types::{check_size, Decoded, ReadOptions, ScalarImage};
use super::window::window_to_u8;
use super::{dicom, nifti};

/// Largest input file read whole (2 GiB): past the pixel limits of every format.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// A regular file's bytes, at most `MAX_FILE_BYTES`. Devices, FIFOs and directories are refused
/// before they are opened (`/dev/zero` would never end, a FIFO would block).
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let p = path.display();
    let md = super::sniff::regular_file(path)?;
    if md.len() > MAX_FILE_BYTES {
        bail!("{p}: {} bytes, more than the limit of {MAX_FILE_BYTES}", md.len());
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    let f = std::fs::File::open(path).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    // The file may grow between the metadata and the read: never past the limit.
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("{p}: more than the limit of {MAX_FILE_BYTES} bytes");
    }
    Ok(bytes)
}

/// A raster image (PNG, JPEG, TIFF, BMP) as decoded, channels and depth kept; the pixel limit is
/// checked from the header and truncated JPEGs are refused.
pub fn read_raster(path: &Path) -> Result<DynamicImage> {
    decode_raster(path, &read_bytes(path)?)
}

/// Decodes a NIfTI or DICOM file; errors name the file.
fn decode_medical(path: &Path, bytes: &[u8], format: Format, slice: Option<usize>) -> Result<Decoded> {
    let d = match format {
        Format::Nifti => nifti::decode(bytes, slice),
        Format::Dicom => dicom::decode(bytes, slice),
        Format::Raster => unreachable!("rasters are not medical formats"),
    }
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let (w, h) = d.dimensions();
    check_size(path, w as u64, h as u64)?;
    Ok(d)
}

/// A greyscale raster (8 or 16 bits) as unwindowed values; `None` for any other layout.
fn raster_gray(img: &DynamicImage) -> Option<Decoded> {
    let (width, height) = (img.width(), img.height());
    let values = match img {
        DynamicImage::ImageLuma8(g) => g.as_raw().iter().map(|&v| v as f32).collect(),
        DynamicImage::ImageLuma16(g) => g.as_raw().iter().map(|&v| v as f32).collect(),
        _ => return None,
    };
    Some(Decoded::Gray { width, height, values, file_window: None, invert: false })
}

/// Reads any supported image as 8-bit RGB, dispatching by extension and magic bytes:
/// NIfTI (`.nii`, `.nii.gz`; 2-D, or one slice of a 3-D volume; scl_slope/inter applied),
/// single-frame DICOM (uncompressed; Rescale Slope/Intercept applied, MONOCHROME1 inverted),
/// 16-bit greyscale PNG/TIFF (windowed by `opts.windowing`), and otherwise as [`read_rgb`].
pub fn read_image_any(path: &Path, opts: &ReadOptions) -> Result<RgbImage> {
    let bytes = read_bytes(path)?;
    let decoded = match sniff(path, &bytes) {
        Format::Raster => match decode_raster(path, &bytes)? {
            img @ DynamicImage::ImageLuma16(_) => raster_gray(&img).expect("16-bit grey"),
            other => return Ok(other.into_rgb8()),
        },
        format => decode_medical(path, &bytes, format, opts.slice)?,
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

/// Reads the raw values of a NIfTI slice, a greyscale DICOM, or a greyscale PNG/TIFF
/// (8 or 16 bits); colour data is an error.
pub fn read_scalar(path: &Path, slice: Option<usize>) -> Result<ScalarImage> {
    let bytes = read_bytes(path)?;
    let decoded = match sniff(path, &bytes) {
        Format::Raster => raster_gray(&decode_raster(path, &bytes)?),
        format => Some(decode_medical(path, &bytes, format, slice)?),
    };
    match decoded {
        Some(Decoded::Gray { width, height, values, file_window, invert }) => {
            Ok(ScalarImage { width, height, values, file_window, monochrome1: invert })
        }
        Some(Decoded::Rgb(_)) | None => {
            bail!("{}: a colour image has no single-channel values", path.display())
        }
    }
}

/// Reads an image as 8-bit RGB, as PIL's `Image.open(p).convert("RGB")` does for 8-bit data:
/// grey is replicated, alpha is dropped (not composited). 16-bit samples are scaled to 8 bits
/// (v / 257, rounded) rather than clipped as PIL does. EXIF orientation is not applied (PIL
/// doesn't either). For NIfTI/DICOM/windowing use [`read_image_any`].
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = read_bytes(path)?;
    Ok(decode_raster(path, &bytes)?.into_rgb8())
}

/// Reads a mask as 0/255. Colour masks go to luma as PIL's `convert("L")`; then > 127 -> 255.
/// The same threshold applies to JPEG masks (their edges are blurred by compression).
/// NIfTI and DICOM masks (by extension or magic) count any non-zero voxel as foreground.
pub fn read_mask(path: &Path) -> Result<GrayImage> {
    read_mask_any(path, &ReadOptions::default())
}

/// [`read_mask`] with options; only `opts.slice` matters (which slice of a NIfTI volume).
pub fn read_mask_any(path: &Path, opts: &ReadOptions) -> Result<GrayImage> {
    let bytes = read_bytes(path)?;
    let format = sniff(path, &bytes);
    if format != Format::Raster {
        return medical_mask(path, &bytes, format, opts.slice);
    }
    let img = decode_raster(path, &bytes)?;
    let mut gray = to_luma_pil(&img);
    for v in gray.iter_mut() {
        *v = if *v > 127 { 255 } else { 0 };
    }
    Ok(gray)
}

/// A NIfTI/DICOM mask: any non-zero value (after scaling) is foreground (255).
fn medical_mask(path: &Path, bytes: &[u8], format: Format, slice: Option<usize>) -> Result<GrayImage> {
    match decode_medical(path, bytes, format, slice)? {
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

/// Width and height of an image or mask file without decoding its pixels (rasters, NIfTI and
/// DICOM: from their headers; a .nii.gz or deflated DICOM is inflated only that far).
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let head = read_head(path)?;
    match sniff(path, &head) {
        Format::Raster => raster_dimensions(path, &head),
        // From the header alone: a .nii.gz is not inflated past it (limits come before the data).
        Format::Nifti => nifti::dimensions(&read_bytes(path)?).map_err(|e| anyhow!("{}: {e}", path.display())),
        // From the attributes before the pixel data: a deflated data set is inflated only that far.
        Format::Dicom => dicom::dimensions(&read_bytes(path)?).map_err(|e| anyhow!("{}: {e}", path.display())),
    }
}

/// What kind of file a path holds, by name, else by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Nifti,
    Dicom,
    /// Anything else: PNG, JPEG, TIFF, BMP, or not an image.
    Raster,
}

/// The [`FileKind`] of `path` (errors when it is not a readable regular file).
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let head = read_head(path)?;
    Ok(match sniff(path, &head) {
        Format::Nifti => FileKind::Nifti,
        Format::Dicom => FileKind::Dicom,
        Format::Raster => FileKind::Raster,
    })
}
