//! Hostile input, round two (#17): every bad input fails with one line and a non-zero exit,
//! and nothing is written outside `--out` (or, on failure, inside it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{discs, fx, square_of, squares, tiny_clipseg as tiny_model, vlsm_os};

/// (success, exit code, stdout, stderr)
fn vlsm(args: &[&str]) -> (bool, Option<i32>, String, String) {
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| std::ffi::OsStr::new(*s)).collect();
    vlsm_os(&a)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Fails the test unless the run failed with exit 1 and exactly one line on stderr.
fn one_line_error(r: &(bool, Option<i32>, String, String)) -> String {
    let (ok, code, _, err) = r;
    assert!(!ok && *code == Some(1), "exit {code:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err.clone()
}

fn mask_50x40(i: u32, n: u32) -> image::GrayImage {
    image::GrayImage::from_fn(50, 40, |x, y| image::Luma([if square_of(i, n, x, y) { 255 } else { 0 }]))
}

/// A test split of `n` 50x40 images named `name`; `edit` may change the records.
fn dataset(dir: &Path, name: &str, n: u32, edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> PathBuf {
    squares(n, 50, 40, 40)
        .names("im", "_mask")
        .prompts(serde_json::json!({"p0": "", "p1": "square"}))
        .write_with(&dir.join(name), edit)
}

fn eval(ds: &Path, out: &Path) -> (bool, Option<i32>, String, String) {
    vlsm(&["eval", "--model", s(&tiny_model()), "--data", s(ds), "--prompt", "p1", "--out", s(out), "--batch", "1"])
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn eval_refuses_record_names_that_leave_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    // The victim is where both the dataset-relative read and the out-relative write of
    // `../../../victim/labels.png` land.
    let victim = tmp.path().join("victim/labels.png");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    mask_50x40(0, 2).save(&victim).unwrap();
    let before = std::fs::read(&victim).unwrap();
    let data = tmp.path().join("data");
    let ds = dataset(&data, "ds", 2, |r| r[1]["mask_name"] = "../../../victim/labels.png".into());
    let out = tmp.path().join("out");
    let err = one_line_error(&eval(&ds, &out));
    assert!(
        err.contains("test.json") && err.contains("record 1") && err.contains("im1.png") && err.contains(".."),
        "{err}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), before, "the file outside the dataset was overwritten");
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));

    // The issue's own example, deeper than the temporary folder.
    let ds = dataset(&data, "deep", 2, |r| r[1]["mask_name"] = "../../../../tmp/x/labels.png".into());
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("test.json") && err.contains("record 1"), "{err}");

    // An absolute img_name is not read.
    let abs = tmp.path().join("data/ds/images/im0.png");
    let ds = dataset(&data, "abs", 2, |r| r[0]["img_name"] = s(&abs).into());
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("record 0") && err.contains("absolute"), "{err}");
    assert!(files_under(&out).is_empty());
}

#[cfg(unix)]
#[test]
fn eval_follows_symlinks_only_inside_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.png");
    mask_50x40(0, 2).save(&outside).unwrap();
    let ds = dataset(tmp.path(), "ds", 2, |_| {});
    std::fs::remove_file(ds.join("masks/im0_mask.png")).unwrap();
    std::os::unix::fs::symlink(&outside, ds.join("masks/im0_mask.png")).unwrap();
    let out = tmp.path().join("out");
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("record 0") && err.contains("outside"), "{err}");
    // A link to another file inside the dataset is fine.
    std::fs::remove_file(ds.join("masks/im0_mask.png")).unwrap();
    std::fs::copy(&outside, ds.join("masks/real.png")).unwrap();
    std::os::unix::fs::symlink(ds.join("masks/real.png"), ds.join("masks/im0_mask.png")).unwrap();
    let (ok, _, _, err) = eval(&ds, &out);
    assert!(ok, "{err}");
    assert!(out.join("masks/ds/im0_mask.png").is_file());
}

#[test]
fn eval_refuses_two_records_with_one_prediction_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), "ds", 3, |r| r[2]["mask_name"] = "im0_mask.png".into());
    let out = tmp.path().join("out");
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("records 0") && err.contains("and 2") && err.contains("distinct mask names"), "{err}");
    assert!(files_under(&out).is_empty());
    // `x.png` and `x.jpg` would both be predicted as `x.png`.
    let ds = dataset(tmp.path(), "ext", 2, |r| r[1]["mask_name"] = "im0_mask.jpg".into());
    image::GrayImage::new(50, 40).save(ds.join("masks/im0_mask.jpg")).unwrap();
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("distinct mask names"), "{err}");
}

#[test]
fn eval_of_an_empty_split_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), "ds", 0, |_| {});
    let out = tmp.path().join("out");
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("test.json") && err.contains("no records"), "{err}");
    assert!(!out.join("metrics.json").exists());
}

