//! Reading images, masks and medical formats; atomic writes; .npy.
//!
//! Every error is one line that names the file and the problem; bad input never panics.

mod dicom;
mod nifti;
mod npy;
mod raster;
mod window;
mod write;

pub use npy::{read_npy_f32, write_npy_f32};
pub use raster::{image_dimensions, read_mask, read_mask_any, read_rgb, MAX_PIXELS};
pub use window::{read_image_any, read_scalar, window_to_u8, ReadOptions, ScalarImage, Window, Windowing};
pub use write::{write_atomic, write_png_atomic};
