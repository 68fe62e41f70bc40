//! Placing a grown `.dynstr` or `.dynamic` and assembling the output file.
//!
//! Every byte before `P`, the end of the last byte any segment maps from the file, keeps its
//! offset. New content is inserted at `P` and everything from `P` on (non-alloc sections such as
//! `.symtab`, `.comment` and debug info, the section header table) moves down by the inserted
//! length, which is a multiple of their alignment. No address of existing content changes.
//!
//! Three placements, cheapest first:
//! - **in place**: same size, same layout; only string bytes, dynamic entries and `vn_file`
//!   values change;
//! - **extend the last PT_LOAD** when `.dynstr` is its tail (files already edited by patchelf):
//!   the appended strings go right after it;
//! - **a new PT_LOAD** above every existing segment, holding a copy of `.dynstr` with the new
//!   strings appended and/or `.dynamic` with room for the new entries. Its offset is congruent to
//!   its address modulo the largest existing `p_align` (64 KiB on aarch64), and the file is not
//!   padded to a page. The program header table needs one more entry; in order of preference it
//!   takes a PT_NULL entry, grows in place over bytes that no section, segment or dynamic tag
//!   uses (patchelf'd files), or, in a shared library, moves to the start of the new segment
//!   (`ld.so` and musl find the table through PT_PHDR or the PT_LOAD that maps `e_phoff`). An
//!   executable's table never moves (kernels before Linux 5.18 derive `AT_PHDR` from the first
//!   PT_LOAD): the sections after it move instead (see `slide`).
//!
//! Symbols defined in a moved section (section symbols, `_DYNAMIC`) move with it. GOT[0], the
//! link-time address of `_DYNAMIC` that GNU ld and lld store, is left alone: glibc reads it only
//! while `ld.so` relocates itself, and patchelf leaves it stale in every auditwheel-repaired
//! wheel too.

use serde::Serialize;

use super::slide::{self, Span};
use crate::elf::ElfError;
use crate::elf::consts::{
    ADDRESS_TAGS, DT_STRSZ, DT_STRTAB, DYN_SIZE, ET_EXEC, PF_R, PF_W, PHDR_SIZE, PT_INTERP,
    PT_LOAD, PT_NULL, PT_PHDR, SHDR_SIZE, SHT_DYNAMIC, SHT_DYNSYM, SHT_SYMTAB, SIZED_TABLES,
    SYM_SIZE,
};
use crate::elf::dynview::DynView;
use crate::elf::file::{DynEntry, Elf64, ProgramHeader, SectionHeader};
use crate::elf::raw::{self, align_up, overlaps};

/// How the edit was laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Method {
    /// Nothing needed to change: the output is the input.
    Unchanged,
    /// Same size and layout: only string bytes, dynamic entries and `vn_file` values changed.
    InPlace,
    /// New strings were appended to `.dynstr` by extending the last PT_LOAD, whose tail it was.
    AppendedDynstr,
    /// A new PT_LOAD was added at the top of the address space holding what is flagged here:
    /// a copy of `.dynstr` with the new strings, `.dynamic` with room for the new entries, the
    /// program header table (shared libraries, when it could not grow in place), and, in
    /// executables whose table has no room, the sections that followed it (`.interp`, notes,
    /// hash tables...) by name.
    NewSegment {
        dynstr: bool,
        dynamic: bool,
        program_headers: bool,
        moved_sections: Vec<String>,
    },
}

/// The edited dynamic section, ready to be laid out.
pub(crate) struct Edited<'e> {
    /// The dynamic entries (without the DT_NULL terminator); DT_STRTAB/DT_STRSZ are updated here.
    pub entries: Vec<DynEntry>,
    /// The original DT_STRSZ bytes, with in-place edits.
    pub table: &'e [u8],
    /// Strings appended after the table.
    pub tail: &'e [u8],
    /// `vn_file` fields to rewrite: (file offset, new string offset).
    pub vn_files: Vec<(u64, u32)>,
}

/// The new file, described rather than built: `inserted` zero bytes at `at` (everything from
/// `at` on moves down by that much), then `list`'s bytes written over the result in order, at
/// offsets of the new file. Nothing in a layout reads the output back, so the description can
/// be carried out on a copy of the input ([`Writes::build`]) or on the input's own buffer
/// ([`Writes::apply`]), which needs no second buffer as large as the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Writes {
    pub at: u64,
    pub inserted: u64,
    /// The new file's length.
    pub total: u64,
    pub list: Vec<(u64, Vec<u8>)>,
}

