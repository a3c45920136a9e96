//! Which reader a file goes to: by extension first, then by magic bytes.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Result};

/// The formats the dispatcher knows; everything that is not NIfTI or DICOM goes to the raster
/// decoder (which sniffs PNG/JPEG/TIFF/BMP itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Nifti,
    Dicom,
    Raster,
}

/// Bytes [`sniff`] needs from the start of a file (the DICOM marker at 128, NIfTI magic at 344).
pub(crate) const HEAD_LEN: usize = 352;

/// The format of `path` from its name, else from `head` (the file's first bytes, or all of them).
pub(crate) fn sniff(path: &Path, head: &[u8]) -> Format {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        return Format::Nifti;
    }
    if name.ends_with(".dcm") || name.ends_with(".dicom") {
        return Format::Dicom;
    }
    if head.get(128..132) == Some(b"DICM") || head.starts_with(b"DICM") {
        return Format::Dicom;
    }
    // A DICOM data set without preamble or meta: group 0002 or 0008 first, a small element.
    if head.len() >= 8 && matches!(head[..2], [2, 0] | [8, 0]) && head[3] == 0 {
        return Format::Dicom;
    }
    if head.get(344..348) == Some(b"n+1\0") || head.starts_with(&[0x1f, 0x8b]) {
        return Format::Nifti;
    }
    Format::Raster
}

/// The metadata of a regular file; anything else is an error naming the file.
pub(crate) fn regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let p = path.display();
    let md = std::fs::metadata(path).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    if md.is_dir() {
        bail!("{p}: is a directory, not an image file");
    }
    if !md.is_file() {
        bail!("{p}: not a regular file");
    }
    Ok(md)
}

/// The first [`HEAD_LEN`] bytes of a file (fewer if it is shorter).
pub(crate) fn read_head(path: &Path) -> Result<Vec<u8>> {
    let p = path.display();
    regular_file(path)?;
    let mut head = vec![0u8; HEAD_LEN];
    let mut f = std::fs::File::open(path).map_err(|e| anyhow!("{p}: cannot read: {e}"))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => bail!("{p}: cannot read: {e}"),
        }
    }
    head.truncate(n);
    Ok(head)
}
