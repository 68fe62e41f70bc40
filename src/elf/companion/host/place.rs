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
//!
//! [`place`] runs it in steps: `Segment::lay` finds `P` (`loaded_end`), the alignment of what
//! follows it (`shift_alignment`), and where the segment and each table go; the new file is
//! then written as edits over the input ([`Laid`]: the gap at `P`, then each write): `write_phdrs`, `write_shdrs` (with `section_moves`) and
//! `rebase_symbols` write the headers and the symbols that follow a moved section.

use super::MoveError;
use crate::elf::consts::{
    PF_R, PF_W, PHDR_SIZE, PT_DYNAMIC, PT_LOAD, PT_NULL, PT_PHDR, SHDR_SIZE, SHT_DYNSYM,
    SHT_SYMTAB, SYM_SIZE,
};
use crate::elf::file::{Elf64, ProgramHeader};
use crate::elf::raw::align_up;

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
pub(crate) struct Placed<'b> {
    /// The new file, as edits over the input.
    pub laid: Laid<'b>,
    pub at: Vec<(u64, u64)>,
    /// Address and file offset of `.dynamic` when it moved.
    pub dynamic_at: Option<(u64, u64)>,
    pub notes: Vec<String>,
}

/// The new host as edits over the input bytes `base`: `delta` zero bytes inserted at `p`
/// (the new segment's gap), then `writes` (offsets in the result) in order. Nothing is
/// copied here: [`crate::changes::Changes::apply`] makes the new file in the input's own
/// buffer, and its `undo` gives the input back, so a library of a GiB is not held twice.
pub(crate) struct Laid<'b> {
    base: &'b [u8],
    pub p: usize,
    pub delta: usize,
    pub writes: Vec<(usize, Vec<u8>)>,
}

impl Laid<'_> {
    fn len(&self) -> usize {
        self.base.len().saturating_add(self.delta)
    }

    /// Writes `src` at `off` of the new file; an error (never a panic) if it does not fit.
    pub(crate) fn put(&mut self, off: u64, src: &[u8]) -> Result<(), MoveError> {
        let r = crate::elf::bytes::range(off, u64_of(src.len()), self.len(), "a write")?;
        self.writes.push((r.start, src.to_vec()));
        Ok(())
    }

    pub(crate) fn put_u16(&mut self, off: u64, v: u16) -> Result<(), MoveError> {
        self.put(off, &v.to_le_bytes())
    }

    pub(crate) fn put_u64(&mut self, off: u64, v: u64) -> Result<(), MoveError> {
        self.put(off, &v.to_le_bytes())
    }

    /// The new file's `len` bytes at `off`, with every write so far.
    pub(crate) fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, MoveError> {
        let r = crate::elf::bytes::range(off, len, self.len(), "a read")?;
        let mut out = vec![0u8; r.len()];
        let (p, gap_end) = (self.p, self.p.saturating_add(self.delta));
        for (i, b) in out.iter_mut().enumerate() {
            let at = r.start.saturating_add(i);
            let from = if at < p {
                Some(at)
            } else if at >= gap_end {
                Some(at.saturating_sub(self.delta))
            } else {
                None
            };
            if let Some(v) = from.and_then(|f| self.base.get(f)) {
                *b = *v;
            }
        }
        for (w, bytes) in &self.writes {
            let (ws, we) = (*w, w.saturating_add(bytes.len()));
            let (s, e) = (ws.max(r.start), we.min(r.end));
            if s < e
                && let (Some(dst), Some(src)) = (
                    out.get_mut(s.saturating_sub(r.start)..e.saturating_sub(r.start)),
                    bytes.get(s.saturating_sub(ws)..e.saturating_sub(ws)),
                )
            {
                dst.copy_from_slice(src);
            }
        }
        Ok(out)
    }

    pub(crate) fn u16_at(&self, off: u64) -> Result<u16, MoveError> {
        Ok(crate::elf::bytes::u16_at(&self.read(off, 2)?, 0)?)
    }

    pub(crate) fn u64_at(&self, off: u64) -> Result<u64, MoveError> {
        Ok(crate::elf::bytes::u64_at(&self.read(off, 8)?, 0)?)
    }
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn bad(what: &str) -> MoveError {
    MoveError::Layout(format!("layout arithmetic overflowed ({what})"))
}

