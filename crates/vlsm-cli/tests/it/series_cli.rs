//! `vlsm segment --series DIR` on the DICOM series fixtures (tests/fixtures/dicom/series):
//! NIfTI masks in the series' geometry, a DICOM SEG that vlsm's reader parses, bad series
//! refused before anything is written.

use std::path::{Path, PathBuf};

use crate::support::{fx, repo_root, vlsm};
use vlsm::io::{read_dicom_pixels, read_dicom_series, read_volume, VoxelData, DEFAULT_MAX_VOXELS};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn builtin() -> PathBuf {
    repo_root().join("models/default")
}

fn series(rel: &str) -> PathBuf {
    fx("dicom/series").join(rel)
}

const PROMPTS: [&str; 2] = ["bright tissue", "dark background"];

fn segment(dir: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let model = builtin();
    let mut args = vec!["segment", "--model", s(&model), "--series", s(dir), "--out", s(out), "--threshold", "0.3"];
    for p in PROMPTS {
        args.extend(["-p", p]);
    }
    args.extend(extra);
    let (ok, _, err) = vlsm(&args);
    (ok, err)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

/// The masks of the good series are NIfTI volumes with the series' dims and RAS affine; the
/// SEG of the same run has one frame per slice and prompt, equal to those masks, and references
/// the series.
#[test]
fn series_masks_in_series_geometry_and_seg_reads_back() {
    let dir = series("good");
    let src = read_dicom_series(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nii");
    let (ok, err) = segment(&dir, &out, &[]);
    assert!(ok, "{err}");
    let want = src.affine_ras();
    let mut masks = Vec::new();
    for slug in ["bright-tissue", "dark-background"] {
        let p = out.join(format!("good.{slug}.mask.nii.gz"));
        let v = read_volume(&p, DEFAULT_MAX_VOXELS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.dims, src.dims);
        assert!(v.header.sform_code > 0);
        // The qform carries the same geometry (for readers that take it, as ITK does).
        assert_eq!(v.header.qform_code, 1);
        for got in [v.header.affine(), v.header.qform_affine()] {
            for r in 0..4 {
                for c in 0..4 {
                    // The header stores f32.
                    let tol = 1e-4 * want[r][c].abs().max(1.0);
                    assert!((got[r][c] - want[r][c]).abs() < tol, "{got:?} vs {want:?}");
                }
            }
        }
        for i in 0..3 {
            assert!((v.header.spacing()[i] - src.spacing[i]).abs() < 1e-5);
        }
        let VoxelData::Scalar(m) = v.data else { panic!("a mask is scalar") };
        assert!(m.iter().all(|&x| x == 0.0 || x == 1.0));
        masks.push(m);
    }
    assert_eq!(count_files(&out), 2, "only the two masks");

    let out = tmp.path().join("seg");
    let (ok, err) = segment(&dir, &out, &["--format", "dicom-seg"]);
    assert!(ok, "{err}");
    assert_eq!(count_files(&out), 1, "only the SEG");
    let seg = out.join("good.seg.dcm");
    let px = read_dicom_pixels(&seg).unwrap_or_else(|e| panic!("{e}"));
    let [nx, ny, nz] = src.dims;
    assert_eq!((px.frames, px.rows, px.cols), (2 * nz, ny, nx));
    // Segment-major frames, each slice i fastest: the masks one after the other.
    let want: Vec<i64> = masks.concat().into_iter().map(|v| v as i64).collect();
    assert_eq!(px.values, want);
    let bytes = std::fs::read(&seg).unwrap();
    let has = |t: &str| bytes.windows(t.len()).any(|w| w == t.as_bytes());
    assert!(has(&src.series_instance_uid) && has(&src.study_instance_uid) && has(&src.frame_of_reference_uid));
    for sl in &src.sources {
        assert!(has(&sl.sop_instance_uid), "{} not referenced", sl.sop_instance_uid);
    }
    for p in PROMPTS {
        assert!(has(p), "segment label {p} missing");
    }
}

/// A series with a missing slice: one line naming the files, nothing written (not even --out).
#[test]
fn bad_series_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for fmt in ["nifti", "dicom-seg"] {
        let (ok, err) = segment(&series("missing"), &out, &["--format", fmt]);
        assert!(!ok);
        let e = err.trim();
        assert!(!e.contains('\n') && e.contains("missing") && e.contains("IM0001_1"), "{e}");
        assert_eq!(count_files(&out), 0);
    }
}

/// --format dicom-seg needs a DICOM series: on a NIfTI volume it is a one-line error.
#[test]
fn dicom_seg_on_nifti_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let vol = fx("nifti/geom_oblique.nii.gz");
    let model = builtin();
    let args = ["segment", "--model", s(&model), "-p", "x", "--format", "dicom-seg", "--out", s(&out), s(&vol)];
    let (ok, _, err) = vlsm(&args);
    assert!(!ok);
    let e = err.trim();
    assert!(!e.contains('\n') && e.contains("geom_oblique.nii.gz") && e.contains("--series"), "{e}");
    assert_eq!(count_files(&out), 0);
}

