//! Reading images, masks and medical formats; atomic writes; .npy; the content hash.
//!
//! `read` sniffs each file's format (`sniff`) and dispatches to the leaf readers (`raster`, which
//! hands JPEG to `jpeg`; `dicom`, `nifti`), which share only `types`; `window` maps single-channel
//! values to 8 bits.
//! Every error is one line that names the file and the problem; bad input never panics.

mod dicom;
mod dicom_codecs;
mod dicom_seg;
mod dicom_series;
mod hash;
mod j2k;
mod jpeg;
mod jpegls;
mod nifti;
mod npy;
mod raster;
mod read;
mod sniff;
mod types;
mod window;
mod write;

pub use dicom::{read_dicom_pixels, DicomPixels};
pub use dicom_seg::{dicom_seg_bytes, write_dicom_seg, SegOptions};
pub use dicom_series::{dicom_series_uid, read_dicom_series, DicomSeries, SliceSource, MAX_SERIES_VOXELS};
pub use hash::{fnv1a_mix, Fnv64, FNV_OFFSET, FNV_PRIME};
pub use nifti::{
    put_slice, read_volume, take_slice, volume_dimensions, write_like, NiftiHeader, OutputData, SliceData, Volume,
    VoxelData, DEFAULT_MAX_VOXELS,
};
pub use npy::{read_npy_f32, write_npy_f32};
pub use read::{
    file_kind, image_dimensions, read_image_any, read_mask, read_mask_any, read_raster, read_rgb, read_scalar,
    FileKind, MAX_FILE_BYTES,
};
pub use types::{inflated_bytes, ReadOptions, ScalarImage, Window, Windowing, MAX_PIXELS};
pub use window::{parse_window, resolve_window, window_to_u8, WindowMap, WINDOW_PRESETS};
pub use write::{write_atomic, write_atomic_with, write_png_atomic, write_safetensors_atomic};
