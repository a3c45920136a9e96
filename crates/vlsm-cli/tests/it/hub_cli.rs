//! `--model org/name[@revision]`: Hugging Face Hub ids resolved through a cache laid out as
//! `huggingface_hub` lays it out (refs, snapshots of symlinks into blobs), built here in a temp
//! folder. Every run sets HF_HUB_OFFLINE=1: no test touches the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fx;

const SHA: &str = "4f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const SHA2: &str = "0123456789abcdef0123456789abcdef01234567";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A content name for a blob, as the cache names them by hash.
fn blob_name(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

/// Puts the files of `src` (recursively) into `cache/models--org--name` at commit `sha`:
/// `blobs/<hash>` holds the bytes, `snapshots/<sha>/<file>` is a relative symlink to it.
fn add_snapshot(cache: &Path, repo: &str, sha: &str, src: &Path) {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &rel.join(e.file_name()), out);
            } else {
                out.push(rel.join(e.file_name()));
            }
        }
    }
    let mut files = vec![];
    walk(src, Path::new(""), &mut files);
    for f in files {
        let bytes = std::fs::read(src.join(&f)).unwrap();
        let blob = root.join("blobs").join(blob_name(&bytes));
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, &bytes).unwrap();
        let link = root.join("snapshots").join(sha).join(&f);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let up = "../".repeat(f.components().count() + 1);
        std::os::unix::fs::symlink(format!("{up}blobs/{}", blob.file_name().unwrap().to_str().unwrap()), &link)
            .unwrap();
    }
}

fn set_ref(cache: &Path, repo: &str, rev: &str, sha: &str) {
    let p = cache.join(format!("models--{}", repo.replace('/', "--"))).join("refs").join(rev);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, sha).unwrap();
}

/// Runs `vlsm ARGS` offline against `cache` (as HF_HUB_CACHE) from `cwd`: (success, stdout, stderr).
fn vlsm_hub(cache: &Path, cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlsm"))
        .args(args)
        .current_dir(cwd)
        .env_remove("HF_HOME")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line(ok: bool, err: &str, needles: &[&str]) {
    assert!(!ok, "expected failure");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} does not mention {n:?}");
    }
}

struct Setup {
    tmp: tempfile::TempDir,
    cache: PathBuf,
    img: PathBuf,
}

/// The tiny CLIPSeg as `org/tiny-clipseg` (main and tag v1 at SHA, SHA2 a second snapshot).
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let model = fx("clipseg/tiny_complex");
    add_snapshot(&cache, "org/tiny-clipseg", SHA, &model);
    add_snapshot(&cache, "org/tiny-clipseg", SHA2, &model);
    set_ref(&cache, "org/tiny-clipseg", "main", SHA);
    set_ref(&cache, "org/tiny-clipseg", "v1", SHA2);
    Setup { tmp, cache, img: fx("clipseg/images/kvasir_75x50.png") }
}

/// `vlsm segment` with `--model MODEL`: (success, stderr, mask bytes, logits bytes).
fn segment(st: &Setup, model: &str, out: &str) -> (bool, String, Option<Vec<u8>>) {
    let (ok, err, mask, _) = segment_logits(st, model, out);
    (ok, err, mask)
}

fn segment_logits(st: &Setup, model: &str, out: &str) -> (bool, String, Option<Vec<u8>>, Option<Vec<u8>>) {
    let out = st.tmp.path().join(out);
    let npy = st.tmp.path().join(format!("{}.npy", out.file_name().unwrap().to_str().unwrap()));
    let args = ["segment", s(&st.img), "-p", "polyp", "--model", model, "--out", s(&out), "--logits", s(&npy)];
    let (ok, _, err) = vlsm_hub(&st.cache, st.tmp.path(), &args);
    (ok, err, std::fs::read(out.join("kvasir_75x50.mask.png")).ok(), std::fs::read(&npy).ok())
}

#[test]
fn segment_by_hub_id_reads_the_cache() {
    let st = setup();
    let (ok, err, want) = segment(&st, s(&fx("clipseg/tiny_complex")), "local");
    assert!(ok, "{err}");
    let want = want.unwrap();
    for id in [
        "org/tiny-clipseg",
        &format!("org/tiny-clipseg@{SHA}"),
        "org/tiny-clipseg@v1",
        &format!("org/tiny-clipseg@{SHA2}"),
    ] {
        let (ok, err, mask) = segment(&st, id, "hub");
        assert!(ok, "{id}: {err}");
        assert_eq!(mask.as_ref(), Some(&want), "{id}");
    }
    // HF_HOME/hub when HF_HUB_CACHE is unset.
    let out = st.tmp.path().join("home_out");
    let o = Command::new(env!("CARGO_BIN_EXE_vlsm"))
        .args(["segment", s(&st.img), "-p", "polyp", "--model", "org/tiny-clipseg", "--out", s(&out)])
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HOME", st.tmp.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(out.join("kvasir_75x50.mask.png")).unwrap(), want);
}