fn add(a: u64, b: u64, what: &str) -> Result<u64, MoveError> {
    a.checked_add(b).ok_or_else(|| bad(what))
}

/// Places `tables` (and `.dynamic`, when `dynamic` is given as its encoded bytes with its
/// section index) in a new PT_LOAD, and returns the new file as edits over the input.
pub(crate) fn place<'b>(
    elf: &Elf64<'b>,
    tables: &[Table],
    dynamic: Option<(Option<usize>, Vec<u8>)>,
) -> Result<Placed<'b>, MoveError> {
    let seg = Segment::lay(elf, tables, dynamic.as_ref().map(|d| d.1.as_slice()))?;
    let mut out = Laid {
        base: elf.data,
        p: usize::try_from(seg.p).map_err(|_| bad("p"))?,
        delta: usize::try_from(seg.delta).map_err(|_| bad("delta"))?,
        writes: Vec::new(),
    };
    let mut notes = Vec::new();
    let mut at = Vec::with_capacity(tables.len());
    for (t, &off) in tables.iter().zip(&seg.offs) {
        out.put(off, &t.bytes)?;
        at.push((seg.addr(off), off));
    }
    let mut dynamic_at = None;
    if let (Some((_, bytes)), Some(off)) = (&dynamic, seg.dyn_off) {
        out.put(off, bytes)?;
        dynamic_at = Some((seg.addr(off), off));
        notes.push(format!(
            "moved `.dynamic` into the new PT_LOAD at {:#x}: its DT_NULL slack could not take the new DT_NEEDED entries",
            seg.addr(off)
        ));
    }
    write_phdrs(elf, &seg, &mut out, &mut notes)?;
    let moves = section_moves(elf, &seg, tables, &at, dynamic.as_ref())?;
    write_shdrs(elf, &seg, &mut out, &moves)?;
    let rebased = rebase_symbols(elf, &seg, &mut out, &moves)?;
    if rebased > 0 {
        notes.push(format!(
            "moved {rebased} symbol(s) defined in the moved sections (section symbols, `_DYNAMIC`)"
        ));
    }
    Ok(Placed {
        laid: out,
        at,
        dynamic_at,
        notes,
    })
}

/// The new segment: where it goes in the file and in memory, where each table lands in it,
/// and how the program header table and what follows `P` move.
struct Segment {
    /// `P`, the end of the loaded file content, and the input's length.
    p: u64,
    len: u64,
    /// How far everything from `P` on moves down (a multiple of its alignment).
    delta: u64,
    seg_off: u64,
    vaddr: u64,
    size: u64,
    /// The largest `p_align` (the new segment's).
    align: u64,
    /// The PT_NULL program header the new PT_LOAD replaces, if any; without one the table
    /// moves to the start of the new segment with one more entry.
    null_slot: Option<usize>,
    phnum: usize,
    /// File offset of `.dynamic` when it moves, of each table in input order.
    dyn_off: Option<u64>,
    offs: Vec<u64>,
    /// The size of the moved `.dynamic`.
    dyn_len: Option<u64>,
}

