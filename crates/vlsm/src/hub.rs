//! Hugging Face Hub ids (`org/name`, `org/name@revision`) wherever a model directory is taken.
//!
//! An id resolves to a snapshot directory of the standard Hugging Face cache, the one Python's
//! `huggingface_hub` fills, so files already downloaded there are reused: the cache is
//! `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; a model's files are
//! `models--org--name/snapshots/<commit>/FILE` (usually symlinks into `blobs/`), the commit of a
//! branch or tag read from `models--org--name/refs/<revision>` (default `main`); a 40-hex
//! revision names the snapshot directly.
//!
//! A path that exists always wins over an id. When the snapshot lacks files the model needs and
//! `HF_HUB_OFFLINE` is not set, they are downloaded (with the `hub` feature, through the `hf-hub`
//! crate) into the same layout, pinned to one commit; with `HF_HUB_OFFLINE=1` the network is never
//! touched. Everything here is in one place so that the loader, the CLI, the server and training
//! configs resolve ids alike.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// A parsed Hub model id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// The branch, tag or commit; `main` unless given after `@`.
    pub revision: String,
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.revision == "main" {
            f.write_str(&self.repo)
        } else {
            write!(f, "{}@{}", self.repo, self.revision)
        }
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("--")
        && !s.contains("..")
}

/// A 40-hex-digit commit hash.
pub fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

impl HubId {
    /// Parses `org/name` or `org/name@revision`; the error says what is wrong.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, Some(rev)),
            None => (s, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 {
            return Err("expected org/name or org/name@revision".into());
        }
        if let Some(p) = parts.iter().find(|p| !valid_part(p)) {
            return Err(format!(
                "'{p}' is not a valid org or model name (letters, digits, '-', '_', '.'; no leading, trailing or doubled '-' or '.')"
            ));
        }
        let revision = match revision {
            None => "main".to_string(),
            Some(r) => {
                let ok = !r.is_empty()
                    && r.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                    && !r.starts_with(['/', '.'])
                    && !r.ends_with('/')
                    && !r.contains("..")
                    && !r.contains("//");
                if !ok {
                    return Err(format!("'{r}' is not a valid revision (a branch, tag or commit hash)"));
                }
                r.to_string()
            }
        };
        Ok(Self { repo: repo.to_string(), revision })
    }

