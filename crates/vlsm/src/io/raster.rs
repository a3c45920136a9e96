//! PNG/JPEG/TIFF/BMP decoding with PIL-like conversions (JPEG by libjpeg-turbo's decoder, `jpeg.rs`).

use std::io::Cursor;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, ImageReader, Limits};

use super::jpeg::{decode_jpeg, is_jpeg, jpeg_dimensions};
use super::types::{check_size, MAX_PIXELS};

/// Decodes a raster image (format from magic bytes), checking its size first.
pub(crate) fn decode_raster(path: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    let p = path.display();
    if is_jpeg(bytes) {
        // libjpeg fills a truncated scan with grey (with a warning) and carries on.
        if !jpeg_complete(bytes) {
            bail!("{p}: truncated JPEG (no end-of-image marker after the scan)");
        }
        return decode_jpeg(path, bytes);
    }
    let reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    match reader.format() {
        None => bail!("{p}: unknown image format (expected PNG, JPEG, TIFF or BMP)"),
        Some(_) => check_bmp_size(path, bytes)?,
    }
    let (w, h) = reader.into_dimensions().map_err(|e| anyhow!("{p}: cannot decode image header: {e}"))?;
    check_size(path, w as u64, h as u64)?;
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // 16 bytes per pixel covers RGBA f32 plus decoder scratch.
    limits.max_alloc = Some(MAX_PIXELS * 16);
    reader.limits(limits);
    reader.decode().map_err(|e| anyhow!("{p}: cannot decode image: {e}"))
}

/// A BMP whose header says width or height 0: the decoder calls that "too large".
fn check_bmp_size(path: &Path, head: &[u8]) -> Result<()> {
    if head.starts_with(b"BM") && head.len() >= 26 {
        let w = i32::from_le_bytes([head[18], head[19], head[20], head[21]]);
        let h = i32::from_le_bytes([head[22], head[23], head[24], head[25]]);
        if w == 0 || h == 0 {
            bail!("{}: image has zero size ({w}x{})", path.display(), h.unsigned_abs());
        }
    }
    Ok(())
}

/// Whether a JPEG's segments lead to a scan that an end-of-image marker (FF D9) closes. Marker
/// segments are skipped by their lengths (an EXIF thumbnail's own FF D9 sits inside APP1); in
/// entropy-coded data an FF byte is always followed by 00 or a restart/next marker, so the first
/// FF D9 after the first scan header is the image's end. A cut file has none.
pub(crate) fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xDA {
            let scan = bytes.get(i + 2 + len..).unwrap_or(&[]);
            return scan.windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// Width and height of a raster file from its header only.
pub(crate) fn raster_dimensions(path: &Path, head: &[u8]) -> Result<(u32, u32)> {
    let p = path.display();
    check_bmp_size(path, head)?;
    if is_jpeg(head) {
        return jpeg_dimensions(path);
    }
    let reader =
        ImageReader::open(path).and_then(|r| r.with_guessed_format()).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    if reader.format().is_none() {
        bail!("{p}: unknown image format (expected PNG, JPEG, TIFF or BMP)");
    }
    let (w, h) = reader.into_dimensions().map_err(|e| anyhow!("{p}: cannot decode image header: {e}"))?;
    check_size(path, w as u64, h as u64)?;
    Ok((w, h))
}

/// PIL's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
pub(crate) fn to_luma_pil(img: &DynamicImage) -> GrayImage {
    match img {
        DynamicImage::ImageLuma8(g) => g.clone(),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => img.to_luma8(),
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
