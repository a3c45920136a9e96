//! The CPU kernels of vlsm, and nearly all of its `unsafe` code.
//!
//! - [`fused`]: transformer inference on frozen f32 weights (linear with bias, residual and
//!   activation in one pass; multi-head attention on a packed q/k/v; LayerNorm; QuickGELU).
//! - [`conv`]: same-padded stride-1 convolution with a hand-written backward for training,
//!   on the direct convolution of `conv_direct`.
//! - [`norm`]: GroupNorm + ReLU, alone or fused with the convolution before it.
//! - [`unet_ops`]: the U-Net's glue (2x2 max-pool, upsample + concatenation, FiLM).
//!
//! Each kernel is a candle op (or a function of tensors) with the composed candle ops as its
//! reference in the tests. The vectorised copies are picked at run time in one place,
//! `simd`; raw pointers shared between rayon tasks go through one type, `parallel::SendPtr`.
//! Every `unsafe fn` has a `# Safety` section and every `unsafe` block a `// SAFETY:` comment.

pub mod conv;
mod conv_direct;
pub mod fused;
pub mod norm;
mod parallel;
mod simd;
pub mod unet_ops;
