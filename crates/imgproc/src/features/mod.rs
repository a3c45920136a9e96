//! Corner and keypoint detectors.
pub mod harris;
