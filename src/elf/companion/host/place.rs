//! Placing the grown tables of the host (`.dynsym`, `.dynstr`, `.hash`, `.gnu.version`, and
//! `.dynamic` when its DT_NULL slack is too small) in one new PT_LOAD, by the patcher's rules
//! (`elf::patch::layout`, `docs/elf.md`): every byte before `P`, the end of the loaded file
//! content, keeps its offset; the new segment is inserted at `P`, congruent with its address
//! modulo the largest `p_align`, above every existing segment; what follows `P` (non-alloc
//! sections, the section header table) moves down by a multiple of its alignment. The program
//! header table takes a PT_NULL slot, or moves to the start of the new segment (a shared
//! library's table may; `ld.so` finds it through the PT_LOAD that maps `e_phoff`), followed by
//! room for [`SPARE_PHDRS`] more entries that no section covers, so the shrinker's page cut,
//! which needs one more program header per hole, can grow the table in place.

use super::MoveError;
use crate::elf::consts::{
    PF_R, PF_W, PHDR_SIZE, PT_DYNAMIC, PT_LOAD, PT_NULL, PT_PHDR, SHDR_SIZE, SHT_DYNSYM,
    SHT_SYMTAB, SYM_SIZE,
};
use crate::elf::file::{Elf64, ProgramHeader};
use crate::elf::raw::{self, align_up};

/// Program headers left free after a moved table, for the shrinker's splits.
pub(crate) const SPARE_PHDRS: u64 = 4;

/// A table to place in the new segment.
pub(crate) struct Table {
    /// Section header index, when a section describes it.
    pub section: Option<usize>,
    pub bytes: Vec<u8>,
    pub align: u64,
    /// Old address and size, for symbols defined in the section.
    pub old_addr: u64,
    pub old_size: u64,
}

/// Where each table landed: `(vaddr, file offset)` in input order.
pub(crate) struct Placed {
    pub data: Vec<u8>,
    pub at: Vec<(u64, u64)>,
    /// Address of `.dynamic` when it moved.
    pub dynamic_at: Option<u64>,
    pub notes: Vec<String>,
}

fn bad(what: &str) -> MoveError {
    MoveError::Layout(format!("layout arithmetic overflowed ({what})"))
}

fn add(a: u64, b: u64, what: &str) -> Result<u64, MoveError> {
    a.checked_add(b).ok_or_else(|| bad(what))
}

