//! Opening and validating medvlsm datasets; prompt sampling; pooling.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use rand::Rng;
use rayon::prelude::*;
use serde_json::Value;

/// Extensions tried, in order, when a name in the anns has none or a different one on disk.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "nii.gz", "nii", "dcm"];

/// A prompt value: one string, or a list from which one is drawn per load (medvlsm's
/// `random.choice`, also at val/test time).
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Record {
    pub img_name: String,
    pub mask_name: String,
    /// `[x0, y0, x1, y1]` as in the anns, when present.
    pub bbox: Option<Vec<f64>>,
    /// Prompt keys (p0, p1, ...) to values.
    pub prompts: BTreeMap<String, Prompt>,
    pub image_path: PathBuf,
    pub mask_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// The root folder's name (e.g. "kvasir_polyp").
    pub name: String,
    pub root: PathBuf,
    pub split: String,
    pub records: Vec<Record>,
}

impl Dataset {
    /// Reads `root/anns/{split}.json`, resolves every image and mask, and checks that each
    /// exists and that each mask has its image's size. Errors name the file and the record.
    pub fn open(root: &Path, split: &str) -> Result<Dataset> {
        let ds = Self::open_unchecked(root, split)?;
        ds.check_sizes()?;
        Ok(ds)
    }

    /// Like [`Dataset::open`] without reading image headers (files must still exist).
    pub fn open_unchecked(root: &Path, split: &str) -> Result<Dataset> {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{}: not a dataset folder", root.display()))?;
        let anns = root.join("anns").join(format!("{split}.json"));
        let text = std::fs::read_to_string(&anns).map_err(|e| anyhow!("{}: cannot read: {e}", anns.display()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: invalid JSON: {e}", anns.display()))?;
        let items = json.as_array().ok_or_else(|| anyhow!("{}: expected a list of records", anns.display()))?;
        let images = Folder::list(&root.join("images"))?;
        let masks = Folder::list(&root.join("masks"))?;
        let mut records = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let rec = parse_record(item, &images, &masks)
                .map_err(|e| anyhow!("{}: record {i}{}: {e}", anns.display(), describe(item)))?;
            records.push(rec);
        }
        Ok(Dataset { name, root: root.to_path_buf(), split: split.to_string(), records })
    }

    /// Checks that every mask has the size of its image (headers only, in parallel); a NIfTI
    /// image and mask must have the same 3-D shape.
    pub fn check_sizes(&self) -> Result<()> {
        use crate::io::{file_kind, volume_dimensions, FileKind};
        self.records.par_iter().try_for_each(|r| {
            if file_kind(&r.image_path)? == FileKind::Nifti && file_kind(&r.mask_path)? == FileKind::Nifti {
                let (a, b) = (volume_dimensions(&r.image_path)?, volume_dimensions(&r.mask_path)?);
                if a != b {
                    bail!(
                        "{}: mask {} is {}x{}x{} but image {} is {}x{}x{}",
                        self.name,
                        r.mask_path.display(),
                        b[0],
                        b[1],
                        b[2],
                        r.image_path.display(),
                        a[0],
                        a[1],
                        a[2]
                    );
                }
                return Ok(());
            }
            let a = crate::io::image_dimensions(&r.image_path)?;
            let b = crate::io::image_dimensions(&r.mask_path)?;
            if a != b {
                bail!(
                    "{}: mask {} is {}x{} but image {} is {}x{}",
                    self.name,
                    r.mask_path.display(),
                    b.0,
                    b.1,
                    r.image_path.display(),
                    a.0,
                    a.1
                );
            }
            Ok(())
        })
    }

    /// Fails unless every record has prompt `key` (or `key` is "random" and each has p1..).
    pub fn require_prompt(&self, key: &str) -> Result<()> {
        for r in &self.records {
            let anns = self.root.join("anns").join(format!("{}.json", self.split));
            check_key(r, key).map_err(|e| anyhow!("{}: {e}", anns.display()))?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// One prompt for `record`: the string under `key`, or one drawn uniformly from its list.
/// `key = "random"` first draws a key uniformly from p1..pN (medvlsm's `prompt_type: random`,
/// which leaves out the empty p0).
pub fn prompt<'a, R: Rng + ?Sized>(record: &'a Record, key: &str, rng: &mut R) -> Result<&'a str> {
    check_key(record, key)?;
    let key = if key == "random" {
        let keys = numbered_keys(record);
        let keys: Vec<&String> = keys.into_iter().filter(|k| *k != "p0").collect();
        keys[rng.random_range(0..keys.len())].as_str()
    } else {
        key
    };
    Ok(match &record.prompts[key] {
        Prompt::One(s) => s,
        Prompt::Many(v) => &v[rng.random_range(0..v.len())],
    })
}

fn check_key(r: &Record, key: &str) -> Result<()> {
    let ok = if key == "random" { r.prompts.keys().any(|k| k != "p0") } else { r.prompts.contains_key(key) };
    if !ok {
        let have: Vec<&str> = numbered_keys(r).into_iter().map(|k| k.as_str()).collect();
        bail!("record {}: unknown prompt key {key:?} (has {})", r.img_name, have.join(", "));
    }
    Ok(())
}

/// Prompt keys in numeric order (p0, p1, ..., p10), so that seeded draws don't depend on
/// string order.
fn numbered_keys(r: &Record) -> Vec<&String> {
    let mut keys: Vec<&String> = r.prompts.keys().collect();
    keys.sort_by_key(|k| (k.trim_start_matches('p').parse::<u64>().unwrap_or(u64::MAX), k.to_string()));
    keys
}

fn describe(item: &Value) -> String {
    match item.get("img_name").and_then(Value::as_str) {
        Some(n) => format!(" ({n})"),
        None => String::new(),
    }
}

fn parse_record(item: &Value, images: &Folder, masks: &Folder) -> Result<Record> {
    let field = |k: &str| -> Result<String> {
        match item.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => bail!("{k} must be a non-empty string"),
            None => bail!("missing {k}"),
        }
    };
    let img_name = field("img_name")?;
    let mask_name = field("mask_name")?;
    let bbox = match item.get("bbox") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_f64().ok_or_else(|| anyhow!("bbox must be a list of numbers")))
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => bail!("bbox must be a list of numbers"),
    };
    let mut prompts = BTreeMap::new();
    if let Some(p) = item.get("prompts") {
        let obj = p.as_object().ok_or_else(|| anyhow!("prompts must be an object"))?;
        for (k, v) in obj {
            let pv = match v {
                Value::String(s) => Prompt::One(s.clone()),
                Value::Array(a) if !a.is_empty() => Prompt::Many(
                    a.iter()
                        .map(|s| {
                            s.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| anyhow!("prompt {k}: list items must be strings"))
                        })
                        .collect::<Result<_>>()?,
                ),
                Value::Array(_) => bail!("prompt {k} is an empty list"),
                _ => bail!("prompt {k} must be a string or a list of strings"),
            };
            prompts.insert(k.clone(), pv);
        }
    }
    let image_path = images
        .resolve(&img_name)
        .map_err(|e| anyhow!("img_name: {e}"))?
        .ok_or_else(|| anyhow!("image {} not found", images.dir.join(&img_name).display()))?;
    let mask_path = masks
        .resolve(&mask_name)
        .map_err(|e| anyhow!("mask_name: {e}"))?
        .ok_or_else(|| anyhow!("mask {} not found", masks.dir.join(&mask_name).display()))?;
    Ok(Record { img_name, mask_name, bbox, prompts, image_path, mask_path })
}