impl Writes {
    /// Records `src` at `off`; an error (never a panic) if it does not fit in the new file.
    fn put(&mut self, off: u64, src: &[u8]) -> Result<(), ElfError> {
        // The same check and text as a write into a buffer of the new file's length.
        let total = usize::try_from(self.total).map_err(|_| internal("size"))?;
        raw::range(off, src.len() as u64, total, "a write")?;
        self.list.push((off, src.to_vec()));
        Ok(())
    }

    fn put_u16(&mut self, off: u64, v: u16) -> Result<(), ElfError> {
        self.put(off, &v.to_le_bytes())
    }

    fn put_u32(&mut self, off: u64, v: u32) -> Result<(), ElfError> {
        self.put(off, &v.to_le_bytes())
    }

    fn put_u64(&mut self, off: u64, v: u64) -> Result<(), ElfError> {
        self.put(off, &v.to_le_bytes())
    }
}

pub(crate) struct Laid {
    pub writes: Writes,
    pub method: Method,
    pub notes: Vec<String>,
}

/// The largest alignment a moved section may ask for before we refuse.
const MAX_SHIFT_ALIGN: u64 = 0x10000;
/// New `.dynamic` arrays keep this many spare DT_NULL slots besides the terminator.
const SPARE_DYN_SLOTS: usize = 4;

fn internal(what: &str) -> ElfError {
    ElfError::Unsupported(format!("layout arithmetic overflowed ({what})"))
}

/// How the program header table gets its extra entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PhdrSlot {
    /// Replace the PT_NULL entry at this index.
    Null(usize),
    /// Grow the table over unused bytes right after it.
    Grow,
    /// Move the table into the new segment (shared libraries).
    Move,
    /// Move the sections right after the table into the new segment (executables).
    Slide(Span),
}

struct Ctx<'a, 'd> {
    elf: &'a Elf64<'d>,
    view: &'a DynView<'d>,
    /// End of the loaded file content: insertions happen here.
    p: u64,
    /// Alignment the content after `p` needs to keep.
    shift_align: u64,
    dynstr_index: Option<usize>,
    dynamic_index: Option<usize>,
}

impl Ctx<'_, '_> {
    fn new<'a, 'd>(elf: &'a Elf64<'d>, view: &'a DynView<'d>) -> Result<Ctx<'a, 'd>, ElfError> {
        let mut p = 0u64;
        for ph in &elf.phdrs {
            if ph.p_filesz > 0 {
                p = p.max(ph.file_end().ok_or_else(|| internal("segment end"))?);
            }
        }
        for s in elf.shdrs.iter().skip(1) {
            if s.in_file() && s.is_alloc() && s.sh_size > 0 {
                p = p.max(s.sh_offset.saturating_add(s.sh_size));
            }
        }
        let len = elf.data.len() as u64;
        let mut shift_align = 8u64;
        for s in elf.shdrs.iter().skip(1) {
            // Empty sections are not checked and may carry any offset: only those inside the
            // file move with it.
            if !s.in_file() || s.sh_offset > len {
                continue;
            }
            let end = s.sh_offset.saturating_add(s.sh_size);
            if s.sh_offset < p && end > p {
                return Err(ElfError::Unsupported(format!(
                    "section `{}` straddles the end of the loaded content at {p:#x}",
                    elf.section_name(s)
                )));
            }
            if s.sh_offset >= p {
                shift_align = shift_align.max(s.sh_addralign);
            }
        }
        if shift_align > MAX_SHIFT_ALIGN || !shift_align.is_power_of_two() {
            return Err(ElfError::Unsupported(format!(
                "a non-loaded section asks for alignment {shift_align:#x}"
            )));
        }
        let tables = [
            (
                elf.header.e_shoff,
                u64::from(elf.header.e_shnum) * SHDR_SIZE,
            ),
            (
                elf.header.e_phoff,
                u64::from(elf.header.e_phnum) * PHDR_SIZE,
            ),
        ];
        for (off, len) in tables {
            if off < p && off.saturating_add(len) > p {
                return Err(ElfError::Unsupported(format!(
                    "a header table at {off:#x} straddles the end of the loaded content at {p:#x}"
                )));
            }
        }
        let dynstr_index = elf.shdrs.iter().position(|s| {
            s.in_file() && s.sh_offset == view.strtab.offset && s.sh_addr == view.strtab.vaddr
        });
        let dynamic_index = elf
            .shdrs
            .iter()
            .position(|s| s.sh_type == SHT_DYNAMIC && s.sh_offset == view.segment.p_offset);
        Ok(Ctx {
            elf,
            view,
            p,
            shift_align,
            dynstr_index,
            dynamic_index,
        })
    }

