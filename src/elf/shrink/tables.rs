//! Readers for the tables that can point at bytes of a loaded object: relocations (RELA, REL,
//! RELR; from the section headers and from `.dynamic`, each entry read once), symbols, and
//! `.dynamic` itself. Every entry remembers the file offset it was read from, so a rewrite can
//! patch it and a self-check can compare it with its counterpart in the output.

use std::collections::BTreeMap;

use super::layout::{Layout, bytes_at, u32_at};
pub(crate) use crate::elf::file::DynEntry;

use crate::elf::ElfError;
use crate::elf::consts::{
    DT_JMPREL, DT_PLTREL, DT_PLTRELSZ, DT_REL, DT_RELA, DT_RELASZ, DT_RELR, DT_RELRSZ, DT_RELSZ,
    SHN_XINDEX,
};
use crate::elf::consts::{
    PT_DYNAMIC, SHT_DYNAMIC, SHT_DYNSYM, SHT_REL, SHT_RELA, SHT_RELR, SHT_SYMTAB, SHT_SYMTAB_SHNDX,
};

/// `.dynamic` tags whose value is an address in the object.
pub(crate) fn is_pointer_tag(tag: u64) -> bool {
    matches!(
        tag,
        3 | 4 | 5 | 6 | 7 | 12 | 13 | 17 | 23 | 25 | 26 | 32 | 36
    ) || (0x6fff_fe00..=0x6fff_feff).contains(&tag)
        || matches!(tag, 0x6fff_fff0 | 0x6fff_fffc | 0x6fff_fffe)
}

