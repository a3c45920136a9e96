//! `vlsm eval` on a dataset of NIfTI volumes: per-volume 3-D Dice and IoU, HD95 in mm with the
//! voxel spacing, the mean per-slice Dice, predicted masks as NIfTI in the volume's geometry (the
//! masks `vlsm segment` writes), the worst slices in report.html; bad datasets refused in one line.

use std::path::{Path, PathBuf};

use crate::support::{squares, tiny_clipseg, vlsm, write_nifti, SynthVolumes};
use vlsm::io::{read_volume, Volume, VoxelData, DEFAULT_MAX_VOXELS};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const DIMS: [usize; 3] = [24, 20, 6];
const SPACING: [f64; 3] = [0.8, 1.25, 2.5];
const THRESHOLD: &str = "0.5";

/// Two volumes: a bright ellipsoid (its mask) on a dark gradient, the second one shifted and
/// ending before the last slice (an empty target slice).
fn dataset(dir: &Path) -> PathBuf {
    let inside = |i: u32, x: usize, y: usize, z: usize| {
        let (cx, cy) = (10.0 + 3.0 * i as f64, 9.0);
        let (dx, dy, dz) = ((x as f64 - cx) / 6.0, (y as f64 - cy) / 5.0, (z as f64 - 2.5) / 2.6);
        dx * dx + dy * dy + dz * dz <= 1.0 && !(i == 1 && z == 5)
    };
    SynthVolumes::new(2, DIMS, SPACING)
        .image(move |i, x, y, z| if inside(i, x, y, z) { 900.0 } else { 40.0 + (x + y) as f32 * 3.0 })
        .mask(inside)
        .prompts(serde_json::json!({"p0": "", "p1": "a bright round ball"}))
        .write(&dir.join("balls"))
}

fn bits(v: &Volume) -> Vec<u8> {
    match &v.data {
        VoxelData::Scalar(x) => x.iter().map(|&x| u8::from(x != 0.0)).collect(),
        VoxelData::Rgb(_) => panic!("not a mask"),
    }
}

