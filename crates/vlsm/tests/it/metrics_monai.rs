//! Metrics against MONAI reference values (tests/fixtures/metrics/monai_cases.json,
//! written by tools/make_metric_fixtures.py).

use image::GrayImage;
use serde_json::Value;
use vlsm::metrics::*;

fn fixture() -> Value {
    let p = crate::support::fx("metrics/monai_cases.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn decode(rows: &Value) -> (Vec<u8>, usize, usize) {
    let rows: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let (h, w) = (rows.len(), rows[0].len());
    let m = rows.iter().flat_map(|r| r.bytes().map(|b| (b == b'1') as u8)).collect();
    (m, w, h)
}

#[test]
fn dice_iou_hd_match_monai() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (p, w, h) = decode(&c["pred"]);
        let (t, _, _) = decode(&c["target"]);
        let d = dice(&p, &t);
        let i = iou(&p, &t);
        assert!((d - c["dice"].as_f64().unwrap()).abs() < 1e-6, "{name}: dice {d} vs {}", c["dice"]);
        assert!((i - c["iou"].as_f64().unwrap()).abs() < 1e-6, "{name}: iou {i} vs {}", c["iou"]);
        for (key, pct) in [("hd95", 95.0), ("hd100", 100.0)] {
            let ours = hausdorff(&p, &t, w, h, pct);
            match c[key].as_f64() {
                None => assert_eq!(ours, None, "{name}: {key} should be undefined"),
                Some(v) => {
                    let o = ours.unwrap_or_else(|| panic!("{name}: {key} undefined, MONAI {v}"));
                    assert!((o - v).abs() < 1e-4, "{name}: {key} {o} vs MONAI {v}");
                }
            }
        }
        assert_eq!(hd95(&p, &t, w, h), hausdorff(&p, &t, w, h, 95.0));
    }
}

#[test]
fn soft_dice_matches_monai_dice_loss() {
    let fx = fixture();
    for c in fx["soft_dice"].as_array().unwrap() {
        let f = |k: &str| -> Vec<f32> { c[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
        let ours = soft_dice_loss(&f("probs"), &f("target"));
        let want = c["loss"].as_f64().unwrap();
        assert!((ours - want).abs() < 1e-6, "{}: {ours} vs {want}", c["name"]);
    }
}

#[test]
fn empty_mask_conventions() {
    let z = vec![0u8; 12];
    let mut one = z.clone();
    one[5] = 255;
    assert_eq!((dice(&z, &z), iou(&z, &z)), (1.0, 1.0));
    assert_eq!((dice(&one, &z), iou(&one, &z)), (0.0, 0.0));
    assert_eq!((dice(&z, &one), iou(&z, &one)), (0.0, 0.0));
    assert_eq!(hd95(&z, &z, 4, 3), None);
    assert_eq!(hd95(&one, &z, 4, 3), None);
    assert_eq!(hd95(&one, &one, 4, 3), Some(0.0));
    assert_eq!(mean_defined(&[Some(1.0), None, Some(3.0)]), (Some(2.0), 1));
    assert_eq!(mean_defined(&[None]), (None, 1));
    assert_eq!(binarize(&[0.2, 0.5, 0.51], 0.5), vec![0, 0, 1]);
}

#[test]
fn score_masks_checks_sizes() {
    let a = GrayImage::from_raw(3, 2, vec![0, 255, 255, 0, 0, 0]).unwrap();
    let b = GrayImage::from_raw(3, 2, vec![0, 255, 0, 0, 0, 0]).unwrap();
    let s = score_masks(&a, &b).unwrap();
    assert!((s.dice - 2.0 / 3.0).abs() < 1e-12 && (s.iou - 0.5).abs() < 1e-12);
    assert_eq!(s.hd95, Some(0.95));
    let c = GrayImage::new(2, 3);
    let e = score_masks(&a, &c).unwrap_err().to_string();
    assert!(e.contains("3x2") && e.contains("2x3"), "{e}");
}

#[test]
fn hd_on_large_mask_is_fast_and_exact() {
    // Two discs: HD between concentric discs of radius 100 and 90 is about 10.
    let (w, h) = (640usize, 480usize);
    let disc = |r: f64| -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 - 320.0, (i / w) as f64 - 240.0);
                (x * x + y * y <= r * r) as u8
            })
            .collect()
    };
    let t = std::time::Instant::now();
    let d = hausdorff(&disc(100.0), &disc(90.0), w, h, 100.0).unwrap();
    assert!((d - 10.0).abs() <= 1.0, "{d}");
    assert!(t.elapsed().as_secs_f64() < 2.0);
}
