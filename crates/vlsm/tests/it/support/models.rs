//! Tiny model directories for the tests: the random CLIPSeg fixture, and seeded random CRIS and ViT
//! directories written on the spot. Shared with vlsm-cli's tests through `#[path]`.

use std::path::{Path, PathBuf};

/// The tiny random CLIPSeg of `tests/fixtures/clipseg/tiny_complex`.
pub fn tiny_clipseg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clipseg/tiny_complex")
}

/// A CRIS with random weights (from `seed`) small enough for tests, with the real CLIP vocabulary,
/// written to `out`.
pub fn tiny_cris(out: &Path, seed: u64) -> PathBuf {
    let c = serde_json::json!({
        "backbone": {"embed_dim": 32, "image_resolution": 64, "vision_layers": [1, 1, 1, 1], "vision_width": 8,
                     "context_length": 16, "vocab_size": 49408, "transformer_width": 32,
                     "transformer_heads": 2, "transformer_layers": 1},
        "word_len": 8, "fpn_in": [64, 128, 32], "fpn_out": [16, 32, 32], "vis_dim": 32, "word_dim": 32,
        "num_layers": 1, "num_head": 2, "dim_ffn": 32, "img_size": 64
    });
    let bpe = vlsm::tokenize::find_bpe().unwrap();
    vlsm::train::tasks::random_init::write_cris(out, &c, seed, Some(&bpe)).unwrap();
    out.to_path_buf()
}

/// A ViT directory with a config and no weights (a seeded random backbone), written to `out`.
pub fn tiny_vit(out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(
        out.join("config.json"),
        r#"{"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "image_size": 16, "patch_size": 8}"#,
    )
    .unwrap();
    out.to_path_buf()
}
