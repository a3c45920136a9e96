//! Helpers shared by the parity tests.
#![allow(dead_code)]

use candle_core::{DType, Tensor};

/// max |a - b| relative to max |b|.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// `rel_err(a, b) <= tol`, naming `what` when it is not.
pub fn assert_close_tol(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let e = rel_err(a, b);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// The parity tolerance: 1e-4 of the largest reference magnitude.
pub fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    assert_close_tol(what, a, b, 1e-4);
}

/// The workspace root (where `tests/fixtures` and `models/` live).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/REL` under the workspace root: the one fixture loader of these tests.
pub fn fx(rel: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// `../shared/data` beside the repository (`$VLSM_SHARED_DATA` if set), whose few real files some
/// tests read. Missing, it fails the test: a silent skip would let CI pass without the check.
/// `VLSM_SKIP_SHARED_DATA=1` (a checkout without the data) turns those tests into skips.
pub fn shared_data() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("VLSM_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    if p.join("kvasir_polyp").is_dir() {
        return Some(p);
    }
    if std::env::var_os("VLSM_SKIP_SHARED_DATA").is_some_and(|v| v == "1") {
        eprintln!("skipped: shared data not found at {} (VLSM_SKIP_SHARED_DATA=1)", p.display());
        return None;
    }
    panic!(
        "shared data not found at {} (set VLSM_SHARED_DATA to its path, or VLSM_SKIP_SHARED_DATA=1 to skip)",
        p.display()
    );
}

pub mod alloc_probe;
pub mod bombs;
mod dataset;
pub mod fuzz_harness;
mod models;
pub use dataset::Synth;
pub use models::{tiny_clipseg, tiny_cris};
