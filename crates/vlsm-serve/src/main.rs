//! `vlsm-serve`: the same server as `vlsm serve`, as its own binary (used by the tests).

use clap::Parser;

#[derive(Parser)]
#[command(name = "vlsm-serve", version, about = "HTTP API and web page for prompt segmentation")]
struct Cli {
    #[command(flatten)]
    opts: vlsm_serve::Options,
}

fn main() -> std::process::ExitCode {
    match vlsm_serve::run(Cli::parse().opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
