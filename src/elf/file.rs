//! The one reader of ELF structure: the ELF header, the program header table and the section
//! header table of a 64-bit little-endian file, read through the bounds-checked accessors of
//! `bytes.rs` (the one set every stage of `elf/` uses). The patcher ([`super::patch`]), the invariant checker ([`super::check`]), the
//! dynamic-section view (`dynview.rs`) and the shrinker (`shrink/layout.rs`) all read headers
//! through [`Elf64::parse`]; nothing else in `elf/` decodes a header table.
//!
//! Why this one, and not `object::read::elf` or goblin's types (issue 13 step 4):
//! - It is the parser the shrinker already had (checks every table against the file length
//!   before allocating, overflow-checks every sum, reads the extended counts), so the hostile
//!   corpus and the fuzz regressions keep exercising the code they were written against.
//! - What the callers need is small (three tables and a few fields) and must be *lenient
//!   about contents*: the checker reports a segment that runs past the file as a layout
//!   problem (`ElfError::Layout`) among others, so the reader may only refuse what makes the
//!   tables themselves unreadable. `object` and goblin refuse such files at parse time (or
//!   read them differently), which would change refusals pinned by the tests. goblin stays the
//!   independent second parser of `inspect.rs`, so a bug here and one there rarely agree.
//! - The patcher writes header fields back in place; plain structs with `encode` keep those
//!   writes next to the reads.
//!
//! Semantics, decided once: extended numbering is *read* — `e_phnum = PN_XNUM` takes the count
//! from section 0's `sh_info`, `e_shnum = 0` with a table takes it from section 0's `sh_size`,
//! and `e_shstrndx = SHN_XINDEX` takes the index from section 0's `sh_link` (so section names
//! resolve instead of printing `?`). What a caller will not *write* is its own policy: the
//! patcher still refuses to rewrite extended numbering, the shrinker still refuses to cut a
//! PN_XNUM file (it zeroes in place instead). Stricter validation of contents (every segment
//! and section inside the file, names resolvable) is the shrinker's, on top of this
//! (`shrink::layout::Layout::parse`). See `docs/elf.md` for the format facts.

use super::ElfError;
use crate::elf::consts::{
    DT_NULL, DYN_SIZE, EHDR_SIZE, PHDR_SIZE, PN_XNUM, PT_LOAD, SHDR_SIZE, SHF_ALLOC, SHN_XINDEX,
    SHT_NOBITS,
};

/// `Truncated`: `what` at `off` runs past the end of the file.
pub(crate) fn truncated(what: &str, off: u64) -> ElfError {
    ElfError::Truncated(format!(
        "{what} at offset {off:#x} runs past the end of the file"
    ))
}

pub(crate) use super::bytes::{bytes_at, u16_at, u32_at, u64_at};

