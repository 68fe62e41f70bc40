//! Cutting freed whole granules out of the file without changing any virtual address.
//!
//! Each packed region may free `[align_up(new_end, A), align_down(old_end, A))`, A being the
//! largest PT_LOAD `p_align`. That range leaves the file: the PT_LOAD holding it is split into
//! a head (same offset and address) and a tail (same address, offset − Δ), and everything later
//! in the file moves down by Δ, a multiple of A, so every `p_offset ≡ p_vaddr (mod p_align)`
//! still holds. The program header table grows by one entry per split and is placed, in order
//! of preference: in place when the bytes after it are provably unused; in the dead (zeroed,
//! still mapped) bytes beside a hole, head side first; in a granule given up for it; at the end
//! of the file when there is no PT_PHDR.

use super::flags::{Extent, Writers, extents, piece_flags};
use super::holes::{Hole, OffsetMap};
use super::layout::{
    Layout, Segment, align_up, bytes_at, overlaps, put_bytes, put_u16, put_u64, zero_range,
};
use super::pack::Packing;
use super::phdrs::{TableSpot, loaders_find_table, mapped_file_range, region_name, spots};
use super::refs::{RefEdits, Tables};
use super::{Refuse, SectionEdit};
use crate::elf::consts::{EHDR_SIZE, PHDR_SIZE, PT_PHDR, SHDR_SIZE};

/// The complete plan of a cut.
#[derive(Debug, Clone)]
pub(crate) struct CutPlan {
    pub holes: Vec<Hole>,
    pub map: OffsetMap,
    pub segments: Vec<Segment>,
    pub table: TableSpot,
    pub out_len: u64,
}

fn candidate_holes(l: &Layout, p: &Packing, granule: u64) -> Vec<Hole> {
    let mut out = Vec::new();
    for (ri, r) in p.regions.iter().enumerate() {
        let Some(vstart) = align_up(r.new_end, granule) else {
            continue;
        };
        let vend = super::layout::align_down(r.old_end, granule);
        if vstart >= vend {
            continue;
        }
        let seg = &l.segments[r.load];
        out.push(Hole {
            region: ri,
            load: r.load,
            vstart,
            vend,
            off_start: seg.offset + (vstart - seg.vaddr),
            off_end: seg.offset + (vend - seg.vaddr),
        });
    }
    out
}

/// Input sanity the cut relies on: LOADs sorted by address and disjoint in memory and file.
fn check_loads(l: &Layout) -> Result<(), Refuse> {
    let loads: Vec<&Segment> = l.segments.iter().filter(|s| s.is_load()).collect();
    for w in loads.windows(2) {
        if w[1].vaddr < w[0].mem_end() {
            return Err(Refuse::Cut(format!(
                "the PT_LOADs at {:#x} and {:#x} are not sorted or overlap in memory",
                w[0].vaddr, w[1].vaddr
            )));
        }
        if overlaps(w[0].offset, w[0].filesz, w[1].offset, w[1].filesz) {
            return Err(Refuse::Cut(format!(
                "the PT_LOADs at {:#x} and {:#x} overlap in the file",
                w[0].vaddr, w[1].vaddr
            )));
        }
    }
    Ok(())
}

/// Nothing but the region's own dead bytes may lie in a hole.
fn check_holes(l: &Layout, p: &Packing, holes: &[Hole]) -> Result<(), Refuse> {
    for h in holes {
        let r = &p.regions[h.region];
        let mine = |j: usize| r.devs.iter().any(|&di| p.devs[di].shndx == j);
        for (j, s) in l.sections.iter().enumerate().skip(1) {
            if mine(j) {
                continue;
            }
            let inside = h.off_start < s.offset && s.offset < h.off_end;
            if (s.in_file() && overlaps(s.offset, s.size, h.off_start, h.len())) || inside {
                return Err(Refuse::Cut(format!(
                    "section `{}` lies in the bytes that would be cut ({:#x}..{:#x})",
                    s.name, h.off_start, h.off_end
                )));
            }
            if s.is_alloc()
                && !s.in_file()
                && s.flags & 0x400 == 0
                && overlaps(s.addr, s.size, h.vstart, h.vend - h.vstart)
            {
                return Err(Refuse::Cut(format!(
                    "NOBITS section `{}` overlaps the addresses that would be cut",
                    s.name
                )));
            }
        }
        for (i, s) in l.segments.iter().enumerate() {
            if s.is_load() && i != h.load && overlaps(s.offset, s.filesz, h.off_start, h.len()) {
                return Err(Refuse::Cut(format!(
                    "another PT_LOAD (at {:#x}) maps the bytes that would be cut",
                    s.vaddr
                )));
            }
        }
        let tables = [
            (0, EHDR_SIZE, "the ELF header"),
            (l.phoff, l.phdr_table_len(), "the program header table"),
            (
                l.shoff,
                l.sections.len() as u64 * SHDR_SIZE,
                "the section header table",
            ),
        ];
        for (off, len, what) in tables {
            if overlaps(off, len, h.off_start, h.len()) {
                return Err(Refuse::Cut(format!(
                    "{what} lies in the bytes that would be cut"
                )));
            }
        }
    }
    Ok(())
}

