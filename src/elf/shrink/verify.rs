//! The shrinker's own check of what it wrote, run before any output is returned. It re-reads
//! the output from its bytes and compares it with the input:
//!
//! * the memory image (every PT_LOAD's bytes at their addresses, `.bss` as zeros) is identical
//!   outside the packed regions, the patched words and the headers, and the cut addresses are
//!   no longer mapped, with the same permissions everywhere;
//! * PT_LOADs are sorted and disjoint, `p_offset ≡ p_vaddr (mod p_align)`, every allocated
//!   section lies inside a segment that maps it at its address, the program header table is
//!   where `e_phoff` and PT_PHDR say;
//! * relocations keep their count, order, places, types and symbols; re-pointed ones reach
//!   the container's new address and the others are unchanged;
//! * every placed container holds exactly its new bytes, everything else in a region is zero,
//!   and every wrapper or symbol that points into a device section points at a container start;
//! * the file is shorter by exactly the cut bytes.

use super::SectionEdit;
use super::cut::CutPlan;
use super::flags::{Writers, check_dropped, extents};
use super::layout::{Layout, Segment, bytes_at, u64_at};
use super::pack::{Class, Packing};
use super::refs::{RefEdits, Tables, WRAPPER_SECTIONS, WRAPPER_SIZE, relative_target};
use super::tables::{self, RelKind};
use crate::elf::consts::{EHDR_SIZE, PT_PHDR};

type Check = Result<(), String>;

/// A run of memory: file bytes or the zeros after `p_filesz`.
enum Mem<'a> {
    File(&'a [u8]),
    Zero(u64),
}

/// Up to `len` bytes of memory at `v` from one PT_LOAD, or None when `v` is not mapped.
fn mem_at<'a>(d: &'a [u8], l: &Layout, v: u64, len: u64) -> Option<Mem<'a>> {
    let s = l
        .segments
        .iter()
        .find(|s| s.is_load() && s.vaddr <= v && v < s.mem_end())?;
    if v < s.vaddr_file_end() {
        let n = len.min(s.vaddr_file_end() - v);
        bytes_at(d, s.offset + (v - s.vaddr), n, "memory")
            .ok()
            .map(Mem::File)
    } else {
        Some(Mem::Zero(len.min(s.mem_end() - v)))
    }
}

fn mem_len(m: &Mem) -> u64 {
    match m {
        Mem::File(b) => b.len() as u64,
        Mem::Zero(n) => *n,
    }
}

/// Compares the memory images of two files over `[a, b)`.
fn same_memory(ind: &[u8], inl: &Layout, outd: &[u8], outl: &Layout, a: u64, b: u64) -> Check {
    let mut x = a;
    while x < b {
        let want = b - x;
        let i = mem_at(ind, inl, x, want)
            .ok_or_else(|| format!("input address {x:#x} is not mapped"))?;
        let o = mem_at(outd, outl, x, want)
            .ok_or_else(|| format!("address {x:#x} is no longer mapped"))?;
        let n = mem_len(&i).min(mem_len(&o));
        if n == 0 {
            return Err(format!("empty mapping at {x:#x}"));
        }
        let k = n as usize;
        let equal = match (&i, &o) {
            (Mem::File(p), Mem::File(q)) => p.get(..k) == q.get(..k),
            (Mem::File(p), Mem::Zero(_)) => p.get(..k).is_some_and(|b| b.iter().all(|&c| c == 0)),
            (Mem::Zero(_), Mem::File(q)) => q.get(..k).is_some_and(|b| b.iter().all(|&c| c == 0)),
            (Mem::Zero(_), Mem::Zero(_)) => true,
        };
        if !equal {
            return Err(format!(
                "the memory image differs in {x:#x}..{:#x} (outside the device sections and patched words)",
                x + n
            ));
        }
        x += n;
    }
    Ok(())
}