/// The NUL-terminated string starting at `off` inside `table` (without the NUL), or `None` when
/// `off` is outside the table or the string runs off its end.
pub(crate) fn c_str(table: &[u8], off: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let rest = table.get(start..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// The fields of the ELF header that the callers use. `e_phnum`, `e_shnum` and `e_shstrndx`
/// are the raw header fields (they may hold the extended-numbering escapes); the resolved
/// counts are `phdrs.len()` and `shdrs.len()` of [`Elf64`], the resolved index `shstrndx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub e_type: u16,
    pub e_machine: u16,
    pub e_phoff: u64,
    pub e_shoff: u64,
    pub e_phnum: u16,
    pub e_shnum: u16,
    pub e_shstrndx: u16,
    /// The section-name table's index, after SHN_XINDEX (0: none).
    pub shstrndx: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgramHeader {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl ProgramHeader {
    fn read(d: &[u8], at: u64) -> Result<Self, ElfError> {
        Ok(ProgramHeader {
            p_type: u32_at(d, at)?,
            p_flags: u32_at(d, at + 4)?,
            p_offset: u64_at(d, at + 8)?,
            p_vaddr: u64_at(d, at + 16)?,
            p_paddr: u64_at(d, at + 24)?,
            p_filesz: u64_at(d, at + 32)?,
            p_memsz: u64_at(d, at + 40)?,
            p_align: u64_at(d, at + 48)?,
        })
    }

    /// The 56 bytes of this program header.
    pub fn encode(&self) -> [u8; PHDR_SIZE as usize] {
        let mut b = [0u8; PHDR_SIZE as usize];
        b[0..4].copy_from_slice(&self.p_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.p_flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.p_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.p_vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.p_paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.p_filesz.to_le_bytes());
        b[40..48].copy_from_slice(&self.p_memsz.to_le_bytes());
        b[48..56].copy_from_slice(&self.p_align.to_le_bytes());
        b
    }

    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }

    pub fn file_end(&self) -> Option<u64> {
        self.p_offset.checked_add(self.p_filesz)
    }

    pub fn mem_end(&self) -> Option<u64> {
        self.p_vaddr.checked_add(self.p_memsz)
    }

    /// The file offset of `len` bytes at `vaddr` when they are file-backed in this segment.
    pub fn file_offset_of(&self, vaddr: u64, len: u64) -> Option<u64> {
        let rel = vaddr.checked_sub(self.p_vaddr)?;
        let end = rel.checked_add(len)?;
        (end <= self.p_filesz).then(|| self.p_offset.checked_add(rel))?
    }

    /// True when `[vaddr, vaddr+len)` lies inside this segment's memory image (len 0 = the
    /// address itself).
    pub fn contains_vaddr(&self, vaddr: u64, len: u64) -> bool {
        match (vaddr.checked_sub(self.p_vaddr), vaddr.checked_add(len)) {
            (Some(rel), Some(end)) => {
                rel < self.p_memsz.max(1) && self.mem_end().is_some_and(|m| end <= m)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionHeader {
    pub sh_name: u32,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_info: u32,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl SectionHeader {
    fn read(d: &[u8], at: u64) -> Result<Self, ElfError> {
        Ok(SectionHeader {
            sh_name: u32_at(d, at)?,
            sh_type: u32_at(d, at + 4)?,
            sh_flags: u64_at(d, at + 8)?,
            sh_addr: u64_at(d, at + 16)?,
            sh_offset: u64_at(d, at + 24)?,
            sh_size: u64_at(d, at + 32)?,
            sh_link: u32_at(d, at + 40)?,
            sh_info: u32_at(d, at + 44)?,
            sh_addralign: u64_at(d, at + 48)?,
            sh_entsize: u64_at(d, at + 56)?,
        })
    }

    /// Not SHT_NOBITS (SHT_NULL counts as in the file here; the shrinker's view excludes it).
    pub fn in_file(&self) -> bool {
        self.sh_type != SHT_NOBITS
    }

    pub fn is_alloc(&self) -> bool {
        self.sh_flags & SHF_ALLOC != 0
    }
}

/// One `Elf64_Dyn` entry of the dynamic array (the patcher's and the shrinker's alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DynEntry {
    pub tag: u64,
    pub val: u64,
}

/// Reads a dynamic array held in `raw` (whole 16-byte slots; a partial one at the end is not
/// read): the entries before the first DT_NULL, and whether a DT_NULL ended them. The one
/// walker of the patcher's and the shrinker's dynamic arrays; each decides what a missing
/// terminator means.
pub(crate) fn read_dynamic(raw: &[u8]) -> Result<(Vec<DynEntry>, bool), ElfError> {
    let mut entries = Vec::new();
    for i in 0..raw.len() as u64 / DYN_SIZE {
        let tag = u64_at(raw, i * DYN_SIZE)?;
        let val = u64_at(raw, i * DYN_SIZE + 8)?;
        if tag == DT_NULL {
            return Ok((entries, true));
        }
        entries.push(DynEntry { tag, val });
    }
    Ok((entries, false))
}

/// A parsed view of a 64-bit little-endian ELF file: header and both tables.
#[derive(Debug, Clone)]
pub(crate) struct Elf64<'a> {
    pub data: &'a [u8],
    pub header: FileHeader,
    pub phdrs: Vec<ProgramHeader>,
    pub shdrs: Vec<SectionHeader>,
}

/// The magic, the length of an ELF header, the class and the byte order. Refuses anything but
/// a 64-bit little-endian object: `NotElf`, `Truncated`, `Unsupported` (32-bit, big-endian) or
/// `Malformed` (a class or encoding the format does not define).
pub(crate) fn check_ident(d: &[u8]) -> Result<(), ElfError> {
    if !super::is_elf(d) {
        let head: Vec<String> = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(ElfError::NotElf(if head.is_empty() {
            "nothing: the file is empty".into()
        } else {
            head.join(" ")
        }));
    }
    if d.len() < EHDR_SIZE as usize {
        return Err(ElfError::Truncated(format!(
            "{} bytes is shorter than an ELF header",
            d.len()
        )));
    }
    let what = match (d[4], d[5]) {
        (2, 1) => return Ok(()),
        (1, 1) => "32-bit",
        (1, 2) => "32-bit big-endian",
        (2, 2) => "big-endian",
        (1 | 2, e) => {
            return Err(ElfError::Malformed(format!(
                "unknown ELF data encoding {e}"
            )));
        }
        (c, _) => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
    };
    Err(ElfError::Unsupported(format!(
        "{what} ELF objects are not rewritten (only 64-bit little-endian: x86_64, aarch64, ppc64le)"
    )))
}

impl<'a> Elf64<'a> {
    /// Reads the header and both tables. Refuses what [`check_ident`] refuses, entry sizes
    /// other than the 64-bit ones, and tables that do not fit in the file (checked before
    /// anything is allocated for them). The contents are not judged: a segment or section
    /// that points past the file is returned as it is, for the caller to refuse or report.
    /// With `e_shoff = 0` there is no section table, whatever `e_shnum` says.
    pub fn parse(d: &'a [u8]) -> Result<Self, ElfError> {
        check_ident(d)?;
        let e_phoff = u64_at(d, 32)?;
        let e_shoff = u64_at(d, 40)?;
        let phentsize = u16_at(d, 54)?;
        let e_phnum = u16_at(d, 56)?;
        let shentsize = u16_at(d, 58)?;
        let e_shnum = u16_at(d, 60)?;
        let e_shstrndx = u16_at(d, 62)?;

        // Section 0 holds the extended counts when the header fields overflow.
        let (mut shnum, mut sh0_link, mut sh0_info) = (0u64, 0u32, 0u32);
        if e_shoff != 0 {
            if u64::from(shentsize) != SHDR_SIZE {
                return Err(ElfError::Malformed(format!(
                    "e_shentsize is {shentsize}, expected {SHDR_SIZE}"
                )));
            }
            bytes_at(d, e_shoff, SHDR_SIZE, "the section header table")?;
            shnum = match e_shnum {
                0 => u64_at(d, e_shoff + 32)?,
                n => u64::from(n),
            };
            sh0_link = u32_at(d, e_shoff + 40)?;
            sh0_info = u32_at(d, e_shoff + 44)?;
        }
        let phnum = if e_phnum == PN_XNUM {
            u64::from(sh0_info)
        } else {
            u64::from(e_phnum)
        };
        if phnum > 0 && u64::from(phentsize) != PHDR_SIZE {
            return Err(ElfError::Malformed(format!(
                "e_phentsize is {phentsize}, expected {PHDR_SIZE}"
            )));
        }
        let ph_bytes = phnum
            .checked_mul(PHDR_SIZE)
            .ok_or_else(|| ElfError::Malformed("e_phnum overflows".into()))?;
        bytes_at(d, e_phoff, ph_bytes, "the program header table")?;
        let sh_bytes = shnum
            .checked_mul(SHDR_SIZE)
            .ok_or_else(|| ElfError::Malformed("e_shnum overflows".into()))?;
        bytes_at(d, e_shoff, sh_bytes, "the section header table")?;

        // Both tables fit in the file, so these offsets cannot overflow.
        let phdrs = (0..phnum)
            .map(|i| ProgramHeader::read(d, e_phoff + i * PHDR_SIZE))
            .collect::<Result<Vec<_>, _>>()?;
        let shdrs = (0..shnum)
            .map(|i| SectionHeader::read(d, e_shoff + i * SHDR_SIZE))
            .collect::<Result<Vec<_>, _>>()?;
        let shstrndx = if e_shstrndx == SHN_XINDEX {
            sh0_link as usize
        } else {
            usize::from(e_shstrndx)
        };
        Ok(Elf64 {
            data: d,
            header: FileHeader {
                e_type: u16_at(d, 16)?,
                e_machine: u16_at(d, 18)?,
                e_phoff,
                e_shoff,
                e_phnum,
                e_shnum,
                e_shstrndx,
                shstrndx,
            },
            phdrs,
            shdrs,
        })
    }

    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.phdrs.iter().filter(|p| p.is_load())
    }

    /// The file offset of `len` file-backed bytes at `vaddr`, through the PT_LOAD holding them.
    pub fn vaddr_to_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.loads().find_map(|p| p.file_offset_of(vaddr, len))
    }

    /// The section-name table (its header), when `shstrndx` names a section with contents.
    pub fn name_table(&self) -> Option<&SectionHeader> {
        (self.header.shstrndx != 0)
            .then(|| self.shdrs.get(self.header.shstrndx))?
            .filter(|s| s.in_file())
    }

    /// The name of a section, from the section-name table (`?` when unreadable).
    pub fn section_name(&self, sh: &SectionHeader) -> String {
        let name = self
            .name_table()
            .and_then(|t| bytes_at(self.data, t.sh_offset, t.sh_size, "").ok())
            .and_then(|t| c_str(t, u64::from(sh.sh_name)));
        match name {
            Some(n) => String::from_utf8_lossy(n).into_owned(),
            None => "?".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header plus one section header (section 0) and `phnum` program headers, with the
    /// extended counts set as asked.
    fn extended(phnum: u32, shstrndx_in_sh0: u32) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 64 + 56 * phnum as usize];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[16..18].copy_from_slice(&3u16.to_le_bytes());
        d[32..40].copy_from_slice(&128u64.to_le_bytes()); // e_phoff
        d[40..48].copy_from_slice(&64u64.to_le_bytes()); // e_shoff
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        d[58..60].copy_from_slice(&64u16.to_le_bytes());
        d[60..62].copy_from_slice(&0u16.to_le_bytes()); // e_shnum: in sh0.sh_size
        d[62..64].copy_from_slice(&SHN_XINDEX.to_le_bytes());
        d[64 + 32..64 + 40].copy_from_slice(&1u64.to_le_bytes()); // sh_size = 1 section
        d[64 + 40..64 + 44].copy_from_slice(&shstrndx_in_sh0.to_le_bytes());
        d[64 + 44..64 + 48].copy_from_slice(&phnum.to_le_bytes());
        for i in 0..phnum as usize {
            d[128 + i * 56] = 1; // PT_LOAD
        }
        d
    }

    #[test]
    fn extended_numbering_is_read() {
        let d = extended(3, 7);
        let elf = Elf64::parse(&d).expect("parse");
        assert_eq!((elf.phdrs.len(), elf.shdrs.len()), (3, 1));
        assert_eq!(elf.header.shstrndx, 7);
        assert_eq!((elf.header.e_phnum, elf.header.e_shnum), (PN_XNUM, 0));
        // Index 7 names no section: names are `?`, not an error.
        assert_eq!(elf.section_name(&elf.shdrs[0]), "?");
    }

    #[test]
    fn extended_counts_are_bounded_by_the_file() {
        let mut d = extended(1, 0);
        d[64 + 44..64 + 48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Elf64::parse(&d), Err(ElfError::Truncated(_))));
        let mut d = extended(1, 0);
        d[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Elf64::parse(&d), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn ident_refusals() {
        assert!(matches!(check_ident(b""), Err(ElfError::NotElf(m)) if m.contains("empty")));
        assert!(matches!(
            check_ident(b"\x7fELF"),
            Err(ElfError::Truncated(_))
        ));
        let mut h = extended(0, 0);
        for (class, enc, what) in [(1, 1, "32-bit"), (2, 2, "big-endian"), (1, 2, "32-bit")] {
            h[4] = class;
            h[5] = enc;
            assert!(matches!(check_ident(&h), Err(ElfError::Unsupported(m)) if m.contains(what)));
        }
        h[4] = 3;
        assert!(matches!(check_ident(&h), Err(ElfError::Malformed(_))));
        h[4] = 2;
        h[5] = 9;
        assert!(matches!(check_ident(&h), Err(ElfError::Malformed(_))));
    }
}
