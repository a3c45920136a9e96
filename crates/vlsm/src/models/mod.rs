//! Models, one file each, in the manner of candle-transformers: a `Config` that deserialises the
//! reference `config.json`, modules named like the reference state-dict keys, and a `forward`
//! that follows the paper.

pub mod bert;
pub mod biomedclip;
pub mod biomedclipseg;
pub mod clip;
pub mod clipseg;
pub mod cris;
pub mod fused;
pub mod conv;
mod conv_direct;
pub mod interp;
pub mod norm;
pub mod resnet_clip;
pub mod seg;
pub mod swin;
pub mod textunet;
pub mod unet;
pub mod unet_ops;
pub mod vit;

pub use seg::{ModelKind, SegModel};

use candle_core::{Result, Tensor};

/// `x * sigmoid(1.702 x)`, the activation of OpenAI's CLIP ("quick_gelu"). Frozen encoders
/// take a fused, multi-threaded CPU path (candle's sigmoid is one thread and three passes);
/// anything that needs a gradient takes the composed ops.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && !x.track_op() {
        return x.contiguous()?.apply_op1_no_bwd(&QuickGelu);
    }
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

struct QuickGelu;

impl candle_core::CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "quick-gelu"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let candle_core::CpuStorage::F32(v) = s else { candle_core::bail!("quick_gelu: f32 only") };
        let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("quick_gelu: not contiguous") };
        let mut out = vec![0f32; b - a];
        out.par_chunks_mut(1 << 14).zip(v[a..b].par_chunks(1 << 14)).for_each(|(o, i)| {
            for (o, &x) in o.iter_mut().zip(i) {
                *o = x / (1.0 + (-1.702 * x).exp());
            }
        });
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }
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
