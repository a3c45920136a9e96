//! NIfTI-1 single-file images (`.nii`, `.nii.gz`): a 2-D image or one slice of a 3-D volume.
//!
//! Pixel (x, y) of the result is voxel (i = x, j = y, k = slice) as stored; no orientation
//! (qform/sform) is applied, so the picture is the array as written, like `data[:, :, k].T`
//! in nibabel.

use std::io::Read;

use anyhow::{anyhow, bail, Result};
use image::RgbImage;

use super::types::{count_inflated, Decoded, MAX_PIXELS};

/// A `vox_offset` past this is refused.
const MAX_BYTES: u64 = 2 << 30;

/// What the 348-byte header says about the slice to read.
struct Header {
    le: bool,
    nx: usize,
    ny: usize,
    datatype: i16,
    bpv: usize,
    slope: f32,
    inter: f32,
    /// Byte range of the slice in the file.
    start: u64,
    end: u64,
}

#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
fn header(b: &[u8], slice: Option<usize>) -> Result<Header> {
    if b.len() < 348 {
        bail!("not a NIfTI file (only {} bytes, a header needs 348)", b.len());
    }
    let le = match (i32::from_le_bytes(b[0..4].try_into()?), i32::from_be_bytes(b[0..4].try_into()?)) {
        (348, _) => true,
        (_, 348) => false,
        (540, _) | (_, 540) => bail!("NIfTI-2 is not supported (NIfTI-1 only)"),
        _ => bail!("not a NIfTI-1 file (sizeof_hdr is not 348)"),
    };
    let i16_at = |o: usize| {
        let a = [b[o], b[o + 1]];
        if le {
            i16::from_le_bytes(a)
        } else {
            i16::from_be_bytes(a)
        }
    };
    let f32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            f32::from_le_bytes(a)
        } else {
            f32::from_be_bytes(a)
        }
    };
    match &b[344..348] {
        b"n+1\0" => {}
        b"ni1\0" => bail!("two-file NIfTI (.hdr/.img) is not supported; use a single .nii"),
        _ => bail!("not a NIfTI-1 file (bad magic)"),
    }
    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        bail!("bad dim[0] = {ndim}");
    }
    let raw: Vec<i16> = (1..=7).map(|i| if i <= ndim as usize { i16_at(40 + 2 * i) } else { 1 }).collect();
    if let Some(i) = raw.iter().position(|&d| d < 0) {
        bail!("bad dim[{}] = {} (negative)", i + 1, raw[i]);
    }
    let dim: Vec<usize> = raw.iter().map(|&d| d as usize).collect();
    let (nx, ny, nz) = (dim[0], dim[1], dim[2]);
    if let Some(i) = dim[3..].iter().position(|&d| d > 1) {
        bail!("{}-D data (dim[{}] = {}) is not supported; 2-D images and 3-D volumes only", ndim, i + 4, dim[i + 3]);
    }
    if nx == 0 || ny == 0 || nz == 0 {
        bail!("image has zero size ({nx}x{ny}x{nz})");
    }
    let k = match slice {
        Some(k) if k >= nz => bail!("slice {k} is out of range: the volume has {nz} slices (0..{})", nz - 1),
        Some(k) => k,
        None => nz / 2,
    };
    let datatype = i16_at(70);
    let bpv: usize = match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 | 1024 | 1280 => 8,
        128 => 3,
        d => bail!("NIfTI datatype {d} is not supported"),
    };
    let vox_offset = f32_at(108);
    if !(vox_offset >= 348.0) || vox_offset.fract() != 0.0 || vox_offset as f64 > MAX_BYTES as f64 {
        bail!("bad vox_offset {vox_offset}");
    }
    let plane = nx * ny; // both < 2^15
    if plane as u64 > MAX_PIXELS {
        bail!("slice is {nx}x{ny} = {plane} pixels, more than the limit of {}", MAX_PIXELS);
    }
    let len = (plane * bpv) as u64;
    let start = vox_offset as u64 + k as u64 * len;
    Ok(Header { le, nx, ny, datatype, bpv, slope: f32_at(112), inter: f32_at(116), start, end: start + len })
}

/// Inflates at most `limit` bytes of a gzip stream.
fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("cannot decompress gzip: {e}"))?;
    count_inflated(out.len() as u64);
    Ok(out)
}

/// Width and height of a slice, from the header (a .nii.gz is inflated only that far).
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let h = if bytes.starts_with(&[0x1f, 0x8b]) { header(&gunzip(bytes, 348)?, None)? } else { header(bytes, None)? };
    Ok((h.nx as u32, h.ny as u32))
}

pub(crate) fn decode(bytes: &[u8], slice: Option<usize>) -> Result<Decoded> {
    // A .nii.gz is inflated only after its header has been checked, and streamed: the bytes
    // before the slice are discarded as they come, so memory holds one slice, whatever a small
    // file claims (a decompression bomb).
    let owned;
    let (h, data): (Header, &[u8]) = if bytes.starts_with(&[0x1f, 0x8b]) {
        let h = header(&gunzip(bytes, 348)?, slice)?;
        let mut gz = flate2::read::MultiGzDecoder::new(bytes);
        let skipped = std::io::copy(&mut (&mut gz).take(h.start), &mut std::io::sink())
            .map_err(|e| anyhow!("cannot decompress gzip: {e}"))?;
        let mut out = Vec::with_capacity((h.end - h.start) as usize);
        gz.take(h.end - h.start).read_to_end(&mut out).map_err(|e| anyhow!("cannot decompress gzip: {e}"))?;
        count_inflated(skipped + out.len() as u64);
        if skipped + (out.len() as u64) < h.end {
            bail!("truncated: the slice needs bytes up to {}, the data has {}", h.end, skipped + out.len() as u64);
        }
        owned = out;
        (h, &owned)
    } else {
        let h = header(bytes, slice)?;
        let data = bytes
            .get(h.start as usize..h.end as usize)
            .ok_or_else(|| anyhow!("truncated: the slice needs bytes up to {}, the file has {}", h.end, bytes.len()))?;
        (h, data)
    };
    let Header { le, nx, ny, datatype, bpv, slope, inter, .. } = h;
    if datatype == 128 {
        let img = RgbImage::from_raw(nx as u32, ny as u32, data.to_vec()).expect("buffer size matches");
        return Ok(Decoded::Rgb(img));
    }
    let mut values: Vec<f32> = data
        .chunks_exact(bpv)
        .map(|c| {
            let mut a = [0u8; 8];
            a[..bpv].copy_from_slice(c);
            if !le {
                a[..bpv].reverse();
            }
            match datatype {
                2 => a[0] as f32,
                256 => a[0] as i8 as f32,
                4 => i16::from_le_bytes([a[0], a[1]]) as f32,
                512 => u16::from_le_bytes([a[0], a[1]]) as f32,
                8 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
                768 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
                16 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]),
                64 => f64::from_le_bytes(a) as f32,
                1024 => i64::from_le_bytes(a) as f32,
                _ => u64::from_le_bytes(a) as f32,
            }
        })
        .collect();
    // Per the NIfTI-1 standard, scl_slope == 0 means "no scaling".
    if slope != 0.0 && slope.is_finite() && inter.is_finite() && (slope != 1.0 || inter != 0.0) {
        for v in values.iter_mut() {
            *v = *v * slope + inter;
        }
    }
    Ok(Decoded::Gray { width: nx as u32, height: ny as u32, values, file_window: None, invert: false })
}
