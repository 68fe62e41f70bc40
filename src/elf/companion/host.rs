//! The host rewrite of issue 14: device-code containers leave a host shared library for
//! companion shared objects, and `ld.so` re-points each fatbin wrapper at their new home.
//!
//! [`move_device_code`] takes the host bytes and, per companion, the containers to move. It
//! returns the rewritten host, the companions (written by [`super::write`]) and notes. Nothing
//! at run time changes but where the bytes live: the CUDA/HIP runtime is handed the same
//! wrapper, whose data pointer now holds the address of the same container bytes in the
//! companion.
//!
//! # What is rewritten, and why this way
//!
//! * **The wrapper's relocation changes kind, not place.** A wrapper record
//!   (`.nvFatBinSegment` / `.hipFatBinSegment`, 24 bytes, magic at +0, data pointer at +8) of
//!   a PIC library gets its pointer from an `R_*_RELATIVE` RELA entry, `base + addend`. It
//!   becomes a symbolic entry (`R_X86_64_64`, `R_AARCH64_ABS64`, `R_PPC64_ADDR64`) at the same
//!   `r_offset`: `S + A`, with `S` an undefined symbol the companion defines and `A` the
//!   container's offset from that symbol. The table keeps its size, so `.rela.dyn` is edited
//!   in place. The word in place is zeroed (RELA ignores it), so no stale pointer into bytes
//!   that leave the file remains. A wrapper without a relocation (a non-PIE object holding an
//!   absolute address) cannot be re-pointed: [`MoveError::NoRelocation`], the library stays
//!   whole. REL tables (32-bit objects) are out of scope ([`MoveError::Elf32`], [`MoveError::Rel`]).
//! * **RELR.** A wrapper whose pointer is a RELR entry (`-z pack-relative-relocs`) leaves the
//!   RELR encoding: the remaining places are re-encoded (address word, then 63-place bitmaps,
//!   as the linkers write it), which is never longer, `DT_RELRSZ` and the section size drop,
//!   and the freed tail is zeroed. A symbolic RELA entry for the place is appended to
//!   `.rela.dyn`, which then grows and moves into the new segment. glibc applies RELR before
//!   RELA, so a place left in RELR would be overwritten there and go unnoticed; other loaders
//!   need not, so the self-check decodes the output's RELR and refuses any re-pointed place in
//!   it. A re-encoding that would be longer is refused ([`MoveError::Relr`]).
//! * **`DT_RELACOUNT`.** glibc applies the first `DT_RELACOUNT` entries as RELATIVE without
//!   reading their type (`elf_dynamic_do_Rela`). A converted entry inside that prefix would be
//!   applied as `base + addend`, pointing into the host's hole, so the converted entries move
//!   to just after the prefix and the count drops by their number. Every other entry keeps its
//!   relative order.
//! * **One symbol per companion section.** Each companion gets one data block per vendor
//!   section (`.nv_fatbin`, `__nv_relfatbin`, `.hip_fatbin`) holding the moved containers in
//!   input order (8-aligned for CUDA, 4096 for HIP bundles), named by one symbol covering the
//!   block; the addend selects the container. Fewer symbols means fewer `.dynsym`, hash and
//!   version entries in the host, whatever the number of wrappers (cuBLASLt has 3,025).
//! * **Names.** `__wheelslim_dev_<companion soname, non-alphanumerics as _>_<n>`: the soname
//!   is unique in a wheel set, so two hosts loaded in one process never share a name, and a
//!   name is refused when the host already defines or references it ([`MoveError::NameTaken`]);
//!   with `DT_FLAGS` `SYMBOLIC` (cuBLASLt has it) a host-defined name would bind inside the host.
//!   The symbols are unversioned (`VER_NDX_GLOBAL`), global, `STT_OBJECT`.
//! * **`.gnu.hash` ordering.** `.gnu.hash` covers the tail of `.dynsym` from `symoffset` on,
//!   grouped by bucket; undefined symbols must come before it. The new symbols are inserted
//!   at `symoffset`: indices below stay, indices from it on move up by the number inserted, in
//!   every RELA entry of `DT_RELA` and `DT_JMPREL`. The `.gnu.hash` table keeps its size and
//!   place: `symoffset` and every non-empty bucket move up, the bloom filter and the chain
//!   hashes are those of the same defined symbols. Without `.gnu.hash` the new symbols are
//!   appended. `.hash` is rebuilt over the new `.dynsym` (same bucket count), and
//!   `.gnu.version` gets `VER_NDX_GLOBAL` entries at the same positions.
//! * **One new PT_LOAD, minimal writes.** `.dynsym`, `.dynstr` (old strings, then the new
//!   names and sonames, so every old offset stays valid), `.hash` and `.gnu.version` grow, so
//!   copies go into one new read-only PT_LOAD above everything (the patcher's placement rules,
//!   `place`); `.dynamic` stays in place when its DT_NULL slack takes the new DT_NEEDED
//!   entries (it moves into the new segment, then writable, otherwise). The old copies stay
//!   where they were, unreferenced; the section headers and DT_* tags point at the new ones.
//!   No other byte before the end of the loaded content moves.
//! * **Then the page cut.** The moved containers are dropped from their sections by the
//!   trim's shrinker ([`crate::elf::shrink::shrink`]) with the containers that stay unchanged,
//!   so the host loses whole pages and every other address stays. A converted relocation names
//!   an undefined symbol, which the shrinker accounts for as pointing outside the host.
//!
//! * **What else may point into a moved container.** Nothing: a relocation located in one, a
//!   RELATIVE or symbol-less relocation (or RELR place) targeting one that is not a wrapper's
//!   data field, or an exported `.dynsym` symbol inside one is refused by name
//!   ([`MoveError::Referenced`]) before anything is written. A wrapper with a NULL pointer and
//!   no relocation (torch has hundreds) is left alone. The range test is half-open, so an
//!   address equal to a container's end belongs to what follows.
//!
//! Before anything is returned, the host passes the layout checker and an independent goblin
//! re-parse: its new symbols undefined, as many relocations naming them as wrappers were
//! re-pointed, the new DT_NEEDED entries, only RELATIVE entries in the `DT_RELACOUNT` prefix,
//! and no re-pointed place left in RELR. Every companion passes the writer's own checks. The
//! same input always gives the same output.
//!
//! The placer (`place`) follows the patcher's rules (`elf::patch::layout`) but is its own
//! code: the patcher's layout is built around exactly `.dynstr` and `.dynamic` (its slide of
//! an executable's sections, its in-place and extend-the-last-load shortcuts), and this
//! rewrite moves up to six tables of a shared library at once.

