//! Room for one more program header in an **executable** (see `docs/elf.md`).
//!
//! A shared library's table can simply move into the new PT_LOAD (`ld.so` finds it through
//! PT_PHDR or the PT_LOAD that maps `e_phoff`), but kernels before Linux 5.18 compute an
//! executable's `AT_PHDR` from its first PT_LOAD, so an executable's table stays where it is and
//! the sections right after it move out instead: `.interp`, whole note segments (PT_NOTE,
//! PT_GNU_PROPERTY), hash tables, `.dynsym`, version tables. They move together, as one block
//! with one shift, into the new PT_LOAD, keeping their alignment.
//!
//! The move is refused unless everything that refers to those bytes can be updated: the
//! segments that cover them must lie wholly inside the block, DT tags may only be the
//! hash/symbol/version ones, and no dynamic relocation (RELA, or RELR with its in-place value)
//! may be located in or point into the block.

use crate::elf::consts::{
    DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_PLTREL, DT_PLTRELSZ, DT_REL, DT_RELA, DT_RELASZ, DT_RELR,
    DT_RELRSZ, DT_VERSYM, RELA_SIZE, SHT_GNU_HASH, SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM,
    SHT_HASH, SHT_NOTE, SHT_PROGBITS,
};
use crate::elf::consts::{
    DT_SYMTAB, DT_VERDEF, DT_VERNEED, PHDR_SIZE, PT_GNU_PROPERTY, PT_INTERP, PT_LOAD, PT_NOTE,
    PT_PHDR, SHT_DYNSYM,
};
use crate::elf::dynview::DynView;
use crate::elf::file::{DynEntry, Elf64};
use crate::elf::raw::{self, overlaps};

/// DT tags that may point into the moved block; they are shifted with it.
const MOVABLE_TAGS: [u64; 6] = [
    DT_HASH,
    DT_GNU_HASH,
    DT_SYMTAB,
    DT_VERSYM,
    DT_VERNEED,
    DT_VERDEF,
];

/// The block of bytes right after the program header table that moves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    /// File offset of the block: the end of the program header table.
    pub start: u64,
    pub end: u64,
    /// Address of `start`.
    pub vaddr: u64,
    /// The new copy must keep this alignment (the largest of the moved sections').
    pub align: u64,
    pub sections: Vec<usize>,
    pub segments: Vec<usize>,
    /// Indices (into the dynamic entries) of tags that point into the block.
    pub tags: Vec<usize>,
}

impl Span {
    /// The names of the moved sections, in file order.
    pub fn names(&self, elf: &Elf64) -> Vec<String> {
        let mut idx = self.sections.clone();
        idx.sort_by_key(|&i| elf.shdrs.get(i).map_or(0, |s| s.sh_offset));
        idx.iter()
            .filter_map(|&i| elf.shdrs.get(i))
            .map(|s| elf.section_name(s))
            .collect()
    }
}

fn movable_section(elf: &Elf64, i: usize, dynstr: Option<usize>) -> bool {
    let Some(s) = elf.shdrs.get(i) else {
        return false;
    };
    Some(i) != dynstr
        && match s.sh_type {
            SHT_NOTE | SHT_HASH | SHT_GNU_HASH | SHT_DYNSYM | SHT_GNU_VERSYM | SHT_GNU_VERNEED
            | SHT_GNU_VERDEF => true,
            SHT_PROGBITS => elf.section_name(s) == ".interp",
            _ => false,
        }
}

