//! Small files that claim (or inflate to) far more than they hold: deflated DICOMs and .nii.gz
//! volumes, for the decoders', the server's and the CLI's hostile-input tests (#17).
#![allow(dead_code)]

use std::io::Write;

use flate2::write::{DeflateEncoder, GzEncoder};
use flate2::Compression;

/// One explicit-VR little-endian element.
fn el(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// The header of a long element (OB/OW) whose value follows separately.
fn long_header(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], len: u32) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Writes `n` zero bytes into `w` in 1 MiB pieces.
fn zeros(w: &mut impl Write, mut n: u64) {
    let buf = vec![0u8; 1 << 20];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        w.write_all(&buf[..k]).unwrap();
        n -= k as u64;
    }
}

/// A deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99).
#[derive(Clone, Debug)]
pub struct DeflatedDicom {
    pub rows: u16,
    pub cols: u16,
    pub bits: u16,
    pub frames: Option<&'static str>,
    /// A private OB element of this many zero bytes before the pixel data.
    pub private_bytes: Option<u64>,
    /// The Pixel Data element's length (`None`: the bytes written).
    pub pixel_len: Option<u32>,
    /// Zero bytes of pixel data actually in the stream (`None`: rows * cols * bits / 8).
    pub pixel_bytes: Option<u64>,
    /// Keep only this many bytes of the deflated stream (a cut file).
    pub cut_stream_at: Option<usize>,
}

impl DeflatedDicom {
    pub fn new(rows: u16, cols: u16, bits: u16) -> Self {
        DeflatedDicom {
            rows,
            cols,
            bits,
            frames: None,
            private_bytes: None,
            pixel_len: None,
            pixel_bytes: None,
            cut_stream_at: None,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        el(&mut out, 0x0002, 0x0001, b"OB", &[0, 1]);
        el(&mut out, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1.99");
        let mut b = Vec::new();
        el(&mut b, 0x0008, 0x0060, b"CS", b"CT");
        if let Some(n) = self.private_bytes {
            el(&mut b, 0x0009, 0x0010, b"LO", b"VLSMTEST");
            long_header(&mut b, 0x0009, 0x1000, b"OB", n.min(u32::MAX as u64 - 1) as u32);
        }
        let mut tail = Vec::new();
        el(&mut tail, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
        el(&mut tail, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
        if let Some(f) = self.frames {
            let mut v = f.as_bytes().to_vec();
            if v.len() % 2 == 1 {
                v.push(b' ');
            }
            el(&mut tail, 0x0028, 0x0008, b"IS", &v);
        }
        el(&mut tail, 0x0028, 0x0010, b"US", &self.rows.to_le_bytes());
        el(&mut tail, 0x0028, 0x0011, b"US", &self.cols.to_le_bytes());
        el(&mut tail, 0x0028, 0x0100, b"US", &self.bits.to_le_bytes());
        el(&mut tail, 0x0028, 0x0101, b"US", &self.bits.to_le_bytes());
        el(&mut tail, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
        let need = self.rows as u64 * self.cols as u64 * (self.bits as u64 / 8);
        let px = self.pixel_bytes.unwrap_or(need);
        long_header(&mut tail, 0x7FE0, 0x0010, b"OW", self.pixel_len.unwrap_or(px as u32));
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&b).unwrap();
        if let Some(n) = self.private_bytes {
            zeros(&mut enc, n);
        }
        enc.write_all(&tail).unwrap();
        zeros(&mut enc, px);
        let mut deflated = enc.finish().unwrap();
        if let Some(cut) = self.cut_stream_at {
            deflated.truncate(cut);
        }
        out.extend_from_slice(&deflated);
        out
    }
}

/// A NIfTI-1 header (348 bytes + 4 extension bytes; data at 352) for `dims` of uint8 voxels.
pub fn nifti_header(dims: &[i16]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        h[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    for i in dims.len()..7 {
        h[42 + 2 * i..44 + 2 * i].copy_from_slice(&1i16.to_le_bytes());
    }
    h[70..72].copy_from_slice(&2i16.to_le_bytes()); // uint8
    h[72..74].copy_from_slice(&8i16.to_le_bytes()); // bitpix
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[112..116].copy_from_slice(&1f32.to_le_bytes()); // scl_slope
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// One gzip member holding `n` zero bytes (about 1 KiB per MiB).
pub fn gz_zeros(n: u64) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    zeros(&mut enc, n);
    enc.finish().unwrap()
}

/// A .nii.gz whose header claims `dims` and whose stream then inflates to `mib` MiB of zeros
/// (one 1 MiB gzip member repeated: about 1 KiB of file per MiB of data).
pub fn nifti_gz_bomb(dims: &[i16], mib: usize) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&nifti_header(dims)).unwrap();
    let mut out = enc.finish().unwrap();
    let member = gz_zeros(1 << 20);
    for _ in 0..mib {
        out.extend_from_slice(&member);
    }
    out
}