/// Under `--window auto` a series is windowed by its own Window Center/Width (40/400 in the
/// fixture): the masks equal those of `--window 400,40` and differ from percentile windowing.
#[test]
fn series_window_is_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let mask = |w: &str| -> Vec<f32> {
        let out = tmp.path().join(w.replace(',', "_"));
        let (ok, err) = segment(&series("good"), &out, &["--window", w]);
        assert!(ok, "{err}");
        let v = read_volume(&out.join("good.bright-tissue.mask.nii.gz"), DEFAULT_MAX_VOXELS).unwrap();
        let VoxelData::Scalar(m) = v.data else { panic!("a mask is scalar") };
        m
    };
    let auto = mask("auto");
    assert_eq!(auto, mask("400,40"));
    assert_ne!(auto, mask("p0.5,99.5"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn mask_bits(p: &Path) -> Vec<f32> {
    let v = read_volume(p, DEFAULT_MAX_VOXELS).unwrap_or_else(|e| panic!("{e}"));
    let VoxelData::Scalar(m) = v.data else { panic!("a mask is scalar") };
    m
}

fn summary_of(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn names(v: &serde_json::Value, root: &Path) -> Vec<String> {
    let mut x: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Path::new(s.as_str().unwrap()).strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    x.sort();
    x
}

/// A batch run over a tree holding an image and two series folders (files without extensions,
/// one with a non-image DICOM in a sub-folder; a folder mixing two series is no series): each
/// series is one input, its mask mirrored under --out as `<folder>.mask.nii.gz` and equal to the
/// mask of `--series`; a second run skips everything; --jobs may name a series folder;
/// --format dicom-seg writes a SEG per series and fails the image.
#[test]
fn batch_runs_take_series_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("in");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(fx("nifti/stack/s0.png"), d.join("a.png")).unwrap();
    copy_dir(&series("good"), &d.join("pt1/ct"));
    copy_dir(&series("two_series/b"), &d.join("pt2/scan"));
    copy_dir(&series("two_series/a"), &d.join("mixed"));
    std::fs::copy(series("two_series/b/IM0001_1"), d.join("mixed/other_series_IM0001")).unwrap();
    let model = crate::support::tiny_clipseg();
    let out = tmp.path().join("out");
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec!["segment", s(&d), "--recursive", "--model", s(&model), "-p", "bright tissue", "--out", s(out)];
        a.extend(extra);
        vlsm(&a)
    };
    let (ok, _, err) = run(&out, &[]);
    assert!(ok, "{err}");
    let sm = summary_of(&out);
    assert_eq!(names(&sm["done"], &d), ["a.png", "pt1/ct", "pt2/scan"], "{sm}");
    assert_eq!(sm["failed"].as_array().unwrap().len(), 0, "{sm}");
    for (rel, src) in [("pt1/ct", "good"), ("pt2/scan", "two_series/b")] {
        let got = out.join(format!("{rel}.mask.nii.gz"));
        let want_dims = read_dicom_series(&series(src)).unwrap().dims;
        assert_eq!(read_volume(&got, DEFAULT_MAX_VOXELS).unwrap().dims, want_dims);
        let one = tmp.path().join(format!("one_{}", rel.replace('/', "_")));
        let (ok, _, err) = vlsm(&[
            "segment",
            "--model",
            s(&model),
            "-p",
            "bright tissue",
            "--series",
            s(&d.join(rel)),
            "--out",
            s(&one),
        ]);
        assert!(ok, "{err}");
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        assert_eq!(mask_bits(&got), mask_bits(&one.join(format!("{name}.mask.nii.gz"))), "{rel}");
    }
    let (ok, _, err) = run(&out, &[]);
    assert!(ok, "{err}");
    let sm = summary_of(&out);
    assert_eq!(names(&sm["skipped"], &d), ["a.png", "pt1/ct", "pt2/scan"], "{sm}");

    let jobs = d.join("jobs.json");
    std::fs::write(&jobs, r#"[{"image": "pt1/ct", "prompts": ["bright tissue"]}]"#).unwrap();
    let out_jobs = tmp.path().join("jobs_out");
    let (ok, _, err) = vlsm(&["segment", "--jobs", s(&jobs), "--model", s(&model), "--out", s(&out_jobs)]);
    assert!(ok, "{err}");
    assert_eq!(mask_bits(&out_jobs.join("pt1/ct.mask.nii.gz")), mask_bits(&out.join("pt1/ct.mask.nii.gz")));

    let out_seg = tmp.path().join("seg_out");
    let (ok, _, err) = run(&out_seg, &["--format", "dicom-seg"]);
    assert!(!ok, "a.png cannot be a SEG: {err}");
    let sm = summary_of(&out_seg);
    assert_eq!(names(&sm["done"], &d), ["pt1/ct", "pt2/scan"], "{sm}");
    assert!(sm["failed"][0]["error"].as_str().unwrap().contains("dicom-seg"), "{sm}");
    for rel in ["pt1/ct", "pt2/scan"] {
        let px = read_dicom_pixels(&out_seg.join(format!("{rel}.seg.dcm"))).unwrap_or_else(|e| panic!("{e}"));
        assert!(px.frames > 0);
    }
}
