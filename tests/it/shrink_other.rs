//! `elf::shrink::shrink` on the HIP (lld, PT_PHDR), aarch64 and ppc64le fixtures.

use std::process::Command;

use wheelslim::elf::shrink::{ShrinkMethod, shrink};

use crate::common::{fixture, tempdir};
use crate::shrink_support::*;

/// lld layout: `.hip_fatbin` in the first R PT_LOAD (with the ELF header and PT_PHDR), wrapper
/// pointers only in the RELA addends (the in-place words are 0).
#[test]
fn hip_bundles_are_cut_and_phdr_stays_mapped() {
    let path = fixture("hip/libhipfix.so");
    let data = std::fs::read(&path).unwrap();
    let (edit, objects) = hip_edit(&data);
    assert_eq!(objects, 2);
    let outcome = shrink(&data, &[edit], true).unwrap();
    let dir = tempdir();
    let out = write(dir.path(), "libhipfix.cut.so", &outcome.data);
    let removed = check_cut_layout(&path, &out, &outcome);
    assert!(removed >= 0x5000, "{removed:#x}");
    // PT_PHDR describes the moved table and a PT_LOAD maps it.
    let elf = goblin::elf::Elf::parse(&outcome.data).unwrap();
    let phdr = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == goblin::elf::program_header::PT_PHDR)
        .expect("PT_PHDR kept");
    assert_eq!(phdr.p_offset, elf.header.e_phoff);
    assert_eq!(phdr.p_filesz, u64::from(elf.header.e_phnum) * 56);
    assert!(
        elf.program_headers
            .iter()
            .any(|l| l.p_type == goblin::elf::program_header::PT_LOAD
                && l.p_offset <= phdr.p_offset
                && phdr.p_offset + phdr.p_filesz <= l.p_offset + l.p_filesz
                && l.p_vaddr + (phdr.p_offset - l.p_offset) == phdr.p_vaddr)
    );
    // The stub walks the re-pointed wrappers at registration: 2 valid bundles, 1 code object each.
    assert_eq!(load_hip(&out), "11 73 2 2 3");
    // The pruned bundles are what the wrappers reach.
    let (off, _, size) = section(&outcome.data, ".hip_fatbin").unwrap();
    let bundles = hip_bundles(&outcome.data[off..off + size]);
    assert_eq!(bundles.len(), 2);
    for (o, n) in bundles {
        let entries = bundle_entries(&outcome.data[off + o..off + o + n]);
        let triples: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            triples,
            [
                "host-x86_64-unknown-linux--",
                "hipv4-amdgcn-amd-amdhsa--gfx90a"
            ]
        );
    }
}

/// Compressed bundles are small and 4096-aligned: rebuilding them frees no whole page, so the
/// file is zeroed in place, with the reason, and still loads.
#[test]
fn hip_ccob_frees_no_page_and_is_zeroed() {
    let path = fixture("hip/libhipfix_ccob.so");
    let data = std::fs::read(&path).unwrap();
    let (edit, _) = hip_edit(&data);
    let outcome = shrink(&data, &[edit], true).unwrap();
    match &outcome.method {
        ShrinkMethod::Zeroed { reason } => {
            assert!(reason.contains("no whole 0x1000-byte granule"), "{reason}")
        }
        m => panic!("expected zeroing, got {m:?}"),
    }
    assert_eq!(outcome.data.len(), data.len());
    assert!(deflated_len(&outcome.data) < deflated_len(&data));
    let dir = tempdir();
    let out = write(dir.path(), "libhipfix_ccob.so", &outcome.data);
    assert_eq!(readelf_complaints(&out), "");
    assert_eq!(load_hip(&out), "11 73 2 0 3");
}