/// Brute-force HD95 in mm: edges (foreground voxels with a 6-neighbour that is background or
/// outside), each edge voxel's nearest edge voxel of the other mask by exhaustive search, the
/// 95th percentile (linear) per direction, the larger.
fn brute_hd95(p: &[u8], t: &[u8], d: [usize; 3], sp: [f64; 3]) -> Option<f64> {
    let fg = |m: &[u8], x: i64, y: i64, z: i64| {
        x >= 0
            && y >= 0
            && z >= 0
            && (x as usize) < d[0]
            && (y as usize) < d[1]
            && (z as usize) < d[2]
            && m[x as usize + d[0] * (y as usize + d[1] * z as usize)] != 0
    };
    let edges = |m: &[u8]| -> Vec<[f64; 3]> {
        let mut e = Vec::new();
        for z in 0..d[2] as i64 {
            for y in 0..d[1] as i64 {
                for x in 0..d[0] as i64 {
                    let n6 = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)];
                    if fg(m, x, y, z) && n6.iter().any(|(a, b, c)| !fg(m, x + a, y + b, z + c)) {
                        e.push([x as f64 * sp[0], y as f64 * sp[1], z as f64 * sp[2]]);
                    }
                }
            }
        }
        e
    };
    let (ep, et) = (edges(p), edges(t));
    if ep.is_empty() || et.is_empty() {
        return None;
    }
    let dir = |a: &[[f64; 3]], b: &[[f64; 3]]| {
        let mut v: Vec<f64> = a
            .iter()
            .map(|u| {
                b.iter().map(|w| (0..3).map(|i| (u[i] - w[i]).powi(2)).sum::<f64>().sqrt()).fold(f64::MAX, f64::min)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let pos = 0.95 * (v.len() - 1) as f64;
        let (i, j) = (pos.floor() as usize, (pos.floor() as usize + 1).min(v.len() - 1));
        v[i] + (v[j] - v[i]) * (pos - i as f64)
    };
    Some(dir(&ep, &et).max(dir(&et, &ep)))
}

/// (3-D Dice, IoU, mean per-slice Dice along z with empty-empty = 1), counted here.
fn by_count(p: &[u8], t: &[u8], d: [usize; 3]) -> (f64, f64, f64) {
    let dice = |p: &[u8], t: &[u8]| {
        let (a, b) = (p.iter().filter(|&&v| v != 0).count(), t.iter().filter(|&&v| v != 0).count());
        let i = p.iter().zip(t).filter(|(&x, &y)| x != 0 && y != 0).count();
        (if a + b == 0 { 1.0 } else { 2.0 * i as f64 / (a + b) as f64 }, a, b, i)
    };
    let (d3, a, b, i) = dice(p, t);
    let iou = if a + b - i == 0 { 1.0 } else { i as f64 / (a + b - i) as f64 };
    let plane = d[0] * d[1];
    let slices: f64 = (0..d[2]).map(|k| dice(&p[k * plane..(k + 1) * plane], &t[k * plane..(k + 1) * plane]).0).sum();
    (d3, iou, slices / d[2] as f64)
}

/// Eval over the volume dataset: every number of metrics.json and per_image.csv recomputed here
/// from the written masks (brute-force HD95 in mm); the masks are `vlsm segment`'s, in the
/// volume's geometry; report.html shows 3 slices of each volume.
#[test]
fn volume_dataset_scores_3d_and_writes_nifti_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let out = tmp.path().join("out");
    let model = tiny_clipseg();
    let (ok, stdout, err) = vlsm(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&ds),
        "--prompt",
        "p1",
        "--out",
        s(&out),
        "--threshold",
        THRESHOLD,
        "--batch",
        "4",
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("sliceDice") && stdout.contains("balls"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["hd95_unit"], "mm");
    let summary = &m["prompts"]["p1"]["datasets"]["balls"];
    assert_eq!(summary["n"], 2);
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("dataset,image,prompt,dice,iou,hd95_mm,slice_dice,slices"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2);
    let (mut sums, mut hds, mut foreground) = ([0.0f64; 3], Vec::new(), 0usize);
    for (i, row) in rows.iter().enumerate() {
        let name = format!("vol{i}.nii.gz");
        assert_eq!(row[..3], ["balls", name.as_str(), "p1"]);
        let src = read_volume(&ds.join("images").join(&name), DEFAULT_MAX_VOXELS).unwrap();
        let pred_path = out.join("masks/balls").join(&name);
        let pred = read_volume(&pred_path, DEFAULT_MAX_VOXELS).unwrap();
        assert_eq!(pred.dims, DIMS);
        assert_eq!(pred.header.datatype, 2, "uint8");
        assert_eq!(pred.header.affine(), src.header.affine());
        assert_eq!(pred.header.spacing(), src.header.spacing());
        let target = bits(&read_volume(&ds.join("masks").join(&name), DEFAULT_MAX_VOXELS).unwrap());
        let p = bits(&pred);
        foreground += p.iter().filter(|&&v| v != 0).count();
        let (d, iou, sd) = by_count(&p, &target, DIMS);
        let hd = brute_hd95(&p, &target, DIMS, SPACING);
        let f = |k: usize| row[k].parse::<f64>().unwrap();
        assert!((f(3) - d).abs() < 1e-5 && (f(4) - iou).abs() < 1e-5, "{row:?}: Dice {d}, IoU {iou}");
        assert!((f(6) - sd).abs() < 1e-5, "{row:?}: slice Dice {sd}");
        assert_eq!(row[7], "6");
        match hd {
            Some(h) => assert!((f(5) - h).abs() < 1e-4, "{row:?}: HD95 {h} mm"),
            None => assert_eq!(row[5], "", "{row:?}"),
        }
        hds.extend(hd);
        for (s, v) in sums.iter_mut().zip([d, iou, sd]) {
            *s += v / 2.0;
        }
        // The mask `vlsm segment` writes for the volume is the same.
        let seg_out = tmp.path().join(format!("seg{i}"));
        let img = ds.join("images").join(&name);
        let (ok, _, err) = vlsm(&[
            "segment",
            s(&img),
            "--model",
            s(&model),
            "-p",
            "a bright round ball",
            "--out",
            s(&seg_out),
            "--threshold",
            THRESHOLD,
        ]);
        assert!(ok, "{err}");
        let seg = read_volume(&seg_out.join(format!("vol{i}.mask.nii.gz")), DEFAULT_MAX_VOXELS).unwrap();
        assert!(bits(&seg) == p, "volume {i}: eval's mask differs from segment's");
    }
    assert!(foreground > 0 && foreground < 2 * DIMS.iter().product::<usize>(), "trivial predictions");
    assert!(!hds.is_empty(), "no HD95 to check");
    for (key, want) in ["dice", "iou", "slice_dice"].iter().zip(sums) {
        assert!((summary[key].as_f64().unwrap() - want).abs() < 1e-5, "{key}: {summary}");
    }
    match summary["hd95"].as_f64() {
        Some(h) => assert!((h - hds.iter().sum::<f64>() / hds.len() as f64).abs() < 1e-4),
        None => assert!(hds.is_empty()),
    }
    assert_eq!(summary["hd95_undefined"].as_u64().unwrap() as usize, 2 - hds.len());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Worst 2 volumes") && html.contains("HD95 (mm)"), "report");
    assert_eq!(html.matches("<figure><img src=\"data:image/png;base64,").count(), 6, "3 slices of each volume");
    assert_eq!(html.matches("(volume), slice ").count(), 6);
}

/// A mask whose shape differs from its volume's, a volume dataset pooled with a 2-D one, and
/// --tta on volumes: one line naming the files, nothing written.
#[test]
fn bad_volume_datasets_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let model = tiny_clipseg();
    let out = tmp.path().join("out");
    let run = |data: &[&Path], extra: &[&str]| {
        let mut a = vec!["eval", "--model", s(&model), "--prompt", "p1", "--out", s(&out), "--data"];
        a.extend(data.iter().map(|p| s(p)));
        a.extend(extra);
        vlsm(&a)
    };
    let images = squares(2, 50, 40, 40).prompts(serde_json::json!({"p1": "square"})).write(&tmp.path().join("flat"));
    let (ok, _, err) = run(&[&ds, &images], &[]);
    assert!(!ok && err.trim().lines().count() == 1, "{err}");
    assert!(err.contains("balls") && err.contains("flat") && err.contains("separate runs"), "{err}");
    let (ok, _, err) = run(&[&ds], &["--tta", "flip"]);
    assert!(!ok && err.trim().lines().count() == 1 && err.contains("--tta"), "{err}");

    let bad_mask = ds.join("masks/vol1.nii.gz");
    write_nifti(&bad_mask, [24, 20, 5], SPACING, vlsm::io::OutputData::U8(&vec![0u8; 24 * 20 * 5]));
    let (ok, _, err) = run(&[&ds], &[]);
    assert!(!ok && err.trim().lines().count() == 1, "{err}");
    assert!(err.contains(s(&bad_mask)) && err.contains("vol1.nii.gz") && err.contains("images"), "{err}");
    assert!(err.contains("24x20x5") && err.contains("24x20x6"), "{err}");
    assert!(!out.join("metrics.json").exists() && !out.join("masks").exists());
}
