//! The bodies of the cargo-fuzz targets in `fuzz/` (which include this file by `#[path]`),
//! also run on every CI build by `tests/it/fuzz_props.rs`, so the targets' code is compiled and
//! exercised without a nightly toolchain. Each takes any bytes and must return without
//! panicking; a property it checks on the way (errors are one line, paths stay inside the
//! dataset) is asserted, so a violation is a crash to the fuzzer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root, found from the including crate's manifest directory.
pub fn repo() -> PathBuf {
    let mut d = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !d.join("tests/fixtures/clipseg/tiny_complex").is_dir() {
        assert!(d.pop(), "no tests/fixtures above {}", env!("CARGO_MANIFEST_DIR"));
    }
    d
}

/// A scratch folder for the process, and a name unique to the calling thread.
fn scratch(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("scratch folder"));
    dir.path().join(format!("{:?}-{name}", std::thread::current().id()).replace(['(', ')'], ""))
}

fn one_line(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    assert!(!msg.is_empty() && msg.lines().count() == 1, "error of {} lines: {msg:?}", msg.lines().count());
}

/// Extensions the first byte chooses from (the readers dispatch on them, then on magic bytes).
const EXTS: [&str; 8] = ["png", "jpg", "bmp", "tif", "nii", "nii.gz", "dcm", "bin"];

/// `fuzz_targets/decode_image.rs`: every reader on the bytes after the first, which picks the
/// file's extension.
pub fn decode_image(data: &[u8]) {
    let Some((&k, bytes)) = data.split_first() else { return };
    let p = scratch(&format!("in.{}", EXTS[k as usize % EXTS.len()]));
    std::fs::write(&p, bytes).expect("scratch file");
    decode_file(&p);
}

/// Every reader on one file; errors must be one line.
pub fn decode_file(p: &Path) {
    use vlsm::io::{image_dimensions, read_image_any, read_mask, read_scalar, ReadOptions};
    let errs = [
        read_image_any(p, &ReadOptions::default()).err(),
        read_mask(p).err(),
        read_scalar(p, Some(0)).err(),
        image_dimensions(p).err(),
    ];
    errs.iter().flatten().for_each(one_line);
}

/// `fuzz_targets/tokenize.rs`: the CLIP BPE and WordPiece tokenizers on the bytes as text.
pub fn tokenize(data: &[u8]) {
    use vlsm::tokenize::clip_bpe::ClipTokenizer;
    use vlsm::tokenize::wordpiece::WordPieceTokenizer;
    static TOKS: OnceLock<(ClipTokenizer, WordPieceTokenizer)> = OnceLock::new();
    let (clip, wp) = TOKS.get_or_init(|| {
        let fx = repo().join("tests/fixtures");
        (
            ClipTokenizer::from_dir(fx.join("clipseg/tiny_complex")).expect("CLIP tokenizer"),
            WordPieceTokenizer::from_vocab_txt(fx.join("biomedclip/tiny/vocab.txt"), 256).expect("vocab.txt"),
        )
    });
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = clip.encode(&text) {
        assert!(ids.len() <= clip.max_len() && ids.iter().all(|&i| (i as usize) < clip.vocab_size()));
    }
    if let Ok(ids) = wp.encode(&text) {
        assert!(ids.len() <= wp.max_len());
    }
    let _ = clip.encode_batch_padded(&[&text, ""], None);
    let _ = wp.encode_batch_padded(&[&text, "x"], Some(8));
}

/// `fuzz_targets/train_config.rs`: the training-config parser and validator.
pub fn train_config(data: &[u8]) {
    if let Err(e) = vlsm::train::engine::config::TrainConfig::parse(&String::from_utf8_lossy(data)) {
        one_line(&e);
    }
}

/// `fuzz_targets/anns.rs`: a dataset whose `anns/test.json` is the bytes: opened, and a prompt
/// drawn from each record; every resolved path stays inside the dataset.
pub fn anns(data: &[u8]) {
    let root = scratch("ds");
    if !root.join("masks/im0_mask.png").exists() {
        for d in ["images", "masks", "anns"] {
            std::fs::create_dir_all(root.join(d)).expect("dataset folders");
        }
        image::RgbImage::new(8, 6).save(root.join("images/im0.png")).expect("image");
        image::GrayImage::new(8, 6).save(root.join("masks/im0_mask.png")).expect("mask");
    }
    std::fs::write(root.join("anns/test.json"), data).expect("anns");
    match vlsm::data::Dataset::open(&root, "test") {
        Ok(ds) => {
            let canon = root.canonicalize().expect("dataset root");
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
            for r in &ds.records {
                for p in [&r.image_path, &r.mask_path] {
                    let c = p.canonicalize().expect("resolved paths exist");
                    assert!(c.starts_with(&canon), "{} leaves the dataset", p.display());
                }
                for key in ["random", "p0", "p1"] {
                    let _ = vlsm::data::prompt(r, key, &mut rng);
                }
            }
        }
        Err(e) => {
            one_line(&e);
            assert!(format!("{e:#}").contains("test.json"), "{e:#}");
        }
    }
}