#[test]
fn failed_eval_leaves_no_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), "ds", 3, |_| {});
    // The last image keeps its header (so the dataset opens) but cannot be decoded.
    let p = ds.join("images/im2.png");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..60]).unwrap();
    let out = tmp.path().join("out");
    let err = one_line_error(&eval(&ds, &out));
    assert!(err.contains("im2.png"), "{err}");
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
}

#[test]
fn threshold_outside_0_1_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), "ds", 2, |_| {});
    let out = tmp.path().join("out");
    let img = fx("clipseg/images/kvasir_75x50.png");
    for t in ["2.0", "-0.1", "NaN"] {
        let t = format!("--threshold={t}");
        let err = one_line_error(&vlsm(&["eval", "--data", s(&ds), "--prompt", "p1", "--out", s(&out), &t]));
        assert!(err.contains("--threshold"), "{err}");
        let err = one_line_error(&vlsm(&["segment", s(&img), "-p", "x", "--out", s(&out), &t]));
        assert!(err.contains("--threshold"), "{err}");
    }
    assert!(files_under(&out).is_empty());
}

fn disc_dataset(dir: &Path, n: u32) {
    discs(n).write(dir);
}

#[test]
fn prompts_split_with_huge_ratios_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("discs");
    disc_dataset(&ds, 4);
    for split in ["4294967295/2/0", "4294967295/4294967295/2"] {
        let (ok, code, _, err) = vlsm(&["prompts", s(&ds), "--class", "polyp", "--split", split]);
        assert!(ok, "{split}: exit {code:?}: {err}");
    }
    let err = one_line_error(&vlsm(&["prompts", s(&ds), "--class", "polyp", "--split", "99999999999/1/1"]));
    assert!(err.contains("--split") && err.contains("larger than"), "{err}");
    let err = one_line_error(&vlsm(&["prompts", s(&ds), "--class", "polyp", "--split", "0/0/0"]));
    assert!(err.contains("--split") && err.contains("zero"), "{err}");
}

#[test]
fn prompts_replaces_all_three_splits_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("discs");
    disc_dataset(&ds, 6);
    std::fs::create_dir_all(ds.join("anns/val.json")).unwrap();
    std::fs::write(ds.join("anns/train.json"), "old train").unwrap();
    std::fs::write(ds.join("anns/test.json"), "old test").unwrap();
    let err = one_line_error(&vlsm(&["prompts", s(&ds), "--class", "polyp"]));
    assert!(err.contains("val.json"), "{err}");
    assert_eq!(std::fs::read_to_string(ds.join("anns/train.json")).unwrap(), "old train");
    assert_eq!(std::fs::read_to_string(ds.join("anns/test.json")).unwrap(), "old test");
    let left: Vec<_> = files_under(&ds.join("anns"));
    assert_eq!(left.len(), 2, "temporary files left: {left:?}");
}

/// A PNG of `w x h` whose header is valid and whose pixel data is missing.
fn png_header_only(path: &Path, w: u32, h: u32) {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(13u32.to_be_bytes());
    f.extend(&ihdr);
    f.extend(crc32(&ihdr).to_be_bytes());
    for (kind, data) in [(&b"IDAT"[..], &[0x78u8, 0x9c, 0x03, 0x00][..]), (&b"IEND"[..], &[][..])] {
        let mut c = kind.to_vec();
        c.extend(data);
        f.extend((data.len() as u32).to_be_bytes());
        f.extend(&c);
        f.extend(crc32(&c).to_be_bytes());
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn every_command_has_the_same_pixel_limit() {
    assert_eq!(imgproc::MAX_PIXELS as u64, vlsm::io::MAX_PIXELS);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.png");
    png_header_only(&big, 10001, 10000);
    let out = tmp.path().join("out");
    let err = one_line_error(&vlsm(&["imgproc", "gray", s(&big), s(&out.join("g.png"))]));
    assert!(err.contains("limit"), "{err}");
    let err = one_line_error(&vlsm(&["classify", s(&big), "--model", s(&fx("clip/tiny")), "--labels", "a,b"]));
    assert!(err.contains("limit"), "{err}");
    let err = one_line_error(&vlsm(&["segment", s(&big), "-p", "x", "--model", s(&tiny_model()), "--out", s(&out)]));
    assert!(err.contains("limit"), "{err}");
    assert!(files_under(&out).is_empty());
}

fn small_png(dir: &Path) -> PathBuf {
    let p = dir.join("small.png");
    image::RgbImage::from_fn(384, 288, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8]))
        .save(&p)
        .unwrap();
    p
}

