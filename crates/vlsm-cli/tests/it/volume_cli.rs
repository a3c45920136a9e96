//! `vlsm segment` on NIfTI volumes and batch runs over folders (tests/fixtures/nifti, written
//! by tools/make_volume_fixtures.py).

use std::path::{Path, PathBuf};

use crate::support::{fx, repo_root, vlsm};
use vlsm::io::{read_volume, NiftiHeader, Volume, VoxelData, DEFAULT_MAX_VOXELS};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn builtin() -> PathBuf {
    repo_root().join("models/default")
}

fn tiny() -> PathBuf {
    fx("clipseg/tiny_complex")
}

fn read(p: &Path) -> Volume {
    read_volume(p, DEFAULT_MAX_VOXELS).unwrap_or_else(|e| panic!("{e}"))
}

fn mask_of(v: &Volume) -> &[f32] {
    match &v.data {
        VoxelData::Scalar(x) => x,
        VoxelData::Rgb(_) => panic!("a mask is scalar"),
    }
}

/// What must equal between a source and its mask.
#[allow(clippy::type_complexity)]
fn geometry(h: &NiftiHeader) -> (u8, bool, Vec<u64>, [f64; 8], i32, i32, [[f64; 4]; 4], [[f64; 4]; 4], i32) {
    (
        h.version,
        h.little_endian,
        h.dim[1..4].to_vec(),
        h.pixdim,
        h.qform_code,
        h.sform_code,
        h.sform_affine(),
        h.qform_affine(),
        h.xyzt_units,
    )
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn go(root: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    go(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// A volume stacked from three images gives, slice by slice, the masks `vlsm segment` gives for
/// the images (built-in model), in the volume's geometry.
#[test]
fn volume_slices_equal_image_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let (out_img, out_vol) = (tmp.path().join("img"), tmp.path().join("vol"));
    let st = fx("nifti/stack");
    let prompt = "one medium pink round polyp, located in center of the image";
    let imgs: Vec<PathBuf> = (0..3).map(|k| st.join(format!("s{k}.png"))).collect();
    let model = builtin();
    let mut args = vec!["segment", "--model", s(&model), "-p", prompt, "--out", s(&out_img), "--batch", "2"];
    args.extend(imgs.iter().map(|p| s(p)));
    let (ok, _, err) = vlsm(&args);
    assert!(ok, "{err}");
    let src = st.join("stack.nii.gz");
    let (ok, _, err) = vlsm(&[
        "segment",
        s(&src),
        "--model",
        s(&builtin()),
        "-p",
        prompt,
        "--out",
        s(&out_vol),
        "--batch",
        "2",
        "--probs",
    ]);
    assert!(ok, "{err}");
    assert_eq!(files_under(&out_vol), ["stack.mask.nii.gz", "stack.probs.nii.gz"]);
    let (m, v) = (read(&out_vol.join("stack.mask.nii.gz")), read(&src));
    assert_eq!(geometry(&m.header), geometry(&v.header));
    assert_eq!(m.header.datatype, 2, "uint8");
    let probs = read(&out_vol.join("stack.probs.nii.gz"));
    assert_eq!(geometry(&probs.header), geometry(&v.header));
    assert_eq!(probs.header.datatype, 16, "float32");
    let [nx, ny, nz] = m.dims;
    let mask = mask_of(&m);
    let (mut fg, mut bg) = (0, 0);
    for k in 0..nz {
        let png = image::open(out_img.join(format!("s{k}.mask.png"))).unwrap().to_luma8();
        assert_eq!(png.dimensions(), (nx as u32, ny as u32));
        for y in 0..ny {
            for x in 0..nx {
                let want = png.get_pixel(x as u32, y as u32)[0] == 255;
                let got = mask[x + nx * (y + ny * k)];
                assert_eq!(got, if want { 1.0 } else { 0.0 }, "slice {k} ({x}, {y})");
                let p = mask_of(&probs)[x + nx * (y + ny * k)];
                assert_eq!(p > 0.5, want, "probability {p} at slice {k} ({x}, {y})");
                if want {
                    fg += 1
                } else {
                    bg += 1
                }
            }
        }
    }
    assert!(fg > 50 && bg > 50, "masks are not trivial: {fg} foreground, {bg} background");
}

/// Oblique, anisotropic sources (NIfTI-1 gz, NIfTI-2 big endian, 4-D): the mask's header equals
/// the source's; slices along another axis cover the same volume; several prompts get slugs.
#[test]
fn masks_keep_geometry_along_any_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    for (name, stem) in [
        ("geom_oblique.nii.gz", "geom_oblique"),
        ("geom_oblique_n2_be.nii", "geom_oblique_n2_be"),
        ("geom_oblique_4d.nii.gz", "geom_oblique_4d"),
    ] {
        let src = fx("nifti").join(name);
        for axis in ["0", "2"] {
            let (ok, _, err) = vlsm(&[
                "segment",
                s(&src),
                "--model",
                s(&tiny()),
                "-p",
                "Liver tumour",
                "-p",
                "liver",
                "--axis",
                axis,
                "--window",
                "soft",
                "--out",
                s(&out),
            ]);
            assert!(ok, "{name}: {err}");
            if name.contains("4d") {
                assert!(err.contains("first volume") && err.contains(name), "{err}");
            }
            let v = read(&src);
            for p in ["liver-tumour", "liver"] {
                let m = read(&out.join(format!("{stem}.{p}.mask.nii.gz")));
                assert_eq!(geometry(&m.header), geometry(&v.header), "{name} axis {axis}");
                assert_eq!(m.header.dim[0], 3);
                assert!(mask_of(&m).iter().all(|&x| x == 0.0 || x == 1.0));
            }
        }
    }
}

#[test]
fn bad_volumes_are_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let good = std::fs::read(fx("nifti/geom_oblique_n2_be.nii")).unwrap();
    let trunc = tmp.path().join("trunc.nii");
    std::fs::write(&trunc, &good[..good.len() - 10]).unwrap();
    let mut huge = good.clone();
    huge[16 + 8..16 + 16].copy_from_slice(&(1i64 << 40).to_be_bytes()); // dim[1]
    let huge_p = tmp.path().join("huge.nii");
    std::fs::write(&huge_p, &huge).unwrap();
    let gz = std::fs::read(fx("nifti/geom_oblique.nii.gz")).unwrap();
    let cut = tmp.path().join("cut.nii.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let (geom, dconn, model) = (fx("nifti/geom_oblique.nii.gz"), fx("nifti/nibabel/row_major.dconn.nii"), tiny());
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (&trunc, vec![], "truncated"),
        (&huge_p, vec![], "limit"),
        (&cut, vec![], "cut.nii.gz"),
        (&geom, vec!["--max-voxels", "100"], "12x10x6 = 720 voxels"),
        (&dconn, vec![], "CIFTI"),
        (&geom, vec!["--window", "wide"], "bad window"),
        (&geom, vec!["--axis", "3"], "--axis"),
    ];
    for (p, extra, want) in cases {
        let mut args = vec!["segment", s(p), "--model", s(&model), "-p", "x", "--out", s(&out)];
        args.extend(extra);
        let (ok, _, err) = vlsm(&args);
        assert!(!ok, "{}: should fail", p.display());
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        let named = want == "bad window" || want == "--axis" || err.contains(p.file_name().unwrap().to_str().unwrap());
        assert!(err.contains(want) && named, "{}: {err}", p.display());
        assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
    }
}

