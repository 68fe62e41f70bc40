//! Fuzz target `memory_bound`: `harness::memory_bound` (a wheel inspected and trimmed under the
//! real archive limits and a 32 MiB budget) must not hold more heap than
//! `harness::memory_bound_limit` of its input. A counting global allocator measures it.

#![no_main]

#[path = "../counting_alloc.rs"]
mod counting_alloc;
#[path = "../harness.rs"]
mod harness;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let base = counting_alloc::reset_peak();
    harness::memory_bound(data);
    let used = counting_alloc::peak().saturating_sub(base) as u64;
    let limit = harness::memory_bound_limit(data.len());
    assert!(
        used <= limit,
        "peak heap {used} bytes for a {}-byte input, over {limit}",
        data.len()
    );
});
