//! Fine-tuning the served model on the dataset's saved corrections (`vlsm serve --dataset DIR
//! --train`): `POST /api/train` starts it on a background thread (its own rayon pool of
//! `--train-threads`, so segmentation keeps its threads), `GET /api/train` reports progress,
//! `DELETE /api/train` cancels, `POST /api/model/rollback` returns to the previous model.
//!
//! A run reads `anns/train.json` of the dataset (what save-to-dataset appends to), links its
//! images and masks into a scratch dataset under `DIR/.vlsm/runs/` (with a held-out validation
//! share when there are enough records), and runs `vlsm train`'s loop with `model.init_from` =
//! the served model. The best epoch's model becomes version `vNNN` under `DIR/.vlsm/models/`
//! ([`crate::versions::Store::publish`]) and is served from then on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use vlsm::data::{Dataset, Prompt};
use vlsm::models::ModelKind;
use vlsm::pipeline::Segmenter;
use vlsm::preprocess::ResizeTarget;
use vlsm::train::tasks::common::DecoderInit;
use vlsm::train::{EpochRecord, Hooks, RunOptions, TrainConfig};

use crate::api::ApiError;
use crate::versions::{Store, Version};
use crate::AppState;

/// Records at which a validation share is held out; with fewer, the run validates on its
/// training records (the budget is then only `epochs` / `max_minutes`).
pub const MIN_RECORDS_FOR_HOLDOUT: usize = 8;
/// Every fifth record is held out (20 %).
const HOLDOUT_EVERY: usize = 5;
pub const DEFAULT_EPOCHS: usize = 10;
pub const DEFAULT_MAX_MINUTES: f64 = 10.0;
pub const DEFAULT_LR: f64 = 1e-4;

/// `POST /api/train`'s optional JSON body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Epochs over the training records (1–200; default 10).
    pub epochs: Option<usize>,
    /// Wall-clock budget: no epoch starts that would end after it (0.05–1440; default 10).
    pub max_minutes: Option<f64>,
    /// Peak learning rate of the cosine schedule ((0, 0.1]; default 1e-4).
    pub lr: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Idle,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// What `GET /api/train` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub state: Phase,
    /// The version this run produces (or produced).
    pub version: Option<String>,
    /// The version it starts from.
    pub base: Option<String>,
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    /// 0..1 over every step of the run.
    pub progress: f64,
    /// Mean training loss of the epoch so far.
    pub loss: Option<f64>,
    /// Validation Dice of the last finished epoch, and the best.
    pub val_dice: Option<f64>,
    pub best_val_dice: Option<f64>,
    pub eta_secs: Option<f64>,
    pub elapsed_secs: f64,
    pub lr: f64,
    pub max_minutes: f64,
    pub train_records: usize,
    pub val_records: usize,
    /// False when there were too few records and the run validates on its training records.
    pub held_out: bool,
    /// Why the run ended early ("time limit") or failed.
    pub message: Option<String>,
    pub threads: usize,
    pub history: Vec<Value>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl Status {
    fn idle(threads: usize) -> Self {
        Status {
            state: Phase::Idle,
            version: None,
            base: None,
            epoch: 0,
            epochs: 0,
            step: 0,
            steps: 0,
            progress: 0.0,
            loss: None,
            val_dice: None,
            best_val_dice: None,
            eta_secs: None,
            elapsed_secs: 0.0,
            lr: 0.0,
            max_minutes: 0.0,
            train_records: 0,
            val_records: 0,
            held_out: false,
            message: None,
            threads,
            history: Vec::new(),
            started: None,
        }
    }

    fn json(&self) -> Value {
        let mut s = self.clone();
        if s.state == Phase::Running {
            s.elapsed_secs = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        }
        serde_json::to_value(s).unwrap_or(Value::Null)
    }
}

/// The fine-tuning side of a server started with `--train`.
pub struct Trainer {
    pub store: Store,
    pub threads: usize,
    pool: Arc<rayon::ThreadPool>,
    status: Arc<Mutex<Status>>,
    cancel: Arc<AtomicBool>,
    /// Extra time after each training step, for tests of the running state (like
    /// `AppState::model_delay`).
    pub step_delay: std::time::Duration,
}

