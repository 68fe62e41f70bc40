//! Fuzz target `fatbin_cuda`: see `harness::fatbin_cuda` in fuzz/harness.rs for what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fatbin_cuda(data));
