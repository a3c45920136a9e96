//! 3-D Dice, IoU and HD95 in mm against MONAI (tests/fixtures/metrics/monai_3d.json, written by
//! tools/make_volume_metric_fixtures.py).

use vlsm::metrics;

#[test]
fn volume_metrics_match_monai() {
    let path = crate::support::fx("metrics/monai_3d.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 12);
    let mut defined = 0;
    for (i, c) in cases.iter().enumerate() {
        let d: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let sp: Vec<f64> = c["spacing"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let bits = |k: &str| -> Vec<u8> { c[k].as_str().unwrap().bytes().map(|b| b - b'0').collect() };
        let (p, t) = (bits("pred"), bits("target"));
        let dims = [d[0], d[1], d[2]];
        let cnt = metrics::counts(&p, &t);
        assert!((metrics::dice_from(cnt) - c["dice"].as_f64().unwrap()).abs() < 1e-6, "case {i} dice");
        assert!((metrics::iou_from(cnt) - c["iou"].as_f64().unwrap()).abs() < 1e-6, "case {i} iou");
        let hd = metrics::hd95_3d(&p, &t, dims, [sp[0], sp[1], sp[2]]);
        match c["hd95"].as_f64() {
            None => assert_eq!(hd, None, "case {i}"),
            Some(want) => {
                defined += 1;
                let got = hd.unwrap_or_else(|| panic!("case {i}: undefined, MONAI {want}"));
                // MONAI computes in float32.
                assert!((got - want).abs() < 1e-4 * (1.0 + want), "case {i}: {got} vs MONAI {want}");
            }
        }
    }
    assert!(defined >= 10, "too few defined cases: {defined}");
    // Spacing scales distances: the same masks at twice the spacing give twice the HD95.
    let c = &cases[0];
    let bits = |k: &str| -> Vec<u8> { c[k].as_str().unwrap().bytes().map(|b| b - b'0').collect() };
    let d: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let one = metrics::hd95_3d(&bits("pred"), &bits("target"), [d[0], d[1], d[2]], [1.0; 3]).unwrap();
    let two = metrics::hd95_3d(&bits("pred"), &bits("target"), [d[0], d[1], d[2]], [2.0; 3]).unwrap();
    assert!((two - 2.0 * one).abs() < 1e-9 && one > 0.0);
}

/// `score_volume` against MONAI: 3-D Dice, IoU, HD95 in mm, and every slice's Dice along the
/// last axis (`compute_dice(ignore_empty=False)` per slice: empty target and prediction = 1).
#[test]
fn score_volume_matches_monai_per_slice() {
    let path = crate::support::fx("metrics/monai_3d.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut empty_empty = 0;
    for (i, c) in cases.iter().enumerate() {
        let d: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let sp: Vec<f64> = c["spacing"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let bits = |k: &str| -> Vec<u8> { c[k].as_str().unwrap().bytes().map(|b| b - b'0').collect() };
        let s = metrics::score_volume(&bits("pred"), &bits("target"), [d[0], d[1], d[2]], [sp[0], sp[1], sp[2]], 2);
        assert!((s.dice - c["dice"].as_f64().unwrap()).abs() < 1e-6, "case {i} dice");
        assert!((s.iou - c["iou"].as_f64().unwrap()).abs() < 1e-6, "case {i} iou");
        match (s.hd95, c["hd95"].as_f64()) {
            (None, None) => {}
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-4 * (1.0 + want), "case {i}: {got} vs {want}"),
            (got, want) => panic!("case {i}: HD95 {got:?} vs MONAI {want:?}"),
        }
        let want: Vec<f64> = c["slice_dice"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(s.slice_dice.len(), d[2], "case {i}: one Dice per slice");
        assert_eq!(want.len(), d[2]);
        for (k, (g, w)) in s.slice_dice.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-6, "case {i} slice {k}: {g} vs MONAI {w}");
        }
        empty_empty += want.iter().filter(|&&w| w == 1.0).count();
        let mean = want.iter().sum::<f64>() / want.len() as f64;
        assert!((s.mean_slice_dice() - mean).abs() < 1e-6, "case {i} mean slice Dice");
    }
    assert!(empty_empty > 0, "the fixture has slices with empty target and prediction");
}

/// A case small enough to score by hand: dims 4x3x3, spacing (1, 2, 3) mm. Target: (0,0,0),
/// (1,0,0) on slice 0 and (0,0,1) on slice 1; prediction: (0,0,0).
#[test]
fn score_volume_by_hand() {
    let dims = [4, 3, 3];
    let at = |x: usize, y: usize, z: usize| x + 4 * (y + 3 * z);
    let (mut p, mut t) = (vec![0u8; 36], vec![0u8; 36]);
    for v in [at(0, 0, 0), at(1, 0, 0), at(0, 0, 1)] {
        t[v] = 1;
    }
    p[at(0, 0, 0)] = 1;
    let s = metrics::score_volume(&p, &t, dims, [1.0, 2.0, 3.0], 2);
    assert_eq!(s.dice, 0.5); // 2·1 / (1 + 3)
    assert!((s.iou - 1.0 / 3.0).abs() < 1e-12);
    // Slices: 2·1/(1+2); a missed target 0; both empty 1.
    assert_eq!(s.slice_dice.len(), 3);
    assert!((s.slice_dice[0] - 2.0 / 3.0).abs() < 1e-12 && s.slice_dice[1] == 0.0 && s.slice_dice[2] == 1.0);
    assert!((s.mean_slice_dice() - 5.0 / 9.0).abs() < 1e-12);
    // Target edges to the prediction: 0, 1 mm (x), 3 mm (z); the 95th percentile of [0, 1, 3]
    // is 1 + 0.9·2 = 2.8; the other direction is 0.
    assert!((s.hd95.unwrap() - 2.8).abs() < 1e-12, "{:?}", s.hd95);
    // One wrong voxel on slices 0 and 1 (slice 0 has more target), none on 2.
    assert_eq!(s.worst_slices, [0, 1, 2]);
    // Along axis 0 (slices x = 0..3): x=0 has target 2, pred 1; x=1 target 1; x=2, 3 empty.
    let s0 = metrics::score_volume(&p, &t, dims, [1.0, 2.0, 3.0], 0);
    assert_eq!(s0.slice_dice.len(), 4);
    assert!((s0.slice_dice[0] - 2.0 / 3.0).abs() < 1e-12 && s0.slice_dice[1] == 0.0);
    assert_eq!(&s0.slice_dice[2..], [1.0, 1.0]);
}
