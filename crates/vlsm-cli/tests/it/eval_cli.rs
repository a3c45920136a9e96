//! `vlsm eval`: table, metrics.json, per_image.csv, masks at original size and report.html.

use crate::support::{squares, tiny_clipseg as tiny_model, vlsm};
use std::path::{Path, PathBuf};

/// A test split of `n` images of 50x40 (the last with an empty mask) named `name`.
fn dataset(dir: &Path, name: &str, n: u32) -> PathBuf {
    squares(n, 50, 40, 40)
        .names("im", "_mask")
        .prompts(serde_json::json!({"p0": "", "p1": "square", "p2": ["big square", "bright square"]}))
        .write(&dir.join(name))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn all_prompts_over_two_datasets_writes_every_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (dataset(tmp.path(), "alpha", 3), dataset(tmp.path(), "beta", 2));
    let out = tmp.path().join("out");
    let (ok, stdout, err) = vlsm(&[
        "eval",
        "--model",
        s(&tiny_model()),
        "--data",
        s(&a),
        s(&b),
        "--split",
        "test",
        "--all-prompts",
        "--out",
        s(&out),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("(pooled)") && stdout.contains("alpha") && stdout.contains("p2"), "{stdout}");

    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for k in ["p0", "p1", "p2"] {
        let p = &m["prompts"][k];
        assert_eq!(p["pooled"]["n"], 5);
        assert_eq!(p["datasets"]["alpha"]["n"], 3);
        for f in ["dice", "iou", "hd95_undefined", "dice_model_res", "iou_model_res"] {
            assert!(p["pooled"][f].is_number(), "{k}.pooled.{f} missing: {p}");
        }
        assert!(p["pooled"].get("hd95").is_some());
        // The empty-target images cannot have an HD95.
        assert!(p["pooled"]["hd95_undefined"].as_u64().unwrap() >= 2);
    }
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    assert!(csv.starts_with("dataset,image,prompt,dice,iou\n"));
    assert_eq!(csv.lines().count(), 1 + 5 * 3);

    // Masks at original size, 0/255, one folder per key; CSV Dice agrees with them.
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let stem = f[1].trim_end_matches(".png");
        let pred = vlsm::io::read_mask(&out.join(format!("masks/{}/{}/{stem}_mask.png", f[2], f[0]))).unwrap();
        assert_eq!(pred.dimensions(), (50, 40));
        assert!(pred.pixels().all(|p| p[0] == 0 || p[0] == 255));
        let gt = vlsm::io::read_mask(&tmp.path().join(f[0]).join(format!("masks/{stem}_mask.png"))).unwrap();
        let d = vlsm::metrics::dice(pred.as_raw(), gt.as_raw());
        assert!((d - f[3].parse::<f64>().unwrap()).abs() < 1e-6, "{line}: {d}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("data:image/png;base64,"));
    assert!(!html.contains("src=\"http") && !html.contains("src=\"/"), "report must be self-contained");
}

#[test]
fn one_prompt_writes_masks_per_dataset_and_repeats_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dataset(tmp.path(), "alpha", 3);
    let run = |out: &Path| {
        let (ok, _, err) = vlsm(&[
            "eval",
            "--model",
            s(&tiny_model()),
            "--data",
            s(&a),
            "--prompt",
            "p2",
            "--out",
            s(out),
            "--threshold",
            "0.4",
        ]);
        assert!(ok, "{err}");
        std::fs::read_to_string(out.join("per_image.csv")).unwrap()
    };
    let (o1, o2) = (tmp.path().join("o1"), tmp.path().join("o2"));
    assert_eq!(run(&o1), run(&o2));
    assert!(o1.join("masks/alpha/im0_mask.png").is_file());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o1.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["threshold"].as_f64().unwrap() as f32, 0.4);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dataset(tmp.path(), "alpha", 2);
    let out = tmp.path().join("out");
    let m = tiny_model();
    let (ok, _, err) = vlsm(&["eval", "--model", s(&m), "--data", s(&a), "--prompt", "p7", "--out", s(&out)]);
    assert!(!ok && err.contains("p7") && err.trim().lines().count() == 1, "{err}");
    let (ok, _, err) =
        vlsm(&["eval", "--model", s(&m), "--data", s(&a), "--split", "val", "--prompt", "p1", "--out", s(&out)]);
    assert!(!ok && err.contains("val.json"), "{err}");
    let (ok, _, _) =
        vlsm(&["eval", "--model", s(&m), "--data", s(&a), "--prompt", "p1", "--all-prompts", "--out", s(&out)]);
    assert!(!ok);
    assert!(!out.join("metrics.json").exists());
}