mod place;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use super::{CompanionError, CompanionSpec, DataBlock, Export};
use crate::elf::consts::{
    DT_GNU_HASH, DT_HASH, DT_JMPREL, DT_NEEDED, DT_PLTRELSZ, DT_REL, DT_RELA, DT_RELASZ, DT_RELR,
    DT_RELRSZ, DT_RELSZ, DT_SONAME, DT_STRSZ, DT_STRTAB, DT_SYMTAB, DT_VERSYM, DYN_SIZE,
    EM_AARCH64, EM_PPC64, EM_X86_64, ET_DYN, ET_EXEC, SHT_DYNSYM, SHT_REL, SHT_RELA, SHT_RELR,
    SHT_SYMTAB, SYM_SIZE,
};
use crate::elf::file::{DynEntry, Elf64};
use crate::elf::shrink::{Block, SectionEdit, ShrinkMethod};
use crate::elf::{ElfError, Machine, raw};
use crate::fatbin::{cuda, hip};
use tables::Rela;

/// `DT_RELACOUNT`.
const DT_RELACOUNT: u64 = 0x6fff_fff9;
/// `STB_GLOBAL << 4 | STT_OBJECT`.
const GLOBAL_OBJECT: u8 = 0x11;
/// `VER_NDX_GLOBAL`.
const VER_GLOBAL: u16 = 1;

/// Wrapper sections and the magic of their records.
const WRAPPERS: [(&str, u32); 2] = [
    (".nvFatBinSegment", 0x466243B1),
    (".hipFatBinSegment", 0x48495046),
];
const WRAPPER_SIZE: u64 = 24;

/// A container to move: its section and where it starts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedBlock {
    /// `.nv_fatbin`, `__nv_relfatbin` or `.hip_fatbin`.
    pub section: String,
    /// Offset of the container from the section start, as `fatbin::cuda::parse_section` /
    /// `fatbin::hip::parse_section` report it.
    pub offset: u64,
    /// Its length (the parser's `len`).
    pub size: u64,
}

/// One companion to write: its soname (the host's new DT_NEEDED) and the containers it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionTarget {
    pub soname: String,
    pub blocks: Vec<MovedBlock>,
}

/// The rewritten host and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOutcome {
    pub host: Vec<u8>,
    /// `(soname, ELF bytes)`, in the order of the targets.
    pub companions: Vec<(String, Vec<u8>)>,
    /// Container bytes moved into companions.
    pub moved_bytes: u64,
    /// How much smaller the host file is (0 when the shrinker had to zero in place).
    pub host_bytes_removed: u64,
    pub notes: Vec<String>,
}

/// Why device code could not be moved. Each says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("not a 64-bit little-endian ELF shared library ({0}); only such hosts get companions")]
    NotElf(String),
    #[error(
        "32-bit ELF objects (REL relocations) are out of scope for companions: the library stays whole"
    )]
    Elf32,
    #[error("big-endian ELF objects are not rewritten: the library stays whole")]
    BigEndian,
    #[error(
        "e_machine {0} is not x86_64, aarch64 or ppc64le: companions are not written for it, the library stays whole"
    )]
    Machine(u16),
    #[error(
        "this is not a position-independent shared library (e_type {0}): its wrappers hold absolute addresses that cannot be re-pointed, the library stays whole"
    )]
    NotShared(u16),
    #[error(
        "wrapper {index} of `{section}` points at a moved container with an absolute address and no relocation: it cannot be re-pointed, the library stays whole (rebuild it as position-independent code, or do not move its containers)"
    )]
    NoRelocation { section: String, index: u64 },
    #[error(
        "wrapper {index} of `{section}` gets its pointer from a RELR relocation, and the RELR table would grow without it (it cannot move): the library stays whole (relink without -z pack-relative-relocs, or do not move its containers)"
    )]
    Relr { section: String, index: u64 },
    #[error(
        "the object has REL relocations (DT_REL): only RELA objects are rewritten, the library stays whole"
    )]
    Rel,
    #[error(
        "{0} points into a container that would move, and only wrapper pointers can be re-pointed: leave that container in the library"
    )]
    Referenced(String),
    #[error(
        "the library has no section `{0}` with contents; move only containers of its device sections"
    )]
    NoSection(String),
    #[error(
        "`{section}` has no container of {size:#x} bytes at offset {offset:#x}: name containers as the fatbin parser reports them"
    )]
    NotAContainer {
        section: String,
        offset: u64,
        size: u64,
    },
    #[error(
        "the container at {offset:#x} of `{section}` is moved twice; give each container to one companion"
    )]
    Twice { section: String, offset: u64 },
    #[error("`{section}` is not a device-code section (.nv_fatbin, __nv_relfatbin or .hip_fatbin)")]
    NotDevice { section: String },
    #[error("companion soname {0:?} is not usable: {1}")]
    Soname(String, &'static str),
    #[error("nothing to move: give at least one companion with at least one container")]
    Nothing,
    #[error(
        "symbol `{0}` is already used by the library, so a companion cannot define it (with DT_FLAGS SYMBOLIC it would bind inside the library); choose another companion soname"
    )]
    NameTaken(String),
    #[error("the library's tables cannot be read: {0}; run `wheelslim audit` on it")]
    Malformed(String),
    #[error("the library's layout cannot take the new tables: {0}; the library stays whole")]
    Layout(String),
    #[error("a companion could not be written: {0}")]
    Companion(#[from] CompanionError),
    #[error("the device sections could not be cut: {0}")]
    Shrink(String),
    #[error(
        "the rewritten library failed its own check, so it was not produced: {0}; this is a wheelslim bug, please report it"
    )]
    OutputCheck(String),
}

impl MoveError {
    /// What a user can do about it, for reports.
    pub fn hint(&self) -> &'static str {
        match self {
            MoveError::OutputCheck(_) | MoveError::Companion(_) | MoveError::Shrink(_) => {
                "this is a wheelslim bug: please report it with the library"
            }
            MoveError::NotAContainer { .. }
            | MoveError::Twice { .. }
            | MoveError::NotDevice { .. }
            | MoveError::NoSection(_)
            | MoveError::Soname(..)
            | MoveError::Nothing
            | MoveError::NameTaken(_) => {
                "this is a wheelslim bug: the planned move does not fit the library; please report it"
            }
            MoveError::Malformed(_) => {
                "the library could not be read as expected; run `wheelslim audit` on the wheel"
            }
            _ => {
                "the library stays whole: ship it as it is, trim it with --sm/--gfx, or rebuild it as position-independent code with RELA relocations"
            }
        }
    }
}

impl From<ElfError> for MoveError {
    fn from(e: ElfError) -> MoveError {
        MoveError::Malformed(e.to_string())
    }
}

