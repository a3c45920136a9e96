//! NumPy .npy files of little-endian f32 ('<f4'), C order.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::read::read_bytes;
use super::write::write_atomic;

/// Writes a .npy v1.0 file ('<f4', C order) atomically. `data.len()` must equal the product of `shape`.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!("{}: shape {shape:?} overflows", path.display()))?;
    if n != data.len() {
        bail!("{}: shape {shape:?} needs {n} values, got {}", path.display(), data.len());
    }
    let bytes = imgproc::npy::to_npy_bytes(data, shape);
    // Magic (6) + version (2) + header length (2), then the header.
    if bytes.len() - 10 - 4 * data.len() > u16::MAX as usize {
        bail!("{}: shape {shape:?} makes the .npy header too long", path.display());
    }
    write_atomic(path, &bytes)
}

/// Reads a .npy file (versions 1-3) holding '<f4' in C order; returns (shape, data).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = read_bytes(path)?;
    parse_npy(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn parse_npy(b: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        bail!("not a .npy file (bad magic)");
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            if b.len() < 12 {
                bail!("truncated .npy header");
            }
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let header = b.get(start..start + hlen).ok_or_else(|| anyhow!("truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| anyhow!("header is not text"))?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr != "<f4" {
        bail!("dtype {descr} is not supported (only '<f4')");
    }
    if dict_value(header, "fortran_order")? != "False" {
        bail!("Fortran-order arrays are not supported");
    }
    let shape_s = dict_value(header, "shape")?;
    let inner =
        shape_s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| anyhow!("bad shape {shape_s}"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| anyhow!("bad shape {shape_s}")))
        .collect::<Result<Vec<_>>>()?;
    let n =
        shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("shape {shape:?} overflows"))?;
    let data = &b[start + hlen..];
    if data.len() != n.checked_mul(4).ok_or_else(|| anyhow!("shape {shape:?} overflows"))? {
        bail!("shape {shape:?} needs {} data bytes, file has {}", n * 4, data.len());
    }
    let vals = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, vals))
}

/// The raw text of `key`'s value in the header dict (a tuple value is returned with its parens).
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat_sq = format!("'{key}':");
    let pat_dq = format!("\"{key}\":");
    let pos = header
        .find(&pat_sq)
        .map(|p| p + pat_sq.len())
        .or_else(|| header.find(&pat_dq).map(|p| p + pat_dq.len()))
        .ok_or_else(|| anyhow!("header has no '{key}'"))?;
    let rest = header[pos..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
        .ok_or_else(|| anyhow!("bad header value for '{key}'"))?;
    Ok(rest[..end].trim())
}