    /// Where a byte at input offset `off` (inside the file) lands when `delta` bytes are
    /// inserted at `p`.
    fn moved(&self, off: u64, delta: u64) -> u64 {
        if off >= self.p && off <= self.elf.data.len() as u64 {
            off.saturating_add(delta)
        } else {
            off
        }
    }

    /// The output's writes, to be made over `data[..p] + zeros(delta) + data[p..]`.
    fn assemble(&self, delta: u64) -> Result<Writes, ElfError> {
        let len = self.elf.data.len() as u64;
        let total = len.checked_add(delta).ok_or_else(|| internal("size"))?;
        usize::try_from(total).map_err(|_| internal("size"))?;
        Ok(Writes {
            at: self.p,
            inserted: delta,
            total,
            list: Vec::new(),
        })
    }

    /// Rewrites the section header table at its new place, with `edit` applied to each header.
    fn write_sections(
        &self,
        out: &mut Writes,
        delta: u64,
        edit: impl Fn(usize, &mut SectionHeader),
    ) -> Result<(), ElfError> {
        if self.elf.shdrs.is_empty() {
            return Ok(());
        }
        let base = self.moved(self.elf.header.e_shoff, delta);
        out.put_u64(40, base)?;
        for (i, s) in self.elf.shdrs.iter().enumerate() {
            let mut n = *s;
            if i > 0 && n.in_file() {
                n.sh_offset = self.moved(n.sh_offset, delta);
            }
            edit(i, &mut n);
            if n != *s {
                let at = base + i as u64 * SHDR_SIZE;
                out.put_u64(at + 16, n.sh_addr)?;
                out.put_u64(at + 24, n.sh_offset)?;
                out.put_u64(at + 32, n.sh_size)?;
            }
        }
        Ok(())
    }

    fn write_phdrs(
        &self,
        out: &mut Writes,
        phoff: u64,
        phdrs: &[ProgramHeader],
    ) -> Result<(), ElfError> {
        let phnum = u16::try_from(phdrs.len())
            .ok()
            .filter(|&n| n < 0xffff)
            .ok_or_else(|| ElfError::Unsupported("too many program headers".into()))?;
        out.put_u64(32, phoff)?;
        out.put_u16(56, phnum)?;
        for (i, ph) in phdrs.iter().enumerate() {
            out.put(phoff + i as u64 * PHDR_SIZE, &ph.encode())?;
        }
        Ok(())
    }

    fn write_vn_files(&self, out: &mut Writes, vn_files: &[(u64, u32)]) -> Result<(), ElfError> {
        for &(field, value) in vn_files {
            out.put_u32(field, value)?;
        }
        Ok(())
    }
}

/// Encodes `entries` + DT_NULL padding into `slots` 16-byte slots.
fn encode_dynamic(entries: &[DynEntry], slots: usize) -> Result<Vec<u8>, ElfError> {
    if entries.len() >= slots {
        return Err(internal("dynamic slots"));
    }
    let mut buf = vec![0u8; slots * DYN_SIZE as usize];
    for (i, e) in entries.iter().enumerate() {
        let at = i as u64 * DYN_SIZE;
        raw::put_u64(&mut buf, at, e.tag)?;
        raw::put_u64(&mut buf, at + 8, e.val)?;
    }
    Ok(buf)
}

fn set_tag(entries: &mut [DynEntry], tag: u64, val: u64) {
    for e in entries.iter_mut().filter(|e| e.tag == tag) {
        e.val = val;
    }
}

