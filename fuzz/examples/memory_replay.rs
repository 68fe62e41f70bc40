//! The `memory_bound` check without libFuzzer, on stable Rust: runs `harness::memory_bound`
//! over every file given (or every file in the folders given) and fails when one holds more
//! heap than `harness::memory_bound_limit` of its size.
//!
//! `cargo run --release --example memory_replay -- corpus/memory_bound` (from fuzz/).

#[path = "../counting_alloc.rs"]
mod counting_alloc;
#[path = "../harness.rs"]
mod harness;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

fn main() -> std::process::ExitCode {
    let mut files = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let p = std::path::PathBuf::from(arg);
        if p.is_dir() {
            let mut more: Vec<_> = std::fs::read_dir(&p)
                .expect("read the folder")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            more.sort();
            files.extend(more);
        } else {
            files.push(p);
        }
    }
    let mut over = 0;
    for f in &files {
        let data = std::fs::read(f).expect("read the input");
        let base = counting_alloc::reset_peak();
        harness::memory_bound(&data);
        let used = counting_alloc::peak().saturating_sub(base) as u64;
        let limit = harness::memory_bound_limit(data.len());
        let tag = if used > limit { "OVER" } else { "ok" };
        over += usize::from(used > limit);
        println!("{:>12} {:>12} {tag:4} {}", used, limit, f.display());
    }
    println!(
        "{} inputs, {over} over their bound (peak heap bytes, bound)",
        files.len()
    );
    if over > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