/// 2-D DICOM and NIfTI images go through the server's reader.
#[test]
fn dicom_and_2d_nifti_images() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let dcm = fx("io/ct_explicit.dcm");
    let flat = fx("io/flat.nii");
    let (ok, _, err) = vlsm(&["segment", s(&dcm), s(&flat), "--model", s(&tiny()), "-p", "x", "--out", s(&out)]);
    assert!(ok, "{err}");
    assert_eq!(files_under(&out), ["ct_explicit.mask.png", "ct_explicit.overlay.png", "flat.mask.nii.gz"]);
    let m = read(&out.join("flat.mask.nii.gz"));
    assert_eq!(m.dims, [6, 4, 1]);
}

fn summary(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    let mut x: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    x.sort();
    x
}

/// A folder of images and volumes, one bad PNG and one bad volume among them.
fn batch_dir(root: &Path) -> PathBuf {
    let d = root.join("in");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::copy(fx("nifti/stack/s0.png"), d.join("a.png")).unwrap();
    std::fs::copy(fx("nifti/stack/s1.png"), d.join("sub/b.png")).unwrap();
    std::fs::copy(fx("nifti/geom_oblique.nii.gz"), d.join("sub/deeper/ct.nii.gz")).unwrap();
    std::fs::write(d.join("sub/bad.png"), b"\x89PNG\r\n\x1a\nnot a png").unwrap();
    let g = std::fs::read(fx("nifti/geom_oblique_n2_be.nii")).unwrap();
    std::fs::write(d.join("cut.nii"), &g[..g.len() - 100]).unwrap();
    std::fs::write(d.join("notes.txt"), b"not an image, not taken").unwrap();
    d
}

