//! Where the built-in model is found: `VLSM_MODEL`, then `models/default` beside the executable
//! (or two levels up, for `target/release/vlsm` in a checkout), then the source tree, then the
//! copy embedded in the binary, unpacked once into the user's cache directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Files of a TextUNet model directory.
pub const FILES: &[&str] =
    &["config.json", "model.safetensors", "preprocessor_config.json", "bpe_simple_vocab_16e6.txt.gz"];

fn complete(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

#[cfg(vlsm_default_model)]
const EMBEDDED: &[(&str, &[u8])] = &[
    ("config.json", include_bytes!("../../../models/default/config.json")),
    ("model.safetensors", include_bytes!("../../../models/default/model.safetensors")),
    ("preprocessor_config.json", include_bytes!("../../../models/default/preprocessor_config.json")),
    ("bpe_simple_vocab_16e6.txt.gz", include_bytes!("../../../models/default/bpe_simple_vocab_16e6.txt.gz")),
];
#[cfg(not(vlsm_default_model))]
const EMBEDDED: &[(&str, &[u8])] = &[];

/// The embedded files written into `<cache>/vlsm/default-<hash>` (atomically, once).
fn unpack_embedded() -> Result<Option<PathBuf>> {
    if EMBEDDED.is_empty() {
        return Ok(None);
    }
    // FNV-1a over a sample of the bytes (startup stays fast); the key of existing caches.
    let mut h = crate::io::FNV_OFFSET;
    for (_, b) in EMBEDDED {
        for chunk in b.chunks(4096).step_by(64) {
            for &x in chunk.iter().take(64) {
                h = crate::io::fnv1a_mix(h, x as u64);
            }
        }
        h ^= b.len() as u64;
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("vlsm").join(format!("default-{h:016x}"));
    if !complete(&dir) {
        for (name, bytes) in EMBEDDED {
            crate::io::write_atomic(&dir.join(name), bytes)?;
        }
    }
    Ok(Some(dir))
}

/// The built-in model's directory.
pub fn default_model_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VLSM_MODEL") {
        let p = crate::hub::resolve(&PathBuf::from(p))?;
        if !p.is_dir() {
            bail!("VLSM_MODEL={}: not a directory", p.display());
        }
        return Ok(p);
    }
    let mut candidates = vec![];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(3) {
            candidates.push(up.join("models/default"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default"));
    if let Some(d) = candidates.into_iter().find(|d| complete(d)) {
        return Ok(d);
    }
    match unpack_embedded()? {
        Some(d) => Ok(d),
        None => bail!("no built-in model in this build (models/default is missing); pass --model DIR"),
    }
}
