//! `vlsm-serve --model org/name`: a Hugging Face Hub id from a cache laid out as
//! `huggingface_hub` writes it (HF_HUB_OFFLINE=1: no network).
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// `cache/models--org--tiny`: refs/main -> SHA, snapshot files linked into blobs/.
fn cache_with_tiny_model(cache: &Path) {
    let root = cache.join("models--org--tiny");
    let snap = root.join("snapshots").join(SHA);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), SHA).unwrap();
    for (i, e) in std::fs::read_dir(crate::support::tiny_model()).unwrap().enumerate() {
        let e = e.unwrap();
        let blob = format!("{i:040x}");
        std::fs::copy(e.path(), root.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(e.file_name())).unwrap();
    }
}

fn serve(cache: &Path, model: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlsm-serve"));
    c.args(["--addr", "127.0.0.1:0", "--model", model])
        .env_remove("VLSM_TOKEN")
        .env_remove("HF_HOME")
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1");
    c
}

#[test]
fn serves_a_model_given_by_hub_id() {
    let tmp = tempfile::tempdir().unwrap();
    cache_with_tiny_model(tmp.path());
    let mut child = serve(tmp.path(), "org/tiny").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.trim().strip_suffix('/'));
    let addr = addr.unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    assert!(line.contains(SHA), "{line}");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET /api/model HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("clipseg"), "{resp}");
}

#[test]
fn a_missing_hub_id_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = serve(tmp.path(), "org/absent").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("org/absent") && err.contains("models--org--absent"), "{err}");
}
