//! CRIS from prompt strings, against the reference CRIS code on prompts longer than `word_len`
//! (tests/fixtures/cris_words, written by tools/make_cris_fixtures.py): CRIS.pytorch's
//! `tokenize(p, 17, truncate=True)` keeps the end token as the last id, and CRIS pools the
//! sentence feature there. A small random CRIS with `word_len` 17 and the real CLIP vocabulary;
//! the prompts: short, exactly 17 tokens, one over, medvlsm-style long ones and one beyond 77.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support as common;
use candle_core::{DType, Device, IndexOp, Tensor};
use common::{assert_close, rel_err};
use vlsm::models::cris::word_ids;
use vlsm::pipeline::Segmenter;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cris_words")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

/// The prompts and the length of each one's `[sot] + bpe + [eot]` before CRIS cuts it.
fn prompts() -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(fixtures().join("prompts.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p["prompt"].as_str().unwrap().to_string(), p["tokens"].as_u64().unwrap() as usize))
        .collect()
}

#[test]
fn long_prompts_match_the_reference_from_the_strings() {
    let r = reference();
    let prompts = prompts();
    let texts: Vec<String> = prompts.iter().map(|(p, _)| p.clone()).collect();
    let n = texts.len();
    // Short and long prompts alike, up to one beyond CLIP's 77 tokens.
    assert!(prompts.iter().any(|&(_, k)| k <= 17) && prompts.iter().filter(|&&(_, k)| k > 17).count() >= 3);
    assert!(prompts.iter().any(|&(_, k)| k > 77));

    let seg = Segmenter::load(&fixtures()).unwrap();
    assert_eq!(seg.kind_name(), "cris");
    let ids = seg.text_conditional(&texts).unwrap();
    let m = vlsm::loader::cris(&fixtures(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.config.word_len, 17);

    // Outputs first, so that wrong ids show their effect before the ids are compared.
    let s = m.config.img_size;
    let img = r["img"].broadcast_as((n, 3, s, s)).unwrap().contiguous().unwrap();
    let out = m.forward_all(&img, &ids).unwrap();
    let features = seg.encode_images(&r["img"]).unwrap();
    let split = seg.decode(&features[0], &ids).unwrap();
    let ref_logits = r["logits"].squeeze(1).unwrap();
    let row = |t: &Tensor, i: usize| t.i(i).unwrap();
    for (i, (p, k)) in prompts.iter().enumerate() {
        eprintln!(
            "{k:3} tokens: state {:.1e}, logits {:.1e}, segmenter logits {:.1e}: {p:.40}",
            rel_err(&row(&out.state, i), &row(&r["state"], i)),
            rel_err(&row(&out.logits, i), &row(&r["logits"], i)),
            rel_err(&row(&split, i), &row(&ref_logits, i)),
        );
    }

    let got: Vec<Vec<u32>> = ids.to_vec2().unwrap();
    let want: Vec<Vec<u32>> = r["ids"].to_dtype(DType::U32).unwrap().to_vec2().unwrap();
    for (i, (p, _)) in prompts.iter().enumerate() {
        assert_eq!(got[i], want[i], "ids of {p:?}");
    }
    for (i, (_, k)) in prompts.iter().enumerate() {
        assert_close(&format!("state, {k} tokens"), &row(&out.state, i), &row(&r["state"], i));
        assert_close(&format!("word_feats, {k} tokens"), &row(&out.word_feats, i), &row(&r["word_feats"], i));
        assert_close(&format!("logits, {k} tokens"), &row(&out.logits, i), &row(&r["logits"], i));
        assert_close(&format!("segmenter logits, {k} tokens"), &row(&split, i), &row(&ref_logits, i));
    }
}

#[test]
fn training_ids_equal_inference_ids() {
    let seg = Segmenter::load(&fixtures()).unwrap();
    // The segmenter finds the BPE file as `find_bpe` does (the fixture ships no tokenizer).
    let tok = &vlsm::tokenize::ClipTokenizer::from_bpe_gz(vlsm::tokenize::find_bpe().unwrap()).unwrap();
    let texts: Vec<String> = prompts().into_iter().map(|(p, _)| p).collect();
    let inference: Vec<Vec<u32>> = seg.text_conditional(&texts).unwrap().to_vec2().unwrap();
    for (p, row) in texts.iter().zip(&inference) {
        assert_eq!(&vlsm::train::tasks::cris::token_ids(tok, p, 17).unwrap(), row, "{p:?}");
    }
}

#[test]
fn word_ids_is_cris_tokenize() {
    let (sot, eot) = (49406, 49407);
    // Shorter: zero-padded after the end token.
    assert_eq!(word_ids(&[sot, 5, eot], 5, eot), [sot, 5, eot, 0, 0]);
    // Exactly word_len: unchanged.
    assert_eq!(word_ids(&[sot, 5, 6, eot], 4, eot), [sot, 5, 6, eot]);
    // Longer: cut, the last id becomes the end token.
    assert_eq!(word_ids(&[sot, 5, 6, 7, eot], 4, eot), [sot, 5, 6, eot]);
    assert_eq!(word_ids(&[sot, eot], 2, eot), [sot, eot]);
    assert_eq!(word_ids(&[sot, 5, eot], 1, eot), [eot]);
    assert!(word_ids(&[sot, eot], 0, eot).is_empty());
}
