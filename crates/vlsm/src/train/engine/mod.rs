//! The training engine (move in progress).

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

use state as checkpoint;
