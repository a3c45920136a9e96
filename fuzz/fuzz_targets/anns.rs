//! A dataset whose anns/test.json is any bytes: opened, prompts drawn, every path inside the dataset.
//! Seeds: tests/fixtures/bad_inputs/anns_*.json.
//! The body is shared with the property tests: crates/vlsm/tests/it/support/fuzz_harness.rs.
#![no_main]

#[path = "../../crates/vlsm/tests/it/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::anns(data));
