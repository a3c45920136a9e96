//! `vlsm serve`: an HTTP API and a web page for interactive prompt segmentation.
//!
//! The model runs on blocking threads behind a [`Gate`] (a semaphore with a bounded waiting
//! count); image-encoder features are cached per upload content hash in a small LRU, so a new
//! prompt on a known image runs only the text encoder and the decoder.

mod api;
mod cache;
mod dataset;
mod gate;
mod guard;
mod labelstudio;
mod listen;
mod monailabel;
#[doc(hidden)]
pub mod testkit;
pub mod train;
pub mod versions;
mod volume;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use vlsm::pipeline::Segmenter;

pub use api::rle;
pub use cache::{CacheStats, FeatureCache};
pub use gate::Gate;
pub use labelstudio::ls_rle;
pub use listen::ConnCount;
pub use volume::{max_zip_bytes, zip_inflated_bytes, MAX_ZIP_ENTRIES};

/// Command-line options of `vlsm serve`.
#[derive(clap::Args, Clone)]
pub struct Options {
    /// Model directory (Hugging Face CLIPSeg layout or a `vlsm train` TextUNet) or Hugging Face Hub
    /// id `org/name[@revision]` (HF cache; downloaded unless HF_HUB_OFFLINE=1); default: the built-in model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Allow a non-loopback --addr. Pair it with --token and --allowed-host (see docs/security.md).
    #[arg(long)]
    pub allow_remote: bool,
    /// A host name (or name:port) that clients may use in the Host header besides the bound address,
    /// localhost, 127.0.0.1 and [::1]; repeatable. '*' turns the Host check off (behind a proxy that checks it).
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` on every /api request.
    #[arg(long, env = "VLSM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Dataset folder (medvlsm layout) that "save to dataset" appends to; saving is disabled without it.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Label Studio's address, for the ML backend routes: task images given as `/data/...` paths
    /// or as URLs under it are fetched from it (nothing else is fetched).
    #[arg(long, env = "LABEL_STUDIO_URL", value_name = "URL")]
    pub label_studio_url: Option<String>,
    /// Label Studio API key, sent as `Authorization: Token KEY` when fetching task images.
    #[arg(long, env = "LABEL_STUDIO_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub label_studio_api_key: Option<String>,
    /// Largest request body in MiB (at least 1).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_mb: u64,
    /// Largest image (width × height) accepted (at least 1).
    #[arg(long, default_value_t = 25_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Largest volume (voxels of a NIfTI file or a zipped DICOM series) accepted (at least 1).
    #[arg(long, default_value_t = 1 << 27, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_voxels: u64,
    /// Per-request time limit in seconds (504 after it; at least 1).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Requests that may wait for the model; more get 503 (0: none wait).
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Requests that run the model at once (at least 1).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub workers: usize,
    /// Images whose encoder output is kept (LRU; at least 1).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub cache: usize,
    /// Seconds a client has to send a complete request head (the connection is closed after it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a complete request body (408 after it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Open connections at most; further clients wait in the listen backlog.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub max_connections: usize,
    /// On SIGTERM or ctrl-c, seconds that requests already being answered get before their
    /// connections are closed (idle and partial connections are closed at once).
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Allow fine-tuning the served model on the --dataset's saved corrections (POST /api/train);
    /// versions are written to DIR/.vlsm/models (docs/serve.md).
    #[arg(long)]
    pub train: bool,
    /// Threads a fine-tune may use (default: half the cores); segmentation keeps the rest.
    #[arg(long, value_parser = at_least_one)]
    pub train_threads: Option<usize>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("model", &self.model)
            .field("addr", &self.addr)
            .field("allow_remote", &self.allow_remote)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("dataset", &self.dataset)
            .field("label_studio_url", &self.label_studio_url)
            .field("label_studio_api_key", &self.label_studio_api_key.as_ref().map(|_| "<hidden>"))
            .field("max_upload_mb", &self.max_upload_mb)
            .field("max_pixels", &self.max_pixels)
            .field("max_voxels", &self.max_voxels)
            .field("timeout_secs", &self.timeout_secs)
            .field("queue", &self.queue)
            .field("workers", &self.workers)
            .field("cache", &self.cache)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("drain_secs", &self.drain_secs)
            .field("train", &self.train)
            .field("train_threads", &self.train_threads)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: None,
            addr: "127.0.0.1:8080".into(),
            allow_remote: false,
            allowed_hosts: Vec::new(),
            token: None,
            dataset: None,
            label_studio_url: None,
            label_studio_api_key: None,
            max_upload_mb: 32,
            max_pixels: 25_000_000,
            max_voxels: 1 << 27,
            timeout_secs: 60,
            queue: 16,
            workers: 1,
            cache: 32,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 256,
            drain_secs: 10,
            train: false,
            train_threads: None,
        }
    }
}

/// Limits as the server applies them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
    pub max_voxels: u64,
    pub timeout: Duration,
    pub max_prompts: usize,
    pub max_prompt_chars: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub drain: Duration,
}

/// Everything the handlers share.
pub struct AppState {
    /// The served model; read it once per request ([`AppState::segmenter`]).
    pub models: versions::Models,
    /// Fine-tuning (`--train`).
    pub train: Option<train::Trainer>,
    pub cache: FeatureCache,
    pub gate: Gate,
    pub limits: Limits,
    pub dataset: Option<dataset::DatasetDir>,
    /// Who may talk to the server (Host allow-list, bearer token).
    pub access: guard::Access,
    /// Open connections now and at most so far.
    pub conns: listen::ConnCount,
    /// Images uploaded to the MONAI Label datastore and sessions (bounded, in memory).
    pub(crate) uploads: monailabel::Uploads,
    /// Where the Label Studio routes may fetch task images from.
    pub(crate) label_studio: labelstudio::Remote,
    /// Extra time spent holding the model, for tests of the queue, timeout and shutdown.
    pub model_delay: Duration,
    /// Extra time spent in post-processing (after the model), for tests of its bound.
    pub post_delay: Duration,
}

impl AppState {
    pub fn new(opts: &Options, segmenter: Segmenter) -> Result<Self> {
        validate(opts)?;
        let dataset = match &opts.dataset {
            Some(d) => Some(dataset::DatasetDir::open(d)?),
            None => None,
        };
        if opts.train && dataset.is_none() {
            bail!("--train needs --dataset DIR (the saved corrections it fine-tunes on)");
        }
        let train = match (&dataset, opts.train) {
            (Some(d), true) => {
                Some(train::Trainer::new(&d.root, opts.train_threads.unwrap_or_else(train::default_threads))?)
            }
            _ => None,
        };
        Ok(AppState {
            models: versions::Models::new(segmenter),
            train,
            cache: FeatureCache::new(opts.cache),
            gate: Gate::new(opts.workers, opts.queue),
            limits: Limits {
                max_upload_bytes: (opts.max_upload_mb.saturating_mul(1 << 20)).min(usize::MAX as u64) as usize,
                max_pixels: opts.max_pixels,
                max_voxels: opts.max_voxels,
                timeout: Duration::from_secs(opts.timeout_secs),
                max_prompts: 16,
                max_prompt_chars: 500,
                header_timeout: Duration::from_secs(opts.header_timeout_secs),
                body_timeout: Duration::from_secs(opts.body_timeout_secs),
                max_connections: opts.max_connections,
                drain: Duration::from_secs(opts.drain_secs),
            },
            dataset,
            access: guard::Access::new(&allowed_hosts(opts), opts.token.clone())?,
            conns: listen::ConnCount::default(),
            uploads: Default::default(),
            label_studio: labelstudio::Remote::new(
                opts.label_studio_url.as_deref(),
                opts.label_studio_api_key.clone(),
            )?,
            model_delay: Duration::ZERO,
            post_delay: Duration::ZERO,
        })
    }
}

impl AppState {
    /// The model serving now; a request keeps this one to its end, whatever a fine-tune or a
    /// rollback switches to meanwhile.
    pub fn segmenter(&self) -> Arc<Segmenter> {
        self.models.current().seg.clone()
    }
}

/// `--allowed-host` entries plus the host name of `--addr` when it is a name (not an address).
fn allowed_hosts(opts: &Options) -> Vec<String> {
    let mut hosts = opts.allowed_hosts.clone();
    if let Some((name, _)) = opts.addr.rsplit_once(':') {
        if !name.is_empty() && !name.starts_with('[') && name.parse::<std::net::IpAddr>().is_err() {
            hosts.push(name.to_string());
        }
    }
    hosts
}

/// Refuses option values that cannot be right (clap's parsers check the command line; this
/// also covers `Options` built in code).
fn validate(o: &Options) -> Result<()> {
    let positive = [
        ("--workers", o.workers as u64),
        ("--cache", o.cache as u64),
        ("--max-upload-mb", o.max_upload_mb),
        ("--max-pixels", o.max_pixels),
        ("--max-voxels", o.max_voxels),
        ("--timeout-secs", o.timeout_secs),
        ("--header-timeout-secs", o.header_timeout_secs),
        ("--body-timeout-secs", o.body_timeout_secs),
        ("--max-connections", o.max_connections as u64),
    ];
    for (name, v) in positive {
        if v == 0 {
            bail!("{name} must be at least 1");
        }
    }
    if o.timeout_secs > 86_400
        || o.header_timeout_secs > 86_400
        || o.body_timeout_secs > 86_400
        || o.drain_secs > 86_400
    {
        bail!("time limits must be at most 86400 seconds (one day)");
    }
    Ok(())
}

/// The router with every route and every check: the access guard (Host, token, Origin) and the
/// body limits wrap the whole router, so a route added later is covered too; every error
/// answer is `{"error": ...}` JSON. `local` is the bound address (for the Host check).
pub fn router(state: Arc<AppState>, local: SocketAddr) -> Router {
    let max = state.limits.max_upload_bytes;
    let g = Arc::new(guard::Guard { state: state.clone(), local });
    api::routes()
        .with_state(state)
        // The extractor's own 2 MB default would otherwise win over ours.
        .layer(DefaultBodyLimit::max(max))
        .layer(RequestBodyLimitLayer::new(max))
        .layer(axum::middleware::from_fn_with_state(g, guard::check))
        .layer(axum::middleware::map_response(move |r| guard::json_errors(r, max)))
}

/// Resolves `addr` and refuses non-loopback addresses unless `allow_remote`.
pub fn resolve_addr(addr: &str, allow_remote: bool) -> Result<SocketAddr> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| anyhow!("--addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| anyhow!("--addr {addr}: resolves to no address"))?;
    if !a.ip().is_loopback() && !allow_remote {
        bail!("--addr {addr}: not a loopback address; pass --allow-remote to expose the server (with --token and --allowed-host, see docs/security.md)");
    }
    Ok(a)
}

/// Loads the model and serves until ctrl-c or SIGTERM, then finishes in-flight requests.
pub fn run(opts: Options) -> Result<()> {
    let addr = resolve_addr(&opts.addr, opts.allow_remote)?;
    let model = match &opts.model {
        Some(m) => vlsm::hub::resolve(m)?,
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
            state.segmenter().kind_name()
        );
        if !local.ip().is_loopback() && state.access.token.is_none() {
            eprintln!("vlsm serve: warning: listening on {local} without --token; anyone who can reach it can use it");
        }
        serve(listener, state, shutdown_signal()).await
    });
    // A model call that outlived its request (timeout or drain deadline) may still be running on
    // a blocking thread; don't wait for it forever.
    rt.shutdown_timeout(Duration::from_secs(2));
    eprintln!("vlsm serve: stopped");
    result
}

/// Serves on `listener` until `shutdown` resolves; then closes idle and partial connections at
/// once, gives requests being answered `--drain-secs`, and closes whatever is left.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    listen::serve(listener, state, shutdown).await
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
