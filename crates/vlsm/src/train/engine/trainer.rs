//! The training loop: shuffled batches from a seeded RNG, forward/backward, gradient clipping,
//! AdamW, validation Dice, ReduceLROnPlateau on val loss, early stopping on val Dice, and
//! checkpoints, CSV and TensorBoard scalars every epoch.
//!
//! [`train`] is what every task's `vlsm train` runs: the common preamble, the task's own loading,
//! the loop, and keeping `RUN/best` a loadable model directory. [`run`] is the loop alone.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{SchedulerKind, TrainConfig};
use super::log::{self, EpochRecord};
use super::loss::{dice_per_image_at, LossKind};
use super::optim::{clip_grad_norm, AdamW};
use super::plot;
use super::sched::{EarlyStopping, ReduceLrOnPlateau};
use super::state::{self, RngState, TrainState};
use super::tensorboard::EventWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// What the model side supplies: parameters, data access and a forward pass.
pub trait Trainable {
    /// Whatever the forward pass takes (pixel values, cached activations, token ids...).
    type Input;

    /// The trainable parameters with unique, stable names (the keys of `weights.safetensors`).
    fn vars(&self) -> Vec<(String, Var)>;

    /// Number of samples in a split.
    fn len(&self, split: Split) -> usize;

    /// Loads samples `idx` of `split`: the model input and {0,1} targets `[B,H,W]`. `rng` is the
    /// only randomness allowed (prompt choice), so runs are reproducible and resumable.
    fn batch(&mut self, split: Split, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<(Self::Input, Tensor)>;

    /// Logits `[B,H,W]`.
    fn forward(&self, input: &Self::Input) -> Result<Tensor>;

    /// Probability threshold of the validation Dice (the model's own: 0.5, CRIS 0.35).
    fn threshold(&self) -> f64 {
        0.5
    }

    /// The training loss; override for anything besides `loss(forward(input), targets)`.
    fn loss(&self, input: &Self::Input, targets: &Tensor, loss: &LossKind) -> Result<Tensor> {
        Ok(loss.compute(&self.forward(input)?, targets)?)
    }
}

/// Called after each epoch; false stops the run.
pub type EpochHook<'a> = Box<dyn FnMut(&EpochRecord) -> bool + 'a>;

/// Called after each training step with (epoch, steps done in it, steps per epoch, the epoch's
/// mean loss so far): progress for a caller that shows it elsewhere (the server's `/api/train`).
pub type BatchHook<'a> = Box<dyn FnMut(usize, usize, usize, f64) + 'a>;

/// How to run, besides the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Continue the run in `output_dir` from `last/`.
    pub resume: bool,
    /// Learning rate from the first epoch this call runs, instead of `train.lr` (fresh run) or
    /// the checkpoint's (resume); the plateau scheduler's count of bad epochs restarts.
    pub lr: Option<f64>,
    /// Show progress bars (only drawn when stderr is a terminal).
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { resume: false, lr: None, progress: true }
    }
}

impl RunOptions {
    /// A fresh run with no progress output.
    pub fn quiet() -> Self {
        RunOptions { progress: false, ..RunOptions::default() }
    }

    /// The same options, continuing the run from `last/`.
    pub fn resumed(self) -> Self {
        RunOptions { resume: true, ..self }
    }

    /// The same options with a learning-rate override.
    pub fn with_lr(self, lr: f64) -> Self {
        RunOptions { lr: Some(lr), ..self }
    }
}

/// Callbacks into a run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called after each epoch, once its checkpoint is on disk; returning false stops the run
    /// there, unfinished, as if the process had been killed.
    pub on_epoch: Option<EpochHook<'a>>,
    /// Checked before each training step: once set, the run ends with an "interrupted" error
    /// there, its last epoch's checkpoint intact (as a run killed by Ctrl-C).
    pub stop: Option<&'a AtomicBool>,
    /// Called after each training step (see [`BatchHook`]).
    pub on_batch: Option<BatchHook<'a>>,
}