impl Trainer {
    /// `dataset_root`: the `--dataset` folder; `threads`: `--train-threads`.
    pub fn new(dataset_root: &Path, threads: usize) -> Result<Self> {
        let threads = vlsm::threads::cap(threads.max(1), "--train-threads");
        let store = Store::open(dataset_root)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vlsm-train-{i}"))
            .build()
            .map_err(|e| anyhow!("--train-threads: cannot start the training threads: {e}"))?;
        Ok(Trainer {
            store,
            threads,
            pool: Arc::new(pool),
            status: Arc::new(Mutex::new(Status::idle(threads))),
            cancel: Arc::new(AtomicBool::new(false)),
            step_delay: std::time::Duration::ZERO,
        })
    }

    pub fn status(&self) -> Value {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).json()
    }

    pub fn is_running(&self) -> bool {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).state == Phase::Running
    }
}

/// Half the cores (at least one): the default of `--train-threads`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get()).div_ceil(2).max(1)
}

fn trainer(st: &AppState) -> Result<&Trainer, ApiError> {
    st.train.as_ref().ok_or_else(|| {
        ApiError(StatusCode::FORBIDDEN, "fine-tuning is disabled: start the server with --dataset DIR --train".into())
    })
}

/// Starts a fine-tune of the served model on the dataset's saved corrections, in the
/// background; answers the status it starts with. Errors: 403 without `--train`, 400 for a
/// bad request, 409 while one runs or with no saved corrections. `POST /api/train` and the Label Studio backend's `/train` call it.
pub fn start(state: &Arc<AppState>, req: TrainRequest) -> Result<Value, ApiError> {
    let t = trainer(state)?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let epochs = req.epochs.unwrap_or(DEFAULT_EPOCHS);
    if !(1..=200).contains(&epochs) {
        return Err(bad(format!("epochs must be from 1 to 200, got {epochs}")));
    }
    let max_minutes = req.max_minutes.unwrap_or(DEFAULT_MAX_MINUTES);
    if !(max_minutes.is_finite() && (0.05..=1440.0).contains(&max_minutes)) {
        return Err(bad(format!("max_minutes must be from 0.05 to 1440, got {max_minutes}")));
    }
    let lr = req.lr.unwrap_or(DEFAULT_LR);
    if !(lr.is_finite() && lr > 0.0 && lr <= 0.1) {
        return Err(bad(format!("lr must be a number in (0, 0.1], got {lr}")));
    }
    let base = state.models.current();
    let ds = state.dataset.as_ref().ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "no --dataset".into()))?;
    {
        let mut s = t.status.lock().unwrap_or_else(|e| e.into_inner());
        if s.state == Phase::Running {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "a fine-tune is already running (producing {}); DELETE /api/train cancels it",
                    s.version.as_deref().unwrap_or("?")
                ),
            ));
        }
        // The records are read under the dataset's lock, so no save is half-seen.
        let records = {
            let _g = ds.lock.lock().unwrap_or_else(|e| e.into_inner());
            saved_records(&ds.root)
        }
        .map_err(|e| ApiError(StatusCode::CONFLICT, format!("{e:#}")))?;
        let version = t.store.next_name();
        let n = records.len();
        let held_out = n >= MIN_RECORDS_FOR_HOLDOUT;
        let n_val = if held_out { n / HOLDOUT_EVERY } else { n };
        *s = Status {
            state: Phase::Running,
            version: Some(version.clone()),
            base: Some(base.name.clone()),
            epochs,
            lr,
            max_minutes,
            train_records: if held_out { n - n_val } else { n },
            val_records: n_val,
            held_out,
            started: Some(Instant::now()),
            ..Status::idle(t.threads)
        };
        t.cancel.store(false, Ordering::SeqCst);
        let job = Job { state: state.clone(), base: base.clone(), records, version, epochs, max_minutes, lr };
        let pool = t.pool.clone();
        let spawned = std::thread::Builder::new().name("vlsm-train".into()).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| job.run())));
            let r = r.unwrap_or_else(|p| {
                let msg =
                    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
                Err(anyhow!("training panicked: {}", msg.unwrap_or_default()))
            });
            job_ended(&job.state, r);
        });
        if let Err(e) = spawned {
            s.state = Phase::Failed;
            s.message = Some(format!("cannot start the training thread: {e}"));
            return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start the training thread: {e}")));
        }
    }
    Ok(t.status())
}

