//! Helpers shared by the CLI tests: the one runner of the `vlsm` binary.
#![allow(dead_code)]

use std::process::Command;

/// Runs `vlsm ARGS`: (success, stdout, stderr).
pub fn vlsm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlsm")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
