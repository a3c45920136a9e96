//! Image preprocessing as the reference image processors do it.
//!
//! * [`pil_resize`] / [`pil_resize_gray`] / [`pil_resize_raw`] (`pil_resize.rs`): Pillow's
//!   `Image.resize` on 8-bit images, bit-exact.
//! * [`ImageProcessorConfig`] (`processor.rs`): a HF `preprocessor_config.json` (`ViTImageProcessor`,
//!   `CLIPImageProcessor`) and [`ImageProcessorConfig::preprocess`], which reproduces the PIL
//!   ("slow") processor's `pixel_values`: resize (PIL) → center crop → rescale (`f64` multiply,
//!   then `f32`) → normalise (`(x - mean) / std` in `f32`); [`ImageProcessorConfig::open_clip`] is
//!   open_clip's evaluation transform (torchvision's crop rounding, [`CropRounding`]).
//! * [`visual_prompt`] (`visual_prompt.rs`): the CLIPSeg paper's visual prompt engineering, as
//!   defined in `tools/make_clipseg_fixtures.py`.

mod pil_resize;
mod processor;
mod visual_prompt;

pub use pil_resize::{pil_resize, pil_resize_gray, pil_resize_raw, Filter};
pub use processor::{
    center_crop, center_crop_torchvision, CropRounding, ImageProcessorConfig, ResizeTarget, OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
};
pub use visual_prompt::{visual_prompt, VISUAL_PROMPT_DARKEN, VISUAL_PROMPT_RADIUS, VISUAL_PROMPT_SIGMA};

/// Errors from preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed image processor config {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, PreprocessError>;