/// The dataset's saved records (`anns/train.json`), each with its files resolved.
fn saved_records(root: &Path) -> Result<Dataset> {
    if !root.join("anns").join("train.json").is_file() {
        bail!("no saved corrections yet: save at least one corrected image to the dataset first");
    }
    let ds = Dataset::open(root, "train")?;
    if ds.records.is_empty() {
        bail!("no saved corrections yet: anns/train.json is empty");
    }
    Ok(ds)
}

/// Asks a running fine-tune to stop (it ends as `cancelled` before its next step).
pub fn cancel(state: &AppState) -> Result<Value, ApiError> {
    let t = trainer(state)?;
    if !t.is_running() {
        return Err(ApiError(StatusCode::CONFLICT, "no fine-tune is running".into()));
    }
    t.cancel.store(true, Ordering::SeqCst);
    Ok(t.status())
}

struct Job {
    state: Arc<AppState>,
    base: Arc<Version>,
    records: Dataset,
    version: String,
    epochs: usize,
    max_minutes: f64,
    lr: f64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Job {
    fn trainer(&self) -> &Trainer {
        self.state.train.as_ref().expect("a job runs only with --train")
    }

    /// Trains, publishes the version and switches to it; the new model's directory.
    fn run(&self) -> Result<PathBuf> {
        let t = self.trainer();
        let scratch = t.store.runs.join(&self.version);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).with_context(|| format!("cannot clear {}", scratch.display()))?;
        }
        let result = self.train_in(&scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn train_in(&self, scratch: &Path) -> Result<PathBuf> {
        let t = self.trainer();
        let t0 = Instant::now();
        let data = scratch.join("data");
        let (n_train, n_val) = stage(&self.records, &data)?;
        let held_out = n_train != n_val;
        {
            let mut s = t.status.lock().unwrap_or_else(|e| e.into_inner());
            (s.train_records, s.val_records, s.held_out) = (n_train, n_val, held_out);
        }
        let cfg = self.config(scratch, &data, n_train)?;
        let status = t.status.clone();
        let on_batch = {
            let status = status.clone();
            let epochs = self.epochs;
            let delay = t.step_delay;
            move |epoch: usize, step: usize, steps: usize, loss: f64| {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                s.epoch = epoch;
                s.step = step;
                s.steps = steps;
                s.loss = Some(loss);
                let done = (epoch - 1) * steps + step;
                let total = epochs * steps;
                s.progress = done as f64 / total.max(1) as f64;
                let el = t0.elapsed().as_secs_f64();
                let eta = el / done.max(1) as f64 * (total - done.min(total)) as f64;
                s.eta_secs = Some(eta.min((s.max_minutes * 60.0 - el).max(0.0)));
            }
        };
        let max_secs = self.max_minutes * 60.0;
        let on_epoch = {
            let status = status.clone();
            move |r: &EpochRecord| {
                let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                s.val_dice = Some(r.val_dice);
                s.best_val_dice = Some(s.best_val_dice.map_or(r.val_dice, |b: f64| b.max(r.val_dice)));
                s.history.push(json!({
                    "epoch": r.epoch, "train_loss": r.train_loss, "val_loss": r.val_loss,
                    "val_dice": r.val_dice, "lr": r.lr, "seconds": r.seconds,
                }));
                // No epoch starts that would end after the budget.
                let el = t0.elapsed().as_secs_f64();
                if el + r.seconds > max_secs && r.epoch < s.epochs {
                    s.message = Some(format!("stopped after epoch {} of {}: time limit", r.epoch, s.epochs));
                    return false;
                }
                true
            }
        };
        let hooks = Hooks {
            on_epoch: Some(Box::new(on_epoch)),
            stop: Some(t.cancel.as_ref()),
            on_batch: Some(Box::new(on_batch)),
        };
        let summary = vlsm::train::tasks::train(&cfg, &RunOptions::quiet(), hooks, DecoderInit::Checkpoint)?;
        if t.cancel.load(Ordering::SeqCst) {
            bail!("cancelled");
        }
        let best = cfg.output_dir.join("best");
        if !best.join("config.json").is_file() {
            bail!("the run ended without a model (no epoch finished)");
        }
        let history: Vec<Value> = status.lock().unwrap_or_else(|e| e.into_inner()).history.clone();
        let meta = json!({
            "created_unix": now_secs(),
            "base": self.base.name,
            "kind": self.base.seg.kind_name(),
            "train_records": n_train,
            "val_records": n_val,
            "held_out": held_out,
            "epochs": summary.history.len(),
            "epochs_planned": self.epochs,
            "lr": self.lr,
            "best_epoch": summary.best_epoch,
            "val_dice": summary.best_val_dice,
            "seconds": t0.elapsed().as_secs_f64(),
            "threads": t.threads,
            "history": history,
        });
        let dir = t.store.publish(&self.version, &best, &meta)?;
        let seg = Segmenter::load(&dir).with_context(|| format!("cannot load the new model {}", dir.display()))?;
        self.state.models.switch(Version::of(seg), &self.state.cache);
        Ok(dir)
    }

    /// `vlsm train`'s config for this fine-tune: the served model's kind and input size, started
    /// from its directory (`model.init_from`). U-Nets train whole, with flips for the text
    /// U-Net; CLIPSeg-like models and CRIS train their decoder on cached encoder features.
    fn config(&self, scratch: &Path, data: &Path, n_train: usize) -> Result<TrainConfig> {
        let kind = self.base.seg.kind();
        let unet = matches!(kind, ModelKind::TextUNet | ModelKind::UNet);
        let size = match self.base.seg.processor.size {
            ResizeTarget::Exact { height, width } if height == width => height as usize,
            _ if unet => {
                let cfg_json: Value = vlsm::weights::read_json(&self.base.dir.join("config.json"))?;
                cfg_json.get("image_size").and_then(Value::as_u64).unwrap_or(160) as usize
            }
            _ => 352,
        };
        let text = format!(
            "output_dir = \"run\"\nseed = 42\n[model]\nkind = \"{}\"\ninit_from = \"default\"\n[data]\ndatasets = [\"data\"]\nprompts = [\"p1\"]\n\
             image_size = {size}\nfeature_cache = {}\nflips = {}\n[train]\nepochs = {e}\nmin_epochs = {e}\n\
             batch_size = {}\nlr = {}\nweight_decay = 1e-4\ngrad_clip = 1.0\n[scheduler]\nkind = \"cosine\"\nmin_lr = {}\n\
             [loss]\nkind = \"dice_bce\"\nbce_weight = 1.0\n[early_stopping]\npatience = 0\n",
            kind.as_str(),
            !unet,
            kind == ModelKind::TextUNet,
            n_train.clamp(1, 4),
            self.lr,
            self.lr / 100.0,
            e = self.epochs,
        );
        let mut cfg = TrainConfig::parse(&text)?;
        cfg.output_dir = scratch.join("run");
        cfg.data.datasets = vec![data.to_path_buf()];
        // parse() checks the config, which needs an init_from for CLIPSeg-like kinds; the
        // served directory replaces the placeholder.
        cfg.model.init_from = Some(self.base.dir.clone());
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The prompt a record trains with: `p1` (what save-to-dataset writes), else its first
/// non-empty prompt; `None` when it has none.
fn record_prompt(prompts: &std::collections::BTreeMap<String, Prompt>) -> Option<Value> {
    let usable = |p: &Prompt| match p {
        Prompt::One(s) if !s.trim().is_empty() => Some(json!(s)),
        Prompt::Many(v) if v.iter().any(|s| !s.trim().is_empty()) => Some(json!(v)),
        _ => None,
    };
    prompts.get("p1").and_then(usable).or_else(|| prompts.values().find_map(usable))
}

/// Links (or copies) the records' files into a scratch medvlsm dataset at `dst` with
/// `anns/train.json` and `anns/val.json`; every fifth record is held out once there are
/// [`MIN_RECORDS_FOR_HOLDOUT`], else validation is the training set. The user's dataset is only
/// read. Returns (train, val) counts.
fn stage(ds: &Dataset, dst: &Path) -> Result<(usize, usize)> {
    for sub in ["images", "masks", "anns"] {
        std::fs::create_dir_all(dst.join(sub)).with_context(|| format!("cannot create {}", dst.join(sub).display()))?;
    }
    let mut recs = Vec::new();
    for (i, r) in ds.records.iter().enumerate() {
        let Some(prompt) = record_prompt(&r.prompts) else {
            continue;
        };
        let ext = |p: &Path| p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
        let (img, mask) = (format!("{i}.{}", ext(&r.image_path)), format!("{i}.{}", ext(&r.mask_path)));
        link(&r.image_path, &dst.join("images").join(&img))?;
        link(&r.mask_path, &dst.join("masks").join(&mask))?;
        recs.push(json!({"img_name": img, "mask_name": mask, "prompts": {"p1": prompt}}));
    }
    if recs.is_empty() {
        bail!("none of the {} saved records has a prompt", ds.records.len());
    }
    let n = recs.len();
    let (train, val): (Vec<Value>, Vec<Value>) = if n >= MIN_RECORDS_FOR_HOLDOUT {
        let (v, t): (Vec<_>, Vec<_>) =
            recs.into_iter().enumerate().partition(|(i, _)| i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1);
        (t.into_iter().map(|x| x.1).collect(), v.into_iter().map(|x| x.1).collect())
    } else {
        (recs.clone(), recs)
    };
    vlsm::io::write_atomic(&dst.join("anns/train.json"), &serde_json::to_vec(&train)?)?;
    vlsm::io::write_atomic(&dst.join("anns/val.json"), &serde_json::to_vec(&val)?)?;
    Ok((train.len(), val.len()))
}

fn link(src: &Path, dst: &Path) -> Result<()> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))
}

