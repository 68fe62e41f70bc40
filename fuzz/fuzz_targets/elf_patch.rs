//! Fuzz target `elf_patch`: see `harness::elf_patch` in fuzz/harness.rs for what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::elf_patch(data));
