//! The training-config (TOML) parser and validator on any text. Seeds: configs/*.toml.
//! The body is shared with the property tests: crates/vlsm/tests/it/support/fuzz_harness.rs.
#![no_main]

#[path = "../../crates/vlsm/tests/it/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::train_config(data));