/// `(RELATIVE, symbolic 64-bit, Machine)` of a host machine.
fn machine_types(m: u16) -> Result<(u32, u32, Machine), MoveError> {
    match m {
        EM_X86_64 => Ok((8, 1, Machine::X86_64)),
        EM_AARCH64 => Ok((1027, 257, Machine::Aarch64)),
        EM_PPC64 => Ok((22, 38, Machine::Ppc64le)),
        other => Err(MoveError::Machine(other)),
    }
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn to_usize(v: u64, what: &str) -> Result<usize, MoveError> {
    usize::try_from(v).map_err(|_| MoveError::Malformed(format!("{what} does not fit in memory")))
}

/// A moved container, as the host sees it and where it lands.
#[derive(Debug, Clone)]
struct Moving {
    /// Link-time address range in the host.
    start: u64,
    len: u64,
    /// Index of the new symbol (0-based among the new ones) and offset from it.
    symbol: usize,
    offset: u64,
}

/// A device section of the host with its parsed containers `(offset, len)`.
struct DevSection {
    name: String,
    addr: u64,
    bytes_off: u64,
    containers: Vec<(u64, u64)>,
    align: u64,
}

fn device_section(elf: &Elf64, name: &str) -> Result<DevSection, MoveError> {
    let align = match name {
        ".nv_fatbin" | "__nv_relfatbin" => 8,
        ".hip_fatbin" => 4096,
        _ => {
            return Err(MoveError::NotDevice {
                section: name.to_string(),
            });
        }
    };
    let s = elf
        .shdrs
        .iter()
        .skip(1)
        .find(|s| s.in_file() && s.is_alloc() && elf.section_name(s) == name)
        .ok_or_else(|| MoveError::NoSection(name.to_string()))?;
    let bytes = raw::bytes(elf.data, s.sh_offset, s.sh_size, name)?;
    let containers = if align == 8 {
        cuda::parse_section(bytes)
            .map_err(|e| MoveError::Malformed(format!("`{name}`: {e}")))?
            .iter()
            .map(|c| (u64_of(c.offset), u64_of(c.len)))
            .collect()
    } else {
        hip::parse_section(bytes)
            .map_err(|e| MoveError::Malformed(format!("`{name}`: {e}")))?
            .iter()
            .map(|b| (u64_of(b.offset), u64_of(b.len)))
            .collect()
    };
    Ok(DevSection {
        name: name.to_string(),
        addr: s.sh_addr,
        bytes_off: s.sh_offset,
        containers,
        align,
    })
}

/// The symbol name for section group `n` of companion `soname`.
fn symbol_name(soname: &str, n: usize) -> String {
    let clean: String = soname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__wheelslim_dev_{clean}_{n}")
}

fn check_soname(s: &str) -> Result<(), MoveError> {
    let why = if s.is_empty() {
        Some("it is empty")
    } else if s.contains('\0') {
        Some("it contains a NUL byte")
    } else if s.contains('/') {
        Some("a soname is a file name, not a path")
    } else {
        None
    };
    match why {
        Some(w) => Err(MoveError::Soname(s.to_string(), w)),
        None => Ok(()),
    }
}

/// A RELA table read through `.dynamic`: file offset and entries.
struct RelaTable {
    off: u64,
    entries: Vec<Rela>,
}

fn rela_table(
    elf: &Elf64,
    dynamic: &[DynEntry],
    addr_tag: u64,
    size_tag: u64,
) -> Result<Option<RelaTable>, MoveError> {
    let get = |t: u64| dynamic.iter().find(|e| e.tag == t).map(|e| e.val);
    let (Some(addr), Some(size)) = (get(addr_tag), get(size_tag)) else {
        return Ok(None);
    };
    if size == 0 {
        return Ok(None);
    }
    let off = elf.vaddr_to_offset(addr, size).ok_or_else(|| {
        MoveError::Malformed(format!(
            "the RELA table at {addr:#x} ({size:#x} bytes) is not file-backed"
        ))
    })?;
    let bytes = raw::bytes(elf.data, off, size, "a RELA table")?;
    Ok(Some(RelaTable {
        off,
        entries: tables::decode_all(bytes)?,
    }))
}

/// Moves the containers each target names out of `host` into a new companion per target.
#[allow(clippy::too_many_lines)] // split on branch longhost
pub fn move_device_code(
    host: &[u8],
    targets: &[CompanionTarget],
) -> Result<MoveOutcome, MoveError> {
    // ------------------------------------------------------------------ what the host is
    if !crate::elf::is_elf(host) {
        return Err(MoveError::NotElf("no ELF magic".into()));
    }
    match host.get(4) {
        Some(1) => return Err(MoveError::Elf32),
        Some(2) => {}
        _ => return Err(MoveError::NotElf("unknown ELF class".into())),
    }
    if host.get(5) != Some(&1) {
        return Err(MoveError::BigEndian);
    }
    let elf = Elf64::parse(host)?;
    let (relative, symbolic, machine) = machine_types(elf.header.e_machine)?;
    if elf.header.e_type == ET_EXEC || elf.header.e_type != ET_DYN {
        return Err(MoveError::NotShared(elf.header.e_type));
    }
    if elf.header.e_phnum == crate::elf::consts::PN_XNUM
        || (elf.header.e_shoff != 0 && elf.header.e_shnum == 0)
    {
        return Err(MoveError::Layout("extended header numbering".into()));
    }
    let dynamic = elf
        .dynamic()?
        .ok_or_else(|| MoveError::Malformed("no PT_DYNAMIC".into()))?;
    let get = |t: u64| dynamic.entries.iter().find(|e| e.tag == t).map(|e| e.val);
    if get(DT_REL).is_some() || get(DT_RELSZ).is_some_and(|s| s > 0) {
        return Err(MoveError::Rel);
    }

    // ------------------------------------------------------------------ the request
    if targets.is_empty() || targets.iter().all(|t| t.blocks.is_empty()) {
        return Err(MoveError::Nothing);
    }
    let strtab_addr = get(DT_STRTAB).ok_or_else(|| MoveError::Malformed("no DT_STRTAB".into()))?;
    let strsz = get(DT_STRSZ).ok_or_else(|| MoveError::Malformed("no DT_STRSZ".into()))?;
    let strtab_off = elf
        .vaddr_to_offset(strtab_addr, strsz)
        .ok_or_else(|| MoveError::Malformed("DT_STRTAB is not file-backed".into()))?;
    let dynstr = raw::bytes(host, strtab_off, strsz, "the dynamic string table")?;
    let string = |off: u64| -> Vec<u8> {
        let start = to_usize(off, "a string").unwrap_or(usize::MAX);
        dynstr
            .get(start..)
            .map(|s| s.split(|&c| c == 0).next().unwrap_or_default().to_vec())
            .unwrap_or_default()
    };
    let mut taken_sonames: BTreeSet<Vec<u8>> = dynamic
        .entries
        .iter()
        .filter(|e| e.tag == DT_NEEDED || e.tag == DT_SONAME)
        .map(|e| string(e.val))
        .collect();
    for t in targets {
        check_soname(&t.soname)?;
        if !taken_sonames.insert(t.soname.as_bytes().to_vec()) {
            return Err(MoveError::Soname(
                t.soname.clone(),
                "the library or another companion already uses that name",
            ));
        }
        if t.blocks.is_empty() {
            return Err(MoveError::Soname(
                t.soname.clone(),
                "the companion would hold no container",
            ));
        }
    }

    let mut devs: Vec<DevSection> = Vec::new();
    let mut moving: Vec<Moving> = Vec::new();
    // Per companion: its sections in first-appearance order, each with its block bytes.
    let mut comp_groups: Vec<Vec<(String, u64, Vec<u8>)>> = Vec::new();
    // Per new symbol: (companion index, group index).
    let mut new_symbols: Vec<(usize, usize, String)> = Vec::new();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut moved_bytes = 0u64;
    for (ti, t) in targets.iter().enumerate() {
        let mut groups: Vec<(String, u64, Vec<u8>)> = Vec::new();
        for b in &t.blocks {
            if !devs.iter().any(|d| d.name == b.section) {
                devs.push(device_section(&elf, &b.section)?);
            }
            let d = devs
                .iter()
                .find(|d| d.name == b.section)
                .ok_or_else(|| MoveError::NoSection(b.section.clone()))?;
            if !d.containers.contains(&(b.offset, b.size)) {
                return Err(MoveError::NotAContainer {
                    section: b.section.clone(),
                    offset: b.offset,
                    size: b.size,
                });
            }
            if !seen.insert((b.section.clone(), b.offset)) {
                return Err(MoveError::Twice {
                    section: b.section.clone(),
                    offset: b.offset,
                });
            }
            let gi = match groups.iter().position(|g| g.0 == b.section) {
                Some(i) => i,
                None => {
                    groups.push((b.section.clone(), d.align, Vec::new()));
                    let gi = groups.len().saturating_sub(1);
                    new_symbols.push((ti, gi, symbol_name(&t.soname, gi)));
                    gi
                }
            };
            let symbol = new_symbols
                .iter()
                .position(|s| s.0 == ti && s.1 == gi)
                .ok_or_else(|| MoveError::Malformed("symbol bookkeeping".into()))?;
            let g = groups
                .get_mut(gi)
                .ok_or_else(|| MoveError::Malformed("group".into()))?;
            while u64_of(g.2.len())
                .checked_rem(d.align)
                .is_some_and(|r| r != 0)
            {
                g.2.push(0);
            }
            let offset = u64_of(g.2.len());
            let bytes = raw::bytes(
                host,
                d.bytes_off.saturating_add(b.offset),
                b.size,
                "a container",
            )?;
            g.2.extend_from_slice(bytes);
            moved_bytes = moved_bytes.saturating_add(b.size);
            moving.push(Moving {
                start: d.addr.saturating_add(b.offset),
                len: b.size,
                symbol,
                offset,
            });
        }
        comp_groups.push(groups);
    }
    let inside = |addr: u64| -> Option<&Moving> {
        moving
            .iter()
            .find(|m| addr >= m.start && addr.saturating_sub(m.start) < m.len)
    };

    // ------------------------------------------------------------------ relocations
    let rela = rela_table(&elf, &dynamic.entries, DT_RELA, DT_RELASZ)?;
    let jmprel = rela_table(&elf, &dynamic.entries, DT_JMPREL, DT_PLTRELSZ)?;
    if let (Some(a), Some(j)) = (&rela, &jmprel) {
        let a_end = a
            .off
            .saturating_add(u64_of(a.entries.len()).saturating_mul(24));
        let j_end = j
            .off
            .saturating_add(u64_of(j.entries.len()).saturating_mul(24));
        if a.off < j_end && j.off < a_end {
            return Err(MoveError::Layout(
                "DT_JMPREL overlaps DT_RELA; such tables are not rewritten".into(),
            ));
        }
    }
    let relr: Vec<u64> = match (get(DT_RELR), get(DT_RELRSZ)) {
        (Some(addr), Some(size)) if size > 0 => {
            let off = elf
                .vaddr_to_offset(addr, size)
                .ok_or_else(|| MoveError::Malformed("DT_RELR is not file-backed".into()))?;
            tables::relr_addresses(raw::bytes(host, off, size, "the RELR table")?)?
        }
        _ => Vec::new(),
    };
    let read_word = |addr: u64| -> Result<Option<u64>, MoveError> {
        match elf.vaddr_to_offset(addr, 8) {
            Some(off) => Ok(Some(raw::u64_at(host, off)?)),
            None => Ok(None),
        }
    };

    // Wrappers: which RELA entry feeds each pointer into a moved container.
    let empty: Vec<Rela> = Vec::new();
    let rela_entries = rela.as_ref().map_or(&empty, |t| &t.entries);
    let mut convert: Vec<(usize, usize, i64)> = Vec::new(); // (rela index, new symbol, addend)
    let mut wrapper_fields: Vec<u64> = Vec::new();
    let mut wrappers_seen = 0usize;
    // (place, new symbol, addend, wrapper section, index) of wrappers fed by RELR.
    let mut relr_convert: Vec<(u64, usize, i64, &str, u64)> = Vec::new();
    for (sec, magic) in WRAPPERS {
        for s in elf
            .shdrs
            .iter()
            .skip(1)
            .filter(|s| s.in_file() && elf.section_name(s) == sec)
        {
            let count = s.sh_size / WRAPPER_SIZE;
            for i in 0..count {
                let rec = s.sh_offset.saturating_add(i.saturating_mul(WRAPPER_SIZE));
                if raw::u32_at(host, rec)? != magic {
                    continue;
                }
                wrappers_seen = wrappers_seen.saturating_add(1);
                let field = s
                    .sh_addr
                    .saturating_add(i.saturating_mul(WRAPPER_SIZE))
                    .saturating_add(8);
                let found = rela_entries
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.offset == field);
                match found {
                    Some((ri, r)) => {
                        if r.kind != relative {
                            continue; // already symbolic (or other): not ours to judge
                        }
                        let target = r.addend as u64;
                        if let Some(m) = inside(target) {
                            let addend = m.offset.saturating_add(target.saturating_sub(m.start));
                            let addend = i64::try_from(addend)
                                .map_err(|_| MoveError::Layout("addend".into()))?;
                            convert.push((ri, m.symbol, addend));
                            wrapper_fields.push(field);
                        }
                    }
                    None => {
                        let word = read_word(field)?.unwrap_or(0);
                        if let Some(m) = inside(word) {
                            if !relr.contains(&field) {
                                return Err(MoveError::NoRelocation {
                                    section: sec.to_string(),
                                    index: i,
                                });
                            }
                            // A RELR entry: it leaves the RELR encoding and a RELA entry
                            // takes its place.
                            let addend = m.offset.saturating_add(word.saturating_sub(m.start));
                            let addend = i64::try_from(addend)
                                .map_err(|_| MoveError::Layout("addend".into()))?;
                            relr_convert.push((field, m.symbol, addend, sec, i));
                            wrapper_fields.push(field);
                        }
                    }
                }
            }
        }
    }

    // Anything else that points into a moved container refuses the move.
    for (ri, r) in rela_entries.iter().enumerate() {
        if convert.iter().any(|c| c.0 == ri) {
            continue;
        }
        if inside(r.offset).is_some() {
            return Err(MoveError::Referenced(format!(
                "a relocation located at {:#x}",
                r.offset
            )));
        }
        if (r.kind == relative || r.sym == 0) && inside(r.addend as u64).is_some() {
            return Err(MoveError::Referenced(format!(
                "the relocation at {:#x} (type {})",
                r.offset, r.kind
            )));
        }
    }
    for &a in &relr {
        if !wrapper_fields.contains(&a)
            && let Some(w) = read_word(a)?
            && inside(w).is_some()
        {
            return Err(MoveError::Referenced(format!(
                "the RELR relocation at {a:#x}"
            )));
        }
    }

    // ------------------------------------------------------------------ symbols
    let symtab_addr = get(DT_SYMTAB).ok_or_else(|| MoveError::Malformed("no DT_SYMTAB".into()))?;
    let dynsym_index = elf
        .shdrs
        .iter()
        .position(|s| s.sh_type == SHT_DYNSYM && s.sh_addr == symtab_addr && s.in_file())
        .ok_or_else(|| {
            MoveError::Malformed("no `.dynsym` section header matches DT_SYMTAB".into())
        })?;
    let dynsym_sh = *elf
        .shdrs
        .get(dynsym_index)
        .ok_or_else(|| MoveError::Malformed("`.dynsym`".into()))?;
    if dynsym_sh.sh_entsize != SYM_SIZE || dynsym_sh.sh_size % SYM_SIZE != 0 {
        return Err(MoveError::Malformed("`.dynsym` entry size".into()));
    }
    let dynsym = raw::bytes(host, dynsym_sh.sh_offset, dynsym_sh.sh_size, "`.dynsym`")?;
    let nsyms = dynsym_sh.sh_size / SYM_SIZE;
    // Other relocation sections that index `.dynsym` must be the ones read through .dynamic.
    let in_tables = |off: u64| {
        [&rela, &jmprel].iter().any(|t| {
            t.as_ref().is_some_and(|t| {
                off >= t.off
                    && off
                        < t.off
                            .saturating_add(u64_of(t.entries.len()).saturating_mul(24))
            })
        })
    };
    for s in elf.shdrs.iter().skip(1) {
        if matches!(s.sh_type, SHT_RELA | SHT_REL)
            && usize::try_from(s.sh_link).ok() == Some(dynsym_index)
            && s.sh_size > 0
            && !in_tables(s.sh_offset)
        {
            return Err(MoveError::Layout(format!(
                "relocation section `{}` indexes `.dynsym` but is not listed in `.dynamic`",
                elf.section_name(s)
            )));
        }
    }
    let mut sym_names: Vec<Vec<u8>> = Vec::new();
    for k in 0..nsyms {
        let e = k.saturating_mul(SYM_SIZE);
        let name = raw::u32_at(dynsym, e)?;
        sym_names.push(string(u64::from(name)));
        // An exported symbol inside a moved container would name bytes that leave the host.
        let shndx = raw::u16_at(dynsym, e.saturating_add(6))?;
        let value = raw::u64_at(dynsym, e.saturating_add(8))?;
        if k > 0 && shndx != 0 && shndx < 0xff00 && inside(value).is_some() {
            return Err(MoveError::Referenced(format!(
                "the exported symbol `{}`",
                String::from_utf8_lossy(&string(u64::from(name)))
            )));
        }
    }
    let mut taken: BTreeSet<Vec<u8>> = sym_names.iter().cloned().collect();
    for s in elf.shdrs.iter().filter(|s| s.sh_type == SHT_SYMTAB) {
        let link = elf.shdrs.get(to_usize(u64::from(s.sh_link), "link")?);
        if let (Ok(syms), Some(strs)) = (
            raw::bytes(host, s.sh_offset, s.sh_size, ".symtab"),
            link.and_then(|l| raw::bytes(host, l.sh_offset, l.sh_size, ".strtab").ok()),
        ) {
            for e in syms.chunks_exact(24) {
                let n = e
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes);
                if let Some(name) = strs
                    .get(to_usize(u64::from(n), "name")?..)
                    .and_then(|s| s.split(|&c| c == 0).next())
                {
                    taken.insert(name.to_vec());
                }
            }
        }
    }
    for (_, _, name) in &new_symbols {
        if taken.contains(name.as_bytes()) {
            return Err(MoveError::NameTaken(name.clone()));
        }
    }

    let gnu = match get(DT_GNU_HASH) {
        Some(addr) => {
            let off = elf
                .vaddr_to_offset(addr, 16)
                .ok_or_else(|| MoveError::Malformed("DT_GNU_HASH is not file-backed".into()))?;
            let head = raw::bytes(host, off, 16, "`.gnu.hash`")?;
            let (_, symoffset, size) = tables::gnu_hash_shape(head, nsyms)?;
            let table = raw::bytes(host, off, size, "`.gnu.hash`")?;
            Some((off, symoffset, table))
        }
        None => None,
    };
    let k = u32::try_from(new_symbols.len())
        .map_err(|_| MoveError::Layout("too many symbols".into()))?;
    let nsyms32 =
        u32::try_from(nsyms).map_err(|_| MoveError::Malformed("too many symbols".into()))?;
    let at = gnu.as_ref().map_or(nsyms32, |g| g.1);

    // New `.dynstr`: old bytes, then symbol names, then sonames.
    let mut new_dynstr = dynstr.to_vec();
    let mut name_offs = Vec::new();
    for (_, _, name) in &new_symbols {
        name_offs.push(
            u32::try_from(new_dynstr.len())
                .map_err(|_| MoveError::Layout("`.dynstr` would outgrow 32-bit offsets".into()))?,
        );
        new_dynstr.extend_from_slice(name.as_bytes());
        new_dynstr.push(0);
    }
    let mut soname_offs = Vec::new();
    for t in targets {
        soname_offs.push(u64_of(new_dynstr.len()));
        new_dynstr.extend_from_slice(t.soname.as_bytes());
        new_dynstr.push(0);
    }

    // New `.dynsym`.
    let mut new_entries = Vec::new();
    for &n in &name_offs {
        new_entries.extend_from_slice(&n.to_le_bytes());
        new_entries.extend_from_slice(&[GLOBAL_OBJECT, 0, 0, 0]);
        new_entries.extend_from_slice(&[0u8; 16]);
    }
    let new_dynsym =
        tables::insert_entries(dynsym, 24, to_usize(u64::from(at), "index")?, &new_entries)?;
    let mut all_names: Vec<Vec<u8>> = sym_names.clone();
    let at_us = to_usize(u64::from(at), "index")?;
    for (j, (_, _, name)) in new_symbols.iter().enumerate() {
        all_names.insert(at_us.saturating_add(j), name.as_bytes().to_vec());
    }

    // `.gnu.version`, `.hash`, `.gnu.hash`.
    let versym = match get(DT_VERSYM) {
        Some(addr) => {
            let size = nsyms.saturating_mul(2);
            let off = elf
                .vaddr_to_offset(addr, size)
                .ok_or_else(|| MoveError::Malformed("DT_VERSYM is not file-backed".into()))?;
            let old = raw::bytes(host, off, size, "`.gnu.version`")?;
            let new: Vec<u8> = (0..k).flat_map(|_| VER_GLOBAL.to_le_bytes()).collect();
            Some((addr, tables::insert_entries(old, 2, at_us, &new)?))
        }
        None => None,
    };
    let sysv = match get(DT_HASH) {
        Some(addr) => {
            let off = elf
                .vaddr_to_offset(addr, 8)
                .ok_or_else(|| MoveError::Malformed("DT_HASH is not file-backed".into()))?;
            let nbucket = raw::u32_at(host, off)?;
            let nchain = raw::u32_at(host, off.saturating_add(4))?;
            if u64::from(nchain) != nsyms {
                return Err(MoveError::Malformed(format!(
                    "`.hash` has {nchain} chains for {nsyms} symbols"
                )));
            }
            let names: Vec<&[u8]> = all_names.iter().map(Vec::as_slice).collect();
            Some((addr, tables::sysv_rebuild(&names, nbucket)?))
        }
        None => None,
    };
    let new_gnu = match &gnu {
        Some((off, _, table)) => Some((*off, tables::shift_gnu_hash(table, k)?)),
        None => None,
    };

    // RELA edits.
    let relacount = get(DT_RELACOUNT);
    let mut rela_out: Option<(u64, Vec<Rela>, Option<u64>)> = None;
    if let Some(t) = &rela {
        let mut entries = t.entries.clone();
        tables::shift_symbols(&mut entries, at, k)?;
        let conv: Vec<(usize, u32, i64)> = convert
            .iter()
            .map(|&(ri, s, a)| {
                let idx = u32::try_from(s)
                    .ok()
                    .and_then(|s| at.checked_add(s))
                    .ok_or_else(|| MoveError::Layout("symbol index".into()))?;
                Ok((ri, idx, a))
            })
            .collect::<Result<_, MoveError>>()?;
        let (entries, count) = tables::convert_and_reorder(&entries, relacount, &conv, symbolic)?;
        rela_out = Some((t.off, entries, count));
    }
    // RELR wrappers: out of the RELR encoding, into RELA (after the RELACOUNT prefix, at the
    // end of the table, which then grows and moves into the new segment).
    let mut relr_out: Option<(u64, u64, Vec<u8>)> = None;
    if let Some(&(_, _, _, sec, index)) = relr_convert.first() {
        let Some((_, entries, _)) = rela_out.as_mut() else {
            return Err(MoveError::Layout(
                "a wrapper's pointer is a RELR relocation and the library has no DT_RELA table to take the symbolic relocation"
                    .into(),
            ));
        };
        for &(field, s, addend, _, _) in &relr_convert {
            let sym = u32::try_from(s)
                .ok()
                .and_then(|s| at.checked_add(s))
                .ok_or_else(|| MoveError::Layout("symbol index".into()))?;
            entries.push(Rela {
                offset: field,
                sym,
                kind: symbolic,
                addend,
            });
        }
        let fields: Vec<u64> = relr_convert.iter().map(|c| c.0).collect();
        let kept: Vec<u64> = relr
            .iter()
            .copied()
            .filter(|a| !fields.contains(a))
            .collect();
        let encoded = tables::relr_encode(&kept)?;
        let (addr, size) = match (get(DT_RELR), get(DT_RELRSZ)) {
            (Some(a), Some(s)) => (a, s),
            _ => return Err(MoveError::Malformed("DT_RELR without DT_RELRSZ".into())),
        };
        if u64_of(encoded.len()) > size {
            return Err(MoveError::Relr {
                section: sec.to_string(),
                index,
            });
        }
        relr_out = Some((addr, size, encoded));
    }
    let mut jmprel_out: Option<(u64, Vec<Rela>)> = None;
    if let Some(t) = &jmprel {
        let mut entries = t.entries.clone();
        tables::shift_symbols(&mut entries, at, k)?;
        jmprel_out = Some((t.off, entries));
    }

    // `.dynamic`: the new NEEDED entries after the last old one.
    let mut entries = dynamic.entries.clone();
    let after_needed = entries
        .iter()
        .rposition(|e| e.tag == DT_NEEDED)
        .map_or(0, |i| i.saturating_add(1));
    for (j, &off) in soname_offs.iter().enumerate() {
        entries.insert(
            after_needed.saturating_add(j),
            DynEntry {
                tag: DT_NEEDED,
                val: off,
            },
        );
    }
    let move_dynamic = entries.len().saturating_add(1) > dynamic.slots;

    // ------------------------------------------------------------------ placement
    let section_at = |addr: u64, ty: Option<u32>| {
        elf.shdrs
            .iter()
            .position(|s| s.in_file() && s.sh_addr == addr && ty.is_none_or(|t| s.sh_type == t))
    };
    let mut to_place: Vec<place::Table> = Vec::new();
    // Order: .dynsym, .hash, .gnu.version, .dynstr.
    to_place.push(place::Table {
        section: Some(dynsym_index),
        bytes: new_dynsym,
        align: 8,
        old_addr: dynsym_sh.sh_addr,
        old_size: dynsym_sh.sh_size,
    });
    let mut slot_hash = None;
    if let Some((addr, bytes)) = &sysv {
        slot_hash = Some(to_place.len());
        let sec = section_at(*addr, Some(crate::elf::consts::SHT_HASH));
        to_place.push(place::Table {
            section: sec,
            bytes: bytes.clone(),
            align: 8,
            old_addr: *addr,
            old_size: sec.and_then(|i| elf.shdrs.get(i)).map_or(0, |s| s.sh_size),
        });
    }
    let mut slot_versym = None;
    if let Some((addr, bytes)) = &versym {
        slot_versym = Some(to_place.len());
        let sec = section_at(*addr, Some(crate::elf::consts::SHT_GNU_VERSYM));
        to_place.push(place::Table {
            section: sec,
            bytes: bytes.clone(),
            align: 2,
            old_addr: *addr,
            old_size: sec.and_then(|i| elf.shdrs.get(i)).map_or(0, |s| s.sh_size),
        });
    }
    let mut slot_rela = None;
    if !relr_convert.is_empty()
        && let (Some((_, entries, _)), Some(addr)) = (&rela_out, get(DT_RELA))
    {
        slot_rela = Some(to_place.len());
        let sec = section_at(addr, Some(SHT_RELA));
        to_place.push(place::Table {
            section: sec,
            bytes: tables::encode_all(entries),
            align: 8,
            old_addr: addr,
            old_size: get(DT_RELASZ).unwrap_or(0),
        });
    }
    let slot_str = to_place.len();
    let str_sec = section_at(strtab_addr, Some(3));
    to_place.push(place::Table {
        section: str_sec,
        bytes: new_dynstr.clone(),
        align: 1,
        old_addr: strtab_addr,
        old_size: strsz,
    });
    // `.dynamic` is encoded once addresses are known; place it with a provisional encoding
    // of the right size when it moves.
    let dyn_slots = if move_dynamic {
        entries.len().saturating_add(1).saturating_add(4)
    } else {
        dynamic.slots
    };
    let dyn_section = elf
        .shdrs
        .iter()
        .position(|s| s.sh_type == crate::elf::consts::SHT_DYNAMIC && s.in_file());
    let provisional = vec![0u8; dyn_slots.saturating_mul(16)];
    let placed = place::place(
        &elf,
        &to_place,
        move_dynamic.then_some((dyn_section, provisional)),
    )?;
    let mut out = placed.data;
    let mut notes = placed.notes;
    let new_addr = |slot: usize| placed.at.get(slot).map(|a| a.0);
    let set = |entries: &mut Vec<DynEntry>, tag: u64, val: u64| {
        for e in entries.iter_mut().filter(|e| e.tag == tag) {
            e.val = val;
        }
    };
    if let Some(a) = new_addr(0) {
        set(&mut entries, DT_SYMTAB, a);
    }
    if let Some(a) = slot_hash.and_then(new_addr) {
        set(&mut entries, DT_HASH, a);
    }
    if let Some(a) = slot_versym.and_then(new_addr) {
        set(&mut entries, DT_VERSYM, a);
    }
    if let Some(a) = new_addr(slot_str) {
        set(&mut entries, DT_STRTAB, a);
    }
    set(&mut entries, DT_STRSZ, u64_of(new_dynstr.len()));
    if let (Some(a), Some((_, rel, _))) = (slot_rela.and_then(new_addr), &rela_out) {
        set(&mut entries, DT_RELA, a);
        set(
            &mut entries,
            DT_RELASZ,
            u64_of(rel.len()).saturating_mul(24),
        );
    }
    if let Some((_, _, encoded)) = &relr_out {
        set(&mut entries, DT_RELRSZ, u64_of(encoded.len()));
    }
    if let Some((_, _, Some(count))) = &rela_out {
        set(&mut entries, DT_RELACOUNT, *count);
    }
    let mut dyn_bytes = vec![0u8; dyn_slots.saturating_mul(16)];
    if entries.len() >= dyn_slots {
        return Err(MoveError::Layout("dynamic slots".into()));
    }
    for (i, e) in entries.iter().enumerate() {
        let o = u64_of(i).saturating_mul(DYN_SIZE);
        raw::put_u64(&mut dyn_bytes, o, e.tag)?;
        raw::put_u64(&mut dyn_bytes, o.saturating_add(8), e.val)?;
    }
    let dyn_file_off = match placed.dynamic_at {
        Some(a) => {
            // Its file offset: the new PT_LOAD maps it.
            let e = Elf64::parse(&out)?;
            e.vaddr_to_offset(a, 1)
                .ok_or_else(|| MoveError::Layout("moved `.dynamic`".into()))?
        }
        None => dynamic.offset,
    };
    raw::put(&mut out, dyn_file_off, &dyn_bytes)?;
    // In-place edits (all before P, so at their input offsets).
    if let Some((off, table)) = &new_gnu {
        raw::put(&mut out, *off, table)?;
    }
    if let Some((off, entries, _)) = &rela_out
        && slot_rela.is_none()
    {
        raw::put(&mut out, *off, &tables::encode_all(entries))?;
    }
    if let Some((addr, size, encoded)) = &relr_out {
        let off = elf
            .vaddr_to_offset(*addr, *size)
            .ok_or_else(|| MoveError::Malformed("DT_RELR is not file-backed".into()))?;
        let mut table = encoded.clone();
        table.resize(to_usize(*size, "the RELR table")?, 0);
        raw::put(&mut out, off, &table)?;
        // Its section header shrinks with DT_RELRSZ.
        let e = Elf64::parse(&out)?;
        if let Some(i) = e
            .shdrs
            .iter()
            .position(|s| s.sh_type == SHT_RELR && s.sh_addr == *addr)
        {
            let h = e
                .header
                .e_shoff
                .saturating_add(u64_of(i).saturating_mul(64))
                .saturating_add(32);
            raw::put_u64(&mut out, h, u64_of(encoded.len()))?;
        }
        notes.push(format!(
            "took {} wrapper pointer(s) out of the RELR table ({size:#x} → {:#x} bytes) and into RELA",
            relr_convert.len(),
            encoded.len()
        ));
    }
    if let Some((off, entries)) = &jmprel_out {
        raw::put(&mut out, *off, &tables::encode_all(entries))?;
    }
    for &field in &wrapper_fields {
        if let Some(off) = elf.vaddr_to_offset(field, 8) {
            raw::put_u64(&mut out, off, 0)?;
        }
    }
    notes.push(format!(
        "re-pointed {} of {wrappers_seen} wrapper(s) through {} new undefined symbol(s) at `.dynsym` index {at}; DT_RELACOUNT {} → {}",
        convert.len(),
        new_symbols.len(),
        relacount.map_or("none".to_string(), |c| c.to_string()),
        rela_out
            .as_ref()
            .and_then(|r| r.2)
            .map_or("none".to_string(), |c| c.to_string())
    ));
    for t in targets {
        notes.push(format!("added DT_NEEDED `{}`", t.soname));
    }
    crate::elf::check(&out).map_err(|e| MoveError::OutputCheck(e.to_string()))?;

    // ------------------------------------------------------------------ the page cut
    let mut edits = Vec::new();
    for d in &devs {
        let mut blocks = Vec::new();
        for &(off, len) in &d.containers {
            let moved = seen.contains(&(d.name.clone(), off));
            blocks.push(Block {
                old_offset: off,
                old_len: len,
                new_bytes: if moved {
                    Vec::new()
                } else {
                    raw::bytes(host, d.bytes_off.saturating_add(off), len, "a container")?.to_vec()
                },
                align: d.align,
            });
        }
        edits.push(SectionEdit {
            name: d.name.clone(),
            blocks,
        });
    }
    let shrunk = crate::elf::shrink::shrink(&out, &edits, true)
        .map_err(|e| MoveError::Shrink(e.to_string()))?;
    match &shrunk.method {
        ShrinkMethod::Cut { .. } => {}
        ShrinkMethod::Zeroed { reason } => notes.push(format!(
            "the moved containers were zeroed in place, not cut ({reason}): the library keeps its size but compresses smaller"
        )),
    }
    notes.extend(shrunk.notes.iter().cloned());
    let out = shrunk.data;

    // ------------------------------------------------------------------ companions
    let mut companions = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        let groups = comp_groups
            .get(ti)
            .ok_or_else(|| MoveError::Malformed("companion groups".into()))?;
        let blocks: Vec<DataBlock<'_>> = groups
            .iter()
            .enumerate()
            .map(|(gi, (section, align, bytes))| DataBlock {
                section: section.clone(),
                align: *align,
                bytes,
                symbols: vec![Export {
                    name: symbol_name(&t.soname, gi),
                    offset: 0,
                    size: u64_of(bytes.len()),
                }],
            })
            .collect();
        let c = super::write(&CompanionSpec {
            machine,
            soname: t.soname.clone(),
            blocks,
        })?;
        companions.push((t.soname.clone(), c.bytes));
    }

    verify(
        &out,
        &new_symbols,
        targets,
        convert.len().saturating_add(relr_convert.len()),
        nsyms,
        relative,
        &wrapper_fields,
    )?;
    let host_bytes_removed = u64_of(host.len()).saturating_sub(u64_of(out.len()));
    Ok(MoveOutcome {
        host: out,
        companions,
        moved_bytes,
        host_bytes_removed,
        notes,
    })
}

