//! Which device-code sections are edited, where their containers go, and the old→new address
//! map that every reference is re-pointed through.
//!
//! Sections that lie back to back in one PT_LOAD (only zero bytes between them) form a
//! *region*: its containers are packed from the region's start, each at its own alignment, so
//! the freed bytes end up together at the region's end, where whole pages can be cut out. The
//! first section of a region keeps its address; later ones move down with their containers.
//! Addresses are attributed with half-open ranges: an address equal to a section's end belongs
//! to whatever follows it.

use super::layout::{Layout, align_up, bytes_at, overlaps};
use super::{Refuse, SectionEdit};
use crate::elf::ElfError;

/// A device-code section named by an edit, validated.
#[derive(Debug, Clone)]
pub(crate) struct DevSection {
    /// Section header index.
    pub shndx: usize,
    pub name: String,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub addralign: u64,
    /// Index of the PT_LOAD (in the program header table) holding the section.
    pub load: usize,
    /// Index of the edit in the caller's slice.
    pub edit: usize,
    /// Indices into the edit's blocks, sorted by old offset.
    pub blocks: Vec<usize>,
}

impl DevSection {
    pub(crate) fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// Checks the edits against the file: each names one file-backed section inside one PT_LOAD,
/// and its blocks are well-formed. Anything wrong here makes both methods impossible.
pub(crate) fn resolve(l: &Layout, edits: &[SectionEdit]) -> Result<Vec<DevSection>, ElfError> {
    let mut out: Vec<DevSection> = Vec::new();
    for (ei, e) in edits.iter().enumerate() {
        if edits[..ei].iter().any(|o| o.name == e.name) {
            return Err(ElfError::InvalidEdit(format!(
                "section `{}` is edited twice",
                e.name
            )));
        }
        let shndx = l.unique_section(&e.name)?.ok_or_else(|| {
            ElfError::InvalidEdit(format!("there is no section called `{}`", e.name))
        })?;
        let s = &l.sections[shndx];
        if !s.in_file() {
            return Err(ElfError::Unsupported(format!(
                "`{}` has no bytes in the file (NOBITS)",
                e.name
            )));
        }
        let load = l.load_holding_file(s.offset, s.size).ok_or_else(|| {
            ElfError::Unsupported(format!(
                "`{}` (file offset {:#x}, {:#x} bytes) does not lie inside one PT_LOAD",
                e.name, s.offset, s.size
            ))
        })?;
        if !s.is_alloc() {
            return Err(ElfError::Unsupported(format!(
                "`{}` is not allocated (SHF_ALLOC): it is not part of the memory image",
                e.name
            )));
        }
        let seg = &l.segments[load];
        if seg.vaddr.checked_add(s.offset - seg.offset) != Some(s.addr) {
            return Err(ElfError::Unsupported(format!(
                "`{}`'s address {:#x} does not match where its PT_LOAD maps file offset {:#x}",
                e.name, s.addr, s.offset
            )));
        }
        for (j, other) in l.sections.iter().enumerate() {
            if j != shndx
                && j > 0
                && other.in_file()
                && overlaps(other.offset, other.size, s.offset, s.size)
            {
                return Err(ElfError::Unsupported(format!(
                    "`{}` overlaps `{}` in the file",
                    e.name, other.name
                )));
            }
        }
        let mut blocks: Vec<usize> = (0..e.blocks.len()).collect();
        blocks.sort_by_key(|&i| e.blocks[i].old_offset);
        let mut prev_end = 0u64;
        for &bi in &blocks {
            let b = &e.blocks[bi];
            let what = || format!("block at +{:#x} of `{}`", b.old_offset, e.name);
            if b.align == 0 || !b.align.is_power_of_two() {
                return Err(ElfError::InvalidEdit(format!(
                    "{} has alignment {}, not a power of two",
                    what(),
                    b.align
                )));
            }
            if b.old_len == 0 {
                return Err(ElfError::InvalidEdit(format!("{} is empty", what())));
            }
            if b.new_bytes.len() as u64 > b.old_len {
                return Err(ElfError::InvalidEdit(format!(
                    "{} grows from {:#x} to {:#x} bytes",
                    what(),
                    b.old_len,
                    b.new_bytes.len()
                )));
            }
            let end = b
                .old_offset
                .checked_add(b.old_len)
                .filter(|&x| x <= s.size)
                .ok_or_else(|| {
                    ElfError::InvalidEdit(format!(
                        "{} ({:#x} bytes) runs past the section's end ({:#x})",
                        what(),
                        b.old_len,
                        s.size
                    ))
                })?;
            if b.old_offset < prev_end {
                return Err(ElfError::InvalidEdit(format!(
                    "{} overlaps the block before it",
                    what()
                )));
            }
            prev_end = end;
        }
        out.push(DevSection {
            shndx,
            name: e.name.clone(),
            addr: s.addr,
            offset: s.offset,
            size: s.size,
            addralign: s.addralign,
            load,
            edit: ei,
            blocks,
        });
    }
    out.sort_by_key(|d| d.addr);
    for w in out.windows(2) {
        if w[1].addr < w[0].end() {
            return Err(ElfError::Unsupported(format!(
                "`{}` and `{}` overlap",
                w[0].name, w[1].name
            )));
        }
    }
    Ok(out)
}

/// One container at its new place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    pub dev: usize,
    pub edit: usize,
    pub block: usize,
    pub new_addr: u64,
    pub old_len: u64,
    pub new_len: u64,
}

