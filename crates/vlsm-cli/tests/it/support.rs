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

/// The workspace root (where `tests/fixtures` and `models/` live).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/REL` under the workspace root.
pub fn fx(rel: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

#[path = "../../../vlsm/tests/it/support/dataset.rs"]
mod dataset;
#[path = "../../../vlsm/tests/it/support/models.rs"]
mod models;
pub use dataset::{write_nifti, Synth, SynthVolumes};
pub use models::{tiny_clipseg, tiny_cris, tiny_vit};

/// Image i of n: a 20x16 square at (10, 8), except that the last image's mask is empty.
pub fn square_of(i: u32, n: u32, x: u32, y: u32) -> bool {
    i + 1 < n && (10..30).contains(&x) && (8..24).contains(&y)
}

/// `n` `w`x`h` gradients (blue `i * blue_step`) with the masks of `square_of`, as a test split:
/// the datasets of the `eval` tests.
pub fn squares(n: u32, w: u32, h: u32, blue_step: u32) -> Synth<'static> {
    Synth::new(n, w, h)
        .image(move |i, x, y| [(x * 5) as u8, (y * 6) as u8, (i * blue_step) as u8])
        .mask(move |i, x, y| square_of(i, n, x, y))
        .splits(&["test"])
}

/// `n` 64x48 images `case{i}.png`, each with one disc of growing radius, and no `anns/`: the
/// datasets of the `prompts` tests.
pub fn discs(n: u32) -> Synth<'static> {
    let inside = |i: u32, x: u32, y: u32| {
        let r = 3 + i as i32;
        (x as i32 - 30).pow(2) + (y as i32 - 20).pow(2) <= r * r
    };
    Synth::new(n, 64, 48)
        .image(move |i, x, y| if inside(i, x, y) { [200, 60, 50] } else { [40, 40, 40] })
        .mask(inside)
        .names("case", "")
        .splits(&[])
}
