//! Limits on what one call may allocate or compute, so that hostile arguments fail with an
//! [`Error`](crate::Error) instead of aborting on allocation or running for minutes.

use crate::error::{bad, Result};

/// Largest image (width × height) an operation creates: the same limit as `vlsm`'s decoders
/// (`vlsm::io::MAX_PIXELS`), so every command accepts the same images.
pub const MAX_PIXELS: usize = 100_000_000;

/// Largest kernel width or height (filters, Gaussian kernels, median, adaptive threshold blocks,
/// structuring elements). Per-pixel work grows with the kernel; beyond this size a kernel is
/// slower than minutes on large images and, for the images this crate is used on, mostly border.
pub const MAX_KERNEL_SIZE: usize = 255;

/// Fails when a kernel of `kw x kh` exceeds [`MAX_KERNEL_SIZE`].
pub(crate) fn check_kernel_limit(op: &'static str, kw: usize, kh: usize) -> Result<()> {
    if kw > MAX_KERNEL_SIZE || kh > MAX_KERNEL_SIZE {
        return Err(bad(op, format!("kernel size {kw}x{kh} is larger than the limit of {MAX_KERNEL_SIZE}")));
    }
    Ok(())
}

/// Fails when an output of `w x h` pixels exceeds [`MAX_PIXELS`].
pub(crate) fn check_output_size(op: &'static str, w: usize, h: usize) -> Result<()> {
    match w.checked_mul(h) {
        Some(n) if n <= MAX_PIXELS => Ok(()),
        _ => Err(bad(
            op,
            format!(
                "destination size {w}x{h} = {} pixels is more than the limit of {MAX_PIXELS}",
                (w as u128) * (h as u128)
            ),
        )),
    }
}
