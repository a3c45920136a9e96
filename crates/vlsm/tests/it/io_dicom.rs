//! DICOM transfer syntaxes against pydicom's decoded arrays (tests/fixtures/dicom/pydicom_corpus.json,
//! written by tools/dicom_corpus_summary.py), series reading and bad input.

use std::path::Path;

use serde_json::Value;
use vlsm::io::{read_dicom_pixels, DicomPixels};

/// Largest difference allowed on lossy syntaxes (decoders differ in IDCT rounding and
/// chroma upsampling), per sample and on the mean.
const LOSSY_SAMPLE_TOL: i64 = 12;
const LOSSY_MEAN_TOL: f64 = 1.0;

fn corpus() -> Value {
    corpus_at(&crate::support::fx("dicom/pydicom_corpus.json"))
}

fn corpus_at(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Compares vlsm's decode with pydicom's summary; Err says how they differ, Ok notes how a
/// lossy file compares.
fn compare(px: &DicomPixels, e: &Value) -> Result<String, String> {
    let mut shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    // pydicom drops axes of length 1 (frames, samples).
    let mut ours = vec![px.frames, px.rows, px.cols, px.samples];
    ours.retain(|&d| d != 1);
    shape.retain(|&d| d != 1);
    if ours != shape {
        return Err(format!("shape {ours:?}, pydicom {shape:?}"));
    }
    let v = &px.values;
    let idx: Vec<usize> = e["sample_index"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
    let sample: Vec<i64> = e["sample"].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect();
    let sum: i128 = v.iter().map(|&x| x as i128).sum();
    let wsum: i128 = v.iter().enumerate().map(|(i, &x)| x as i128 * ((i % 1009) as i128 + 1)).sum();
    let (psum, pwsum) = (e["sum"].as_i64().unwrap() as i128, e["wsum"].as_i64().unwrap() as i128);
    if e["lossy"].as_bool().unwrap() {
        if sum == psum && wsum == pwsum {
            return Ok(" (lossy, same values)".into());
        }
        let worst = idx.iter().zip(&sample).map(|(&i, &s)| (v[i] - s).abs()).max().unwrap_or(0);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let pmean = e["sum"].as_i64().unwrap() as f64 / v.len() as f64;
        if worst > LOSSY_SAMPLE_TOL || (mean - pmean).abs() > LOSSY_MEAN_TOL {
            return Err(format!("lossy: worst sample difference {worst}, mean {mean:.3} vs {pmean:.3}"));
        }
        return Ok(format!(" (lossy, within tolerance: worst sample difference {worst})"));
    }
    if sum != psum || wsum != pwsum {
        let first = idx.iter().zip(&sample).find(|(&i, &s)| v[i] != s);
        return Err(format!("values differ: sum {sum} vs {psum}, weighted {wsum} vs {pwsum}, first sample {first:?}"));
    }
    Ok(String::new())
}

/// Runs the comparison over the files found in `dir`; returns (decoded the same, differing,
/// refused by vlsm, refused by pydicom, not present) with one line per file.
fn run_corpus(dir: &Path, corpus: &Value) -> (Vec<String>, Vec<String>, Vec<String>, usize, usize) {
    let (mut same, mut differ, mut refused, mut pyd_refused, mut absent) = (vec![], vec![], vec![], 0, 0);
    for e in corpus["files"].as_array().unwrap() {
        let name = e["file"].as_str().unwrap();
        let path = dir.join(name);
        if !path.exists() {
            absent += 1;
            continue;
        }
        if e["pydicom"] != "decoded" {
            pyd_refused += 1;
            continue;
        }
        let ts = e["transfer_syntax"].as_str().unwrap();
        match read_dicom_pixels(&path) {
            Ok(px) => match compare(&px, e) {
                Ok(note) => same.push(format!("{name} [{ts}]{note}")),
                Err(m) => differ.push(format!("{name} [{ts}]: {m}")),
            },
            Err(err) => refused.push(format!("{name} [{ts}]: {err}")),
        }
    }
    (same, differ, refused, pyd_refused, absent)
}

#[test]
fn committed_corpus_files_match_pydicom() {
    let dir = crate::support::fx("dicom/corpus");
    let (same, differ, refused, _, absent) = run_corpus(&dir, &corpus());
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(refused.is_empty(), "{refused:#?}");
    assert_eq!(same.len(), 23, "{same:#?}");
    assert_eq!(absent + same.len(), corpus()["files"].as_array().unwrap().len());
    // Lossy files too give pydicom's values exactly: the same decoders (libjpeg-turbo, OpenJPEG,
    // CharLS's conventions) and pydicom's colour arithmetic.
    let approx: Vec<&String> = same.iter().filter(|s| s.contains("within tolerance")).collect();
    assert!(approx.is_empty(), "{approx:#?}");
    for want in [
        "[1.2.840.10008.1.2]",
        "[1.2.840.10008.1.2.1]",
        "[1.2.840.10008.1.2.2]",
        "[1.2.840.10008.1.2.1.99]",
        "[1.2.840.10008.1.2.5]",
        "[1.2.840.10008.1.2.4.50]",
        "[1.2.840.10008.1.2.4.80]",
        "[1.2.840.10008.1.2.4.81]",
        "[1.2.840.10008.1.2.4.90]",
        "[1.2.840.10008.1.2.4.91]",
    ] {
        assert!(same.iter().any(|s| s.contains(want)), "no file of {want} decoded: {same:#?}");
    }
}

/// A Part-10 file without its preamble, and a bare data set without meta information, decode
/// to the same values (pydicom reads both with force=True).
#[test]
fn no_preamble_and_no_meta() {
    let src = crate::support::fx("dicom/corpus/MR_small.dcm");
    let bytes = std::fs::read(&src).unwrap();
    let want = read_dicom_pixels(&src).unwrap().values;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("nopreamble.dcm");
    std::fs::write(&p, &bytes[128..]).unwrap();
    assert_eq!(read_dicom_pixels(&p).unwrap().values, want);
    // The meta group ends where group 0002 does (explicit VR LE: tag, VR, length).
    let mut at = 132;
    while u16::from_le_bytes([bytes[at], bytes[at + 1]]) == 2 {
        let long = matches!(&bytes[at + 4..at + 6], b"OB" | b"UN" | b"SQ" | b"UT");
        at += if long {
            12 + u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize
        } else {
            8 + u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize
        };
    }
    let p = d.path().join("nometa.dcm");
    std::fs::write(&p, &bytes[at..]).unwrap();
    let px = read_dicom_pixels(&p).unwrap();
    assert_eq!(px.values, want);
    assert_eq!(px.transfer_syntax, "1.2.840.10008.1.2.1");
    // Found by its bytes without a .dcm name, by the readers every command uses.
    for (name, b) in [("nopre", &bytes[128..]), ("nometa", &bytes[at..])] {
        let p = d.path().join(name);
        std::fs::write(&p, b).unwrap();
        let img = vlsm::io::read_image_any(&p, &Default::default()).unwrap();
        assert_eq!(img.dimensions(), (64, 64), "{name}");
    }
}

/// Broken files: one line naming the file.
#[test]
fn bad_dicom_is_one_line_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = {
        let rle = std::fs::read(crate::support::fx("dicom/corpus/MR_small_RLE.dcm")).unwrap();
        let jpg = std::fs::read(crate::support::fx("dicom/corpus/SC_rgb_small_odd_jpeg.dcm")).unwrap();
        let mr = std::fs::read(crate::support::fx("dicom/corpus/MR_small.dcm")).unwrap();
        vec![
            ("rle_cut.dcm", rle[..rle.len() - 500].to_vec(), "encapsulated pixel data ends early"),
            ("jpeg_cut.dcm", jpg[..jpg.len() - 300].to_vec(), "encapsulated pixel data ends early"),
            ("mr_cut.dcm", mr[..mr.len() - 3000].to_vec(), "truncated"),
            ("text.dcm", b"just some text, not DICOM at all".to_vec(), "not a DICOM file"),
        ]
    };
    for (name, bytes, want) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = match read_dicom_pixels(&p) {
            Ok(_) => panic!("{name} decoded"),
            Err(e) => format!("{e:#}"),
        };
        assert!(!e.contains('\n') && e.contains(name) && e.contains(want), "{e}");
    }
}

