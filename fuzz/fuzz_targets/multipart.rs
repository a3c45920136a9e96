//! Any bytes as the multipart body of `POST /api/segment`, through the server's whole router in
//! process; the answer must be 200 or a JSON 4xx. The body is shared with the property tests:
//! crates/vlsm-serve/tests/it/support/fuzz_harness.rs.
#![no_main]

#[path = "../../crates/vlsm-serve/tests/it/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::multipart(data));
