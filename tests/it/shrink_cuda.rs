//! `elf::shrink::shrink` on the CUDA fixtures (x86_64, GNU ld): cut and zero-in-place, checked
//! with readelf, cuobjdump, goblin and a real `dlopen` (C++ exception across the moved phdr
//! table included).

use std::process::Command;

use wheelslim::elf::shrink::{ShrinkMethod, shrink};

use crate::common::{fixture, tempdir};
use crate::shrink_support::*;

fn sections_of(variant: &str) -> &'static [&'static str] {
    if variant == "rdc" {
        &[".nv_fatbin", "__nv_relfatbin"]
    } else {
        &[".nv_fatbin"]
    }
}

/// Trims every container of the variant to `keep`, shrinks with cutting allowed, and checks
/// the output with every oracle. Returns the bytes removed (0 when no whole page was freed,
/// in which case the output must be the zeroed one, with that reason).
fn cut_variant(variant: &str, keep: Keep) -> u64 {
    let path = fixture(&format!("cuda/libfix_{variant}.so"));
    let data = std::fs::read(&path).unwrap();
    let dir = tempdir();
    let mut edits = Vec::new();
    let mut containers = Vec::new();
    for s in sections_of(variant) {
        let (e, news, _) = cuda_edit(&data, s, keep);
        edits.push(e);
        containers.extend(news);
    }
    let outcome = shrink(&data, &edits, true).unwrap();
    let out = write(
        dir.path(),
        &format!("libfix_{variant}.{keep:?}.so"),
        &outcome.data,
    );
    let removed = match &outcome.method {
        ShrinkMethod::Zeroed { reason } => {
            assert!(reason.contains("no whole 0x1000-byte granule"), "{reason}");
            assert_eq!(outcome.data.len(), data.len());
            0
        }
        ShrinkMethod::Cut { .. } => check_cut_layout(&path, &out, &outcome),
    };
    assert_eq!(
        cuobjdump_list(&out, variant == "rdc"),
        cuobjdump_of_containers(dir.path(), &containers),
        "cuobjdump does not list exactly the kept entries ({:?})",
        outcome.notes
    );
    assert_eq!(
        load_cuda(&out),
        "7 8 73",
        "the trimmed library does not load and work"
    );
    // The sections now end where the packed containers end.
    for s in sections_of(variant).iter().filter(|_| removed > 0) {
        let (_, _, size) = section(&outcome.data, s).unwrap();
        let (off, _, _) = section(&outcome.data, s).unwrap();
        let walked = cuda_containers(&outcome.data[off..off + size]);
        let last = walked.last().unwrap();
        assert_eq!(last.off + last.len, size, "`{s}` is not packed");
    }
    removed
}

macro_rules! cut_tests {
    ($($name:ident: $variant:literal, $keep:expr, $min:expr;)*) => {$(
        #[test]
        fn $name() {
            let removed = cut_variant($variant, $keep);
            let min: u64 = $min;
            if min == 0 {
                assert_eq!(removed, 0, "a cut was not expected here");
            } else {
                assert!(removed >= min, "only {removed:#x} bytes cut");
            }
        }
    )*};
}

cut_tests! {
    cut_plain_first: "plain", Keep::First, 0x10000;
    cut_plain_pair: "plain", Keep::LastPair, 0x10000;
    cut_default_first: "default", Keep::First, 0x10000;
    cut_default_pair: "default", Keep::LastPair, 0x8000;
    cut_compress_all_first: "compress_all", Keep::First, 0x1000;
    cut_compress_all_pair: "compress_all", Keep::LastPair, 0x1000;
    cut_lz4_first: "lz4", Keep::First, 0x10000;
    cut_lz4_pair: "lz4", Keep::LastPair, 0x8000;
    cut_concat_first: "concat", Keep::First, 0x1000;
    // Two of three `--concat` groups per TU: less than a page is freed.
    cut_concat_pair: "concat", Keep::LastPair, 0;
    cut_debug_first: "debug", Keep::First, 0x10000;
    cut_debug_pair: "debug", Keep::LastPair, 0x10000;
    cut_rdc_first: "rdc", Keep::First, 0x1000;
    // The pair of each rdc container frees 0xb48 bytes: no whole page.
    cut_rdc_pair: "rdc", Keep::LastPair, 0;
}

