//! Volumes in /api/segment (#22): NIfTI and zipped DICOM series in, masks in the source's
//! geometry out (`return=nifti`) or per-slice RLE (JSON); the limits and bad archives.

use std::path::Path;
use std::time::Duration;

use vlsm::io::{self, NiftiHeader, Volume, VoxelData, Windowing};
use vlsm::pipeline::Segmenter;
use vlsm::volume::{segment_volume, VolumeOptions};
use vlsm_serve::testkit::zip_of;
use vlsm_serve::Options;

use crate::support::{post_form, repo_root, tiny_model, Form, Resp, Server};

fn opts() -> Options {
    Options { model: Some(tiny_model()), ..Options::default() }
}

/// What `vlsm segment` computes for a volume (the same library call, the same options).
fn reference(vol: &Volume, prompt: &str, windowing: Windowing) -> Vec<u8> {
    let seg = Segmenter::load(&tiny_model()).unwrap();
    let cond = seg.text_conditional(&[prompt.to_string()]).unwrap();
    let o =
        VolumeOptions { axis: 2, windowing, batch: 4, threshold: seg.default_threshold(), probs: false, invert: false };
    segment_volume(&seg, vol, &cond, &o, || {}).unwrap().masks.remove(0)
}

/// Reads a returned .nii.gz.
fn read_nifti(bytes: &[u8]) -> Volume {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.nii.gz");
    std::fs::write(&p, bytes).unwrap();
    io::read_volume(&p, 1 << 28).unwrap()
}

fn assert_same_geometry(a: &NiftiHeader, b: &NiftiHeader) {
    assert_eq!(a.dim, b.dim);
    assert_eq!(a.pixdim[..4], b.pixdim[..4]);
    assert_eq!((a.qform_code, a.sform_code), (b.qform_code, b.sform_code));
    assert_eq!((a.quatern, a.qoffset), (b.quatern, b.qoffset));
    assert_eq!(a.srow, b.srow);
    assert_eq!(a.xyzt_units, b.xyzt_units);
    assert_eq!(a.affine(), b.affine());
}

fn u8_values(v: &Volume) -> Vec<u8> {
    match &v.data {
        VoxelData::Scalar(s) => s.iter().map(|&x| x as u8).collect(),
        VoxelData::Rgb(_) => panic!("a mask is scalar"),
    }
}

fn one_line_error(r: &Resp, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let e = r.error();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains(needle), "{needle:?} not in {e:?}");
}

#[tokio::test]
async fn nifti_volume_comes_back_in_its_geometry() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let src = repo_root().join("tests/fixtures/nifti/geom_oblique.nii.gz");
    let bytes = std::fs::read(&src).unwrap();
    let f = Form::new().file("image", "scan.nii.gz", &bytes).text("prompt", "organ").text("return", "nifti");
    let r = post_form(s.addr, "/api/segment", f).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert_eq!(r.header("x-vlsm-labels"), Some("[\"organ\"]"));
    let mask = read_nifti(&r.body);
    let vol = io::read_volume(&src, 1 << 28).unwrap();
    assert_same_geometry(&mask.header, &vol.header);
    assert_eq!(mask.header.datatype, 2, "uint8");
    let want = reference(&vol, "organ", Windowing::Auto);
    assert!(want.iter().any(|&v| v > 0) && want.contains(&0), "a trivial mask tests nothing");
    assert_eq!(u8_values(&mask), want);

    // The JSON answer: per-slice RLE of the same masks, and the slices as pictures.
    let f = Form::new().file("image", "scan.nii.gz", &bytes).text("prompt", "organ").text("volume", "1");
    let j = post_form(s.addr, "/api/segment", f.text("return_image", "1")).await.json();
    assert_eq!(j["volume"]["shape"], serde_json::json!(vol.dims));
    assert_eq!(j["volume"]["source"], "nifti");
    let (w, h, n) = vol.slice_dims(2);
    assert_eq!((j["width"].as_u64(), j["height"].as_u64()), (Some(w as u64), Some(h as u64)));
    assert_eq!(j["slice_pngs"].as_array().unwrap().len(), n);
    let res = &j["results"][0];
    assert_eq!(res["voxels"].as_u64(), Some(want.iter().filter(|&&v| v > 0).count() as u64));
    for k in 0..n {
        let sl = io::take_slice(&want, vol.dims, 2, k, 1);
        let img = image::GrayImage::from_raw(w as u32, h as u32, sl).unwrap();
        assert_eq!(res["masks"][k], vlsm_serve::rle(&img), "slice {k}");
    }
}

