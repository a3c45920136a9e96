//! Property tests over hostile input (#17), run in CI in a few seconds each: the decoders on
//! mutated and truncated valid files of every format, the tokenizers on arbitrary Unicode, the
//! training-config and anns parsers on mutated documents. The property is always the same:
//! `Ok` or `Err`, never a panic, and never one allocation past what the limits allow (the test
//! binary's allocator notes the largest; see support::alloc_probe). The `fuzz/` directory holds
//! the cargo-fuzz targets for the same entry points (docs/security.md).
//!
//! `PROPTEST_CASES` raises the number of cases for a longer local run.

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vlsm::io::{image_dimensions, read_image_any, read_mask, read_scalar, ReadOptions, MAX_PIXELS};

use crate::support::{alloc_probe, fx};

/// The most one allocation may ask for while decoding: the raster decoder's allocation limit
/// (16 bytes per pixel of the largest image); NIfTI and DICOM need at most 8 per pixel.
const MAX_ALLOC: usize = MAX_PIXELS as usize * 16;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    // No persistence files in the source tree: failures are kept as regression cases below.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Small valid files of every format the readers take.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rgb = image::RgbImage::from_fn(13, 9, |x, y| image::Rgb([(x * 19) as u8, (y * 27) as u8, (x * y) as u8]));
    let enc = |f: image::ImageFormat, img: image::DynamicImage| {
        let mut c = Cursor::new(Vec::new());
        img.write_to(&mut c, f).unwrap();
        c.into_inner()
    };
    let dynimg = image::DynamicImage::ImageRgb8(rgb.clone());
    let g16 = image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(7, 5, |x, y| {
        image::Luma([(x * 3000 + y * 7) as u16])
    }));
    let io = |n: &str| std::fs::read(fx("io").join(n)).unwrap();
    vec![
        ("png", enc(image::ImageFormat::Png, dynimg.clone())),
        ("png", enc(image::ImageFormat::Png, g16.clone())),
        ("jpg", enc(image::ImageFormat::Jpeg, dynimg.clone())),
        ("bmp", enc(image::ImageFormat::Bmp, dynimg.clone())),
        ("tif", enc(image::ImageFormat::Tiff, dynimg)),
        ("tif", enc(image::ImageFormat::Tiff, g16)),
        ("nii", io("flat.nii")),
        ("nii.gz", io("vol.nii.gz")),
        ("dcm", io("ct_explicit.dcm")),
        ("dcm", io("mr_implicit.dcm")),
        ("dcm", io("ct_deflated.dcm")),
    ]
}

/// Values that break size arithmetic, written over header words.
const INTERESTING: [u32; 10] = [0, 1, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFFE];

/// One mutation of a file: cut, then flip bytes, then overwrite a header word.
#[derive(Debug, Clone)]
struct Mutation {
    cut: Option<usize>,
    flips: Vec<(usize, u8)>,
    word: Option<(usize, usize, bool)>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::option::weighted(0.3, any::<usize>()),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        prop::option::weighted(0.6, (any::<usize>(), 0..INTERESTING.len(), any::<bool>())),
    )
        .prop_map(|(cut, flips, word)| Mutation { cut, flips, word })
}

fn apply(good: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = good.to_vec();
    for &(i, v) in &m.flips {
        let n = b.len();
        b[i % n] = v;
    }
    if let Some((at, k, big_endian)) = m.word {
        // Header words: the first 400 bytes hold every format's dimensions.
        let at = at % b.len().min(400).saturating_sub(3).max(1);
        let v = INTERESTING[k];
        let w = if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        for (j, x) in w.iter().enumerate() {
            if let Some(slot) = b.get_mut(at + j) {
                *slot = *x;
            }
        }
    }
    if let Some(c) = m.cut {
        b.truncate(c % (good.len() + 1));
    }
    b
}

/// Every reader on `bytes` written as `name`: errors are fine, panics and huge allocations not.
fn read_all_ways(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    alloc_probe::reset();
    let opts = ReadOptions::default();
    let results = [
        read_image_any(&p, &opts).map(|i| i.dimensions()),
        read_mask(&p).map(|m| m.dimensions()),
        read_scalar(&p, Some(0)).map(|s| (s.width, s.height)),
        image_dimensions(&p),
    ];
    let largest = alloc_probe::largest();
    prop_assert!(largest <= MAX_ALLOC, "{name}: one allocation of {largest} bytes");
    for r in &results {
        if let Err(e) = r {
            let msg = format!("{e:#}");
            prop_assert!(msg.lines().count() == 1 && msg.contains(name), "{name}: {msg:?}");
        }
    }
    Ok(())
}

