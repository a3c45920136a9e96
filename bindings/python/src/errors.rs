//! Rust errors and panics as Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// The one line the `vlsm` command prints after `error: `: the outermost context and the root
/// cause, newlines flattened.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    let root = e.root_cause().to_string();
    if root != msg && !msg.contains(&root) {
        msg = format!("{msg}: {root}");
    }
    msg.replace('\n', " ")
}

/// What went wrong, before it becomes an exception.
pub enum Failure {
    /// An error the library returned.
    Error(anyhow::Error),
    /// A panic, caught.
    Panic(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Error(e)
    }
}

/// Runs `f`, turning a panic into [`Failure::Panic`] (it must never unwind into Python).
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Failure::Error),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Failure::Panic(msg))
        }
    }
}

/// The exception class an error becomes.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Bad input: an argument, an unreadable image, a malformed model directory or config.
    Value,
    /// A failure while running.
    Runtime,
}

impl Failure {
    /// `FileNotFoundError` when one of `paths` does not exist (the message is the CLI's, naming
    /// the file), else `kind`; a panic is always a `RuntimeError`.
    pub fn into_py(self, kind: Kind, paths: &[&Path]) -> PyErr {
        match self {
            Failure::Panic(msg) => PyRuntimeError::new_err(format!("internal error (a bug in vlsm): {msg}")),
            Failure::Error(e) => {
                let msg = one_line(&e);
                let missing = paths.iter().any(
                    |p| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound),
                );
                let not_found = missing
                    || e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                    });
                if not_found {
                    PyFileNotFoundError::new_err(msg)
                } else {
                    match kind {
                        Kind::Value => PyValueError::new_err(msg),
                        Kind::Runtime => PyRuntimeError::new_err(msg),
                    }
                }
            }
        }
    }
}

/// A `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
