//! Weights from disk: `.safetensors` (memory-mapped) and PyTorch pickles (`.bin`, `.pth`, `.pt`),
//! with errors that name the file, the key and both shapes; `config.json` reading and model-kind
//! detection.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

pub use crate::models::seg::ModelKind;

/// Weight file names looked for in a model directory, in order of preference.
pub const WEIGHT_FILES: &[&str] =
    &["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin", "open_clip_model.safetensors"];

/// The weight file inside a model directory (or the path itself when it is a file).
pub fn find_weights(dir: &Path) -> Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    if !dir.exists() {
        bail!("{}: model directory not found", dir.display());
    }
    for name in WEIGHT_FILES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{}: no weights found (looked for {})", dir.display(), WEIGHT_FILES.join(", "))
}

/// A `VarBuilder` over one weight file. `state_key` picks a nested dict in a torch pickle
/// (e.g. CRIS's `state_dict`).
pub fn var_builder(path: &Path, dtype: DType, dev: &Device, state_key: Option<&str>) -> Result<VarBuilder<'static>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let vb = match ext.as_str() {
        "safetensors" => {
            check_safetensors_header(path)?;
            // SAFETY: the file is memory-mapped read-only; changing it under a running process
            // is undefined behaviour, as with every mmap-based loader.
            unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, dev) }
        }
        "bin" | "pth" | "pt" | "ckpt" => match state_key {
            Some(k) => VarBuilder::from_pth_with_state(path, dtype, k, dev),
            None => VarBuilder::from_pth(path, dtype, dev),
        },
        other => bail!("{}: unknown weight format '.{other}' (expected .safetensors, .bin, .pth)", path.display()),
    };
    vb.map_err(|e| anyhow::anyhow!("{}: cannot read weights: {}", path.display(), one_line(&e.to_string())))
}

/// A truncated or non-safetensors file gives a clear error instead of an mmap fault later.
fn check_safetensors_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_err() {
        bail!("{}: not a safetensors file (shorter than its header)", path.display());
    }
    let header = u64::from_le_bytes(n);
    if header == 0 || header > 100 << 20 || 8 + header > len {
        bail!("{}: not a safetensors file (header length {header}, file length {len})", path.display());
    }
    Ok(())
}

/// The first line of an error message, without candle's backtrace.
pub fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Attach the weight file to a model-construction error: "FILE: shape mismatch for KEY, …".
pub fn load_error(path: &Path, e: candle_core::Error) -> anyhow::Error {
    let msg = one_line(&e.to_string());
    anyhow::anyhow!("{}: {}", path.display(), msg)
}

/// Read a JSON config file with the file named in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: malformed JSON: {e}", path.display()))
}

/// Which segmentation architecture a model directory holds, from `model_type` in its
/// `config.json` (the names of [`ModelKind`]).
pub fn detect(dir: &Path) -> Result<ModelKind> {
    if !dir.is_dir() {
        bail!("{}: model directory not found", dir.display());
    }
    let cfg = dir.join("config.json");
    if cfg.is_file() {
        let v: serde_json::Value = read_json(&cfg)?;
        match v.get("model_type").and_then(|m| m.as_str()) {
            Some(name) => match ModelKind::from_name(name) {
                Some(kind) => return Ok(kind),
                None => bail!(
                    "{}: model_type '{name}' is not supported (expected one of: {})",
                    cfg.display(),
                    ModelKind::names().join(", ")
                ),
            },
            None => bail!("{}: no model_type", cfg.display()),
        }
    }
    bail!("{}: not a model directory (no config.json)", dir.display())
}

/// A VarBuilder over a `torch.save` checkpoint whose tensors may sit under `state_dict` and carry
/// DataParallel's `module.` prefix; `probe` is a key every such checkpoint holds.
pub fn state_dict_var_builder(path: &Path, dtype: DType, dev: &Device, probe: &str) -> Result<VarBuilder<'static>> {
    let is_st = path.extension().is_some_and(|e| e == "safetensors");
    let keys: &[Option<&str>] = if is_st { &[None] } else { &[Some("state_dict"), None] };
    let mut last = None;
    for &key in keys {
        let vb = match var_builder(path, dtype, dev, key) {
            Ok(vb) => vb,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if vb.contains_tensor(probe) {
            return Ok(vb);
        }
        if vb.contains_tensor(&format!("module.{probe}")) {
            return Ok(vb.rename_f(|k: &str| format!("module.{k}")));
        }
    }
    match last {
        Some(e) if keys.len() == 1 => Err(e),
        _ => {
            bail!("{}: no tensor {probe} (with or without 'module.', at the top or under 'state_dict')", path.display())
        }
    }
}
