//! Decompression bombs (#17 item 3): a small upload whose header claims a huge image is
//! answered 413 from its header, before its data is inflated. `vlsm::io::inflated_bytes`
//! counts every byte the .nii.gz and deflated-DICOM readers inflate in this process, so the
//! tests see how far a bomb got (other tests inflate at most a few KiB meanwhile).

use std::time::{Duration, Instant};

use vlsm::io::inflated_bytes;
use vlsm_serve::Options;

use crate::support::{post_form, Form, Resp, Server};

#[path = "../../../vlsm/tests/it/support/bombs.rs"]
mod make;

/// Slack for the inflation other tests do at the same time (a test fixture is a few KiB).
const SLACK: u64 = 4 << 20;

fn opts() -> Options {
    Options { model: Some(crate::support::tiny_model()), ..Options::default() }
}

async fn upload(s: &Server, name: &str, bytes: &[u8]) -> Resp {
    post_form(s.addr, "/api/segment", Form::new().file("image", name, bytes).text("prompt", "organ")).await
}

fn assert_413(r: &Resp, what: &str) {
    assert_eq!(r.status, 413, "{what}: {}", String::from_utf8_lossy(&r.body));
    assert!(r.error().contains("more than this server's limit"), "{what}: {}", r.error());
}

/// The bomb: about 2 MB of .nii.gz whose header says 10000 x 10000 x 21 (2.1 GB of
/// voxels, all present); it was inflated (2.65 GB RSS) before the 413. Three at once took 7.4 GB.
#[tokio::test]
async fn nifti_gz_bomb_is_refused_before_inflating() {
    let bomb = make::nifti_gz_bomb(&[10000, 10000, 21], 2100);
    assert!(bomb.len() < 4_000_000, "{} bytes", bomb.len());
    let s = Server::start(opts(), Duration::ZERO).await;
    let (before, t) = (inflated_bytes(), Instant::now());
    let (a, b, c) =
        tokio::join!(upload(&s, "bomb.nii.gz", &bomb), upload(&s, "b2.nii.gz", &bomb), upload(&s, "b3.nii.gz", &bomb));
    for r in [&a, &b, &c] {
        assert_413(r, "bomb.nii.gz");
        assert!(r.error().contains("10000x10000"), "{}", r.error());
    }
    // The headers: 3 x 348 bytes; inflating one slice alone would be 100 MB.
    let inflated = inflated_bytes() - before;
    assert!(inflated < SLACK, "the bombs inflated {inflated} bytes");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// A deflated DICOM claiming 6000 x 6000 16-bit pixels (72 MB of zeros in a 70 KB file): the
/// attributes before the pixel data are enough to refuse it; it used to be inflated whole
/// (2.27 GB for the bomb) and answered 422.
#[tokio::test]
async fn deflated_dicom_bomb_is_refused_before_inflating() {
    let bomb = make::DeflatedDicom::new(6000, 6000, 16).bytes();
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let s = Server::start(opts(), Duration::ZERO).await;
    let before = inflated_bytes();
    let r = upload(&s, "bomb.dcm", &bomb).await;
    assert_413(&r, "bomb.dcm");
    assert!(r.error().contains("6000x6000"), "{}", r.error());
    let inflated = inflated_bytes() - before;
    assert!(inflated < SLACK, "the bomb inflated {inflated} bytes");
    // Past the library's own limit too (the header alone says so), and a lying Pixel Data
    // length over a small image inflates only what the image needs.
    let r = upload(
        &s,
        "huge.dcm",
        &make::DeflatedDicom { pixel_bytes: Some(1 << 20), ..make::DeflatedDicom::new(60000, 60000, 16) }.bytes(),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.error());
    assert!(r.error().contains("60000x60000") && r.error().contains("more than the limit"), "{}", r.error());
    let liar = make::DeflatedDicom {
        pixel_len: Some(0xFFFF_FFF0),
        pixel_bytes: Some(32 << 20),
        ..make::DeflatedDicom::new(40, 30, 16)
    };
    let before = inflated_bytes();
    let r = upload(&s, "liar.dcm", &liar.bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let inflated = inflated_bytes() - before;
    assert!(inflated < SLACK, "inflated {inflated} bytes for a 40x30 image");
}
