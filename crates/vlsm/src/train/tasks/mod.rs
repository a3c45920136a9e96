//! The per-model training tasks: each implements [`Trainable`](super::engine::trainer::Trainable)
//! for one model kind and has a `train` that the engine runs ([`super::engine::trainer::train`]).
//! Tasks never import each other: what several share is in [`common`]; [`random_init`] draws
//! seeded weights by parameter name and writes random-weight model directories.

pub mod clipseg;
pub mod common;
pub mod cris;
pub mod random_init;
pub mod textunet;
pub mod unet;
pub mod vit_classify;
