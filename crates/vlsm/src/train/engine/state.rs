//! The training state of a run (its checkpoints; model weights of a model directory are
//! `crate::weights`'s): `<run>/last/` and `<run>/best/`, each with
//! `weights.safetensors` (trainable parameters by name), `optimizer.safetensors` (AdamW moments
//! and steps) and `state.json` (counters, lr, scheduler, early stopping, RNG, history).
//!
//! A checkpoint directory is written as `.<name>.tmp` and renamed into place; the previous one is
//! moved to `.<name>.old` first and removed after, and `resolve` falls back to it if a crash
//! happened between the two renames.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::log::EpochRecord;
use super::optim::AdamW;
use super::sched::{EarlyStopping, ReduceLrOnPlateau};

pub const WEIGHTS: &str = "weights.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const STATE: &str = "state.json";
/// The weights' exponential moving average (`train.ema`), same names as `WEIGHTS`.
pub const EMA: &str = "ema.safetensors";

/// A ChaCha8 generator's exact position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// 32-byte seed, hex.
    pub seed: String,
    pub stream: u64,
    /// Word position (u128, decimal: JSON numbers cannot hold it).
    pub word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        let seed = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        RngState { seed, stream: rng.get_stream(), word_pos: rng.get_word_pos().to_string() }
    }

    pub fn restore(&self) -> Result<ChaCha8Rng> {
        let bad = || anyhow!("rng state: bad seed '{}'", self.seed);
        if self.seed.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let wp: u128 = self.word_pos.parse().map_err(|_| anyhow!("rng state: bad word_pos '{}'", self.word_pos))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(wp);
        Ok(rng)
    }
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub global_step: u64,
    pub lr: f64,
    pub rng: RngState,
    pub scheduler: ReduceLrOnPlateau,
    pub early_stopping: EarlyStopping,
    pub best_val_dice: Option<f64>,
    pub best_epoch: usize,
    /// True once the run ended (all epochs or early stop); resuming it does nothing.
    pub finished: bool,
    pub history: Vec<EpochRecord>,
}

/// The checkpoint dir `<run>/<name>`, or its `.old` copy after an interrupted swap.
pub fn resolve(run_dir: &Path, name: &str) -> Option<PathBuf> {
    let d = run_dir.join(name);
    if d.join(STATE).is_file() {
        return Some(d);
    }
    let old = run_dir.join(format!(".{name}.old"));
    old.join(STATE).is_file().then_some(old)
}

/// The checkpoint to resume from: `last/`, or `best/` when it holds a later epoch. A kill while
/// `last/` is being written leaves the epoch's `best/` (written first) complete and `last/` absent
/// or one epoch behind; resuming from `last/` alone would lose that epoch or find nothing.
pub fn resolve_resume(run_dir: &Path) -> Option<PathBuf> {
    let epoch = |d: &Path| -> Option<usize> {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(d.join(STATE)).ok()?).ok()?;
        v.get("epoch")?.as_u64().map(|e| e as usize)
    };
    match (resolve(run_dir, "last"), resolve(run_dir, "best")) {
        (Some(l), Some(b)) if epoch(&b) > epoch(&l) => Some(b),
        (Some(l), _) => Some(l),
        (None, b) => b,
    }
}

fn sync_file(p: &Path) -> Result<()> {
    fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| anyhow!("{}: cannot sync: {e}", p.display()))
}

fn named(vars: &[(String, Var)]) -> HashMap<String, Tensor> {
    vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect()
}

/// Writes `<run>/<name>/` atomically.
pub fn save(run_dir: &Path, name: &str, opt: &AdamW, state: &TrainState) -> Result<()> {
    save_with_ema(run_dir, name, opt, state, None)
}