fn job_ended(state: &AppState, r: Result<PathBuf>) {
    let Some(t) = state.train.as_ref() else { return };
    let mut s = t.status.lock().unwrap_or_else(|e| e.into_inner());
    s.elapsed_secs = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    s.eta_secs = None;
    match r {
        Ok(dir) => {
            s.state = Phase::Done;
            s.progress = 1.0;
            eprintln!("vlsm serve: fine-tune done, serving {}", dir.display());
        }
        Err(_) if t.cancel.load(Ordering::SeqCst) => {
            s.state = Phase::Cancelled;
            s.message = Some("cancelled; the served model is unchanged".into());
        }
        Err(e) => {
            s.state = Phase::Failed;
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("vlsm serve: fine-tune failed: {msg}");
            s.message = Some(msg);
        }
    }
}

type St = State<Arc<AppState>>;

/// `/api/train` (GET status, POST start, DELETE cancel) and `/api/model/rollback`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/train", get(get_status).post(post_start).delete(delete_cancel))
        .route("/api/model/rollback", post(rollback))
}

async fn get_status(State(st): St) -> Response {
    match trainer(&st) {
        Ok(t) => Json(t.status()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn post_start(State(st): St, body: Bytes) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        match serde_json::from_slice::<TrainRequest>(&body) {
            Ok(r) => r,
            Err(e) => return ApiError(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")).into_response(),
        }
    };
    match start(&st, req) {
        Ok(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_cancel(State(st): St) -> Response {
    match cancel(&st) {
        Ok(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rollback(State(st): St) -> Response {
    if let Err(e) = trainer(&st) {
        return e.into_response();
    }
    match st.models.rollback(&st.cache) {
        Ok(_) => Json(st.models.describe()).into_response(),
        Err(m) => ApiError(StatusCode::CONFLICT, m).into_response(),
    }
}