/// An RGB volume (no window): each slice's mask equals the 2-D answer for that slice.
#[tokio::test]
async fn volume_slices_equal_the_2d_answers() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let bytes = std::fs::read(repo_root().join("tests/fixtures/nifti/stack/stack.nii.gz")).unwrap();
    let f = Form::new().file("image", "stack.nii.gz", &bytes).text("prompt", "a square").text("volume", "1");
    let j = post_form(s.addr, "/api/segment", f).await.json();
    let n = j["volume"]["slices"].as_u64().unwrap();
    assert_eq!(n, 3);
    for k in 0..n {
        let f =
            Form::new().file("image", "stack.nii.gz", &bytes).text("prompt", "a square").text("slice", &k.to_string());
        let two_d = post_form(s.addr, "/api/segment", f).await.json();
        assert_eq!(j["results"][0]["masks"][k as usize], two_d["results"][0]["rle"], "slice {k}");
    }
}

/// The files of a folder (recursively) as zip entries, deflated.
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                entries.push((format!("series/{name}"), std::fs::read(&p).unwrap(), true));
            }
        }
    }
    entries.sort();
    zip_of(&entries)
}

#[tokio::test]
async fn zipped_dicom_series_comes_back_in_its_geometry() {
    let s = Server::start(opts(), Duration::ZERO).await;
    let dir = repo_root().join("tests/fixtures/dicom/series/good");
    let z = zip_dir(&dir);
    let f = Form::new().file("image", "series.zip", &z).text("prompt", "organ").text("return", "nifti");
    let r = post_form(s.addr, "/api/segment", f).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let mask = read_nifti(&r.body);
    let mut series = io::read_dicom_series(&dir).unwrap();
    let header = NiftiHeader::for_grid(series.dims, series.spacing, series.affine_ras()).unwrap();
    assert_same_geometry(&mask.header, &header);
    let windowing = series.window.map_or(Windowing::Auto, Windowing::Fixed);
    let vol = Volume {
        header,
        dims: series.dims,
        data: VoxelData::Scalar(std::mem::take(&mut series.values)),
        notes: Vec::new(),
    };
    assert_eq!(u8_values(&mask), reference(&vol, "organ", windowing));
    // JSON: the series' notes name the zip entry, not a temporary path.
    let f = Form::new().file("image", "series.zip", &z).text("prompt", "organ");
    let j = post_form(s.addr, "/api/segment", f).await.json();
    assert_eq!(j["volume"]["source"], "dicom-series");
    assert_eq!(j["volume"]["shape"], serde_json::json!(series.dims));
    let notes = j["volume"]["notes"].to_string();
    assert!(notes.contains("series.zip:series/notes/report.dcm") && !notes.contains("/tmp"), "{notes}");
}