/// Lays out the edited dynamic section and returns the whole new file.
pub(crate) fn lay_out(elf: &Elf64, view: &DynView, edited: Edited) -> Result<Laid, ElfError> {
    let ctx = Ctx::new(elf, view)?;
    let grow_strings = !edited.tail.is_empty();
    let move_dynamic = edited.entries.len() + 1 > view.dynamic.slots;
    if !grow_strings && !move_dynamic {
        return in_place(&ctx, edited);
    }
    if grow_strings
        && !move_dynamic
        && let Some(li) = extendable_load(&ctx, &edited.entries)
    {
        return extend_last(&ctx, edited, li);
    }
    new_segment(&ctx, edited, grow_strings, move_dynamic)
}

fn in_place(ctx: &Ctx, edited: Edited) -> Result<Laid, ElfError> {
    let view = ctx.view;
    let mut out = ctx.assemble(0)?;
    out.put(view.strtab.offset, edited.table)?;
    let dynamic = encode_dynamic(&edited.entries, view.dynamic.slots)?;
    out.put(view.dynamic.offset, &dynamic)?;
    ctx.write_vn_files(&mut out, &edited.vn_files)?;
    Ok(Laid {
        writes: out,
        method: Method::InPlace,
        notes: Vec::new(),
    })
}

/// The PT_LOAD whose tail is `.dynstr`, when it is also the last thing loaded from the file and
/// the highest segment in memory (so it can grow). Bytes between the end of `.dynstr` and the
/// end of the segment (patchelf pads to 8) count as its tail when nothing uses them.
fn extendable_load(ctx: &Ctx, entries: &[DynEntry]) -> Option<usize> {
    let st = ctx.view.strtab;
    let str_end = st.offset.checked_add(st.size)?;
    if str_end > ctx.p {
        return None;
    }
    let top = ctx.elf.loads().filter_map(ProgramHeader::mem_end).max()?;
    let li = ctx.elf.phdrs.iter().position(|p| {
        p.p_type == PT_LOAD
            && p.file_offset_of(st.vaddr, st.size) == Some(st.offset)
            && p.file_end() == Some(ctx.p)
            && p.p_filesz == p.p_memsz
            && p.mem_end() == Some(top)
    })?;
    let gap = ctx.p - str_end;
    (gap == 0 || unused_bytes(ctx, entries, str_end, gap, li, false)).then_some(li)
}

fn extend_last(ctx: &Ctx, mut edited: Edited, li: usize) -> Result<Laid, ElfError> {
    let (elf, view) = (ctx.elf, ctx.view);
    let added = edited.tail.len() as u64;
    let str_end = view.strtab.offset + view.strtab.size;
    // The unused gap after `.dynstr` takes the first bytes; the rest is inserted at P.
    let grow = (str_end + added).saturating_sub(ctx.p);
    let delta = align_up(grow, ctx.shift_align).ok_or_else(|| internal("delta"))?;
    let new_size = view.strtab.size + added;
    set_tag(&mut edited.entries, DT_STRSZ, new_size);

    let mut out = ctx.assemble(delta)?;
    out.put(view.strtab.offset, edited.table)?;
    out.put(str_end, edited.tail)?;
    let dynamic = encode_dynamic(&edited.entries, view.dynamic.slots)?;
    out.put(view.dynamic.offset, &dynamic)?;
    ctx.write_vn_files(&mut out, &edited.vn_files)?;

    let mut phdrs = elf.phdrs.clone();
    if let Some(load) = phdrs.get_mut(li) {
        load.p_filesz += grow;
        load.p_memsz += grow;
    }
    ctx.write_phdrs(&mut out, ctx.moved(elf.header.e_phoff, delta), &phdrs)?;
    ctx.write_sections(&mut out, delta, |i, s| {
        if Some(i) == ctx.dynstr_index {
            s.sh_size = new_size;
        }
    })?;
    Ok(Laid {
        writes: out,
        method: Method::AppendedDynstr,
        notes: vec![format!(
            "appended {added} bytes to `.dynstr`, the tail of the last PT_LOAD (segment [{li}]){}",
            if grow < added {
                format!(", {} of them over unused padding after it", added - grow)
            } else {
                String::new()
            }
        )],
    })
}

