//! `vlsm.eval`, `vlsm.train`, `vlsm.prompts`: the commands of the same names, returning their
//! figures as dicts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use vlsm::eval::{self, EvalOptions};
use vlsm::train::tasks::{self, common::DecoderInit};
use vlsm::train::{Hooks, RunOptions, TrainConfig};

use crate::errors::{guarded, value_error, Kind};
use crate::segment::resolve_model;

/// `obj` as a list of strings (one string is a list of one).
fn strings(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(vec![s.extract::<String>()?]);
    }
    let bad = || PyTypeError::new_err(format!("{name}: expected a string or a list of strings"));
    obj.try_iter().map_err(|_| bad())?.map(|i| i?.extract::<String>().map_err(|_| bad())).collect()
}

/// `obj` as a list of paths (one path is a list of one).
fn paths(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<PathBuf>> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        return Ok(vec![obj.extract()?]);
    }
    let bad = || PyTypeError::new_err(format!("{name}: expected a path or a list of paths"));
    obj.try_iter().map_err(|_| bad())?.map(|i| i?.extract::<PathBuf>().map_err(|_| bad())).collect()
}

/// JSON text as Python objects (`json.loads`).
fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// Evaluates a model as `vlsm eval` does and returns metrics.json's content.
///
/// A segmentation model: `data` is a dataset folder in the medvlsm layout, or a list (pooled);
/// `prompts` a prompt key (`"p1"`) or a list of keys, needed unless `all_prompts` or the model
/// is text-free; writes metrics.json, per_image.csv, masks and report.html into `out`.
///
/// An image classifier (ViT or Swin): `data` is one folder of class folders,
/// `DATA/<split>/<class>/*` or `DATA/<class>/*`; writes metrics.json (`accuracy`, `classes`,
/// `confusion`) into `out`. The segmentation options are ignored, as `vlsm eval` ignores them.
#[pyfunction(name = "eval")]
#[pyo3(signature = (data, out, *, model=None, split="test".to_string(), prompts=None, all_prompts=false, threshold=None, seed=42, batch=4, worst=12, tta="none".to_string(), post="none".to_string(), ablation=false))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    out: PathBuf,
    model: Option<PathBuf>,
    split: String,
    prompts: Option<&Bound<'py, PyAny>>,
    all_prompts: bool,
    threshold: Option<f32>,
    seed: u64,
    batch: usize,
    worst: usize,
    tta: String,
    post: String,
    ablation: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let data = paths(data, "data")?;
    let tta: vlsm::pipeline::Tta = tta.parse().map_err(|e: String| value_error(e.replacen("--tta", "tta", 1)))?;
    let post: vlsm::pipeline::PostProcess =
        post.parse().map_err(|e: String| value_error(e.replacen("--post", "post", 1)))?;
    let prompts = match prompts {
        Some(p) => strings(p, "prompts")?,
        None => vec![],
    };
    if all_prompts && !prompts.is_empty() {
        return Err(value_error("give prompts or all_prompts=True, not both"));
    }
    if batch == 0 {
        return Err(value_error("batch must be at least 1"));
    }
    if let Some(t) = threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(value_error(format!("threshold must be in 0..1, got {t}")));
        }
    }
    if data.is_empty() {
        return Err(value_error("data: give at least one dataset folder"));
    }
    let given = model.clone();
    let json = py.detach(|| -> PyResult<String> {
        let dir = guarded(|| resolve_model(model)).map_err(|f| f.into_py(Kind::Value, &[]))?;
        let missing: Vec<&Path> = data.iter().map(PathBuf::as_path).collect();
        if vlsm::classify::is_classifier_dir(&dir) {
            return guarded(|| Ok(vlsm::classify::evaluate_saved(&dir, &data, &split, batch, &out)?.1.to_string()))
                .map_err(|f| f.into_py(Kind::Value, &missing));
        }
        let seg = guarded(|| vlsm::pipeline::Segmenter::load(&dir))
            .map_err(|f| f.into_py(Kind::Value, &[given.as_deref().unwrap_or(&dir)]))?;
        if seg.uses_text() && prompts.is_empty() && !all_prompts {
            return Err(value_error("give prompts=[\"pK\", ...] or all_prompts=True"));
        }
        let opts = EvalOptions {
            model: dir.display().to_string(),
            data: data.clone(),
            split,
            prompts: if all_prompts { None } else { Some(prompts) },
            out,
            threshold: threshold.unwrap_or_else(|| eval::default_threshold(&seg)),
            seed,
            batch,
            progress: true,
            worst,
            tta,
            post,
            ablation,
        };
        guarded(|| {
            let report = eval::evaluate(&seg, &opts)?;
            eval::write_outputs(&report, &opts)?;
            Ok(serde_json::to_string(&report)?)
        })
        .map_err(|f| f.into_py(Kind::Value, &missing))
    })?;
    json_to_py(py, &json)
}