/// The output program headers (PT_PHDR still describing the old table). The pieces of a
/// split PT_LOAD carry the flags of what they hold (`flags`).
fn build_segments(
    l: &Layout,
    holes: &[Hole],
    map: &OffsetMap,
    secs: &[Extent],
    writers: &Writers,
) -> Result<Vec<Segment>, Refuse> {
    let mut out = Vec::with_capacity(l.segments.len() + holes.len());
    let moved = |off: u64, what: &str| {
        map.map(off)
            .ok_or_else(|| Refuse::Cut(format!("{what} starts inside the bytes that would be cut")))
    };
    for (i, seg) in l.segments.iter().enumerate() {
        if seg.is_load() {
            let mut mine: Vec<&Hole> = holes.iter().filter(|h| h.load == i).collect();
            mine.sort_by_key(|h| h.off_start);
            let split = !mine.is_empty();
            let mut push = |mut piece: Segment| {
                if split {
                    piece.flags = piece_flags(seg, &piece, secs, writers);
                }
                out.push(piece);
            };
            let (mut cur_off, mut cur_v) = (seg.offset, seg.vaddr);
            for h in mine {
                let head = Segment {
                    offset: moved(cur_off, "a PT_LOAD")?,
                    vaddr: cur_v,
                    paddr: seg.paddr.wrapping_add(cur_v - seg.vaddr),
                    filesz: h.off_start - cur_off,
                    memsz: h.vstart - cur_v,
                    ..*seg
                };
                if head.filesz > 0 || head.memsz > 0 {
                    push(head);
                }
                cur_off = h.off_end;
                cur_v = h.vend;
            }
            let tail = Segment {
                offset: moved(cur_off, "a PT_LOAD")?,
                vaddr: cur_v,
                paddr: seg.paddr.wrapping_add(cur_v - seg.vaddr),
                filesz: seg.file_end() - cur_off,
                memsz: seg.mem_end() - cur_v,
                ..*seg
            };
            if tail.filesz > 0 || tail.memsz > 0 || cur_off == seg.offset {
                push(tail);
            }
        } else if seg.p_type == PT_PHDR {
            out.push(*seg);
        } else {
            for h in holes {
                if overlaps(seg.offset, seg.filesz, h.off_start, h.len())
                    || overlaps(seg.vaddr, seg.memsz, h.vstart, h.vend - h.vstart)
                {
                    return Err(Refuse::Cut(format!(
                        "program header {i} (type {:#x}) spans the bytes that would be cut",
                        seg.p_type
                    )));
                }
            }
            out.push(Segment {
                offset: moved(seg.offset, "a program header")?,
                ..*seg
            });
        }
    }
    if out.len() >= 0xffff {
        return Err(Refuse::Cut(
            "the program header table would need 65535 or more entries".into(),
        ));
    }
    Ok(out)
}