impl<'a> Hooks<'a> {
    /// No callbacks.
    pub fn none() -> Self {
        Hooks { on_epoch: None, stop: None, on_batch: None }
    }

    /// Calls `f` after each epoch, once its checkpoint is on disk; `f` returning false stops
    /// the run there, unfinished.
    pub fn on_epoch(f: impl FnMut(&EpochRecord) -> bool + 'a) -> Self {
        Hooks { on_epoch: Some(Box::new(f)), stop: None, on_batch: None }
    }

    /// Stops the run, unfinished, after epoch `n` (a run killed there).
    pub fn stop_after(n: usize) -> Self {
        Self::on_epoch(move |r| r.epoch < n)
    }
}

/// Every variable of `varmap`, sorted by name (a stable order for the optimizer state).
pub fn sorted_vars(varmap: &candle_nn::VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// [`run`], calling `after_epoch` once each epoch's checkpoint is on disk (before the caller's
/// own hook), e.g. to keep `RUN/best` a loadable model directory. Its error stops the run there
/// and is returned.
pub fn run_with<'a, T: Trainable>(
    cfg: &TrainConfig,
    task: &mut T,
    opts: &RunOptions,
    mut hooks: Hooks<'a>,
    mut after_epoch: impl FnMut() -> Result<()> + 'a,
) -> Result<RunSummary> {
    let failed: Rc<RefCell<Option<anyhow::Error>>> = Rc::new(RefCell::new(None));
    let fail = failed.clone();
    let mut user = hooks.on_epoch.take();
    hooks.on_epoch = Some(Box::new(move |rec| {
        if let Err(e) = after_epoch() {
            *fail.borrow_mut() = Some(e);
            return false;
        }
        user.as_mut().is_none_or(|h| h(rec))
    }));
    let summary = run(cfg, task, opts, hooks)?;
    if let Some(e) = failed.borrow_mut().take() {
        return Err(e);
    }
    Ok(summary)
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub history: Vec<EpochRecord>,
    pub best_val_dice: Option<f64>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// False when a hook stopped the run.
    pub finished: bool,
}

pub const METRICS_CSV: &str = "metrics.csv";
pub const CURVES_PNG: &str = "curves.png";

