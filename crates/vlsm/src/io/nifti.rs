//! NIfTI-1 and NIfTI-2 single-file images (`.nii`, `.nii.gz`), either byte order: whole volumes
//! ([`read_volume`]), one slice for the 2-D readers ([`decode`]), and masks written in the
//! source's geometry ([`write_like`]).
//!
//! Voxel (i, j, k) is stored at `i + nx * (j + ny * k)`, as in the file. A slice along axis 2 is
//! the picture with pixel (x, y) = voxel (i = x, j = y), like `data[:, :, k].T` in nibabel; along
//! axis 1, (x, y) = (i, k); along axis 0, (x, y) = (j, k). No orientation is applied to the
//! pixels: the affine travels with the header.
//!
//! Data with more than three axes (4-D time series, 5-D) gives its first volume, with a note.
//! Values are scaled by `scl_slope`/`scl_inter` as nibabel's `get_fdata` does (a slope of 0 or
//! a non-finite slope means none; a finite slope with a non-finite intercept is an error), in
//! f64, then stored as f32.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::RgbImage;

use super::types::{count_inflated, Decoded, MAX_PIXELS};

/// A `vox_offset` past this is refused.
const MAX_OFFSET: u64 = 2 << 30;

/// Default voxel limit of one volume (its first 3-D volume): 2^28 = 268 M voxels, 1 GiB as f32
/// (a 512x512x1024 CT fits).
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 28;

/// A NIfTI header as stored, with the fields the readers and writers use decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// The header bytes as in the file (348 for NIfTI-1, 540 for NIfTI-2, file byte order).
    raw: Vec<u8>,
    /// 1 or 2.
    pub version: u8,
    pub little_endian: bool,
    /// `dim[0]` is the number of axes, `dim[1..=7]` their sizes (1 past `dim[0]`).
    pub dim: [u64; 8],
    pub datatype: i16,
    pub pixdim: [f64; 8],
    pub vox_offset: u64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    /// quatern_b, quatern_c, quatern_d.
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    /// srow_x, srow_y, srow_z.
    pub srow: [[f64; 4]; 3],
    pub intent_code: i32,
    pub xyzt_units: i32,
}

/// Voxel values of a volume, x fastest.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    /// After scl_slope/scl_inter.
    Scalar(Vec<f32>),
    /// RGB24 (or RGBA32 with the alpha dropped): 3 bytes per voxel.
    Rgb(Vec<u8>),
}

/// The first 3-D volume of a NIfTI file, with its header.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub header: NiftiHeader,
    /// nx, ny, nz (nz = 1 for a 2-D image).
    pub dims: [usize; 3],
    pub data: VoxelData,
    /// Things the reader did that a user should know (a 4-D file gave its first volume).
    pub notes: Vec<String>,
}

fn f32_le(b: &[u8], o: usize, le: bool) -> f32 {
    let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
    if le {
        f32::from_le_bytes(a)
    } else {
        f32::from_be_bytes(a)
    }
}

fn f64_at(b: &[u8], o: usize, le: bool) -> f64 {
    let a: [u8; 8] = b[o..o + 8].try_into().expect("8 bytes");
    if le {
        f64::from_le_bytes(a)
    } else {
        f64::from_be_bytes(a)
    }
}

fn i16_at(b: &[u8], o: usize, le: bool) -> i16 {
    let a = [b[o], b[o + 1]];
    if le {
        i16::from_le_bytes(a)
    } else {
        i16::from_be_bytes(a)
    }
}

fn i32_at(b: &[u8], o: usize, le: bool) -> i32 {
    let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
    if le {
        i32::from_le_bytes(a)
    } else {
        i32::from_be_bytes(a)
    }
}

fn i64_at(b: &[u8], o: usize, le: bool) -> i64 {
    let a: [u8; 8] = b[o..o + 8].try_into().expect("8 bytes");
    if le {
        i64::from_le_bytes(a)
    } else {
        i64::from_be_bytes(a)
    }
}

/// Bytes per voxel of a datatype we read; complex and 128-bit types are refused by name.
fn bytes_per_voxel(datatype: i16) -> Result<usize> {
    Ok(match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 | 1024 | 1280 => 8,
        128 => 3,
        2304 => 4,
        32 | 1792 | 2048 => bail!("NIfTI datatype {datatype} (complex) is not an image this reader takes"),
        1536 => bail!("NIfTI datatype 1536 (float128) is not supported"),
        1 => bail!("NIfTI datatype 1 (binary, 1 bit) is not supported"),
        d => bail!("NIfTI datatype {d} is not a NIfTI datatype"),
    })
}

