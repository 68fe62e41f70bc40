//! `elf::shrink::shrink` on inputs it must reject, and a mutation loop: hostile bytes give an
//! `Err` or a checked output, never a panic.

use wheelslim::elf::ElfError;
use wheelslim::elf::shrink::{SectionEdit, ShrinkMethod, shrink};

use crate::common::fixture;
use crate::shrink_support::*;

fn plain() -> (Vec<u8>, SectionEdit) {
    let data = std::fs::read(fixture("cuda/libfix_plain.so")).unwrap();
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    (data, edit)
}

#[test]
fn thirty_two_bit_and_big_endian_are_unsupported() {
    let (data, edit) = plain();
    let mut c32 = data.clone();
    c32[4] = 1;
    let e = shrink(&c32, std::slice::from_ref(&edit), true).unwrap_err();
    assert!(
        matches!(&e, ElfError::Unsupported(m) if m.contains("32-bit")),
        "{e}"
    );
    let mut be = data.clone();
    be[5] = 2;
    let e = shrink(&be, std::slice::from_ref(&edit), false).unwrap_err();
    assert!(
        matches!(&e, ElfError::Unsupported(m) if m.contains("big-endian")),
        "{e}"
    );
    let e = shrink(b"MZ\x90\x00", &[], true).unwrap_err();
    assert!(matches!(e, ElfError::NotElf(_)), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    let (data, edit) = plain();
    for len in [
        0,
        4,
        16,
        63,
        64,
        100,
        0x238,
        0x3000,
        data.len() / 2,
        data.len() - 64,
        data.len() - 1,
    ] {
        for allow_cut in [true, false] {
            let r = shrink(&data[..len], std::slice::from_ref(&edit), allow_cut);
            assert!(
                matches!(
                    r,
                    Err(ElfError::Truncated(_) | ElfError::NotElf(_) | ElfError::Malformed(_))
                ),
                "a file truncated to {len} bytes gave {r:?}"
            );
        }
    }
}

#[test]
fn bad_edits_are_errors() {
    let (data, edit) = plain();
    let named = |name: &str| SectionEdit {
        name: name.into(),
        blocks: Vec::new(),
    };
    let e = shrink(&data, &[named(".nv_fatbin_nope")], true).unwrap_err();
    assert!(matches!(e, ElfError::InvalidEdit(_)), "{e}");
    let e = shrink(&data, &[named(".bss")], true).unwrap_err();
    assert!(
        matches!(&e, ElfError::Unsupported(m) if m.contains("NOBITS")),
        "{e}"
    );
    let e = shrink(&data, &[named(".comment")], true).unwrap_err();
    assert!(
        matches!(&e, ElfError::Unsupported(m) if m.contains("PT_LOAD")),
        "{e}"
    );
    let e = shrink(&data, &[edit.clone(), edit.clone()], true).unwrap_err();
    assert!(matches!(e, ElfError::InvalidEdit(_)), "{e}");

    let mut grown = edit.clone();
    let too_long = grown.blocks[0].old_len as usize + 8;
    grown.blocks[0].new_bytes.resize(too_long, 0);
    assert!(matches!(
        shrink(&data, &[grown], true),
        Err(ElfError::InvalidEdit(_))
    ));
    let mut overlap = edit.clone();
    overlap.blocks[1].old_offset = overlap.blocks[0].old_offset + 8;
    assert!(matches!(
        shrink(&data, &[overlap], true),
        Err(ElfError::InvalidEdit(_))
    ));
    let mut past = edit.clone();
    past.blocks[2].old_len += 0x100000;
    assert!(matches!(
        shrink(&data, &[past], true),
        Err(ElfError::InvalidEdit(_))
    ));
    let mut odd = edit.clone();
    odd.blocks[0].align = 12;
    assert!(matches!(
        shrink(&data, &[odd], true),
        Err(ElfError::InvalidEdit(_))
    ));
}

/// Non-zero bytes outside every block would be lost by packing: zeroed instead, with why.
#[test]
fn uncovered_bytes_refuse_the_cut() {
    let (data, mut edit) = plain();
    let dropped = edit.blocks.remove(1);
    let outcome = shrink(&data, &[edit], true).unwrap();
    match outcome.method {
        ShrinkMethod::Zeroed { reason } => assert!(
            reason.contains(&format!("+{:#x}", dropped.old_offset))
                && reason.contains("belongs to no container"),
            "{reason}"
        ),
        m => panic!("{m:?}"),
    }
}

/// A container the caller empties is dropped; wrappers still point at it, so no cut.
#[test]
fn emptied_referenced_container_refuses_the_cut() {
    let (data, mut edit) = plain();
    edit.blocks[1].new_bytes.clear();
    let outcome = shrink(&data, &[edit], true).unwrap();
    match outcome.method {
        ShrinkMethod::Zeroed { reason } => {
            assert!(reason.contains("which the edit drops"), "{reason}")
        }
        m => panic!("{m:?}"),
    }
}

/// Unchanged containers: nothing frees a granule, nothing changes but nothing breaks.
#[test]
fn identity_edit_is_zeroed_without_change() {
    let (data, _) = plain();
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::All);
    let outcome = shrink(&data, &[edit], true).unwrap();
    assert!(matches!(outcome.method, ShrinkMethod::Zeroed { .. }));
    assert_eq!(outcome.data, data);
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Byte ranges worth mutating: the ELF header, both header tables, and the tables the
/// shrinker reads (dynamic, relocations, symbols, wrappers), plus container headers.
fn hot_ranges(data: &[u8], fat: &[&str]) -> Vec<(usize, usize)> {
    let elf = goblin::elf::Elf::parse(data).unwrap();
    let mut r = vec![(0, 64)];
    let ph = elf.header.e_phoff as usize;
    r.push((ph, ph + elf.program_headers.len() * 56));
    let sh = elf.header.e_shoff as usize;
    r.push((sh, sh + elf.section_headers.len() * 64));
    for s in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(s.sh_name).unwrap_or("");
        let wanted = [
            ".dynamic",
            ".rela.dyn",
            ".dynsym",
            ".symtab",
            ".nvFatBinSegment",
            ".hipFatBinSegment",
            ".relr.dyn",
        ];
        if wanted.contains(&name) {
            r.push((s.sh_offset as usize, (s.sh_offset + s.sh_size) as usize));
        }
        if fat.contains(&name) {
            r.push((s.sh_offset as usize, s.sh_offset as usize + 64));
        }
    }
    r
}