/// Reads `len` bytes of the output's memory at `v` (they must be file-backed).
fn out_bytes<'a>(d: &'a [u8], l: &Layout, v: u64, len: u64) -> Result<&'a [u8], String> {
    let off = l
        .vaddr_to_offset(v, len)
        .ok_or_else(|| format!("{len:#x} bytes at {v:#x} are not mapped from the output file"))?;
    bytes_at(d, off, len, "output memory").map_err(|e| e.to_string())
}

/// Sorts and merges ranges.
fn normalise(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|r| r.1 > r.0);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
    }
    out
}

fn check_loads(l: &Layout) -> Check {
    let loads: Vec<&Segment> = l.segments.iter().filter(|s| s.is_load()).collect();
    for s in &loads {
        if s.align > 1 && s.offset % s.align != s.vaddr % s.align {
            return Err(format!(
                "PT_LOAD at {:#x}: p_offset {:#x} is not congruent to p_vaddr modulo {:#x}",
                s.vaddr, s.offset, s.align
            ));
        }
    }
    for w in loads.windows(2) {
        if w[1].vaddr < w[0].mem_end() {
            return Err(format!(
                "PT_LOADs at {:#x} and {:#x} are unsorted or overlap",
                w[0].vaddr, w[1].vaddr
            ));
        }
        if w[1].offset < w[0].file_end() {
            return Err(format!(
                "PT_LOADs at {:#x} and {:#x} overlap in the file",
                w[0].vaddr, w[1].vaddr
            ));
        }
    }
    Ok(())
}

/// Every allocated section lies inside a PT_LOAD that maps it at its address.
pub(crate) fn check_sections_mapped(l: &Layout) -> Check {
    for s in l.sections.iter().skip(1) {
        if !s.is_alloc() || s.size == 0 {
            continue;
        }
        let ok = if s.in_file() {
            l.segments.iter().any(|g| {
                g.is_load()
                    && g.offset <= s.offset
                    && s.file_end() <= g.file_end()
                    && g.vaddr.checked_add(s.offset - g.offset) == Some(s.addr)
            })
        } else if s.flags & 0x400 != 0 {
            true // .tbss occupies no address range of its own
        } else {
            l.segments
                .iter()
                .any(|g| g.is_load() && g.vaddr <= s.addr && s.addr_end() <= g.mem_end())
        };
        if !ok {
            return Err(format!(
                "section `{}` is not inside a PT_LOAD that maps it",
                s.name
            ));
        }
    }
    Ok(())
}

fn check_table(d: &[u8], l: &Layout) -> Check {
    let len = l.phdr_table_len();
    if let Some(ph) = l.segments.iter().find(|s| s.p_type == PT_PHDR) {
        if ph.offset != l.phoff || ph.filesz != len || ph.memsz != len {
            return Err("PT_PHDR does not describe the program header table".into());
        }
        let mapped = out_bytes(d, l, ph.vaddr, len)?;
        if mapped != bytes_at(d, l.phoff, len, "phdrs").map_err(|e| e.to_string())? {
            return Err("PT_PHDR's address does not map the program header table".into());
        }
    }
    Ok(())
}

/// Everything the self-check of a cut needs.
pub(crate) struct CutExpect<'a> {
    pub input: &'a [u8],
    pub inl: &'a Layout,
    pub plan: &'a CutPlan,
    pub packing: &'a Packing,
    pub edits: &'a [SectionEdit],
    pub refs: &'a RefEdits,
    pub tables: &'a Tables,
}