/// A gzip stream that counts what it inflates (`io::inflated_bytes`, so tests can show how far a
/// bomb got).
struct Inflate<R>(flate2::read::MultiGzDecoder<R>);

fn inflate<R: Read>(r: R) -> Inflate<R> {
    Inflate(flate2::read::MultiGzDecoder::new(r))
}

impl<R: Read> Read for Inflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        count_inflated(n as u64);
        Ok(n)
    }
}

impl NiftiHeader {
    /// Parses a header from the file's first bytes (at least 4; the whole header when the
    /// size is known: 348 or 540).
    pub(crate) fn header_len(first4: &[u8]) -> Result<usize> {
        if first4.len() < 4 {
            bail!("not a NIfTI file (only {} bytes)", first4.len());
        }
        let a: [u8; 4] = first4[..4].try_into().expect("4 bytes");
        match (i32::from_le_bytes(a), i32::from_be_bytes(a)) {
            (348, _) | (_, 348) => Ok(348),
            (540, _) | (_, 540) => Ok(540),
            _ => bail!("not a NIfTI file (sizeof_hdr is neither 348 nor 540)"),
        }
    }

    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a >= b)` also rejects NaN, on purpose
    pub(crate) fn parse(b: &[u8]) -> Result<NiftiHeader> {
        let n = Self::header_len(b)?;
        if b.len() < n {
            bail!("truncated header ({} bytes, NIfTI-{} needs {n})", b.len(), if n == 348 { 1 } else { 2 });
        }
        let le = i32::from_le_bytes(b[0..4].try_into()?) == n as i32;
        let mut h = NiftiHeader {
            raw: b[..n].to_vec(),
            version: if n == 348 { 1 } else { 2 },
            little_endian: le,
            dim: [1; 8],
            datatype: 0,
            pixdim: [0.0; 8],
            vox_offset: 0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            intent_code: 0,
            xyzt_units: 0,
        };
        let raw_dims: Vec<i64>;
        let vox_offset: f64;
        if n == 348 {
            match &b[344..348] {
                b"n+1\0" => {}
                b"ni1\0" => bail!("two-file NIfTI (.hdr/.img) is not supported; use a single .nii"),
                _ => bail!("not a NIfTI-1 file (bad magic)"),
            }
            raw_dims = (0..8).map(|i| i16_at(b, 40 + 2 * i, le) as i64).collect();
            h.intent_code = i16_at(b, 68, le) as i32;
            h.datatype = i16_at(b, 70, le);
            for i in 0..8 {
                h.pixdim[i] = f32_le(b, 76 + 4 * i, le) as f64;
            }
            vox_offset = f32_le(b, 108, le) as f64;
            h.scl_slope = f32_le(b, 112, le) as f64;
            h.scl_inter = f32_le(b, 116, le) as f64;
            h.xyzt_units = b[123] as i32;
            h.qform_code = i16_at(b, 252, le) as i32;
            h.sform_code = i16_at(b, 254, le) as i32;
            for i in 0..3 {
                h.quatern[i] = f32_le(b, 256 + 4 * i, le) as f64;
                h.qoffset[i] = f32_le(b, 268 + 4 * i, le) as f64;
                for c in 0..4 {
                    h.srow[i][c] = f32_le(b, 280 + 16 * i + 4 * c, le) as f64;
                }
            }
        } else {
            match &b[4..12] {
                b"n+2\0\r\n\x1a\n" => {}
                b"ni2\0\r\n\x1a\n" => bail!("two-file NIfTI (.hdr/.img) is not supported; use a single .nii"),
                _ => bail!("not a NIfTI-2 file (bad magic)"),
            }
            h.datatype = i16_at(b, 12, le);
            raw_dims = (0..8).map(|i| i64_at(b, 16 + 8 * i, le)).collect();
            for i in 0..8 {
                h.pixdim[i] = f64_at(b, 104 + 8 * i, le);
            }
            let off = i64_at(b, 168, le);
            vox_offset = off as f64;
            h.scl_slope = f64_at(b, 176, le);
            h.scl_inter = f64_at(b, 184, le);
            h.qform_code = i32_at(b, 344, le);
            h.sform_code = i32_at(b, 348, le);
            for i in 0..3 {
                h.quatern[i] = f64_at(b, 352 + 8 * i, le);
                h.qoffset[i] = f64_at(b, 376 + 8 * i, le);
                for c in 0..4 {
                    h.srow[i][c] = f64_at(b, 400 + 32 * i + 8 * c, le);
                }
            }
            h.xyzt_units = i32_at(b, 500, le);
            h.intent_code = i32_at(b, 504, le);
        }
        let ndim = raw_dims[0];
        if !(1..=7).contains(&ndim) {
            bail!("bad dim[0] = {ndim}");
        }
        for (i, &d) in raw_dims.iter().enumerate().skip(1) {
            let d = if i <= ndim as usize { d } else { 1 };
            if d < 0 {
                bail!("bad dim[{i}] = {d} (negative)");
            }
            h.dim[i] = d as u64;
        }
        h.dim[0] = ndim as u64;
        if (3000..3100).contains(&h.intent_code) {
            bail!("CIFTI-2 data (intent code {}) is not a voxel volume", h.intent_code);
        }
        bytes_per_voxel(h.datatype)?;
        if !(vox_offset >= n as f64) || vox_offset.fract() != 0.0 || vox_offset > MAX_OFFSET as f64 {
            bail!("bad vox_offset {vox_offset}");
        }
        h.vox_offset = vox_offset as u64;
        Ok(h)
    }

    /// nx, ny, nz of the first volume; zero sizes are an error.
    pub fn shape(&self) -> Result<[usize; 3]> {
        let [nx, ny, nz] = [self.dim[1], self.dim[2], self.dim[3]];
        if nx == 0 || ny == 0 || nz == 0 {
            bail!("image has zero size ({nx}x{ny}x{nz})");
        }
        let ok = |v: u64| usize::try_from(v).map_err(|_| anyhow!("absurd dimension {v}"));
        Ok([ok(nx)?, ok(ny)?, ok(nz)?])
    }

    /// Volumes past the first (the product of dims 4..=7).
    pub fn extra_volumes(&self) -> u64 {
        self.dim[4..].iter().fold(1u64, |a, &d| a.saturating_mul(d.max(1)))
    }

    /// (slope, intercept) to apply, or None; nibabel's rule.
    fn scaling(&self) -> Result<Option<(f64, f64)>> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || !s.is_finite() {
            return Ok(None);
        }
        if !i.is_finite() {
            bail!("valid scl_slope {s} but invalid scl_inter {i}");
        }
        Ok(if s == 1.0 && i == 0.0 { None } else { Some((s, i)) })
    }

    /// Voxel spacing along i, j, k (|pixdim[1..=3]|, 1 where 0 or not finite).
    pub fn spacing(&self) -> [f64; 3] {
        let f = |v: f64| if v.is_finite() && v != 0.0 { v.abs() } else { 1.0 };
        [f(self.pixdim[1]), f(self.pixdim[2]), f(self.pixdim[3])]
    }

    /// The sform rows as a 4x4 affine.
    pub fn sform_affine(&self) -> [[f64; 4]; 4] {
        [self.srow[0], self.srow[1], self.srow[2], [0.0, 0.0, 0.0, 1.0]]
    }

    /// The qform (quaternion, pixdim, qfac = pixdim[0]) as a 4x4 affine (NIfTI-1 method 2).
    pub fn qform_affine(&self) -> [[f64; 4]; 4] {
        // As nibabel: a = sqrt(1 - b² - c² - d²), 0 within 3 eps (of the header's float type)
        // of 0 or below, then the matrix of the quaternion normalised (quat2mat).
        let [x, y, z] = self.quatern;
        let w2 = 1.0 - (x * x + y * y + z * z);
        let eps = if self.version == 1 { f32::EPSILON as f64 } else { f64::EPSILON };
        let w = if w2.abs() < 3.0 * eps || w2 < 0.0 { 0.0 } else { w2.sqrt() };
        let nq = w * w + x * x + y * y + z * z;
        let r = if nq < f64::EPSILON {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        } else {
            let s = 2.0 / nq;
            let (xs, ys, zs) = (x * s, y * s, z * s);
            let (wx, wy, wz) = (w * xs, w * ys, w * zs);
            let (xx, xy, xz) = (x * xs, x * ys, x * zs);
            let (yy, yz, zz) = (y * ys, y * zs, z * zs);
            [
                [1.0 - (yy + zz), xy - wz, xz + wy],
                [xy + wz, 1.0 - (xx + zz), yz - wx],
                [xz - wy, yz + wx, 1.0 - (xx + yy)],
            ]
        };
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let z = [self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * z[j];
            }
            m[i][3] = self.qoffset[i];
        }
        m[3][3] = 1.0;
        m
    }

    /// The voxel-to-world affine: the sform when `sform_code > 0`, else the qform when
    /// `qform_code > 0`, else pixdim scaling alone (NIfTI-1 method 1; nibabel would centre an
    /// Analyze-style affine instead).
    pub fn affine(&self) -> [[f64; 4]; 4] {
        if self.sform_code > 0 {
            self.sform_affine()
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            let s = [self.pixdim[1], self.pixdim[2], self.pixdim[3]];
            let mut m = [[0.0; 4]; 4];
            for (i, v) in s.iter().enumerate() {
                m[i][i] = *v;
            }
            m[3][3] = 1.0;
            m
        }
    }

    /// The header for a 3-D volume of `datatype` in this header's geometry: the same bytes
    /// (dims, pixdim, qform/sform and their codes, units, description, byte order), with the
    /// datatype, bitpix, `vox_offset` (no extensions), scaling (1, 0), calibration and intent
    /// reset and any axes past the third dropped.
    fn for_output(&self, datatype: i16, bitpix: i16, cal: (f64, f64)) -> Vec<u8> {
        let mut b = self.raw.clone();
        let le = self.little_endian;
        let put16 = |b: &mut Vec<u8>, o: usize, v: i16| {
            b[o..o + 2].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
        };
        let put32f = |b: &mut Vec<u8>, o: usize, v: f32| {
            b[o..o + 4].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
        };
        let put64f = |b: &mut Vec<u8>, o: usize, v: f64| {
            b[o..o + 8].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
        };
        let put64i = |b: &mut Vec<u8>, o: usize, v: i64| {
            b[o..o + 8].copy_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() })
        };
        let ndim = self.dim[0].min(3) as i64;
        if self.version == 1 {
            put16(&mut b, 40, ndim as i16);
            for i in 4..8 {
                put16(&mut b, 40 + 2 * i, 1);
            }
            for o in [56, 60, 64] {
                put32f(&mut b, o, 0.0); // intent_p1..3
            }
            put16(&mut b, 68, 0); // intent_code
            put16(&mut b, 70, datatype);
            put16(&mut b, 72, bitpix);
            put32f(&mut b, 108, 352.0);
            put32f(&mut b, 112, 1.0);
            put32f(&mut b, 116, 0.0);
            put32f(&mut b, 124, cal.1 as f32); // cal_max
            put32f(&mut b, 128, cal.0 as f32); // cal_min
            b[328..344].fill(0); // intent_name
        } else {
            put16(&mut b, 12, datatype);
            put16(&mut b, 14, bitpix);
            put64i(&mut b, 16, ndim);
            for i in 4..8 {
                put64i(&mut b, 16 + 8 * i, 1);
            }
            for o in [80, 88, 96] {
                put64f(&mut b, o, 0.0);
            }
            put64i(&mut b, 168, 544);
            put64f(&mut b, 176, 1.0);
            put64f(&mut b, 184, 0.0);
            put64f(&mut b, 192, cal.1);
            put64f(&mut b, 200, cal.0);
            b[504..508].fill(0); // intent_code
            b[508..524].fill(0); // intent_name
        }
        b.extend_from_slice(&[0, 0, 0, 0]); // no extensions
        b
    }
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the stream.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn io_err(gz: bool) -> impl Fn(std::io::Error) -> anyhow::Error {
    move |e| if gz { anyhow!("cannot decompress gzip: {e}") } else { anyhow!("cannot read: {e}") }
}

/// Reads and parses the header from the start of a stream.
fn read_header(r: &mut impl Read, gz: bool) -> Result<NiftiHeader> {
    let mut b = vec![0u8; 540];
    let n = fill(r, &mut b[..4]).map_err(io_err(gz))?;
    let len = NiftiHeader::header_len(&b[..n])?;
    let m = fill(r, &mut b[4..len]).map_err(io_err(gz))?;
    b.truncate(4 + m);
    NiftiHeader::parse(&b)
}

/// Converts raw voxels of `datatype` (file byte order) to f64.
fn convert(datatype: i16, le: bool, c: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    a[..c.len()].copy_from_slice(c);
    if !le {
        a[..c.len()].reverse();
    }
    match datatype {
        2 => a[0] as f64,
        256 => a[0] as i8 as f64,
        4 => i16::from_le_bytes([a[0], a[1]]) as f64,
        512 => u16::from_le_bytes([a[0], a[1]]) as f64,
        8 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
        768 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
        16 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
        64 => f64::from_le_bytes(a),
        1024 => i64::from_le_bytes(a) as f64,
        _ => u64::from_le_bytes(a) as f64,
    }
}

/// Reads `count` voxels from a stream positioned at voxel `start` bytes past `vox_offset`
/// (`pos` bytes of the stream already consumed). Streams in chunks: memory holds the result.
fn read_voxels(r: &mut impl Read, h: &NiftiHeader, pos: u64, start: u64, count: usize, gz: bool) -> Result<VoxelData> {
    let bpv = bytes_per_voxel(h.datatype)?;
    let absurd = || anyhow!("absurd dimensions: the data would end past 2^64 bytes");
    let begin = start.checked_mul(bpv as u64).and_then(|b| b.checked_add(h.vox_offset)).ok_or_else(absurd)?;
    let end = (count as u64).checked_mul(bpv as u64).and_then(|b| b.checked_add(begin)).ok_or_else(absurd)?;
    let skip = begin.checked_sub(pos).ok_or_else(|| anyhow!("bad vox_offset {}", h.vox_offset))?;
    let skipped = std::io::copy(&mut r.take(skip), &mut std::io::sink()).map_err(io_err(gz))?;
    let truncated = |got: u64| {
        anyhow!(
            "truncated: the header claims {} voxel bytes from offset {} (up to byte {end}), the {} holds {got}",
            count * bpv,
            h.vox_offset,
            if gz { "inflated data" } else { "file" }
        )
    };
    if skipped < skip {
        return Err(truncated(pos + skipped));
    }
    let rgb = matches!(h.datatype, 128 | 2304);
    let scaling = if rgb { None } else { h.scaling()? };
    let mut buf = vec![0u8; bpv * (1 << 16)];
    let mut left = count;
    let mut scalar = Vec::new();
    let mut colour = Vec::new();
    if rgb {
        colour.reserve_exact(count * 3);
    } else {
        scalar.reserve_exact(count);
    }
    while left > 0 {
        let want = left.min(1 << 16) * bpv;
        let got = fill(r, &mut buf[..want]).map_err(io_err(gz))?;
        if got < want {
            return Err(truncated(begin + ((count - left) * bpv + got) as u64));
        }
        let chunk = &buf[..want];
        if rgb {
            for c in chunk.chunks_exact(bpv) {
                colour.extend_from_slice(&c[..3]);
            }
        } else {
            let le = h.little_endian;
            match scaling {
                None => scalar.extend(chunk.chunks_exact(bpv).map(|c| convert(h.datatype, le, c) as f32)),
                Some((s, i)) => {
                    scalar.extend(chunk.chunks_exact(bpv).map(|c| (convert(h.datatype, le, c) * s + i) as f32))
                }
            }
        }
        left -= want / bpv;
    }
    Ok(if rgb { VoxelData::Rgb(colour) } else { VoxelData::Scalar(scalar) })
}

/// Reads the first 3-D volume of a NIfTI file, refusing more than `max_voxels` voxels (from the
/// header, before any data is read or inflated). A `.nii.gz` is streamed: memory holds the
/// result, not the file. Errors are one line naming the file.
pub fn read_volume(path: &Path, max_voxels: u64) -> Result<Volume> {
    let p = path.display();
    let md = super::sniff::regular_file(path)?;
    let open = || std::fs::File::open(path).map_err(|e| anyhow!("{p}: cannot read: {e}"));
    let mut magic = [0u8; 2];
    let n = fill(&mut open()?, &mut magic).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let gz = n == 2 && magic == [0x1f, 0x8b];
    let res = if gz {
        volume_from(&mut inflate(BufReader::new(open()?)), None, max_voxels, true)
    } else {
        volume_from(&mut BufReader::new(open()?), Some(md.len()), max_voxels, false)
    };
    res.map_err(|e| anyhow!("{p}: {e}"))
}

fn volume_from(r: &mut impl Read, file_len: Option<u64>, max_voxels: u64, gz: bool) -> Result<Volume> {
    let h = read_header(r, gz)?;
    let dims = h.shape()?;
    let nvox = (dims[0] as u64).checked_mul(dims[1] as u64).and_then(|v| v.checked_mul(dims[2] as u64));
    let nvox = match nvox {
        Some(v) if v <= max_voxels => v,
        _ => bail!(
            "volume is {}x{}x{} = {} voxels, more than the limit of {max_voxels} (--max-voxels)",
            dims[0],
            dims[1],
            dims[2],
            nvox.map(|v| v.to_string()).unwrap_or_else(|| "too many".into())
        ),
    };
    let bpv = bytes_per_voxel(h.datatype)? as u64;
    if let Some(len) = file_len {
        let need = h.vox_offset + nvox * bpv;
        if need > len {
            bail!(
                "truncated: the header claims {} voxel bytes from offset {} (up to byte {need}), the file holds {len}",
                nvox * bpv,
                h.vox_offset
            );
        }
    }
    let mut notes = Vec::new();
    let extra = h.extra_volumes();
    if extra > 1 {
        notes.push(format!(
            "{}-D data ({} volumes of {}x{}x{}): the first volume is used",
            h.dim[0], extra, dims[0], dims[1], dims[2]
        ));
    }
    let pos = h.raw.len() as u64;
    let data = read_voxels(r, &h, pos, 0, nvox as usize, gz)?;
    Ok(Volume { header: h, dims, data, notes })
}

/// The nx, ny, nz of a NIfTI file's first volume, from the header alone (a .nii.gz is
/// inflated only that far).
pub fn volume_dimensions(path: &Path) -> Result<[usize; 3]> {
    let p = path.display();
    super::sniff::regular_file(path)?;
    let f = std::fs::File::open(path).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 2];
    let n = fill(&mut r, &mut magic).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let chained = std::io::Cursor::new(magic[..n].to_vec()).chain(r);
    let h = if n == 2 && magic == [0x1f, 0x8b] {
        read_header(&mut inflate(chained), true)
    } else {
        read_header(&mut { chained }, false)
    };
    h.and_then(|h| h.shape()).map_err(|e| anyhow!("{p}: {e}"))
}

impl Volume {
    /// Width and height of a slice along `axis` (see the module doc), and the slice count.
    pub fn slice_dims(&self, axis: usize) -> (usize, usize, usize) {
        let [nx, ny, nz] = self.dims;
        match axis {
            0 => (ny, nz, nx),
            1 => (nx, nz, ny),
            _ => (nx, ny, nz),
        }
    }

    /// Slice `k` along `axis` as 8-bit RGB (RGB data) or as scalar values (row-major).
    pub fn slice_values(&self, axis: usize, k: usize) -> SliceData {
        match &self.data {
            VoxelData::Scalar(v) => SliceData::Scalar(take_slice(v, self.dims, axis, k, 1)),
            VoxelData::Rgb(v) => SliceData::Rgb(take_slice(v, self.dims, axis, k, 3)),
        }
    }
}

/// One slice of a volume.
pub enum SliceData {
    Scalar(Vec<f32>),
    Rgb(Vec<u8>),
}

/// The voxel index of slice pixel (x, y) of slice `k` along `axis`.
#[inline]
fn index(dims: [usize; 3], axis: usize, k: usize, x: usize, y: usize) -> usize {
    let [nx, ny, _] = dims;
    let (i, j, kk) = match axis {
        0 => (k, x, y),
        1 => (x, k, y),
        _ => (x, y, k),
    };
    i + nx * (j + ny * kk)
}

/// Slice `k` along `axis` of a volume with `ch` values per voxel, row-major.
pub fn take_slice<T: Copy>(v: &[T], dims: [usize; 3], axis: usize, k: usize, ch: usize) -> Vec<T> {
    let (w, h) = match axis {
        0 => (dims[1], dims[2]),
        1 => (dims[0], dims[2]),
        _ => (dims[0], dims[1]),
    };
    let mut out = Vec::with_capacity(w * h * ch);
    for y in 0..h {
        if axis == 2 {
            let s = index(dims, axis, k, 0, y) * ch;
            out.extend_from_slice(&v[s..s + w * ch]);
        } else {
            for x in 0..w {
                let s = index(dims, axis, k, x, y) * ch;
                out.extend_from_slice(&v[s..s + ch]);
            }
        }
    }
    out
}

/// Writes a row-major slice back into a volume (one value per voxel).
pub fn put_slice<T: Copy>(v: &mut [T], dims: [usize; 3], axis: usize, k: usize, slice: &[T]) {
    let w = match axis {
        0 => dims[1],
        _ => dims[0],
    };
    for (n, &val) in slice.iter().enumerate() {
        v[index(dims, axis, k, n % w, n / w)] = val;
    }
}

/// Output data for [`write_like`].
pub enum OutputData<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

/// Writes a 3-D volume in `like`'s geometry (dims, pixdim, qform/sform and codes, units, byte
/// order and NIfTI version kept) as gzipped NIfTI, atomically. uint8 data gets cal_min/max 0/1.
pub fn write_like(path: &Path, like: &NiftiHeader, data: OutputData) -> Result<()> {
    let dims = like.shape().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let n = dims.iter().product::<usize>();
    let len = match data {
        OutputData::U8(d) => d.len(),
        OutputData::F32(d) => d.len(),
    };
    if len != n {
        return Err(anyhow!("{}: {len} values for a {}x{}x{} volume", path.display(), dims[0], dims[1], dims[2]));
    }
    let (head, level) = match data {
        OutputData::U8(_) => (like.for_output(2, 8, (0.0, 1.0)), flate2::Compression::default()),
        OutputData::F32(_) => (like.for_output(16, 32, (0.0, 0.0)), flate2::Compression::fast()),
    };
    let le = like.little_endian;
    super::write::write_atomic_with(path, |tmp| {
        let f = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        let mut gz = flate2::write::GzEncoder::new(f, level);
        gz.write_all(&head)?;
        match data {
            OutputData::U8(d) => gz.write_all(d)?,
            OutputData::F32(d) => {
                let mut buf = Vec::with_capacity(4 << 16);
                for c in d.chunks(1 << 16) {
                    buf.clear();
                    for v in c {
                        buf.extend_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() });
                    }
                    gz.write_all(&buf)?;
                }
            }
        }
        gz.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()
    })
}

/// Width and height of a slice, from the header (a .nii.gz is inflated only that far).
pub(crate) fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let h = if bytes.starts_with(&[0x1f, 0x8b]) {
        read_header(&mut inflate(bytes), true)?
    } else {
        read_header(&mut { bytes }, false)?
    };
    let [nx, ny, _] = h.shape()?;
    // The pixel limit the raster headers get, so a header check refuses what decoding would.
    let plane = (nx as u64).saturating_mul(ny as u64);
    if plane > MAX_PIXELS {
        bail!("slice is {nx}x{ny} = {plane} pixels, more than the limit of {}", MAX_PIXELS);
    }
    Ok((nx as u32, ny as u32))
}

/// One slice along the third axis of the first volume (`None` = the middle one), for the 2-D
/// readers. A .nii.gz is inflated only after its header has been checked, and streamed: the
/// bytes before the slice are discarded as they come, so memory holds one slice, whatever a
/// small file claims (a decompression bomb).
pub(crate) fn decode(bytes: &[u8], slice: Option<usize>) -> Result<Decoded> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn Read + '_> = if gz { Box::new(inflate(bytes)) } else { Box::new(bytes) };
    let h = read_header(&mut r, gz)?;
    let [nx, ny, nz] = h.shape()?;
    let k = match slice {
        Some(k) if k >= nz => bail!("slice {k} is out of range: the volume has {nz} slices (0..{})", nz - 1),
        Some(k) => k,
        None => nz / 2,
    };
    let plane = (nx as u64).saturating_mul(ny as u64);
    if plane > MAX_PIXELS {
        bail!("slice is {nx}x{ny} = {plane} pixels, more than the limit of {}", MAX_PIXELS);
    }
    let pos = h.raw.len() as u64;
    let start = (k as u64).checked_mul(plane).ok_or_else(|| anyhow!("absurd dimensions ({nx}x{ny}x{nz})"))?;
    match read_voxels(&mut r, &h, pos, start, plane as usize, gz)? {
        VoxelData::Rgb(v) => Ok(Decoded::Rgb(RgbImage::from_raw(nx as u32, ny as u32, v).expect("size matches"))),
        VoxelData::Scalar(values) => {
            Ok(Decoded::Gray { width: nx as u32, height: ny as u32, values, file_window: None, invert: false })
        }
    }
}

impl NiftiHeader {
    /// A NIfTI-1 header (float32, little endian) for a `dims` volume whose voxel-to-world
    /// affine is `affine` (RAS mm; sform_code 1, scanner), pixdim from `spacing`, units mm:
    /// the geometry of a volume that did not come from a NIfTI file (a DICOM series, with its
    /// `affine_ras`). The qform carries the same geometry (code 1; quaternion of the affine's
    /// rotation, qfac -1 for a left-handed one, offsets its translation), for readers that take
    /// the qform (ITK); nibabel reads the sform. Sizes past NIfTI-1's 32767 are refused.
    pub fn for_grid(dims: [usize; 3], spacing: [f64; 3], affine: [[f64; 4]; 4]) -> Result<NiftiHeader> {
        let mut b = vec![0u8; 348];
        b[0..4].copy_from_slice(&348i32.to_le_bytes());
        let mut dim = [1i16; 8];
        dim[0] = 3;
        for (i, &d) in dims.iter().enumerate() {
            dim[i + 1] = match i16::try_from(d) {
                Ok(v) if v > 0 => v,
                _ => bail!("dimension {d} does not fit a NIfTI-1 header (1..=32767)"),
            };
        }
        for (i, d) in dim.iter().enumerate() {
            b[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        b[70..72].copy_from_slice(&16i16.to_le_bytes()); // float32
        b[72..74].copy_from_slice(&32i16.to_le_bytes());
        let mut pixdim = [1f32; 8];
        for i in 0..3 {
            pixdim[i + 1] = spacing[i] as f32;
        }
        for (i, v) in pixdim.iter().enumerate() {
            b[76 + 4 * i..80 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[108..112].copy_from_slice(&352f32.to_le_bytes());
        b[112..116].copy_from_slice(&1f32.to_le_bytes());
        b[123] = 2; // mm
        b[254..256].copy_from_slice(&1i16.to_le_bytes()); // sform_code: scanner
        let (quatern, qfac) = quaternion(&affine, spacing);
        b[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code: scanner
        for (i, q) in quatern.iter().enumerate() {
            b[256 + 4 * i..260 + 4 * i].copy_from_slice(&(*q as f32).to_le_bytes());
        }
        for r in 0..3 {
            b[268 + 4 * r..272 + 4 * r].copy_from_slice(&(affine[r][3] as f32).to_le_bytes());
        }
        b[76..80].copy_from_slice(&(qfac as f32).to_le_bytes());
        for (r, row) in affine.iter().take(3).enumerate() {
            for (c, v) in row.iter().enumerate() {
                b[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&(*v as f32).to_le_bytes());
            }
        }
        b[344..348].copy_from_slice(b"n+1\0");
        Self::parse(&b)
    }
}

/// The quaternion (b, c, d) and qfac of an affine's rotation, its columns divided by `spacing`
/// (NIfTI-1's `nifti_mat44_to_quatern`): a left-handed rotation gets qfac -1 and its third column
/// negated first.
fn quaternion(affine: &[[f64; 4]; 4], spacing: [f64; 3]) -> ([f64; 3], f64) {
    let mut r = [[0f64; 3]; 3];
    for c in 0..3 {
        let n = (0..3).map(|k| affine[k][c] * affine[k][c]).sum::<f64>().sqrt();
        let n = if n > 0.0 { n } else { spacing[c].abs().max(1e-12) };
        for k in 0..3 {
            r[k][c] = affine[k][c] / n;
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let a = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (qa, mut qb, mut qc, mut qd);
    if a > 0.5 {
        qa = 0.5 * a.sqrt();
        qb = 0.25 * (r[2][1] - r[1][2]) / qa;
        qc = 0.25 * (r[0][2] - r[2][0]) / qa;
        qd = 0.25 * (r[1][0] - r[0][1]) / qa;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            qb = 0.5 * xd.sqrt();
            qc = 0.25 * (r[0][1] + r[1][0]) / qb;
            qd = 0.25 * (r[0][2] + r[2][0]) / qb;
            qa = 0.25 * (r[2][1] - r[1][2]) / qb;
        } else if yd > 1.0 {
            qc = 0.5 * yd.sqrt();
            qb = 0.25 * (r[0][1] + r[1][0]) / qc;
            qd = 0.25 * (r[1][2] + r[2][1]) / qc;
            qa = 0.25 * (r[0][2] - r[2][0]) / qc;
        } else {
            qd = 0.5 * zd.sqrt();
            qb = 0.25 * (r[0][2] + r[2][0]) / qd;
            qc = 0.25 * (r[1][2] + r[2][1]) / qd;
            qa = 0.25 * (r[1][0] - r[0][1]) / qd;
        }
        if qa < 0.0 {
            (qb, qc, qd) = (-qb, -qc, -qd);
        }
    }
    ([qb, qc, qd], qfac)
}
