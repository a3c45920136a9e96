//! data::prompts: mask words against medvlsm's shipped anns, and generating anns for a new
//! dataset.

use crate::support::shared_data;
use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use rayon::prelude::*;
use serde_json::Value;
use vlsm::data::prompts::*;
use vlsm::data::{Dataset, Prompt};

fn one(p: &Prompt) -> &str {
    match p {
        Prompt::One(s) => s,
        Prompt::Many(v) => &v[0],
    }
}

/// medvlsm's size, number and location words, read back from p3..p6.
fn shipped_words(r: &vlsm::data::Record) -> (String, String, String) {
    let (p3, p4, p5, p6) = (one(&r.prompts["p3"]), one(&r.prompts["p4"]), one(&r.prompts["p5"]), one(&r.prompts["p6"]));
    let size = p4[..p4.len() - p3.len()].trim().to_string();
    let number = p5[..p5.len() - p4.len()].trim().to_string();
    let loc = p6[p5.len()..].trim_start_matches(", located in ").trim_end_matches(" of the image").to_string();
    (size, number, loc)
}

fn agreement(name: &str) -> Option<[f64; 3]> {
    let data = shared_data()?;
    let recs: Vec<_> = ["train", "val", "test"]
        .iter()
        .flat_map(|s| Dataset::open_unchecked(&data.join(name), s).unwrap().records)
        .collect();
    let hits: Vec<[bool; 3]> = recs
        .par_iter()
        .map(|r| {
            let w = describe_mask(&vlsm::io::read_mask(&r.mask_path).unwrap());
            let (size, number, loc) = shipped_words(r);
            [w.size == size, number_words(w.number) == number, w.location == loc]
        })
        .collect();
    let frac = |i: usize| hits.iter().filter(|h| h[i]).count() as f64 / hits.len() as f64;
    let a = [frac(0), frac(1), frac(2)];
    eprintln!(
        "{name}: agreement with medvlsm over {} records: size {:.1}%, number {:.1}%, location {:.1}%",
        hits.len(),
        100.0 * a[0],
        100.0 * a[1],
        100.0 * a[2]
    );
    Some(a)
}

#[test]
fn kvasir_words_agree_with_medvlsm() {
    let Some(a) = agreement("kvasir_polyp") else { return };
    assert!(a.iter().all(|&x| x >= 0.9), "{a:?}");
}

#[test]
fn clinicdb_words_agree_with_medvlsm() {
    let Some(a) = agreement("clinicdb_polyp") else { return };
    assert!(a.iter().all(|&x| x >= 0.9), "{a:?}");
}

#[test]
fn words_and_shapes_on_synthetic_masks() {
    assert_eq!(
        [0, 1, 2, 11, 21, 40, 100, 105, 999].map(number_words),
        [
            "zero",
            "one",
            "two",
            "eleven",
            "twenty-one",
            "forty",
            "one hundred",
            "one hundred and five",
            "nine hundred and ninety-nine"
        ]
    );
    // A disc in the right third, middle band: "one", "medium", "right", "round".
    let disc = GrayImage::from_fn(90, 90, |x, y| {
        let (dx, dy) = (x as f64 - 75.0, y as f64 - 45.0);
        Luma([if dx * dx + dy * dy <= 12.0 * 12.0 { 255 } else { 0 }])
    });
    let w = describe_mask(&disc);
    assert_eq!((w.size.as_str(), w.location.as_str(), w.number), ("small", "right", 1));
    assert_eq!(shape_word(&disc), "round");
    // A flat bar across the top: "oval"; two components: sizes and locations listed.
    let mut two = GrayImage::from_fn(90, 90, |x, y| Luma([if y < 5 && x > 5 && x < 85 { 255 } else { 0 }]));
    assert_eq!(shape_word(&two), "oval");
    for y in 60..90 {
        for x in 0..60 {
            two.put_pixel(x, y, Luma([255]));
        }
    }
    let w = describe_mask(&two);
    assert_eq!(w.number, 2);
    assert_eq!(w.size, "small, medium");
    assert_eq!(w.location, "top, bottom"); // the box centre column is 30, not < 90 / 3
    assert_eq!(
        describe_mask(&GrayImage::new(5, 5)),
        MaskWords { size: String::new(), location: String::new(), number: 0 }
    );
    let red = RgbImage::from_pixel(90, 90, Rgb([200, 40, 40]));
    assert_eq!(colour_word(&red, &disc), "red");
    assert_eq!(overall_bbox(&disc)[0], 62); // disc spans x 63..=87: grown by one to the left
}

/// A tiny dataset on disk: `n` images with a square each.
fn make_dataset(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for i in 0..n {
        RgbImage::from_pixel(40, 30, Rgb([230, 140, 140])).save(dir.join(format!("images/im{i:02}.jpg"))).unwrap();
        let m = GrayImage::from_fn(40, 30, |x, y| {
            Luma([if x >= i && x < i + 8 && (10..18).contains(&y) { 255 } else { 0 }])
        });
        m.save(dir.join(format!("masks/im{i:02}.png"))).unwrap();
    }
}

#[test]
fn generate_writes_loadable_splits() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("new_ds");
    make_dataset(&d, 20);
    let c = generate(&d, "polyp", [80, 10, 10], 42).unwrap();
    assert_eq!((c.train, c.val, c.test), (16, 2, 2));
    let ds = Dataset::open(&d, "train").unwrap();
    assert_eq!(ds.len(), 16);
    ds.require_prompt("p9").unwrap();
    let r = &ds.records[0];
    let p6 = one(&r.prompts["p6"]);
    assert!(
        p6.starts_with("one small ") && p6.ends_with(" polyp, located in left of the image")
            || p6.contains("located in"),
        "{p6}"
    );
    assert_eq!(one(&r.prompts["p1"]), "polyp");
    assert!(matches!(&r.prompts["p9"], Prompt::Many(v) if v.len() == 5));
    // Same seed, same split; another seed, another split.
    let first = std::fs::read(d.join("anns/train.json")).unwrap();
    generate(&d, "polyp", [80, 10, 10], 42).unwrap();
    assert_eq!(std::fs::read(d.join("anns/train.json")).unwrap(), first);
    generate(&d, "polyp", [80, 10, 10], 43).unwrap();
    assert_ne!(std::fs::read(d.join("anns/train.json")).unwrap(), first);
    let v: Value = serde_json::from_slice(&first).unwrap();
    assert!(v[0]["bbox"].is_array() && v[0]["segment_id"].is_string());

    // A missing mask is named.
    std::fs::remove_file(d.join("masks/im03.png")).unwrap();
    let e = generate(&d, "polyp", [80, 10, 10], 42).unwrap_err().to_string();
    assert!(e.contains("im03.jpg") && e.contains("no mask"), "{e}");
}