/// Places `tables` (and `.dynamic`, when `dynamic` is given as its encoded bytes with its
/// section index) in a new PT_LOAD, and returns the whole new file.
#[allow(clippy::too_many_lines)] // split on branch longhost
pub(crate) fn place(
    elf: &Elf64,
    tables: &[Table],
    dynamic: Option<(Option<usize>, Vec<u8>)>,
) -> Result<Placed, MoveError> {
    let data = elf.data;
    let len = u64::try_from(data.len()).map_err(|_| bad("file size"))?;
    // P: the end of everything loaded from the file.
    let mut p = 0u64;
    for ph in &elf.phdrs {
        if ph.p_filesz > 0 {
            p = p.max(ph.file_end().ok_or_else(|| bad("segment end"))?);
        }
    }
    for s in elf.shdrs.iter().skip(1) {
        if s.in_file() && s.is_alloc() && s.sh_size > 0 {
            p = p.max(add(s.sh_offset, s.sh_size, "section end")?);
        }
    }
    if p > len {
        return Err(MoveError::Layout(
            "a segment or section ends past the end of the file".into(),
        ));
    }
    let mut shift_align = 8u64;
    for s in elf.shdrs.iter().skip(1) {
        if !s.in_file() || s.sh_offset > len {
            continue;
        }
        let end = s.sh_offset.saturating_add(s.sh_size);
        if s.sh_offset < p && end > p {
            return Err(MoveError::Layout(format!(
                "section `{}` straddles the end of the loaded content at {p:#x}",
                elf.section_name(s)
            )));
        }
        if s.sh_offset >= p {
            shift_align = shift_align.max(s.sh_addralign);
        }
    }
    if shift_align > 0x10000 || !shift_align.is_power_of_two() {
        return Err(MoveError::Layout(format!(
            "a non-loaded section asks for alignment {shift_align:#x}"
        )));
    }
    let shtab = u64::from(elf.header.e_shnum).saturating_mul(SHDR_SIZE);
    let phtab = u64::from(elf.header.e_phnum).saturating_mul(PHDR_SIZE);
    for (off, n) in [(elf.header.e_shoff, shtab), (elf.header.e_phoff, phtab)] {
        if off < p && off.saturating_add(n) > p {
            return Err(MoveError::Layout(format!(
                "a header table at {off:#x} straddles the end of the loaded content"
            )));
        }
    }

    let null_slot = elf.phdrs.iter().position(|ph| ph.p_type == PT_NULL);
    let phnum = if null_slot.is_some() {
        elf.phdrs.len()
    } else {
        elf.phdrs.len().saturating_add(1)
    };
    let phnum64 = u64::try_from(phnum).map_err(|_| bad("phnum"))?;
    let mut align = 0x1000u64;
    let mut top = 0u64;
    for ph in elf.loads() {
        align = align.max(ph.p_align);
        top = top.max(ph.mem_end().ok_or_else(|| bad("segment end"))?);
    }
    if !align.is_power_of_two() {
        return Err(MoveError::Layout(format!("p_align {align:#x}")));
    }
    let seg_off = align_up(p, 16).ok_or_else(|| bad("offset"))?;
    let mut cursor = seg_off;
    let move_table = null_slot.is_none();
    if move_table {
        cursor = add(
            cursor,
            phnum64
                .checked_add(SPARE_PHDRS)
                .and_then(|n| n.checked_mul(PHDR_SIZE))
                .ok_or_else(|| bad("table"))?,
            "table",
        )?;
    }
    let mut dyn_off = None;
    if let Some((_, bytes)) = &dynamic {
        let at = align_up(cursor, 8).ok_or_else(|| bad("offset"))?;
        dyn_off = Some(at);
        cursor = add(
            at,
            u64::try_from(bytes.len()).map_err(|_| bad("size"))?,
            "dynamic",
        )?;
    }
    let mut offs = Vec::with_capacity(tables.len());
    for t in tables {
        let at = align_up(cursor, t.align.max(1)).ok_or_else(|| bad("offset"))?;
        offs.push(at);
        cursor = add(
            at,
            u64::try_from(t.bytes.len()).map_err(|_| bad("size"))?,
            "table",
        )?;
    }
    let size = cursor.checked_sub(seg_off).ok_or_else(|| bad("size"))?;
    let vaddr = align_up(top, align)
        .and_then(|v| v.checked_add(seg_off.checked_rem(align)?))
        .filter(|v| v.checked_add(size).is_some())
        .ok_or_else(|| bad("address"))?;
    let addr = |off: u64| vaddr.saturating_add(off.saturating_sub(seg_off));
    let delta = align_up(cursor.saturating_sub(p), shift_align).ok_or_else(|| bad("delta"))?;
    let moved = |off: u64| {
        if off >= p && off <= len {
            off.saturating_add(delta)
        } else {
            off
        }
    };

    // data[..p] + new segment (zeros, then filled) + data[p..].
    let pu = usize::try_from(p).map_err(|_| bad("p"))?;
    let du = usize::try_from(delta).map_err(|_| bad("delta"))?;
    let (head, rest) = data.split_at_checked(pu).ok_or_else(|| bad("split"))?;
    let mut out = Vec::with_capacity(data.len().saturating_add(du));
    out.extend_from_slice(head);
    out.resize(pu.saturating_add(du), 0);
    out.extend_from_slice(rest);

    let mut notes = Vec::new();
    let mut at = Vec::with_capacity(tables.len());
    for (t, &off) in tables.iter().zip(&offs) {
        raw::put(&mut out, off, &t.bytes)?;
        at.push((addr(off), off));
    }
    let mut dynamic_at = None;
    if let (Some((_, bytes)), Some(off)) = (&dynamic, dyn_off) {
        raw::put(&mut out, off, bytes)?;
        dynamic_at = Some(addr(off));
        notes.push(format!(
            "moved `.dynamic` into the new PT_LOAD at {:#x}: its DT_NULL slack could not take the new DT_NEEDED entries",
            addr(off)
        ));
    }

    // Program headers.
    let load = ProgramHeader {
        p_type: PT_LOAD,
        p_flags: if dynamic.is_some() { PF_R | PF_W } else { PF_R },
        p_offset: seg_off,
        p_vaddr: vaddr,
        p_paddr: vaddr,
        p_filesz: size,
        p_memsz: size,
        p_align: align,
    };
    let mut phdrs = elf.phdrs.clone();
    if let Some(i) = null_slot {
        phdrs.remove(i);
    }
    let after_last_load = phdrs
        .iter()
        .rposition(|ph| ph.p_type == PT_LOAD)
        .map_or(0, |i| i.saturating_add(1));
    phdrs.insert(after_last_load, load);
    let table_len = phnum64.saturating_mul(PHDR_SIZE);
    for ph in phdrs.iter_mut() {
        if ph.p_type == PT_PHDR {
            if move_table {
                ph.p_offset = seg_off;
                ph.p_vaddr = vaddr;
                ph.p_paddr = vaddr;
            }
            ph.p_filesz = table_len;
            ph.p_memsz = table_len;
        }
        if ph.p_type == PT_DYNAMIC
            && let (Some(off), Some((_, bytes))) = (dyn_off, &dynamic)
        {
            ph.p_offset = off;
            ph.p_vaddr = addr(off);
            ph.p_paddr = ph.p_vaddr;
            ph.p_filesz = u64::try_from(bytes.len()).map_err(|_| bad("size"))?;
            ph.p_memsz = ph.p_filesz;
        }
    }
    let phoff = if move_table {
        notes.push(format!(
            "moved the program header table ({phnum} entries, room for {SPARE_PHDRS} more) to the start of the new PT_LOAD at {vaddr:#x}"
        ));
        seg_off
    } else {
        notes.push("the new PT_LOAD took the place of a PT_NULL program header".into());
        moved(elf.header.e_phoff)
    };
    let phnum16 = u16::try_from(phnum)
        .ok()
        .filter(|&n| n < 0xffff)
        .ok_or_else(|| MoveError::Layout("too many program headers".into()))?;
    raw::put_u64(&mut out, 32, phoff)?;
    raw::put_u16(&mut out, 56, phnum16)?;
    for (i, ph) in phdrs.iter().enumerate() {
        let i = u64::try_from(i).map_err(|_| bad("index"))?;
        raw::put(
            &mut out,
            add(phoff, i.saturating_mul(PHDR_SIZE), "phdr")?,
            &ph.encode(),
        )?;
    }

    // Section headers: moved tables get their new place; everything after P its new offset.
    // (section index, old address, old size, new address, new offset, new size)
    let mut moves: Vec<(usize, u64, u64, u64, u64, u64)> = Vec::new();
    for (t, &(a, off)) in tables.iter().zip(&at) {
        if let Some(i) = t.section {
            let n = u64::try_from(t.bytes.len()).map_err(|_| bad("size"))?;
            moves.push((i, t.old_addr, t.old_size, a, off, n));
        }
    }
    if let (Some((Some(i), bytes)), Some(off)) = (&dynamic, dyn_off)
        && let Some(s) = elf.shdrs.get(*i)
    {
        let n = u64::try_from(bytes.len()).map_err(|_| bad("size"))?;
        moves.push((*i, s.sh_addr, s.sh_size, addr(off), off, n));
    }
    if !elf.shdrs.is_empty() {
        let base = moved(elf.header.e_shoff);
        raw::put_u64(&mut out, 40, base)?;
        for (i, s) in elf.shdrs.iter().enumerate() {
            let mut n = *s;
            if i > 0 && n.in_file() {
                n.sh_offset = moved(n.sh_offset);
            }
            if let Some(m) = moves.iter().find(|m| m.0 == i) {
                n.sh_addr = m.3;
                n.sh_offset = m.4;
                n.sh_size = m.5;
            }
            if n != *s {
                let i = u64::try_from(i).map_err(|_| bad("index"))?;
                let h = add(base, i.saturating_mul(SHDR_SIZE), "section header")?;
                raw::put_u64(&mut out, add(h, 16, "shdr")?, n.sh_addr)?;
                raw::put_u64(&mut out, add(h, 24, "shdr")?, n.sh_offset)?;
                raw::put_u64(&mut out, add(h, 32, "shdr")?, n.sh_size)?;
            }
        }
    }

    // Symbols defined in a moved section (its section symbol, `_DYNAMIC`) follow it. The
    // symbol tables are read where they now are in `out`.
    let mut rebased = 0usize;
    for (si, s) in elf.shdrs.iter().enumerate() {
        if !matches!(s.sh_type, SHT_SYMTAB | SHT_DYNSYM) || s.sh_entsize != SYM_SIZE {
            continue;
        }
        let (off, size) = match moves.iter().find(|m| m.0 == si) {
            Some(m) => (m.4, m.5),
            None => (moved(s.sh_offset), s.sh_size),
        };
        let count = size / SYM_SIZE;
        for k in 0..count {
            let e = add(off, k.saturating_mul(SYM_SIZE), "symbol")?;
            let shndx = usize::from(raw::u16_at(&out, add(e, 6, "symbol")?)?);
            let value = raw::u64_at(&out, add(e, 8, "symbol")?)?;
            let hit = moves
                .iter()
                .find(|m| m.0 == shndx && value >= m.1 && value.saturating_sub(m.1) <= m.2);
            if let Some(m) = hit {
                raw::put_u64(
                    &mut out,
                    add(e, 8, "symbol")?,
                    m.3.saturating_add(value.saturating_sub(m.1)),
                )?;
                rebased = rebased.saturating_add(1);
            }
        }
    }
    if rebased > 0 {
        notes.push(format!(
            "moved {rebased} symbol(s) defined in the moved sections (section symbols, `_DYNAMIC`)"
        ));
    }
    Ok(Placed {
        data: out,
        at,
        dynamic_at,
        notes,
    })
}