/// Checks a cut's output against its input and plan (see the module's list); the first
/// difference found is the error.
pub(crate) fn verify_cut(out: &[u8], e: &CutExpect) -> Check {
    let ol = Layout::parse(out).map_err(|err| format!("the output does not parse: {err}"))?;
    let (inl, c) = (e.inl, e.plan);
    if out.len() as u64 != c.out_len {
        return Err(format!(
            "the output is {:#x} bytes, expected {:#x}",
            out.len(),
            c.out_len
        ));
    }
    if c.table.in_range.is_some() && inl.file_len - c.map.removed() != out.len() as u64 {
        return Err("the file did not shrink by exactly the cut bytes".into());
    }
    check_loads(&ol)?;
    check_sections_mapped(&ol)?;
    check_table(out, &ol)?;
    super::phdrs::loaders_find_table(&ol.segments, ol.phoff, ol.phdr_table_len(), c.table.vaddr)?;
    if ol.segments != c.segments {
        return Err("the program headers are not the planned ones".into());
    }

    check_headers(out, &ol, e)?;
    // The cut addresses, which the output no longer maps.
    let holes: Vec<(u64, u64)> = normalise(c.holes.iter().map(|h| (h.vstart, h.vend)).collect());
    check_unchanged_memory(out, &ol, e, &holes)?;
    check_load_segments(&ol, e, &holes)?;
    check_regions(out, &ol, e, &holes)?;
    let relocs = check_relocations(out, &ol, e)?;
    check_symbols(out, &ol, e)?;
    check_wrappers(out, &ol, e, &relocs)
}

/// The ELF header, the section headers and the program headers that are not PT_LOAD: only
/// offsets, the table position and the device sections' places may differ.
fn check_headers(out: &[u8], ol: &Layout, e: &CutExpect) -> Check {
    let (ind, inl, c, p) = (e.input, e.inl, e.plan, e.packing);
    let same = |a: u64, n: u64| -> Check {
        let x = bytes_at(ind, a, n, "ehdr").map_err(|e| e.to_string())?;
        let y = bytes_at(out, a, n, "ehdr").map_err(|e| e.to_string())?;
        if x == y {
            Ok(())
        } else {
            Err(format!("ELF header bytes {a:#x}..{:#x} changed", a + n))
        }
    };
    same(0, 32)?;
    same(48, 8)?;
    same(58, 6)?;
    if ol.sections.len() != inl.sections.len() {
        return Err("the section count changed".into());
    }
    for (j, (a, b)) in inl.sections.iter().zip(&ol.sections).enumerate().skip(1) {
        let dev = p.devs.iter().position(|d| d.shndx == j);
        let moved = c.map.map(a.offset);
        let same_meta = a.name == b.name
            && a.sh_type == b.sh_type
            && a.flags == b.flags
            && a.link == b.link
            && a.info == b.info
            && a.addralign == b.addralign
            && a.entsize == b.entsize;
        let place_ok = match dev {
            Some(di) => (b.addr, b.size) == p.new_sections[di],
            None => a.addr == b.addr && a.size == b.size && moved == Some(b.offset),
        };
        if !same_meta || !place_ok {
            return Err(format!(
                "section header {j} (`{}`) changed unexpectedly",
                a.name
            ));
        }
    }
    let in_nonload: Vec<&Segment> = inl
        .segments
        .iter()
        .filter(|s| !s.is_load() && s.p_type != PT_PHDR)
        .collect();
    let out_nonload: Vec<&Segment> = ol
        .segments
        .iter()
        .filter(|s| !s.is_load() && s.p_type != PT_PHDR)
        .collect();
    if in_nonload.len() != out_nonload.len() {
        return Err("the non-PT_LOAD program headers changed in number".into());
    }
    for (a, b) in in_nonload.iter().zip(&out_nonload) {
        if (Segment {
            offset: b.offset,
            ..**a
        }) != **b
            || c.map.map(a.offset) != Some(b.offset)
        {
            return Err(format!(
                "program header of type {:#x} changed beyond its file offset",
                a.p_type
            ));
        }
    }

    Ok(())
}

