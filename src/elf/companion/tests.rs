//! Unit tests of the companion writer: hash values, lookups through both tables written
//! from the format description, goblin's view of the output, and every refusal.

#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::hash::{gnu_hash, sysv_hash};
use super::*;

fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn export(name: &str, offset: u64, size: u64) -> Export {
    Export {
        name: name.into(),
        offset,
        size,
    }
}

/// Two CUDA-like blocks in `.nv_fatbin`, one HIP-like block in `.hip_fatbin`.
fn spec<'a>(machine: Machine, a: &'a [u8], b: &'a [u8], c: &'a [u8]) -> CompanionSpec<'a> {
    CompanionSpec {
        machine,
        soname: "libdemo_device0.so".into(),
        blocks: vec![
            DataBlock {
                section: ".nv_fatbin".into(),
                align: 8,
                bytes: a,
                symbols: vec![export("fatbin_a0", 0, 16), export("fatbin_a1", 16, 5)],
            },
            DataBlock {
                section: ".hip_fatbin".into(),
                align: 4096,
                bytes: c,
                symbols: vec![export("bundle_c", 0, c.len() as u64)],
            },
            DataBlock {
                section: ".nv_fatbin".into(),
                align: 8,
                bytes: b,
                symbols: vec![export("fatbin_b", 3, 4)],
            },
        ],
    }
}

fn data() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        (0..21u8).collect(),
        (100..140u8).collect(),
        (0..5000u32).map(|i| (i % 251) as u8).collect(),
    )
}

#[test]
fn hash_functions_match_published_values() {
    assert_eq!(gnu_hash(b""), 5381);
    assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
    assert_eq!(sysv_hash(b""), 0);
    assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
    assert_eq!(sysv_hash(b"syscall"), 0x0b09_985c);
}

#[test]
fn goblin_reads_what_was_written_on_every_machine() {
    let (a, b, c) = data();
    for (m, e_machine, page) in [
        (Machine::X86_64, 62, 0x1000),
        (Machine::Aarch64, 183, 0x10000),
        (Machine::Ppc64le, 21, 0x10000),
    ] {
        let s = spec(m, &a, &b, &c);
        let out = write(&s).unwrap();
        assert_eq!(out, write(&s).unwrap(), "not deterministic");
        let elf = goblin::elf::Elf::parse(&out.bytes).expect("goblin parses the companion");
        assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
        assert_eq!(elf.header.e_machine, e_machine);
        assert_eq!(elf.soname, Some("libdemo_device0.so"));
        assert!(elf.libraries.is_empty());
        let loads: Vec<_> = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
            .collect();
        assert_eq!(loads.len(), 2);
        for p in &loads {
            assert_eq!(p.p_align, page);
            assert_eq!(p.p_offset % page, p.p_vaddr % page);
            assert!(!p.is_executable());
        }
        assert!(loads[0].p_vaddr + loads[0].p_memsz <= loads[1].p_vaddr & !(page - 1));
        let stack = elf
            .program_headers
            .iter()
            .find(|p| p.p_type == goblin::elf::program_header::PT_GNU_STACK)
            .expect("PT_GNU_STACK");
        assert!(!stack.is_executable());
        // Each symbol names the bytes it was given, found through the section headers.
        let want = [
            ("fatbin_a0", &a[0..16]),
            ("fatbin_a1", &a[16..21]),
            ("fatbin_b", &b[3..7]),
            ("bundle_c", &c[..]),
        ];
        assert_eq!(elf.dynsyms.len(), want.len() + 1);
        for (name, bytes) in want {
            let sym = elf
                .dynsyms
                .iter()
                .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(name))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(sym.st_type(), goblin::elf::sym::STT_OBJECT);
            assert_eq!(sym.st_bind(), goblin::elf::sym::STB_GLOBAL);
            assert_eq!(sym.st_visibility(), goblin::elf::sym::STV_DEFAULT);
            assert_eq!(sym.st_size, bytes.len() as u64);
            let sh = &elf.section_headers[sym.st_shndx];
            assert!(sym.st_value >= sh.sh_addr);
            assert!(sym.st_value + sym.st_size <= sh.sh_addr + sh.sh_size);
            let at = (sym.st_value - sh.sh_addr + sh.sh_offset) as usize;
            assert_eq!(&out.bytes[at..at + bytes.len()], bytes, "{name}");
            let placed = out.symbols.iter().find(|p| p.name == name).unwrap();
            assert_eq!(placed.vaddr, sym.st_value);
        }
        let names: Vec<_> = elf
            .section_headers
            .iter()
            .map(|sh| elf.shdr_strtab.get_at(sh.sh_name).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "",
                ".hash",
                ".gnu.hash",
                ".dynsym",
                ".dynstr",
                ".nv_fatbin",
                ".hip_fatbin",
                ".dynamic",
                ".shstrtab"
            ]
        );
        // Blocks sharing a section keep their order and alignment; HIP stays 4096-aligned.
        assert_eq!(out.blocks[0].section, ".nv_fatbin");
        assert_eq!(out.blocks[2].offset, out.blocks[0].offset + 24);
        assert_eq!(out.blocks[1].offset % 4096, 0);
        assert_eq!(elf.section_headers[5].sh_size, 24 + 40);
    }
}

