//! The shrinker's view of the headers: [`Layout`] is what the one ELF reader (`elf/file.rs`)
//! reads, validated further for rewriting (every segment and section inside the file, names
//! readable, PT_LOADs well formed), plus the address/offset arithmetic and the in-place writes
//! the shrinker needs. Nothing here panics on hostile input: every read is bounds-checked and
//! every sum overflow-checked. The numbers are in `elf/consts.rs`.

use crate::elf::ElfError;
pub(crate) use crate::elf::bytes::{
    align_up, bytes_at, overlaps, put as put_bytes, put_u16, put_u64, u16_at, u32_at, u64_at,
    zero_range,
};
use crate::elf::consts::{PHDR_SIZE, PT_LOAD, SHF_ALLOC, SHT_NOBITS, SHT_NULL};
use crate::elf::file::{Elf64, ProgramHeader, check_ident, truncated};

/// `a + b`, or `Malformed` naming `what` on overflow.
pub(crate) fn add(a: u64, b: u64, what: &str) -> Result<u64, ElfError> {
    a.checked_add(b)
        .ok_or_else(|| ElfError::Malformed(format!("{what} overflows 64 bits")))
}

/// Rounds `v` down to a multiple of `align` (a power of two, or 0/1 for none).
pub(crate) fn align_down(v: u64, align: u64) -> u64 {
    if align <= 1 { v } else { v & !(align - 1) }
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Segment {
    /// Program header `i` as the shrinker sees it: its ranges do not overflow, its file
    /// image is inside the file, and a PT_LOAD has `p_filesz <= p_memsz` and a power-of-two
    /// `p_align`.
    fn checked(i: usize, p: &ProgramHeader, file_len: u64) -> Result<Segment, ElfError> {
        let s = Segment {
            p_type: p.p_type,
            flags: p.p_flags,
            offset: p.p_offset,
            vaddr: p.p_vaddr,
            paddr: p.p_paddr,
            filesz: p.p_filesz,
            memsz: p.p_memsz,
            align: p.p_align,
        };
        add(s.vaddr, s.memsz, "a segment's address range")?;
        add(s.paddr, s.memsz, "a segment's physical address range")?;
        let end = add(s.offset, s.filesz, "a segment's file range")?;
        if end > file_len {
            return Err(truncated(
                &format!("program header {i}'s file image"),
                s.offset,
            ));
        }
        if s.is_load() {
            if s.filesz > s.memsz {
                return Err(ElfError::Malformed(format!(
                    "PT_LOAD {i} has p_filesz {:#x} > p_memsz {:#x}",
                    s.filesz, s.memsz
                )));
            }
            if s.align > 1 && !s.align.is_power_of_two() {
                return Err(ElfError::Malformed(format!(
                    "PT_LOAD {i} has p_align {:#x}, not a power of two",
                    s.align
                )));
            }
        }
        Ok(s)
    }

    /// The 56 bytes of this program header.
    pub(crate) fn encode(&self) -> [u8; 56] {
        let mut b = [0u8; 56];
        b[0..4].copy_from_slice(&self.p_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..32].copy_from_slice(&self.paddr.to_le_bytes());
        b[32..40].copy_from_slice(&self.filesz.to_le_bytes());
        b[40..48].copy_from_slice(&self.memsz.to_le_bytes());
        b[48..56].copy_from_slice(&self.align.to_le_bytes());
        b
    }

    pub(crate) fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }

    /// End of the file image (validated at parse time not to overflow).
    pub(crate) fn file_end(&self) -> u64 {
        self.offset.saturating_add(self.filesz)
    }

    /// End of the file-backed part in memory.
    pub(crate) fn vaddr_file_end(&self) -> u64 {
        self.vaddr.saturating_add(self.filesz)
    }

    /// End of the memory image.
    pub(crate) fn mem_end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
}

/// One section header, with its name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub info: u32,
    pub addralign: u64,
    pub entsize: u64,
}

impl Section {
    /// Occupies bytes of the file.
    pub(crate) fn in_file(&self) -> bool {
        self.sh_type != SHT_NOBITS && self.sh_type != SHT_NULL
    }

    pub(crate) fn is_alloc(&self) -> bool {
        self.flags & SHF_ALLOC != 0
    }

    pub(crate) fn file_end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }

    pub(crate) fn addr_end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// The headers of a 64-bit little-endian ELF file.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub machine: u16,
    pub phoff: u64,
    pub shoff: u64,
    /// Raw `e_phnum` (may be `PN_XNUM`).
    pub phnum_field: u16,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    pub file_len: u64,
}