/// Sets the rayon pool and candle's matmul thread count (only before any other threads start).
pub fn apply_threads(n: usize) {
    if n > 0 {
        let n = crate::threads::cap(n, "threads (training config)");
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

/// An error unless `run_dir` is free for a fresh run (no `last/` checkpoint).
fn refuse_existing_run(run_dir: &Path) -> Result<()> {
    if state::resolve_resume(run_dir).is_some() {
        bail!("{}: already holds a run (last/ or best/); resume it or choose another output_dir", run_dir.display());
    }
    Ok(())
}

/// What every run does before a task loads anything: checks the config, sets the thread
/// count, and refuses to start a fresh run over an existing one.
pub fn prepare(cfg: &TrainConfig, opts: &RunOptions) -> Result<()> {
    cfg.validate()?;
    apply_threads(cfg.threads);
    if !opts.resume {
        refuse_existing_run(&cfg.output_dir)?;
    }
    Ok(())
}

/// A task's `vlsm train`: [`prepare`], then `build` loads the task (every data, config and
/// model error surfaces there, before training) and returns it with `keep_best`, then [`run`].
/// `keep_best(run_dir)` is called after every epoch's checkpoint and once after the run, to keep
/// `RUN/best` a loadable model directory; its error stops the run there and is returned.
pub fn train<'a, T, K>(
    cfg: &TrainConfig,
    opts: &RunOptions,
    hooks: Hooks<'a>,
    build: impl FnOnce() -> Result<(T, K)>,
) -> Result<RunSummary>
where
    T: Trainable,
    K: Fn(&Path) -> Result<()> + 'a,
{
    prepare(cfg, opts)?;
    let (mut task, keep_best) = build()?;
    let keep_best = Rc::new(keep_best);
    let (k, run_dir) = (keep_best.clone(), cfg.output_dir.clone());
    let summary = run_with(cfg, &mut task, opts, hooks, move || k(&run_dir))?;
    keep_best(&cfg.output_dir)?;
    Ok(summary)
}

/// A `keep_best` for [`train`]: when `RUN/best` holds weights but no `config.json` yet (a new
/// best checkpoint replaces the whole directory), `export(weights, RUN/best)` writes the rest
/// of the model directory, `config.json` last. The weights are the moving average
/// (`ema.safetensors`) when the run keeps one.
pub fn export_new_best(export: impl Fn(&Path, &Path) -> Result<()>) -> impl Fn(&Path) -> Result<()> {
    move |run_dir| {
        let best = run_dir.join("best");
        let ema = best.join(state::EMA);
        let w = if ema.is_file() { ema } else { best.join(state::WEIGHTS) };
        if w.is_file() && !best.join("config.json").is_file() {
            export(&w, &best)?;
        }
        Ok(())
    }
}

fn fresh_state(cfg: &TrainConfig) -> (TrainState, ChaCha8Rng) {
    let s = &cfg.scheduler;
    let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let st = TrainState {
        epoch: 0,
        global_step: 0,
        lr: cfg.train.lr,
        rng: RngState::of(&rng),
        scheduler: ReduceLrOnPlateau::new(s.factor, s.patience, s.threshold, s.cooldown, s.min_lr),
        early_stopping: EarlyStopping::new(cfg.early_stopping.patience, cfg.early_stopping.min_delta),
        best_val_dice: None,
        best_epoch: 0,
        finished: false,
        history: Vec::new(),
    };
    (st, rng)
}

/// Mean loss and per-image Dice over the validation split, prompts drawn from a fixed RNG so
/// every epoch sees the same val set.
fn validate<T: Trainable>(task: &mut T, cfg: &TrainConfig, loss: &LossKind) -> Result<(f64, f64)> {
    let n = task.len(Split::Val);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(1);
    let (mut loss_sum, mut dice) = (0.0, Vec::with_capacity(n));
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(cfg.train.batch_size) {
        let (input, targets) = task.batch(Split::Val, chunk, &mut rng)?;
        let logits = task.forward(&input)?.detach();
        loss_sum += loss.compute(&logits, &targets)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        dice.extend(dice_per_image_at(&logits, &targets, task.threshold())?);
    }
    Ok((loss_sum / n as f64, dice.iter().sum::<f64>() / n as f64))
}

/// The learning rate of optimizer step `step` (0-based) under `scheduler.kind = "cosine"`: linear
/// warmup from `peak / warmup_steps` to `peak`, then half a cosine down to `min_lr` at `total`.
pub fn cosine_lr(step: u64, total: u64, warmup: u64, peak: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    min_lr + 0.5 * (peak - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The exponential moving average of the trainable weights (`train.ema`).
struct Ema {
    decay: f64,
    avg: std::collections::HashMap<String, Tensor>,
}

impl Ema {
    fn of(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        let avg = vars.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?))).collect::<Result<_>>()?;
        Ok(Ema { decay, avg })
    }

    fn update(&mut self, vars: &[(String, Var)]) -> Result<()> {
        for (n, v) in vars {
            let a = &self.avg[n];
            let next = ((a * self.decay)? + (v.as_tensor().detach() * (1.0 - self.decay))?)?;
            self.avg.insert(n.clone(), next);
        }
        Ok(())
    }

    /// Puts the average into `vars`, returning the weights it replaced.
    fn swap_in(&self, vars: &[(String, Var)]) -> Result<Vec<Tensor>> {
        vars.iter()
            .map(|(n, v)| {
                let old = v.as_tensor().detach().copy()?;
                v.set(&self.avg[n])?;
                Ok(old)
            })
            .collect()
    }

    fn restore(vars: &[(String, Var)], old: Vec<Tensor>) -> Result<()> {
        for ((_, v), t) in vars.iter().zip(old) {
            v.set(&t)?;
        }
        Ok(())
    }
}