/// True when the file bytes `[start, start+len)` are provably unused: the PT_LOAD `holder` maps
/// them, and no section, other segment (PT_PHDR excepted when `phdr_ok`), header table or
/// dynamic tag refers to them. Without section headers nothing can be proven.
fn unused_bytes(
    ctx: &Ctx,
    entries: &[DynEntry],
    start: u64,
    len: u64,
    holder: usize,
    phdr_ok: bool,
) -> bool {
    let elf = ctx.elf;
    if elf.shdrs.is_empty() {
        return false;
    }
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    let held = elf
        .phdrs
        .get(holder)
        .is_some_and(|p| p.p_offset <= start && p.file_end().is_some_and(|e| end <= e));
    if !held {
        return false;
    }
    if elf
        .shdrs
        .iter()
        .skip(1)
        .any(|s| s.in_file() && overlaps(s.sh_offset, s.sh_size, start, len))
    {
        return false;
    }
    let sh_table = u64::from(elf.header.e_shnum) * SHDR_SIZE;
    if overlaps(elf.header.e_shoff, sh_table, start, len) {
        return false;
    }
    let other_segment = elf.phdrs.iter().enumerate().any(|(i, p)| {
        i != holder
            && !(phdr_ok && p.p_type == PT_PHDR)
            && overlaps(p.p_offset, p.p_filesz, start, len)
    });
    if other_segment {
        return false;
    }
    let tag_inside = |tag: u64, size: u64| {
        entries
            .iter()
            .filter(|e| e.tag == tag)
            .filter_map(|e| elf.vaddr_to_offset(e.val, 0))
            .any(|off| overlaps(off, size.max(1), start, len))
    };
    if ADDRESS_TAGS.iter().any(|&(tag, _)| tag_inside(tag, 1)) {
        return false;
    }
    !SIZED_TABLES.iter().any(|&(addr_tag, size_tag, _)| {
        let size = entries
            .iter()
            .find(|e| e.tag == size_tag)
            .map_or(0, |e| e.val);
        tag_inside(addr_tag, size)
    })
}

fn is_executable(elf: &Elf64) -> bool {
    elf.header.e_type == ET_EXEC || elf.phdrs.iter().any(|p| p.p_type == PT_INTERP)
}

/// True when the program header table can take one more entry where it is: the next 56 bytes
/// are mapped by the PT_LOAD holding the table and nothing else uses them (patchelf'd files
/// often have the old `.dynstr` area there).
fn can_grow_table(ctx: &Ctx, entries: &[DynEntry]) -> bool {
    let elf = ctx.elf;
    let table = elf.header.e_phoff;
    let start = table + u64::from(elf.header.e_phnum) * PHDR_SIZE;
    let holder = elf.phdrs.iter().position(|p| {
        p.p_type == PT_LOAD && p.p_offset <= table && p.file_end().is_some_and(|e| start <= e)
    });
    holder.is_some_and(|h| unused_bytes(ctx, entries, start, PHDR_SIZE, h, true))
}

fn choose_slot(ctx: &Ctx, entries: &[DynEntry]) -> Result<PhdrSlot, ElfError> {
    if let Some(i) = ctx.elf.phdrs.iter().position(|p| p.p_type == PT_NULL) {
        return Ok(PhdrSlot::Null(i));
    }
    if can_grow_table(ctx, entries) {
        return Ok(PhdrSlot::Grow);
    }
    if !is_executable(ctx.elf) {
        return Ok(PhdrSlot::Move);
    }
    match slide::find_span(ctx.elf, ctx.view, entries, ctx.dynstr_index, PHDR_SIZE) {
        Ok(span) => Ok(PhdrSlot::Slide(span)),
        Err(why) => Err(ElfError::Unsupported(format!(
            "the program header table of this executable has no room for another entry (an \
             executable's table never moves) and the sections after it cannot move: {why}"
        ))),
    }
}

/// Where each part of the new PT_LOAD goes:
/// `[program header table | sections moved out of its way][.dynamic][.dynstr]`.
struct Plan {
    slot: PhdrSlot,
    /// The new PT_LOAD itself.
    load: ProgramHeader,
    /// Entries of the new program header table.
    phnum: usize,
    /// File offset of the moved table (`Move`) or of the moved block (`Slide`).
    head_off: u64,
    dyn_off: Option<u64>,
    dyn_slots: usize,
    str_off: Option<u64>,
    str_size: u64,
    /// Bytes inserted at `P`.
    delta: u64,
}

impl Plan {
    fn addr(&self, off: u64) -> u64 {
        self.load.p_vaddr + (off - self.load.p_offset)
    }

