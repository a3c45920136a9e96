//! JPEG decoding with libjpeg-turbo's decoder (as mozjpeg vendors it) at its defaults: integer
//! slow IDCT, fancy chroma upsampling, libjpeg's colour conversion. PIL and `cv2.imread` both
//! decode with libjpeg-turbo at these defaults, so the pixels are theirs, value for value.
//!
//! libjpeg reports a fatal error through `error_exit`, which must not return; the `mozjpeg` crate
//! makes it unwind (`resume_unwind`, no panic message) through the C code (built with
//! `-fexceptions`) to the `catch_unwind` here, which turns it into an error naming the file.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, Decompress};

use super::types::check_size;

/// Whether `bytes` start like a JPEG (SOI and a marker), as the `image` crate guesses it.
pub(crate) fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Runs `f` (libjpeg calls), turning an I/O error or a libjpeg fatal error into one line.
fn caught<T>(f: impl FnOnce() -> io::Result<T>) -> std::result::Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg error");
            Err(msg.trim_start_matches("libjpeg fatal error: ").trim().to_string())
        }
    }
}

/// [`caught`], the error naming the file.
fn guarded<T>(path: &Path, f: impl FnOnce() -> io::Result<T>) -> Result<T> {
    caught(f).map_err(|m| anyhow!("{}: cannot decode JPEG: {m}", path.display()))
}

/// A JPEG frame of a DICOM object (8-bit DCT processes) decoded as Pillow decodes it for pydicom:
/// one component as grey; three converted to RGB by libjpeg when `to_rgb` (pydicom lets Pillow
/// convert only when an Adobe APP14 marker is present), else the samples as coded (no colour
/// conversion, Pillow's `draft("YCbCr")`). The frame must be `cols` x `rows` with `comps`
/// components, checked from the header before any pixel is decoded. Errors are one line.
pub(crate) fn decode_dicom_frame(
    bytes: &[u8],
    cols: usize,
    rows: usize,
    comps: usize,
    to_rgb: bool,
) -> Result<Vec<u8>> {
    let d = caught(|| Decompress::new_mem(bytes)).map_err(|m| anyhow!("{m}"))?;
    let (w, h, n) = (d.width(), d.height(), d.components().len());
    if (w, h, n) != (cols, rows, comps) || !(comps == 1 || comps == 3) {
        bail!("codestream is {w}x{h} with {n} components, the data set says {cols}x{rows} with {comps}");
    }
    let px: Vec<u8> = caught(|| {
        let space = match (comps, to_rgb) {
            (1, _) => ColorSpace::JCS_GRAYSCALE,
            (_, true) => ColorSpace::JCS_RGB,
            _ => d.color_space(),
        };
        let mut s = d.to_colorspace(space)?;
        let px = s.read_scanlines::<u8>()?;
        s.finish()?;
        Ok(px)
    })
    .map_err(|m| anyhow!("{m}"))?;
    if px.len() != cols * rows * comps {
        bail!("codestream holds fewer pixels than {cols}x{rows}");
    }
    Ok(px)
}

/// Width and height from the JPEG header (markers up to the first scan), size limit checked.
pub(crate) fn jpeg_dimensions(path: &Path) -> Result<(u32, u32)> {
    let (w, h) = guarded(path, || {
        let d = Decompress::new_path(path)?;
        Ok((d.width(), d.height()))
    })?;
    check_size(path, w as u64, h as u64)?;
    Ok((w as u32, h as u32))
}

/// Decodes a JPEG as PIL's `Image.open` does: 1 component → `L`, 3 → `RGB`, 4 (CMYK or YCCK) →
/// PIL's `CMYK` (libjpeg's CMYK inverted, "Adobe polarity") converted to RGB as PIL's
/// `convert("RGB")` does. The size limit is checked from the header before any pixel is decoded.
pub(crate) fn decode_jpeg(path: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    let d = guarded(path, || Decompress::new_mem(bytes))?;
    let (w, h) = (d.width(), d.height());
    check_size(path, w as u64, h as u64)?;
    let components = d.components().len();
    let (w32, h32) = (w as u32, h as u32);
    let short = || anyhow!("{}: cannot decode JPEG: fewer pixels than {w}x{h}", path.display());
    match components {
        1 => {
            let px: Vec<u8> = guarded(path, || {
                let mut s = d.grayscale()?;
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(px)
            })?;
            Ok(DynamicImage::ImageLuma8(GrayImage::from_raw(w32, h32, px).ok_or_else(short)?))
        }
        3 => {
            let px: Vec<u8> = guarded(path, || {
                let mut s = d.rgb()?;
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(px)
            })?;
            Ok(DynamicImage::ImageRgb8(RgbImage::from_raw(w32, h32, px).ok_or_else(short)?))
        }
        4 => {
            let px: Vec<u8> = guarded(path, || {
                let mut s = d.to_colorspace(ColorSpace::JCS_CMYK)?;
                let px = s.read_scanlines::<u8>()?;
                s.finish()?;
                Ok(px)
            })?;
            if px.len() != w * h * 4 {
                return Err(short());
            }
            Ok(DynamicImage::ImageRgb8(RgbImage::from_raw(w32, h32, cmyk_to_rgb_pil(&px)).ok_or_else(short)?))
        }
        n => bail!("{}: a JPEG with {n} colour components (1, 3 or 4 are read)", path.display()),
    }
}

/// libjpeg's CMYK samples to RGB as PIL gets them: PIL reads JPEG CMYK inverted (`CMYK;I`), and
/// its `cmyk2rgb` computes `nk - nk·c/255` (rounded as `MULDIV255`) with `nk = 255 - k`. With
/// PIL's `c = 255 - c_libjpeg` and `nk = k_libjpeg`, that is the expression below.
fn cmyk_to_rgb_pil(cmyk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let nk = p[3] as u32;
        for &v in &p[..3] {
            let c = 255 - v as u32;
            let t = c * nk + 128;
            out.push((nk - (((t >> 8) + t) >> 8)) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_matches_pil_corners() {
        // White paper (no ink) is white, full black ink is black, full cyan on white is cyan.
        assert_eq!(cmyk_to_rgb_pil(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb_pil(&[255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb_pil(&[0, 255, 255, 255]), [0, 255, 255]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let p = Path::new("x.jpg");
        for bytes in [&b"\xFF\xD8\xFF\xD9"[..], b"\xFF\xD8\xFF\xC0\x00\x02", b"\xFF\xD8"] {
            let e = decode_jpeg(p, bytes).unwrap_err().to_string();
            assert!(e.starts_with("x.jpg: cannot decode JPEG"), "{e}");
        }
    }
}