#[test]
fn batch_runs_mirror_skip_and_summarise() {
    let tmp = tempfile::tempdir().unwrap();
    let d = batch_dir(tmp.path());
    let out = tmp.path().join("out");
    let model = tiny();
    let run = |extra: &[&str]| {
        let mut a = vec!["segment", s(&d), "--model", s(&model), "-p", "x", "--out", s(&out)];
        a.extend(extra);
        vlsm(&a)
    };
    // Without --recursive: the top level only.
    let (ok, _, err) = run(&[]);
    assert!(!ok, "cut.nii fails: {err}");
    let sm = summary(&out, "summary.json");
    assert_eq!(strs(&sm["done"]), [s(&d.join("a.png"))]);
    assert_eq!(sm["failed"][0]["image"], s(&d.join("cut.nii")));
    assert!(sm["failed"][0]["error"].as_str().unwrap().contains("truncated"), "{sm}");

    let (ok, _, err) = run(&["--recursive"]);
    assert!(!ok, "{err}");
    assert!(err.lines().last().unwrap().contains("2 of 5 input(s) failed"), "{err}");
    let sm = summary(&out, "summary.json");
    assert_eq!(strs(&sm["skipped"]), [s(&d.join("a.png"))], "a.png was done by the first run");
    assert_eq!(strs(&sm["done"]), [s(&d.join("sub/b.png")), s(&d.join("sub/deeper/ct.nii.gz"))]);
    let failed: Vec<(String, String)> = sm["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["image"].as_str().unwrap().to_string(), f["error"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(failed.len(), 2);
    for (img, e) in &failed {
        assert!(e.contains(img.as_str()) && !e.contains('\n'), "{img}: {e}");
    }
    assert_eq!(
        files_under(&out),
        [
            "a.mask.png",
            "a.overlay.png",
            "sub/b.mask.png",
            "sub/b.overlay.png",
            "sub/deeper/ct.mask.nii.gz",
            "summary.json",
        ]
    );
    // A resumed run redoes only what is missing.
    std::fs::remove_file(out.join("sub/b.overlay.png")).unwrap();
    let before = std::fs::metadata(out.join("sub/deeper/ct.mask.nii.gz")).unwrap().modified().unwrap();
    let (ok, _, _) = run(&["--recursive"]);
    assert!(!ok);
    let sm = summary(&out, "summary.json");
    assert_eq!(strs(&sm["done"]), [s(&d.join("sub/b.png"))]);
    assert_eq!(strs(&sm["skipped"]), [s(&d.join("a.png")), s(&d.join("sub/deeper/ct.nii.gz"))]);
    assert_eq!(std::fs::metadata(out.join("sub/deeper/ct.mask.nii.gz")).unwrap().modified().unwrap(), before);

    // A folder of good files only: exit 0.
    std::fs::remove_file(d.join("cut.nii")).unwrap();
    std::fs::remove_file(d.join("sub/bad.png")).unwrap();
    let (ok, _, err) = run(&["--recursive"]);
    assert!(ok, "{err}");
}

#[test]
fn shards_split_the_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = batch_dir(tmp.path());
    std::fs::remove_file(d.join("cut.nii")).unwrap();
    std::fs::remove_file(d.join("sub/bad.png")).unwrap();
    let out = tmp.path().join("out");
    let mut done = Vec::new();
    for shard in ["0/2", "1/2"] {
        let (ok, _, err) = vlsm(&[
            "segment",
            s(&d),
            "--recursive",
            "--shard",
            shard,
            "--model",
            s(&tiny()),
            "-p",
            "x",
            "--out",
            s(&out),
        ]);
        assert!(ok, "{err}");
        let sm = summary(&out, &format!("summary.{}.json", shard.replace('/', "-of-")));
        assert_eq!(sm["shard"], shard);
        done.extend(strs(&sm["done"]));
    }
    done.sort();
    let mut all: Vec<String> =
        ["a.png", "sub/b.png", "sub/deeper/ct.nii.gz"].iter().map(|f| s(&d.join(f)).to_string()).collect();
    all.sort();
    assert_eq!(done, all, "each input in exactly one shard");
    let (ok, _, err) = vlsm(&["segment", s(&d), "--shard", "2/2", "--model", s(&tiny()), "-p", "x"]);
    assert!(!ok && err.contains("--shard"), "{err}");
}

#[test]
fn jobs_give_per_image_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = batch_dir(tmp.path());
    let jobs = d.join("jobs.json");
    std::fs::write(
        &jobs,
        r#"[{"image": "sub/deeper/ct.nii.gz", "prompts": ["Liver", "a kidney"]},
            {"image": "a.png"},
            {"image": "missing.png", "prompts": ["x"]}]"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = vlsm(&["segment", "--jobs", s(&jobs), "--model", s(&tiny()), "-p", "polyp", "--out", s(&out)]);
    assert!(!ok, "missing.png fails: {err}");
    let sm = summary(&out, "summary.json");
    assert_eq!(sm["failed"].as_array().unwrap().len(), 1);
    assert!(sm["failed"][0]["error"].as_str().unwrap().contains("missing.png"), "{sm}");
    assert_eq!(
        files_under(&out),
        [
            "a.mask.png",
            "a.overlay.png",
            "sub/deeper/ct.a-kidney.mask.nii.gz",
            "sub/deeper/ct.liver.mask.nii.gz",
            "summary.json"
        ]
    );
    std::fs::write(&jobs, r#"[{"image": "../x.png"}]"#).unwrap();
    let (ok, _, err) = vlsm(&["segment", "--jobs", s(&jobs), "--model", s(&tiny()), "-p", "x", "--out", s(&out)]);
    assert!(!ok && err.contains("leaves"), "{err}");
    std::fs::write(&jobs, r#"[{"img": "a.png"}]"#).unwrap();
    let (ok, _, err) = vlsm(&["segment", "--jobs", s(&jobs), "--model", s(&tiny()), "-p", "x", "--out", s(&out)]);
    assert!(!ok && err.contains("jobs.json"), "{err}");
}