/// A folder's file names, to resolve names whose extension differs from the anns.
struct Folder {
    dir: PathBuf,
    names: HashMap<String, ()>,
}

impl Folder {
    fn list(dir: &Path) -> Result<Folder> {
        let rd = std::fs::read_dir(dir).map_err(|e| anyhow!("{}: cannot list folder: {e}", dir.display()))?;
        let mut names = HashMap::new();
        for e in rd {
            let e = e.map_err(|e| anyhow!("{}: cannot list folder: {e}", dir.display()))?;
            names.insert(e.file_name().to_string_lossy().into_owned(), ());
        }
        Ok(Folder { dir: dir.to_path_buf(), names })
    }

    /// The name as given if it exists; else its stem (name without a known extension) with
    /// the first extension in [`IMAGE_EXTENSIONS`] that exists. Names may contain sub-folders,
    /// but must stay inside the folder ([`super::names`]): an absolute name, `..` that climbs
    /// out, or a symlink to a file outside is an error.
    fn resolve(&self, name: &str) -> Result<Option<PathBuf>> {
        let rel = super::names::safe_relative(name)?;
        let name = rel.to_string_lossy().into_owned();
        let exists = |n: &str| {
            if n.contains('/') {
                self.dir.join(n).is_file()
            } else {
                self.names.contains_key(n)
            }
        };
        let found = if exists(&name) {
            Some(self.dir.join(&name))
        } else {
            let lower = name.to_lowercase();
            let stem = IMAGE_EXTENSIONS
                .iter()
                .find(|e| lower.ends_with(&format!(".{e}")))
                .map(|e| &name[..name.len() - e.len() - 1])
                .unwrap_or(&name);
            IMAGE_EXTENSIONS
                .iter()
                .flat_map(|e| [format!("{stem}.{e}"), format!("{stem}.{}", e.to_uppercase())])
                .find(|n| exists(n))
                .map(|n| self.dir.join(n))
        };
        if let Some(p) = &found {
            super::names::check_inside(&self.dir, p)?;
        }
        Ok(found)
    }
}

/// Several datasets behind one index (medvlsm's pooled configurations).
#[derive(Debug, Clone)]
pub struct Pool {
    pub datasets: Vec<Dataset>,
    index: Vec<(usize, usize)>,
}

/// One pooled record with the dataset it came from.
#[derive(Debug, Clone, Copy)]
pub struct PoolItem<'a> {
    pub dataset: &'a Dataset,
    pub record: &'a Record,
}

impl Pool {
    /// Pools datasets in the given order; their names must be distinct (outputs are
    /// written per dataset name).
    pub fn new(datasets: Vec<Dataset>) -> Result<Pool> {
        for (i, d) in datasets.iter().enumerate() {
            if datasets[..i].iter().any(|o| o.name == d.name) {
                bail!("dataset name {} appears twice ({} and another folder)", d.name, d.root.display());
            }
        }
        let index =
            datasets.iter().enumerate().flat_map(|(di, d)| (0..d.records.len()).map(move |ri| (di, ri))).collect();
        Ok(Pool { datasets, index })
    }

    /// Opens (and validates) `split` of each root and pools them.
    pub fn open(roots: &[PathBuf], split: &str) -> Result<Pool> {
        Pool::new(roots.iter().map(|r| Dataset::open(r, split)).collect::<Result<_>>()?)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> PoolItem<'_> {
        let (d, r) = self.index[i];
        PoolItem { dataset: &self.datasets[d], record: &self.datasets[d].records[r] }
    }

    pub fn iter(&self) -> impl Iterator<Item = PoolItem<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    pub fn require_prompt(&self, key: &str) -> Result<()> {
        self.datasets.iter().try_for_each(|d| d.require_prompt(key))
    }
}