/// The `.dynamic` entries up to DT_NULL (PT_DYNAMIC first, as the loader reads it; the
/// SHT_DYNAMIC section when there is no PT_DYNAMIC).
pub(crate) fn dynamic_entries(d: &[u8], l: &Layout) -> Result<Vec<DynEntry>, ElfError> {
    let range = match l.segments.iter().find(|s| s.p_type == PT_DYNAMIC) {
        Some(s) => Some((s.offset, s.filesz)),
        None => l
            .sections
            .iter()
            .find(|s| s.sh_type == SHT_DYNAMIC && s.in_file())
            .map(|s| (s.offset, s.size)),
    };
    // Without a DT_NULL the entries run to the end: the shrinker only looks tags up.
    match range {
        Some((off, size)) => {
            let raw = bytes_at(d, off, size, "the dynamic section")?;
            Ok(crate::elf::file::read_dynamic(raw)?.0)
        }
        None => Ok(Vec::new()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RelKind {
    Rela,
    Rel,
    Relr,
}

impl RelKind {
    fn entsize(self) -> u64 {
        match self {
            RelKind::Rela => 24,
            RelKind::Rel => 16,
            RelKind::Relr => 8,
        }
    }
}

/// One relocation. For RELR, one entry per relocated word (type = the machine's RELATIVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reloc {
    pub kind: RelKind,
    /// File offset of the RELA/REL entry, or of the RELR word that encodes it.
    pub entry_off: u64,
    /// The address the loader writes.
    pub r_offset: u64,
    pub r_type: u32,
    pub sym: u32,
    /// RELA addend; 0 for REL and RELR.
    pub addend: i64,
    /// Section index of the symbol table the symbol index refers to.
    pub symtab: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Table {
    kind: RelKind,
    off: u64,
    size: u64,
    symtab: Option<usize>,
}

/// Every relocation of the object, each entry once, sorted by entry offset. `relative` is the
/// machine's RELATIVE type (used for RELR words).
pub(crate) fn relocations(d: &[u8], l: &Layout, relative: u32) -> Result<Vec<Reloc>, ElfError> {
    let tables = relocation_tables(d, l)?;
    let merged = merge_tables(tables)?;
    read_relocations(d, merged, relative)
}

/// The relocation tables the section headers and `.dynamic` name, twins included.
fn relocation_tables(d: &[u8], l: &Layout) -> Result<Vec<Table>, ElfError> {
    let dynsym = l
        .sections
        .iter()
        .position(|s| s.sh_type == SHT_DYNSYM && s.in_file());
    let mut tables = Vec::new();
    for s in l.sections.iter().skip(1) {
        let kind = match s.sh_type {
            SHT_RELA => RelKind::Rela,
            SHT_REL => RelKind::Rel,
            SHT_RELR => RelKind::Relr,
            _ => continue,
        };
        let link = s.link as usize;
        let symtab = l
            .sections
            .get(link)
            .filter(|t| link != 0 && (t.sh_type == SHT_SYMTAB || t.sh_type == SHT_DYNSYM))
            .map(|_| link);
        tables.push(Table {
            kind,
            off: s.offset,
            size: s.size,
            symtab,
        });
    }
    let dynamic = dynamic_entries(d, l)?;
    let get = |tag: u64| dynamic.iter().find(|e| e.tag == tag).map(|e| e.val);
    let mut from_dynamic = |kind: RelKind,
                            addr_tag: u64,
                            size: Option<u64>|
     -> Result<(), ElfError> {
        if let (Some(addr), Some(size)) = (get(addr_tag), size) {
            if size == 0 {
                return Ok(());
            }
            let off = l.vaddr_to_offset(addr, size).ok_or_else(|| {
                ElfError::Malformed(format!(
                    "the relocation table at {addr:#x} ({size:#x} bytes, from .dynamic) is not mapped from the file"
                ))
            })?;
            tables.push(Table {
                kind,
                off,
                size,
                symtab: if kind == RelKind::Relr { None } else { dynsym },
            });
        }
        Ok(())
    };
    from_dynamic(RelKind::Rela, DT_RELA, get(DT_RELASZ))?;
    from_dynamic(RelKind::Rel, DT_REL, get(DT_RELSZ))?;
    from_dynamic(RelKind::Relr, DT_RELR, get(DT_RELRSZ))?;
    let plt_kind = match get(DT_PLTREL) {
        Some(DT_REL) => RelKind::Rel,
        _ => RelKind::Rela,
    };
    from_dynamic(plt_kind, DT_JMPREL, get(DT_PLTRELSZ))?;

    Ok(tables)
}

/// Merges tables that describe the same entries (a section and its DT_* twin, or DT_RELA
/// spanning two sections), so each entry is read once; sorted by offset.
fn merge_tables(mut tables: Vec<Table>) -> Result<Vec<Table>, ElfError> {
    tables.sort_by_key(|t| (t.off, t.kind));
    let mut merged: Vec<Table> = Vec::new();
    for t in tables {
        if t.size % t.kind.entsize() != 0 {
            return Err(ElfError::Malformed(format!(
                "a relocation table at file offset {:#x} is {:#x} bytes, not a whole number of entries",
                t.off, t.size
            )));
        }
        let end = t
            .off
            .checked_add(t.size)
            .ok_or_else(|| ElfError::Malformed("a relocation table's range overflows".into()))?;
        if let Some(last) = merged.last_mut() {
            let last_end = last.off + last.size;
            if t.off < last_end {
                if t.kind != last.kind
                    || t.symtab != last.symtab
                    || (t.off - last.off) % t.kind.entsize() != 0
                {
                    return Err(ElfError::Malformed(format!(
                        "relocation tables overlap at file offset {:#x}",
                        t.off
                    )));
                }
                last.size = last.size.max(end - last.off);
                continue;
            }
        }
        merged.push(t);
    }
    Ok(merged)
}

/// The entries of the merged tables, in order; RELR words become one entry per address.
fn read_relocations(d: &[u8], merged: Vec<Table>, relative: u32) -> Result<Vec<Reloc>, ElfError> {
    let mut out = Vec::new();
    for t in merged {
        let bytes = bytes_at(d, t.off, t.size, "a relocation table")?;
        match t.kind {
            RelKind::Rela | RelKind::Rel => {
                let es = t.kind.entsize() as usize;
                for (i, e) in bytes.chunks_exact(es).enumerate() {
                    let r_offset = le64(&e[0..8]);
                    let info = le64(&e[8..16]);
                    let addend = if t.kind == RelKind::Rela {
                        le64(&e[16..24]) as i64
                    } else {
                        0
                    };
                    out.push(Reloc {
                        kind: t.kind,
                        entry_off: t.off + (i * es) as u64,
                        r_offset,
                        r_type: (info & 0xffff_ffff) as u32,
                        sym: (info >> 32) as u32,
                        addend,
                        symtab: t.symtab,
                    });
                }
            }
            RelKind::Relr => {
                let mut next = 0u64;
                for (i, w) in bytes.chunks_exact(8).enumerate() {
                    let word = le64(w);
                    let entry_off = t.off + (i * 8) as u64;
                    let mut push = |r_offset: u64| {
                        out.push(Reloc {
                            kind: RelKind::Relr,
                            entry_off,
                            r_offset,
                            r_type: relative,
                            sym: 0,
                            addend: 0,
                            symtab: None,
                        })
                    };
                    if word & 1 == 0 {
                        push(word);
                        next = word.checked_add(8).ok_or_else(relr_overflow)?;
                    } else {
                        let mut bits = word >> 1;
                        let mut i = 0u64;
                        while bits != 0 {
                            if bits & 1 == 1 {
                                push(next.checked_add(i * 8).ok_or_else(relr_overflow)?);
                            }
                            bits >>= 1;
                            i += 1;
                        }
                        next = next.checked_add(63 * 8).ok_or_else(relr_overflow)?;
                    }
                }
            }
        }
    }
    Ok(out)
}

fn relr_overflow() -> ElfError {
    ElfError::Malformed("a RELR entry addresses past the end of the address space".into())
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// One symbol of a symbol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sym {
    /// File offset of the 24-byte entry.
    pub entry_off: u64,
    pub name_off: u32,
    pub info: u8,
    /// Section index, extended through SHT_SYMTAB_SHNDX when needed.
    pub shndx: u32,
    pub value: u64,
    pub size: u64,
}

impl Sym {
    pub(crate) fn st_type(&self) -> u8 {
        self.info & 0xf
    }
}

/// A symbol table with its string table.
pub(crate) struct SymTable {
    pub section: usize,
    pub dynamic: bool,
    pub syms: Vec<Sym>,
    strtab: Option<(u64, u64)>,
}

impl SymTable {
    /// The symbol's name bytes (empty when unnamed or unreadable).
    pub(crate) fn name<'a>(&self, d: &'a [u8], s: &Sym) -> &'a [u8] {
        let Some((off, size)) = self.strtab else {
            return &[];
        };
        let Ok(table) = bytes_at(d, off, size, "a string table") else {
            return &[];
        };
        let tail = table.get(s.name_off as usize..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }
}

/// Reads the symbol table in section `index` (SHT_SYMTAB or SHT_DYNSYM).
pub(crate) fn symbols(d: &[u8], l: &Layout, index: usize) -> Result<SymTable, ElfError> {
    let s = l
        .sections
        .get(index)
        .ok_or_else(|| ElfError::Malformed(format!("no section {index}")))?;
    if s.entsize != 0 && s.entsize != 24 {
        return Err(ElfError::Malformed(format!(
            "symbol table `{}` has entries of {} bytes, expected 24",
            s.name, s.entsize
        )));
    }
    if s.size % 24 != 0 {
        return Err(ElfError::Malformed(format!(
            "symbol table `{}` is not a whole number of entries",
            s.name
        )));
    }
    let bytes = bytes_at(d, s.offset, s.size, "a symbol table")?;
    let strtab = l
        .sections
        .get(s.link as usize)
        .filter(|t| s.link != 0 && t.in_file())
        .map(|t| (t.offset, t.size));
    // SHT_SYMTAB_SHNDX holds the real section index of symbols whose st_shndx is SHN_XINDEX.
    let shndx_table = l
        .sections
        .iter()
        .find(|t| t.sh_type == SHT_SYMTAB_SHNDX && t.link as usize == index && t.in_file());
    let mut syms = Vec::with_capacity(bytes.len() / 24);
    for (i, e) in bytes.chunks_exact(24).enumerate() {
        let raw_shndx = u16::from_le_bytes([e[6], e[7]]);
        let shndx = if raw_shndx == SHN_XINDEX {
            match shndx_table {
                Some(t) if (i as u64) * 4 + 4 <= t.size => u32_at(d, t.offset + (i as u64) * 4)?,
                _ => {
                    return Err(ElfError::Malformed(format!(
                        "symbol {i} of `{}` uses SHN_XINDEX but there is no index table entry",
                        s.name
                    )));
                }
            }
        } else {
            u32::from(raw_shndx)
        };
        syms.push(Sym {
            entry_off: s.offset + (i as u64) * 24,
            name_off: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            info: e[4],
            shndx,
            value: le64(&e[8..16]),
            size: le64(&e[16..24]),
        });
    }
    Ok(SymTable {
        section: index,
        dynamic: s.sh_type == SHT_DYNSYM,
        syms,
        strtab,
    })
}

/// Every symbol table of the object (`.symtab` and `.dynsym`).
pub(crate) fn all_symbol_tables(d: &[u8], l: &Layout) -> Result<Vec<SymTable>, ElfError> {
    let mut out = Vec::new();
    for (i, s) in l.sections.iter().enumerate() {
        if i > 0 && (s.sh_type == SHT_SYMTAB || s.sh_type == SHT_DYNSYM) && s.in_file() {
            out.push(symbols(d, l, i)?);
        }
    }
    Ok(out)
}

/// Looks a symbol up by index in the table `symtab`, caching tables by section index.
pub(crate) struct SymLookup<'t> {
    tables: BTreeMap<usize, &'t SymTable>,
}

impl<'t> SymLookup<'t> {
    pub(crate) fn new(tables: &'t [SymTable]) -> SymLookup<'t> {
        SymLookup {
            tables: tables.iter().map(|t| (t.section, t)).collect(),
        }
    }

    pub(crate) fn get(&self, symtab: Option<usize>, index: u32) -> Option<(&'t SymTable, &'t Sym)> {
        let t = *self.tables.get(&symtab?)?;
        t.syms.get(index as usize).map(|s| (t, s))
    }
}

/// Name of a relocation type, for messages.
pub(crate) fn reloc_name(machine: u16, t: u32) -> String {
    use crate::elf::consts::{EM_AARCH64, EM_PPC64, EM_X86_64};
    let n = match (machine, t) {
        (EM_X86_64, 1) => "R_X86_64_64",
        (EM_X86_64, 2) => "R_X86_64_PC32",
        (EM_X86_64, 5) => "R_X86_64_COPY",
        (EM_X86_64, 6) => "R_X86_64_GLOB_DAT",
        (EM_X86_64, 7) => "R_X86_64_JUMP_SLOT",
        (EM_X86_64, 8) => "R_X86_64_RELATIVE",
        (EM_X86_64, 37) => "R_X86_64_IRELATIVE",
        (EM_AARCH64, 257) => "R_AARCH64_ABS64",
        (EM_AARCH64, 1024) => "R_AARCH64_COPY",
        (EM_AARCH64, 1025) => "R_AARCH64_GLOB_DAT",
        (EM_AARCH64, 1026) => "R_AARCH64_JUMP_SLOT",
        (EM_AARCH64, 1027) => "R_AARCH64_RELATIVE",
        (EM_AARCH64, 1032) => "R_AARCH64_IRELATIVE",
        (EM_PPC64, 38) => "R_PPC64_ADDR64",
        (EM_PPC64, 20) => "R_PPC64_GLOB_DAT",
        (EM_PPC64, 21) => "R_PPC64_JMP_SLOT",
        (EM_PPC64, 22) => "R_PPC64_RELATIVE",
        (EM_PPC64, 248) => "R_PPC64_IRELATIVE",
        _ => return format!("relocation type {t}"),
    };
    n.to_string()
}

/// The machine's RELATIVE relocation type, for the machines the shrinker rewrites.
pub(crate) fn relative_type(machine: u16) -> Option<u32> {
    use crate::elf::consts::{EM_AARCH64, EM_PPC64, EM_X86_64};
    match machine {
        EM_X86_64 => Some(8),
        EM_AARCH64 => Some(1027),
        EM_PPC64 => Some(22),
        _ => None,
    }
}

/// Thread-local-storage relocation types, whose addends are offsets, not addresses.
pub(crate) fn is_tls_type(machine: u16, t: u32) -> bool {
    use crate::elf::consts::{EM_AARCH64, EM_PPC64, EM_X86_64};
    match machine {
        EM_X86_64 => matches!(t, 16..=18 | 36),
        EM_AARCH64 => matches!(t, 1028..=1031),
        EM_PPC64 => (67..=78).contains(&t),
        _ => false,
    }
}