impl Segment {
    /// Lays out the new segment at `P` for `tables` and, when it moves, `.dynamic` (its
    /// encoded bytes), refusing layouts the rules cannot take.
    fn lay(elf: &Elf64, tables: &[Table], dynamic: Option<&[u8]>) -> Result<Segment, MoveError> {
        let len = u64::try_from(elf.data.len()).map_err(|_| bad("file size"))?;
        let p = loaded_end(elf, len)?;
        let shift_align = shift_alignment(elf, p, len)?;
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
        if null_slot.is_none() {
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
        let mut dyn_len = None;
        if let Some(bytes) = dynamic {
            let at = align_up(cursor, 8).ok_or_else(|| bad("offset"))?;
            let n = u64::try_from(bytes.len()).map_err(|_| bad("size"))?;
            dyn_off = Some(at);
            dyn_len = Some(n);
            cursor = add(at, n, "dynamic")?;
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
        let delta = align_up(cursor.saturating_sub(p), shift_align).ok_or_else(|| bad("delta"))?;
        Ok(Segment {
            p,
            len,
            delta,
            seg_off,
            vaddr,
            size,
            align,
            null_slot,
            phnum,
            dyn_off,
            offs,
            dyn_len,
        })
    }

    /// Whether the program header table moves to the start of the new segment.
    fn moves_table(&self) -> bool {
        self.null_slot.is_none()
    }

    /// The address of file offset `off` inside the new segment.
    fn addr(&self, off: u64) -> u64 {
        self.vaddr.saturating_add(off.saturating_sub(self.seg_off))
    }

    /// Where input offset `off` is in the output (from `P` on, `delta` further down).
    fn moved(&self, off: u64) -> u64 {
        if off >= self.p && off <= self.len {
            off.saturating_add(self.delta)
        } else {
            off
        }
    }
}

/// `P`: the end of everything loaded from the file (segments with file bytes, allocated
/// sections), which must lie inside the file.
fn loaded_end(elf: &Elf64, len: u64) -> Result<u64, MoveError> {
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
    Ok(p)
}

/// The alignment what follows `P` keeps when it moves (the largest of its sections', at
/// least 8), refusing a section or header table that straddles `P`.
fn shift_alignment(elf: &Elf64, p: u64, len: u64) -> Result<u64, MoveError> {
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
    Ok(shift_align)
}

/// The new program header table: the new PT_LOAD after the last one (in place of a PT_NULL
/// when there is one), PT_PHDR and PT_DYNAMIC following what moved; `e_phoff` and
/// `e_phnum` with it.
fn write_phdrs(
    elf: &Elf64,
    seg: &Segment,
    out: &mut Laid<'_>,
    notes: &mut Vec<String>,
) -> Result<(), MoveError> {
    let load = ProgramHeader {
        p_type: PT_LOAD,
        p_flags: if seg.dyn_off.is_some() {
            PF_R | PF_W
        } else {
            PF_R
        },
        p_offset: seg.seg_off,
        p_vaddr: seg.vaddr,
        p_paddr: seg.vaddr,
        p_filesz: seg.size,
        p_memsz: seg.size,
        p_align: seg.align,
    };
    let mut phdrs = elf.phdrs.clone();
    if let Some(i) = seg.null_slot {
        phdrs.remove(i);
    }
    let after_last_load = phdrs
        .iter()
        .rposition(|ph| ph.p_type == PT_LOAD)
        .map_or(0, |i| i.saturating_add(1));
    phdrs.insert(after_last_load, load);
    let phnum64 = u64::try_from(seg.phnum).map_err(|_| bad("phnum"))?;
    let table_len = phnum64.saturating_mul(PHDR_SIZE);
    for ph in phdrs.iter_mut() {
        if ph.p_type == PT_PHDR {
            if seg.moves_table() {
                ph.p_offset = seg.seg_off;
                ph.p_vaddr = seg.vaddr;
                ph.p_paddr = seg.vaddr;
            }
            ph.p_filesz = table_len;
            ph.p_memsz = table_len;
        }
        if ph.p_type == PT_DYNAMIC
            && let (Some(off), Some(n)) = (seg.dyn_off, seg.dyn_len)
        {
            ph.p_offset = off;
            ph.p_vaddr = seg.addr(off);
            ph.p_paddr = ph.p_vaddr;
            ph.p_filesz = n;
            ph.p_memsz = n;
        }
    }
    let phoff = if seg.moves_table() {
        notes.push(format!(
            "moved the program header table ({} entries, room for {SPARE_PHDRS} more) to the start of the new PT_LOAD at {:#x}",
            seg.phnum, seg.vaddr
        ));
        seg.seg_off
    } else {
        notes.push("the new PT_LOAD took the place of a PT_NULL program header".into());
        seg.moved(elf.header.e_phoff)
    };
    let phnum16 = u16::try_from(seg.phnum)
        .ok()
        .filter(|&n| n < 0xffff)
        .ok_or_else(|| MoveError::Layout("too many program headers".into()))?;
    out.put_u64(32, phoff)?;
    out.put_u16(56, phnum16)?;
    for (i, ph) in phdrs.iter().enumerate() {
        let i = u64::try_from(i).map_err(|_| bad("index"))?;
        out.put(
            add(phoff, i.saturating_mul(PHDR_SIZE), "phdr")?,
            &ph.encode(),
        )?;
    }
    Ok(())
}

/// A section that moved into the new segment: its old place and its new one.
struct SectionMove {
    index: usize,
    old_addr: u64,
    old_size: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

/// The sections of the placed tables (and of a moved `.dynamic`), with their new places.
fn section_moves(
    elf: &Elf64,
    seg: &Segment,
    tables: &[Table],
    at: &[(u64, u64)],
    dynamic: Option<&(Option<usize>, Vec<u8>)>,
) -> Result<Vec<SectionMove>, MoveError> {
    let mut moves = Vec::new();
    for (t, &(a, off)) in tables.iter().zip(at) {
        if let Some(i) = t.section {
            moves.push(SectionMove {
                index: i,
                old_addr: t.old_addr,
                old_size: t.old_size,
                addr: a,
                offset: off,
                size: u64::try_from(t.bytes.len()).map_err(|_| bad("size"))?,
            });
        }
    }
    if let (Some((Some(i), bytes)), Some(off)) = (dynamic, seg.dyn_off)
        && let Some(s) = elf.shdrs.get(*i)
    {
        moves.push(SectionMove {
            index: *i,
            old_addr: s.sh_addr,
            old_size: s.sh_size,
            addr: seg.addr(off),
            offset: off,
            size: u64::try_from(bytes.len()).map_err(|_| bad("size"))?,
        });
    }
    Ok(moves)
}

/// Section headers: moved tables get their new place; everything after `P` its new offset.
fn write_shdrs(
    elf: &Elf64,
    seg: &Segment,
    out: &mut Laid<'_>,
    moves: &[SectionMove],
) -> Result<(), MoveError> {
    if elf.shdrs.is_empty() {
        return Ok(());
    }
    let base = seg.moved(elf.header.e_shoff);
    out.put_u64(40, base)?;
    for (i, s) in elf.shdrs.iter().enumerate() {
        let mut n = *s;
        if i > 0 && n.in_file() {
            n.sh_offset = seg.moved(n.sh_offset);
        }
        if let Some(m) = moves.iter().find(|m| m.index == i) {
            n.sh_addr = m.addr;
            n.sh_offset = m.offset;
            n.sh_size = m.size;
        }
        if n != *s {
            let i = u64::try_from(i).map_err(|_| bad("index"))?;
            let h = add(base, i.saturating_mul(SHDR_SIZE), "section header")?;
            out.put_u64(add(h, 16, "shdr")?, n.sh_addr)?;
            out.put_u64(add(h, 24, "shdr")?, n.sh_offset)?;
            out.put_u64(add(h, 32, "shdr")?, n.sh_size)?;
        }
    }
    Ok(())
}

/// Symbols defined in a moved section (its section symbol, `_DYNAMIC`) follow it. The
/// symbol tables are read where they now are in `out`. Returns how many moved.
fn rebase_symbols(
    elf: &Elf64,
    seg: &Segment,
    out: &mut Laid<'_>,
    moves: &[SectionMove],
) -> Result<usize, MoveError> {
    let mut rebased = 0usize;
    for (si, s) in elf.shdrs.iter().enumerate() {
        if !matches!(s.sh_type, SHT_SYMTAB | SHT_DYNSYM) || s.sh_entsize != SYM_SIZE {
            continue;
        }
        let (off, size) = match moves.iter().find(|m| m.index == si) {
            Some(m) => (m.offset, m.size),
            None => (seg.moved(s.sh_offset), s.sh_size),
        };
        let count = size / SYM_SIZE;
        for k in 0..count {
            let e = add(off, k.saturating_mul(SYM_SIZE), "symbol")?;
            let shndx = usize::from(out.u16_at(add(e, 6, "symbol")?)?);
            let value = out.u64_at(add(e, 8, "symbol")?)?;
            let hit = moves.iter().find(|m| {
                m.index == shndx
                    && value >= m.old_addr
                    && value.saturating_sub(m.old_addr) <= m.old_size
            });
            if let Some(m) = hit {
                out.put_u64(
                    add(e, 8, "symbol")?,
                    m.addr.saturating_add(value.saturating_sub(m.old_addr)),
                )?;
                rebased = rebased.saturating_add(1);
            }
        }
    }
    Ok(rebased)
}
