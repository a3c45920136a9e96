//! All integration tests of `vlsm` in one binary (one link, one process; see support for shared helpers).

mod arch_from_weights;
mod biomedclip_parity;
mod clipseg_parity;
mod clipseg_train;
mod cris_long_prompt;
mod cris_parity;
mod data_dataset;
mod data_hostile;
mod data_prompts;
mod fuzz_props;
mod io_dicom;
mod io_formats;
mod io_hostile;
mod io_volume;
mod jpeg_parity;
mod metrics_3d;
mod metrics_monai;
mod model_files_hostile;
mod preprocess_parity;
mod segmenter_kinds;
mod support;
mod swin_parity;
mod textunet_gen2;
mod textunet_train;
mod tokenizer_parity;
mod train_loop;
mod train_parity;
mod unet_train;
mod vit_parity;
mod vlsm_kinds_train;
mod zero_shot_parity;

/// Notes each thread's largest allocation (see support::alloc_probe; the fuzz properties use it).
#[global_allocator]
static ALLOC: support::alloc_probe::Probe = support::alloc_probe::Probe;
