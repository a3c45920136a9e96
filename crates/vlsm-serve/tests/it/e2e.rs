//! The browser end-to-end test (e2e/e2e.mjs in headless Chromium). Runs only with VLSM_E2E=1
//! (as .ci/run sets it); then a missing chromium, node or playwright-core is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn skip(why: &str) {
    eprintln!("SKIPPED e2e_browser: {why}");
}

#[test]
fn e2e_browser() {
    if std::env::var("VLSM_E2E").as_deref() != Ok("1") {
        return skip("set VLSM_E2E=1 to run it (needs Debian chromium, node, and `npm ci` in crates/vlsm-serve/e2e)");
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).is_file() {
        panic!("VLSM_E2E=1 but chromium not found at {chromium} (apt-get install chromium, or set CHROMIUM)");
    }
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e");
    if !e2e.join("node_modules/playwright-core").is_dir() {
        panic!("VLSM_E2E=1 but playwright-core is not installed (run `npm ci` in {})", e2e.display());
    }
    if Command::new("node").arg("--version").output().is_err() {
        panic!("VLSM_E2E=1 but node is not installed");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("node");
    cmd.arg("e2e.mjs")
        .current_dir(&e2e)
        .env("VLSM_SERVE_BIN", env!("CARGO_BIN_EXE_vlsm-serve"))
        .env("VLSM_MODEL", root.join("tests/fixtures/clipseg/tiny_complex"))
        .env("E2E_IMAGE", root.join("examples/kvasir_cju2xjz2ju8pe0993ysv9wg17.jpg"))
        .env("E2E_VOLUME", root.join("tests/fixtures/nifti/geom_oblique.nii.gz"))
        .env("E2E_WORK", work.path())
        .env("VLSM_TRAIN_MODEL", crate::train::tiny_textunet())
        .env("CHROMIUM", &chromium);
    if let Ok(s) = std::env::var("VLSM_E2E_SCREENSHOT") {
        cmd.env("SCREENSHOT", s);
    }
    let out_path = work.path().join("e2e.log");
    let log = std::fs::File::create(&out_path).unwrap();
    let mut child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start node");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("e2e timed out:\n{}", std::fs::read_to_string(&out_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    eprintln!("{output}");
    assert!(status.success() && output.contains("E2E OK"), "e2e failed");
    // Independently of the script: the folder is a valid medvlsm dataset with the record.
    let ds = vlsm::data::Dataset::open(&work.path().join("dataset"), "train").expect("saved dataset opens");
    assert_eq!(ds.records.len(), 1);
    let mask = image::open(&ds.records[0].mask_path).unwrap().to_luma8();
    assert!(mask.pixels().any(|p| p[0] == 255) && mask.pixels().all(|p| p[0] == 0 || p[0] == 255));
}
