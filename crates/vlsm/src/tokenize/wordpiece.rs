//! BERT WordPiece (uncased) tokenizer from a `vocab.txt`, id-for-id identical to transformers'
//! `BertTokenizerFast(vocab_file, do_lower_case=True)`: `BertNormalizer(clean_text,
//! handle_chinese_chars, strip_accents = lowercase, lowercase)`, `BertPreTokenizer`,
//! WordPiece (`##` continuation, `[UNK]`, 100 chars per word), `[CLS] … [SEP]`, truncation to
//! `max_len` (default 256, as BiomedCLIP's PubMedBERT text tower uses) and `[PAD]` padding.

use super::{malformed, pad_batch, read_text, IdsAndMask, Result, TokenizeError};
use serde_json::{json, Map, Value};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// BiomedCLIP's context length.
pub const BIOMEDCLIP_MAX_LEN: usize = 256;

#[derive(Clone)]
pub struct WordPieceTokenizer {
    tok: Tokenizer,
    max_len: usize,
    cls_id: u32,
    sep_id: u32,
    pad_id: u32,
}

impl std::fmt::Debug for WordPieceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceTokenizer")
            .field("vocab_size", &self.tok.get_vocab_size(true))
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl WordPieceTokenizer {
    /// Loads an uncased BERT `vocab.txt` (one token per line; id = line number).
    pub fn from_vocab_txt(path: impl AsRef<Path>, max_len: usize) -> Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let mut vocab = Map::new();
        for (i, line) in text.lines().enumerate() {
            let tok = line.trim_end_matches('\r');
            if !vocab.contains_key(tok) {
                vocab.insert(tok.to_string(), Value::from(i as u64));
            }
        }
        if vocab.is_empty() {
            return Err(malformed(path, "empty vocabulary"));
        }
        let id = |t: &str| {
            vocab
                .get(t)
                .and_then(|v| v.as_u64())
                .map(|v| v as u32)
                .ok_or_else(|| malformed(path, format!("vocabulary lacks {t}")))
        };
        let (pad_id, unk_id, cls_id, sep_id) = (id("[PAD]")?, id("[UNK]")?, id("[CLS]")?, id("[SEP]")?);
        let mut added = vec![];
        for (t, i) in [
            ("[PAD]", Some(pad_id)),
            ("[UNK]", Some(unk_id)),
            ("[CLS]", Some(cls_id)),
            ("[SEP]", Some(sep_id)),
            ("[MASK]", id("[MASK]").ok()),
        ] {
            if let Some(i) = i {
                added.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                                  "rstrip": false, "normalized": false, "special": true}));
            }
        }
        let doc = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", sep_id], "cls": ["[CLS]", cls_id]},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": Value::Object(vocab)}
        });
        let mut tok: Tokenizer = doc.to_string().parse().map_err(|e| malformed(path, e))?;
        if max_len < 2 {
            return Err(TokenizeError::Tokenizer(format!("max_len {max_len} < 2")));
        }
        tok.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(Self { tok, max_len, cls_id, sep_id, pad_id })
    }

    /// `[CLS] … [SEP]`, truncated to `max_len`, not padded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tok.encode(text, true).map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Right-padded with `[PAD]` to `pad_to` (≤ max_len) or the longest; `(ids, attention_mask)`.
    pub fn encode_batch_padded(&self, texts: &[&str], pad_to: Option<usize>) -> Result<IdsAndMask> {
        if let Some(n) = pad_to {
            if n > self.max_len {
                return Err(TokenizeError::Tokenizer(format!(
                    "pad_to {n} exceeds the maximum sequence length {}",
                    self.max_len
                )));
            }
        }
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t)).collect::<Result<_>>()?;
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let len = pad_to.unwrap_or(longest).max(longest);
        Ok(pad_batch(seqs, len, self.pad_id))
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }
    pub fn cls_id(&self) -> u32 {
        self.cls_id
    }
    pub fn sep_id(&self) -> u32 {
        self.sep_id
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}