fn decoders(filter: &[&str], default_cases: u32) {
    let dir = tempfile::tempdir().unwrap();
    for (i, (ext, good)) in seeds().into_iter().enumerate().filter(|(_, (e, _))| filter.contains(e)) {
        let name = format!("seed{i}.{ext}");
        let mut runner = TestRunner::new(config(default_cases));
        runner
            .run(&mutation(), |m| read_all_ways(dir.path(), &name, &apply(&good, &m)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn raster_decoders_never_panic() {
    decoders(&["png", "jpg", "bmp", "tif"], 150);
}

#[test]
fn medical_decoders_never_panic() {
    decoders(&["nii", "nii.gz", "dcm"], 250);
}

/// A .nii.gz whose inflated header is mutated (the gzip layer would otherwise refuse most
/// mutations by its checksum before the header is read).
#[test]
fn nifti_gz_headers_never_panic() {
    use std::io::{Read, Write};
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(&std::fs::read(fx("io/vol.nii.gz")).unwrap()[..]).read_to_end(&mut raw).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(config(200));
    runner
        .run(&mutation(), |m| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&apply(&raw, &m)).unwrap();
            read_all_ways(dir.path(), "hdr.nii.gz", &gz.finish().unwrap())
        })
        .unwrap();
}

/// Arbitrary bytes under every extension (and none): the sniffer and each reader.
#[test]
fn arbitrary_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(config(200));
    let names = ["x.png", "x.jpg", "x.nii", "x.nii.gz", "x.dcm", "x"];
    runner
        .run(&(0..names.len(), prop::collection::vec(any::<u8>(), 0..1200)), |(k, bytes)| {
            read_all_ways(dir.path(), names[k], &bytes)
        })
        .unwrap();
}

/// Strings that stress tokenizers: any Unicode, long runs, combining marks, control and
/// private-use characters, invalid-looking escapes.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,400}",
        prop::collection::vec(prop::char::any(), 0..300).prop_map(|v| v.into_iter().collect()),
        ("[a-z]{1,8}", 0usize..3000).prop_map(|(w, n)| w.repeat(n)),
        Just("\u{0301}".repeat(5000)),
        Just("<|startoftext|><|endoftext|>[CLS][SEP][PAD][UNK]".to_string()),
    ]
}

#[test]
fn tokenizers_never_panic() {
    use vlsm::tokenize::clip_bpe::ClipTokenizer;
    use vlsm::tokenize::wordpiece::WordPieceTokenizer;
    let clip = ClipTokenizer::from_dir(fx("clipseg/tiny_complex")).unwrap();
    let wp = WordPieceTokenizer::from_vocab_txt(fx("biomedclip/tiny/vocab.txt"), 256).unwrap();
    let mut runner = TestRunner::new(config(300));
    runner
        .run(&hostile_text(), |text| {
            if let Ok(ids) = clip.encode(&text) {
                prop_assert!(ids.len() <= clip.max_len() && ids.iter().all(|&i| (i as usize) < clip.vocab_size()));
            }
            if let Ok(ids) = wp.encode(&text) {
                prop_assert!(ids.len() <= wp.max_len());
            }
            let _ = clip.encode_batch_padded(&[&text, ""], None);
            let _ = wp.encode_batch_padded(&[&text, "x"], Some(8));
            Ok(())
        })
        .unwrap();
}

/// Values that are wrong for any key: out of range, non-finite, huge, of the wrong type.
const TOML_VALUES: [&str; 16] = [
    "0",
    "-1",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "0.0",
    "1e-320",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "18446744073709551615",
];

/// A training config with some values replaced by wrong ones, or its text cut or garbled.
#[test]
fn train_config_parser_never_panics() {
    let configs: Vec<String> =
        ["default_model.toml", "clipseg_kvasir.toml", "cris_kvasir_subset.toml", "unet_kvasir.toml"]
            .iter()
            .map(|n| std::fs::read_to_string(crate::support::repo_root().join("configs").join(n)).unwrap())
            .collect();
    let strategy = (
        0..configs.len(),
        prop::collection::vec((any::<usize>(), 0..TOML_VALUES.len()), 0..5),
        prop::option::weighted(0.2, any::<usize>()),
        prop::option::weighted(0.2, (any::<usize>(), "\\PC{0,20}")),
    );
    let mut runner = TestRunner::new(config(300));
    runner
        .run(&strategy, |(k, swaps, cut, insert)| {
            let mut lines: Vec<String> = configs[k].lines().map(String::from).collect();
            for (at, v) in swaps {
                let i = at % lines.len();
                if let Some((key, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{key} = {}", TOML_VALUES[v]);
                }
            }
            let mut text = lines.join("\n");
            if let Some((at, s)) = insert {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &s);
            }
            if let Some(c) = cut {
                let mut c = c % (text.len() + 1);
                while !text.is_char_boundary(c) {
                    c -= 1;
                }
                text.truncate(c);
            }
            if let Err(e) = vlsm::train::engine::config::TrainConfig::parse(&text) {
                let msg = format!("{e:#}");
                prop_assert!(msg.lines().count() == 1, "{:?}", msg);
            }
            Ok(())
        })
        .unwrap();
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("im0.png".to_string()),
            Just("im0_mask.png".to_string()),
            Just("../im0.png".to_string()),
            Just("/etc/passwd".to_string()),
            Just("".to_string()),
            Just("a\0b".to_string()),
            Just("images/../../x".to_string()),
            Just("im0".to_string()),
            "\\PC{0,40}",
        ]
        .prop_map(|s| json!(s)),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("img_name".to_string()),
                    Just("mask_name".to_string()),
                    Just("prompts".to_string()),
                    Just("bbox".to_string()),
                    Just("p0".to_string()),
                    Just("p1".to_string()),
                    "[a-z0-9_]{0,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// anns records with any shape and any names: opening the dataset and drawing prompts either