/// The memory image: everything mapped outside the packed regions, the patched words, the
/// headers and the cut addresses reads the same as in the input.
fn check_unchanged_memory(out: &[u8], ol: &Layout, e: &CutExpect, holes: &[(u64, u64)]) -> Check {
    let (ind, inl, c, p) = (e.input, e.inl, e.plan, e.packing);
    let mut changed: Vec<(u64, u64)> = p.regions.iter().map(|r| (r.start, r.old_end)).collect();
    for &off in e.refs.patches.keys() {
        if let Some(v) = inl.offset_to_vaddr(off) {
            changed.push((v, v + 8));
        }
    }
    if let Some(v) = inl.offset_to_vaddr(0) {
        changed.push((v, v + EHDR_SIZE));
    }
    if let (Some((a, b)), Some(v)) = (c.table.in_range, c.table.vaddr) {
        changed.push((v, v + (b - a)));
    }
    // Everything else that is mapped must read the same (the section header table, which
    // also changed, is not mapped in any file we accept to cut).
    let skip = normalise(changed.into_iter().chain(holes.iter().copied()).collect());
    for s in inl.segments.iter().filter(|s| s.is_load()) {
        for (a, b) in crate::elf::sparse::subtract(s.vaddr, s.mem_end(), &skip) {
            same_memory(ind, inl, out, ol, a, b)?;
        }
    }
    Ok(())
}

/// Each output PT_LOAD maps no cut address, lies inside an input PT_LOAD with its alignment
/// (and its permissions, when whole), and a piece of a split one lost only what nothing needs.
fn check_load_segments(ol: &Layout, e: &CutExpect, holes: &[(u64, u64)]) -> Check {
    let inl = e.inl;
    let out_secs = extents(ol, None);
    let others: Vec<Segment> = ol
        .segments
        .iter()
        .filter(|s| !s.is_load())
        .copied()
        .collect();
    let reloc_places: Vec<u64> = e.tables.relocs.iter().map(|r| r.r_offset).collect();
    let writers = Writers {
        others: &others,
        reloc_places: &reloc_places,
    };
    for s in ol.segments.iter().filter(|s| s.is_load()) {
        if holes.iter().any(|&(a, b)| s.vaddr < b && a < s.mem_end()) {
            return Err(format!(
                "the PT_LOAD at {:#x} still maps cut addresses",
                s.vaddr
            ));
        }
        let parent = inl
            .segments
            .iter()
            .find(|g| g.is_load() && g.vaddr <= s.vaddr && s.mem_end() <= g.mem_end())
            .ok_or_else(|| {
                format!(
                    "the PT_LOAD at {:#x} maps addresses the input did not",
                    s.vaddr
                )
            })?;
        let whole = parent.vaddr == s.vaddr && parent.mem_end() == s.mem_end();
        if parent.align != s.align || (whole && parent.flags != s.flags) {
            return Err(format!(
                "the PT_LOAD at {:#x} changed permissions or alignment",
                s.vaddr
            ));
        }
        if !whole {
            // A piece of a split PT_LOAD may only have lost what nothing in it needs.
            check_dropped(parent, s, &out_secs, &writers)?;
        }
    }

    Ok(())
}

/// The packed regions: containers hold their new bytes, everything else is zero.
fn check_regions(out: &[u8], ol: &Layout, e: &CutExpect, holes: &[(u64, u64)]) -> Check {
    let (c, p) = (e.plan, e.packing);
    let table_v = match (c.table.in_range, c.table.vaddr) {
        (Some((a, b)), Some(v)) => Some((v, v + (b - a))),
        _ => None,
    };
    for r in &p.regions {
        let mut placed: Vec<_> = p
            .placed
            .iter()
            .filter(|pl| r.devs.contains(&pl.dev))
            .collect();
        placed.sort_by_key(|pl| pl.new_addr);
        let mut x = r.start;
        let zero_upto = |x: u64, to: u64| -> Check {
            for (a, b) in crate::elf::sparse::subtract(
                x,
                to,
                &normalise(table_v.into_iter().chain(holes.iter().copied()).collect()),
            ) {
                if out_bytes(out, ol, a, b - a)?.iter().any(|&c| c != 0) {
                    return Err(format!("dead bytes at {a:#x}..{b:#x} are not zero"));
                }
            }
            Ok(())
        };
        for pl in placed {
            zero_upto(x, pl.new_addr)?;
            let want = &e.edits[pl.edit].blocks[pl.block].new_bytes;
            if out_bytes(out, ol, pl.new_addr, pl.new_len)? != want.as_slice() {
                return Err(format!(
                    "the container placed at {:#x} does not hold its new bytes",
                    pl.new_addr
                ));
            }
            x = pl.new_addr + pl.new_len;
        }
        zero_upto(x, r.old_end)?;
    }

    Ok(())
}

