//! All integration tests of `vlsm-cli` in one binary (one link, one process; see support for shared helpers).

mod bad_inputs;
mod classify_cli;
mod eval_cli;
mod eval_kinds_cli;
mod eval_volume_cli;
mod hostile_cli;
mod hub_cli;
mod imgproc_cli;
mod prompts_cli;
mod segment_cli;
mod series_cli;
mod support;
mod train_cli;
mod unet_vit_cli;
mod volume_cli;