    /// `models--org--name`, the repository's folder in the cache.
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// Where ids resolve: the cache folder and whether the network may be used.
#[derive(Debug, Clone)]
pub struct HubEnv {
    pub cache: PathBuf,
    pub offline: bool,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl HubEnv {
    /// From the environment, as `huggingface_hub` reads it.
    pub fn from_env() -> Self {
        Self { cache: cache_dir(), offline: offline() }
    }
}

/// The Hugging Face hub cache: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else
/// `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = env_path("HF_HUB_CACHE").or_else(|| env_path("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    hf_home().join("hub")
}

fn hf_home() -> PathBuf {
    if let Some(p) = env_path("HF_HOME") {
        return p;
    }
    let cache = env_path("XDG_CACHE_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join(".cache"));
    cache.join("huggingface")
}

/// `HF_HUB_OFFLINE` set to 1, true, yes or on (any case), as `huggingface_hub` reads it.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// What `spec` names when it is not an existing path: `Some` when it reads as a Hub id (a
/// malformed id with an `@` is an error), `None` when it is a plain path.
pub fn hub_id(spec: &Path) -> Option<std::result::Result<HubId, String>> {
    if spec.exists() {
        return None;
    }
    let s = spec.to_str()?;
    match HubId::parse(s) {
        Ok(id) => Some(Ok(id)),
        Err(e) if s.contains('@') => Some(Err(e)),
        Err(_) => None,
    }
}

/// A model directory: `spec` itself when it exists or is no Hub id (the caller then reports a
/// missing path), else the id's snapshot directory in the cache, downloading what the model
/// needs unless offline.
pub fn resolve(spec: &Path) -> Result<PathBuf> {
    resolve_with(spec, &HubEnv::from_env())
}

/// [`resolve`] with an explicit cache and offline flag.
pub fn resolve_with(spec: &Path, env: &HubEnv) -> Result<PathBuf> {
    match hub_id(spec) {
        None => Ok(spec.to_path_buf()),
        Some(Err(e)) => bail!("{}: no such file or directory, and not a Hugging Face model id: {e}", spec.display()),
        Some(Ok(id)) => resolve_id(&id, env),
    }
}

/// `path` relative to `base` (a config file's folder) when that exists, else `path` as a Hub id
/// when it reads as one, else `base/path`.
pub fn resolve_relative(path: &Path, base: &Path) -> Result<PathBuf> {
    let joined = if path.is_relative() { base.join(path) } else { path.to_path_buf() };
    if joined.exists() || path.is_absolute() {
        return Ok(joined);
    }
    match hub_id(path) {
        None => Ok(joined),
        Some(_) => resolve(path),
    }
}

/// The snapshot directory of `id` in the cache, if there is one.
pub fn cached_snapshot(id: &HubId, cache: &Path) -> Option<PathBuf> {
    let repo = cache.join(id.folder());
    let commit = if is_commit(&id.revision) {
        id.revision.to_ascii_lowercase()
    } else {
        std::fs::read_to_string(repo.join("refs").join(&id.revision)).ok()?.trim().to_string()
    };
    if !is_commit(&commit) {
        return None;
    }
    let snap = repo.join("snapshots").join(commit);
    snap.is_dir().then_some(snap)
}

/// One file of a model in the cache (no download): e.g. a BERT `config.json` named by
/// open_clip's `hf_model_name`.
pub fn cached_file(id: &str, file: &str) -> Option<PathBuf> {
    let id = HubId::parse(id).ok()?;
    let p = cached_snapshot(&id, &cache_dir())?.join(file);
    p.is_file().then_some(p)
}

fn resolve_id(id: &HubId, env: &HubEnv) -> Result<PathBuf> {
    let repo_dir = env.cache.join(id.folder());
    let snap = cached_snapshot(id, &env.cache);
    if let Some(s) = &snap {
        if missing(s).is_empty() {
            return Ok(s.clone());
        }
    }
    if env.offline {
        return match snap {
            // Incomplete: the loader names the missing file.
            Some(s) => Ok(s),
            None if repo_dir.is_dir() => bail!(
                "{id}: revision '{}' is not in the Hugging Face cache ({}), and HF_HUB_OFFLINE is set",
                id.revision,
                repo_dir.display()
            ),
            None => bail!(
                "{id}: not a local path, and not in the Hugging Face cache ({}), and HF_HUB_OFFLINE is set",
                repo_dir.display()
            ),
        };
    }
    download(id, env).map_err(|e| {
        let what = match &snap {
            Some(s) => format!("incomplete in the Hugging Face cache ({}: no {})", s.display(), missing(s).join(", ")),
            None => format!("not a local path, and not in the Hugging Face cache ({})", repo_dir.display()),
        };
        anyhow!("{id}: {what}; downloading failed: {}", crate::weights::one_line(&format!("{e:#}")))
    })
}

/// Files a cached model directory still needs to load: its manifest (`config.json`,
/// `open_clip_config.json` or a CRIS yaml), then the weights and tokenizer its kind reads.
pub fn missing(dir: &Path) -> Vec<String> {
    let has = |f: &str| dir.join(f).is_file();
    let any = |fs: &[String]| fs.iter().any(|f| has(f));
    let alt = |fs: &[String]| fs.join(" or ");
    let mut out = vec![];
    let cfg: Option<serde_json::Value> =
        std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let Some(cfg) = cfg {
        let kind = cfg.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        for need in needs(kind, &cfg) {
            if !any(&need) {
                out.push(alt(&need));
            }
        }
    } else if has("config.json") {
        // Unreadable: the loader says why.
    } else if has("open_clip_config.json") {
        for need in needs("open_clip", &serde_json::Value::Null) {
            if !any(&need) {
                out.push(alt(&need));
            }
        }
    } else if crate::loader::cris_yaml_file(dir).ok().flatten().is_some() {
        out.extend(needs("cris", &serde_json::Value::Null).iter().filter(|n| !any(n)).map(|n| alt(n)));
    } else {
        out.push("config.json or open_clip_config.json".into());
    }
    out
}

/// CRIS weight file names, in the loader's order.
pub const CRIS_WEIGHTS: &[&str] = &["model.safetensors", "cris.pth", "cris.pt", "pytorch_model.bin", "best_model.pth"];
const HF_WEIGHTS: &[&str] = &["model.safetensors", "pytorch_model.bin"];
const OPEN_CLIP_WEIGHTS: &[&str] = &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];
const CLIP_TOKENIZER: &[&str] = &["tokenizer.json", "vocab.json"];
/// Small files fetched whenever the repository has them.
#[cfg(feature = "hub")]
const EXTRAS: &[&str] = &[
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    crate::tokenize::BPE_FILE,
];

/// Per model kind (`model_type`, or `open_clip` for an open_clip repository): the files it
/// needs, each a list of alternatives in order of preference.
fn needs(kind: &str, cfg: &serde_json::Value) -> Vec<Vec<String>> {
    let v = |fs: &[&str]| fs.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    match kind {
        "open_clip" => vec![v(OPEN_CLIP_WEIGHTS), v(&["vocab.txt"])],
        "biomedclipseg" => {
            let mut out = vec![v(&["open_clip_config.json"]), v(OPEN_CLIP_WEIGHTS), v(&["vocab.txt"])];
            let d = cfg.get("decoder_weights").and_then(|v| v.as_str()).unwrap_or("decoder.safetensors");
            // A decoder elsewhere (a path) is not the repository's to provide.
            if !d.contains(['/', '\\']) {
                out.push(vec![d.to_string()]);
            }
            out
        }
        "cris" => vec![v(CRIS_WEIGHTS)],
        "clipseg" | "clip" | "textunet" => vec![v(HF_WEIGHTS), v(CLIP_TOKENIZER)],
        _ => vec![v(HF_WEIGHTS)],
    }
}

#[cfg(feature = "hub")]
fn download(id: &HubId, env: &HubEnv) -> Result<PathBuf> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    use std::io::IsTerminal;

    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| std::fs::read_to_string(hf_home().join("token")).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let mut builder = ApiBuilder::new()
        .with_cache_dir(env.cache.clone())
        .with_token(token)
        .with_progress(std::io::stderr().is_terminal());
    if let Ok(ep) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(ep.trim_end_matches('/').to_string());
    }
    let api = builder.build()?;
    let info = api.repo(Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone())).info()?;
    let sha = info.sha.trim().to_ascii_lowercase();
    if !is_commit(&sha) {
        bail!("the Hub answered commit '{sha}', not a 40-hex hash");
    }
    let listed: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let has = |f: &str| listed.iter().any(|l| l == f);
    // Pinned to the commit, so that every file lands in the same snapshot.
    let pinned = api.repo(Repo::with_revision(id.repo.clone(), RepoType::Model, sha.clone()));
    let snap = env.cache.join(id.folder()).join("snapshots").join(&sha);
    let get = |f: &str| -> Result<()> {
        if !snap.join(f).is_file() {
            let link = pinned.download(f).map_err(|e| anyhow!("{f}: {e}"))?;
            // hf-hub leaves its `blobs/<etag>.lock` behind; Python keeps locks elsewhere.
            if let Ok(blob) = std::fs::canonicalize(&link) {
                let _ = std::fs::remove_file(blob.with_extension("lock"));
            }
        }
        Ok(())
    };
    let (kind, cfg) = if has("config.json") {
        get("config.json")?;
        let c: serde_json::Value = crate::weights::read_json(&snap.join("config.json"))?;
        (c.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string(), c)
    } else if has("open_clip_config.json") {
        ("open_clip".to_string(), serde_json::Value::Null)
    } else {
        let yamls: Vec<&String> = listed.iter().filter(|f| !f.contains('/') && f.ends_with(".yaml")).collect();
        if yamls.is_empty() {
            bail!("the repository has no config.json, open_clip_config.json or CRIS yaml");
        }
        for y in yamls {
            get(y)?;
        }
        ("cris".to_string(), serde_json::Value::Null)
    };
    for need in needs(&kind, &cfg) {
        match need.iter().find(|f| has(f.as_str())) {
            Some(f) => get(f)?,
            None => bail!("the repository has no {}", need.join(" or ")),
        }
    }
    for f in EXTRAS.iter().chain(["open_clip_config.json"].iter()) {
        if has(f) {
            get(f)?;
        }
    }
    // The branch or tag now points at the commit, as `huggingface_hub` leaves it; hf-hub wrote a
    // ref named after the commit itself, which Python never does.
    let refs = env.cache.join(id.folder()).join("refs");
    if !is_commit(&id.revision) {
        crate::io::write_atomic(&refs.join(&id.revision), sha.as_bytes())?;
        let _ = std::fs::remove_file(refs.join(&sha));
    }
    if !snap.is_dir() {
        bail!("{}: not written", snap.display());
    }
    Ok(snap)
}

