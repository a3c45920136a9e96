use thiserror::Error;

/// Everything OpenCV would reject with an assertion is reported here instead of panicking.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("{op}: empty image ({width}x{height})")]
    Empty { op: &'static str, width: usize, height: usize },
    #[error("{op}: expected {expected} channel(s), got {got}")]
    Channels { op: &'static str, expected: &'static str, got: usize },
    #[error("{op}: {msg}")]
    BadArg { op: &'static str, msg: String },
    #[error("{op}: image contains NaN")]
    NaN { op: &'static str },
    #[error("image data length {got} does not match {width}x{height}x{channels}")]
    Shape { width: usize, height: usize, channels: usize, got: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn bad(op: &'static str, msg: impl Into<String>) -> Error {
    Error::BadArg { op, msg: msg.into() }
}
