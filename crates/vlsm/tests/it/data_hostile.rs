//! data: record names from anns stay inside the dataset; prompts' split maths and writes (#17).

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};
use serde_json::json;
use vlsm::data::*;

use crate::support::Synth;

/// A dataset with two 8x6 images and masks and a test split of `records`.
fn dataset(dir: &Path, records: serde_json::Value) -> PathBuf {
    let records = records.as_array().unwrap().clone();
    Synth::new(2, 8, 6).names("a", "").splits(&["test"]).write_with(&dir.join("ds"), |r| *r = records)
}

fn open_err(ds: &Path) -> String {
    let e = Dataset::open(ds, "test").unwrap_err().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

#[test]
fn safe_relative_keeps_names_inside() {
    assert_eq!(safe_relative("a.png").unwrap(), PathBuf::from("a.png"));
    assert_eq!(safe_relative("sub/./x/../a.png").unwrap(), PathBuf::from("sub/a.png"));
    for bad in ["", ".", "sub/..", "../a.png", "sub/../../a.png", "/etc/passwd", "../../../../tmp/x/labels.png", "a\0b"]
    {
        assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
    }
    assert!(resolve_inside(Path::new("/d"), "../x").is_err());
    assert_eq!(resolve_inside(Path::new("/d"), "s/x.png").unwrap(), PathBuf::from("/d/s/x.png"));
}

#[test]
fn names_that_escape_are_refused_with_file_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    // The escaping target exists, so only the rule stops it.
    GrayImage::new(8, 6).save(tmp.path().join("outside.png")).unwrap();
    let cases = [
        (json!({"img_name": "a0.png", "mask_name": "../../outside.png"}), "mask_name"),
        (json!({"img_name": "../../outside.png", "mask_name": "a0.png"}), "img_name"),
        (json!({"img_name": tmp.path().join("outside.png").to_str().unwrap(), "mask_name": "a0.png"}), "absolute"),
        (json!({"img_name": "a0.png", "mask_name": "../../../../tmp/x/labels.png"}), "mask_name"),
    ];
    for (rec, want) in cases {
        let ds = dataset(tmp.path(), json!([{"img_name": "a1.png", "mask_name": "a1.png"}, rec]));
        let e = open_err(&ds);
        assert!(e.contains("test.json") && e.contains("record 1") && e.contains(want), "{e}");
    }
    // `..` that stays inside is fine.
    std::fs::create_dir_all(tmp.path().join("ds/images/sub")).unwrap();
    let ds = dataset(tmp.path(), json!([{"img_name": "sub/../a0.png", "mask_name": "a0.png"}]));
    let d = Dataset::open(&ds, "test").unwrap();
    assert_eq!(d.records[0].image_path, ds.join("images/a0.png"));
}

#[cfg(unix)]
#[test]
fn symlinks_must_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    GrayImage::new(8, 6).save(tmp.path().join("outside.png")).unwrap();
    let ds = dataset(tmp.path(), json!([{"img_name": "a0.png", "mask_name": "link.png"}]));
    std::os::unix::fs::symlink(tmp.path().join("outside.png"), ds.join("masks/link.png")).unwrap();
    let e = open_err(&ds);
    assert!(e.contains("record 0") && e.contains("outside"), "{e}");
    std::fs::remove_file(ds.join("masks/link.png")).unwrap();
    std::os::unix::fs::symlink(ds.join("masks/a1.png"), ds.join("masks/link.png")).unwrap();
    Dataset::open(&ds, "test").unwrap();
    // prompts refuses a listed image that links outside.
    std::fs::remove_file(ds.join("masks/link.png")).unwrap();
    std::fs::remove_file(ds.join("images/a1.png")).unwrap();
    RgbImage::new(8, 6).save(tmp.path().join("outside_img.png")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside_img.png"), ds.join("images/a1.png")).unwrap();
    let e = prompts::generate(&ds, "polyp", [80, 10, 10], 1).unwrap_err().to_string();
    assert!(e.contains("outside"), "{e}");
}

#[test]
fn prompts_split_maths_does_not_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), json!([]));
    let c = prompts::generate(&ds, "polyp", [u32::MAX, 2, 0], 1).unwrap();
    assert_eq!((c.train, c.val, c.test), (2, 0, 0));
    let c = prompts::generate(&ds, "polyp", [u32::MAX, u32::MAX, 2], 1).unwrap();
    assert_eq!(c.train + c.val + c.test, 2);
    assert!(prompts::generate(&ds, "polyp", [0, 0, 0], 1).is_err());
}

#[test]
fn prompts_writes_all_splits_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), json!([]));
    std::fs::write(ds.join("anns/train.json"), "old").unwrap();
    std::fs::create_dir_all(ds.join("anns/val.json")).unwrap();
    let e = prompts::generate(&ds, "polyp", [50, 50, 0], 1).unwrap_err().to_string();
    assert!(e.contains("val.json"), "{e}");
    assert_eq!(std::fs::read_to_string(ds.join("anns/train.json")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(ds.join("anns/test.json")).unwrap(), "[]");
    std::fs::remove_dir(ds.join("anns/val.json")).unwrap();
    prompts::generate(&ds, "polyp", [50, 50, 0], 1).unwrap();
    let names: Vec<_> =
        std::fs::read_dir(ds.join("anns")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}
