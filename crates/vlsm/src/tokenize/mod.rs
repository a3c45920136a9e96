//! Tokenizers: CLIP byte-level BPE and BERT WordPiece.
//!
//! Both are thin, checked wrappers over the `tokenizers` crate, configured exactly as
//! transformers' `CLIPTokenizerFast` / `BertTokenizerFast` serialise themselves, so that a
//! tokenizer built from raw vocabulary files gives the same ids as one loaded from a model
//! directory's `tokenizer.json`.

pub mod clip_bpe;
pub mod wordpiece;

pub use clip_bpe::ClipTokenizer;
pub use wordpiece::WordPieceTokenizer;

use std::path::{Path, PathBuf};

/// Errors from loading or running a tokenizer. Every file error names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed tokenizer file {path}: {msg}")]
    Malformed { path: PathBuf, msg: String },
    #[error("tokenizer directory {0} has neither tokenizer.json nor vocab.json + merges.txt")]
    NoTokenizerFiles(PathBuf),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

pub type Result<T> = std::result::Result<T, TokenizeError>;

/// `(ids, attention_mask)`, one row per sequence.
pub type IdsAndMask = (Vec<Vec<u32>>, Vec<Vec<u32>>);

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| TokenizeError::Io { path: path.to_path_buf(), source })
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes)
        .map_err(|e| TokenizeError::Malformed { path: path.to_path_buf(), msg: format!("not UTF-8: {e}") })
}

pub(crate) fn malformed(path: &Path, msg: impl std::fmt::Display) -> TokenizeError {
    TokenizeError::Malformed { path: path.to_path_buf(), msg: msg.to_string() }
}

/// Pads (right side) already-truncated id sequences to `len`, returning `(ids, attention_mask)`.
pub(crate) fn pad_batch(seqs: Vec<Vec<u32>>, len: usize, pad_id: u32) -> IdsAndMask {
    let mut ids = Vec::with_capacity(seqs.len());
    let mut mask = Vec::with_capacity(seqs.len());
    for mut s in seqs {
        let n = s.len();
        let mut m = vec![1u32; n];
        s.resize(len, pad_id);
        m.resize(len, 0);
        ids.push(s);
        mask.push(m);
    }
    (ids, mask)
}

/// OpenAI's CLIP BPE merges file, as shipped with CLIP and in `models/default`.
pub const BPE_FILE: &str = "bpe_simple_vocab_16e6.txt.gz";

/// Where the CLIP BPE file is looked for: `VLSM_BPE`, then `models/default` and
/// `../shared/vocab` beside the source tree, then the built-in model's copy (beside the binary,
/// or unpacked from the binary), so a binary moved away from its checkout still finds one.
pub fn find_bpe() -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("VLSM_BPE") {
        return Ok(std::path::PathBuf::from(p));
    }
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(p) =
        [here.join("../../models/default").join(BPE_FILE), here.join("../../../shared/vocab").join(BPE_FILE)]
            .into_iter()
            .find(|c| c.is_file())
    {
        return Ok(p);
    }
    crate::default_model::default_model_dir()
        .map(|d| d.join(BPE_FILE))
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("{BPE_FILE} not found (set VLSM_BPE to its path)"))
}
