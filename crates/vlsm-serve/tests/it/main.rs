//! All integration tests of `vlsm-serve` in one binary (one link, one process; see support for shared helpers).

mod api;
mod bombs;
mod e2e;
mod fuzz_multipart;
mod hub;
mod protocols;
mod security;
mod sigterm;
mod support;
mod train;
mod volumes;
