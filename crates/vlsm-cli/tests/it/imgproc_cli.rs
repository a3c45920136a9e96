//! `vlsm imgproc` on a colour image against cv2 (tests/fixtures/imgproc/cli, written by
//! tools/imgproc_fixtures.py): the ops OpenCV defines per channel run per channel.
use crate::support::{fx, vlsm};

fn rgb(path: &std::path::Path) -> image::RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

#[test]
fn imgproc_colour_ops_work_per_channel_as_cv2() {
    let dir = fx("imgproc/cli");
    let cases: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 10);
    let input = dir.join("in.png");
    let src = rgb(&input);
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (op, args) in &cases {
        let out = tmp.path().join(format!("{op}.png"));
        let mut a = vec!["imgproc", op.as_str(), input.to_str().unwrap(), out.to_str().unwrap()];
        a.extend(args.as_array().unwrap().iter().map(|v| v.as_str().unwrap()));
        let (ok, _, err) = vlsm(&a);
        assert!(ok, "vlsm {a:?}: {err}");
        let got = image::open(&out).unwrap();
        // Colour in, colour out (a gray result would mean the channels were merged first).
        assert_eq!(got.color(), image::ColorType::Rgb8, "{op}");
        let (got, want) = (got.to_rgb8(), rgb(&dir.join(format!("{op}.png"))));
        assert_eq!(got.dimensions(), want.dimensions(), "{op}");
        let diff = got.as_raw().iter().zip(want.as_raw()).filter(|(g, w)| g != w).count();
        if diff > 0 {
            failures.push(format!("{op}: {diff} of {} values differ from cv2", want.as_raw().len()));
        }
        // The op changed the image and did so differently per channel.
        assert_ne!(got.as_raw(), src.as_raw(), "{op} left the image unchanged");
        assert!(got.pixels().any(|p| p[0] != p[1] || p[1] != p[2]), "{op}: channels all equal");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn imgproc_help_says_which_ops_are_gray_only() {
    let (ok, out, err) = vlsm(&["imgproc", "--help"]);
    assert!(ok, "{err}");
    for (op, words) in [
        ("adaptive", "Gray only"),
        ("harris", "Gray only"),
        ("sift", "Gray only"),
        ("canny", "Gray only"),
        ("erode", "Per channel"),
        ("gradient", "Per channel"),
    ] {
        // clap lists the values as "- op: help" (first line of a wrapped help)
        let line = out
            .lines()
            .map(|l| l.trim_start().trim_start_matches("- "))
            .find(|l| l.starts_with(&format!("{op}:")))
            .unwrap_or_else(|| panic!("{op} in {out}"));
        assert!(line.contains(words), "{op}: {line}");
    }
}
