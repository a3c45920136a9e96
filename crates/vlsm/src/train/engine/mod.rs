//! The training engine, independent of any model: the loop over a [`Trainable`] task
//! ([`trainer`]), AdamW with saveable state ([`optim`]), the LR schedule and early stopping
//! ([`sched`]), losses ([`loss`]), the run's checkpoints with exact resume ([`state`]), the
//! memory-mapped store of frozen-encoder features ([`cache`]), the TOML config ([`config`]) and
//! CSV / TensorBoard / PNG logs ([`log`], [`tensorboard`], [`plot`]).

pub mod cache;
pub mod config;
pub mod log;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod sched;
pub mod state;
pub mod tensorboard;
pub mod trainer;

pub use trainer::Trainable;