#[test]
fn hip_zero_in_place() {
    let path = fixture("hip/libhipfix.so");
    let data = std::fs::read(&path).unwrap();
    let (edit, _) = hip_edit(&data);
    let outcome = shrink(&data, &[edit], false).unwrap();
    assert!(matches!(outcome.method, ShrinkMethod::Zeroed { .. }));
    assert_eq!(outcome.data.len(), data.len());
    assert!(deflated_len(&outcome.data) < deflated_len(&data));
    let dir = tempdir();
    let out = write(dir.path(), "libhipfix.zeroed.so", &outcome.data);
    assert_eq!(load_hip(&out), "11 73 2 2 3");
}

/// The aarch64 fixture's fatbin (0x5ab8 bytes) is smaller than one 64 KiB granule: nothing
/// can leave the file, so it is zeroed in place; it still loads with 64 KiB pages and the
/// wrappers reach the trimmed containers.
#[test]
fn aarch64_fixture_is_zeroed_for_want_of_a_64k_granule() {
    let path = fixture("aarch64/libfix_a64.so");
    let data = std::fs::read(&path).unwrap();
    let (edit, news, kept) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    assert_eq!(kept, 2);
    let outcome = shrink(&data, &[edit], true).unwrap();
    match &outcome.method {
        ShrinkMethod::Zeroed { reason } => {
            assert!(reason.contains("no whole 0x10000-byte granule"), "{reason}")
        }
        m => panic!("expected zeroing, got {m:?}"),
    }
    let dir = tempdir();
    let out = write(dir.path(), "libfix_a64.so", &outcome.data);
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(dir.path(), &news)
    );
    assert_eq!(readelf_complaints(&out), "");
    let got = load_qemu(
        "aarch64",
        &out,
        &[
            "fix_a64_host:3",
            "fix_throw_catch:7",
            "fix_fatbin_check",
            "fix_fatbin_entries",
            "fix_fatbin_elves",
        ],
    );
    assert_eq!(
        got,
        [
            "fix_a64_host(3) = 13",
            "fix_throw_catch(7) = 73",
            "fix_fatbin_check(0) = 2",
            "fix_fatbin_entries(0) = 2",
            "fix_fatbin_elves(0) = 2"
        ]
    );
}

#[test]
fn ppc64le_fixture_is_zeroed_and_loads() {
    let path = fixture("ppc64le/libfix_ppc64le.so");
    let data = std::fs::read(&path).unwrap();
    let (edit, news, _) = cuda_edit(&data, ".nv_fatbin", Keep::LastPair);
    let outcome = shrink(&data, &[edit], true).unwrap();
    assert!(
        matches!(&outcome.method, ShrinkMethod::Zeroed { reason } if reason.contains("0x10000")),
        "{:?}",
        outcome.method
    );
    let dir = tempdir();
    let out = write(dir.path(), "libfix_ppc64le.so", &outcome.data);
    assert_eq!(
        cuobjdump_list(&out, false),
        cuobjdump_of_containers(dir.path(), &news)
    );
    let got = load_qemu(
        "ppc64le",
        &out,
        &[
            "fix_ppc_host:3",
            "fix_fatbin_check",
            "fix_fatbin_entries",
            "fix_fatbin_elves",
        ],
    );
    assert_eq!(
        got,
        [
            "fix_ppc_host(3) = 16",
            "fix_fatbin_check(0) = 1",
            "fix_fatbin_entries(0) = 2",
            "fix_fatbin_elves(0) = 1"
        ]
    );
}

/// readelf agrees that zeroing in place changes no header on the cross fixtures.
#[test]
fn cross_fixtures_zero_in_place_keep_their_layout() {
    let dir = tempdir();
    for f in ["aarch64/libfix_a64.so", "ppc64le/libfix_ppc64le.so"] {
        let path = fixture(f);
        let data = std::fs::read(&path).unwrap();
        let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
        let outcome = shrink(&data, &[edit], false).unwrap();
        let out = write(dir.path(), "z.so", &outcome.data);
        let layout = |p: &std::path::Path| run_out(Command::new("readelf").arg("-lSrW").arg(p)).1;
        assert_eq!(layout(&path), layout(&out), "{f}");
        assert!(deflated_len(&outcome.data) < deflated_len(&data), "{f}");
    }
}
