//! vlsm: language-guided medical image segmentation.
//!
//! Module map (see docs/architecture.md): `tokenize` (CLIP BPE, WordPiece), `preprocess`
//! (image processor semantics of the reference checkpoints), `io` (image/mask/medical formats,
//! atomic writes, .npy), `models` (one file per model), `checkpoint` (weight loading),
//! `metrics`, `data`, `pipeline`.

pub mod checkpoint;
pub mod classify;
pub mod data;
pub mod default_model;
pub mod eval;
pub mod io;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod preprocess;
pub mod tokenize;
pub mod train;
pub mod zero_shot;
