//! Token ids identical to transformers' CLIPTokenizerFast (and BertTokenizerFast) on the
//! prompts of tests/fixtures/clipseg/tokens.json (written by tools/make_clipseg_fixtures.py).

use candle_core::{Device, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use vlsm::tokenize::{ClipTokenizer, TokenizeError, WordPieceTokenizer};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/clipseg")
}
/// The shared read-only material (`../shared` beside the repository, or `$VLSM_SHARED`).
fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("VLSM_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"));
    if p.join("vocab").is_dir() {
        Some(p)
    } else {
        eprintln!("shared vocab folder not found at {}: skipping", p.display());
        None
    }
}

fn tokens_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokens.json")).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn check_all(tok: &ClipTokenizer, what: &str) {
    let t = tokens_json();
    let prompts = t["prompts"].as_array().unwrap();
    let fast = t["fast"].as_array().unwrap();
    assert!(prompts.len() >= 20);
    let mut bad = vec![];
    for (p, want) in prompts.iter().zip(fast) {
        let p = p.as_str().unwrap();
        let got = tok.encode(p).unwrap();
        if got != ids_of(want) {
            bad.push(format!("{p:?}\n  got  {got:?}\n  want {:?}", ids_of(want)));
        }
    }
    assert!(bad.is_empty(), "{what}: {} of {} prompts differ:\n{}", bad.len(), prompts.len(), bad.join("\n"));
}

#[test]
fn ids_from_model_dir_tokenizer_json() {
    let tok = ClipTokenizer::from_dir(fixtures().join("tiny_complex")).unwrap();
    assert_eq!((tok.max_len(), tok.eot_id(), tok.sot_id(), tok.pad_id()), (77, 49407, 49406, 49407));
    assert_eq!(tok.vocab_size(), 49408);
    check_all(&tok, "tiny_complex/tokenizer.json");
}

#[test]
fn ids_from_vocab_json_and_merges_txt() {
    // tiny_simple has no tokenizer.json (like CIDAS/clipseg-rd64-refined): from_dir falls back.
    let dir = fixtures().join("tiny_simple");
    assert!(!dir.join("tokenizer.json").exists());
    check_all(&ClipTokenizer::from_dir(&dir).unwrap(), "tiny_simple dir");
    let tok = ClipTokenizer::from_vocab_merges(dir.join("vocab.json"), dir.join("merges.txt")).unwrap();
    check_all(&tok, "vocab.json + merges.txt");
}

#[test]
fn ids_from_openai_bpe_gz() {
    let Some(shared) = shared() else { return };
    let tok = ClipTokenizer::from_bpe_gz(shared.join("vocab/bpe_simple_vocab_16e6.txt.gz")).unwrap();
    assert_eq!(tok.vocab_size(), 49408);
    check_all(&tok, "bpe_simple_vocab_16e6.txt.gz");
}

#[test]
fn gz_vocab_matches_vocab_json() {
    let Some(shared) = shared() else { return };
    let (vocab, merges) =
        vlsm::tokenize::clip_bpe::openai_vocab_and_merges(&shared.join("vocab/bpe_simple_vocab_16e6.txt.gz")).unwrap();
    assert_eq!(vocab.len(), 49408);
    assert_eq!(merges.len(), 48894);
    let vj: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny_simple/vocab.json")).unwrap()).unwrap();
    for (i, t) in vocab.iter().enumerate() {
        assert_eq!(vj[t].as_u64(), Some(i as u64), "{t}");
    }
}

#[test]
fn empty_and_long_prompts() {
    let tok = ClipTokenizer::from_dir(fixtures().join("tiny_complex")).unwrap();
    assert_eq!(tok.encode("").unwrap(), vec![49406, 49407]);
    let long = "polyp lesion tumour mass nodule ".repeat(30);
    let ids = tok.encode(&long).unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!((ids[0], ids[76]), (49406, 49407));
    let (ids, mask) = tok.encode_batch_padded(&["", "polyp", &long], None).unwrap();
    assert!(ids.iter().all(|r| r.len() == 77));
    assert_eq!(&ids[0][..3], &[49406, 49407, 49407]);
    assert_eq!(&mask[0][..3], &[1, 1, 0]);
    assert_eq!(mask[2].iter().sum::<u32>(), 77);
    assert!(tok.encode_batch_padded(&["a"], Some(78)).is_err());
}

