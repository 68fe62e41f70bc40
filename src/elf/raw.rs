//! Bounds-checked reading and writing of the few 64-bit little-endian ELF structures that the
//! dynamic-section rewriter ([`super::patch`]) and the layout checker ([`super::check`]) need.
//!
//! Every accessor takes input-derived offsets and returns an error instead of panicking, and
//! every table is sized against the file length before anything is allocated for it.
//!
//! One of two header readers still: `shrink/layout.rs` is the other, with its own error texts
//! and wider semantics (it reads PN_XNUM and SHN_XINDEX, which this one refuses or names `?`).
//! They share the numbers in `consts.rs`; merging them onto `shrink/layout.rs`'s parser is the
//! rest of issue 13 step 4.

use super::ElfError;
use crate::elf::consts::{
    DT_NULL, DYN_SIZE, EHDR_SIZE, PHDR_SIZE, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_GNU_PROPERTY,
    PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL, PT_PHDR, PT_TLS, SHDR_SIZE, SHF_ALLOC, SHT_NOBITS,
};

/// A readable name for a segment type, as readelf prints it.
pub(crate) fn segment_name(p_type: u32) -> String {
    match p_type {
        PT_NULL => "NULL".into(),
        PT_LOAD => "LOAD".into(),
        PT_DYNAMIC => "DYNAMIC".into(),
        PT_INTERP => "INTERP".into(),
        PT_NOTE => "NOTE".into(),
        PT_PHDR => "PHDR".into(),
        PT_TLS => "TLS".into(),
        PT_GNU_EH_FRAME => "GNU_EH_FRAME".into(),
        0x6474_e551 => "GNU_STACK".into(),
        0x6474_e552 => "GNU_RELRO".into(),
        PT_GNU_PROPERTY => "GNU_PROPERTY".into(),
        o => format!("{o:#x}"),
    }
}

fn range(off: u64, len: u64, total: usize, what: &str) -> Result<std::ops::Range<usize>, ElfError> {
    let end = off
        .checked_add(len)
        .filter(|&e| e <= total as u64)
        .ok_or_else(|| {
            ElfError::Truncated(format!(
                "{what} at {off:#x}+{len:#x} ends past the {total:#x} bytes available"
            ))
        })?;
    // Both fit in usize: end <= total, which is a usize.
    Ok(off as usize..end as usize)
}

/// The bytes `data[off..off+len]`, or an error naming `what`.
pub(crate) fn bytes<'a>(
    data: &'a [u8],
    off: u64,
    len: u64,
    what: &str,
) -> Result<&'a [u8], ElfError> {
    let r = range(off, len, data.len(), what)?;
    data.get(r)
        .ok_or_else(|| ElfError::Truncated(format!("{what} at {off:#x}")))
}

pub(crate) fn u16_at(data: &[u8], off: u64) -> Result<u16, ElfError> {
    let b = bytes(data, off, 2, "a 16-bit field")?;
    let mut a = [0u8; 2];
    a.copy_from_slice(b);
    Ok(u16::from_le_bytes(a))
}

