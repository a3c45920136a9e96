//! All integration tests of `imgproc` in one binary (one link, one process; see support for shared helpers).

mod support;
mod errors_and_props;
mod golden;
mod sift;
mod limits;