/// Relocations keep their count, order, places, types and symbols; RELATIVE ones reach the
/// container's new address or their old target. Returns the output's relocations.
fn check_relocations(out: &[u8], ol: &Layout, e: &CutExpect) -> Result<Vec<tables::Reloc>, String> {
    let (ind, inl, c, p) = (e.input, e.inl, e.plan, e.packing);
    let relocs = tables::relocations(out, ol, e.tables.relative).map_err(|err| err.to_string())?;
    if relocs.len() != e.tables.relocs.len() {
        return Err(format!(
            "relocation count changed from {} to {}",
            e.tables.relocs.len(),
            relocs.len()
        ));
    }
    for (a, b) in e.tables.relocs.iter().zip(&relocs) {
        let want_addend = e
            .refs
            .new_addends
            .get(&a.entry_off)
            .map_or(a.addend, |&n| n as i64);
        if a.kind != b.kind
            || a.r_offset != b.r_offset
            || a.r_type != b.r_type
            || a.sym != b.sym
            || b.addend != want_addend
            || (a.kind != RelKind::Relr && c.map.map(a.entry_off) != Some(b.entry_off))
        {
            return Err(format!(
                "the relocation at {:#x} changed unexpectedly",
                a.r_offset
            ));
        }
        if a.r_type == e.tables.relative {
            let t_in = relative_target(ind, inl, a)
                .map_err(|_| "unreadable relocation target".to_string())?;
            let t_out = relative_target(out, ol, b)
                .map_err(|_| "unreadable relocation target".to_string())?;
            let want = match p.classify(t_in) {
                Class::Container { new, .. } => new,
                _ => t_in,
            };
            if t_out != want {
                return Err(format!(
                    "the RELATIVE relocation at {:#x} targets {t_out:#x}, expected {want:#x}",
                    a.r_offset
                ));
            }
            if a.kind == RelKind::Rela
                && let (Some(pi), Some(po)) = (
                    inl.vaddr_to_offset(a.r_offset, 8),
                    ol.vaddr_to_offset(b.r_offset, 8),
                )
            {
                let (vi, vo) = (
                    u64_at(ind, pi).map_err(|e| e.to_string())?,
                    u64_at(out, po).map_err(|e| e.to_string())?,
                );
                let expect = if vi == t_in { want } else { vi };
                if vo != expect {
                    return Err(format!(
                        "the word relocated at {:#x} holds {vo:#x}, expected {expect:#x}",
                        a.r_offset
                    ));
                }
            }
        }
    }

    Ok(relocs)
}

/// Symbols keep everything but the patched values and sizes, and one in a device section
/// points at a container start.
fn check_symbols(out: &[u8], ol: &Layout, e: &CutExpect) -> Check {
    let (ind, p) = (e.input, e.packing);
    let out_tabs = tables::all_symbol_tables(out, ol).map_err(|err| err.to_string())?;
    if out_tabs.len() != e.tables.symtabs.len() {
        return Err("the symbol tables changed in number".into());
    }
    for (ta, tb) in e.tables.symtabs.iter().zip(&out_tabs) {
        if ta.syms.len() != tb.syms.len() {
            return Err("a symbol table changed in length".into());
        }
        for (a, b) in ta.syms.iter().zip(&tb.syms) {
            let value = e
                .refs
                .patches
                .get(&(a.entry_off + 8))
                .copied()
                .unwrap_or(a.value);
            let size = e
                .refs
                .patches
                .get(&(a.entry_off + 16))
                .copied()
                .unwrap_or(a.size);
            if (a.name_off, a.info, a.shndx) != (b.name_off, b.info, b.shndx)
                || b.value != value
                || b.size != size
            {
                return Err(format!(
                    "symbol `{}` changed unexpectedly",
                    String::from_utf8_lossy(ta.name(ind, a))
                ));
            }
            if let Some(di) = p.dev_by_shndx(b.shndx)
                && !p.is_legal_new_target(di, b.value)
            {
                return Err(format!(
                    "symbol `{}` of `{}` does not point at a container start",
                    String::from_utf8_lossy(tb.name(out, b)),
                    p.devs[di].name
                ));
            }
        }
    }

    Ok(())
}