#[test]
fn a_local_directory_wins_over_an_id() {
    let st = setup();
    // ./org/tiny-clipseg exists (a copy of the other tiny CLIPSeg): it is used, not the cache.
    let local = st.tmp.path().join("org/tiny-clipseg");
    std::fs::create_dir_all(&local).unwrap();
    for e in std::fs::read_dir(fx("clipseg/tiny_simple")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), local.join(e.file_name())).unwrap();
    }
    let (ok, err, _, by_name) = segment_logits(&st, "org/tiny-clipseg", "o1");
    assert!(ok, "{err}");
    let (ok, err, _, simple) = segment_logits(&st, s(&fx("clipseg/tiny_simple")), "o2");
    assert!(ok, "{err}");
    let (ok, err, _, cached) = segment_logits(&st, &format!("org/tiny-clipseg@{SHA}"), "o3");
    assert!(ok, "{err}");
    assert_eq!(by_name, simple);
    assert_ne!(by_name, cached);
}

#[test]
fn hub_errors_are_one_line() {
    let st = setup();
    let cache = st.cache.display().to_string();
    // Missing offline: the id and the cache path.
    let (ok, err, _) = segment(&st, "someone/missing-model", "e1");
    one_line(ok, &err, &["someone/missing-model", &format!("{cache}/models--someone--missing-model")]);
    // A revision the cache does not have.
    let (ok, err, _) = segment(&st, "org/tiny-clipseg@nope", "e2");
    one_line(ok, &err, &["org/tiny-clipseg@nope", "revision 'nope'", "models--org--tiny-clipseg"]);
    let (ok, err, _) = segment(&st, "org/tiny-clipseg@ffffffffffffffffffffffffffffffffffffffff", "e3");
    one_line(ok, &err, &["ffffffffffffffffffffffffffffffffffffffff", "not in the Hugging Face cache"]);
    // Malformed ids.
    for bad in ["org/tiny-clipseg@", "a/b/c@main", "org/bad name@main", "org/x@../../etc"] {
        let (ok, err, _) = segment(&st, bad, "e4");
        one_line(ok, &err, &[bad, "not a Hugging Face model id"]);
    }
    // A snapshot missing its weights: the loader names the file it looked for.
    let root = st.cache.join("models--org--tiny-clipseg");
    std::fs::remove_file(root.join("snapshots").join(SHA2).join("model.safetensors")).unwrap();
    let (ok, err, _) = segment(&st, "org/tiny-clipseg@v1", "e5");
    one_line(ok, &err, &[SHA2, "no weights"]);
    // A dangling blob link reads as a missing file, not a panic.
    for e in std::fs::read_dir(root.join("blobs")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (ok, err, _) = segment(&st, "org/tiny-clipseg", "e7");
    assert!(!ok && err.trim().lines().count() == 1, "{err}");
    assert!(!st.tmp.path().join("e7").exists());
}

#[test]
fn classify_eval_and_train_take_ids() {
    let st = setup();
    add_snapshot(&st.cache, "microsoft/tiny-biomedclip", SHA, &fx("biomedclip/tiny"));
    set_ref(&st.cache, "microsoft/tiny-biomedclip", "main", SHA);
    add_snapshot(&st.cache, "google/tiny-vit", SHA, &fx("vit/tiny_cls"));
    set_ref(&st.cache, "google/tiny-vit", "main", SHA);
    let cwd = st.tmp.path();
    let img = s(&st.img);
    // Zero-shot with BiomedCLIP (a nested bert/config.json in the snapshot) gives the local result.
    let args = |m: &str| {
        vec![
            "classify".to_string(),
            img.into(),
            "--model".into(),
            m.into(),
            "--labels".into(),
            "polyp,lesion".into(),
            "--json".into(),
        ]
    };
    let run = |m: &str| {
        let a = args(m);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        vlsm_hub(&st.cache, cwd, &a)
    };
    let (ok, local, err) = run(s(&fx("biomedclip/tiny")));
    assert!(ok, "{err}");
    let (ok, hub, err) = run("microsoft/tiny-biomedclip");
    assert!(ok, "{err}");
    let preds = |o: &str| serde_json::from_str::<serde_json::Value>(o).unwrap()["predictions"].clone();
    assert_eq!(preds(&hub), preds(&local));
    // open_clip's hf_model_name as a Hub id: the BERT config.json is found in the cache (the
    // tiny BERT's 4 heads are not hidden / 64), so no local bert/ is needed.
    let nobert = cwd.join("nobert");
    std::fs::create_dir_all(&nobert).unwrap();
    for e in std::fs::read_dir(fx("biomedclip/tiny")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), nobert.join(e.file_name())).unwrap();
        }
    }
    let oc = std::fs::read_to_string(nobert.join("open_clip_config.json")).unwrap();
    std::fs::write(nobert.join("open_clip_config.json"), oc.replace("\"bert\"", "\"microsoft/tiny-bert\"")).unwrap();
    add_snapshot(&st.cache, "microsoft/tiny-bert", SHA, &fx("biomedclip/tiny/bert"));
    set_ref(&st.cache, "microsoft/tiny-bert", "main", SHA);
    let (ok, from_cache, err) = run(s(&nobert));
    assert!(ok, "{err}");
    assert_eq!(preds(&from_cache), preds(&local));
    std::fs::remove_dir_all(st.cache.join("models--microsoft--tiny-bert")).unwrap();
    let (ok, _, err) = run(s(&nobert));
    one_line(ok, &err, &["open_clip_pytorch_model.bin", "num_attention_heads"]);

    let (ok, out, err) = vlsm_hub(&st.cache, cwd, &["classify", img, "--model", "google/tiny-vit", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["model"], "google/tiny-vit");

    // Training: model.dir and decoder_from as ids.
    let ds = crate::support::Synth::new(4, 40, 30)
        .image(|i, x, _| if x > 10 + i { [200, 180, 40] } else { [30, 30, 90] })
        .mask(|i, x, _| x > 10 + i)
        .prompts(serde_json::json!({"p1": "square"}))
        .splits(&["train", "val", "test"])
        .write(&cwd.join("ds"));
    let cfg = cwd.join("train.toml");
    let toml = |dir: &str| {
        format!(
            "output_dir = \"run\"\n[model]\nkind = \"clipseg\"\ndir = \"{dir}\"\ndecoder_from = \"org/tiny-clipseg@v1\"\n[data]\ndatasets = [\"{}\"]\nprompts = [\"p1\"]\nimage_size = 32\nfeature_cache = false\n[train]\nepochs = 1\nmin_epochs = 1\nbatch_size = 4\n",
            ds.display()
        )
    };
    std::fs::write(&cfg, toml("org/nothing-here")).unwrap();
    let (ok, _, err) = vlsm_hub(&st.cache, cwd, &["train", "--config", s(&cfg)]);
    one_line(ok, &err, &["train.toml", "model.dir", "org/nothing-here", "models--org--nothing-here"]);
    std::fs::write(&cfg, toml("org/tiny-clipseg")).unwrap();
    let (ok, _, err) = vlsm_hub(&st.cache, cwd, &["train", "--config", s(&cfg)]);
    assert!(ok, "{err}");
    assert!(cwd.join("run/best/model.safetensors").is_file());
    // eval on the trained model and on the id itself.
    let (ok, _, err) = vlsm_hub(
        &st.cache,
        cwd,
        &["eval", "--model", "org/tiny-clipseg", "--data", s(&ds), "--prompt", "p1", "--out", s(&cwd.join("ev"))],
    );
    assert!(ok, "{err}");
}