/// A run of device sections packed together.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub load: usize,
    /// Indices into the device-section list, by address.
    pub devs: Vec<usize>,
    pub start: u64,
    pub old_end: u64,
    pub new_end: u64,
    /// File offset of `start`.
    pub start_off: u64,
}

impl Region {
    /// File offset of an address inside the region.
    pub(crate) fn off(&self, vaddr: u64) -> u64 {
        self.start_off + (vaddr - self.start)
    }

    pub(crate) fn contains(&self, vaddr: u64) -> bool {
        self.start <= vaddr && vaddr < self.old_end
    }
}

/// What an old address inside a device section means after packing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not inside any edited section (an address equal to a section's end lands here).
    Outside,
    /// The start of a surviving container.
    Container { new: u64, placed: usize },
    /// The start of a container whose new bytes are empty; `at` is where it would have gone.
    Dropped { at: u64, dev: usize },
    /// The start of a section that is not also a container start.
    SectionStart { new: u64, dev: usize },
    /// Any other byte of a region (`dev` = None: between two sections).
    Inside { dev: Option<usize>, off: u64 },
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Container(usize),
    Dropped(u64, usize),
    SectionStart(u64, usize),
}

/// The packing of every region and the address map.
#[derive(Debug, Clone)]
pub(crate) struct Packing {
    pub devs: Vec<DevSection>,
    pub regions: Vec<Region>,
    pub placed: Vec<Placed>,
    /// New (address, size) of each device section.
    pub new_sections: Vec<(u64, u64)>,
    marks: Vec<(u64, Mark)>,
    any_dropped: bool,
}

impl Packing {
    /// What `addr` refers to after packing.
    pub(crate) fn classify(&self, addr: u64) -> Class {
        if !self.regions.iter().any(|r| r.contains(addr)) {
            return Class::Outside;
        }
        if let Ok(i) = self.marks.binary_search_by_key(&addr, |m| m.0) {
            return match self.marks[i].1 {
                Mark::Container(p) => Class::Container {
                    new: self.placed[p].new_addr,
                    placed: p,
                },
                Mark::Dropped(at, dev) => Class::Dropped { at, dev },
                Mark::SectionStart(new, dev) => Class::SectionStart { new, dev },
            };
        }
        match self
            .devs
            .iter()
            .position(|d| d.addr <= addr && addr < d.end())
        {
            Some(d) => Class::Inside {
                dev: Some(d),
                off: addr - self.devs[d].addr,
            },
            None => Class::Inside { dev: None, off: 0 },
        }
    }