/// Wrappers point at container starts (`relocs`: the output's relocations).
fn check_wrappers(out: &[u8], ol: &Layout, e: &CutExpect, relocs: &[tables::Reloc]) -> Check {
    let p = e.packing;
    let by_place: std::collections::HashMap<u64, &tables::Reloc> =
        relocs.iter().map(|r| (r.r_offset, r)).collect();
    let relative = tables::relative_type(ol.machine);
    for (sec, _) in WRAPPER_SECTIONS {
        for s in ol
            .sections
            .iter()
            .skip(1)
            .filter(|s| s.name == sec && s.in_file())
        {
            for i in 0..s.size / WRAPPER_SIZE {
                let field = s.addr + i * WRAPPER_SIZE + 8;
                let ptr =
                    match by_place.get(&field) {
                        // Bound to a symbol (a companion's, once its container moved there): its
                        // addend is an offset from that symbol, not an address here, and the
                        // relocation checks judge where the symbol is.
                        Some(r) if r.sym != 0 && Some(r.r_type) != relative => continue,
                        Some(r) => relative_target(out, ol, r)
                            .map_err(|_| "unreadable wrapper".to_string())?,
                        None => u64_at(out, s.offset + i * WRAPPER_SIZE + 8)
                            .map_err(|e| e.to_string())?,
                    };
                let in_dev = p.devs.iter().enumerate().any(|(di, _)| {
                    let (a, n) = p.new_sections[di];
                    a <= ptr && ptr < a + n
                });
                if in_dev && p.placed_at(ptr).is_none() {
                    return Err(format!(
                        "wrapper {i} of `{sec}` points at {ptr:#x}, not at a container start"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The check of a zero-in-place rewrite: same size, identical outside the blocks, and each
/// block holds its new bytes followed by zeros.
pub(crate) fn verify_zeroed(input: &[u8], out: &[u8], ranges: &[(u64, &[u8], u64)]) -> Check {
    if input.len() != out.len() {
        return Err("the zeroed output changed size".into());
    }
    let mut sorted: Vec<&(u64, &[u8], u64)> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.0);
    let mut at = 0u64;
    for &&(off, bytes, old_len) in &sorted {
        let a = bytes_at(input, at, off.saturating_sub(at), "input").map_err(|e| e.to_string())?;
        let b = bytes_at(out, at, off.saturating_sub(at), "output").map_err(|e| e.to_string())?;
        if a != b {
            return Err(format!(
                "bytes outside the containers changed in {at:#x}..{off:#x}"
            ));
        }
        let blk = bytes_at(out, off, old_len, "output").map_err(|e| e.to_string())?;
        let n = bytes.len();
        let tail_zero = blk.get(n..).is_some_and(|t| t.iter().all(|&c| c == 0));
        if blk.get(..n) != Some(bytes) || !tail_zero {
            return Err(format!(
                "the container at file offset {off:#x} does not hold its new bytes and zeros"
            ));
        }
        at = off + old_len;
    }
    let len = input.len() as u64;
    if bytes_at(input, at, len - at, "input").ok() != bytes_at(out, at, len - at, "output").ok() {
        return Err(format!("bytes after file offset {at:#x} changed"));
    }
    Ok(())
}
