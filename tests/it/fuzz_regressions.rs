//! Replays every input a fuzzer crashed on (`fuzz/regressions/TARGET/*`) through the same
//! code the fuzz target runs (`fuzz/harness.rs`), so each fixed crash stays fixed. The test
//! build has overflow checks, as the fuzz build does.

use std::path::Path;

#[path = "../../fuzz/harness.rs"]
mod harness;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("list the regressions").path();
        let data = std::fs::read(&path).expect("read a regression input");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panics again", path.display());
    }
}

#[test]
fn zip_reader() {
    replay("zip_reader", harness::zip_reader);
}

#[test]
fn elf_inspect() {
    replay("elf_inspect", harness::elf_inspect);
}

#[test]
fn elf_patch() {
    replay("elf_patch", harness::elf_patch);
}

#[test]
fn elf_shrink() {
    replay("elf_shrink", harness::elf_shrink);
}

#[test]
fn elf_companion_host() {
    replay("elf_companion_host", harness::elf_companion_host);
}

/// The fixtures themselves, through the companion harness (a seed corpus in miniature).
#[test]
fn elf_companion_host_on_the_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (mut n, mut moved) = (0, 0);
    for dir in ["cuda", "hip", "aarch64", "ppc64le"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("list the fixtures") {
            let path = entry.expect("a fixture").path();
            if path.extension().is_some_and(|e| e == "so") {
                moved += harness::elf_companion_host_moves(
                    &std::fs::read(&path).expect("read a fixture"),
                );
                n += 1;
            }
        }
    }
    assert!(n >= 9, "only {n} fixtures");
    // Every fixture moves, whole and split in two (the debug fixture too).
    assert_eq!(moved, 2 * n, "{moved} of {} plans were carried out", 2 * n);
}

#[test]
fn fatbin_cuda() {
    replay("fatbin_cuda", harness::fatbin_cuda);
}

#[test]
fn fatbin_hip() {
    replay("fatbin_hip", harness::fatbin_hip);
}
