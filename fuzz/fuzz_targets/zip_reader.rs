//! Fuzz target `zip_reader`: see `harness::zip_reader` in fuzz/harness.rs for what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::zip_reader(data));