/// A `.gnu.hash` lookup written from the format description, not from the writer.
fn gnu_lookup(file: &[u8], name: &str) -> Option<usize> {
    let elf = goblin::elf::Elf::parse(file).unwrap();
    let sh = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == SHT_GNU_HASH)
        .unwrap();
    let t = &file[sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize];
    let (nbucket, symoffset, words, shift) = (rd32(t, 0), rd32(t, 4), rd32(t, 8), rd32(t, 12));
    let h = gnu_hash(name.as_bytes());
    let word = rd64(t, 16 + 8 * ((h / 64) % words) as usize);
    if word & (1 << (h % 64)) == 0 || word & (1 << ((h >> shift) % 64)) == 0 {
        return None;
    }
    let buckets = 16 + 8 * words as usize;
    let chains = buckets + 4 * nbucket as usize;
    let mut i = rd32(t, buckets + 4 * (h % nbucket) as usize) as usize;
    if i == 0 {
        return None;
    }
    loop {
        let c = rd32(t, chains + 4 * (i - symoffset as usize));
        let sym = &elf.dynsyms.get(i).unwrap();
        if c | 1 == h | 1 && elf.dynstrtab.get_at(sym.st_name) == Some(name) {
            return Some(i);
        }
        if c & 1 == 1 {
            return None;
        }
        i += 1;
    }
}

/// A `.hash` lookup, likewise.
fn sysv_lookup(file: &[u8], name: &str) -> Option<usize> {
    let elf = goblin::elf::Elf::parse(file).unwrap();
    let sh = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == SHT_HASH)
        .unwrap();
    let t = &file[sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize];
    let (nbucket, nchain) = (rd32(t, 0), rd32(t, 4));
    let dynsym = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == SHT_DYNSYM)
        .unwrap();
    assert_eq!(u64::from(nchain), dynsym.sh_size / SYM_SIZE);
    let mut i = rd32(t, 8 + 4 * (sysv_hash(name.as_bytes()) % nbucket) as usize) as usize;
    let mut steps = 0;
    while i != 0 {
        let sym = elf.dynsyms.get(i).unwrap();
        if elf.dynstrtab.get_at(sym.st_name) == Some(name) {
            return Some(i);
        }
        i = rd32(t, 8 + 4 * (nbucket as usize + i)) as usize;
        steps += 1;
        assert!(steps <= nchain, "chain loops");
    }
    None
}

#[test]
fn both_hash_tables_find_every_symbol_and_nothing_else() {
    let blob = vec![7u8; 4096];
    for n in [1usize, 2, 3, 17, 200] {
        let symbols = (0..n)
            .map(|i| export(&format!("__wheelslim_fatbin_{i}"), i as u64 * 8, 8))
            .collect();
        let spec = CompanionSpec {
            machine: Machine::X86_64,
            soname: "libx.so".into(),
            blocks: vec![DataBlock {
                section: ".nv_fatbin".into(),
                align: 8,
                bytes: &blob,
                symbols,
            }],
        };
        let out = write(&spec).unwrap();
        for p in &out.symbols {
            assert_eq!(gnu_lookup(&out.bytes, &p.name), Some(p.index as usize));
            assert_eq!(sysv_lookup(&out.bytes, &p.name), Some(p.index as usize));
        }
        for absent in ["", "__wheelslim_fatbin_x", "libx.so", "printf"] {
            assert_eq!(gnu_lookup(&out.bytes, absent), None, "{n} {absent}");
            assert_eq!(sysv_lookup(&out.bytes, absent), None, "{n} {absent}");
        }
        // Hashed symbols are grouped by bucket, in increasing bucket order.
        let elf = goblin::elf::Elf::parse(&out.bytes).unwrap();
        let nb = bucket_count(n as u64);
        let buckets: Vec<u64> = elf
            .dynsyms
            .iter()
            .skip(1)
            .map(|s| {
                u64::from(gnu_hash(
                    elf.dynstrtab.get_at(s.st_name).unwrap().as_bytes(),
                )) % nb
            })
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }
}