/// Plans the cut, or refuses with the reason when no granule can leave the file safely.
pub(crate) fn plan(d: &[u8], l: &Layout, t: &Tables, p: &Packing) -> Result<CutPlan, Refuse> {
    let granule = l.max_load_align();
    let mut holes = candidate_holes(l, p, granule);
    refuse_uncuttable(l, p, &holes, granule)?;
    let secs = extents(l, Some(p));
    let others: Vec<Segment> = l
        .segments
        .iter()
        .filter(|s| !s.is_load())
        .copied()
        .collect();
    let reloc_places: Vec<u64> = t.relocs.iter().map(|r| r.r_offset).collect();
    let writers = Writers {
        others: &others,
        reloc_places: &reloc_places,
    };
    let mut given_up = 0u64;
    loop {
        let map = OffsetMap::new(&holes);
        let mut segments = build_segments(l, &holes, &map, &secs, &writers)?;
        let size = segments.len() as u64 * PHDR_SIZE;
        let base_len = l.file_len - map.removed();
        let mut spot = spots(d, l, t, p, &holes, &map, size)
            .into_iter()
            .find(|s| loaders_find_table(&segments, s.out_off, size, s.vaddr).is_ok());
        let mut out_len = base_len;
        if spot.is_none() {
            if let Some(h) = holes.iter_mut().find(|h| h.len() >= 2 * granule) {
                h.vstart += granule;
                h.off_start += granule;
                given_up += 1;
                continue;
            }
            if holes.len() >= 2 {
                if let Some(i) = (0..holes.len()).min_by_key(|&i| holes[i].len()) {
                    given_up += holes[i].len() / granule;
                    holes.remove(i);
                }
                continue;
            }
            let (at_end, len) = table_at_end(l, &segments, &map, size, granule)?;
            out_len = len;
            spot = Some(at_end);
        }
        let Some(mut spot) = spot else {
            return Err(Refuse::Cut("no place for the program header table".into()));
        };
        if given_up > 0 {
            spot.how.push_str(&format!(
                " after giving up {given_up} granule(s) of {granule:#x} bytes for it"
            ));
        }
        for s in segments.iter_mut().filter(|s| s.p_type == PT_PHDR) {
            let v = spot
                .vaddr
                .ok_or_else(|| Refuse::Cut("PT_PHDR needs a mapped table".into()))?;
            s.offset = spot.out_off;
            s.vaddr = v;
            s.paddr = v;
            s.filesz = size;
            s.memsz = size;
        }
        return Ok(CutPlan {
            holes,
            map,
            segments,
            table: spot,
            out_len,
        });
    }
}

/// Refuses a cut that cannot be planned at all: nothing edited, no whole granule freed, an
/// unusual PT_LOAD layout, an extended program header count, or holes that are not safe.
fn refuse_uncuttable(l: &Layout, p: &Packing, holes: &[Hole], granule: u64) -> Result<(), Refuse> {
    if p.regions.is_empty() {
        return Err(Refuse::Cut("no device section was edited".into()));
    }
    if holes.is_empty() {
        let ends: Vec<String> = p
            .regions
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                format!(
                    "{} ends at {:#x} packed, {:#x} before",
                    region_name(p, ri),
                    r.new_end,
                    r.old_end
                )
            })
            .collect();
        return Err(Refuse::Cut(format!(
            "packing frees no whole {granule:#x}-byte granule ({})",
            ends.join("; ")
        )));
    }
    check_loads(l)?;
    if l.phnum_field == 0xffff {
        return Err(Refuse::Cut(
            "the program header count is extended (PN_XNUM)".into(),
        ));
    }
    check_holes(l, p, holes)?;
    Ok(())
}

/// The last place for the program header table: after the end of the cut file (and past
/// every PT_LOAD's page-rounded file image), unmapped. The spot and the output's length; a
/// refusal when loaders would not find it there or the file would not get shorter.
fn table_at_end(
    l: &Layout,
    segments: &[Segment],
    map: &OffsetMap,
    size: u64,
    granule: u64,
) -> Result<(TableSpot, u64), Refuse> {
    let base_len = l.file_len - map.removed();
    let mut at = align_up(base_len, 8).unwrap_or(base_len);
    // Past any PT_LOAD's page-rounded file image, so no loader mistakes it for mapped.
    for s in segments.iter().filter(|s| s.is_load()) {
        let (_, end) = mapped_file_range(s, granule);
        if end > at && s.offset <= at {
            at = align_up(end, 8).unwrap_or(end);
        }
    }
    if let Err(why) = loaders_find_table(segments, at, size, None) {
        return Err(Refuse::Cut(format!(
            "there is no room for a program header table of {} entries: no unused bytes follow it, \
             the dead bytes beside the hole are too few or unsuitable, giving up the only \
             {granule:#x}-byte granule would leave nothing to cut, and the end of the file is \
             not an option ({why})",
            segments.len()
        )));
    }
    let out_len = at + size;
    if out_len >= l.file_len {
        return Err(Refuse::Cut(format!(
            "the program header table only fits at the end of the file, which would leave it \
             no shorter ({:#x} cut, table at {at:#x})",
            map.removed()
        )));
    }
    let spot = TableSpot {
        out_off: at,
        in_range: None,
        vaddr: None,
        how: format!("moved to the end of the file at {at:#x} (not mapped; there is no PT_PHDR)"),
    };
    Ok((spot, out_len))
}