/// A stand-in for the Hub's HTTP API on 127.0.0.1 (given as HF_ENDPOINT): the repository info
/// and ranged file downloads with the headers hf-hub reads. Every request path is logged.
struct MockHub {
    endpoint: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl MockHub {
    fn start(repo: &str, sha: &str, files: Vec<(String, Vec<u8>)>) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let (repo, sha, log2) = (repo.to_string(), sha.to_string(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut range = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("range") {
                            range = v.trim().strip_prefix("bytes=").map(str::to_string);
                        }
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                log2.lock().unwrap().push(path.clone());
                let (status, headers, body): (&str, Vec<String>, Vec<u8>) = if path
                    .starts_with(&format!("/api/models/{repo}/revision/"))
                {
                    let siblings: Vec<_> = files.iter().map(|(n, _)| serde_json::json!({ "rfilename": n })).collect();
                    let body = serde_json::json!({ "sha": sha, "siblings": siblings }).to_string();
                    ("200 OK", vec!["content-type: application/json".into()], body.into_bytes())
                } else if let Some(f) = path.strip_prefix(&format!("/{repo}/resolve/{sha}/")) {
                    match files.iter().find(|(n, _)| n == f) {
                        Some((_, bytes)) => {
                            let (a, b) = match range.as_deref().and_then(|r| r.split_once('-')) {
                                Some((a, b)) => {
                                    let a: usize = a.parse().unwrap_or(0);
                                    let b: usize = b.parse().unwrap_or(bytes.len() - 1);
                                    (a, b.min(bytes.len() - 1))
                                }
                                None => (0, bytes.len() - 1),
                            };
                            let h = vec![
                                format!("content-range: bytes {a}-{b}/{}", bytes.len()),
                                format!("etag: \"{}\"", blob_name(bytes)),
                                format!("x-repo-commit: {sha}"),
                            ];
                            ("206 Partial Content", h, bytes[a..=b].to_vec())
                        }
                        None => ("404 Not Found", vec![], b"no such file".to_vec()),
                    }
                } else {
                    ("404 Not Found", vec![], b"no such repository".to_vec())
                };
                let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
                for h in headers {
                    head.push_str(&h);
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
            }
        });
        Self { endpoint, log }
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// `vlsm ARGS` online against `hub` (HF_ENDPOINT), with `cache` as HF_HUB_CACHE.
fn vlsm_online(hub: &MockHub, cache: &Path, cwd: &Path, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlsm"));
    c.args(args).current_dir(cwd).env("HF_HUB_CACHE", cache).env("HF_ENDPOINT", &hub.endpoint);
    for v in ["HF_HUB_OFFLINE", "HF_HOME", "HF_TOKEN", "http_proxy", "https_proxy", "all_proxy"] {
        c.env_remove(v).env_remove(v.to_ascii_uppercase());
    }
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_files_are_downloaded_into_the_cache_layout() {
    let st = setup();
    let src = fx("clipseg/tiny_complex");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    // Files the model does not need are left on the Hub.
    files.push(("pytorch_model.bin".into(), b"not needed: model.safetensors is preferred".to_vec()));
    files.push(("README.md".into(), b"# tiny".to_vec()));
    let hub = MockHub::start("org/dl-clipseg", SHA, files);
    let cwd = st.tmp.path();
    let cache = cwd.join("dl-cache");
    let out = cwd.join("dl");
    let args = ["segment", s(&st.img), "-p", "polyp", "--model", "org/dl-clipseg", "--out", s(&out)];
    let (ok, err) = vlsm_online(&hub, &cache, cwd, &args);
    assert!(ok, "{err}");
    let (ok, err, want) = segment(&st, s(&src), "dl-local");
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(out.join("kvasir_75x50.mask.png")).ok(), want);
    let log = hub.take_log();
    assert!(log.iter().any(|p| p.ends_with("/model.safetensors")), "{log:?}");
    assert!(!log.iter().any(|p| p.contains("pytorch_model.bin") || p.contains("README.md")), "{log:?}");

    // The layout huggingface_hub writes: refs/main -> commit, snapshot links into blobs/.
    let root = cache.join("models--org--dl-clipseg");
    assert_eq!(std::fs::read_to_string(root.join("refs/main")).unwrap(), SHA);
    assert!(!root.join("refs").join(SHA).exists());
    let snap = root.join("snapshots").join(SHA);
    for f in ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"] {
        let link = std::fs::read_link(snap.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(link.to_string_lossy().contains("blobs/"), "{f} -> {}", link.display());
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), std::fs::read(src.join(f)).unwrap(), "{f}");
    }
    assert!(!snap.join("pytorch_model.bin").exists() && !snap.join("README.md").exists());
    let blobs: Vec<String> = std::fs::read_dir(root.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(blobs.iter().all(|b| !b.contains('.')), "only content blobs: {blobs:?}");

    // Complete in the cache: no request at all, online or offline.
    let (ok, err) = vlsm_online(&hub, &cache, cwd, &args);
    assert!(ok, "{err}");
    assert_eq!(hub.take_log(), Vec::<String>::new());
    let (ok, _, err) = vlsm_hub(&cache, cwd, &args);
    assert!(ok, "{err}");

    // A file gone from the snapshot: only it is fetched again.
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    let (ok, err) = vlsm_online(&hub, &cache, cwd, &args);
    assert!(ok, "{err}");
    let log = hub.take_log();
    assert!(log.iter().all(|p| p.contains("/api/") || p.ends_with("/model.safetensors")), "{log:?}");

    // A repository the Hub does not have: one line naming the id.
    let (ok, err) =
        vlsm_online(&hub, &cache, cwd, &["segment", s(&st.img), "-p", "x", "--model", "org/nope", "--out", s(&out)]);
    one_line(ok, &err, &["org/nope", "models--org--nope", "downloading failed"]);
}
