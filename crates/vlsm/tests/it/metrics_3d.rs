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
