//! Embeds the built-in model (`models/default`) into the library when it is present, so the
//! `vlsm` binary works wherever it is copied.

use std::path::Path;

const FILES: &[&str] =
    &["config.json", "model.safetensors", "preprocessor_config.json", "bpe_simple_vocab_16e6.txt.gz"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vlsm_default_model)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
    for f in FILES {
        println!("cargo::rerun-if-changed={}", dir.join(f).display());
    }
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        println!("cargo::rustc-cfg=vlsm_default_model");
    }
}