/// works with every path inside the dataset, or fails with one line.
#[test]
fn anns_parser_never_panics() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    std::fs::create_dir_all(root.join("anns")).unwrap();
    image::RgbImage::new(8, 6).save(root.join("images/im0.png")).unwrap();
    image::GrayImage::new(8, 6).save(root.join("masks/im0_mask.png")).unwrap();
    let good = json!({"img_name": "im0.png", "mask_name": "im0_mask.png", "prompts": {"p0": "", "p1": "x"}, "bbox": [0, 0, 1, 1]});
    let record = prop_oneof![
        json_value(),
        // A good record with one field replaced.
        (prop_oneof![Just("img_name"), Just("mask_name"), Just("prompts"), Just("bbox")], json_value()).prop_map(
            move |(k, v)| {
                let mut r = good.clone();
                r[k] = v;
                r
            }
        ),
    ];
    let anns = prop_oneof![
        prop::collection::vec(record, 0..4).prop_map(|v| serde_json::to_string(&v).unwrap()),
        json_value().prop_map(|v| v.to_string()),
        "\\PC{0,200}",
    ];
    let mut runner = TestRunner::new(config(300));
    runner
        .run(&anns, |text| {
            std::fs::write(root.join("anns/test.json"), &text).unwrap();
            match vlsm::data::Dataset::open(&root, "test") {
                Ok(ds) => {
                    let canon = root.canonicalize().unwrap();
                    for r in &ds.records {
                        for p in [&r.image_path, &r.mask_path] {
                            let c = p.canonicalize().unwrap();
                            prop_assert!(c.starts_with(&canon), "{} leaves the dataset", p.display());
                        }
                        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
                        let _ = vlsm::data::prompt(r, "random", &mut rng);
                        let _ = vlsm::data::prompt(r, "p1", &mut rng);
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    prop_assert!(msg.lines().count() == 1 && msg.contains("test.json"), "{msg:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The cargo-fuzz targets' bodies (support::fuzz_harness, included by fuzz/) on arbitrary
/// bytes and on the decoder seeds: what `cargo fuzz run` would start from.
#[test]
fn fuzz_target_bodies_run() {
    use crate::support::fuzz_harness as h;
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 4] = [
        ("decode_image", h::decode_image),
        ("tokenize", h::tokenize),
        ("train_config", h::train_config),
        ("anns", h::anns),
    ];
    // The seeds as decode_image takes them: the first byte picks the extension.
    for (ext, seed) in seeds() {
        let k = ["png", "jpg", "bmp", "tif", "nii", "nii.gz", "dcm"].iter().position(|e| *e == ext).unwrap();
        h::decode_image(&[&[k as u8][..], &seed].concat());
    }
    for (name, f) in targets {
        let mut runner = TestRunner::new(config(100));
        runner
            .run(&prop::collection::vec(any::<u8>(), 0..600), |data| {
                f(&data);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// What the properties found, kept as plain regression cases.
mod found {
    use crate::support::fx;

    /// A byte flip turned a '.' of the transfer syntax UID into a newline: the error quoted it
    /// and took two lines. Control characters in DICOM text now read as U+FFFD.
    #[test]
    fn dicom_text_with_a_newline_stays_on_one_line() {
        let mut b = std::fs::read(fx("io/ct_explicit.dcm")).unwrap();
        let at = b.windows(19).position(|w| w == b"1.2.840.10008.1.2.1").unwrap();
        b[at + 1] = b'\n';
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nl.dcm");
        std::fs::write(&p, &b).unwrap();
        let e = format!("{:#}", vlsm::io::read_image_any(&p, &Default::default()).unwrap_err());
        assert!(e.lines().count() == 1 && e.contains("nl.dcm") && e.contains("transfer syntax 1\u{FFFD}2.840"), "{e}");
    }

    /// `datasets = 0`: toml's message quoted the line under a caret, over four lines.
    #[test]
    fn toml_type_errors_are_one_line() {
        let text = "output_dir = \"x\"\n[model]\nkind = \"textunet\"\n[data]\ndatasets = 0\n";
        let e = format!("{:#}", vlsm::train::engine::config::TrainConfig::parse(text).unwrap_err());
        assert_eq!(
            e,
            "TOML parse error at line 5, column 12 (datasets = 0): invalid type: integer `0`, expected a sequence"
        );
    }
}
