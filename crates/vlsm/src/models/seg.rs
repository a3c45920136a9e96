//! The segmentation-model interface. `pipeline::Segmenter` drives any [`SegModel`] the same way:
//! preprocess with its image processor, encode images once into prompt-independent (cacheable)
//! features, turn each prompt into a condition, decode features and conditions into logits.
//!
//! A model kind is its model file (the network with `new(vb, &cfg)`, and `impl SegModel`), one
//! line in the `model_kinds!` registry below (its variant and `model_type` name) and one arm in
//! `loader::load` (reading its directory); `vlsm train` dispatches on the same enum, and the
//! compiler points at both matches when a kind is added.

use std::fmt;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::preprocess::ImageProcessorConfig;

/// Defines [`ModelKind`], [`ModelKind::ALL`] and [`ModelKind::as_str`] from one list, so that a
/// kind is registered by one line.
macro_rules! model_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The segmentation architectures: `model_type` in a model directory's `config.json` and
        /// `model.kind` in a training config.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ModelKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl ModelKind {
            /// Every kind, in the order error messages list them.
            pub const ALL: &'static [ModelKind] = &[$(ModelKind::$variant),*];

            /// The name in `config.json` and in training configs (as serde writes it).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ModelKind::$variant => $name,)*
                }
            }
        }
    };
}

// The registry of segmentation model kinds: one line each.
model_kinds! {
    /// CLIPSeg (Hugging Face `CLIPSegForImageSegmentation`), `models::clipseg`.
    ClipSeg => "clipseg",
    /// The built-in text-conditioned U-Net, `models::textunet`.
    TextUNet => "textunet",
    /// The text-free U-Net baseline, `models::unet`.
    UNet => "unet",
    /// BiomedCLIPSeg and BiomedCLIPSeg-D, `models::biomedclipseg`.
    BiomedClipSeg => "biomedclipseg",
    /// CRIS, `models::cris`.
    Cris => "cris",
}

impl ModelKind {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// The names of every kind, for error messages.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.as_str()).collect()
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a segmentation model offers `pipeline::Segmenter`. Features are per image batch: the
/// prompt-dependent half (`decode`) reads one image's features (batch 1) against N conditions.
pub trait SegModel: Send + Sync {
    fn kind(&self) -> ModelKind;

    /// The preprocessing the model was trained with. A directory's `preprocessor_config.json`
    /// overrides it for the kinds whose loader reads one.
    fn image_processor(&self) -> ImageProcessorConfig;

    /// The probability threshold the model was trained or published with.
    fn default_threshold(&self) -> f32 {
        0.5
    }

    /// Whether prompts change the output (false for a text-free model, which ignores them).
    fn uses_text(&self) -> bool {
        true
    }

    /// Whether `image_conditional` is available (an example image and mask as the prompt).
    fn takes_image_prompts(&self) -> bool {
        false
    }

    /// Prompt-independent features for pixel values [B, 3, H, W], each with batch B.
    fn encode_images(&self, pixel_values: &Tensor) -> Result<Vec<Tensor>>;

    /// One condition row per prompt ([N, ...]), on `dev`.
    fn text_conditional(&self, prompts: &[String], dev: &Device) -> Result<Tensor>;

    /// The condition [1, D] for (already prompt-engineered) example pixel values [1, 3, H, W].
    fn image_conditional(&self, _pixel_values: &Tensor) -> Result<Tensor> {
        anyhow::bail!("{}: this model takes no image prompts", self.kind())
    }

    /// Logits [N, h, w] at model resolution for one image's features and N conditions.
    fn decode(&self, features: &[Tensor], cond: &Tensor) -> Result<Tensor>;

    /// Whether the model has a trained presence head.
    fn has_presence_head(&self) -> bool {
        false
    }

    /// `decode`, and the presence head's logits [N] when the model has one.
    fn decode_with_presence(&self, features: &[Tensor], cond: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((self.decode(features, cond)?, None))
    }

    /// The presence probability at or above which the target counts as present (head models).
    fn presence_threshold(&self) -> f32 {
        0.5
    }
}

/// A network and the tokenizer its prompts go through.
pub struct WithTokenizer<M, T> {
    pub model: M,
    pub tokenizer: T,
}

/// Square-input preprocessing: PIL bilinear resize to `size` x `size`, then normalise with
/// `mean` and `std` (TextUNet, UNet and CRIS).
pub fn square_processor(size: usize, mean: [f32; 3], std: [f32; 3]) -> ImageProcessorConfig {
    ImageProcessorConfig { image_mean: mean, image_std: std, ..ImageProcessorConfig::clipseg(size as u32) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for &k in ModelKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ModelKind>(&format!("\"{k}\"")).unwrap(), k);
            assert_eq!(ModelKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(ModelKind::names(), ["clipseg", "textunet", "unet", "biomedclipseg", "cris"]);
        assert_eq!(ModelKind::from_name("fcn"), None);
    }
}
