//! `vlsm serve`: the HTTP API and web page of crates/vlsm-serve.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub opts: vlsm_serve::Options,
}

pub fn run(a: ServeArgs) -> Result<()> {
    vlsm_serve::run(a.opts)
}