    /// The block moved out of an executable's way, with its file and address shifts.
    fn slide(&self) -> Option<(&Span, u64, u64)> {
        match &self.slot {
            PhdrSlot::Slide(span) => Some((
                span,
                self.head_off - span.start,
                self.addr(self.head_off) - span.vaddr,
            )),
            _ => None,
        }
    }
}

fn plan_segment(
    ctx: &Ctx,
    slot: PhdrSlot,
    edited: &Edited,
    grow_strings: bool,
    move_dynamic: bool,
) -> Result<Plan, ElfError> {
    let elf = ctx.elf;
    let mut align = 0x1000;
    let mut top = 0u64;
    for p in elf.loads() {
        align = align.max(p.p_align);
        top = top.max(p.mem_end().ok_or_else(|| internal("segment end"))?);
    }
    let phnum = match slot {
        PhdrSlot::Null(_) => elf.phdrs.len(),
        PhdrSlot::Grow | PhdrSlot::Move | PhdrSlot::Slide(_) => elf.phdrs.len() + 1,
    };
    let seg_off = align_up(ctx.p, 16).ok_or_else(|| internal("offset"))?;
    let mut head_off = seg_off;
    let mut cursor = seg_off;
    match &slot {
        PhdrSlot::Move => cursor += phnum as u64 * PHDR_SIZE,
        PhdrSlot::Slide(span) => {
            // Same offset modulo the block's alignment, so every moved section stays aligned.
            let base = align_up(cursor, span.align).ok_or_else(|| internal("offset"))?;
            head_off = base + span.start % span.align;
            cursor = head_off + (span.end - span.start);
        }
        PhdrSlot::Null(_) | PhdrSlot::Grow => {}
    }
    let dyn_slots = edited.entries.len() + 1 + SPARE_DYN_SLOTS;
    let mut dyn_off = None;
    if move_dynamic {
        let at = align_up(cursor, 8).ok_or_else(|| internal("offset"))?;
        dyn_off = Some(at);
        cursor = at + dyn_slots as u64 * DYN_SIZE;
    }
    let str_size = ctx.view.strtab.size + edited.tail.len() as u64;
    let mut str_off = None;
    if grow_strings {
        str_off = Some(cursor);
        cursor += str_size;
    }
    let size = cursor - seg_off;
    let vaddr = align_up(top, align)
        .and_then(|v| v.checked_add(seg_off % align))
        .filter(|v| v.checked_add(size).is_some())
        .ok_or_else(|| internal("address"))?;
    let delta = align_up(cursor - ctx.p, ctx.shift_align).ok_or_else(|| internal("delta"))?;
    Ok(Plan {
        slot,
        load: ProgramHeader {
            p_type: PT_LOAD,
            p_flags: if move_dynamic { PF_R | PF_W } else { PF_R },
            p_offset: seg_off,
            p_vaddr: vaddr,
            p_paddr: vaddr,
            p_filesz: size,
            p_memsz: size,
            p_align: align,
        },
        phnum,
        head_off,
        dyn_off,
        dyn_slots,
        str_off,
        str_size,
        delta,
    })
}

/// The new program header table: the new PT_LOAD after the last one, and PT_PHDR, PT_DYNAMIC
/// and the segments of a moved block pointing at their new places.
fn program_headers(ctx: &Ctx, plan: &Plan) -> Vec<ProgramHeader> {
    let mut phdrs = ctx.elf.phdrs.clone();
    if let Some((span, file_shift, addr_shift)) = plan.slide() {
        for &i in &span.segments {
            if let Some(p) = phdrs.get_mut(i) {
                p.p_offset += file_shift;
                p.p_vaddr += addr_shift;
                p.p_paddr = p.p_paddr.wrapping_add(addr_shift);
            }
        }
    }
    if let PhdrSlot::Null(i) = plan.slot {
        phdrs.remove(i);
    }
    let after_last_load = phdrs
        .iter()
        .rposition(|p| p.p_type == PT_LOAD)
        .map_or(0, |i| i + 1);
    phdrs.insert(after_last_load, plan.load);
    let table_len = plan.phnum as u64 * PHDR_SIZE;
    for p in phdrs.iter_mut() {
        if p.p_type == PT_PHDR {
            if plan.slot == PhdrSlot::Move {
                p.p_offset = plan.head_off;
                p.p_vaddr = plan.addr(plan.head_off);
                p.p_paddr = p.p_vaddr;
            }
            p.p_filesz = table_len;
            p.p_memsz = table_len;
        }
        if p.p_type == crate::elf::consts::PT_DYNAMIC
            && let Some(off) = plan.dyn_off
        {
            p.p_offset = off;
            p.p_vaddr = plan.addr(off);
            p.p_paddr = p.p_vaddr;
            p.p_filesz = plan.dyn_slots as u64 * DYN_SIZE;
            p.p_memsz = p.p_filesz;
        }
    }
    phdrs
}

