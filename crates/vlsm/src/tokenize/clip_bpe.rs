//! CLIP byte-level BPE tokenizer, id-for-id identical to transformers' `CLIPTokenizerFast`
//! (the tokenizer the HF CLIPSeg processor uses).
//!
//! Three ways to load it, all ending in the same `tokenizers` pipeline:
//! * a model directory's `tokenizer.json` (as `save_pretrained` writes it);
//! * `vocab.json` + `merges.txt` (HF slow-tokenizer files);
//! * OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the merges list; the 49 408-token vocabulary
//!   is rebuilt in OpenAI's order: 256 byte symbols in `bytes_to_unicode` order, the same with
//!   `</w>`, the 48 894 merges, then `<|startoftext|>`, `<|endoftext|>`).
//!
//! Pipeline (as transformers' `CLIPConverter` writes it): normaliser `NFC → Replace(\s+ → " ")
//! → Lowercase`; pre-tokeniser `Split(CLIP regex, Removed, invert) → ByteLevel(no prefix space,
//! no regex)`; BPE with `</w>` end-of-word suffix; `RobertaProcessing(<|endoftext|>,
//! <|startoftext|>)`. Sequences longer than `max_len` (77) are truncated with the end token kept.
//!
//! Differences from transformers' *slow* `CLIPTokenizer` when `ftfy` is not installed: the slow
//! one pre-splits with BERT's `BasicTokenizer`, which puts spaces around every CJK ideograph (so
//! each becomes its own word with `</w>`, where the fast one keeps a run of ideographs as one
//! `\p{L}+` word) and drops control characters; it does not NFC-normalise. The fixture
//! `tokens.json` records both; this crate follows the fast one.

use super::{malformed, pad_batch, read_text, IdsAndMask, Result, TokenizeError};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// BPE merge pairs in rank order.
pub type Merges = Vec<(String, String)>;

pub const SOT_TOKEN: &str = "<|startoftext|>";
pub const EOT_TOKEN: &str = "<|endoftext|>";
/// CLIP's context length.
pub const CLIP_MAX_LEN: usize = 77;
/// The pre-tokeniser regex of CLIP (OpenAI `SimpleTokenizer.pat`, as transformers writes it).
pub const CLIP_SPLIT_REGEX: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// CLIP BPE tokenizer.
#[derive(Clone)]
pub struct ClipTokenizer {
    tok: Tokenizer,
    max_len: usize,
    sot_id: u32,
    eot_id: u32,
    pad_id: u32,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_len", &self.max_len)
            .field("sot_id", &self.sot_id)
            .field("eot_id", &self.eot_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// GPT-2/CLIP `bytes_to_unicode`: the printable-symbol stand-in for every byte, in the
/// table's insertion order (printable bytes first, then the rest mapped to U+0100..).
pub fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0u32..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).map(|(b, c)| (b as u8, char::from_u32(c).expect("valid char"))).collect()
}

/// Reads OpenAI's `bpe_simple_vocab_16e6.txt.gz` and returns `(vocab in id order, merges)`.
pub fn openai_vocab_and_merges(gz_path: &Path) -> Result<(Vec<String>, Merges)> {
    let raw = super::read_file(gz_path)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .map_err(|e| malformed(gz_path, format!("not a gzip'd UTF-8 text file: {e}")))?;
    let lines: Vec<&str> = text.split('\n').collect();
    // OpenAI: merges = merges[1:49152-256-2+1]
    let n_merges = 49152 - 256 - 2;
    if lines.len() < n_merges + 1 {
        return Err(malformed(
            gz_path,
            format!("expected at least {} merge lines, found {}", n_merges, lines.len().saturating_sub(1)),
        ));
    }
    let mut merges = Vec::with_capacity(n_merges);
    for (i, line) in lines[1..=n_merges].iter().enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
            _ => return Err(malformed(gz_path, format!("line {}: not a merge pair: {line:?}", i + 2))),
        }
    }
    let byte_chars: Vec<String> = bytes_to_unicode().into_iter().map(|(_, c)| c.to_string()).collect();
    let mut vocab: Vec<String> = Vec::with_capacity(49408);
    vocab.extend(byte_chars.iter().cloned());
    vocab.extend(byte_chars.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    vocab.push(SOT_TOKEN.to_string());
    vocab.push(EOT_TOKEN.to_string());
    Ok((vocab, merges))
}

