//! Fuzz target `elf_shrink`: see `harness::elf_shrink` in fuzz/harness.rs for what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::elf_shrink(data));
