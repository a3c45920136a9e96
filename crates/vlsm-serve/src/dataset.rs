//! "Save to dataset": append an image, its corrected mask and the prompt to a medvlsm folder
//! (`images/`, `masks/`, `anns/train.json`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use serde_json::{json, Value};
use std::sync::Mutex;

pub struct DatasetDir {
    pub root: PathBuf,
    /// Serialises saves: the annotation file is read, extended and rewritten. Taken on the
    /// blocking thread, so a request that timed out still holds it until its write ends.
    pub lock: Mutex<()>,
}

impl DatasetDir {
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["images", "masks", "anns"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| anyhow!("--dataset: cannot create {}: {e}", d.display()))?;
        }
        let root = root.canonicalize().map_err(|e| anyhow!("--dataset {}: {e}", root.display()))?;
        Ok(DatasetDir { root, lock: Mutex::new(()) })
    }
}

/// A file stem from a client-given name. Rejects anything that could name another folder
/// (separators, `..`, absolute paths, drive letters); other odd characters become `_`.
pub fn sanitize_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        bail!("name is empty");
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") || name.contains(':') || name.contains('\0') {
        bail!("name {name:?} must not contain path separators, '..' or ':'");
    }
    let stem = strip_image_ext(name);
    let clean: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(80)
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        bail!("name {name:?} has no usable characters");
    }
    Ok(clean)
}

fn strip_image_ext(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    for ext in vlsm::data::IMAGE_EXTENSIONS {
        let suffix = format!(".{ext}");
        if lower.ends_with(&suffix) && name.len() > suffix.len() {
            return &name[..name.len() - suffix.len()];
        }
    }
    name
}

/// What was written, relative to the dataset root.
#[derive(serde::Serialize)]
pub struct Saved {
    pub img_name: String,
    pub mask_name: String,
    pub record: Value,
    pub records: usize,
}

/// Writes `images/<stem>.png`, `masks/<stem>.png` and appends a record to `anns/train.json`;
/// a stem already taken gets `-1`, `-2`, …
pub fn save(dir: &DatasetDir, stem: &str, image: &RgbImage, mask: &GrayImage, prompt: &str) -> Result<Saved> {
    let _guard = dir.lock.lock().unwrap_or_else(|e| e.into_inner());
    if image.dimensions() != mask.dimensions() {
        let (a, b) = (image.dimensions(), mask.dimensions());
        bail!("mask is {}x{} but the image is {}x{}", b.0, b.1, a.0, a.1);
    }
    let anns_path = dir.root.join("anns").join("train.json");
    let mut records: Vec<Value> = match std::fs::read(&anns_path) {
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Array(a)) => a,
            _ => bail!("anns/train.json in the dataset is not a JSON list; not touching it"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => bail!("cannot read anns/train.json: {e}"),
    };
    let taken = |s: &str| {
        dir.root.join("images").join(format!("{s}.png")).exists()
            || dir.root.join("masks").join(format!("{s}.png")).exists()
            || records.iter().any(|r| r.get("segment_id").and_then(Value::as_str) == Some(s))
    };
    let mut name = stem.to_string();
    let mut n = 1;
    while taken(&name) {
        name = format!("{stem}-{n}");
        n += 1;
        if n > 100_000 {
            bail!("too many files named {stem}");
        }
    }
    let file = format!("{name}.png");
    let binary = GrayImage::from_fn(mask.width(), mask.height(), |x, y| {
        image::Luma([if mask.get_pixel(x, y)[0] > 127 { 255 } else { 0 }])
    });
    vlsm::io::write_png_atomic(&dir.root.join("images").join(&file), &DynamicImage::ImageRgb8(image.clone()))?;
    vlsm::io::write_png_atomic(&dir.root.join("masks").join(&file), &DynamicImage::ImageLuma8(binary.clone()))?;
    let record = json!({
        "bbox": vlsm::data::prompts::overall_bbox(&binary),
        "cat": 0,
        "segment_id": name,
        "img_name": file,
        "mask_name": file,
        "sentences": [{"idx": 0, "sent_id": records.len(), "sent": prompt}],
        "sentences_num": 1,
        "prompts": {"p0": "", "p1": prompt},
    });
    records.push(record.clone());
    // Files first, then the record: a crash never leaves a record without its files.
    vlsm::io::write_atomic(&anns_path, &serde_json::to_vec_pretty(&records)?)?;
    Ok(Saved { img_name: file.clone(), mask_name: file, record, records: records.len() })
}

#[cfg(test)]
mod tests {
    use super::sanitize_name;

    #[test]
    fn names() {
        assert_eq!(sanitize_name("case 01.png").unwrap(), "case_01");
        assert_eq!(sanitize_name("scan.nii.gz").unwrap(), "scan");
        assert_eq!(sanitize_name(".hidden").unwrap(), "hidden");
        for bad in ["../x", "/etc/passwd", "a/b", "a\\b", "..", "C:x", "", "  "] {
            assert!(sanitize_name(bad).is_err(), "{bad}");
        }
    }
}
