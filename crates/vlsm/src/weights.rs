//! Weights from disk: `.safetensors` (memory-mapped) and PyTorch pickles (`.bin`, `.pth`, `.pt`),
//! with errors that name the file, the key and both shapes; `config.json` reading and model-kind
//! detection.

use std::collections::HashMap;
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
/// `config.json` (the names of [`ModelKind`]); without one, a CRIS.pytorch yaml means CRIS.
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
    if crate::loader::cris_yaml_file(dir)?.is_some() {
        return Ok(ModelKind::Cris);
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

/// Names and shapes of the tensors in a weight file, read from its header (safetensors) or
/// pickle (`.bin`, `.pth`, `.pt`) without the data; `state_key` picks a nested dict of a pickle.
pub fn tensor_shapes(path: &Path, state_key: Option<&str>) -> Result<HashMap<String, Vec<usize>>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            use std::io::Read;
            check_safetensors_header(path)?;
            let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            let mut n = [0u8; 8];
            f.read_exact(&mut n).with_context(|| format!("{}: cannot read", path.display()))?;
            let mut header = vec![0u8; u64::from_le_bytes(n) as usize];
            f.read_exact(&mut header).with_context(|| format!("{}: cannot read", path.display()))?;
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
                .map_err(|e| anyhow::anyhow!("{}: malformed safetensors header: {e}", path.display()))?;
            let mut out = HashMap::new();
            for (name, t) in v {
                if name == "__metadata__" {
                    continue;
                }
                let shape: Vec<usize> = t
                    .get("shape")
                    .and_then(|s| serde_json::from_value(s.clone()).ok())
                    .ok_or_else(|| anyhow::anyhow!("{}: tensor {name} has no shape in the header", path.display()))?;
                out.insert(name, shape);
            }
            Ok(out)
        }
        "bin" | "pth" | "pt" | "ckpt" => {
            let infos = candle_core::pickle::read_pth_tensor_info(path, false, state_key).map_err(|e| {
                anyhow::anyhow!("{}: cannot read weights: {}", path.display(), one_line(&e.to_string()))
            })?;
            Ok(infos.into_iter().map(|i| (i.name, i.layout.shape().dims().to_vec())).collect())
        }
        other => bail!("{}: unknown weight format '.{other}' (expected .safetensors, .bin, .pth)", path.display()),
    }
}

/// [`tensor_shapes`] of a checkpoint laid out as [`state_dict_var_builder`] reads it (under
/// `state_dict` or at the top, with or without `module.`), the names without `module.`.
pub fn state_dict_shapes(path: &Path, probe: &str) -> Result<HashMap<String, Vec<usize>>> {
    let is_st = path.extension().is_some_and(|e| e == "safetensors");
    let keys: &[Option<&str>] = if is_st { &[None] } else { &[Some("state_dict"), None] };
    let mut last = None;
    for &key in keys {
        let shapes = match tensor_shapes(path, key) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if shapes.contains_key(probe) {
            return Ok(shapes);
        }
        if shapes.contains_key(&format!("module.{probe}")) {
            return Ok(shapes
                .into_iter()
                .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), v))
                .collect());
        }
    }
    match last {
        Some(e) if keys.len() == 1 => Err(e),
        _ => {
            bail!("{}: no tensor {probe} (with or without 'module.', at the top or under 'state_dict')", path.display())
        }
    }
}
