//! `vlsm prompts`: anns for a new dataset, split by ratio, deterministic per seed.

use crate::support::{discs, vlsm_stderr as vlsm};
use std::path::Path;

/// `n` 64x48 images, each with one disc of growing radius.
fn dataset(dir: &Path, n: u32) {
    discs(n).write(dir);
}

fn records(p: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn writes_split_anns_with_ten_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("discs");
    dataset(&ds, 10);
    let d = ds.to_str().unwrap();
    let (ok, err) = vlsm(&["prompts", d, "--class", "lesion", "--split", "60/20/20", "--seed", "3"]);
    assert!(ok, "{err}");
    let counts: Vec<usize> =
        ["train", "val", "test"].iter().map(|s| records(&ds.join(format!("anns/{s}.json"))).len()).collect();
    assert_eq!(counts, vec![6, 2, 2]);
    let rec = &records(&ds.join("anns/train.json"))[0];
    for k in 0..10 {
        assert!(rec["prompts"].get(format!("p{k}")).is_some(), "no p{k} in {rec}");
    }
    assert_eq!(rec["prompts"]["p1"], "lesion");
    // Same seed, same files; the dataset opens for training.
    let first = std::fs::read(ds.join("anns/train.json")).unwrap();
    assert!(vlsm(&["prompts", d, "--class", "lesion", "--split", "60/20/20", "--seed", "3"]).0);
    assert_eq!(first, std::fs::read(ds.join("anns/train.json")).unwrap());
    vlsm::data::Dataset::open(&ds, "val").unwrap();
}

#[test]
fn bad_split_and_missing_mask_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("discs");
    dataset(&ds, 3);
    let d = ds.to_str().unwrap();
    let (ok, err) = vlsm(&["prompts", d, "--class", "x", "--split", "80/20"]);
    assert!(!ok && err.contains("--split") && err.trim().lines().count() == 1, "{err}");
    std::fs::remove_file(ds.join("masks/case1.png")).unwrap();
    let (ok, err) = vlsm(&["prompts", d, "--class", "x"]);
    assert!(!ok && err.contains("case1") && err.trim().lines().count() == 1, "{err}");
    assert!(!ds.join("anns/train.json").exists());
}
