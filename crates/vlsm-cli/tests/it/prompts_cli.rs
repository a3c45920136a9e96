//! `vlsm prompts`: anns for a new dataset, split by ratio, deterministic per seed.

use crate::support::vlsm_stderr as vlsm;
use std::path::Path;

/// `n` 64x48 images, each with one disc of growing radius.
fn dataset(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for i in 0..n {
        let r = 3 + i as i32;
        let inside = |x: u32, y: u32| (x as i32 - 30).pow(2) + (y as i32 - 20).pow(2) <= r * r;
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            if inside(x, y) {
                image::Rgb([200, 60, 50])
            } else {
                image::Rgb([40, 40, 40])
            }
        });
        img.save(dir.join(format!("images/case{i}.png"))).unwrap();
        let m = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([if inside(x, y) { 255 } else { 0 }]));
        m.save(dir.join(format!("masks/case{i}.png"))).unwrap();
    }
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
