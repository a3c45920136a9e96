//! Placeholder for the `vlsm.imgproc` submodule (OpenCV-named operations on numpy arrays); the
//! real module replaces this file.

use pyo3::prelude::*;

/// Adds the `imgproc` submodule to the native module (nothing yet).
pub fn register(_py: Python<'_>, _parent: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
