//! Finds every reference into the packed regions and decides how to re-point it, or why the
//! cut must be refused.
//!
//! The only legal targets are surviving container starts (and, for symbols, section starts).
//! References are: RELATIVE relocations (RELA addend plus the in-place copy when it equals the
//! old target; REL and RELR in-place words), `.symtab`/`.dynsym` symbols of the sections, and
//! wrapper records (`.nvFatBinSegment`, `.hipFatBinSegment`) whose pointer has no relocation.
//! Anything else that points into a region — a non-RELATIVE relocation, a relocation located
//! in a region, a `.dynamic` pointer, a `__start_`/`__stop_` symbol, an end-of-section symbol —
//! refuses the cut.

use std::collections::{BTreeMap, HashSet};

use super::Refuse;
use super::layout::{Layout, bytes_at, u32_at, u64_at};
use super::pack::{Class, Packing};
use super::tables::{self, RelKind, Reloc, SymLookup, SymTable};
use crate::elf::consts::{
    DT_ANDROID_REL, DT_ANDROID_RELA, SHN_ABS, SHN_LORESERVE, SHN_UNDEF, STT_SECTION, STT_TLS,
};

/// Wrapper sections and their record magic.
pub(crate) const WRAPPER_SECTIONS: [(&str, u32); 2] = [
    (".nvFatBinSegment", 0x466243B1),
    (".hipFatBinSegment", 0x48495046),
];
pub(crate) const WRAPPER_SIZE: u64 = 24;

/// What the analysis decided.
#[derive(Debug, Default)]
pub(crate) struct RefEdits {
    /// By input file offset.
    pub patches: BTreeMap<u64, u64>,
    /// How many references were re-pointed to a moved container.
    pub retargeted: usize,
    /// Input file offsets of RELA entries whose addend changes, with the new target.
    pub new_addends: BTreeMap<u64, u64>,
    pub notes: Vec<String>,
}