#[test]
fn imgproc_refuses_huge_outputs_and_kernels_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_png(tmp.path());
    let out = tmp.path().join("o.png");
    let cases: &[(&[&str], &str)] = &[
        (&["resize", "--width", "100000", "--height", "100000"], "limit"),
        (&["gaussian", "--ksize", "0", "--sigma", "1e12"], "limit"),
        (&["blur", "--ksize", "10001"], "limit"),
        (&["median", "--ksize", "10001"], "limit"),
        (&["erode", "--shape", "ellipse", "--ksize", "10001"], "limit"),
        (&["adaptive", "--block", "10001"], "limit"),
        (&["sobel", "--ksize", "2"], "odd"),
    ];
    for (args, want) in cases {
        let mut a = vec!["imgproc", args[0], s(&img), s(&out)];
        a.extend(&args[1..]);
        let t = Instant::now();
        let err = one_line_error(&vlsm(&a));
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(t.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t.elapsed());
        assert!(!out.exists());
    }
    // sobel's message no longer suggests that only 1, 3, 5 or 7 are allowed.
    let err = one_line_error(&vlsm(&["imgproc", "sobel", s(&img), s(&out), "--ksize", "2"]));
    assert!(!err.contains("1, 3, 5 or 7"), "{err}");
    // The largest kernel allowed still works.
    let (ok, _, _, err) = vlsm(&["imgproc", "blur", s(&img), s(&out), "--ksize", "255"]);
    assert!(ok, "{err}");
}

#[test]
fn imgproc_paths_that_are_not_files() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_png(tmp.path());
    let err = one_line_error(&vlsm(&["imgproc", "gray", s(tmp.path()), s(&tmp.path().join("o.png"))]));
    assert!(err.contains("is a directory"), "{err}");
    let err = one_line_error(&vlsm(&["imgproc", "gray", s(&img), s(tmp.path())]));
    assert!(err.contains("is a directory"), "{err}");
    let err = one_line_error(&vlsm(&["imgproc", "gray", s(&img), s(&tmp.path().join("noext"))]));
    assert!(err.contains("no file extension") && !err.contains("recognized"), "{err}");
    let err = one_line_error(&vlsm(&["imgproc", "gray", s(&img), s(&tmp.path().join("o.xyz"))]));
    assert!(err.contains(".xyz"), "{err}");
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn threads_are_capped_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let img = small_png(tmp.path());
    let out = tmp.path().join("g.png");
    let (ok, _, _, err) = vlsm(&["--threads", "100000", "imgproc", "gray", s(&img), s(&out)]);
    assert!(ok, "{err}");
    assert!(err.contains("--threads 100000") && err.contains("using"), "{err}");
    assert!(out.is_file());
}

#[cfg(target_os = "linux")]
#[test]
fn segment_output_names_never_collide() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStringExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = fx("clipseg/images/kvasir_75x50.png");
    let a = tmp.path().join(OsString::from_vec(b"\xff.png".to_vec()));
    let b = tmp.path().join(OsString::from_vec(b"\xfe.png".to_vec()));
    let plain = tmp.path().join("image.png");
    for p in [&a, &b, &plain] {
        std::fs::copy(&src, p).unwrap();
    }
    let out = tmp.path().join("out");
    let model = tiny_model();
    fn seg_args<'a>(imgs: &[&'a PathBuf], model: &'a Path, out: &'a Path) -> Vec<&'a OsStr> {
        let mut v: Vec<&OsStr> = vec![OsStr::new("segment")];
        v.extend(imgs.iter().map(|p| p.as_os_str()));
        v.extend([
            OsStr::new("-p"),
            OsStr::new("polyp"),
            OsStr::new("--model"),
            model.as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
        ]);
        v
    }
    let r = vlsm_os(&seg_args(&[&a, &b], &model, &out));
    let err = one_line_error(&r);
    assert!(err.contains("collide"), "{err}");
    assert!(files_under(&out).is_empty());
    // A non-UTF-8 name and `image.png` get different outputs.
    let (ok, _, _, err) = vlsm_os(&seg_args(&[&a, &plain], &model, &out));
    assert!(ok, "{err}");
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["image.mask.png", "image.overlay.png", "\u{fffd}.mask.png", "\u{fffd}.overlay.png"]);
}

#[test]
fn segment_checks_the_logits_path_before_writing_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fx("clipseg/images/kvasir_75x50.png");
    let out = tmp.path().join("out");
    let err = one_line_error(&vlsm(&[
        "segment",
        s(&img),
        "-p",
        "polyp",
        "--model",
        s(&tiny_model()),
        "--out",
        s(&out),
        "--logits",
        s(tmp.path()),
    ]));
    assert!(err.contains("--logits"), "{err}");
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn segment_removes_temp_files_of_dead_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let img = fx("clipseg/images/kvasir_75x50.png");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // PIDs never exceed 2^22 on Linux, so this one is dead.
    let stale = out.join(".kvasir_75x50.mask.png.tmp.999999999.0");
    let live = out.join(format!(".other.png.tmp.{}.0", std::process::id()));
    let unrelated = out.join("notes.txt");
    for p in [&stale, &live, &unrelated] {
        std::fs::write(p, b"x").unwrap();
    }
    let (ok, _, _, err) = vlsm(&["segment", s(&img), "-p", "polyp", "--model", s(&tiny_model()), "--out", s(&out)]);
    assert!(ok, "{err}");
    assert!(!stale.exists() && live.exists() && unrelated.exists());
    assert!(out.join("kvasir_75x50.mask.png").is_file());
}
