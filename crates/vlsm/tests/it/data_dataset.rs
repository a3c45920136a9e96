//! data: opening medvlsm datasets, validation errors, prompt sampling, pooling.

use crate::support::shared_data;
use std::path::Path;

use image::{GrayImage, RgbImage};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;
use vlsm::data::*;

#[test]
fn shared_kvasir_and_busi_open() {
    let Some(data) = shared_data() else { return };
    let k = Dataset::open(&data.join("kvasir_polyp"), "test").unwrap();
    assert_eq!((k.name.as_str(), k.len()), ("kvasir_polyp", 100));
    let r = k.records.iter().find(|r| r.img_name == "cju2rqo702wpx0855fn7d5cxh.jpg").unwrap();
    assert_eq!(r.prompts["p6"], Prompt::One("one small pink circle polyp, located in right of the image".into()));
    assert!(r.mask_path.ends_with("masks/cju2rqo702wpx0855fn7d5cxh.png"));
    assert_eq!(r.bbox.as_deref(), Some(&[331.0, 187.0, 448.0, 302.0][..]));
    k.require_prompt("p9").unwrap();
    let e = k.require_prompt("p10").unwrap_err().to_string();
    assert!(e.contains("kvasir_polyp") && e.contains("\"p10\"") && e.contains("p9"), "{e}");

    // Seeded list sampling is reproducible and covers the list.
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..20).map(|_| prompt(r, "p7", &mut rng).unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    let distinct: std::collections::HashSet<_> = draw(7).into_iter().collect();
    assert!(distinct.len() >= 3, "{distinct:?}");
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(prompt(r, "p0", &mut rng).unwrap(), "");
    for _ in 0..20 {
        assert_ne!(prompt(r, "random", &mut rng).unwrap(), "", "random never picks p0");
    }

    let b = Dataset::open_unchecked(&data.join("busi"), "val").unwrap();
    assert_eq!(b.len(), 78);
    let pool = Pool::new(vec![k, b]).unwrap();
    assert_eq!(pool.len(), 178);
    assert_eq!(pool.get(100).dataset.name, "busi");
    assert_eq!(pool.iter().filter(|it| it.dataset.name == "kvasir_polyp").count(), 100);
    let e = pool.require_prompt("p8").unwrap_err().to_string();
    assert!(e.contains("busi"), "{e}");
}

/// A tiny dataset: two records, images and masks as PNG.
fn tiny(dir: &Path, records: serde_json::Value) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    std::fs::create_dir_all(dir.join("anns")).unwrap();
    RgbImage::new(8, 6).save(dir.join("images/a.png")).unwrap();
    GrayImage::new(8, 6).save(dir.join("masks/a.png")).unwrap();
    RgbImage::new(8, 6).save(dir.join("images/b.jpg")).unwrap();
    GrayImage::new(6, 8).save(dir.join("masks/b_wrong.png")).unwrap();
    std::fs::write(dir.join("anns/train.json"), records.to_string()).unwrap();
}

fn rec(img: &str, mask: &str) -> serde_json::Value {
    json!({"img_name": img, "mask_name": mask, "bbox": [0, 0, 1, 1], "prompts": {"p0": "", "p1": "thing", "p2": ["a thing", "the thing"]}})
}

#[test]
fn tiny_dataset_resolves_extensions() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("tiny");
    // "a.jpg" is on disk as a.png; "b" has no extension.
    tiny(&d, json!([rec("a.jpg", "a.jpg"), rec("b", "a")]));
    let ds = Dataset::open(&d, "train").unwrap();
    assert!(ds.records[0].image_path.ends_with("images/a.png"));
    assert!(ds.records[1].image_path.ends_with("images/b.jpg"));
    let mut rng = StdRng::seed_from_u64(0);
    let p = prompt(&ds.records[0], "p2", &mut rng).unwrap();
    assert!(p == "a thing" || p == "the thing");
    let e = prompt(&ds.records[0], "p3", &mut rng).unwrap_err().to_string();
    assert!(e.contains("a.jpg") && e.contains("p3") && e.contains("p0, p1, p2"), "{e}");
}

#[test]
fn tiny_dataset_errors_name_file_and_record() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("tiny");
    tiny(&d, json!([rec("a.png", "a.png"), rec("missing.png", "a.png")]));
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(
        e.contains("train.json") && e.contains("record 1") && e.contains("missing.png") && e.contains("image"),
        "{e}"
    );

    tiny(&d, json!([rec("a.png", "gone.png")]));
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(e.contains("mask") && e.contains("gone.png") && e.contains("record 0"), "{e}");

    tiny(&d, json!([rec("b.jpg", "b_wrong.png")]));
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(e.contains("6x8") && e.contains("8x6") && e.contains("b_wrong.png") && e.contains("b.jpg"), "{e}");
    assert!(Dataset::open_unchecked(&d, "train").is_ok());

    tiny(&d, json!([{"mask_name": "a.png"}]));
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(e.contains("missing img_name"), "{e}");

    tiny(&d, json!([{"img_name": "a.png", "mask_name": "a.png", "prompts": {"p1": 3}}]));
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(e.contains("p1") && e.contains("string"), "{e}");

    std::fs::write(d.join("anns/train.json"), "{not json").unwrap();
    let e = Dataset::open(&d, "train").unwrap_err().to_string();
    assert!(e.contains("train.json") && e.contains("JSON"), "{e}");
    let e = Dataset::open(&d, "val").unwrap_err().to_string();
    assert!(e.contains("val.json"), "{e}");

    tiny(&d, json!([rec("a.png", "a.png")]));
    let a = Dataset::open(&d, "train").unwrap();
    let e = Pool::new(vec![a.clone(), a]).unwrap_err().to_string();
    assert!(e.contains("tiny") && e.contains("twice"), "{e}");
}