#[cfg(not(feature = "hub"))]
fn download(_id: &HubId, _env: &HubEnv) -> Result<PathBuf> {
    bail!("this build cannot download (built without the `hub` feature)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        let id = HubId::parse("CIDAS/clipseg-rd64-refined").unwrap();
        assert_eq!(id.repo, "CIDAS/clipseg-rd64-refined");
        assert_eq!(id.revision, "main");
        assert_eq!(id.folder(), "models--CIDAS--clipseg-rd64-refined");
        let id = HubId::parse("org/name@refs/pr/3").unwrap();
        assert_eq!((id.repo.as_str(), id.revision.as_str()), ("org/name", "refs/pr/3"));
        assert_eq!(id.to_string(), "org/name@refs/pr/3");
        for bad in ["name", "a/b/c", "org/", "/name", "org/na me", "org/name@", "org/name@../x", "org/-x", "o--x/y"] {
            assert!(HubId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_not_ids() {
        let t = tempfile::tempdir().unwrap();
        // An existing path wins even when it reads as an id.
        std::fs::create_dir_all(t.path().join("org/name")).unwrap();
        let cwd_rel = t.path().join("org/name");
        assert!(hub_id(&cwd_rel).is_none());
        assert!(hub_id(Path::new("/no/such/dir")).is_none());
        assert!(hub_id(Path::new("models/clipseg")).is_some());
        assert!(matches!(hub_id(Path::new("a/b/c@x")), Some(Err(_))));
    }

    #[test]
    fn commit_revisions_skip_refs() {
        let t = tempfile::tempdir().unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let id = HubId::parse(&format!("org/m@{sha}")).unwrap();
        std::fs::create_dir_all(t.path().join("models--org--m/snapshots").join(sha)).unwrap();
        assert_eq!(cached_snapshot(&id, t.path()), Some(t.path().join("models--org--m/snapshots").join(sha)));
        let main = HubId::parse("org/m").unwrap();
        assert_eq!(cached_snapshot(&main, t.path()), None);
        std::fs::create_dir_all(t.path().join("models--org--m/refs")).unwrap();
        std::fs::write(t.path().join("models--org--m/refs/main"), format!("{sha}\n")).unwrap();
        assert!(cached_snapshot(&main, t.path()).is_some());
    }
}