/// The whole corpus as installed with pydicom (dev run: set VLSM_PYDICOM_TEST_FILES to
/// pydicom/data/test_files); prints the table.
#[test]
#[ignore]
fn full_pydicom_corpus() {
    let dir = std::env::var("VLSM_PYDICOM_TEST_FILES").expect("set VLSM_PYDICOM_TEST_FILES");
    // VLSM_PYDICOM_CORPUS_JSON: a summary written with other decoders installed
    // (tools/dicom_corpus_summary.py --json PATH), instead of the committed one.
    let summary = match std::env::var_os("VLSM_PYDICOM_CORPUS_JSON") {
        Some(p) => corpus_at(Path::new(&p)),
        None => corpus(),
    };
    let (same, differ, refused, pyd, absent) = run_corpus(Path::new(&dir), &summary);
    println!("same values: {}", same.len());
    for s in &same {
        println!("  {s}");
    }
    println!("different values: {}", differ.len());
    for s in &differ {
        println!("  {s}");
    }
    println!("refused by vlsm: {}", refused.len());
    for s in &refused {
        println!("  {s}");
    }
    println!("refused by pydicom: {pyd}, absent: {absent}");
    assert!(differ.is_empty() && refused.is_empty(), "{} differ, {} refused", differ.len(), refused.len());
}

