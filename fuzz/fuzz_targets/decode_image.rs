//! Every image reader (PNG, JPEG, TIFF, BMP, NIfTI, .nii.gz, DICOM) on any bytes; the first byte picks
//! the file's extension. Seeds: tests/fixtures/io/* and tests/fixtures/bad_inputs/* with an extension byte.
//! The body is shared with the property tests: crates/vlsm/tests/it/support/fuzz_harness.rs.
#![no_main]

#[path = "../../crates/vlsm/tests/it/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decode_image(data));