pub(crate) fn u32_at(data: &[u8], off: u64) -> Result<u32, ElfError> {
    let b = bytes(data, off, 4, "a 32-bit field")?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn u64_at(data: &[u8], off: u64) -> Result<u64, ElfError> {
    let b = bytes(data, off, 8, "a 64-bit field")?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

/// Writes `src` at `off` in `out`; an error (never a panic) if it does not fit.
pub(crate) fn put(out: &mut [u8], off: u64, src: &[u8]) -> Result<(), ElfError> {
    let r = range(off, src.len() as u64, out.len(), "a write")?;
    let dst = out
        .get_mut(r)
        .ok_or_else(|| ElfError::Truncated(format!("a write at {off:#x}")))?;
    dst.copy_from_slice(src);
    Ok(())
}

pub(crate) fn put_u16(out: &mut [u8], off: u64, v: u16) -> Result<(), ElfError> {
    put(out, off, &v.to_le_bytes())
}

pub(crate) fn put_u32(out: &mut [u8], off: u64, v: u32) -> Result<(), ElfError> {
    put(out, off, &v.to_le_bytes())
}

pub(crate) fn put_u64(out: &mut [u8], off: u64, v: u64) -> Result<(), ElfError> {
    put(out, off, &v.to_le_bytes())
}

/// The NUL-terminated string starting at `off` inside `table` (without the NUL), or `None` when
/// `off` is outside the table or the string runs off its end.
pub(crate) fn c_str(table: &[u8], off: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let rest = table.get(start..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// True when the non-empty ranges `[a, a+a_len)` and `[b, b+b_len)` share a byte.
pub(crate) fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a_len > 0 && b_len > 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

pub(crate) fn align_up(v: u64, align: u64) -> Option<u64> {
    if align <= 1 {
        return Some(v);
    }
    let rem = v % align;
    if rem == 0 {
        Some(v)
    } else {
        v.checked_add(align - rem)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub e_type: u16,
    pub e_machine: u16,
    pub e_phoff: u64,
    pub e_shoff: u64,
    pub e_phnum: u16,
    pub e_shnum: u16,
    pub e_shstrndx: u16,
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
    fn read(data: &[u8], off: u64) -> Result<Self, ElfError> {
        Ok(ProgramHeader {
            p_type: u32_at(data, off)?,
            p_flags: u32_at(data, off + 4)?,
            p_offset: u64_at(data, off + 8)?,
            p_vaddr: u64_at(data, off + 16)?,
            p_paddr: u64_at(data, off + 24)?,
            p_filesz: u64_at(data, off + 32)?,
            p_memsz: u64_at(data, off + 40)?,
            p_align: u64_at(data, off + 48)?,
        })
    }

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
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl SectionHeader {
    fn read(data: &[u8], off: u64) -> Result<Self, ElfError> {
        Ok(SectionHeader {
            sh_name: u32_at(data, off)?,
            sh_type: u32_at(data, off + 4)?,
            sh_flags: u64_at(data, off + 8)?,
            sh_addr: u64_at(data, off + 16)?,
            sh_offset: u64_at(data, off + 24)?,
            sh_size: u64_at(data, off + 32)?,
            sh_link: u32_at(data, off + 40)?,
            sh_addralign: u64_at(data, off + 48)?,
            sh_entsize: u64_at(data, off + 56)?,
        })
    }

    pub fn in_file(&self) -> bool {
        self.sh_type != SHT_NOBITS
    }

    pub fn is_alloc(&self) -> bool {
        self.sh_flags & SHF_ALLOC != 0
    }
}

/// A parsed view of a 64-bit little-endian ELF file: header and both tables.
#[derive(Debug)]
pub(crate) struct Elf64<'a> {
    pub data: &'a [u8],
    pub header: FileHeader,
    pub phdrs: Vec<ProgramHeader>,
    pub shdrs: Vec<SectionHeader>,
}

fn unsupported_ident(data: &[u8]) -> Option<String> {
    let class = data.get(4).copied().unwrap_or(0);
    let encoding = data.get(5).copied().unwrap_or(0);
    let what = match (class, encoding) {
        (2, 1) => return None,
        (1, 1) => "32-bit",
        (1, 2) => "32-bit big-endian",
        (2, 2) => "big-endian",
        _ => "unknown class or byte order",
    };
    Some(format!(
        "{what} ELF objects are not rewritten (only 64-bit little-endian: x86_64, aarch64, ppc64le)"
    ))
}

impl<'a> Elf64<'a> {
    /// Parses the header and the program and section header tables. Refuses anything but
    /// 64-bit little-endian objects with `ElfError::Unsupported`.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if !super::is_elf(data) {
            let head: Vec<String> = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(ElfError::NotElf(if head.is_empty() {
                "nothing: the file is empty".into()
            } else {
                head.join(" ")
            }));
        }
        if let Some(why) = unsupported_ident(data) {
            return Err(ElfError::Unsupported(why));
        }
        if (data.len() as u64) < EHDR_SIZE {
            return Err(ElfError::Truncated(
                "shorter than a 64-bit ELF header".into(),
            ));
        }
        let header = FileHeader {
            e_type: u16_at(data, 16)?,
            e_machine: u16_at(data, 18)?,
            e_phoff: u64_at(data, 32)?,
            e_shoff: u64_at(data, 40)?,
            e_phnum: u16_at(data, 56)?,
            e_shnum: u16_at(data, 60)?,
            e_shstrndx: u16_at(data, 62)?,
        };
        let phentsize = u16_at(data, 54)?;
        let shentsize = u16_at(data, 58)?;
        if header.e_phnum == 0xffff {
            return Err(ElfError::Unsupported(
                "extended program header numbering (e_phnum = PN_XNUM)".into(),
            ));
        }
        if header.e_phnum > 0 && u64::from(phentsize) != PHDR_SIZE {
            return Err(ElfError::Malformed(format!(
                "e_phentsize is {phentsize}, not {PHDR_SIZE}"
            )));
        }
        let ph_len = u64::from(header.e_phnum) * PHDR_SIZE;
        bytes(data, header.e_phoff, ph_len, "the program header table")?;
        let phdrs = (0..u64::from(header.e_phnum))
            .map(|i| ProgramHeader::read(data, header.e_phoff + i * PHDR_SIZE))
            .collect::<Result<Vec<_>, _>>()?;

        let mut shdrs = Vec::new();
        if header.e_shoff != 0 {
            if header.e_shnum == 0 {
                return Err(ElfError::Unsupported(
                    "extended section numbering (e_shnum = 0 with a section header table)".into(),
                ));
            }
            if u64::from(shentsize) != SHDR_SIZE {
                return Err(ElfError::Malformed(format!(
                    "e_shentsize is {shentsize}, not {SHDR_SIZE}"
                )));
            }
            let sh_len = u64::from(header.e_shnum) * SHDR_SIZE;
            bytes(data, header.e_shoff, sh_len, "the section header table")?;
            shdrs = (0..u64::from(header.e_shnum))
                .map(|i| SectionHeader::read(data, header.e_shoff + i * SHDR_SIZE))
                .collect::<Result<Vec<_>, _>>()?;
        }
        Ok(Elf64 {
            data,
            header,
            phdrs,
            shdrs,
        })
    }

    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }

    /// The file offset of `len` file-backed bytes at `vaddr`, through the PT_LOAD holding them.
    pub fn vaddr_to_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.loads().find_map(|p| p.file_offset_of(vaddr, len))
    }

    /// The name of a section, from the section-header string table (`?` when unreadable).
    pub fn section_name(&self, sh: &SectionHeader) -> String {
        let name = self
            .shdrs
            .get(usize::from(self.header.e_shstrndx))
            .filter(|s| s.in_file())
            .and_then(|strtab| bytes(self.data, strtab.sh_offset, strtab.sh_size, "").ok())
            .and_then(|t| c_str(t, u64::from(sh.sh_name)));
        match name {
            Some(n) => String::from_utf8_lossy(n).into_owned(),
            None => "?".into(),
        }
    }

    /// The single PT_DYNAMIC segment, if any.
    pub fn dynamic_segment(&self) -> Result<Option<(usize, ProgramHeader)>, ElfError> {
        let mut found = None;
        for (i, p) in self.phdrs.iter().enumerate() {
            if p.p_type == PT_DYNAMIC {
                if found.is_some() {
                    return Err(ElfError::Malformed(
                        "more than one PT_DYNAMIC segment".into(),
                    ));
                }
                found = Some((i, *p));
            }
        }
        Ok(found)
    }

    /// Reads the dynamic array of PT_DYNAMIC (through its file offset).
    pub fn dynamic(&self) -> Result<Option<Dynamic>, ElfError> {
        let Some((_, seg)) = self.dynamic_segment()? else {
            return Ok(None);
        };
        let raw = bytes(
            self.data,
            seg.p_offset,
            seg.p_filesz,
            "the PT_DYNAMIC segment",
        )?;
        let slots = raw.len() / DYN_SIZE as usize;
        let mut entries = Vec::new();
        let mut terminated = false;
        for i in 0..slots as u64 {
            let tag = u64_at(raw, i * DYN_SIZE)?;
            let val = u64_at(raw, i * DYN_SIZE + 8)?;
            if tag == DT_NULL {
                terminated = true;
                break;
            }
            entries.push(DynEntry { tag, val });
        }
        if !terminated {
            return Err(ElfError::Malformed(
                "the dynamic array has no DT_NULL terminator".into(),
            ));
        }
        Ok(Some(Dynamic {
            offset: seg.p_offset,
            slots,
            entries,
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DynEntry {
    pub tag: u64,
    pub val: u64,
}

/// The dynamic array: the entries before the first DT_NULL, and how many 16-byte slots the
/// segment holds in all (the rest is DT_NULL slack).
#[derive(Debug, Clone)]
pub(crate) struct Dynamic {
    pub offset: u64,
    pub slots: usize,
    pub entries: Vec<DynEntry>,
}

impl Dynamic {
    pub fn get(&self, tag: u64) -> Option<u64> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.val)
    }
}

/// One `Elf64_Verneed` entry: where its `vn_file` field is, its value, and its auxiliary
/// `vna_name` values.
#[derive(Debug, Clone)]
pub(crate) struct Verneed {
    pub file_field: u64,
    pub file: u32,
    pub names: Vec<u32>,
}

/// Walks `.gnu.version_r` (`count` entries at file offset `off`, inside `data[..limit]`).
pub(crate) fn read_verneed(
    data: &[u8],
    off: u64,
    count: u64,
    limit: u64,
) -> Result<Vec<Verneed>, ElfError> {
    let area = bytes(data, 0, limit, "the version-needs table")?;
    // Every entry takes 16 bytes, so a count beyond the area is a lie; refuse before allocating.
    if count > limit / 16 {
        return Err(ElfError::Malformed(format!(
            "DT_VERNEEDNUM {count} does not fit in the version-needs table"
        )));
    }
    let mut out = Vec::new();
    let mut at = advance(off, 0, limit, "DT_VERNEED")?;
    // Auxiliary entries are 16 bytes each too: more of them than fit means overlapping chains.
    let mut budget = limit / 16;
    for i in 0..count {
        let cnt = u16_at(area, at + 2)?;
        budget = budget.checked_sub(u64::from(cnt)).ok_or_else(|| {
            ElfError::Malformed("the version-needs auxiliary entries overlap".into())
        })?;
        let file = u32_at(area, at + 4)?;
        let aux = u32_at(area, at + 8)?;
        let next = u32_at(area, at + 12)?;
        let mut names = Vec::new();
        let mut a = advance(at, aux, limit, "vn_aux")?;
        for j in 0..cnt {
            names.push(u32_at(area, a + 8)?);
            let anext = u32_at(area, a + 12)?;
            if j + 1 < cnt {
                if anext == 0 {
                    return Err(ElfError::Malformed(
                        "a version-needs entry ends its auxiliary list early".into(),
                    ));
                }
                a = advance(a, anext, limit, "vna_next")?;
            }
        }
        out.push(Verneed {
            file_field: at + 4,
            file,
            names,
        });
        if i + 1 < count {
            if next == 0 {
                return Err(ElfError::Malformed(format!(
                    "the version-needs list ends after {} of {count} entries",
                    i + 1
                )));
            }
            at = advance(at, next, limit, "vn_next")?;
        }
    }
    Ok(out)
}

/// Walks `.gnu.version_d` and returns every `vda_name` value.
pub(crate) fn read_verdef_names(
    data: &[u8],
    off: u64,
    count: u64,
    limit: u64,
) -> Result<Vec<u32>, ElfError> {
    let area = bytes(data, 0, limit, "the version-definitions table")?;
    if count > limit / 20 {
        return Err(ElfError::Malformed(format!(
            "DT_VERDEFNUM {count} does not fit in the version-definitions table"
        )));
    }
    let mut names = Vec::new();
    let mut at = advance(off, 0, limit, "DT_VERDEF")?;
    let mut budget = limit / 8;
    for i in 0..count {
        let cnt = u16_at(area, at + 6)?;
        budget = budget.checked_sub(u64::from(cnt)).ok_or_else(|| {
            ElfError::Malformed("the version-definition auxiliary entries overlap".into())
        })?;
        let aux = u32_at(area, at + 12)?;
        let next = u32_at(area, at + 16)?;
        let mut a = advance(at, aux, limit, "vd_aux")?;
        for j in 0..cnt {
            names.push(u32_at(area, a)?);
            let anext = u32_at(area, a + 4)?;
            if j + 1 < cnt {
                if anext == 0 {
                    return Err(ElfError::Malformed(
                        "a version definition ends its auxiliary list early".into(),
                    ));
                }
                a = advance(a, anext, limit, "vda_next")?;
            }
        }
        if i + 1 < count {
            if next == 0 {
                return Err(ElfError::Malformed(format!(
                    "the version-definitions list ends after {} of {count} entries",
                    i + 1
                )));
            }
            at = advance(at, next, limit, "vd_next")?;
        }
    }
    Ok(names)
}

/// `at + step`, refused unless it stays below `limit` (so later `+ 16` reads cannot overflow).
fn advance(at: u64, step: u32, limit: u64, field: &str) -> Result<u64, ElfError> {
    at.checked_add(u64::from(step))
        .filter(|&n| n < limit)
        .ok_or_else(|| ElfError::Malformed(format!("{field} points past the version table")))
}