/// Finds the block to move so that `need` more bytes fit after the table, or says why not.
pub(crate) fn find_span(
    elf: &Elf64,
    view: &DynView,
    entries: &[DynEntry],
    dynstr: Option<usize>,
    need: u64,
) -> Result<Span, String> {
    if elf.shdrs.is_empty() {
        return Err("there are no section headers to tell what follows the table".into());
    }
    let table_end = elf.header.e_phoff + u64::from(elf.header.e_phnum) * PHDR_SIZE;
    let holder = elf
        .loads()
        .find(|p| p.p_offset <= elf.header.e_phoff && p.file_end().is_some_and(|e| table_end <= e))
        .ok_or("the table is not inside a PT_LOAD")?;
    let (start, mut end) = (table_end, table_end + need);
    let mut sections = Vec::new();
    let mut segments = Vec::new();
    // Grow the block until every section and segment touching it lies wholly inside.
    loop {
        let mut grown = false;
        for (i, s) in elf.shdrs.iter().enumerate().skip(1) {
            if s.in_file()
                && !sections.contains(&i)
                && overlaps(s.sh_offset, s.sh_size, start, end - start)
            {
                if s.sh_offset < start || !s.is_alloc() || !movable_section(elf, i, dynstr) {
                    return Err(format!(
                        "section `{}` follows the table and cannot move",
                        elf.section_name(s)
                    ));
                }
                sections.push(i);
                end = end.max(s.sh_offset + s.sh_size);
                grown = true;
            }
        }
        for (i, p) in elf.phdrs.iter().enumerate() {
            if matches!(p.p_type, PT_LOAD | PT_PHDR) || segments.contains(&i) {
                continue;
            }
            if overlaps(p.p_offset, p.p_filesz, start, end - start) {
                if p.p_offset < start || !matches!(p.p_type, PT_INTERP | PT_NOTE | PT_GNU_PROPERTY)
                {
                    return Err(format!(
                        "a {} segment follows the table",
                        raw::segment_name(p.p_type)
                    ));
                }
                segments.push(i);
                end = end.max(p.p_offset + p.p_filesz);
                grown = true;
            }
        }
        if !grown {
            break;
        }
    }
    if holder.file_end().is_none_or(|e| end > e) {
        return Err("the sections after the table run past its PT_LOAD".into());
    }
    let vaddr = holder.p_vaddr + (start - holder.p_offset);
    let vend = vaddr + (end - start);
    let inside = |a: u64| a >= vaddr && a < vend;

    let mut tags = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let is_address = crate::elf::consts::ADDRESS_TAGS
            .iter()
            .any(|&(t, _)| t == e.tag);
        if is_address && inside(e.val) {
            if !MOVABLE_TAGS.contains(&e.tag) {
                return Err(format!(
                    "dynamic tag {:#x} points into the sections after the table",
                    e.tag
                ));
            }
            tags.push(i);
        }
    }
    check_relocations(elf, view, &inside)?;
    let align = sections
        .iter()
        .filter_map(|&i| elf.shdrs.get(i))
        .map(|s| s.sh_addralign)
        .chain(
            segments
                .iter()
                .filter_map(|&i| elf.phdrs.get(i))
                .map(|p| p.p_align),
        )
        .fold(16, u64::max);
    if align > 0x1000 || !align.is_power_of_two() {
        return Err(format!("a moved section asks for alignment {align:#x}"));
    }
    Ok(Span {
        start,
        end,
        vaddr,
        align,
        sections,
        segments,
        tags,
    })
}

/// No dynamic relocation may be located in, or point into, the block.
fn check_relocations(
    elf: &Elf64,
    view: &DynView,
    inside: &dyn Fn(u64) -> bool,
) -> Result<(), String> {
    let get = |tag| view.dynamic.get(tag);
    if get(DT_REL).is_some() || get(DT_PLTREL).is_some_and(|t| t == DT_REL) {
        return Err("REL relocations are not scanned".into());
    }
    let mut tables = Vec::new();
    if let (Some(a), Some(n)) = (get(DT_RELA), get(DT_RELASZ)) {
        tables.push((a, n));
    }
    if let (Some(a), Some(n)) = (get(DT_JMPREL), get(DT_PLTRELSZ)) {
        tables.push((a, n));
    }
    for (addr, size) in tables {
        let off = elf
            .vaddr_to_offset(addr, size)
            .ok_or("a relocation table is not file-backed")?;
        let rel = raw::bytes(elf.data, off, size, "relocations").map_err(|e| e.to_string())?;
        for k in 0..size / RELA_SIZE {
            let r_offset = raw::u64_at(rel, k * RELA_SIZE).map_err(|e| e.to_string())?;
            let r_addend = raw::u64_at(rel, k * RELA_SIZE + 16).map_err(|e| e.to_string())?;
            if inside(r_offset) || inside(r_addend) {
                return Err(format!(
                    "a relocation at {r_offset:#x} refers to the sections after the table"
                ));
            }
        }
    }
    if let (Some(addr), Some(size)) = (get(DT_RELR), get(DT_RELRSZ)) {
        let off = elf
            .vaddr_to_offset(addr, size)
            .ok_or("the RELR table is not file-backed")?;
        let relr = raw::bytes(elf.data, off, size, "RELR").map_err(|e| e.to_string())?;
        let mut base = 0u64;
        let relocated = |a: u64| -> Result<(), String> {
            let value = elf
                .vaddr_to_offset(a, 8)
                .and_then(|o| raw::u64_at(elf.data, o).ok());
            if inside(a) || value.is_some_and(inside) {
                return Err(format!(
                    "a RELR relocation at {a:#x} refers to the sections after the table"
                ));
            }
            Ok(())
        };
        for k in 0..size / 8 {
            let entry = raw::u64_at(relr, k * 8).map_err(|e| e.to_string())?;
            if entry & 1 == 0 {
                relocated(entry)?;
                base = entry.wrapping_add(8);
            } else {
                for bit in 1..64u64 {
                    if entry >> bit & 1 == 1 {
                        relocated(base.wrapping_add((bit - 1) * 8))?;
                    }
                }
                base = base.wrapping_add(63 * 8);
            }
        }
    }
    Ok(())
}
