//! Atomic file writes: a temp file in the same directory, fsync, rename.

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};
use image::{DynamicImage, ImageFormat};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one.
/// Creates missing parent directories. A killed process leaves at most a `.<name>.tmp.*` file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// Tensors as a `.safetensors` file, atomically (candle's `save` writes in place, unsynced).
pub fn write_safetensors_atomic<S: AsRef<str> + Ord + std::fmt::Display>(
    path: &Path,
    tensors: &std::collections::HashMap<S, candle_core::Tensor>,
) -> Result<()> {
    write_atomic_with(path, |tmp| candle_core::safetensors::save(tensors, tmp).map_err(std::io::Error::other))
}

/// [`write_atomic`] for writers that take a path: `write` fills a temp file beside `path`,
/// which is then synced and renamed into place.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let p = path.display();
    let name = path.file_name().ok_or_else(|| anyhow!("{p}: not a file path"))?.to_string_lossy().into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| anyhow!("{p}: cannot create directory {}: {e}", dir.display()))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        write(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; not all platforms allow fsync on a directory.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow!("{p}: cannot write: {e}"));
    }
    Ok(())
}

/// Encodes `img` as PNG and writes it atomically.
pub fn write_png_atomic(path: &Path, img: &DynamicImage) -> Result<()> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png).map_err(|e| anyhow!("{}: cannot encode PNG: {e}", path.display()))?;
    write_atomic(path, buf.get_ref())
}
