//! All integration tests of `imgproc` in one binary (one link, one process; see support for shared helpers).

mod errors_and_props;
mod golden;
mod limits;
mod sift;
mod support;
