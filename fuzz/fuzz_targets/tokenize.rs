//! The CLIP BPE and WordPiece tokenizers on any text.
//! The body is shared with the property tests: crates/vlsm/tests/it/support/fuzz_harness.rs.
#![no_main]

#[path = "../../crates/vlsm/tests/it/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::tokenize(data));
