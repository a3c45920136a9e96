//! `vlsm serve`: an HTTP API and a web page for interactive prompt segmentation.
//!
//! The model runs on blocking threads behind a [`Gate`] (a semaphore with a bounded waiting
//! count); image-encoder features are cached per upload content hash in a small LRU, so a new
//! prompt on a known image runs only the text encoder and the decoder.

mod api;
mod cache;
mod dataset;
mod gate;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use vlsm::pipeline::Segmenter;

pub use cache::{CacheStats, FeatureCache};
pub use gate::Gate;

/// Command-line options of `vlsm serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Model directory (Hugging Face CLIPSeg layout or a `vlsm train` TextUNet); default: the built-in model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Allow a non-loopback --addr (the server has no authentication).
    #[arg(long)]
    pub allow_remote: bool,
    /// Dataset folder (medvlsm layout) that "save to dataset" appends to; saving is disabled without it.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 32)]
    pub max_upload_mb: u64,
    /// Largest image (width × height) accepted.
    #[arg(long, default_value_t = 25_000_000)]
    pub max_pixels: u64,
    /// Per-request time limit in seconds (504 after it).
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Requests that may wait for the model; more get 503.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Requests that run the model at once.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Images whose encoder output is kept (LRU).
    #[arg(long, default_value_t = 32)]
    pub cache: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: None,
            addr: "127.0.0.1:8080".into(),
            allow_remote: false,
            dataset: None,
            max_upload_mb: 32,
            max_pixels: 25_000_000,
            timeout_secs: 60,
            queue: 16,
            workers: 1,
            cache: 32,
        }
    }
}

/// Limits as the server applies them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
    pub timeout: Duration,
    pub max_prompts: usize,
    pub max_prompt_chars: usize,
}

/// Everything the handlers share.
pub struct AppState {
    pub segmenter: Arc<Segmenter>,
    pub cache: FeatureCache,
    pub gate: Gate,
    pub limits: Limits,
    pub dataset: Option<dataset::DatasetDir>,
    /// Extra time spent holding the model, for tests of the queue, timeout and shutdown.
    pub model_delay: Duration,
}

impl AppState {
    pub fn new(opts: &Options, segmenter: Segmenter) -> Result<Self> {
        if opts.workers == 0 {
            bail!("--workers must be at least 1");
        }
        if opts.cache == 0 {
            bail!("--cache must be at least 1");
        }
        let dataset = match &opts.dataset {
            Some(d) => Some(dataset::DatasetDir::open(d)?),
            None => None,
        };
        Ok(AppState {
            segmenter: Arc::new(segmenter),
            cache: FeatureCache::new(opts.cache),
            gate: Gate::new(opts.workers, opts.queue),
            limits: Limits {
                max_upload_bytes: (opts.max_upload_mb.saturating_mul(1 << 20)).min(usize::MAX as u64) as usize,
                max_pixels: opts.max_pixels,
                timeout: Duration::from_secs(opts.timeout_secs.max(1)),
                max_prompts: 16,
                max_prompt_chars: 500,
            },
            dataset,
            model_delay: Duration::ZERO,
        })
    }
}

/// The router with every route and limit layer.
pub fn router(state: Arc<AppState>) -> Router {
    let max = state.limits.max_upload_bytes;
    api::routes()
        .with_state(state)
        // The extractor's own 2 MB default would otherwise win over ours.
        .layer(DefaultBodyLimit::max(max))
        .layer(RequestBodyLimitLayer::new(max))
}

/// Resolves `addr` and refuses non-loopback addresses unless `allow_remote`.
pub fn resolve_addr(addr: &str, allow_remote: bool) -> Result<SocketAddr> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| anyhow!("--addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| anyhow!("--addr {addr}: resolves to no address"))?;
    if !a.ip().is_loopback() && !allow_remote {
        bail!("--addr {addr}: not a loopback address; the server has no authentication, pass --allow-remote to expose it anyway");
    }
    Ok(a)
}

/// Loads the model and serves until ctrl-c or SIGTERM, then finishes in-flight requests.
pub fn run(opts: Options) -> Result<()> {
    let addr = resolve_addr(&opts.addr, opts.allow_remote)?;
    let model = match &opts.model {
        Some(m) => m.clone(),
        None => vlsm::default_model::default_model_dir().context("no --model given and no built-in model")?,
    };
    let segmenter = Segmenter::load(&model).with_context(|| format!("cannot load model {}", model.display()))?;
    let state = Arc::new(AppState::new(&opts, segmenter)?);
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let result = rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        println!(
            "vlsm serve: model {} ({}), listening on http://{local}/",
            model.display(),
            state.segmenter.kind_name()
        );
        serve(listener, state, shutdown_signal()).await
    });
    // A model call that outlived its request's timeout may still be running; don't wait forever.
    rt.shutdown_timeout(Duration::from_secs(5));
    eprintln!("vlsm serve: stopped");
    result
}

/// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await.context("server error")
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("vlsm serve: shutting down, finishing in-flight requests");
}