// ---- series (tests/fixtures/dicom/series, written by tools/make_dicom_series_fixtures.py) ----

fn series_fx(rel: &str) -> std::path::PathBuf {
    crate::support::fx("dicom/series").join(rel)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(series_fx("expected.json")).unwrap()).unwrap()
}

fn check_geometry(s: &vlsm::io::DicomSeries, e: &Value) {
    let dims: Vec<usize> = e["dims"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(s.dims.to_vec(), dims);
    for (a, b) in s.spacing.iter().zip(e["spacing"].as_array().unwrap()) {
        assert!((a - b.as_f64().unwrap()).abs() < 1e-5, "spacing {:?}", s.spacing);
    }
    let want = e["affine_lps"].as_array().unwrap();
    let got = s.affine_lps();
    for r in 0..4 {
        for c in 0..4 {
            let w = want[r][c].as_f64().unwrap();
            // Positions and orientations are written with 6 decimals.
            assert!((got[r][c] - w).abs() < 1e-4, "affine[{r}][{c}] = {} vs {w}: {got:?}", got[r][c]);
        }
    }
    let ras = s.affine_ras();
    assert_eq!((ras[0][3], ras[1][3], ras[2][3]), (-got[0][3], -got[1][3], got[2][3]));
    let values: Vec<f32> = e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(s.values, values);
}

#[test]
fn series_sorted_by_position_with_rescale_and_oblique_affine() {
    let e = expected();
    let s = vlsm::io::read_dicom_series(&series_fx("good")).unwrap();
    check_geometry(&s, &e);
    let sops: Vec<&str> = s.sources.iter().map(|x| x.sop_instance_uid.as_str()).collect();
    let want: Vec<&str> = e["sop_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(sops, want);
    let files: Vec<String> =
        s.sources.iter().map(|x| x.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let want: Vec<&str> = e["good_files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(files, want);
    assert!(s.sources.iter().all(|x| x.frame.is_none() && x.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"));
    assert_eq!(s.frame_of_reference_uid, "1.2.826.0.1.3680043.10.1187.3");
    assert_eq!(s.study_instance_uid, "1.2.826.0.1.3680043.10.1187.1");
    assert_eq!(s.window.map(|w| (w.center, w.width)), Some((40.0, 400.0)));
    assert!(s.patient_study.iter().any(|(t, v)| *t == 0x0010_0020 && v == "VLSM22"));
    // The structured report in notes/ is skipped, with a note naming it.
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(s.notes[0].contains("report.dcm"), "{:?}", s.notes);
}

#[test]
fn enhanced_multiframe_series() {
    let e = expected();
    let s = vlsm::io::read_dicom_series(&series_fx("enhanced")).unwrap();
    check_geometry(&s, &e);
    // Slice k comes from the frame written k-th in the shuffled order.
    let order: Vec<usize> =
        e["enhanced_frame_order"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let frames: Vec<usize> = s.sources.iter().map(|x| x.frame.unwrap()).collect();
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(order[*f], k, "{frames:?}");
    }
}

#[test]
fn inconsistent_series_name_the_files() {
    let cases = [
        ("missing", vec!["1 slice(s) missing", "IM0001_1", "IM0000_3"]),
        ("duplicate", vec!["two slices at one position", "IM0000_3", "IM_copy_of_3"]),
        ("mixed_size", vec!["mixed sizes", "IM0008_2"]),
        ("mixed_orient", vec!["mixed orientations", "IM0001_1"]),
        ("two_series", vec!["holds 2 series", "1.2.826.0.1.3680043.10.1187.5"]),
    ];
    for (dir, wants) in cases {
        let e = format!("{:#}", vlsm::io::read_dicom_series(&series_fx(dir)).unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        for w in wants {
            assert!(e.contains(w), "{dir}: {e}");
        }
    }
    // A truncated slice: the error names it.
    let d = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(series_fx("good")).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let cut = d.path().join("IM0004_4");
    let b = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &b[..b.len() - 20]).unwrap();
    let e = format!("{:#}", vlsm::io::read_dicom_series(d.path()).unwrap_err());
    assert!(e.contains("IM0004_4") && !e.contains('\n'), "{e}");
    // A folder with no DICOM image.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("readme.txt"), "not an image").unwrap();
    let e = format!("{:#}", vlsm::io::read_dicom_series(d.path()).unwrap_err());
    assert!(e.contains("no DICOM images"), "{e}");
}

// ---- DICOM SEG (golden: tests/fixtures/dicom/seg/good.seg.dcm, checked with pydicom and
// highdicom by tools/check_dicom_seg.py) ----

/// The masks of the golden: "bright" (value > 500) and "left columns" (i < 3).
fn seg_masks(s: &vlsm::io::DicomSeries) -> (Vec<String>, Vec<Vec<u8>>) {
    let bright = s.values.iter().map(|&v| u8::from(v > 500.0)).collect();
    let left = (0..s.values.len()).map(|i| u8::from(i % s.dims[0] < 3)).collect();
    (vec!["bright".into(), "left columns".into()], vec![bright, left])
}

#[test]
fn dicom_seg_matches_golden_and_reads_back() {
    let s = vlsm::io::read_dicom_series(&series_fx("good")).unwrap();
    let (labels, masks) = seg_masks(&s);
    let refs: Vec<&[u8]> = masks.iter().map(|m| m.as_slice()).collect();
    let opts = vlsm::io::SegOptions { uid_seed: Some(22), ..Default::default() };
    let bytes = vlsm::io::dicom_seg_bytes(&s, &labels, &refs, &opts).unwrap();
    let golden = crate::support::fx("dicom/seg/good.seg.dcm");
    if std::env::var_os("VLSM_WRITE_SEG_GOLDEN").is_some() {
        vlsm::io::write_dicom_seg(&golden, &s, &labels, &refs, &opts).unwrap();
    }
    assert_eq!(
        bytes,
        std::fs::read(&golden).unwrap(),
        "SEG differs from the golden (checked by tools/check_dicom_seg.py)"
    );
    // Read back with vlsm's own reader: frames are the masks, segment-major.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.seg.dcm");
    vlsm::io::write_dicom_seg(&p, &s, &labels, &refs, &opts).unwrap();
    let px = read_dicom_pixels(&p).unwrap();
    assert_eq!((px.frames, px.rows, px.cols), (2 * s.dims[2], s.dims[1], s.dims[0]));
    let want: Vec<i64> = masks.concat().into_iter().map(i64::from).collect();
    assert_eq!(px.values, want);
    // Bad input: a mask of the wrong size.
    let short = [&masks[0][..10]];
    assert!(vlsm::io::dicom_seg_bytes(&s, &labels[..1], &short, &opts).is_err());
}

/// The SEG of the enhanced (multi-frame) series references its frames by number; golden
/// checked by tools/check_dicom_seg.py like the single-frame one.
#[test]
fn dicom_seg_of_multiframe_source_matches_golden() {
    let s = vlsm::io::read_dicom_series(&series_fx("enhanced")).unwrap();
    let (labels, masks) = seg_masks(&s);
    let refs: Vec<&[u8]> = masks.iter().map(|m| m.as_slice()).collect();
    let opts = vlsm::io::SegOptions { uid_seed: Some(22), ..Default::default() };
    let golden = crate::support::fx("dicom/seg/enhanced.seg.dcm");
    if std::env::var_os("VLSM_WRITE_SEG_GOLDEN").is_some() {
        vlsm::io::write_dicom_seg(&golden, &s, &labels, &refs, &opts).unwrap();
    }
    let bytes = vlsm::io::dicom_seg_bytes(&s, &labels, &refs, &opts).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&golden).unwrap(),
        "SEG differs from the golden (checked by tools/check_dicom_seg.py)"
    );
}

// ---- hostile codestreams (JPEG-LS, JPEG 2000, JPEG) ----

/// The bytes before the first fragment, and the first fragment's codestream, of a committed
/// single-frame encapsulated file.
fn split_fragment(bytes: &[u8]) -> (usize, Vec<u8>) {
    // Pixel Data with undefined length: explicit VR (OB/OW) or implicit.
    let at = (0..bytes.len() - 12)
        .rev()
        .find_map(|i| {
            let w = &bytes[i..];
            (w.starts_with(&[0xE0, 0x7F, 0x10, 0x00])).then_some(())?;
            if w[8..12] == [0xFF; 4] && (w[4..6] == *b"OB" || w[4..6] == *b"OW") {
                Some(i + 12)
            } else if w[4..8] == [0xFF; 4] {
                Some(i + 8)
            } else {
                None
            }
        })
        .expect("encapsulated pixel data");
    let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let bot_len = word(at + 4);
    let frag = at + 8 + bot_len;
    assert_eq!(&bytes[frag..frag + 4], &[0xFE, 0xFF, 0x00, 0xE0]);
    let len = word(frag + 4);
    (frag, bytes[frag + 8..frag + 8 + len].to_vec())
}

/// `head` (up to the fragment item) with `stream` as the one fragment, properly delimited.
fn with_fragment(bytes: &[u8], frag: usize, stream: &[u8]) -> Vec<u8> {
    let mut s = stream.to_vec();
    if s.len() % 2 == 1 {
        s.push(0);
    }
    let mut out = bytes[..frag].to_vec();
    out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(&s);
    out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    out
}

#[test]
fn cut_and_corrupt_codestreams_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let files = [
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
        "MR_small_jp2klossless.dcm",
        "693_J2KI.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "SC_rgb_jpeg.dcm",
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut errors, mut total) = (0, 0);
    for name in files {
        let bytes = std::fs::read(crate::support::fx("dicom/corpus").join(name)).unwrap();
        let (frag, stream) = split_fragment(&bytes);
        // Round trip: re-wrapping the untouched stream decodes as the original.
        let p = d.path().join(format!("same_{name}"));
        std::fs::write(&p, with_fragment(&bytes, frag, &stream)).unwrap();
        let orig = read_dicom_pixels(&crate::support::fx("dicom/corpus").join(name)).unwrap();
        assert_eq!(read_dicom_pixels(&p).unwrap().values, orig.values, "{name}");
        let mut variants: Vec<(String, Vec<u8>, bool)> = Vec::new();
        for pct in [1, 5, 10, 30, 50, 70, 90] {
            let k = (stream.len() * pct / 100).max(2);
            variants.push((format!("cut{pct}_{name}"), stream[..k].to_vec(), true));
        }
        for i in 0..24 {
            let mut s = stream.clone();
            for _ in 0..1 + i % 4 {
                let at = rnd(s.len());
                s[at] ^= 1 << rnd(8);
            }
            variants.push((format!("flip{i}_{name}"), s, false));
        }
        for (vname, s, must_fail) in variants {
            let p = d.path().join(&vname);
            std::fs::write(&p, with_fragment(&bytes, frag, &s)).unwrap();
            total += 1;
            match read_dicom_pixels(&p) {
                Ok(_) => assert!(!must_fail, "{vname} decoded"),
                Err(e) => {
                    errors += 1;
                    let e = format!("{e:#}");
                    assert!(!e.contains('\n') && e.contains(&vname), "{e}");
                }
            }
        }
    }
    println!("{errors} of {total} damaged codestreams refused");
}

/// A codestream whose header claims another size than the data set is refused before any
/// pixel is decoded.
#[test]
fn codestream_size_must_match_the_data_set() {
    let d = tempfile::tempdir().unwrap();
    for (name, marker, want) in [
        ("MR_small_jpeg_ls_lossless.dcm", [0xFF, 0xF7], "codestream is"),
        ("MR_small_jp2klossless.dcm", [0xFF, 0x51], "codestream is"),
        ("SC_rgb_jpeg.dcm", [0xFF, 0xC0], "codestream is"),
    ] {
        let bytes = std::fs::read(crate::support::fx("dicom/corpus").join(name)).unwrap();
        let (frag, mut stream) = split_fragment(&bytes);
        let at = stream.windows(2).position(|w| w == marker).unwrap();
        // JPEG / JPEG-LS: length, precision, height (2), width (2); J2K SIZ: length, Rsiz,
        // Xsiz (4): make the image 60000 wide.
        if marker[1] == 0x51 {
            stream[at + 6..at + 10].copy_from_slice(&60000u32.to_be_bytes());
        } else {
            stream[at + 7..at + 9].copy_from_slice(&60000u16.to_be_bytes());
        }
        let p = d.path().join(format!("wide_{name}"));
        std::fs::write(&p, with_fragment(&bytes, frag, &stream)).unwrap();
        let e = format!("{:#}", read_dicom_pixels(&p).unwrap_err());
        assert!(e.contains(want) && e.contains("wide_") && !e.contains('\n'), "{e}");
    }
}

/// HTJ2K (pydicom's corpus has none): files coded by OpenJPH, decoded by pydicom with
/// pylibjpeg-openjpeg (tests/fixtures/dicom/htj2k, written by tools/make_htj2k_fixtures.py), the
/// lossy one included, to the same values.
#[test]
fn htj2k_matches_pydicom() {
    let dir = crate::support::fx("dicom/htj2k");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for e in files {
        let name = e["file"].as_str().unwrap();
        let px = read_dicom_pixels(&dir.join(name)).unwrap();
        assert_eq!(px.transfer_syntax, e["transfer_syntax"].as_str().unwrap());
        let note = compare(&px, e).unwrap_or_else(|m| panic!("{name}: {m}"));
        assert!(!note.contains("within tolerance"), "{name}{note}");
    }
}

/// MONOCHROME1 (low values bright): the values stay as stored (rescaled), the series says
/// `invert`, and the slices the model sees are the windowed slices inverted, as a viewer shows
/// them.
#[test]
fn monochrome1_series_is_displayed_inverted() {
    let good = vlsm::io::read_dicom_series(&series_fx("good")).unwrap();
    assert!(!good.invert);
    let d = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(series_fx("good")).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            let mut b = std::fs::read(&p).unwrap();
            if let Some(at) = b.windows(11).position(|w| w == b"MONOCHROME2") {
                b[at + 10] = b'1';
            }
            std::fs::write(d.path().join(p.file_name().unwrap()), b).unwrap();
        }
    }
    let s = vlsm::io::read_dicom_series(d.path()).unwrap();
    assert!(s.invert);
    assert_eq!(s.values, good.values);
    let header = vlsm::io::NiftiHeader::for_grid(s.dims, s.spacing, s.affine_ras()).unwrap();
    let vol =
        vlsm::io::Volume { header, dims: s.dims, data: vlsm::io::VoxelData::Scalar(s.values.clone()), notes: vec![] };
    let w = vlsm::io::Windowing::Fixed(vlsm::io::Window { center: 40.0, width: 400.0 });
    let map = vlsm::volume::volume_window(&vol, w).unwrap().unwrap();
    for k in 0..s.dims[2] {
        let plain = vlsm::volume::slice_image(&vol, 2, k, Some(&map), false).unwrap();
        let shown = vlsm::volume::slice_image(&vol, 2, k, Some(&map), true).unwrap();
        assert!(plain.as_raw().iter().any(|&v| v != 127), "slice {k} is flat");
        assert!(plain.as_raw().iter().zip(shown.as_raw()).all(|(a, b)| *a as u16 + *b as u16 == 255), "slice {k}");
    }
}

/// The NIfTI header of a series carries its geometry in the sform and the qform alike, for
/// right- and left-handed affines (qfac -1); written headers read back the same.
#[test]
fn series_nifti_header_qform_matches_sform() {
    let s = vlsm::io::read_dicom_series(&series_fx("good")).unwrap();
    let ras = s.affine_ras();
    let mut flipped = ras;
    for row in flipped.iter_mut().take(3) {
        row[2] = -row[2]; // slices the other way: left-handed
    }
    let d = tempfile::tempdir().unwrap();
    for (k, a) in [ras, flipped].into_iter().enumerate() {
        let h = vlsm::io::NiftiHeader::for_grid(s.dims, s.spacing, a).unwrap();
        let p = d.path().join(format!("h{k}.nii.gz"));
        let n = s.dims.iter().product::<usize>();
        vlsm::io::write_like(&p, &h, vlsm::io::OutputData::U8(&vec![1u8; n])).unwrap();
        let back = vlsm::io::read_volume(&p, vlsm::io::DEFAULT_MAX_VOXELS).unwrap().header;
        assert_eq!((back.qform_code, back.sform_code), (1, 1));
        for got in [back.sform_affine(), back.qform_affine()] {
            for r in 0..4 {
                for c in 0..4 {
                    assert!((got[r][c] - a[r][c]).abs() < 1e-4 * a[r][c].abs().max(1.0), "{k}: {got:?} vs {a:?}");
                }
            }
        }
    }
}