fn new_segment(
    ctx: &Ctx,
    mut edited: Edited,
    grow_strings: bool,
    move_dynamic: bool,
) -> Result<Laid, ElfError> {
    let elf = ctx.elf;
    let slot = choose_slot(ctx, &edited.entries)?;
    let plan = plan_segment(ctx, slot, &edited, grow_strings, move_dynamic)?;
    let mut notes = Vec::new();

    if let Some(off) = plan.str_off {
        set_tag(&mut edited.entries, DT_STRTAB, plan.addr(off));
        set_tag(&mut edited.entries, DT_STRSZ, plan.str_size);
    }
    if let Some((span, _, addr_shift)) = plan.slide() {
        for &t in &span.tags {
            if let Some(e) = edited.entries.get_mut(t) {
                e.val += addr_shift;
            }
        }
    }

    let mut out = ctx.assemble(plan.delta)?;
    write_tables(ctx, &plan, &edited, &mut out, &mut notes)?;
    place_program_headers(ctx, &plan, &mut out, &mut notes)?;

    let moves = section_moves(ctx, &plan);
    ctx.write_sections(&mut out, plan.delta, |i, s| {
        if let Some(&(_, _, size, addr, off)) = moves.iter().find(|m| m.0 == i) {
            s.sh_offset = off;
            s.sh_addr = addr;
            s.sh_size = size;
        }
    })?;
    let rebased = rebase_symbols(ctx, &mut out, plan.delta, &moves)?;
    if rebased > 0 {
        notes.push(format!(
            "moved {rebased} symbol(s) defined in the moved sections (section symbols, `_DYNAMIC`)"
        ));
    }
    let moved_sections = plan
        .slide()
        .map(|(span, _, _)| span.names(elf))
        .unwrap_or_default();
    Ok(Laid {
        writes: out,
        method: Method::NewSegment {
            dynstr: grow_strings,
            dynamic: move_dynamic,
            program_headers: plan.slot == PhdrSlot::Move,
            moved_sections,
        },
        notes,
    })
}

/// Writes the moved sections, `.dynstr` and `.dynamic` (moved or in place) and the
/// `vn_file` fields into `out`, noting each move.
fn write_tables(
    ctx: &Ctx,
    plan: &Plan,
    edited: &Edited,
    out: &mut Writes,
    notes: &mut Vec<String>,
) -> Result<(), ElfError> {
    let (elf, view) = (ctx.elf, ctx.view);
    if let Some((span, _, _)) = plan.slide() {
        let block = raw::bytes(
            elf.data,
            span.start,
            span.end - span.start,
            "the moved sections",
        )?;
        out.put(plan.head_off, block)?;
        // The old place becomes the table's room; what the table does not cover is zeroed.
        out.put(span.start, &vec![0u8; block.len()])?;
        notes.push(format!(
            "moved {} ({:#x} bytes after the program header table) into the new PT_LOAD at {:#x} \
             to make room for one more program header",
            span.names(elf)
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            block.len(),
            plan.addr(plan.head_off)
        ));
    }
    match plan.str_off {
        Some(off) => {
            out.put(off, edited.table)?;
            out.put(off + view.strtab.size, edited.tail)?;
            notes.push(format!(
                "moved `.dynstr` ({:#x} bytes, {} of them new) into a new PT_LOAD at {:#x} \
                 (file offset {off:#x}); the old copy is left unreferenced",
                plan.str_size,
                edited.tail.len(),
                plan.addr(off)
            ));
        }
        None => out.put(view.strtab.offset, edited.table)?,
    }
    match plan.dyn_off {
        Some(off) => {
            out.put(off, &encode_dynamic(&edited.entries, plan.dyn_slots)?)?;
            notes.push(format!(
                "moved `.dynamic` ({} entries, no DT_NULL slack left) into a new writable \
                 PT_LOAD at {:#x} (file offset {off:#x}) with {SPARE_DYN_SLOTS} spare slots",
                edited.entries.len(),
                plan.addr(off)
            ));
        }
        None => {
            let dynamic = encode_dynamic(&edited.entries, view.dynamic.slots)?;
            out.put(view.dynamic.offset, &dynamic)?;
        }
    }
    ctx.write_vn_files(out, &edited.vn_files)?;

    Ok(())
}

