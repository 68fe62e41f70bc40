//! Fuzz target `elf_companion_host`: see `harness::elf_companion_host` in fuzz/harness.rs for
//! what it checks.

#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::elf_companion_host(data));