    /// The region containing `addr`, if any.
    pub(crate) fn region_of(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(addr))
    }

    /// Index in the device list of the section with header index `shndx`.
    pub(crate) fn dev_by_shndx(&self, shndx: u32) -> Option<usize> {
        self.devs
            .iter()
            .position(|d| d.shndx as u64 == u64::from(shndx))
    }

    /// True when `v` is a legal value, after packing, for a symbol of device section `di`:
    /// the section's new start, a container's new start, or where a dropped container went.
    pub(crate) fn is_legal_new_target(&self, di: usize, v: u64) -> bool {
        self.new_sections.get(di).is_some_and(|s| s.0 == v)
            || self.placed_at(v).is_some_and(|p| self.placed[p].dev == di)
            || (self.any_dropped
                && self
                    .marks
                    .iter()
                    .any(|m| matches!(m.1, Mark::Dropped(at, d) if d == di && at == v)))
    }

    /// The container placed at new address `v`, if any (placed containers are sorted by
    /// new address: regions are disjoint and packed in address order).
    pub(crate) fn placed_at(&self, v: u64) -> Option<usize> {
        self.placed.binary_search_by_key(&v, |p| p.new_addr).ok()
    }

    /// "`.nv_fatbin` at +0x10" for an address inside a region.
    pub(crate) fn describe(&self, addr: u64) -> String {
        match self.devs.iter().find(|d| d.addr <= addr && addr < d.end()) {
            Some(d) => format!("`{}` at +{:#x}", d.name, addr - d.addr),
            None => format!("the padding between device sections at {addr:#x}"),
        }
    }
}

/// Packs every region. Refuses (with the reason) when the layout cannot be packed safely.
pub(crate) fn pack(
    d: &[u8],
    l: &Layout,
    devs: Vec<DevSection>,
    edits: &[SectionEdit],
) -> Result<Packing, Refuse> {
    check_uncovered_zero(d, &devs, edits)?;
    let mut regions = regions(d, l, &devs);
    let (placed, mut marks, new_sections) = place_containers(&devs, edits, &mut regions)?;
    marks.sort_by_key(|m| m.0);
    let any_dropped = marks.iter().any(|m| matches!(m.1, Mark::Dropped(..)));
    Ok(Packing {
        any_dropped,
        devs,
        regions,
        placed,
        new_sections,
        marks,
    })
}

/// Bytes of a device section that no block covers must be zero: they are dropped.
fn check_uncovered_zero(
    d: &[u8],
    devs: &[DevSection],
    edits: &[SectionEdit],
) -> Result<(), Refuse> {
    for dev in devs {
        let e = &edits[dev.edit];
        let mut at = 0u64;
        let check = |from: u64, to: u64| -> Result<(), Refuse> {
            if to > from {
                let b = bytes_at(d, dev.offset + from, to - from, "a device section")?;
                if let Some(p) = b.iter().position(|&x| x != 0) {
                    return Err(Refuse::Cut(format!(
                        "the byte at +{:#x} of `{}` is not zero and belongs to no container",
                        from + p as u64,
                        dev.name
                    )));
                }
            }
            Ok(())
        };
        for &bi in &dev.blocks {
            let b = &e.blocks[bi];
            check(at, b.old_offset)?;
            at = b.old_offset + b.old_len;
        }
        check(at, dev.size)?;
    }

    Ok(())
}