impl RefEdits {
    fn patch(&mut self, off: u64, value: u64) -> Result<(), Refuse> {
        match self.patches.insert(off, value) {
            Some(old) if old != value => Err(Refuse::Cut(format!(
                "two references disagree about the word at file offset {off:#x}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Everything read from the input that the analysis and the self-check share.
pub(crate) struct Tables {
    pub relocs: Vec<Reloc>,
    pub symtabs: Vec<SymTable>,
    pub dynamic: Vec<tables::DynEntry>,
    pub relative: u32,
}

/// Reads the relocations, symbols and `.dynamic`. A table that cannot be read makes the
/// references unaccountable: the cut is refused, but zeroing in place is still possible.
pub(crate) fn read_tables(d: &[u8], l: &Layout, relative: u32) -> Result<Tables, Refuse> {
    let unreadable =
        |e: crate::elf::ElfError| Refuse::Cut(format!("the references cannot all be read: {e}"));
    Ok(Tables {
        relocs: tables::relocations(d, l, relative).map_err(unreadable)?,
        symtabs: tables::all_symbol_tables(d, l).map_err(unreadable)?,
        dynamic: tables::dynamic_entries(d, l).map_err(unreadable)?,
        relative,
    })
}

/// The target of a RELATIVE relocation: the addend (RELA) or the word in place (REL, RELR;
/// 0 when the place is not file-backed).
pub(crate) fn relative_target(d: &[u8], l: &Layout, r: &Reloc) -> Result<u64, Refuse> {
    Ok(match r.kind {
        RelKind::Rela => r.addend as u64,
        RelKind::Rel | RelKind::Relr => match l.vaddr_to_offset(r.r_offset, 8) {
            Some(off) => u64_at(d, off)?,
            None => 0,
        },
    })
}

pub(crate) fn analyse(d: &[u8], l: &Layout, t: &Tables, p: &Packing) -> Result<RefEdits, Refuse> {
    let mut ed = RefEdits::default();
    let name = |ty: u32| tables::reloc_name(l.machine, ty);
    let entry = u64_at(d, 24)?;
    if p.region_of(entry).is_some() {
        return Err(Refuse::Cut(format!(
            "the entry point {entry:#x} lies in {}",
            p.describe(entry)
        )));
    }

    for e in &t.dynamic {
        if e.tag == DT_ANDROID_REL || e.tag == DT_ANDROID_RELA {
            return Err(Refuse::Cut(
                "the object uses Android packed relocations, which are not read".into(),
            ));
        }
        if tables::is_pointer_tag(e.tag) && p.region_of(e.val).is_some() {
            return Err(Refuse::Cut(format!(
                "the .dynamic entry with tag {:#x} points into {}",
                e.tag,
                p.describe(e.val)
            )));
        }
    }

    let lookup = SymLookup::new(&t.symtabs);
    for r in &t.relocs {
        if p.region_of(r.r_offset).is_some() || p.region_of(r.r_offset.saturating_add(7)).is_some()
        {
            return Err(Refuse::Cut(format!(
                "a {} relocation at {:#x} is located inside {}",
                name(r.r_type),
                r.r_offset,
                p.describe(r.r_offset)
            )));
        }
        // The loader computes base + addend for RELATIVE, whatever the symbol index says.
        if r.r_type == t.relative {
            let target = relative_target(d, l, r)?;
            match p.classify(target) {
                Class::Outside => {}
                Class::Container { new, .. } => {
                    let place = l.vaddr_to_offset(r.r_offset, 8);
                    match r.kind {
                        RelKind::Rela => {
                            ed.patch(r.entry_off + 16, new)?;
                            ed.new_addends.insert(r.entry_off, new);
                            if let Some(off) = place
                                && u64_at(d, off)? == target
                            {
                                ed.patch(off, new)?;
                            }
                        }
                        RelKind::Rel | RelKind::Relr => {
                            let off = place.ok_or_else(|| {
                                Refuse::Cut(format!(
                                    "the place {:#x} of a RELATIVE relocation is not in the file",
                                    r.r_offset
                                ))
                            })?;
                            ed.patch(off, new)?;
                        }
                    }
                    ed.retargeted += 1;
                }
                other => {
                    return Err(Refuse::Cut(format!(
                        "a {} relocation at {:#x} points {}",
                        name(r.r_type),
                        r.r_offset,
                        illegal_target(p, other, target)
                    )));
                }
            }
            continue;
        }
        if tables::is_tls_type(l.machine, r.r_type) {
            continue;
        }
        if r.sym == 0 {
            if p.classify(r.addend as u64) != Class::Outside {
                return Err(Refuse::Cut(format!(
                    "a {} relocation at {:#x} points into {}",
                    name(r.r_type),
                    r.r_offset,
                    p.describe(r.addend as u64)
                )));
            }
            continue;
        }
        let Some((tab, sym)) = lookup.get(r.symtab, r.sym) else {
            return Err(Refuse::Cut(format!(
                "the {} relocation at {:#x} names symbol {}, which cannot be read",
                name(r.r_type),
                r.r_offset,
                r.sym
            )));
        };
        if sym.shndx == SHN_UNDEF || sym.st_type() == STT_TLS {
            continue;
        }
        let target = sym.value.wrapping_add(r.addend as u64);
        if p.dev_by_shndx(sym.shndx).is_some()
            || p.classify(sym.value) != Class::Outside
            || p.classify(target) != Class::Outside
        {
            return Err(Refuse::Cut(format!(
                "a {} relocation at {:#x} resolves to `{}` in {}",
                name(r.r_type),
                r.r_offset,
                String::from_utf8_lossy(tab.name(d, sym)),
                p.describe(if p.region_of(target).is_some() {
                    target
                } else {
                    sym.value
                })
            )));
        }
    }

    symbols(d, t, p, &mut ed)?;
    wrappers(d, l, t, p, &mut ed)?;
    Ok(ed)
}

/// "into `.nv_fatbin` at +0x10, not at a container start", or "at the container at +0x200
/// of `.nv_fatbin`, which the edit drops".
fn illegal_target(p: &Packing, class: Class, addr: u64) -> String {
    match class {
        Class::Dropped { dev, .. } => format!(
            "at the container at +{:#x} of `{}`, which the edit drops",
            addr - p.devs[dev].addr,
            p.devs[dev].name
        ),
        _ => format!("into {}, not at a container start", p.describe(addr)),
    }
}

fn symbols(d: &[u8], t: &Tables, p: &Packing, ed: &mut RefEdits) -> Result<(), Refuse> {
    for tab in &t.symtabs {
        let table = if tab.dynamic { ".dynsym" } else { ".symtab" };
        for sym in tab.syms.iter().skip(1) {
            let nm = tab.name(d, sym);
            for dev in &p.devs {
                let n = dev.name.as_bytes();
                let bound = |prefix: &[u8]| {
                    nm.len() == prefix.len() + n.len() && nm.starts_with(prefix) && nm.ends_with(n)
                };
                if bound(b"__start_") || bound(b"__stop_") {
                    return Err(Refuse::Cut(format!(
                        "the {table} symbol `{}` marks a bound of `{}`",
                        String::from_utf8_lossy(nm),
                        dev.name
                    )));
                }
            }
            let shown = || String::from_utf8_lossy(nm).into_owned();
            let Some(di) = p.dev_by_shndx(sym.shndx) else {
                // Attributed to another section (or absolute): it must not point inside.
                let other_section =
                    sym.shndx != SHN_UNDEF && (sym.shndx < SHN_LORESERVE || sym.shndx == SHN_ABS);
                if other_section
                    && sym.st_type() != STT_TLS
                    && p.classify(sym.value) != Class::Outside
                {
                    return Err(Refuse::Cut(format!(
                        "the {table} symbol `{}` belongs to another section but its value points into {}",
                        shown(),
                        p.describe(sym.value)
                    )));
                }
                continue;
            };
            let dev = &p.devs[di];
            let (sec_new, _) = p.new_sections[di];
            let value_off = sym.entry_off + 8;
            let size_off = sym.entry_off + 16;
            if sym.st_type() == STT_SECTION {
                if sym.value != dev.addr {
                    return Err(Refuse::Cut(format!(
                        "the {table} section symbol of `{}` has value {:#x}, not the section's start",
                        dev.name, sym.value
                    )));
                }
                if sec_new != sym.value {
                    ed.patch(value_off, sec_new)?;
                }
                continue;
            }
            // Attributed by st_shndx: the value must lie inside this very section (an address
            // equal to its end belongs to what follows, so such a symbol marks the end).
            if sym.value == dev.end() {
                return Err(Refuse::Cut(format!(
                    "the {table} symbol `{}` marks the end of `{}`",
                    shown(),
                    dev.name
                )));
            }
            if sym.value < dev.addr || sym.value > dev.end() {
                return Err(Refuse::Cut(format!(
                    "the {table} symbol `{}` belongs to `{}` but its value {:#x} lies outside it",
                    shown(),
                    dev.name,
                    sym.value
                )));
            }
            match p.classify(sym.value) {
                Class::Container { new, placed } => {
                    let pl = &p.placed[placed];
                    if new != sym.value {
                        ed.patch(value_off, new)?;
                    }
                    if sym.size != 0 {
                        if sym.size == pl.old_len {
                            ed.patch(size_off, pl.new_len)?;
                        } else if sym.size > pl.new_len {
                            return Err(Refuse::Cut(format!(
                                "the {table} symbol `{}` covers {:#x} bytes from a container start, not the whole container",
                                shown(),
                                sym.size
                            )));
                        }
                    }
                }
                Class::SectionStart { new, .. } => {
                    if sym.size != 0 {
                        return Err(Refuse::Cut(format!(
                            "the {table} symbol `{}` at the start of `{}` has a size ({:#x}) but no container starts there",
                            shown(),
                            dev.name,
                            sym.size
                        )));
                    }
                    if new != sym.value {
                        ed.patch(value_off, new)?;
                    }
                }
                Class::Dropped { at, .. } if !tab.dynamic && sym.size == 0 => {
                    ed.patch(value_off, at)?;
                    ed.notes.push(format!(
                        ".symtab symbol `{}` named a dropped container of `{}`; it now marks where that container would be",
                        shown(),
                        dev.name
                    ));
                }
                _ => {
                    return Err(Refuse::Cut(format!(
                        "the {table} symbol `{}` (value {:#x}) points into `{}` at +{:#x}, not at a container start",
                        shown(),
                        sym.value,
                        dev.name,
                        sym.value.wrapping_sub(dev.addr)
                    )));
                }
            }
        }
    }
    Ok(())
}

fn wrappers(
    d: &[u8],
    l: &Layout,
    t: &Tables,
    p: &Packing,
    ed: &mut RefEdits,
) -> Result<(), Refuse> {
    let reloc_places: HashSet<u64> = t.relocs.iter().map(|r| r.r_offset).collect();
    for (sec, magic) in WRAPPER_SECTIONS {
        for s in l
            .sections
            .iter()
            .skip(1)
            .filter(|s| s.name == sec && s.in_file())
        {
            if s.size % WRAPPER_SIZE != 0 {
                return Err(Refuse::Cut(format!(
                    "`{sec}` is {:#x} bytes, not a whole number of 24-byte wrappers",
                    s.size
                )));
            }
            bytes_at(d, s.offset, s.size, "a wrapper section")?;
            for i in 0..s.size / WRAPPER_SIZE {
                let rec = s.offset + i * WRAPPER_SIZE;
                let m = u32_at(d, rec)?;
                if m == 0
                    && bytes_at(d, rec, WRAPPER_SIZE, "a wrapper")?
                        .iter()
                        .all(|&x| x == 0)
                {
                    continue; // padding
                }
                if m != magic {
                    return Err(Refuse::Cut(format!(
                        "wrapper {i} of `{sec}` has magic {m:#010x}, expected {magic:#010x}"
                    )));
                }
                let field_addr = s.addr + i * WRAPPER_SIZE + 8;
                if reloc_places.contains(&field_addr) {
                    continue; // the relocation decides, and was handled
                }
                let ptr = u64_at(d, rec + 8)?;
                if ptr == 0 {
                    continue;
                }
                match p.classify(ptr) {
                    Class::Outside => {}
                    Class::Container { new, .. } => {
                        ed.patch(rec + 8, new)?;
                        ed.retargeted += 1;
                    }
                    other => {
                        return Err(Refuse::Cut(format!(
                            "wrapper {i} of `{sec}` points {}",
                            illegal_target(p, other, ptr)
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
