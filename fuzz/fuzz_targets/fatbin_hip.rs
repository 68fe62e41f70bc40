//! Fuzz target `fatbin_hip`: see `harness::fatbin_hip` in fuzz/harness.rs for what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fatbin_hip(data));
