//! Debug information in ELF objects: how much of a file it takes.
//!
//! Debug sections (`.debug_*`, and the compressed `.zdebug_*` of older toolchains) are not
//! allocated (no `SHF_ALLOC`): the loader never maps them, so they cost download and disk
//! space but nothing at run time. A compiler wheel can carry hundreds of MB of them in one
//! library.

use super::inspect::{ElfInfo, SectionInfo};

const SHF_ALLOC: u64 = 0x2;

/// True for a section that holds debug information and is not part of the memory image.
pub fn is_debug_section(s: &SectionInfo) -> bool {
    s.in_file
        && s.flags & SHF_ALLOC == 0
        && (s.name.starts_with(".debug_") || s.name.starts_with(".zdebug_"))
}

/// Bytes of the file taken by non-allocated debug sections.
pub fn debug_bytes(info: &ElfInfo) -> u64 {
    info.sections
        .iter()
        .filter(|s| is_debug_section(s))
        .map(|s| s.size)
        .fold(0u64, u64::saturating_add)
}

/// The result of [`strip_debug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub data: Vec<u8>,
    /// Bytes of debug sections emptied.
    pub removed: u64,
    /// Debug sections that lie inside the loaded part of the file and had to stay.
    pub kept_inside_loads: usize,
}

impl Stripped {
    /// The line a summary shows for this member (`trim` and `split` alike).
    pub fn note(&self) -> String {
        let stay = if self.kept_inside_loads > 0 {
            format!("; {} inside the loaded part stay", self.kept_inside_loads)
        } else {
            String::new()
        };
        format!(
            "removed {} of debug sections (.debug_*){stay}",
            crate::cli_size(self.removed)
        )
    }
}

