//! The `vlsm._vlsm` native module.
use pyo3::prelude::*;

mod imgproc;

#[pymodule]
fn _vlsm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    imgproc::register(m.py(), m)?;
    Ok(())
}