/// The independent re-parse: goblin sees the new symbols undefined, the new NEEDED entries,
/// and as many symbolic relocations naming the new symbols as wrappers were converted.
fn verify(
    out: &[u8],
    new_symbols: &[(usize, usize, String)],
    targets: &[CompanionTarget],
    converted: usize,
    old_nsyms: u64,
    relative: u32,
    fields: &[u64],
) -> Result<(), MoveError> {
    crate::elf::check(out).map_err(|e| MoveError::OutputCheck(e.to_string()))?;
    let g = goblin::elf::Elf::parse(out)
        .map_err(|e| MoveError::OutputCheck(format!("goblin cannot parse it: {e}")))?;
    let want = old_nsyms.saturating_add(u64_of(new_symbols.len()));
    if u64_of(g.dynsyms.len()) != want {
        return Err(MoveError::OutputCheck(format!(
            "goblin sees {} dynamic symbols, {want} were written",
            g.dynsyms.len()
        )));
    }
    let mut ours = BTreeSet::new();
    for (i, s) in g.dynsyms.iter().enumerate() {
        let name = g.dynstrtab.get_at(s.st_name).unwrap_or("");
        if new_symbols.iter().any(|n| n.2 == name) {
            if s.st_shndx != 0 {
                return Err(MoveError::OutputCheck(format!("`{name}` is not undefined")));
            }
            ours.insert(i);
        }
    }
    if ours.len() != new_symbols.len() {
        return Err(MoveError::OutputCheck(
            "goblin does not find every new symbol".into(),
        ));
    }
    let hits = g
        .dynrelas
        .iter()
        .filter(|r| ours.contains(&r.r_sym))
        .count();
    if hits != converted {
        return Err(MoveError::OutputCheck(format!(
            "{hits} relocations name the new symbols, {converted} were converted"
        )));
    }
    // The RELACOUNT prefix holds only RELATIVE entries, and no re-pointed place is still
    // relocated by RELR (glibc applies RELR first, so a leftover would go unnoticed there).
    let dynamic = g
        .dynamic
        .as_ref()
        .map(|d| d.dyns.as_slice())
        .unwrap_or_default();
    let tag = |t: u64| dynamic.iter().find(|d| d.d_tag == t).map(|d| d.d_val);
    if let Some(count) = tag(DT_RELACOUNT) {
        let prefix = to_usize(count, "DT_RELACOUNT")?;
        if g.dynrelas.iter().take(prefix).any(|r| r.r_type != relative) {
            return Err(MoveError::OutputCheck(
                "a non-RELATIVE entry lies in the DT_RELACOUNT prefix".into(),
            ));
        }
        if g.dynrelas.len() < prefix {
            return Err(MoveError::OutputCheck(
                "DT_RELACOUNT exceeds DT_RELA".into(),
            ));
        }
    }
    if let (Some(addr), Some(size)) = (tag(DT_RELR), tag(DT_RELRSZ))
        && size > 0
    {
        let elf = Elf64::parse(out)?;
        let off = elf
            .vaddr_to_offset(addr, size)
            .ok_or_else(|| MoveError::OutputCheck("DT_RELR is not file-backed".into()))?;
        let places = tables::relr_addresses(raw::bytes(out, off, size, "RELR")?)?;
        if let Some(f) = fields.iter().find(|f| places.contains(f)) {
            return Err(MoveError::OutputCheck(format!(
                "RELR still relocates the re-pointed wrapper pointer at {f:#x}"
            )));
        }
    }
    for t in targets {
        if !g.libraries.contains(&t.soname.as_str()) {
            return Err(MoveError::OutputCheck(format!(
                "goblin does not see DT_NEEDED `{}`",
                t.soname
            )));
        }
    }
    Ok(())
}
