//! Helpers shared by the CLI tests: the one runner of the `vlsm` binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::Command;

/// Runs `vlsm ARGS` (any OS strings): (success, exit code, stdout, stderr).
pub fn vlsm_os(args: &[&OsStr]) -> (bool, Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlsm")).args(args).output().unwrap();
    (
        out.status.success(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `vlsm ARGS`: (success, stdout, stderr).
pub fn vlsm(args: &[&str]) -> (bool, String, String) {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (ok, _, out, err) = vlsm_os(&a);
    (ok, out, err)
}

/// Runs `vlsm ARGS`: (success, stderr).
pub fn vlsm_stderr(args: &[&str]) -> (bool, String) {
    let (ok, _, err) = vlsm(args);
    (ok, err)
}

/// `tests/fixtures/REL` under the workspace root.
pub fn fx(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}
