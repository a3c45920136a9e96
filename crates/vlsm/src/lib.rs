//! vlsm: language-guided medical image segmentation.
//!
//! Module map (see docs/architecture.md): `tokenize` (CLIP BPE, WordPiece), `preprocess`
//! (image processor semantics of the reference checkpoints), `io` (image/mask/medical formats,
//! atomic writes, .npy), `models` (one file per model; `models::seg` the segmentation-model
//! interface), `weights` (weight files, model-kind detection), `loader` (model directories),
//! `hub` (Hugging Face Hub ids → cached snapshot directories),
//! `metrics`, `data`, `pipeline`.

pub mod classify;
pub mod data;
pub mod default_model;
pub mod eval;
pub mod hub;
pub mod io;
pub mod loader;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod preprocess;
pub mod threads;
pub mod tokenize;
pub mod train;
pub mod volume;
pub mod weights;
pub mod zero_shot;
