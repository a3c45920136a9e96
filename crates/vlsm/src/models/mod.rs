//! Models, one file each, in the manner of candle-transformers: a `Config` that deserialises the
//! reference `config.json`, modules named like the reference state-dict keys, and a `forward`
//! that follows the paper.

pub mod bert;
pub mod biomedclip;
pub mod biomedclipseg;
pub mod clip;
pub mod clipseg;
pub mod cris;
pub mod interp;
pub mod resnet_clip;
pub mod seg;
pub mod swin;
pub mod textunet;
pub mod unet;
pub mod vit;

pub use seg::{ModelKind, SegModel};

use candle_core::{Result, Tensor};

/// `x * sigmoid(1.702 x)`, the activation of OpenAI's CLIP ("quick_gelu"): the fused CPU
/// kernel when nothing needs a gradient, the composed ops otherwise.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    vlsm_kernels::fused::quick_gelu(x)
}

/// Activations named as in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    #[default]
    QuickGelu,
    Gelu,
    Relu,
    GeluNew,
    #[serde(rename = "gelu_pytorch_tanh")]
    GeluPytorchTanh,
}

impl HiddenAct {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            HiddenAct::QuickGelu => quick_gelu(x),
            HiddenAct::Gelu => x.gelu_erf(),
            HiddenAct::Relu => x.relu(),
            HiddenAct::GeluNew | HiddenAct::GeluPytorchTanh => x.gelu(),
        }
    }
}
