//! JPEG pixels equal PIL's (libjpeg-turbo at its defaults), value for value
//! (tools/make_jpeg_fixtures.py): baseline and progressive 4:2:0 / 4:2:2 / 4:4:4 / 4:4:0 / 4:1:1,
//! greyscale, restart markers, CMYK and YCCK; the example JPEGs and the shared test splits by
//! checksum; corrupt JPEGs give one-line errors.

use crate::support::shared_data;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use vlsm::io::{image_dimensions, read_mask, read_raster, read_rgb};

fn fx(rel: &str) -> PathBuf {
    crate::support::fx(rel)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Count of differing values and the largest difference.
fn diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x != y).fold((0, 0), |(n, m), (x, y)| (n + 1, m.max(x.abs_diff(*y))))
}

#[test]
fn every_layout_decodes_as_pil_does() {
    let c = json(&fx("jpeg/cases.json"));
    let cases = c["cases"].as_array().unwrap();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["file"].as_str().unwrap();
        let mode = case["pil_mode"].as_str().unwrap();
        let p = fx(&format!("jpeg/{name}"));
        let want = image::open(fx(&format!("jpeg/{}", name.replace(".jpg", ".png")))).unwrap();
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        assert_eq!(image_dimensions(&p).unwrap(), (w, h), "{name}");
        let got = read_raster(&p).unwrap();
        match (mode, &got, &want) {
            ("L", DynamicImage::ImageLuma8(g), DynamicImage::ImageLuma8(r)) => {
                assert_eq!(diff(g.as_raw(), r.as_raw()), (0, 0), "{name}: L values differ from PIL's");
            }
            ("RGB" | "CMYK", DynamicImage::ImageRgb8(g), DynamicImage::ImageRgb8(r)) => {
                assert_eq!(diff(g.as_raw(), r.as_raw()), (0, 0), "{name}: RGB values differ from PIL's");
            }
            _ => panic!("{name}: PIL mode {mode}, decoded {:?}, reference {:?}", got.color(), want.color()),
        }
        // read_rgb is PIL's convert("RGB") (grey replicated).
        assert_eq!(read_rgb(&p).unwrap().as_raw(), want.to_rgb8().as_raw(), "{name}");
        seen.insert((mode.to_string(), case["progressive"].as_bool().unwrap()));
    }
    // Each mode both baseline and progressive.
    for mode in ["L", "RGB", "CMYK"] {
        for prog in [false, true] {
            assert!(seen.contains(&(mode.to_string(), prog)), "no {mode} progressive={prog} case");
        }
    }
}

#[test]
fn jpeg_masks_threshold_pil_luma() {
    // A mask read from a colour JPEG: PIL's convert("L") of PIL's pixels, then > 127.
    let p = fx("jpeg/baseline_420_61x53.jpg");
    let want = image::open(fx("jpeg/baseline_420_61x53.png")).unwrap().to_rgb8();
    let m = read_mask(&p).unwrap();
    for (px, v) in want.pixels().zip(m.as_raw()) {
        let [r, g, b] = px.0.map(|c| c as u32);
        let l = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
        assert_eq!(*v, if l > 127 { 255 } else { 0 });
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

#[test]
fn example_and_dataset_jpegs_equal_pil_by_checksum() {
    let c = json(&fx("jpeg/checksums.json"));
    let sums = c["crc32"].as_object().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = shared_data();
    let (mut checked, mut bad) = (0, vec![]);
    for (file, want) in sums {
        let p = match file.strip_prefix("examples/") {
            Some(_) => root.join(file),
            None => match &shared {
                Some(s) => s.join(file),
                None => continue,
            },
        };
        let got = crc32(read_rgb(&p).unwrap().as_raw());
        checked += 1;
        if got as u64 != want.as_u64().unwrap() {
            bad.push(file.clone());
        }
    }
    assert!(bad.is_empty(), "{} of {checked} JPEGs differ from PIL: {bad:?}", bad.len());
    assert!(checked >= 2);
    if shared.is_some() {
        assert_eq!(checked, sums.len());
    }
}

#[test]
fn corrupt_jpegs_are_one_line_errors() {
    let bytes = std::fs::read(fx("jpeg/baseline_420_61x53.jpg")).unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![];
    let mut b = bytes.clone();
    b[sof + 9] = 7; // seven components
    cases.push(("components.jpg", b));
    let mut b = bytes.clone();
    b[sof + 4] = 12; // 12-bit precision
    cases.push(("precision.jpg", b));
    let mut b = bytes.clone();
    b[sof + 5..sof + 9].fill(0); // zero size
    cases.push(("zero.jpg", b));
    let mut b = bytes.clone();
    b[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // 65535 x 65535
    cases.push(("huge.jpg", b));
    cases.push(("soi_eoi.jpg", vec![0xFF, 0xD8, 0xFF, 0xD9]));
    let mut b = bytes.clone();
    let dqt = b.windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
    b[dqt + 2..dqt + 4].copy_from_slice(&[0, 1]); // marker length 1
    cases.push(("length.jpg", b));
    for (name, b) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, b).unwrap();
        for e in [read_rgb(&p).map(|_| ()), read_mask(&p).map(|_| ())] {
            let e = format!("{:#}", e.expect_err(name));
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(e.contains(name), "{e}");
        }
    }
    // Damaged entropy-coded data decodes (libjpeg warns and carries on, as PIL and cv2 do).
    let mut b = bytes.clone();
    let sos = b.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    for v in &mut b[sos + 20..sos + 60] {
        // No new 0xFF bytes: markers inside the scan are another test.
        *v = if *v == 0xFF || *v ^ 0x5A == 0xFF { 0x00 } else { *v ^ 0x5A };
    }
    let p = d.path().join("damaged.jpg");
    std::fs::write(&p, b).unwrap();
    assert_eq!(read_rgb(&p).unwrap().dimensions(), (61, 53));
}