/// The oracle itself: cuobjdump on the untouched containers, one by one, lists exactly what it
/// lists for the whole fixture.
#[test]
fn container_oracle_matches_cuobjdump_on_fixtures() {
    let dir = tempdir();
    for variant in [
        "plain",
        "default",
        "compress_all",
        "lz4",
        "concat",
        "debug",
        "rdc",
    ] {
        let path = fixture(&format!("cuda/libfix_{variant}.so"));
        let data = std::fs::read(&path).unwrap();
        let mut containers = Vec::new();
        for s in sections_of(variant) {
            containers.extend(cuda_edit(&data, s, Keep::All).1);
        }
        assert_eq!(
            cuobjdump_list(&path, variant == "rdc"),
            cuobjdump_of_containers(dir.path(), &containers),
            "{variant}"
        );
    }
}

/// Both fatbin sections of the rdc fixture are adjacent: they are packed as one region, so
/// `__nv_relfatbin` moves down and one hole is cut.
#[test]
fn rdc_sections_are_packed_as_one_region() {
    let data = std::fs::read(fixture("cuda/libfix_rdc.so")).unwrap();
    let edits: Vec<_> = sections_of("rdc")
        .iter()
        .map(|s| cuda_edit(&data, s, Keep::First).0)
        .collect();
    let outcome = shrink(&data, &edits, true).unwrap();
    let (_, nv_addr, nv_size) = section(&outcome.data, ".nv_fatbin").unwrap();
    let (_, rel_addr, _) = section(&outcome.data, "__nv_relfatbin").unwrap();
    let (_, old_rel_addr, _) = section(&data, "__nv_relfatbin").unwrap();
    assert!(rel_addr < old_rel_addr, "{:?}", outcome.notes);
    assert_eq!(rel_addr, (nv_addr + nv_size as u64 + 7) & !7);
    assert!(matches!(
        outcome.method,
        ShrinkMethod::Cut {
            segments_split: 1,
            ..
        }
    ));
    // The .symtab `fatbinData` symbols follow their containers.
    let elf = goblin::elf::Elf::parse(&outcome.data).unwrap();
    let starts: Vec<u64> = elf
        .syms
        .iter()
        .filter(|s| elf.strtab.get_at(s.st_name) == Some("fatbinData"))
        .map(|s| s.st_value)
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(starts.contains(&rel_addr), "{starts:x?}");
}

/// The program header table of a GNU ld file has no room after it, so it moves into the dead
/// bytes before the hole, inside the head PT_LOAD.
#[test]
fn phdr_table_moves_into_the_dead_bytes() {
    let data = std::fs::read(fixture("cuda/libfix_plain.so")).unwrap();
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    let outcome = shrink(&data, &[edit], true).unwrap();
    let elf = goblin::elf::Elf::parse(&outcome.data).unwrap();
    let (fat_off, _, fat_size) = section(&outcome.data, ".nv_fatbin").unwrap();
    let phoff = elf.header.e_phoff as usize;
    assert!(phoff >= fat_off + fat_size, "table at {phoff:#x}");
    assert_eq!(elf.header.e_phnum, 10);
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("dead bytes before the hole")),
        "{:?}",
        outcome.notes
    );
}

fn zero_variant(variant: &str) {
    let path = fixture(&format!("cuda/libfix_{variant}.so"));
    let data = std::fs::read(&path).unwrap();
    let dir = tempdir();
    let mut edits = Vec::new();
    let mut containers = Vec::new();
    for s in sections_of(variant) {
        let (e, news, _) = cuda_edit(&data, s, Keep::First);
        edits.push(e);
        containers.extend(news);
    }
    let outcome = shrink(&data, &edits, false).unwrap();
    assert!(
        matches!(&outcome.method, ShrinkMethod::Zeroed { reason } if reason.contains("not allowed")),
        "{:?}",
        outcome.method
    );
    assert_eq!(outcome.data.len(), data.len());
    let out = write(
        dir.path(),
        &format!("libfix_{variant}.zeroed.so"),
        &outcome.data,
    );
    let layout = |p: &std::path::Path| run_out(Command::new("readelf").arg("-lSW").arg(p)).1;
    assert_eq!(layout(&path), layout(&out), "zeroing changed the layout");
    assert!(deflated_len(&outcome.data) < deflated_len(&data));
    assert_eq!(
        cuobjdump_list(&out, variant == "rdc"),
        cuobjdump_of_containers(dir.path(), &containers)
    );
    assert_eq!(readelf_complaints(&out), "");
    assert_eq!(load_cuda(&out), "7 8 73");
}

#[test]
fn zero_in_place_every_cuda_variant() {
    for v in [
        "plain",
        "default",
        "compress_all",
        "lz4",
        "concat",
        "debug",
        "rdc",
    ] {
        zero_variant(v);
    }
}