/// Trains `task` as `cfg` says, in `cfg.output_dir`.
pub fn run<T: Trainable>(cfg: &TrainConfig, task: &mut T, opts: &RunOptions, mut hooks: Hooks) -> Result<RunSummary> {
    cfg.validate()?;
    apply_threads(cfg.threads);
    let run_dir = cfg.output_dir.clone();
    let loss_kind = cfg.loss_kind();
    let (n_train, n_val) = (task.len(Split::Train), task.len(Split::Val));
    if n_train == 0 {
        bail!("no training samples");
    }
    if n_val == 0 {
        bail!("no validation samples");
    }
    let vars = task.vars();
    if vars.is_empty() {
        bail!("the model has no trainable parameters");
    }
    let mut opt = AdamW::new(vars, cfg.adamw())?;
    let (mut st, mut rng) = fresh_state(cfg);
    let mut ema = if cfg.train.ema > 0.0 { Some(Ema::of(opt.vars(), cfg.train.ema)?) } else { None };
    let cosine = cfg.scheduler.kind == SchedulerKind::Cosine;
    if cosine && opts.lr.is_some() {
        bail!("--lr: not with scheduler.kind = \"cosine\" (its peak is train.lr in the config)");
    }
    if opts.resume {
        let dir = state::resolve_resume(&run_dir).ok_or_else(|| {
            anyhow!("{}: no checkpoint to resume (expected last/{})", run_dir.display(), state::STATE)
        })?;
        st = state::load(&dir, &mut opt)?;
        if let (Some(e), Some(avg)) = (ema.as_mut(), state::load_ema(&dir, opt.vars())?) {
            e.avg = avg;
        } else if let Some(e) = ema.as_mut() {
            // A run that kept no average until now starts it from the current weights.
            *e = Ema::of(opt.vars(), cfg.train.ema)?;
        }
        rng = st.rng.restore().map_err(|e| anyhow!("{}: {e}", dir.join(state::STATE).display()))?;
        if st.finished {
            return Ok(summary(&run_dir, &st, cfg));
        }
    } else {
        refuse_existing_run(&run_dir)?;
    }
    if let Some(lr) = opts.lr {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("learning rate {lr}: must be a positive number");
        }
        opt.set_lr(lr);
        st.lr = lr;
        st.scheduler.num_bad_epochs = 0;
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| anyhow!("{}: cannot create: {e}", run_dir.display()))?;
    crate::io::write_atomic(&run_dir.join("config.toml"), toml::to_string(cfg)?.as_bytes())?;
    let mut tb = EventWriter::create(&run_dir)?;
    let var_list: Vec<Var> = opt.vars().iter().map(|(_, v)| v.clone()).collect();
    let n_batches = n_train.div_ceil(cfg.train.batch_size);
    let (total_steps, warmup_steps) =
        ((cfg.train.epochs * n_batches) as u64, (cfg.scheduler.warmup_epochs * n_batches) as u64);
    let sched_lr = |step: u64| cosine_lr(step, total_steps, warmup_steps, cfg.train.lr, cfg.scheduler.min_lr);

    for epoch in st.epoch + 1..=cfg.train.epochs {
        let t0 = Instant::now();
        if cosine {
            opt.set_lr(sched_lr(st.global_step));
        }
        let lr = opt.lr();
        // One seed per epoch from the master RNG: shuffling and prompt sampling use it.
        let mut erng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let mut order: Vec<usize> = (0..n_train).collect();
        order.shuffle(&mut erng);
        let prefix = format!("epoch {epoch}/{}", cfg.train.epochs);
        let pb = log::progress_bar(n_batches, prefix.clone(), opts.progress);
        let mut plain = log::PlainProgress::new(opts.progress, Duration::from_secs(60));
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(cfg.train.batch_size).enumerate() {
            if hooks.stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
                if st.epoch == 0 {
                    bail!("interrupted in epoch {epoch}, before any checkpoint");
                }
                bail!(
                    "interrupted in epoch {epoch}; the checkpoint of epoch {} is intact (resume continues)",
                    st.epoch
                );
            }
            let (input, targets) = task.batch(Split::Train, chunk, &mut erng)?;
            let loss = task.loss(&input, &targets, &loss_kind)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            if !lv.is_finite() {
                bail!("epoch {epoch}, batch {}: loss is {lv}; lower train.lr or check the data", b + 1);
            }
            if cosine {
                opt.set_lr(sched_lr(st.global_step));
            }
            let mut grads = loss.backward()?;
            if cfg.train.grad_clip > 0.0 {
                clip_grad_norm(&mut grads, &var_list, cfg.train.grad_clip)?;
            }
            opt.step(&grads)?;
            if let Some(e) = ema.as_mut() {
                e.update(opt.vars())?;
            }
            st.global_step += 1;
            loss_sum += lv * chunk.len() as f64;
            let mean = loss_sum / ((b * cfg.train.batch_size + chunk.len()) as f64);
            pb.set_message(format!("loss {mean:.4}"));
            pb.inc(1);
            plain.tick(&prefix, b + 1, n_batches, mean, t0);
            if let Some(h) = hooks.on_batch.as_mut() {
                h(epoch, b + 1, n_batches, mean);
            }
        }
        pb.finish_and_clear();
        let train_loss = loss_sum / n_train as f64;
        let (val_loss, val_dice) = match &ema {
            Some(e) => {
                let raw = e.swap_in(opt.vars())?;
                let r = validate(task, cfg, &loss_kind);
                Ema::restore(opt.vars(), raw)?;
                r?
            }
            None => validate(task, cfg, &loss_kind)?,
        };
        let next_lr = if cosine { sched_lr(st.global_step) } else { st.scheduler.step(val_loss, lr) };
        opt.set_lr(next_lr);
        let stop = st.early_stopping.step(val_dice);
        let rec = EpochRecord { epoch, train_loss, val_loss, val_dice, lr, seconds: t0.elapsed().as_secs_f64() };
        st.history.push(rec.clone());
        st.epoch = epoch;
        st.lr = next_lr;
        st.rng = RngState::of(&rng);
        let improved = st.best_val_dice.is_none_or(|b| val_dice > b);
        if improved {
            st.best_val_dice = Some(val_dice);
            st.best_epoch = epoch;
        }
        st.finished = epoch == cfg.train.epochs || (stop && epoch >= cfg.train.min_epochs);
        if improved {
            state::save_with_ema(&run_dir, "best", &opt, &st, ema.as_ref().map(|e| &e.avg))?;
        }
        state::save_with_ema(&run_dir, "last", &opt, &st, ema.as_ref().map(|e| &e.avg))?;
        log::write_csv(&run_dir.join(METRICS_CSV), &st.history)?;
        for (tag, v) in [("train/loss", train_loss), ("val/loss", val_loss), ("val/dice", val_dice), ("lr", lr)] {
            tb.scalar(tag, epoch as i64, v as f32)?;
        }
        if opts.progress {
            eprintln!(
                "epoch {epoch}: train_loss {train_loss:.4} val_loss {val_loss:.4} val_dice {val_dice:.4} lr {lr:.2e} ({:.1}s)",
                rec.seconds
            );
        }
        let go_on = hooks.on_epoch.as_mut().is_none_or(|h| h(&rec));
        if st.finished {
            break;
        }
        if !go_on {
            return Ok(summary(&run_dir, &st, cfg));
        }
    }
    plot::save_curves(&run_dir.join(CURVES_PNG), &st.history)?;
    Ok(summary(&run_dir, &st, cfg))
}

fn summary(run_dir: &Path, st: &TrainState, cfg: &TrainConfig) -> RunSummary {
    RunSummary {
        run_dir: run_dir.to_path_buf(),
        history: st.history.clone(),
        best_val_dice: st.best_val_dice,
        best_epoch: st.best_epoch,
        stopped_early: st.finished && st.epoch < cfg.train.epochs,
        finished: st.finished,
    }
}