#[tokio::test]
async fn bad_volumes_get_one_line_4xx() {
    let small = Options { max_voxels: 2000, ..opts() };
    let s = Server::start(small, Duration::ZERO).await;
    let form =
        |name: &str, bytes: &[u8]| Form::new().file("image", name, bytes).text("prompt", "x").text("volume", "1");
    let fx = repo_root().join("tests/fixtures");
    // Too many voxels: 12x10x6 = 720 fits, anatomical.nii does not.
    let ok = std::fs::read(fx.join("nifti/geom_oblique.nii.gz")).unwrap();
    assert_eq!(post_form(s.addr, "/api/segment", form("a.nii.gz", &ok)).await.status, 200);
    let big = std::fs::read(fx.join("nifti/nibabel/anatomical.nii")).unwrap();
    let r = post_form(s.addr, "/api/segment", form("anat.nii", &big)).await;
    one_line_error(&r, 413, "more than this server's limit of 2000 (--max-voxels)");
    assert!(r.error().contains("anat.nii"), "{}", r.error());
    // A truncated NIfTI, a PNG, not a zip, a cut zip.
    let cut = std::fs::read(fx.join("bad_inputs/nifti_truncated.nii")).unwrap();
    one_line_error(&post_form(s.addr, "/api/segment", form("cut.nii", &cut)).await, 422, "cut.nii");
    let png = crate::support::png_bytes(8, 8, 1);
    one_line_error(&post_form(s.addr, "/api/segment", form("a.png", &png)).await, 422, "not a volume");
    one_line_error(&post_form(s.addr, "/api/segment", form("s.zip", b"PK\x03\x04garbage")).await, 422, "zip");
    let z = zip_dir(&fx.join("dicom/series/good"));
    one_line_error(&post_form(s.addr, "/api/segment", form("s.zip", &z[..z.len() / 2])).await, 422, "s.zip");
    // A zip of two series, a zip of text.
    let two = zip_dir(&fx.join("dicom/series/two_series"));
    one_line_error(&post_form(s.addr, "/api/segment", form("two.zip", &two)).await, 422, "series");
    let txt = zip_of(&[("a.txt".into(), b"hello".to_vec(), false)]);
    one_line_error(&post_form(s.addr, "/api/segment", form("t.zip", &txt)).await, 422, "no DICOM images");
    let r = post_form(s.addr, "/api/segment", form("a.nii.gz", &ok).text("return", "png")).await;
    one_line_error(&r, 400, "return must be json or nifti");
}

#[tokio::test]
async fn zip_bombs_are_refused_before_inflating() {
    let small = Options { max_voxels: 1000, ..opts() };
    let limit = vlsm_serve::max_zip_bytes(1000);
    let s = Server::start(small, Duration::ZERO).await;
    // 80 MB of zeros in about 80 KB, declared honestly: refused from the central directory.
    let zeros = vec![0u8; 80 << 20];
    assert!(zeros.len() as u64 > limit);
    let bomb = zip_of(&[("a.dcm".into(), zeros, true)]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let before = vlsm_serve::zip_inflated_bytes();
    let r = post_form(s.addr, "/api/segment", Form::new().file("image", "b.zip", &bomb).text("prompt", "x")).await;
    one_line_error(&r, 413, "more than the limit");
    // The same entry declared as 1000 bytes: inflating stops one byte past it.
    let mut liar = bomb.clone();
    let cd = liar.windows(4).rposition(|w| w == 0x0201_4b50u32.to_le_bytes()).unwrap();
    liar[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
    let lh = 0;
    liar[lh + 22..lh + 26].copy_from_slice(&1000u32.to_le_bytes());
    let r = post_form(s.addr, "/api/segment", Form::new().file("image", "l.zip", &liar).text("prompt", "x")).await;
    one_line_error(&r, 413, "more than its declared 1000 bytes");
    // Other tests inflate small fixtures meanwhile; the bombs would be 160 MB.
    let inflated = vlsm_serve::zip_inflated_bytes() - before;
    assert!(inflated < 4 << 20, "inflated {inflated} bytes");
    // Too many entries.
    let many: Vec<(String, Vec<u8>, bool)> =
        (0..vlsm_serve::MAX_ZIP_ENTRIES + 1).map(|i| (format!("{i}"), Vec::new(), false)).collect();
    let r =
        post_form(s.addr, "/api/segment", Form::new().file("image", "m.zip", &zip_of(&many)).text("prompt", "x")).await;
    one_line_error(&r, 413, "entries, more than the limit of 10000");
}