impl Layout {
    /// Reads the headers with the one reader ([`Elf64::parse`]) and validates what the
    /// shrinker relies on besides: an executable or shared object, a section table where
    /// sections are counted, every segment and section inside the file without overflow,
    /// PT_LOADs with `p_filesz <= p_memsz` and a power-of-two `p_align`, and every section
    /// name readable. Errors name the first problem met.
    pub(crate) fn parse(d: &[u8]) -> Result<Layout, ElfError> {
        check_ident(d)?;
        let e_type = u16_at(d, 16)?;
        if e_type != 2 && e_type != 3 {
            return Err(ElfError::Unsupported(format!(
                "e_type {e_type} is not a shared object or an executable"
            )));
        }
        if u64_at(d, 40)? == 0 && u16_at(d, 60)? != 0 {
            return Err(ElfError::Malformed(
                "section headers are counted but e_shoff is 0".into(),
            ));
        }
        let elf = Elf64::parse(d)?;
        let file_len = d.len() as u64;
        let segments = elf
            .phdrs
            .iter()
            .enumerate()
            .map(|(i, p)| Segment::checked(i, p, file_len))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layout {
            machine: elf.header.e_machine,
            phoff: elf.header.e_phoff,
            shoff: elf.header.e_shoff,
            phnum_field: elf.header.e_phnum,
            segments,
            sections: named_sections(&elf, file_len)?,
            file_len,
        })
    }

    /// Largest `p_align` of the PT_LOADs (at least 1).
    pub(crate) fn max_load_align(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.is_load())
            .map(|s| s.align)
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The PT_LOAD whose file image holds `[off, off+len)` (`len` may be 0).
    pub(crate) fn load_holding_file(&self, off: u64, len: u64) -> Option<usize> {
        let end = off.checked_add(len)?;
        (0..self.segments.len()).find(|&i| {
            let s = &self.segments[i];
            s.is_load() && s.offset <= off && end <= s.file_end() && (len > 0 || off < s.file_end())
        })
    }

    /// The file offset of `[vaddr, vaddr+len)` when one PT_LOAD maps it from the file.
    pub(crate) fn vaddr_to_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        let end = vaddr.checked_add(len)?;
        self.segments
            .iter()
            .find(|s| {
                s.is_load()
                    && s.vaddr <= vaddr
                    && end <= s.vaddr_file_end()
                    && vaddr < s.vaddr_file_end()
            })
            .map(|s| s.offset + (vaddr - s.vaddr))
    }

    /// The address at which file offset `off` is mapped, if a PT_LOAD maps it.
    pub(crate) fn offset_to_vaddr(&self, off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.is_load() && s.offset <= off && off < s.file_end())
            .map(|s| s.vaddr + (off - s.offset))
    }

    /// Size in bytes of the program header table.
    pub(crate) fn phdr_table_len(&self) -> u64 {
        self.segments.len() as u64 * PHDR_SIZE
    }

    /// The index of the section called `name`, if exactly one has that name.
    pub(crate) fn unique_section(&self, name: &str) -> Result<Option<usize>, ElfError> {
        let mut found = None;
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 && s.name == name {
                if found.is_some() {
                    return Err(ElfError::Unsupported(format!(
                        "more than one section is called `{name}`"
                    )));
                }
                found = Some(i);
            }
        }
        Ok(found)
    }
}

/// The sections of `elf` as the shrinker sees them: each (but section 0) inside the file
/// without overflow, with its name read from a section-name table that must have contents.
fn named_sections(elf: &Elf64, file_len: u64) -> Result<Vec<Section>, ElfError> {
    let raw: Vec<(u32, Section)> = elf
        .shdrs
        .iter()
        .map(|h| {
            let s = Section {
                name: String::new(),
                sh_type: h.sh_type,
                flags: h.sh_flags,
                addr: h.sh_addr,
                offset: h.sh_offset,
                size: h.sh_size,
                link: h.sh_link,
                info: h.sh_info,
                addralign: h.sh_addralign,
                entsize: h.sh_entsize,
            };
            (h.sh_name, s)
        })
        .collect();
    for (i, (_, s)) in raw.iter().enumerate().skip(1) {
        add(s.addr, s.size, "a section's address range")?;
        if s.in_file() {
            let end = add(s.offset, s.size, "a section's file range")?;
            if end > file_len {
                return Err(truncated(&format!("section {i}'s contents"), s.offset));
            }
        }
    }
    let shstrndx = elf.header.shstrndx;
    let strtab = if shstrndx != 0 {
        raw.get(shstrndx).map(|(_, s)| s.clone())
    } else {
        None
    };
    if !raw.is_empty() && shstrndx != 0 && strtab.as_ref().is_none_or(|s| !s.in_file()) {
        return Err(ElfError::Malformed(format!(
            "e_shstrndx {shstrndx} is not a section with contents"
        )));
    }
    let mut sections = Vec::with_capacity(raw.len());
    for (i, (name_off, mut s)) in raw.into_iter().enumerate() {
        if i > 0
            && let Some(st) = &strtab
        {
            s.name = read_name(elf.data, st, name_off)?;
        }
        sections.push(s);
    }
    Ok(sections)
}

fn read_name(d: &[u8], strtab: &Section, off: u32) -> Result<String, ElfError> {
    if u64::from(off) >= strtab.size {
        return Err(ElfError::Malformed(format!(
            "section name offset {off:#x} is outside the section name table"
        )));
    }
    let table = bytes_at(d, strtab.offset, strtab.size, "the section name table")?;
    let tail = table.get(off as usize..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).ok_or_else(|| {
        ElfError::Malformed(format!("section name at {off:#x} is not NUL-terminated"))
    })?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0x1001, 0x1000), Some(0x2000));
        assert_eq!(align_up(0x1000, 0x1000), Some(0x1000));
        assert_eq!(align_up(5, 0), Some(5));
        assert_eq!(align_up(u64::MAX, 8), None);
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
        assert!(overlaps(0, 4, 3, 1));
        assert!(!overlaps(0, 4, 4, 1));
        assert!(!overlaps(0, 0, 0, 4));
    }

    #[test]
    fn rejects_short_and_foreign_files() {
        assert!(matches!(Layout::parse(b"MZ\0\0"), Err(ElfError::NotElf(_))));
        assert!(matches!(
            Layout::parse(b"\x7fELF\x02\x01\x01"),
            Err(ElfError::Truncated(_))
        ));
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 1;
        h[5] = 1;
        assert!(matches!(Layout::parse(&h), Err(ElfError::Unsupported(_))));
        h[4] = 2;
        h[5] = 2;
        assert!(matches!(Layout::parse(&h), Err(ElfError::Unsupported(_))));
    }
}
