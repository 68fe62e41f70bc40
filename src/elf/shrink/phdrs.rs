//! Where the grown program header table goes, and whether loaders will find it there.
//!
//! Each PT_LOAD split adds one program header. The table is placed, in order of preference:
//! (i) in place, when the bytes after it are provably unused (patchelf leaves such bytes);
//! (ii) in the dead bytes beside a hole, head side then tail side, which stay mapped;
//! (iii) in a granule given up for it; (iv) at the end of the file, only without PT_PHDR.
//! (iii) and (iv) are decided by the planner in `cut`; this module lists the places
//! of (i) and (ii) and checks any place against the way glibc and the kernel locate the table.

use super::holes::{Hole, OffsetMap};
use super::layout::{Layout, Segment, align_up, overlaps};
use super::pack::Packing;
use super::refs::{Tables, relative_target};
use super::tables::{self};
use crate::elf::consts::{EHDR_SIZE, PT_INTERP, PT_PHDR, SHDR_SIZE};
use crate::elf::consts::{SHN_UNDEF, STT_SECTION, STT_TLS};

/// Where the program header table went.
#[derive(Debug, Clone)]
pub(crate) struct TableSpot {
    /// Output file offset.
    pub out_off: u64,
    /// Input file range it overwrites (None at the end of the file).
    pub in_range: Option<(u64, u64)>,
    /// Address at which it is mapped (None when unmapped).
    pub vaddr: Option<u64>,
    pub how: String,
}

/// True when `[off, off+len)` of the input is covered by nothing: no section, segment other
/// than the table's own, header table, region, and (where mapped) no address that a
/// relocation, symbol or `.dynamic` entry uses.
fn provably_unused(d: &[u8], l: &Layout, t: &Tables, p: &Packing, off: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let Some(end) = off.checked_add(len) else {
        return false;
    };
    if end > l.file_len || overlaps(0, EHDR_SIZE, off, len) {
        return false;
    }
    if overlaps(l.shoff, l.sections.len() as u64 * SHDR_SIZE, off, len) {
        return false;
    }
    for s in l.sections.iter().skip(1) {
        let at_or_in = off <= s.offset && s.offset < end;
        if s.in_file() && (overlaps(s.offset, s.size, off, len) || (s.size == 0 && at_or_in)) {
            return false;
        }
    }
    for s in &l.segments {
        // PT_NULL entries are ignored by every loader.
        if s.p_type != 0
            && !s.is_load()
            && s.p_type != PT_PHDR
            && overlaps(s.offset, s.filesz, off, len)
        {
            return false;
        }
    }
    for r in &p.regions {
        if overlaps(r.start_off, r.old_end - r.start, off, len) {
            return false;
        }
    }
    let Some(v) = l.offset_to_vaddr(off) else {
        return true;
    };
    let vend = v.saturating_add(len);
    let hit = |a: u64| v <= a && a < vend;
    if t.dynamic
        .iter()
        .any(|e| tables::is_pointer_tag(e.tag) && hit(e.val))
    {
        return false;
    }
    for tab in &t.symtabs {
        // Section symbols name a section, whose bytes were checked above.
        if tab.syms.iter().any(|s| {
            s.shndx != SHN_UNDEF
                && s.st_type() != STT_TLS
                && s.st_type() != STT_SECTION
                && overlaps(s.value, s.size.max(1), v, len)
        }) {
            return false;
        }
    }
    for r in &t.relocs {
        if overlaps(r.r_offset, 8, v, len) {
            return false;
        }
        if r.r_type == t.relative && relative_target(d, l, r).map_or(true, hit) {
            return false;
        }
    }
    true
}

/// The places the table fits, in the order of preference (giving up granules and the end of
/// the file aside).
pub(crate) fn spots(
    d: &[u8],
    l: &Layout,
    t: &Tables,
    p: &Packing,
    holes: &[Hole],
    map: &OffsetMap,
    size: u64,
) -> Vec<TableSpot> {
    let mut out = Vec::new();
    let old = l.phdr_table_len();
    let holder = l.load_holding_file(l.phoff, old.max(1));
    let same_load = l.load_holding_file(l.phoff, size) == holder;
    let has_phdr = l.segments.iter().any(|s| s.p_type == PT_PHDR);
    let in_cut = map.map(l.phoff).is_none()
        || holes
            .iter()
            .any(|h| overlaps(l.phoff, size, h.off_start, h.len()));
    if same_load
        && (holder.is_some() || !has_phdr)
        && !in_cut
        && size > old
        && provably_unused(d, l, t, p, l.phoff + old, size - old)
        && let Some(out_off) = map.map(l.phoff)
    {
        out.push(TableSpot {
            out_off,
            in_range: Some((l.phoff, l.phoff + size)),
            vaddr: l.offset_to_vaddr(l.phoff),
            how: format!(
                "grown in place at file offset {:#x} (the bytes after it were unused)",
                l.phoff
            ),
        });
    }
    let dead = |in_off: u64, limit: u64, how: String| -> Option<TableSpot> {
        let at = align_up(in_off, 8)?;
        if at.checked_add(size)? > limit {
            return None;
        }
        Some(TableSpot {
            out_off: map.map(at)?,
            in_range: Some((at, at + size)),
            vaddr: l.offset_to_vaddr(at),
            how,
        })
    };
    for h in holes {
        let r = &p.regions[h.region];
        let head = dead(
            r.off(r.new_end),
            h.off_start,
            format!(
                "moved into the dead bytes before the hole in {}",
                region_name(p, h.region)
            ),
        );
        let tail = || {
            dead(
                h.off_end,
                r.off(r.old_end),
                format!(
                    "moved into the dead bytes after the hole in {}",
                    region_name(p, h.region)
                ),
            )
        };
        out.extend(head);
        out.extend(tail());
    }
    for (ri, r) in p.regions.iter().enumerate() {
        if holes.iter().any(|h| h.region == ri) {
            continue;
        }
        out.extend(dead(
            r.off(r.new_end),
            r.off(r.old_end),
            format!(
                "moved into the dead bytes at the end of {}",
                region_name(p, ri)
            ),
        ));
    }
    out
}

