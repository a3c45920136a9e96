//! `vlsm._vlsm`: the native module of the `vlsm` Python package (`python/vlsm/`).
//!
//! Everything here is a thin layer over the `vlsm` library, calling the same functions as the
//! `vlsm` command line: [`segment`] (`vlsm segment`), [`commands`] (`vlsm eval`, `vlsm train`,
//! `vlsm prompts`), `imgproc` (the `vlsm.imgproc` submodule). The model runs with the GIL
//! released; errors become `FileNotFoundError` / `ValueError` / `RuntimeError` carrying the CLI's
//! one-line message, and a Rust panic becomes a `RuntimeError` instead of aborting the process.

mod commands;
mod errors;
mod imgproc;
mod segment;

use pyo3::prelude::*;

#[pymodule]
fn _vlsm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<segment::Segmenter>()?;
    m.add_class::<segment::SegmentResult>()?;
    m.add_function(wrap_pyfunction!(commands::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(commands::train, m)?)?;
    m.add_function(wrap_pyfunction!(commands::prompts, m)?)?;
    m.add_function(wrap_pyfunction!(commands::default_model_dir, m)?)?;
    m.add_function(wrap_pyfunction!(segment::write_mask, m)?)?;
    m.add_function(wrap_pyfunction!(segment::_panic_for_tests, m)?)?;
    imgproc::register(py, m)?;
    Ok(())
}
