//! SIFT against OpenCV: on a Kvasir crop and rotated/scaled copies of it, the count of correct
//! ratio-test matches must reach 90% of OpenCV's (fixture from tools/imgproc_sift_fixture.py).
use imgproc::*;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/imgproc/sift")
}

fn load(name: &str) -> Image<u8> {
    let img = image::open(dir().join(name)).unwrap().to_luma8();
    Image::from(&img)
}

#[test]
fn sift_matches_at_least_90pct_of_opencv() {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("sift.json")).unwrap()).unwrap();
    let tol = meta["tol"].as_f64().unwrap() as f32;
    let base = load("base.png");
    let (kq, dq) = sift_detect_and_compute(&base).unwrap();
    let nb = meta["base_keypoints"].as_u64().unwrap() as f32;
    eprintln!("base: {} keypoints (OpenCV {nb})", kq.len());
    assert!((kq.len() as f32) > 0.8 * nb && (kq.len() as f32) < 1.2 * nb);
    // OpenCV's ten strongest keypoints are found at the same place, scale, angle and octave.
    for k in meta["base_first"].as_array().unwrap() {
        let g = |n: &str| k[n].as_f64().unwrap() as f32;
        let hit = kq.iter().any(|p| {
            (p.x - g("x")).abs() < 0.05
                && (p.y - g("y")).abs() < 0.05
                && (p.size / g("size") - 1.0).abs() < 0.01
                && ((p.angle - g("angle") + 540.0) % 360.0 - 180.0).abs() < 1.0
                && p.octave == k["octave"].as_i64().unwrap() as i32
        });
        assert!(hit, "OpenCV keypoint {k} not found");
    }
    let mut failures = Vec::new();
    for c in meta["cases"].as_array().unwrap() {
        let (kt, dt) = sift_detect_and_compute(&load(c["image"].as_str().unwrap())).unwrap();
        let m: Vec<f32> = c["m"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let good = match_ratio(&dq, &dt, 0.75);
        let ok = good
            .iter()
            .filter(|&&(q, t, _)| {
                let (x, y) = (kq[q].x, kq[q].y);
                let (px, py) = (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]);
                (px - kt[t].x).powi(2) + (py - kt[t].y).powi(2) <= tol * tol
            })
            .count();
        let want = c["opencv_correct"].as_u64().unwrap() as f32;
        eprintln!("{}: {} keypoints, {} matches, {ok} correct (OpenCV {want})", c["image"], kt.len(), good.len());
        if (ok as f32) < 0.9 * want {
            failures.push(format!("{}: {ok} < 0.9 * {want}", c["image"]));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn sift_rejects_bad_input() {
    assert!(sift_detect(&Image::<u8>::new(0, 0, 1).unwrap()).is_err());
    assert!(sift_detect(&Image::<u8>::new(8, 8, 3).unwrap()).is_err());
    // Tiny and flat images give no keypoints, not a panic.
    assert!(sift_detect(&Image::<u8>::new(3, 2, 1).unwrap()).unwrap().is_empty());
    assert!(sift_detect(&Image::<u8>::filled(64, 64, 1, 7).unwrap()).unwrap().is_empty());
}
