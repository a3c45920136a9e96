//! Hostile files at the readers every command shares (#17): truncated JPEGs, devices, FIFOs and
//! directories fail with one line naming the file, and fast.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vlsm::io::{read_image_any, read_raster, read_rgb, ReadOptions};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kvasir_cju2xjz2ju8pe0993ysv9wg17.jpg")
}

fn one_line(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    let e = format!("{:#}", r.unwrap_err());
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

#[test]
fn truncated_jpegs_are_refused() {
    let bytes = std::fs::read(example()).unwrap();
    let d = tempfile::tempdir().unwrap();
    for pct in [10, 50, 99] {
        let p = d.path().join(format!("cut{pct}.jpg"));
        std::fs::write(&p, &bytes[..bytes.len() * pct / 100]).unwrap();
        let e = one_line(read_rgb(&p));
        assert!(e.contains(&format!("cut{pct}.jpg")) && e.contains("truncated JPEG"), "{e}");
        assert!(read_raster(&p).is_err() && read_image_any(&p, &ReadOptions::default()).is_err());
    }
    // Whole, and whole with bytes after the end-of-image marker (some cameras append data).
    assert!(read_rgb(&example()).is_ok());
    let p = d.path().join("trailing.jpg");
    std::fs::write(&p, [bytes.as_slice(), &[0u8; 64]].concat()).unwrap();
    assert_eq!(read_rgb(&p).unwrap(), read_rgb(&example()).unwrap());
    // A progressive JPEG and a greyscale one written by the image crate are complete too.
    let img = read_rgb(&example()).unwrap();
    let gray = image::DynamicImage::ImageRgb8(img).into_luma8();
    let p = d.path().join("gray.jpg");
    gray.save(&p).unwrap();
    assert!(read_raster(&p).is_ok());
}

#[cfg(unix)]
#[test]
fn devices_fifos_and_directories_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let t = Instant::now();
    for (p, want) in [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (d.path().to_path_buf(), "is a directory"),
    ] {
        let e = one_line(read_rgb(&p));
        assert!(e.contains(&p.display().to_string()) && e.contains(want), "{e}");
        let e = one_line(vlsm::io::read_mask(&p));
        assert!(e.contains(want), "{e}");
        let e = one_line(vlsm::io::image_dimensions(&p));
        assert!(e.contains(want), "{e}");
    }
    // A FIFO would block and /dev/zero would never end: neither is opened.
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// A BMP of width 0 was "too large" (#17 item 19).
#[test]
fn a_zero_width_bmp_says_so() {
    let mut bmp = b"BM".to_vec();
    for v in [54u32, 0, 54, 40] {
        bmp.extend_from_slice(&v.to_le_bytes());
    }
    bmp.extend_from_slice(&0i32.to_le_bytes()); // width
    bmp.extend_from_slice(&4i32.to_le_bytes()); // height
    bmp.extend_from_slice(&[1, 0, 24, 0]);
    bmp.extend_from_slice(&[0; 24]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("w0.bmp");
    std::fs::write(&p, &bmp).unwrap();
    for e in [one_line(read_rgb(&p)), one_line(vlsm::io::image_dimensions(&p))] {
        assert!(e.contains("w0.bmp") && e.contains("zero size (0x4)"), "{e}");
    }
}

#[test]
fn thread_counts_are_capped() {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    assert_eq!(vlsm::threads::cap(100_000, "threads"), vlsm::threads::MAX_THREADS_PER_CORE * cores);
    assert_eq!(vlsm::threads::cap(1, "threads"), 1);
}

mod deflated_dicom {
    use super::one_line;
    use crate::support::bombs::DeflatedDicom;
    use vlsm::io::{image_dimensions, inflated_bytes, read_image_any, ReadOptions};

    fn write(d: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn a_small_deflated_dicom_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "ok.dcm", &DeflatedDicom::new(3, 5, 16).bytes());
        assert_eq!(read_image_any(&p, &ReadOptions::default()).unwrap().dimensions(), (5, 3));
        assert_eq!(image_dimensions(&p).unwrap(), (5, 3));
    }

    /// 60000 x 60000 pixels claimed by a 300 KB file: refused from the attributes, as "too
    /// large", before the pixel data is inflated (the old reader inflated 2 GiB first).
    #[test]
    fn a_bomb_is_sized_before_inflating() {
        let d = tempfile::tempdir().unwrap();
        let bomb = DeflatedDicom { pixel_bytes: Some(64 << 20), ..DeflatedDicom::new(60000, 60000, 16) };
        let bytes = bomb.bytes();
        assert!(bytes.len() < 1_000_000, "{}", bytes.len());
        let p = write(&d, "bomb.dcm", &bytes);
        let before = inflated_bytes();
        for e in [one_line(read_image_any(&p, &ReadOptions::default())), one_line(image_dimensions(&p))] {
            assert!(e.contains("bomb.dcm") && e.contains("60000x60000") && e.contains("more than the limit"), "{e}");
        }
        // Other tests inflate at the same time; they inflate kilobytes, the bomb 64 MiB.
        let inflated = inflated_bytes() - before;
        assert!(inflated < 8 << 20, "inflated {inflated} bytes");
    }

    /// Pixel Data whose length says 4 GiB over 64 MiB of zeros, for a 5x3 image: only the 30
    /// bytes the attributes need are inflated.
    #[test]
    fn inflation_stops_at_what_the_attributes_need() {
        let d = tempfile::tempdir().unwrap();
        let f =
            DeflatedDicom { pixel_len: Some(0xFFFF_FFF0), pixel_bytes: Some(64 << 20), ..DeflatedDicom::new(3, 5, 16) };
        let p = write(&d, "long.dcm", &f.bytes());
        let before = inflated_bytes();
        assert_eq!(read_image_any(&p, &ReadOptions::default()).unwrap().dimensions(), (5, 3));
        let inflated = inflated_bytes() - before;
        assert!(inflated < 8 << 20, "inflated {inflated} bytes");
    }

    #[test]
    fn a_header_bomb_stops_at_the_header_limit() {
        let d = tempfile::tempdir().unwrap();
        let f = DeflatedDicom { private_bytes: Some(100 << 20), ..DeflatedDicom::new(3, 5, 16) };
        let p = write(&d, "hdr.dcm", &f.bytes());
        let e = one_line(image_dimensions(&p));
        assert!(e.contains("hdr.dcm") && e.contains("header") && e.contains("more than the limit"), "{e}");
    }

    #[test]
    fn a_cut_stream_says_it_ends_early() {
        let d = tempfile::tempdir().unwrap();
        let whole = DeflatedDicom::new(64, 64, 16);
        let n = whole.bytes().len() - 132 - 60; // the deflated part, roughly
        for (cut, name) in [(20, "cut_header.dcm"), (n / 2, "cut_pixels.dcm")] {
            let f = DeflatedDicom { cut_stream_at: Some(cut), ..whole.clone() };
            let p = write(&d, name, &f.bytes());
            let e = one_line(read_image_any(&p, &ReadOptions::default()));
            assert!(e.contains(name) && e.contains("deflated data set ends early"), "{e}");
        }
        // A multi-frame file is refused from its attributes too.
        let f = DeflatedDicom { frames: Some("3"), ..whole };
        let p = write(&d, "frames.dcm", &f.bytes());
        assert!(one_line(read_image_any(&p, &ReadOptions::default())).contains("multi-frame"));
    }
}