/// The regions to pack: runs of device sections in one PT_LOAD with nothing else and only
/// zeros between them.
fn regions(d: &[u8], l: &Layout, devs: &[DevSection]) -> Vec<Region> {
    let mut regions: Vec<Region> = Vec::new();
    for (i, dev) in devs.iter().enumerate() {
        let joins = match regions.last() {
            Some(r) if r.load == dev.load => {
                let gap_from = r.old_end;
                let gap_to = dev.addr;
                let blocked = l.sections.iter().enumerate().any(|(j, s)| {
                    j > 0
                        && s.is_alloc()
                        && !devs.iter().any(|x| x.shndx == j)
                        && (overlaps(s.addr, s.size, gap_from, gap_to - gap_from)
                            || (s.size == 0 && gap_from <= s.addr && s.addr <= gap_to))
                });
                let gap_zero = bytes_at(d, r.off(gap_from), gap_to - gap_from, "padding")
                    .map(|b| b.iter().all(|&x| x == 0))
                    .unwrap_or(false);
                !blocked && gap_zero
            }
            _ => false,
        };
        if joins {
            if let Some(r) = regions.last_mut() {
                r.devs.push(i);
                r.old_end = dev.end();
            }
        } else {
            regions.push(Region {
                load: dev.load,
                devs: vec![i],
                start: dev.addr,
                old_end: dev.end(),
                new_end: dev.addr,
                start_off: dev.offset,
            });
        }
    }

    regions
}

/// Places the kept containers of each region at their new addresses, in order and aligned:
/// the placed containers, the marks of what moved or was dropped at each old address
/// (unsorted), and each device section's new (address, size).
#[allow(clippy::type_complexity)]
fn place_containers(
    devs: &[DevSection],
    edits: &[SectionEdit],
    regions: &mut [Region],
) -> Result<(Vec<Placed>, Vec<(u64, Mark)>, Vec<(u64, u64)>), Refuse> {
    let mut placed = Vec::new();
    let mut marks: Vec<(u64, Mark)> = Vec::new();
    let mut new_sections = vec![(0u64, 0u64); devs.len()];
    for r in regions.iter_mut() {
        let mut pos = r.start;
        for (k, &di) in r.devs.iter().enumerate() {
            let dev = &devs[di];
            let e = &edits[dev.edit];
            let first_align = dev
                .blocks
                .first()
                .map(|&bi| &e.blocks[bi])
                .filter(|b| b.old_offset == 0)
                .map_or(1, |b| b.align);
            let sec_new = if k == 0 {
                dev.addr
            } else {
                align_up(pos, dev.addralign.max(first_align)).unwrap_or(u64::MAX)
            };
            if sec_new > dev.addr {
                return Err(Refuse::Cut(format!(
                    "`{}` at {:#x} is not aligned to {:#x}, so it cannot be packed after the section before it",
                    dev.name,
                    dev.addr,
                    dev.addralign.max(first_align)
                )));
            }
            pos = sec_new;
            for &bi in &dev.blocks {
                let b = &e.blocks[bi];
                let old_addr = dev.addr + b.old_offset;
                if old_addr % b.align != 0 {
                    return Err(Refuse::Cut(format!(
                        "the container at +{:#x} of `{}` (address {old_addr:#x}) is not aligned to its alignment {:#x}",
                        b.old_offset, dev.name, b.align
                    )));
                }
                let new_addr = align_up(pos, b.align).unwrap_or(u64::MAX);
                if new_addr > old_addr {
                    return Err(Refuse::Cut(format!(
                        "packing would move the container at +{:#x} of `{}` forward",
                        b.old_offset, dev.name
                    )));
                }
                if b.new_bytes.is_empty() {
                    marks.push((old_addr, Mark::Dropped(new_addr, di)));
                    continue;
                }
                marks.push((old_addr, Mark::Container(placed.len())));
                placed.push(Placed {
                    dev: di,
                    edit: dev.edit,
                    block: bi,
                    new_addr,
                    old_len: b.old_len,
                    new_len: b.new_bytes.len() as u64,
                });
                pos = new_addr + b.new_bytes.len() as u64;
            }
            if !marks.iter().any(|m| m.0 == dev.addr) {
                marks.push((dev.addr, Mark::SectionStart(sec_new, di)));
            }
            new_sections[di] = (sec_new, pos - sec_new);
        }
        r.new_end = pos;
    }
    Ok((placed, marks, new_sections))
}
