//! PNG/JPEG/TIFF/BMP decoding with PIL-like conversions.

use std::io::Cursor;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, ImageReader, Limits, RgbImage};

/// Largest image (width * height) we decode; guards against decompression bombs.
pub const MAX_PIXELS: u64 = 100_000_000;

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
}

/// Decodes a raster image (format from magic bytes), checking its size first.
pub(crate) fn decode_raster(path: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    let p = path.display();
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    if reader.format().is_none() {
        bail!("{p}: unknown image format (expected PNG, JPEG, TIFF or BMP)");
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| anyhow!("{p}: cannot decode image header: {e}"))?;
    check_size(path, w as u64, h as u64)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // 16 bytes per pixel covers RGBA f32 plus decoder scratch.
    limits.max_alloc = Some(MAX_PIXELS * 16);
    reader.limits(limits);
    reader.decode().map_err(|e| anyhow!("{p}: cannot decode image: {e}"))
}

pub(crate) fn check_size(path: &Path, w: u64, h: u64) -> Result<()> {
    if w == 0 || h == 0 {
        bail!("{}: image has zero size ({w}x{h})", path.display());
    }
    if w.saturating_mul(h) > MAX_PIXELS {
        bail!(
            "{}: image is {w}x{h} = {} pixels, more than the limit of {MAX_PIXELS}",
            path.display(),
            w * h
        );
    }
    Ok(())
}

/// Width and height of an image or mask file without decoding its pixels (rasters read only
/// the header; NIfTI and DICOM are decoded, default slice).
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let p = path.display();
    let mut head = [0u8; 352];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => bail!("{p}: cannot read: {e}"),
            }
        }
        n
    };
    if super::window::medical_kind(path, &head[..n]).is_some() {
        return Ok(read_mask(path)?.dimensions());
    }
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    if reader.format().is_none() {
        bail!("{p}: unknown image format (expected PNG, JPEG, TIFF or BMP)");
    }
    let (w, h) = reader.into_dimensions().map_err(|e| anyhow!("{p}: cannot decode image header: {e}"))?;
    check_size(path, w as u64, h as u64)?;
    Ok((w, h))
}

/// Reads an image as 8-bit RGB, as PIL's `Image.open(p).convert("RGB")` does for 8-bit data:
/// grey is replicated, alpha is dropped (not composited). 16-bit samples are scaled to 8 bits
/// (v / 257, rounded) rather than clipped as PIL does. EXIF orientation is not applied (PIL
/// doesn't either). For NIfTI/DICOM/windowing use [`super::read_image_any`].
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = read_bytes(path)?;
    Ok(decode_raster(path, &bytes)?.into_rgb8())
}

/// Reads a mask as 0/255. Colour masks go to luma as PIL's `convert("L")`; then > 127 -> 255.
/// The same threshold applies to JPEG masks (their edges are blurred by compression).
/// NIfTI and DICOM masks (by extension or magic) count any non-zero voxel as foreground.
pub fn read_mask(path: &Path) -> Result<GrayImage> {
    read_mask_any(path, &super::ReadOptions::default())
}

/// [`read_mask`] with options; only `opts.slice` matters (which slice of a NIfTI volume).
pub fn read_mask_any(path: &Path, opts: &super::ReadOptions) -> Result<GrayImage> {
    let bytes = read_bytes(path)?;
    if let Some(kind) = super::window::medical_kind(path, &bytes) {
        return super::window::read_medical_mask(path, &bytes, kind, opts.slice);
    }
    let img = decode_raster(path, &bytes)?;
    let mut gray = to_luma_pil(&img);
    for v in gray.iter_mut() {
        *v = if *v > 127 { 255 } else { 0 };
    }
    Ok(gray)
}

/// PIL's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
pub(crate) fn to_luma_pil(img: &DynamicImage) -> GrayImage {
    match img {
        DynamicImage::ImageLuma8(g) => g.clone(),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            img.to_luma8()
        }
        _ => {
            let rgb = img.to_rgb8();
            let (w, h) = rgb.dimensions();
            let data = rgb
                .pixels()
                .map(|p| {
                    let [r, g, b] = p.0;
                    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
                })
                .collect();
            GrayImage::from_raw(w, h, data).expect("buffer size matches")
        }
    }
}