#[test]
fn mutated_headers_never_panic() {
    let cases: [(&str, &[&str]); 5] = [
        ("cuda/libfix_plain.so", &[".nv_fatbin"]),
        ("cuda/libfix_rdc.so", &[".nv_fatbin", "__nv_relfatbin"]),
        ("hip/libhipfix.so", &[".hip_fatbin"]),
        ("aarch64/libfix_a64.so", &[".nv_fatbin"]),
        ("ppc64le/libfix_ppc64le.so", &[".nv_fatbin"]),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut cut, mut err) = (0, 0, 0);
    for (file, sections) in cases {
        let data = std::fs::read(fixture(file)).unwrap();
        let edits: Vec<SectionEdit> = if file.starts_with("hip/") {
            vec![hip_edit(&data).0]
        } else {
            sections
                .iter()
                .map(|s| cuda_edit(&data, s, Keep::First).0)
                .collect()
        };
        let hot = hot_ranges(&data, sections);
        for i in 0..700 {
            let mut m = data.clone();
            for _ in 0..1 + rng.below(4) {
                let (a, b) = hot[rng.below(hot.len())];
                if b > a && b <= m.len() {
                    let at = a + rng.below(b - a);
                    m[at] = match rng.below(4) {
                        0 => m[at] ^ (1 << rng.below(8)),
                        1 => 0,
                        2 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
            }
            if i % 7 == 0 {
                m.truncate(rng.below(m.len() + 1));
            }
            match shrink(&m, &edits, i % 5 != 0) {
                Ok(o) => {
                    ok += 1;
                    if let ShrinkMethod::Cut {
                        file_bytes_removed, ..
                    } = o.method
                    {
                        cut += 1;
                        assert_eq!(o.data.len() as u64 + file_bytes_removed, m.len() as u64);
                    } else {
                        assert_eq!(o.data.len(), m.len());
                    }
                }
                Err(_) => err += 1,
            }
        }
    }
    // The loop must exercise all three outcomes.
    assert!(
        ok > 100 && cut > 50 && err > 100,
        "ok {ok}, cut {cut}, err {err}"
    );
}

/// Blocks with stranger alignment requirements than the section: a 4096-aligned block in an
/// 8-aligned CUDA section that is not 4096-aligned refuses the cut rather than moving data.
#[test]
fn misaligned_block_refuses_the_cut() {
    let (data, mut edit) = plain();
    edit.blocks[1].align = 4096;
    let outcome = shrink(&data, &[edit], true).unwrap();
    match outcome.method {
        ShrinkMethod::Zeroed { reason } => assert!(reason.contains("not aligned"), "{reason}"),
        m => panic!("{m:?}"),
    }
}

/// P1: an address equal to the section's end belongs to what follows (here `.eh_frame_hdr`).
/// A RELATIVE relocation pointing there is not a reference into `.nv_fatbin`: the cut goes
/// ahead and leaves it alone (no address outside the section changes).
#[test]
fn pointer_to_the_section_end_is_left_alone() {
    let (mut data, _) = plain();
    let (_, fat_addr, fat_size) = section(&data, ".nv_fatbin").unwrap();
    let end = fat_addr + fat_size as u64;
    let (_, hdr_addr, _) = section(&data, ".eh_frame_hdr").unwrap();
    assert_eq!(hdr_addr, end);
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let victim = elf
        .dynrelas
        .iter()
        .position(|r| r.r_type == 8 && r.r_addend.is_some_and(|a| (0x3000..0x3170).contains(&a)))
        .unwrap();
    let (rela, _, _) = section(&data, ".rela.dyn").unwrap();
    let at = rela + victim * 24 + 16;
    data[at..at + 8].copy_from_slice(&end.to_le_bytes());
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    let outcome = shrink(&data, &[edit], true).unwrap();
    assert!(
        matches!(outcome.method, ShrinkMethod::Cut { .. }),
        "{:?}",
        outcome.method
    );
    assert_eq!(outcome.data[at..at + 8], end.to_le_bytes());
}

/// P1 the other way round: a symbol of `.nv_fatbin` (by st_shndx) whose value is the
/// section's end marks that end, which moves: no cut.
#[test]
fn end_of_section_symbol_refuses_the_cut() {
    let (mut data, _) = plain();
    let (_, fat_addr, fat_size) = section(&data, ".nv_fatbin").unwrap();
    let elf = goblin::elf::Elf::parse(&data).unwrap();
    let symtab = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
        .unwrap()
        .sh_offset as usize;
    let index = elf
        .syms
        .iter()
        .position(|s| elf.strtab.get_at(s.st_name) == Some("fatbinData") && s.st_value != fat_addr)
        .unwrap();
    let value = symtab + index * 24 + 8;
    data[value..value + 8].copy_from_slice(&(fat_addr + fat_size as u64).to_le_bytes());
    let (edit, _, _) = cuda_edit(&data, ".nv_fatbin", Keep::First);
    let outcome = shrink(&data, &[edit], true).unwrap();
    match outcome.method {
        ShrinkMethod::Zeroed { reason } => {
            assert!(
                reason.contains("`fatbinData` marks the end of `.nv_fatbin`"),
                "{reason}"
            )
        }
        m => panic!("{m:?}"),
    }
}
