//! The served model and its versions: the model every request reads once (switched atomically
//! when a fine-tune ends, or rolled back), and the fine-tuned versions written under the dataset
//! folder (`DIR/.vlsm/models/vNNN`, each a loadable model directory).
//!
//! A version directory is written as `.tmp-vNNN-PID`, its `version.json` last, then renamed into
//! place: a directory named `vNNN` is always complete, and a server killed in between leaves only
//! a `.tmp-` directory, removed at the next start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use vlsm::pipeline::Segmenter;
use vlsm::train::engine::state;

use crate::cache::FeatureCache;

/// The file that marks a complete version directory (written last) and describes it.
pub const VERSION_FILE: &str = "version.json";

/// A model being served: its name ("base" for the `--model` the server started with unless that
/// is itself a version), directory and what made it.
pub struct Version {
    pub name: String,
    pub dir: PathBuf,
    pub seg: Arc<Segmenter>,
    /// `version.json` of a fine-tuned version; `null` for a base model.
    pub meta: Value,
}

impl Version {
    /// Wraps a loaded model; a directory inside a version store takes its version's name.
    pub fn of(seg: Segmenter) -> Self {
        let dir = seg.dir.clone();
        let meta = vlsm::weights::read_json::<Value>(&dir.join(VERSION_FILE)).unwrap_or(Value::Null);
        let name = match (&meta, dir.file_name().and_then(|n| n.to_str())) {
            (Value::Object(_), Some(n)) if is_version_name(n) => n.to_string(),
            _ => "base".to_string(),
        };
        Version { name, dir, seg: Arc::new(seg), meta }
    }

    fn describe(&self) -> Value {
        json!({"version": self.name, "kind": self.seg.kind_name(), "meta": self.meta})
    }
}

/// `vNNN`.
fn is_version_name(n: &str) -> bool {
    n.len() >= 2 && n.starts_with('v') && n[1..].bytes().all(|b| b.is_ascii_digit())
}

struct Chain {
    current: Arc<Version>,
    /// Served before `current` in this process, oldest first; rollback returns to the last.
    previous: Vec<Arc<Version>>,
}

/// The served model. Requests take [`Models::current`] once and keep that `Arc` to the end, so
/// a switch never changes the model under a request in flight.
pub struct Models {
    chain: RwLock<Chain>,
}

impl Models {
    pub fn new(seg: Segmenter) -> Self {
        Models { chain: RwLock::new(Chain { current: Arc::new(Version::of(seg)), previous: Vec::new() }) }
    }

    pub fn current(&self) -> Arc<Version> {
        self.chain.read().unwrap_or_else(|e| e.into_inner()).current.clone()
    }

    /// Serves `v` from now on (the current one becomes rollback's target); clears `cache`, whose
    /// features came from the old model.
    pub fn switch(&self, v: Version, cache: &FeatureCache) {
        let mut c = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut c.current, Arc::new(v));
        c.previous.push(old);
        cache.clear();
    }

    /// Returns to the model served before the current one; the version stays on disk.
    pub fn rollback(&self, cache: &FeatureCache) -> Result<Arc<Version>, String> {
        let mut c = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let prev = c.previous.pop().ok_or_else(|| {
            format!("nothing to roll back to: {} is the first model this server has served", c.current.name)
        })?;
        c.current = prev.clone();
        cache.clear();
        Ok(prev)
    }

    /// What `GET /api/model` shows: the current version and the chain rollback walks back.
    pub fn describe(&self) -> Value {
        let c = self.chain.read().unwrap_or_else(|e| e.into_inner());
        json!({
            "version": c.current.name,
            "version_meta": c.current.meta,
            "can_rollback": !c.previous.is_empty(),
            "history": c.previous.iter().chain(std::iter::once(&c.current)).map(|v| v.describe()).collect::<Vec<_>>(),
        })
    }
}

/// `DIR/.vlsm/models`: the fine-tuned versions of a dataset folder.
pub struct Store {
    pub root: PathBuf,
    /// `DIR/.vlsm/runs`: scratch space of running fine-tunes (removed when they end).
    pub runs: PathBuf,
}

impl Store {
    /// Creates the folders and removes what a killed server left: unfinished version
    /// directories (`.tmp-*`) and fine-tune scratch space.
    pub fn open(dataset_root: &Path) -> Result<Store> {
        let base = dataset_root.join(".vlsm");
        let root = base.join("models");
        let runs = base.join("runs");
        std::fs::create_dir_all(&root).with_context(|| format!("--train: cannot create {}", root.display()))?;
        let rd = std::fs::read_dir(&root).with_context(|| format!("--train: cannot list {}", root.display()))?;
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        if runs.exists() {
            std::fs::remove_dir_all(&runs).with_context(|| format!("--train: cannot clear {}", runs.display()))?;
        }
        Ok(Store { root, runs })
    }

    /// Complete versions, oldest first, each as its `version.json` plus `version`.
    pub fn list(&self) -> Vec<Value> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| is_version_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|n| n[1..].parse::<u64>().unwrap_or(0));
        names
            .into_iter()
            .filter_map(|n| {
                let mut v = vlsm::weights::read_json::<Value>(&self.root.join(&n).join(VERSION_FILE)).ok()?;
                v.as_object_mut()?.insert("version".into(), json!(n));
                Some(v)
            })
            .collect()
    }

    /// The name the next version gets: one more than the largest on disk.
    pub fn next_name(&self) -> String {
        let max = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        is_version_name(&n).then(|| n[1..].parse::<u64>().ok()).flatten()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        format!("v{:03}", max + 1)
    }

    /// Copies the model files of `src` (a run's `best/`) to version `name` with `meta` as its `version.json`:
    /// files into a temporary directory (each fsynced), `version.json` last, then one rename.
    pub fn publish(&self, name: &str, src: &Path, meta: &Value) -> Result<PathBuf> {
        let dst = self.root.join(name);
        if dst.exists() {
            bail!("{}: already exists", dst.display());
        }
        let tmp = self.root.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let rd = std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))?;
        for e in rd {
            let p = e.with_context(|| format!("cannot list {}", src.display()))?.path();
            // The model's files only, not the trainer's checkpoint (weights, optimizer moments).
            let ckpt = [state::WEIGHTS, state::OPTIMIZER, state::STATE, state::EMA];
            if p.is_file() && !ckpt.iter().any(|c| p.file_name().is_some_and(|n| n == *c)) {
                let name = p.file_name().ok_or_else(|| anyhow!("{}: no file name", p.display()))?;
                let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                vlsm::io::write_atomic(&tmp.join(name), &bytes)?;
            }
        }
        vlsm::io::write_atomic(&tmp.join(VERSION_FILE), &serde_json::to_vec_pretty(meta)?)?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("cannot rename {} to {}", tmp.display(), dst.display()))?;
        // The rename itself is durable once the folder holding it is synced.
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(dst)
    }
}