/// Writes the program headers where the plan puts the table, noting where that is.
fn place_program_headers(
    ctx: &Ctx,
    plan: &Plan,
    out: &mut Writes,
    notes: &mut Vec<String>,
) -> Result<(), ElfError> {
    let elf = ctx.elf;
    let phoff = match plan.slot {
        PhdrSlot::Move => {
            notes.push(format!(
                "moved the program header table ({} entries) to the start of the new PT_LOAD \
                 (file offset {:#x}): it had no room to grow in place",
                plan.phnum, plan.head_off
            ));
            plan.head_off
        }
        PhdrSlot::Grow => {
            notes.push("grew the program header table in place over unused bytes".into());
            ctx.moved(elf.header.e_phoff, plan.delta)
        }
        PhdrSlot::Null(_) => {
            notes.push("the new PT_LOAD took the place of a PT_NULL program header".into());
            ctx.moved(elf.header.e_phoff, plan.delta)
        }
        PhdrSlot::Slide(_) => ctx.moved(elf.header.e_phoff, plan.delta),
    };
    ctx.write_phdrs(out, phoff, &program_headers(ctx, plan))?;

    Ok(())
}

/// The sections that move: (index, old address, size, new address, new offset).
fn section_moves(ctx: &Ctx, plan: &Plan) -> Vec<(usize, u64, u64, u64, u64)> {
    let (elf, view) = (ctx.elf, ctx.view);
    let mut moves = Vec::new();
    if let (Some(off), Some(i)) = (plan.str_off, ctx.dynstr_index) {
        moves.push((i, view.strtab.vaddr, plan.str_size, plan.addr(off), off));
    }
    if let (Some(off), Some(i)) = (plan.dyn_off, ctx.dynamic_index) {
        let size = plan.dyn_slots as u64 * DYN_SIZE;
        moves.push((i, view.segment.p_vaddr, size, plan.addr(off), off));
    }
    if let Some((span, file_shift, addr_shift)) = plan.slide() {
        for &i in &span.sections {
            if let Some(s) = elf.shdrs.get(i) {
                moves.push((
                    i,
                    s.sh_addr,
                    s.sh_size,
                    s.sh_addr + addr_shift,
                    s.sh_offset + file_shift,
                ));
            }
        }
    }
    moves
}

/// Moves the value of every symbol defined in a moved section (its STT_SECTION symbol,
/// `_DYNAMIC`) along with it. `moves` holds (section index, old address, size, new address,
/// new offset); a symbol moves when it lies in `[old address, old address + size]`. Returns how
/// many symbols changed.
fn rebase_symbols(
    ctx: &Ctx,
    out: &mut Writes,
    delta: u64,
    moves: &[(usize, u64, u64, u64, u64)],
) -> Result<usize, ElfError> {
    let mut moved = 0;
    for s in ctx
        .elf
        .shdrs
        .iter()
        .filter(|s| matches!(s.sh_type, SHT_SYMTAB | SHT_DYNSYM))
    {
        if s.sh_entsize != SYM_SIZE {
            continue;
        }
        let syms = raw::bytes(ctx.elf.data, s.sh_offset, s.sh_size, "a symbol table")?;
        let base = ctx.moved(s.sh_offset, delta);
        for i in 0..(syms.len() as u64 / SYM_SIZE) {
            let at = i * SYM_SIZE;
            let shndx = usize::from(raw::u16_at(syms, at + 6)?);
            let value = raw::u64_at(syms, at + 8)?;
            let target = moves.iter().find(|&&(index, old, size, _, _)| {
                index == shndx && value >= old && value - old <= size
            });
            if let Some(&(_, old, _, new, _)) = target {
                out.put_u64(base + at + 8, new + (value - old))?;
                moved += 1;
            }
        }
    }
    Ok(moved)
}