/// The `tokenizer.json` document transformers' `CLIPTokenizerFast` writes, for a vocabulary
/// (token → id) and merges.
pub fn clip_tokenizer_json(vocab: &Map<String, Value>, merges: &[(String, String)]) -> Result<Value> {
    let id_of = |t: &str| -> Result<u64> {
        vocab.get(t).and_then(|v| v.as_u64()).ok_or_else(|| TokenizeError::Tokenizer(format!("vocabulary lacks {t}")))
    };
    let sot = id_of(SOT_TOKEN)?;
    let eot = id_of(EOT_TOKEN)?;
    let added = |id: u64, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": true, "special": true})
    };
    let merges: Vec<Value> = merges.iter().map(|(a, b)| json!([a, b])).collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(sot, SOT_TOKEN), added(eot, EOT_TOKEN)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT_REGEX}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOT_TOKEN, eot], "cls": [SOT_TOKEN, sot],
                           "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOT_TOKEN,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": Value::Object(vocab.clone()), "merges": merges}
    }))
}

fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl ClipTokenizer {
    fn from_tokenizer(tok: Tokenizer, source: &Path, max_len: usize, pad_token: Option<String>) -> Result<Self> {
        let id = |t: &str| {
            tok.token_to_id(t).ok_or_else(|| malformed(source, format!("vocabulary lacks the special token {t}")))
        };
        let sot_id = id(SOT_TOKEN)?;
        let eot_id = id(EOT_TOKEN)?;
        let pad_id = match pad_token {
            Some(t) => id(&t)?,
            None => eot_id,
        };
        let mut tok = tok;
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(Self { tok, max_len, sot_id, eot_id, pad_id })
    }

    /// Loads from a model directory: `tokenizer.json` if present, else `vocab.json` +
    /// `merges.txt`. `tokenizer_config.json` / `special_tokens_map.json`, when present, supply
    /// `model_max_length` (capped at 77) and the pad token (default `<|endoftext|>`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let (max_len, pad) = read_dir_config(dir)?;
        let tj = dir.join("tokenizer.json");
        let (vj, mt) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let mut t = if tj.is_file() {
            Self::from_tokenizer_json(&tj)?
        } else if vj.is_file() && mt.is_file() {
            Self::from_vocab_merges(&vj, &mt)?
        } else {
            return Err(TokenizeError::NoTokenizerFiles(dir.to_path_buf()));
        };
        if let Some(p) = pad {
            t.pad_id = t
                .tok
                .token_to_id(&p)
                .ok_or_else(|| malformed(&dir.join("tokenizer_config.json"), format!("unknown pad token {p}")))?;
        }
        t.set_max_len(max_len)?;
        Ok(t)
    }

    /// Loads a HF `tokenizer.json`.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let tok: Tokenizer = text.parse().map_err(|e| malformed(path, e))?;
        Self::from_tokenizer(tok, path, CLIP_MAX_LEN, None)
    }

    /// Builds from HF slow-tokenizer files `vocab.json` (token → id) and `merges.txt`
    /// (optional `#version` header line, then one `a b` pair per line).
    pub fn from_vocab_merges(vocab_json: impl AsRef<Path>, merges_txt: impl AsRef<Path>) -> Result<Self> {
        let (vp, mp) = (vocab_json.as_ref(), merges_txt.as_ref());
        let vocab: Value = serde_json::from_str(&read_text(vp)?).map_err(|e| malformed(vp, e))?;
        let Value::Object(vocab) = vocab else {
            return Err(malformed(vp, "expected a JSON object mapping token to id"));
        };
        if let Some((k, _)) = vocab.iter().find(|(_, v)| !v.is_u64()) {
            return Err(malformed(vp, format!("id of {k:?} is not a non-negative integer")));
        }
        let mtext = read_text(mp)?;
        let mut merges = Vec::new();
        for (i, line) in mtext.lines().enumerate() {
            if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    merges.push((a.to_string(), b.to_string()))
                }
                _ => return Err(malformed(mp, format!("line {}: not a merge pair: {line:?}", i + 1))),
            }
        }
        let doc = clip_tokenizer_json(&vocab, &merges).map_err(|e| malformed(vp, e))?;
        let tok: Tokenizer = doc.to_string().parse().map_err(|e| malformed(mp, e))?;
        Self::from_tokenizer(tok, vp, CLIP_MAX_LEN, None)
    }

    /// Builds from OpenAI's `bpe_simple_vocab_16e6.txt.gz`.
    pub fn from_bpe_gz(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (vocab, merges) = openai_vocab_and_merges(path)?;
        let map: Map<String, Value> = vocab.into_iter().enumerate().map(|(i, t)| (t, Value::from(i as u64))).collect();
        let doc = clip_tokenizer_json(&map, &merges)?;
        let tok: Tokenizer = doc.to_string().parse().map_err(|e| malformed(path, e))?;
        Self::from_tokenizer(tok, path, CLIP_MAX_LEN, None)
    }

    /// The `tokenizer.json` text of this tokenizer (as transformers would write it, minus the
    /// truncation setting).
    pub fn to_json(&self) -> Result<String> {
        let mut t = self.tok.clone();
        t.with_truncation(None).map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        t.to_string(false).map_err(|e| TokenizeError::Tokenizer(e.to_string()))
    }

    /// Changes the truncation length (including the two special tokens).
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        if max_len < 2 {
            return Err(TokenizeError::Tokenizer(format!("max_len {max_len} < 2")));
        }
        self.max_len = max_len;
        self.tok
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(())
    }

    /// Token ids with `<|startoftext|>` … `<|endoftext|>`, truncated to `max_len` (the end
    /// token kept), not padded. The empty prompt gives `[sot, eot]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tok.encode(text, true).map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes several prompts and right-pads them with the pad id: to `pad_to` when given
    /// (transformers' `padding="max_length", max_length=pad_to`; must be ≤ `max_len`), else to
    /// the longest (`padding=True`). Returns `(ids, attention_mask)`, one row per prompt.
    pub fn encode_batch_padded(&self, texts: &[&str], pad_to: Option<usize>) -> Result<IdsAndMask> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t)).collect::<Result<_>>()?;
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let len = match pad_to {
            Some(n) if n > self.max_len => {
                return Err(TokenizeError::Tokenizer(format!(
                    "pad_to {n} exceeds the maximum sequence length {}",
                    self.max_len
                )))
            }
            Some(n) if n < longest => {
                // Truncate to n as transformers does with truncation=True, max_length=n.
                let mut t = self.clone();
                t.set_max_len(n)?;
                return t.encode_batch_padded(texts, Some(n));
            }
            Some(n) => n,
            None => longest,
        };
        Ok(pad_batch(seqs, len, self.pad_id))
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }
    pub fn sot_id(&self) -> u32 {
        self.sot_id
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }
    /// The underlying `tokenizers::Tokenizer` (with truncation to `max_len` set).
    pub fn inner(&self) -> &Tokenizer {
        &self.tok
    }
}

/// `(model_max_length capped at 77, pad token)` from `tokenizer_config.json` /
/// `special_tokens_map.json` when present.
fn read_dir_config(dir: &Path) -> Result<(usize, Option<String>)> {
    let mut max_len = CLIP_MAX_LEN;
    let mut pad = None;
    for name in ["special_tokens_map.json", "tokenizer_config.json"] {
        let p: PathBuf = dir.join(name);
        if !p.is_file() {
            continue;
        }
        let v: Value = serde_json::from_str(&read_text(&p)?).map_err(|e| malformed(&p, e))?;
        if let Some(t) = v.get("pad_token").and_then(token_content) {
            pad = Some(t);
        }
        if let Some(n) = v.get("model_max_length").and_then(|n| n.as_f64()) {
            if n >= 2.0 && n < CLIP_MAX_LEN as f64 {
                max_len = n as usize;
            }
        }
    }
    Ok((max_len, pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_order() {
        let t = bytes_to_unicode();
        assert_eq!(t.len(), 256);
        assert_eq!(t[0], (b'!', '!'));
        assert_eq!(t[188], (0, '\u{100}'));
        assert_eq!(t.iter().find(|(b, _)| *b == b' ').unwrap().1, '\u{120}');
    }
}