/// [`save`], with the weights' moving average as `EMA` when given.
pub fn save_with_ema(
    run_dir: &Path,
    name: &str,
    opt: &AdamW,
    state: &TrainState,
    ema: Option<&HashMap<String, Tensor>>,
) -> Result<()> {
    let tmp = run_dir.join(format!(".{name}.tmp"));
    let old = run_dir.join(format!(".{name}.old"));
    let dst = run_dir.join(name);
    let ctx = |p: &Path, e: &dyn std::fmt::Display| anyhow!("{}: {e}", p.display());
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ctx(&tmp, &e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| ctx(&tmp, &e))?;
    let w = tmp.join(WEIGHTS);
    candle_core::safetensors::save(&named(opt.vars()), &w).map_err(|e| ctx(&w, &e))?;
    opt.save(&tmp.join(OPTIMIZER))?;
    if let Some(ema) = ema {
        let e = tmp.join(EMA);
        candle_core::safetensors::save(ema, &e).map_err(|x| ctx(&e, &x))?;
        sync_file(&e)?;
    }
    let json = serde_json::to_vec_pretty(state)?;
    fs::write(tmp.join(STATE), json).map_err(|e| ctx(&tmp.join(STATE), &e))?;
    for f in [WEIGHTS, OPTIMIZER, STATE] {
        sync_file(&tmp.join(f))?;
    }
    sync_file(&tmp)?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| ctx(&old, &e))?;
    }
    if dst.exists() {
        fs::rename(&dst, &old).map_err(|e| ctx(&dst, &e))?;
    }
    fs::rename(&tmp, &dst).map_err(|e| ctx(&dst, &e))?;
    let _ = sync_file(run_dir);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| ctx(&old, &e))?;
    }
    Ok(())
}

pub fn load_state(dir: &Path) -> Result<TrainState> {
    let p = dir.join(STATE);
    let text = fs::read_to_string(&p).map_err(|e| anyhow!("{}: cannot read: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// Sets `vars` from a weights file; every name must be there with the same shape, and the file
/// must hold nothing else (a checkpoint of another architecture fails here, naming the key).
pub fn load_weights(path: &Path, vars: &[(String, Var)]) -> Result<()> {
    let dev = vars.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
    let t = candle_core::safetensors::load(path, &dev)
        .map_err(|e| anyhow!("{}: cannot read weights: {e}", path.display()))?;
    for (n, v) in vars {
        let x =
            t.get(n).ok_or_else(|| anyhow!("{}: no tensor '{n}' (checkpoint of another model?)", path.display()))?;
        if x.dims() != v.dims() {
            bail!("{}: '{n}' has shape {:?}, the model expects {:?}", path.display(), x.dims(), v.dims());
        }
    }
    if let Some(extra) = t.keys().find(|k| !vars.iter().any(|(n, _)| n == *k)) {
        bail!("{}: unexpected tensor '{extra}' (checkpoint of another model?)", path.display());
    }
    for (n, v) in vars {
        v.set(&t[n].to_dtype(DType::F32)?)?;
    }
    Ok(())
}

/// The moving average saved in a checkpoint directory, if any; its names and shapes must be
/// `vars`'.
pub fn load_ema(dir: &Path, vars: &[(String, Var)]) -> Result<Option<HashMap<String, Tensor>>> {
    let path = dir.join(EMA);
    if !path.is_file() {
        return Ok(None);
    }
    let t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    for (n, v) in vars {
        match t.get(n) {
            Some(x) if x.dims() == v.dims() => {}
            Some(x) => bail!("{}: '{n}' has shape {:?}, the model expects {:?}", path.display(), x.dims(), v.dims()),
            None => bail!("{}: no tensor '{n}'", path.display()),
        }
    }
    Ok(Some(t))
}

/// Restores weights and optimizer from a checkpoint directory and returns its state.
pub fn load(dir: &Path, opt: &mut AdamW) -> Result<TrainState> {
    let state = load_state(dir)?;
    load_weights(&dir.join(WEIGHTS), opt.vars())?;
    opt.load(&dir.join(OPTIMIZER))?;
    opt.set_lr(state.lr);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn rng_state_round_trips_mid_stream() {
        let mut a = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..13 {
            a.next_u32();
        }
        let mut b = RngState::of(&a).restore().unwrap();
        let x: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let y: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(x, y);
    }
}