/// input_ids / attention_mask of the reference text cases (max_length 77 and padding=True).
#[test]
fn batch_padding_matches_reference_cases() {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    let reference = candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap();
    let mut n = 0;
    for c in cases["cases"].as_array().unwrap() {
        if c["kind"] != "text" {
            continue;
        }
        let name = c["name"].as_str().unwrap();
        let tok = ClipTokenizer::from_dir(fixtures().join(c["model_dir"].as_str().unwrap())).unwrap();
        let prompts: Vec<&str> = c["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        let pad_to = c["pad_to"].as_u64().map(|n| n as usize);
        let (ids, mask) = tok.encode_batch_padded(&prompts, pad_to).unwrap();
        let as_rows = |t: &Tensor| -> Vec<Vec<u32>> {
            t.to_vec2::<i64>().unwrap().into_iter().map(|r| r.into_iter().map(|x| x as u32).collect()).collect()
        };
        assert_eq!(ids, as_rows(&reference[&format!("{name}.input_ids")]), "{name} input_ids");
        assert_eq!(mask, as_rows(&reference[&format!("{name}.attention_mask")]), "{name} attention_mask");
        n += 1;
    }
    assert!(n >= 4);
}

/// transformers' slow CLIPTokenizer (no ftfy) is recorded too; it differs from the fast one
/// only where BERT's BasicTokenizer splits CJK ideographs into single-character words.
#[test]
fn slow_tokenizer_differences_are_the_documented_ones() {
    let t = tokens_json();
    let prompts = t["prompts"].as_array().unwrap();
    for i in t["slow_differs"].as_array().unwrap() {
        let p = prompts[i.as_u64().unwrap() as usize].as_str().unwrap();
        assert!(p.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)), "unexpected slow/fast difference on {p:?}");
    }
}

#[test]
fn wordpiece_matches_bert_tokenizer_fast() {
    let Some(shared) = shared() else { return };
    let t = tokens_json();
    let wp = &t["wordpiece"];
    let tok = WordPieceTokenizer::from_vocab_txt(shared.join("vocab/bert-base-uncased-vocab.txt"), 256).unwrap();
    for (p, want) in wp["prompts"].as_array().unwrap().iter().zip(wp["ids"].as_array().unwrap()) {
        assert_eq!(tok.encode(p.as_str().unwrap()).unwrap(), ids_of(want), "{p}");
    }
    let (ids, mask) = tok.encode_batch_padded(&["a polyp", ""], Some(256)).unwrap();
    assert_eq!(ids[1][..3], [tok.cls_id(), tok.sep_id(), tok.pad_id()]);
    assert_eq!(mask[0].iter().sum::<u32>() as usize, tok.encode("a polyp").unwrap().len());
    assert!(ids.iter().all(|r| r.len() == 256));
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vlsm-tok-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_names(err: TokenizeError, file: &Path) {
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "error does not name {}: {msg}", file.display());
}

#[test]
fn errors_name_the_file() {
    let d = tmpdir("errors");
    // missing files
    let missing = d.join("nope/tokenizer.json");
    assert_names(ClipTokenizer::from_tokenizer_json(&missing).unwrap_err(), &missing);
    let (vj, mt) = (d.join("vocab.json"), d.join("merges.txt"));
    assert_names(ClipTokenizer::from_vocab_merges(&vj, &mt).unwrap_err(), &vj);
    let gz = d.join("missing.txt.gz");
    assert_names(ClipTokenizer::from_bpe_gz(&gz).unwrap_err(), &gz);
    let err = ClipTokenizer::from_dir(&d).unwrap_err();
    assert!(err.to_string().contains(&d.display().to_string()), "{err}");
    // malformed files
    let tj = d.join("tokenizer.json");
    std::fs::write(&tj, "{ not json").unwrap();
    assert_names(ClipTokenizer::from_tokenizer_json(&tj).unwrap_err(), &tj);
    assert_names(ClipTokenizer::from_dir(&d).unwrap_err(), &tj);
    std::fs::write(&vj, "[1, 2]").unwrap();
    std::fs::write(&mt, "#version: 0.2\na b\n").unwrap();
    assert_names(ClipTokenizer::from_vocab_merges(&vj, &mt).unwrap_err(), &vj);
    std::fs::write(&vj, r#"{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#).unwrap();
    std::fs::write(&mt, "#version: 0.2\na b c\n").unwrap();
    assert_names(ClipTokenizer::from_vocab_merges(&vj, &mt).unwrap_err(), &mt);
    std::fs::write(&gz, b"not gzip").unwrap();
    assert_names(ClipTokenizer::from_bpe_gz(&gz).unwrap_err(), &gz);
    let vt = d.join("vocab.txt");
    assert_names(WordPieceTokenizer::from_vocab_txt(&vt, 256).unwrap_err(), &vt);
    std::fs::write(&vt, "hello\nworld\n").unwrap();
    assert_names(WordPieceTokenizer::from_vocab_txt(&vt, 256).unwrap_err(), &vt);
    let _ = std::fs::remove_dir_all(&d);
}
