//! All integration tests of `vlsm-serve` in one binary (one link, one process; see support for shared helpers).

mod support;
mod api;
mod e2e;
mod sigterm;
mod security;
