//! Classical image processing with OpenCV semantics, written in plain Rust.
//!
//! Names follow OpenCV's API in snake_case (`cvt_color`, `gaussian_blur`, `warp_affine`, ...), flags
//! are enums, border handling is explicit ([`BorderType`], default reflect-101), and every argument
//! OpenCV would reject is an [`Error`] rather than a panic. 8-bit results reproduce OpenCV's
//! fixed-point arithmetic so that they are byte-identical to `cv2` (see `tests/it/golden.rs`).

pub mod bench;
mod border;
mod canny;
pub mod color;
pub mod draw;
pub mod edges;
mod error;
pub mod features;
pub mod filter;
mod filter2d8;
mod gauss8;
pub mod geometry;
pub mod hist;
mod image;
mod kernels8;
pub mod limits;
pub mod morphology;
pub mod npy;
mod parallel;
mod remap8;
mod resize8;
pub mod segment;
mod simd;
pub mod threshold;
mod warp8;

pub use border::{border_interpolate, BorderType};
pub use color::{cvt_color, ColorConversion};
pub use draw::{circle, rectangle};
pub use edges::{canny, laplacian, scharr, sobel};
pub use error::{Error, Result};
pub use features::harris::{corner_harris, corner_min_eigen_val, good_features_to_track};
pub use features::sift::{match_ratio, sift_detect, sift_detect_and_compute, KeyPoint};
pub use filter::{blur, box_filter, filter_2d, gaussian_blur, get_gaussian_kernel, median_blur, sep_filter_2d};
pub use geometry::{get_rotation_matrix_2d, resize, warp_affine, Interpolation};
pub use hist::{calc_hist, convert_scale_abs, equalize_hist, lut};
pub use image::{Image, Pixel};
pub use limits::{MAX_KERNEL_SIZE, MAX_PIXELS};
pub use morphology::{dilate, erode, get_structuring_element, morphology_ex, MorphOp, MorphShape};
pub use segment::{
    connected_components_with_stats, kmeans, kmeans_with, split_merge, Components, KmeansInit, KmeansResult,
};
pub use threshold::{adaptive_threshold, threshold, AdaptiveMethod, ThresholdType};
