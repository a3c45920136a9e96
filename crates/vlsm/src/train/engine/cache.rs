//! [`FeatureStore`], the memory-mapped on-disk cache of frozen-encoder features: key → a fixed
//! list of f32 tensors with fixed shapes (e.g. the activations of a frozen encoder for one image
//! at one size), so training epochs only run the decoder.
//!
//! On disk in `dir`: `<id>.json` (index: model key, shapes, entry keys in record order, data file
//! name) and `<id>.<gen>.f32` (records back to back, little-endian f32). `id` hashes the model
//! key and shapes, so a cache is reused by any run with the same model weights and sizes. Adding
//! entries writes a new data file and then the index, each atomically; the old data file is
//! removed afterwards.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::io::Fnv64;

pub fn hash_bytes(b: &[u8]) -> String {
    let mut h = Fnv64::default();
    h.update(b);
    h.hex()
}

/// Content hash of a file (e.g. model weights), for cache keys.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    let mut h = Fnv64::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// Little-endian bytes of `v` (a view on little-endian hosts).
fn f32_bytes(v: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: u8 has alignment 1 and f32 has no padding or invalid bytes.
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) })
    } else {
        Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    version: u32,
    model_key: String,
    shapes: Vec<Vec<usize>>,
    data: String,
    keys: Vec<String>,
}

/// What opening a [`FeatureStore`] did.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub reused: usize,
    pub computed: usize,
    pub compute_seconds: f64,
}

/// The on-disk feature cache of one (model, shapes), memory-mapped.
pub struct FeatureStore {
    path: PathBuf,
    shapes: Vec<Vec<usize>>,
    record_len: usize,
    index: HashMap<String, usize>,
    map: Option<Mmap>,
}