#[test]
fn wrong_requests_are_typed_errors() {
    let (a, b, c) = data();
    let base = spec(Machine::X86_64, &a, &b, &c);
    let with = |f: &dyn Fn(&mut CompanionSpec<'_>)| {
        let mut s = base.clone();
        f(&mut s);
        write(&s).unwrap_err()
    };
    assert_eq!(
        with(&|s| s.machine = Machine::Cuda),
        CompanionError::Machine(Machine::Cuda)
    );
    assert!(matches!(
        with(&|s| s.soname = String::new()),
        CompanionError::Soname(..)
    ));
    assert!(matches!(
        with(&|s| s.soname = "lib/x.so".into()),
        CompanionError::Soname(..)
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].section = ".dynsym".into()),
        CompanionError::SectionName(..)
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].section = "a\0b".into()),
        CompanionError::SectionName(..)
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].align = 12),
        CompanionError::Alignment { .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[1].align = 0x10000),
        CompanionError::Alignment { page: 0x1000, .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].bytes = &[]),
        CompanionError::EmptyBlock { block: 0, .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].symbols[1].size = 6),
        CompanionError::SymbolOutside { .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].symbols[1] = export("end", 21, 0)),
        CompanionError::SymbolOutside { .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[0].symbols[1].offset = u64::MAX),
        CompanionError::SymbolOutside { .. }
    ));
    assert!(matches!(
        with(&|s| s.blocks[2].symbols[0].name = "fatbin_a0".into()),
        CompanionError::DuplicateSymbol(_)
    ));
    assert!(matches!(
        with(&|s| s.blocks[2].symbols[0].name = "x@V1".into()),
        CompanionError::SymbolName(..)
    ));
    assert!(matches!(
        with(&|s| s.blocks[2].symbols[0].name = String::new()),
        CompanionError::SymbolName(..)
    ));
    assert_eq!(
        with(&|s| s.blocks.iter_mut().for_each(|b| b.symbols.clear())),
        CompanionError::NoSymbols
    );
    // A block without symbols of its own is fine while another block exports one.
    let mut quiet = base.clone();
    quiet.blocks[1].symbols.clear();
    assert_eq!(write(&quiet).unwrap().symbols.len(), 3);
    // On 64 KiB machines a 64 KiB alignment is fine.
    let mut big = base.clone();
    big.machine = Machine::Aarch64;
    big.blocks[1].align = 0x10000;
    let out = write(&big).unwrap();
    assert_eq!(out.blocks[1].offset % 0x10000, 0);
    let e: ElfError = CompanionError::DuplicateSymbol("x".into()).into();
    assert!(matches!(e, ElfError::InvalidEdit(_)));
}

#[test]
fn the_self_check_rejects_what_does_not_read_back() {
    let (a, b, c) = data();
    let out = write(&spec(Machine::Ppc64le, &a, &b, &c)).unwrap();
    assert_eq!(self_check(&out.bytes, &out.symbols), Ok(()));
    let mut moved = out.symbols.clone();
    moved[0].vaddr += 8;
    assert!(matches!(
        self_check(&out.bytes, &moved),
        Err(CompanionError::OutputCheck(_))
    ));
    assert!(matches!(
        self_check(&out.bytes, &out.symbols[1..]),
        Err(CompanionError::OutputCheck(_))
    ));
    let cut = &out.bytes[..out.bytes.len() - 100];
    assert!(matches!(
        self_check(cut, &out.symbols),
        Err(CompanionError::OutputCheck(_))
    ));
}

#[test]
fn random_specs_give_a_checked_companion_or_a_typed_error() {
    // A small xorshift generator: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let pool: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let sections = [
        ".nv_fatbin",
        "__nv_relfatbin",
        ".hip_fatbin",
        ".nv_fatbin",
        ".dynsym",
    ];
    let machines = [Machine::X86_64, Machine::Aarch64, Machine::Ppc64le];
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..400 {
        let mut blocks = Vec::new();
        for _ in 0..=next(4) {
            let start = next(60_000) as usize;
            let len = next(5_000) as usize + usize::from(next(16) != 0);
            let bytes = &pool[start..start + len];
            let symbols = (0..next(4))
                .map(|_| {
                    let name = format!("s{}", next(12));
                    // Mostly inside the block; one in eight anywhere up to just past it.
                    let (offset, size) = if next(8) == 0 {
                        (next(len as u64 + 2), next(len as u64 + 2))
                    } else {
                        let o = next(len.max(1) as u64);
                        (o, next((len as u64).saturating_sub(o) + 1))
                    };
                    export(&name, offset, size)
                })
                .collect();
            // One block in eight may take a reserved name or a bad alignment.
            let wild = next(8) == 0;
            let section = sections[next(if wild { 5 } else { 4 }) as usize];
            let align = [1, 8, 4096, 8, 12, 0x10000, 0][next(if wild { 7 } else { 4 }) as usize];
            blocks.push(DataBlock {
                section: section.into(),
                align,
                bytes,
                symbols,
            });
        }
        let spec = CompanionSpec {
            machine: machines[next(3) as usize],
            soname: "librandom.so".into(),
            blocks,
        };
        match write(&spec) {
            Ok(out) => {
                ok += 1;
                for (b, placed) in spec.blocks.iter().zip(&out.blocks) {
                    let at = placed.offset as usize;
                    assert_eq!(&out.bytes[at..at + b.bytes.len()], b.bytes);
                    assert_eq!(placed.offset % b.align, 0);
                    for s in &b.symbols {
                        let p = out.symbols.iter().find(|p| p.name == s.name).unwrap();
                        assert_eq!(p.vaddr, placed.vaddr + s.offset);
                        assert_eq!(p.size, s.size);
                    }
                }
            }
            Err(e) => {
                refused += 1;
                assert!(!matches!(
                    e,
                    CompanionError::TooLarge(_) | CompanionError::OutputCheck(_)
                ));
            }
        }
    }
    assert!(ok > 20 && refused > 20, "ok {ok}, refused {refused}");
}
