//! Corner and keypoint detectors.
pub mod harris;
pub mod sift;