/// The page-rounded file range a loader maps for a PT_LOAD with pages of `page` bytes.
pub(crate) fn mapped_file_range(s: &Segment, page: u64) -> (u64, u64) {
    let start = super::layout::align_down(s.offset, page);
    let vstart = super::layout::align_down(s.vaddr, page);
    let vend = align_up(s.vaddr_file_end(), page).unwrap_or(u64::MAX);
    (start, start.saturating_add(vend - vstart))
}

/// Whether loaders will find the table at output offset `off` (`size` bytes, mapped at
/// `vaddr`) through the program headers `segs`:
/// * a PT_LOAD must map it from the file at `vaddr` (PT_PHDR says where it is);
/// * without PT_PHDR, glibc takes the first PT_LOAD whose page-rounded file image covers the
///   table, so every PT_LOAD before the holder that does (with the largest page size, a
///   superset of smaller ones) must map those bytes at the same address and must not
///   zero-fill its last page (`.bss`);
/// * a program (PT_INTERP) gets AT_PHDR from older kernels as the first PT_LOAD's
///   `p_vaddr - p_offset` plus `e_phoff`, so the holder must share that difference;
/// * an unmapped table (end of file) is only for objects without PT_PHDR or PT_INTERP, and no
///   PT_LOAD may cover it even page-rounded.
pub(crate) fn loaders_find_table(
    segs: &[Segment],
    off: u64,
    size: u64,
    vaddr: Option<u64>,
) -> Result<(), String> {
    let has = |t: u32| segs.iter().any(|s| s.p_type == t);
    let loads: Vec<&Segment> = segs.iter().filter(|s| s.is_load()).collect();
    let page = loads.iter().map(|s| s.align).max().unwrap_or(1).max(1);
    let end = off.saturating_add(size);
    let claims = |s: &&&Segment| {
        let (a, b) = mapped_file_range(s, page);
        a <= off && end <= b
    };
    let Some(v) = vaddr else {
        if has(PT_PHDR) || has(PT_INTERP) {
            return Err(
                "an unmapped program header table needs an object without PT_PHDR and PT_INTERP"
                    .into(),
            );
        }
        return match loads.iter().find(claims) {
            Some(s) => Err(format!(
                "the PT_LOAD at {:#x} covers the unmapped table once page-rounded",
                s.vaddr
            )),
            None => Ok(()),
        };
    };
    let delta = v.wrapping_sub(off);
    let holder = loads
        .iter()
        .find(|s| s.offset <= off && end <= s.file_end() && s.vaddr.wrapping_sub(s.offset) == delta)
        .ok_or_else(|| format!("no PT_LOAD maps the program header table at {v:#x}"))?;
    if !has(PT_PHDR) {
        // The holder claims the table at every page size; only a PT_LOAD before it can
        // be taken first.
        let before = loads.iter().take_while(|s| !std::ptr::eq(**s, *holder));
        for s in before.filter(claims) {
            let same = s.vaddr.wrapping_sub(s.offset) == delta;
            let zero_fills = s.memsz > s.filesz;
            if !same || zero_fills {
                return Err(format!(
                    "the PT_LOAD at {:#x} would be taken for the one holding the program header table",
                    s.vaddr
                ));
            }
        }
    }
    if has(PT_INTERP)
        && let Some(first) = loads.first()
        && first.vaddr.wrapping_sub(first.offset) != delta
    {
        return Err("older kernels would compute AT_PHDR from the first PT_LOAD".into());
    }
    Ok(())
}

pub(crate) fn region_name(p: &Packing, ri: usize) -> String {
    let names: Vec<String> = p.regions[ri]
        .devs
        .iter()
        .map(|&di| format!("`{}`", p.devs[di].name))
        .collect();
    names.join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::consts::PT_LOAD;

    fn load(offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Segment {
        Segment {
            p_type: PT_LOAD,
            flags: 4,
            offset,
            vaddr,
            paddr: vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    #[test]
    fn loaders_must_find_the_table() {
        // Head [0, 0x3000) at 0, tail at file 0x3000 / address 0xd000, then RW with .bss.
        let segs = [
            load(0, 0, 0x3000, 0x3000),
            load(0x3000, 0xd000, 0x800, 0x800),
            load(0x3d00, 0xed00, 0x200, 0x400),
        ];
        assert!(loaders_find_table(&segs, 0x2800, 0x230, Some(0x2800)).is_ok());
        assert!(loaders_find_table(&segs, 0x3000, 0x230, Some(0xd000)).is_ok());
        // Mapped at the wrong address, or by no PT_LOAD.
        assert!(loaders_find_table(&segs, 0x3000, 0x230, Some(0x3000)).is_err());
        // Past the RW file image but inside its page: glibc would take the zero-filled page.
        assert!(loaders_find_table(&segs, 0x3f10, 0x40, None).is_err());
        assert!(loaders_find_table(&segs, 0x4000, 0x40, None).is_ok());
    }
}