/// Trains what the TOML config describes, as `vlsm train --config` does (the same progress on
/// stderr), and returns the run's summary: `run_dir`, `best_val_dice`, `best_epoch`,
/// `stopped_early`, `finished` and `history` (one dict per epoch).
///
/// Ctrl-C (KeyboardInterrupt) stops the run before its next training step; the checkpoint of the
/// last finished epoch stays intact, and `resume=True` continues from it.
#[pyfunction]
#[pyo3(signature = (config_path, resume=false, *, lr=None, random_decoder=false))]
pub fn train<'py>(
    py: Python<'py>,
    config_path: PathBuf,
    resume: bool,
    lr: Option<f64>,
    random_decoder: bool,
) -> PyResult<Bound<'py, PyDict>> {
    if let Some(v) = lr {
        if !(v.is_finite() && v > 0.0) {
            return Err(value_error(format!("lr: {v} is not a positive number")));
        }
    }
    let cfg = py
        .detach(|| guarded(|| TrainConfig::load(&config_path)))
        .map_err(|f| f.into_py(Kind::Value, &[&config_path]))?;
    let init = if random_decoder { DecoderInit::Random } else { DecoderInit::Checkpoint };
    let opts = RunOptions { resume, lr, progress: true };
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|s| -> PyResult<_> {
        let run = s.spawn(|| {
            guarded(|| {
                let hooks = Hooks { stop: Some(&stop), ..Hooks::none() };
                tasks::train(&cfg, &opts, hooks, init)
            })
        });
        // Python's signal handlers run only on this thread, between bytecodes: poll them while
        // the run goes on.
        while !run.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(50)));
            if let Err(interrupt) = py.check_signals() {
                stop.store(true, Ordering::Relaxed);
                let outcome = py.detach(|| run.join());
                if let Ok(Err(crate::errors::Failure::Error(e))) = &outcome {
                    eprintln!("{}", crate::errors::one_line(e));
                }
                return Err(interrupt);
            }
        }
        Ok(run.join())
    })?;
    let summary = match result {
        Ok(r) => r.map_err(|f| f.into_py(Kind::Runtime, &[]))?,
        Err(_) => return Err(pyo3::exceptions::PyRuntimeError::new_err("the training thread panicked")),
    };
    eprintln!("{}", tasks::summary_line(&cfg, &summary));
    let d = PyDict::new(py);
    d.set_item("run_dir", summary.run_dir.display().to_string())?;
    d.set_item("best_val_dice", summary.best_val_dice)?;
    d.set_item("best_epoch", summary.best_epoch)?;
    d.set_item("stopped_early", summary.stopped_early)?;
    d.set_item("finished", summary.finished)?;
    let history = PyList::empty(py);
    for r in &summary.history {
        let e = PyDict::new(py);
        e.set_item("epoch", r.epoch)?;
        e.set_item("train_loss", r.train_loss)?;
        e.set_item("val_loss", r.val_loss)?;
        e.set_item("val_dice", r.val_dice)?;
        e.set_item("lr", r.lr)?;
        e.set_item("seconds", r.seconds)?;
        history.append(e)?;
    }
    d.set_item("history", history)?;
    Ok(d)
}

/// Writes `anns/{train,val,test}.json` with prompts p0–p9 for a dataset folder (`images/`,
/// `masks/`), as `vlsm prompts DATASET --class NAME` does, and returns the records per split.
///
/// `split`: train/val/test ratios, `"80/10/10"` or `(80, 10, 10)`.
#[pyfunction]
#[pyo3(signature = (dataset, class_name, *, split=None, seed=42))]
pub fn prompts<'py>(
    py: Python<'py>,
    dataset: PathBuf,
    class_name: String,
    split: Option<&Bound<'py, PyAny>>,
    seed: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let split: [u32; 3] = match split {
        None => [80, 10, 10],
        Some(s) if s.is_instance_of::<PyString>() => {
            let text: String = s.extract()?;
            vlsm::data::prompts::parse_split(&text).map_err(|e| value_error(crate::errors::one_line(&e)))?
        }
        Some(s) => s.extract::<[u32; 3]>().map_err(|_| {
            PyTypeError::new_err("split: expected \"80/10/10\" or three whole numbers like (80, 10, 10)")
        })?,
    };
    if split.iter().all(|&v| v == 0) {
        return Err(value_error(format!("split: the ratios must not all be zero, got {split:?}")));
    }
    let counts = py
        .detach(|| guarded(|| vlsm::data::prompts::generate(&dataset, &class_name, split, seed)))
        .map_err(|f| f.into_py(Kind::Value, &[&dataset]))?;
    let d = PyDict::new(py);
    d.set_item("train", counts.train)?;
    d.set_item("val", counts.val)?;
    d.set_item("test", counts.test)?;
    Ok(d)
}

/// The built-in model's directory (`VLSM_MODEL`, a checkout's `models/default`, or the copy
/// embedded in the module, unpacked once into the user's cache).
#[pyfunction]
pub fn default_model_dir(py: Python<'_>) -> PyResult<PathBuf> {
    py.detach(|| guarded(vlsm::pipeline::default_model_dir)).map_err(|f| f.into_py(Kind::Value, &[]))
}