fn rd<const N: usize>(d: &[u8], at: usize) -> Result<[u8; N], String> {
    d.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated at {at:#x}"))
}
fn u16_at(d: &[u8], at: usize) -> Result<u16, String> {
    rd::<2>(d, at).map(u16::from_le_bytes)
}
fn u32_at(d: &[u8], at: usize) -> Result<u32, String> {
    rd::<4>(d, at).map(u32::from_le_bytes)
}
fn u64_at(d: &[u8], at: usize) -> Result<u64, String> {
    rd::<8>(d, at).map(u64::from_le_bytes)
}

const SHT_NOBITS: u32 = 8;
const SHT_RELA: u32 = 4;
const SHT_REL: u32 = 9;

struct Shdr {
    name: String,
    kind: u32,
    flags: u64,
    offset: u64,
    size: u64,
    info: u32,
    align: u64,
}

/// Empties the non-allocated debug sections of a 64-bit little-endian ELF object without
/// moving any byte a program header covers: the file up to the end of the last segment is
/// kept as it is, the sections after it are laid out again without the debug bytes, and the
/// section header table is written after them. Every section keeps its index (a debug
/// section stays as an empty header), so `.symtab`, `sh_link` and `e_shstrndx` stay right.
/// `Ok(None)` when there is nothing that can be removed this way.
pub fn strip_debug(data: &[u8]) -> Result<Option<Stripped>, String> {
    let Some(sections) = read_sections(data)? else {
        return Ok(None);
    };
    let (removable, kept_inside_loads) = removable_sections(data.len() as u64, &sections)?;
    let shdrs = &sections.shdrs;
    let removed: u64 = shdrs
        .iter()
        .zip(&removable)
        .filter(|(_, r)| **r)
        .map(|(s, _)| s.size)
        .sum();
    if removed == 0 {
        return Ok(None);
    }
    let out = lay_out(data, &sections, &removable);
    Ok(Some(Stripped {
        data: out,
        removed,
        kept_inside_loads,
    }))
}

/// The section headers of a file [`strip_debug`] can work on, and where the part its program
/// headers cover ends (everything before `keep_end` stays byte for byte).
struct Sections {
    keep_end: u64,
    shoff: usize,
    shdrs: Vec<Shdr>,
}

/// Reads the ELF header and the section headers; `None` for a file without sections.
fn read_sections(data: &[u8]) -> Result<Option<Sections>, String> {
    if data.get(..4) != Some(b"\x7fELF".as_slice())
        || data.get(4) != Some(&2)
        || data.get(5) != Some(&1)
    {
        return Err("not a 64-bit little-endian ELF object".into());
    }
    let phoff = u64_at(data, 0x20)? as usize;
    let shoff = u64_at(data, 0x28)? as usize;
    let phentsize = u16_at(data, 0x36)? as usize;
    let phnum = u16_at(data, 0x38)? as usize;
    let shentsize = u16_at(data, 0x3a)? as usize;
    let shnum = u16_at(data, 0x3c)? as usize;
    let shstrndx = u16_at(data, 0x3e)? as usize;
    if shnum == 0 || shoff == 0 {
        return Ok(None);
    }
    if shentsize != 64 || (phnum > 0 && phentsize != 56) || shnum >= 0xff00 || shstrndx >= shnum {
        return Err("unusual ELF header (section count, entry sizes)".into());
    }
    // Everything up to the end of the last segment (and the headers) stays byte for byte.
    let mut keep_end = (phoff + phnum * 56).max(64) as u64;
    for i in 0..phnum {
        let at = phoff + i * 56;
        let off = u64_at(data, at + 8)?;
        let filesz = u64_at(data, at + 32)?;
        keep_end = keep_end.max(off.saturating_add(filesz));
    }
    if keep_end > data.len() as u64 {
        return Err("a segment ends past the end of the file".into());
    }
    let mut shdrs = Vec::with_capacity(shnum);
    let raw_sh = |i: usize| shoff + i * 64;
    let str_off = u64_at(data, raw_sh(shstrndx) + 24)? as usize;
    let str_size = u64_at(data, raw_sh(shstrndx) + 32)? as usize;
    let strtab = data
        .get(str_off..str_off.saturating_add(str_size))
        .ok_or("the section name table lies outside the file")?;
    for i in 0..shnum {
        let at = raw_sh(i);
        let name_off = u32_at(data, at)? as usize;
        let name = strtab
            .get(name_off..)
            .and_then(|r| r.split(|&b| b == 0).next())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        shdrs.push(Shdr {
            name,
            kind: u32_at(data, at + 4)?,
            flags: u64_at(data, at + 8)?,
            offset: u64_at(data, at + 24)?,
            size: u64_at(data, at + 32)?,
            info: u32_at(data, at + 44)?,
            align: u64_at(data, at + 48)?,
        });
    }
    Ok(Some(Sections {
        keep_end,
        shoff,
        shdrs,
    }))
}

/// Which sections can be emptied (the debug sections after the loaded part), and how many
/// debug sections lie inside it and stay. A section across the end of the loaded part, or a
/// relocation section for one that would be emptied, is an error.
fn removable_sections(file_len: u64, sections: &Sections) -> Result<(Vec<bool>, usize), String> {
    let (keep_end, shdrs) = (sections.keep_end, &sections.shdrs);
    let shnum = shdrs.len();
    let debug = |s: &Shdr| {
        s.kind != SHT_NOBITS
            && s.flags & SHF_ALLOC == 0
            && (s.name.starts_with(".debug_") || s.name.starts_with(".zdebug_"))
    };
    let mut removable = vec![false; shnum];
    let mut kept_inside_loads = 0;
    for (i, s) in shdrs.iter().enumerate() {
        if s.kind == SHT_NOBITS || s.size == 0 {
            continue;
        }
        let end = s.offset.saturating_add(s.size);
        if end > file_len {
            return Err(format!(
                "section `{}` ends past the end of the file",
                s.name
            ));
        }
        if s.offset < keep_end && end > keep_end {
            return Err(format!(
                "section `{}` straddles the end of the loaded part",
                s.name
            ));
        }
        if debug(s) {
            if s.offset >= keep_end {
                removable[i] = true;
            } else {
                kept_inside_loads += 1;
            }
        }
    }
    // Relocations that apply to a debug section would point into nothing.
    for s in shdrs {
        if matches!(s.kind, SHT_REL | SHT_RELA)
            && removable.get(s.info as usize).copied().unwrap_or(false)
        {
            return Err(format!(
                "`{}` relocates a debug section; only linked objects are stripped",
                s.name
            ));
        }
    }
    Ok((removable, kept_inside_loads))
}

/// The file again: its loaded part as it is, then the sections after it without the removed
/// bytes, then the section header table with the new offsets and sizes.
fn lay_out(data: &[u8], sections: &Sections, removable: &[bool]) -> Vec<u8> {
    let (keep_end, shdrs) = (sections.keep_end, &sections.shdrs);
    let shnum = shdrs.len();
    let raw_sh = |i: usize| sections.shoff + i * 64;
    let mut out = data[..keep_end as usize].to_vec();
    let mut offsets: Vec<u64> = shdrs.iter().map(|s| s.offset).collect();
    let mut sizes: Vec<u64> = shdrs.iter().map(|s| s.size).collect();
    let mut order: Vec<usize> = (0..shnum)
        .filter(|&i| shdrs[i].offset >= keep_end && shdrs[i].kind != 0)
        .collect();
    order.sort_by_key(|&i| (shdrs[i].offset, i));
    for i in order {
        let s = &shdrs[i];
        if removable[i] {
            offsets[i] = out.len() as u64;
            sizes[i] = 0;
            continue;
        }
        if s.kind == SHT_NOBITS || s.size == 0 {
            offsets[i] = out.len() as u64;
            continue;
        }
        let align = s.align.clamp(1, 4096) as usize;
        while out.len() % align != 0 {
            out.push(0);
        }
        offsets[i] = out.len() as u64;
        out.extend_from_slice(&data[s.offset as usize..(s.offset + s.size) as usize]);
    }
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let new_shoff = out.len() as u64;
    for i in 0..shnum {
        let mut h = data[raw_sh(i)..raw_sh(i) + 64].to_vec();
        h[24..32].copy_from_slice(&offsets[i].to_le_bytes());
        h[32..40].copy_from_slice(&sizes[i].to_le_bytes());
        out.extend_from_slice(&h);
    }
    out[0x28..0x30].copy_from_slice(&new_shoff.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, flags: u64, in_file: bool) -> SectionInfo {
        SectionInfo {
            name: name.into(),
            kind: "PROGBITS".into(),
            offset: 0,
            size: 100,
            addr: 0,
            flags,
            in_file,
        }
    }

    #[test]
    fn only_unallocated_debug_sections_count() {
        assert!(is_debug_section(&section(".debug_info", 0, true)));
        assert!(is_debug_section(&section(".zdebug_line", 0, true)));
        assert!(!is_debug_section(&section(".debug_info", SHF_ALLOC, true)));
        assert!(!is_debug_section(&section(".debug_info", 0, false)));
        assert!(!is_debug_section(&section(".symtab", 0, true)));
        assert!(!is_debug_section(&section(".gnu_debuglink", 0, true)));
    }
}