/// Writes the output: the input minus the holes, with the regions packed, every patch, the
/// section headers, the program header table and the ELF header updated.
pub(crate) fn assemble(
    d: &[u8],
    l: &Layout,
    p: &Packing,
    edits: &[SectionEdit],
    ed: &RefEdits,
    c: &CutPlan,
) -> Result<Vec<u8>, Refuse> {
    let to_out = |off: u64| {
        c.map
            .map(off)
            .ok_or_else(|| Refuse::Cut(format!("file offset {off:#x} falls inside a cut")))
    };
    let cap = usize::try_from(c.out_len).map_err(|_| Refuse::Cut("output too large".into()))?;
    let mut out = Vec::with_capacity(cap);
    let mut at = 0u64;
    for &(s, e) in c.map.cuts() {
        out.extend_from_slice(bytes_at(d, at, s - at, "the input")?);
        at = e;
    }
    out.extend_from_slice(bytes_at(d, at, l.file_len - at, "the input")?);

    for (ri, r) in p.regions.iter().enumerate() {
        match c.holes.iter().find(|h| h.region == ri) {
            Some(h) => {
                zero_range(&mut out, to_out(r.start_off)?, h.off_start - r.start_off)?;
                zero_range(&mut out, to_out(h.off_end)?, r.off(r.old_end) - h.off_end)?;
            }
            None => zero_range(&mut out, to_out(r.start_off)?, r.old_end - r.start)?,
        }
    }
    for pl in &p.placed {
        let r = p
            .regions
            .iter()
            .find(|r| r.devs.contains(&pl.dev))
            .ok_or_else(|| Refuse::Cut("a container lost its region".into()))?;
        let bytes = &edits[pl.edit].blocks[pl.block].new_bytes;
        put_bytes(&mut out, to_out(r.off(pl.new_addr))?, bytes)?;
    }
    for (&off, &v) in &ed.patches {
        put_u64(&mut out, to_out(off)?, v)?;
    }
    if l.shoff != 0 {
        let sh = to_out(l.shoff)?;
        for (j, s) in l.sections.iter().enumerate().skip(1) {
            if p.devs.iter().any(|d| d.shndx == j) {
                continue; // set below: a packed section may start inside the old hole
            }
            put_u64(&mut out, sh + j as u64 * SHDR_SIZE + 24, to_out(s.offset)?)?;
        }
        for (di, dev) in p.devs.iter().enumerate() {
            let (addr, size) = p.new_sections[di];
            let r = p
                .regions
                .iter()
                .find(|r| r.devs.contains(&di))
                .ok_or_else(|| Refuse::Cut("a section lost its region".into()))?;
            let at = sh + dev.shndx as u64 * SHDR_SIZE;
            put_u64(&mut out, at + 16, addr)?;
            put_u64(&mut out, at + 24, to_out(r.off(addr))?)?;
            put_u64(&mut out, at + 32, size)?;
        }
        put_u64(&mut out, 40, sh)?;
    }
    let mut table = Vec::with_capacity(c.segments.len() * PHDR_SIZE as usize);
    for s in &c.segments {
        table.extend_from_slice(&s.encode());
    }
    if c.table.in_range.is_none() {
        let at =
            usize::try_from(c.table.out_off).map_err(|_| Refuse::Cut("output too large".into()))?;
        out.resize(at, 0);
        out.extend_from_slice(&table);
    } else {
        put_bytes(&mut out, c.table.out_off, &table)?;
    }
    put_u64(&mut out, 32, c.table.out_off)?;
    let phnum = u16::try_from(c.segments.len())
        .map_err(|_| Refuse::Cut("too many program headers".into()))?;
    put_u16(&mut out, 56, phnum)?;
    if out.len() as u64 != c.out_len {
        return Err(Refuse::Cut(format!(
            "the output is {:#x} bytes, expected {:#x}",
            out.len(),
            c.out_len
        )));
    }
    Ok(out)
}