impl FeatureStore {
    /// Opens the cache for (`model_key`, `shapes`) in `dir` and fills in the `keys` it lacks by
    /// calling `compute` with up to `batch` positions into `keys` at a time; it must return one
    /// tensor per shape, each `[n, ...shape]`.
    pub fn open(
        dir: &Path,
        model_key: &str,
        shapes: Vec<Vec<usize>>,
        keys: &[String],
        batch: usize,
        mut compute: impl FnMut(&[usize]) -> Result<Vec<Tensor>>,
    ) -> Result<(Self, StoreStats)> {
        fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create cache directory: {e}", dir.display()))?;
        let id = hash_bytes(format!("{model_key}\n{shapes:?}").as_bytes());
        let index_path = dir.join(format!("{id}.json"));
        let record_len: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
        let old: Option<Index> = match fs::read(&index_path) {
            Ok(b) => {
                let ix: Index = serde_json::from_slice(&b)
                    .map_err(|e| anyhow!("{}: bad cache index: {e}", index_path.display()))?;
                if ix.model_key != model_key || ix.shapes != shapes {
                    bail!("{}: cache index is for another model (hash collision?); delete it", index_path.display());
                }
                Some(ix)
            }
            Err(_) => None,
        };
        let mut stats = StoreStats::default();
        let mut cache = FeatureStore { path: index_path.clone(), shapes, record_len, index: HashMap::new(), map: None };
        let mut all_keys = Vec::new();
        if let Some(ix) = &old {
            cache.map_data(&dir.join(&ix.data), ix.keys.len())?;
            all_keys = ix.keys.clone();
            cache.index = ix.keys.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        }
        // Temp files of killed runs that were building this cache.
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                // `.<id>.<gen>.f32.<pid>.tmp`: only when that process is gone (Linux /proc check).
                let pid = n.strip_suffix(".tmp").and_then(|r| r.rsplit('.').next()).unwrap_or("");
                let gone =
                    !pid.is_empty() && Path::new("/proc/self").exists() && !Path::new("/proc").join(pid).exists();
                if n.starts_with(&format!(".{id}.")) && n.ends_with(".tmp") && gone {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<usize> =
            (0..keys.len()).filter(|&i| !cache.index.contains_key(&keys[i]) && seen.insert(&keys[i])).collect();
        stats.reused = keys.len() - missing.len();
        if missing.is_empty() {
            return Ok((cache, stats));
        }
        // New data file = old records + new ones, streamed to a temp file and renamed.
        let gen = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let data_name = format!("{id}.{gen:x}.f32");
        let data_path = dir.join(&data_name);
        let tmp = dir.join(format!(".{data_name}.{}.tmp", std::process::id()));
        let werr = |e: std::io::Error| anyhow!("{}: cannot write cache: {e}", tmp.display());
        let mut w = BufWriter::new(fs::File::create(&tmp).map_err(werr)?);
        if let Some(m) = &cache.map {
            w.write_all(&m[..]).map_err(werr)?;
        }
        let t0 = Instant::now();
        for chunk in missing.chunks(batch.max(1)) {
            let outs = compute(chunk)?;
            if outs.len() != cache.shapes.len() {
                bail!("feature cache: compute returned {} tensors, expected {}", outs.len(), cache.shapes.len());
            }
            let mut flat = Vec::with_capacity(outs.len());
            for (o, s) in outs.iter().zip(&cache.shapes) {
                let mut want = vec![chunk.len()];
                want.extend(s);
                if o.dims() != want.as_slice() {
                    bail!("feature cache: compute returned shape {:?}, expected {want:?}", o.dims());
                }
                flat.push(o.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
            }
            for (j, &k) in chunk.iter().enumerate() {
                for (f, s) in flat.iter().zip(&cache.shapes) {
                    let n: usize = s.iter().product();
                    w.write_all(&f32_bytes(&f[j * n..(j + 1) * n])).map_err(werr)?;
                }
                all_keys.push(keys[k].clone());
            }
        }
        stats.computed = missing.len();
        stats.compute_seconds = t0.elapsed().as_secs_f64();
        let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
        f.sync_all().map_err(werr)?;
        drop(f);
        fs::rename(&tmp, &data_path).map_err(|e| anyhow!("{}: {e}", data_path.display()))?;
        let ix = Index {
            version: 1,
            model_key: model_key.to_string(),
            shapes: cache.shapes.clone(),
            data: data_name,
            keys: all_keys,
        };
        crate::io::write_atomic(&index_path, &serde_json::to_vec(&ix)?)?;
        cache.map = None;
        cache.map_data(&data_path, ix.keys.len())?;
        cache.index = ix.keys.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        if let Some(o) = old {
            let _ = fs::remove_file(dir.join(o.data));
        }
        Ok((cache, stats))
    }

    fn map_data(&mut self, path: &Path, n: usize) -> Result<()> {
        let f = fs::File::open(path).map_err(|e| anyhow!("{}: cannot open cache data: {e}", path.display()))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        if len != n * self.record_len * 4 {
            bail!(
                "{}: cache data has {len} bytes, index expects {}; delete the cache",
                path.display(),
                n * self.record_len * 4
            );
        }
        if len > 0 {
            // SAFETY: read-only map of a file this cache never rewrites in place (updates go to a
            // new file); another process truncating it would be undefined behaviour, as for any mmap.
            self.map = Some(unsafe { Mmap::map(&f) }.map_err(|e| anyhow!("{}: cannot map: {e}", path.display()))?);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn index_path(&self) -> &Path {
        &self.path
    }

    fn floats(&self, rec: usize, off: usize, n: usize) -> Cow<'_, [f32]> {
        let m = self.map.as_ref().expect("non-empty cache is mapped");
        let start = (rec * self.record_len + off) * 4;
        let bytes = &m[start..start + n * 4];
        // SAFETY: any bit pattern is a valid f32; the mmap is page aligned and records are whole
        // f32s, so `mid` covers everything on little-endian hosts.
        let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
        if cfg!(target_endian = "little") && pre.is_empty() && post.is_empty() {
            Cow::Borrowed(mid)
        } else {
            Cow::Owned(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        }
    }

    /// The tensors of `keys` stacked: one `[keys.len(), ...shape]` tensor per shape.
    pub fn get_batch(&self, keys: &[&str], dev: &Device) -> Result<Vec<Tensor>> {
        let recs = keys
            .iter()
            .map(|k| self.index.get(*k).copied().ok_or_else(|| anyhow!("feature cache: no entry for '{k}'")))
            .collect::<Result<Vec<_>>>()?;
        let mut off = 0;
        let mut out = Vec::with_capacity(self.shapes.len());
        for s in &self.shapes {
            let n: usize = s.iter().product();
            let mut buf = Vec::with_capacity(n * recs.len());
            for &r in &recs {
                buf.extend_from_slice(&self.floats(r, off, n));
            }
            let mut shape = vec![recs.len()];
            shape.extend(s);
            out.push(Tensor::from_vec(buf, shape, dev)?);
            off += n;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_then_reuses_and_extends() {
        let dir = std::env::temp_dir().join(format!("vlsm-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let shapes = vec![vec![2, 3], vec![4]];
        let feat = |i: usize| -> Vec<Tensor> {
            let a = Tensor::arange(0f32, 6., &Device::Cpu)
                .unwrap()
                .affine(1.0, i as f64 * 10.0)
                .unwrap()
                .reshape((1, 2, 3))
                .unwrap();
            let b = Tensor::full(i as f32, (1, 4), &Device::Cpu).unwrap();
            vec![a, b]
        };
        let compute = |keys: Vec<String>| {
            move |idx: &[usize]| -> Result<Vec<Tensor>> {
                let parts: Vec<Vec<Tensor>> = idx.iter().map(|&i| feat(keys[i][1..].parse().unwrap())).collect();
                Ok((0..2)
                    .map(|j| Tensor::cat(&parts.iter().map(|p| p[j].clone()).collect::<Vec<_>>(), 0).unwrap())
                    .collect())
            }
        };
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let (c, s) = FeatureStore::open(&dir, "model-a", shapes.clone(), &keys, 2, compute(keys.clone())).unwrap();
        assert_eq!((s.reused, s.computed, c.len()), (0, 5, 5));
        let got = c.get_batch(&["k3", "k1"], &Device::Cpu).unwrap();
        let want = Tensor::cat(&[feat(3)[0].clone(), feat(1)[0].clone()], 0).unwrap();
        assert_eq!(got[0].to_vec3::<f32>().unwrap(), want.to_vec3::<f32>().unwrap());
        assert_eq!(got[1].to_vec2::<f32>().unwrap(), vec![vec![3.0; 4], vec![1.0; 4]]);
        drop(c);
        // Same model: nothing recomputed; two new keys are added.
        let more: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
        let (c, s) = FeatureStore::open(&dir, "model-a", shapes.clone(), &more, 4, compute(more.clone())).unwrap();
        assert_eq!((s.reused, s.computed, c.len()), (5, 2, 7));
        assert_eq!(c.get_batch(&["k6"], &Device::Cpu).unwrap()[1].to_vec2::<f32>().unwrap(), vec![vec![6.0; 4]]);
        let (_, s) =
            FeatureStore::open(&dir, "model-a", shapes.clone(), &more, 4, |_: &[usize]| -> Result<Vec<Tensor>> {
                bail!("must not compute")
            })
            .unwrap();
        assert_eq!(s.reused, 7);
        // Another model gets its own cache; one data file per model remains.
        let (_, s) = FeatureStore::open(&dir, "model-b", shapes, &keys, 4, compute(keys.clone())).unwrap();
        assert_eq!(s.computed, 5);
        let n_data = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "f32"))
            .count();
        assert_eq!(n_data, 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hash_differs_by_content() {
        assert_ne!(hash_bytes(b"abcdefgh1"), hash_bytes(b"abcdefgh2"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }
}
