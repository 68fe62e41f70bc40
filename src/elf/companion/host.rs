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
//! # Where each step lives
//!
//! [`move_device_code`] is the list of stages, one short function or struct each, in the
//! order above: reading and judging the host and the request (`Host`, `Selection`), the
//! wrappers and what else points into a moved container (`Relocs`, `Wrappers`,
//! `refuse_other_references`), the symbols (`DynSym`, `refuse_taken_names`), the grown and
//! shifted hash and version tables (`NewTables`), the RELA/RELR conversion and the
//! `DT_RELACOUNT` reorder (`RelaEdits`, `leave_relr`, over the table codecs of `tables`), the
//! new PT_LOAD and every write (`lay_out`, which only lists them: `place::Laid`), all of it
//! in `prepare`; then the companions (`write_companions`), the layout applied in the input's
//! own buffer and the shrinker cut from it (`cut_pages`), the buffer given back
//! (`Changes::undo`), and the re-parse (`verify`).
//!
//! **Memory.** A host of a GiB is held once: the layout is a list of edits, applied in the
//! input's buffer only for the cut and undone after it, so the cut copy is the one new buffer
//! as large as the host. The companions are written before it, one at a time, so a companion
//! and the cut host are never held together.
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
use crate::elf::file::{DynEntry, Elf64, SectionHeader};
use crate::elf::raw::Dynamic;
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
/// `SHT_STRTAB` (`.dynstr`'s section type).
const SHT_STRTAB: u32 = 3;

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
    /// Per companion, where each of its containers came from: `(offset in the host that was
    /// given, offset in the companion, length)`, so a writer can reuse the input's compressed
    /// bytes of what moved unchanged.
    pub placements: Vec<Vec<(u64, u64, u64)>>,
    /// Container bytes moved into companions.
    pub moved_bytes: u64,
    /// How much smaller the host file is (0 when the shrinker had to zero in place).
    pub host_bytes_removed: u64,
    pub notes: Vec<String>,
}

/// A host held without its largest device sections: their file ranges are left zero in the
/// bytes given (a library of a GiB is held without the device code it is made of), and are
/// read back from where the host is stored only as the companions and the cut need them.
pub trait Apart {
    /// The file ranges left zero, sorted.
    fn holes(&self) -> &[(u64, u64)];
    /// The containers `(offset from the section start, length)` of device section `name`,
    /// as they were parsed when the host was read; `None` when they are not known.
    fn containers(&self, name: &str) -> Option<Vec<(u64, u64)>>;
    /// Fills `out` with the host's bytes from file offset `at` (cheapest in rising order).
    fn read(&self, at: u64, out: &mut [u8]) -> Result<(), String>;
    /// Checks `host` (its bytes outside the holes, and each hole as it was read) against the
    /// checksum it was stored with.
    fn check(&self, host: &[u8]) -> Result<(), String>;
}

/// Whether `[off, off+len)` lies in one of `apart`'s holes (any overlap counts).
fn in_hole(apart: Option<&dyn Apart>, off: u64, len: u64) -> bool {
    apart.is_some_and(|a| {
        a.holes()
            .iter()
            .any(|&(s, e)| off < e && s < off.saturating_add(len.max(1)))
    })
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
    /// The caller of [`move_device_code_each`] stopped the move (it has its own error).
    #[error("the companions could not be written: {0}")]
    Stopped(String),
    #[error(
        "its device code could not be read back from the wheel: {0}; the library stays as it is"
    )]
    ReadBack(String),
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
            MoveError::ReadBack(_) => {
                "the wheel did not read back as it read the first time: if it changed while wheelslim ran, run again once it is complete; otherwise test it with `unzip -t`"
            }
            MoveError::Stopped(_) => "see the error of the companion that could not be written",
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

fn device_section(
    elf: &Elf64,
    name: &str,
    apart: Option<&dyn Apart>,
) -> Result<DevSection, MoveError> {
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
    let containers = if let Some(a) = apart.filter(|&a| in_hole(Some(a), s.sh_offset, s.sh_size)) {
        known_containers(a, name, s.sh_size)?
    } else if align == 8 {
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

/// The containers of a section left out of the host's bytes, as they were parsed when it
/// was read: in order, apart, and inside the section.
fn known_containers(a: &dyn Apart, name: &str, size: u64) -> Result<Vec<(u64, u64)>, MoveError> {
    let list = a.containers(name).ok_or_else(|| {
        MoveError::Malformed(format!(
            "`{name}` was left out and its containers are not known"
        ))
    })?;
    let mut end = 0u64;
    for &(off, len) in &list {
        if off < end || off.checked_add(len).is_none_or(|e| e > size) {
            return Err(MoveError::Malformed(format!(
                "`{name}`: the container at {off:#x} ({len:#x} bytes) is out of order or past the section"
            )));
        }
        end = off.saturating_add(len);
    }
    Ok(list)
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

impl RelaTable {
    /// The file offset just past its last entry.
    fn end(&self) -> u64 {
        self.off
            .saturating_add(u64_of(self.entries.len()).saturating_mul(24))
    }
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
///
/// The stages the module documentation describes, in order; each refuses before anything is
/// written.
pub fn move_device_code(
    host: &[u8],
    targets: &[CompanionTarget],
) -> Result<MoveOutcome, MoveError> {
    let mut companions = Vec::new();
    let mut buf = host.to_vec();
    let mut out = move_device_code_each(&mut buf, targets, &mut |soname, bytes, _, _| {
        companions.push((soname.to_string(), bytes));
        Ok(())
    })?;
    out.companions = companions;
    Ok(out)
}

/// What the stages before the page cut leave for it and for the checks after it, once the
/// host's bytes are no longer borrowed.
struct Prepared {
    sel: Selection,
    machine: Machine,
    relative: u32,
    /// The new host as edits over the input: the gap at `p` of `delta` bytes, then writes.
    p: usize,
    delta: usize,
    writes: Vec<(usize, Vec<u8>)>,
    notes: Vec<String>,
    /// Wrappers re-pointed (RELA and RELR), and their data fields.
    converted: usize,
    fields: Vec<u64>,
    old_nsyms: u64,
}

/// [`move_device_code`], handing each companion to `each` (soname, bytes, where its
/// containers came from as in [`MoveOutcome::placements`], and the input host they came
/// from) as soon as it is written and letting it go, so that one companion at a time is held
/// beside the host: for companions of hundreds of MB, written out as they come.
/// [`MoveOutcome::companions`] is then empty. An error from `each` stops the move
/// ([`MoveError::Stopped`] with its text).
///
/// The new host is laid out in `host`'s own buffer and cut from it, and `host` is given back
/// as it was before this returns, on success and on error alike: a library of a GiB is not
/// held twice.
pub fn move_device_code_each(
    host: &mut Vec<u8>,
    targets: &[CompanionTarget],
    each: &mut Each<'_>,
) -> Result<MoveOutcome, MoveError> {
    move_device_code_apart(host, targets, None, each)
}

/// [`move_device_code_each`] on a host held without some of its device sections
/// ([`Apart`]): each container is read back as the companions and the cut need it, in rising
/// order, and the host is checked against its stored checksum before the cut. The host
/// handed to `each` is then the bytes given, holes and all.
pub fn move_device_code_apart(
    host: &mut Vec<u8>,
    targets: &[CompanionTarget],
    apart: Option<&dyn Apart>,
    each: &mut Each<'_>,
) -> Result<MoveOutcome, MoveError> {
    let mut prep = prepare(host, targets, apart)?;
    let placements = write_companions(host, prep.machine, targets, &mut prep.sel, apart, each)?;
    let edits = kept_blocks(host, &prep.sel, apart)?;
    if let Some(a) = apart {
        a.check(host).map_err(MoveError::ReadBack)?;
    }
    let writes: Vec<(usize, &[u8])> = prep
        .writes
        .iter()
        .map(|(off, b)| (*off, b.as_slice()))
        .collect();
    let input_len = host.len();
    let changes = crate::changes::Changes::apply(host, prep.p, prep.delta, &writes)
        .ok_or_else(|| MoveError::Layout("an edit falls outside the new file".into()))?;
    let cut = crate::elf::check(host)
        .map_err(|e| MoveError::OutputCheck(e.to_string()))
        .and_then(|()| cut_pages(host, &edits, &mut prep.notes));
    changes.undo(host);
    let out = cut?;
    verify(
        &out,
        &prep.sel.new_symbols,
        targets,
        prep.converted,
        prep.old_nsyms,
        prep.relative,
        &prep.fields,
    )?;
    let host_bytes_removed = u64_of(input_len).saturating_sub(u64_of(out.len()));
    Ok(MoveOutcome {
        host: out,
        companions: Vec::new(),
        placements,
        moved_bytes: prep.sel.moved_bytes,
        host_bytes_removed,
        notes: prep.notes,
    })
}

/// Every stage up to the layout of the new host: reading and judging the host and the
/// request, the wrappers, the symbols, the grown tables and the relocation edits.
fn prepare(
    host: &[u8],
    targets: &[CompanionTarget],
    apart: Option<&dyn Apart>,
) -> Result<Prepared, MoveError> {
    let h = Host::open(host, targets)?;
    check_sonames(&h, targets)?;
    let sel = Selection::take(&h, targets, apart)?;
    let relocs = Relocs::read(&h)?;
    let wrappers = Wrappers::find(&h, &sel, &relocs)?;
    refuse_other_references(&h, &sel, &relocs, &wrappers)?;
    let dynsym = DynSym::read(&h, &sel, &relocs)?;
    refuse_taken_names(&h, &dynsym, &sel)?;
    let new = NewTables::build(&h, &dynsym, &sel, targets)?;
    let edits = RelaEdits::build(&h, &relocs, &wrappers, new.at, new.k)?;
    let (laid, mut notes) = lay_out(&h, &dynsym, &new, &edits, &wrappers)?;
    notes.push(format!(
        "re-pointed {} of {} wrapper(s) through {} new undefined symbol(s) at `.dynsym` index {}; DT_RELACOUNT {} → {}",
        wrappers.convert.len(),
        wrappers.seen,
        sel.new_symbols.len(),
        new.at,
        edits.relacount.map_or("none".to_string(), |c| c.to_string()),
        edits
            .rela
            .as_ref()
            .and_then(|r| r.count)
            .map_or("none".to_string(), |c| c.to_string())
    ));
    for t in targets {
        notes.push(format!("added DT_NEEDED `{}`", t.soname));
    }
    Ok(Prepared {
        machine: h.machine,
        relative: h.relative,
        p: laid.p,
        delta: laid.delta,
        writes: laid.writes,
        notes,
        converted: wrappers.convert.len().saturating_add(wrappers.relr.len()),
        fields: wrappers.fields,
        old_nsyms: dynsym.count,
        sel,
    })
}

// ---------------------------------------------------------------------- what the host is

/// The host as the rewrite reads it: a 64-bit little-endian RELA shared library of a known
/// machine, its `.dynamic` and its dynamic string table.
struct Host<'a> {
    bytes: &'a [u8],
    elf: Elf64<'a>,
    /// The machine's `R_*_RELATIVE` and symbolic 64-bit relocation types.
    relative: u32,
    symbolic: u32,
    machine: Machine,
    dynamic: Dynamic,
    strtab_addr: u64,
    strsz: u64,
    dynstr: &'a [u8],
}

impl<'a> Host<'a> {
    /// Reads the host and refuses what cannot get companions; an empty request is refused
    /// after the header checks and before the string table is read.
    fn open(host: &'a [u8], targets: &[CompanionTarget]) -> Result<Host<'a>, MoveError> {
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
        if dynamic.get(DT_REL).is_some() || dynamic.get(DT_RELSZ).is_some_and(|s| s > 0) {
            return Err(MoveError::Rel);
        }
        if targets.is_empty() || targets.iter().all(|t| t.blocks.is_empty()) {
            return Err(MoveError::Nothing);
        }
        let strtab_addr = dynamic
            .get(DT_STRTAB)
            .ok_or_else(|| MoveError::Malformed("no DT_STRTAB".into()))?;
        let strsz = dynamic
            .get(DT_STRSZ)
            .ok_or_else(|| MoveError::Malformed("no DT_STRSZ".into()))?;
        let strtab_off = elf
            .vaddr_to_offset(strtab_addr, strsz)
            .ok_or_else(|| MoveError::Malformed("DT_STRTAB is not file-backed".into()))?;
        let dynstr = raw::bytes(host, strtab_off, strsz, "the dynamic string table")?;
        Ok(Host {
            bytes: host,
            elf,
            relative,
            symbolic,
            machine,
            dynamic,
            strtab_addr,
            strsz,
            dynstr,
        })
    }

    fn get(&self, tag: u64) -> Option<u64> {
        self.dynamic.get(tag)
    }

    /// The dynamic string at `off` (empty when it is out of the table).
    fn string(&self, off: u64) -> Vec<u8> {
        let start = to_usize(off, "a string").unwrap_or(usize::MAX);
        self.dynstr
            .get(start..)
            .map(|s| s.split(|&c| c == 0).next().unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// The 64-bit word at link-time address `addr`, when the file holds it.
    fn read_word(&self, addr: u64) -> Result<Option<u64>, MoveError> {
        match self.elf.vaddr_to_offset(addr, 8) {
            Some(off) => Ok(Some(raw::u64_at(self.bytes, off)?)),
            None => Ok(None),
        }
    }
}

/// Each companion soname is usable, new to the host and to the other companions, and gets
/// at least one container.
fn check_sonames(h: &Host<'_>, targets: &[CompanionTarget]) -> Result<(), MoveError> {
    let mut taken_sonames: BTreeSet<Vec<u8>> = h
        .dynamic
        .entries
        .iter()
        .filter(|e| e.tag == DT_NEEDED || e.tag == DT_SONAME)
        .map(|e| h.string(e.val))
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
    Ok(())
}

// ---------------------------------------------------------------------- the request

/// One data block of a companion: its section, alignment and length. Its bytes (the moved
/// containers, each at its offset in [`Selection::origins`]) are gathered only when the
/// companion is written.
type Group = (String, u64, u64);

/// The containers to move, checked against the host's device sections, and what each
/// companion gets.
struct Selection {
    /// The device sections the request names, in first-appearance order.
    devs: Vec<DevSection>,
    moving: Vec<Moving>,
    /// Per companion: its sections in first-appearance order, each with its block bytes.
    groups: Vec<Vec<Group>>,
    /// Per new symbol: (companion index, group index, name).
    new_symbols: Vec<(usize, usize, String)>,
    /// `(section, offset)` of every moved container.
    seen: BTreeSet<(String, u64)>,
    moved_bytes: u64,
    /// Per companion, each container's `(group index, offset in the group, offset in the
    /// host, length)`.
    origins: Vec<Vec<(usize, u64, u64, u64)>>,
}

impl Selection {
    fn take(
        h: &Host<'_>,
        targets: &[CompanionTarget],
        apart: Option<&dyn Apart>,
    ) -> Result<Selection, MoveError> {
        let mut sel = Selection {
            devs: Vec::new(),
            moving: Vec::new(),
            groups: Vec::new(),
            new_symbols: Vec::new(),
            seen: BTreeSet::new(),
            moved_bytes: 0,
            origins: Vec::new(),
        };
        for (ti, t) in targets.iter().enumerate() {
            let mut groups: Vec<Group> = Vec::new();
            for b in &t.blocks {
                sel.take_block(h, ti, &t.soname, &mut groups, b, apart)?;
            }
            sel.groups.push(groups);
        }
        Ok(sel)
    }

    /// Checks container `b` of companion `ti` and appends it to its block (a new block, and
    /// a new symbol, for a section the companion has not had yet).
    fn take_block(
        &mut self,
        h: &Host<'_>,
        ti: usize,
        soname: &str,
        groups: &mut Vec<Group>,
        b: &MovedBlock,
        apart: Option<&dyn Apart>,
    ) -> Result<(), MoveError> {
        if !self.devs.iter().any(|d| d.name == b.section) {
            self.devs.push(device_section(&h.elf, &b.section, apart)?);
        }
        let d = self
            .devs
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
        if !self.seen.insert((b.section.clone(), b.offset)) {
            return Err(MoveError::Twice {
                section: b.section.clone(),
                offset: b.offset,
            });
        }
        let gi = match groups.iter().position(|g| g.0 == b.section) {
            Some(i) => i,
            None => {
                groups.push((b.section.clone(), d.align, 0));
                let gi = groups.len().saturating_sub(1);
                self.new_symbols.push((ti, gi, symbol_name(soname, gi)));
                gi
            }
        };
        let symbol = self
            .new_symbols
            .iter()
            .position(|s| s.0 == ti && s.1 == gi)
            .ok_or_else(|| MoveError::Malformed("symbol bookkeeping".into()))?;
        let g = groups
            .get_mut(gi)
            .ok_or_else(|| MoveError::Malformed("group".into()))?;
        let offset =
            g.2.checked_next_multiple_of(d.align.max(1))
                .ok_or_else(|| MoveError::Malformed("a companion block's length".into()))?;
        raw::bytes(
            h.bytes,
            d.bytes_off.saturating_add(b.offset),
            b.size,
            "a container",
        )?;
        g.2 = offset.saturating_add(b.size);
        while self.origins.len() <= ti {
            self.origins.push(Vec::new());
        }
        if let Some(o) = self.origins.get_mut(ti) {
            o.push((gi, offset, d.bytes_off.saturating_add(b.offset), b.size));
        }
        self.moved_bytes = self.moved_bytes.saturating_add(b.size);
        self.moving.push(Moving {
            start: d.addr.saturating_add(b.offset),
            len: b.size,
            symbol,
            offset,
        });
        Ok(())
    }

    /// The moved container holding link-time address `addr` (half-open ranges).
    fn inside(&self, addr: u64) -> Option<&Moving> {
        self.moving
            .iter()
            .find(|m| addr >= m.start && addr.saturating_sub(m.start) < m.len)
    }
}

// ---------------------------------------------------------------------- relocations

/// The host's relocation tables, read through `.dynamic`.
struct Relocs {
    rela: Option<RelaTable>,
    jmprel: Option<RelaTable>,
    /// The places RELR relocates.
    relr: Vec<u64>,
}

impl Relocs {
    fn read(h: &Host<'_>) -> Result<Relocs, MoveError> {
        let rela = rela_table(&h.elf, &h.dynamic.entries, DT_RELA, DT_RELASZ)?;
        let jmprel = rela_table(&h.elf, &h.dynamic.entries, DT_JMPREL, DT_PLTRELSZ)?;
        if let (Some(a), Some(j)) = (&rela, &jmprel)
            && a.off < j.end()
            && j.off < a.end()
        {
            return Err(MoveError::Layout(
                "DT_JMPREL overlaps DT_RELA; such tables are not rewritten".into(),
            ));
        }
        let relr: Vec<u64> = match (h.get(DT_RELR), h.get(DT_RELRSZ)) {
            (Some(addr), Some(size)) if size > 0 => {
                let off = h
                    .elf
                    .vaddr_to_offset(addr, size)
                    .ok_or_else(|| MoveError::Malformed("DT_RELR is not file-backed".into()))?;
                tables::relr_addresses(raw::bytes(h.bytes, off, size, "the RELR table")?)?
            }
            _ => Vec::new(),
        };
        Ok(Relocs { rela, jmprel, relr })
    }

    fn rela_entries(&self) -> &[Rela] {
        self.rela.as_ref().map_or(&[], |t| t.entries.as_slice())
    }

    /// Whether file offset `off` lies in `DT_RELA` or `DT_JMPREL`.
    fn holds(&self, off: u64) -> bool {
        [&self.rela, &self.jmprel]
            .iter()
            .any(|t| t.as_ref().is_some_and(|t| off >= t.off && off < t.end()))
    }
}

/// A wrapper whose pointer is a RELR place: it leaves RELR for a symbolic RELA entry.
struct RelrWrapper {
    field: u64,
    /// Index of the new symbol (0-based among the new ones) and the addend from it.
    symbol: usize,
    addend: i64,
    /// The wrapper section and record index, for [`MoveError::Relr`].
    section: &'static str,
    index: u64,
}

/// The wrappers whose pointer leads into a moved container, and how each is fed.
struct Wrappers {
    /// `(RELA index, new symbol, addend)` of wrappers fed by a RELATIVE RELA entry.
    convert: Vec<(usize, usize, i64)>,
    relr: Vec<RelrWrapper>,
    /// Link-time address of every re-pointed data field.
    fields: Vec<u64>,
    /// Wrapper records found (with the right magic), re-pointed or not.
    seen: usize,
}

impl Wrappers {
    fn find(h: &Host<'_>, sel: &Selection, relocs: &Relocs) -> Result<Wrappers, MoveError> {
        let mut w = Wrappers {
            convert: Vec::new(),
            relr: Vec::new(),
            fields: Vec::new(),
            seen: 0,
        };
        for (sec, magic) in WRAPPERS {
            for s in h
                .elf
                .shdrs
                .iter()
                .skip(1)
                .filter(|s| s.in_file() && h.elf.section_name(s) == sec)
            {
                let count = s.sh_size / WRAPPER_SIZE;
                for i in 0..count {
                    let rec = s.sh_offset.saturating_add(i.saturating_mul(WRAPPER_SIZE));
                    if raw::u32_at(h.bytes, rec)? != magic {
                        continue;
                    }
                    w.seen = w.seen.saturating_add(1);
                    let field = s
                        .sh_addr
                        .saturating_add(i.saturating_mul(WRAPPER_SIZE))
                        .saturating_add(8);
                    w.record(h, sel, relocs, field, sec, i)?;
                }
            }
        }
        Ok(w)
    }

    /// Wrapper `index` of `section`, data field at `field`: through which relocation its
    /// pointer is fed, when it points into a moved container.
    fn record(
        &mut self,
        h: &Host<'_>,
        sel: &Selection,
        relocs: &Relocs,
        field: u64,
        section: &'static str,
        index: u64,
    ) -> Result<(), MoveError> {
        let found = relocs
            .rela_entries()
            .iter()
            .enumerate()
            .find(|(_, r)| r.offset == field);
        if let Some((ri, r)) = found {
            if r.kind != h.relative {
                return Ok(()); // already symbolic (or other): not ours to judge
            }
            let target = r.addend as u64;
            if let Some(m) = sel.inside(target) {
                self.convert.push((ri, m.symbol, addend_from(m, target)?));
                self.fields.push(field);
            }
            return Ok(());
        }
        let word = h.read_word(field)?.unwrap_or(0);
        if let Some(m) = sel.inside(word) {
            if !relocs.relr.contains(&field) {
                return Err(MoveError::NoRelocation {
                    section: section.to_string(),
                    index,
                });
            }
            // A RELR entry: it leaves the RELR encoding and a RELA entry takes its place.
            self.relr.push(RelrWrapper {
                field,
                symbol: m.symbol,
                addend: addend_from(m, word)?,
                section,
                index,
            });
            self.fields.push(field);
        }
        Ok(())
    }
}

/// The addend from the new symbol of `m` that reaches `target`, inside `m`.
fn addend_from(m: &Moving, target: u64) -> Result<i64, MoveError> {
    let addend = m.offset.saturating_add(target.saturating_sub(m.start));
    i64::try_from(addend).map_err(|_| MoveError::Layout("addend".into()))
}

/// Anything but a wrapper pointer that points into a moved container refuses the move.
fn refuse_other_references(
    h: &Host<'_>,
    sel: &Selection,
    relocs: &Relocs,
    w: &Wrappers,
) -> Result<(), MoveError> {
    for (ri, r) in relocs.rela_entries().iter().enumerate() {
        if w.convert.iter().any(|c| c.0 == ri) {
            continue;
        }
        if sel.inside(r.offset).is_some() {
            return Err(MoveError::Referenced(format!(
                "a relocation located at {:#x}",
                r.offset
            )));
        }
        if (r.kind == h.relative || r.sym == 0) && sel.inside(r.addend as u64).is_some() {
            return Err(MoveError::Referenced(format!(
                "the relocation at {:#x} (type {})",
                r.offset, r.kind
            )));
        }
    }
    for &a in &relocs.relr {
        if !w.fields.contains(&a)
            && let Some(word) = h.read_word(a)?
            && sel.inside(word).is_some()
        {
            return Err(MoveError::Referenced(format!(
                "the RELR relocation at {a:#x}"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- symbols

/// The host's `.dynsym`: its section, bytes and every symbol's name.
struct DynSym<'a> {
    index: usize,
    sh: SectionHeader,
    bytes: &'a [u8],
    count: u64,
    names: Vec<Vec<u8>>,
}

impl<'a> DynSym<'a> {
    /// Reads `.dynsym` (the section DT_SYMTAB names), refuses relocation sections indexing
    /// it that `.dynamic` does not list (their indices would not be shifted) and exported
    /// symbols inside a moved container.
    fn read(h: &Host<'a>, sel: &Selection, relocs: &Relocs) -> Result<DynSym<'a>, MoveError> {
        let symtab_addr = h
            .get(DT_SYMTAB)
            .ok_or_else(|| MoveError::Malformed("no DT_SYMTAB".into()))?;
        let index = h
            .elf
            .shdrs
            .iter()
            .position(|s| s.sh_type == SHT_DYNSYM && s.sh_addr == symtab_addr && s.in_file())
            .ok_or_else(|| {
                MoveError::Malformed("no `.dynsym` section header matches DT_SYMTAB".into())
            })?;
        let sh = *h
            .elf
            .shdrs
            .get(index)
            .ok_or_else(|| MoveError::Malformed("`.dynsym`".into()))?;
        if sh.sh_entsize != SYM_SIZE || sh.sh_size % SYM_SIZE != 0 {
            return Err(MoveError::Malformed("`.dynsym` entry size".into()));
        }
        let bytes = raw::bytes(h.bytes, sh.sh_offset, sh.sh_size, "`.dynsym`")?;
        let count = sh.sh_size / SYM_SIZE;
        for s in h.elf.shdrs.iter().skip(1) {
            if matches!(s.sh_type, SHT_RELA | SHT_REL)
                && usize::try_from(s.sh_link).ok() == Some(index)
                && s.sh_size > 0
                && !relocs.holds(s.sh_offset)
            {
                return Err(MoveError::Layout(format!(
                    "relocation section `{}` indexes `.dynsym` but is not listed in `.dynamic`",
                    h.elf.section_name(s)
                )));
            }
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        for k in 0..count {
            let e = k.saturating_mul(SYM_SIZE);
            let name = raw::u32_at(bytes, e)?;
            names.push(h.string(u64::from(name)));
            // An exported symbol inside a moved container would name bytes that leave the host.
            let shndx = raw::u16_at(bytes, e.saturating_add(6))?;
            let value = raw::u64_at(bytes, e.saturating_add(8))?;
            if k > 0 && shndx != 0 && shndx < 0xff00 && sel.inside(value).is_some() {
                return Err(MoveError::Referenced(format!(
                    "the exported symbol `{}`",
                    String::from_utf8_lossy(&h.string(u64::from(name)))
                )));
            }
        }
        Ok(DynSym {
            index,
            sh,
            bytes,
            count,
            names,
        })
    }
}

/// A new symbol's name may be neither in `.dynsym` nor in any `.symtab`.
fn refuse_taken_names(h: &Host<'_>, dynsym: &DynSym<'_>, sel: &Selection) -> Result<(), MoveError> {
    let mut taken: BTreeSet<Vec<u8>> = dynsym.names.iter().cloned().collect();
    for s in h.elf.shdrs.iter().filter(|s| s.sh_type == SHT_SYMTAB) {
        let link = h.elf.shdrs.get(to_usize(u64::from(s.sh_link), "link")?);
        if let (Ok(syms), Some(strs)) = (
            raw::bytes(h.bytes, s.sh_offset, s.sh_size, ".symtab"),
            link.and_then(|l| raw::bytes(h.bytes, l.sh_offset, l.sh_size, ".strtab").ok()),
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
    for (_, _, name) in &sel.new_symbols {
        if taken.contains(name.as_bytes()) {
            return Err(MoveError::NameTaken(name.clone()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- the grown tables

/// The symbol tables with the new symbols: `.dynstr`, `.dynsym`, `.gnu.version` and `.hash`
/// grown (placed in the new segment), `.gnu.hash` shifted (written in place).
struct NewTables {
    /// The `.dynsym` index of the first new symbol (`symoffset`, or the old count).
    at: u32,
    /// How many new symbols.
    k: u32,
    dynstr: Vec<u8>,
    /// `.dynstr` offsets of the companion sonames, for DT_NEEDED.
    soname_offs: Vec<u64>,
    dynsym: Vec<u8>,
    /// `(address of the old table, new table)`.
    versym: Option<(u64, Vec<u8>)>,
    sysv: Option<(u64, Vec<u8>)>,
    /// `(file offset, shifted table)`.
    gnu: Option<(u64, Vec<u8>)>,
}

impl NewTables {
    fn build(
        h: &Host<'_>,
        dynsym: &DynSym<'_>,
        sel: &Selection,
        targets: &[CompanionTarget],
    ) -> Result<NewTables, MoveError> {
        let gnu = read_gnu_hash(h, dynsym.count)?;
        let k = u32::try_from(sel.new_symbols.len())
            .map_err(|_| MoveError::Layout("too many symbols".into()))?;
        let nsyms32 = u32::try_from(dynsym.count)
            .map_err(|_| MoveError::Malformed("too many symbols".into()))?;
        let at = gnu.as_ref().map_or(nsyms32, |g| g.symoffset);
        let dynstr = GrownDynstr::build(h.dynstr, sel, targets)?;

        let mut new_entries = Vec::new();
        for &n in &dynstr.name_offs {
            new_entries.extend_from_slice(&n.to_le_bytes());
            new_entries.extend_from_slice(&[GLOBAL_OBJECT, 0, 0, 0]);
            new_entries.extend_from_slice(&[0u8; 16]);
        }
        let at_us = to_usize(u64::from(at), "index")?;
        let new_dynsym = tables::insert_entries(dynsym.bytes, 24, at_us, &new_entries)?;
        let mut all_names: Vec<Vec<u8>> = dynsym.names.clone();
        for (j, (_, _, name)) in sel.new_symbols.iter().enumerate() {
            all_names.insert(at_us.saturating_add(j), name.as_bytes().to_vec());
        }
        let versym = grown_versym(h, dynsym.count, at_us, k)?;
        let sysv = rebuilt_hash(h, dynsym.count, &all_names)?;
        let new_gnu = match &gnu {
            Some(g) => Some((g.off, tables::shift_gnu_hash(g.table, k)?)),
            None => None,
        };
        Ok(NewTables {
            at,
            k,
            dynstr: dynstr.bytes,
            soname_offs: dynstr.soname_offs,
            dynsym: new_dynsym,
            versym,
            sysv,
            gnu: new_gnu,
        })
    }
}

/// The host's `.gnu.hash`: file offset, `symoffset` and the whole table.
struct OldGnuHash<'a> {
    off: u64,
    symoffset: u32,
    table: &'a [u8],
}

/// `.gnu.hash`, when the host has one.
fn read_gnu_hash<'a>(h: &Host<'a>, nsyms: u64) -> Result<Option<OldGnuHash<'a>>, MoveError> {
    let Some(addr) = h.get(DT_GNU_HASH) else {
        return Ok(None);
    };
    let off = h
        .elf
        .vaddr_to_offset(addr, 16)
        .ok_or_else(|| MoveError::Malformed("DT_GNU_HASH is not file-backed".into()))?;
    let head = raw::bytes(h.bytes, off, 16, "`.gnu.hash`")?;
    let (_, symoffset, size) = tables::gnu_hash_shape(head, nsyms)?;
    let table = raw::bytes(h.bytes, off, size, "`.gnu.hash`")?;
    Ok(Some(OldGnuHash {
        off,
        symoffset,
        table,
    }))
}

/// New `.dynstr`: old bytes (every old offset stays valid), then the symbol names, then the
/// sonames, with the names' and the sonames' offsets.
struct GrownDynstr {
    bytes: Vec<u8>,
    name_offs: Vec<u32>,
    soname_offs: Vec<u64>,
}

impl GrownDynstr {
    fn build(
        old: &[u8],
        sel: &Selection,
        targets: &[CompanionTarget],
    ) -> Result<GrownDynstr, MoveError> {
        let mut dynstr = old.to_vec();
        let mut name_offs = Vec::new();
        for (_, _, name) in &sel.new_symbols {
            name_offs.push(
                u32::try_from(dynstr.len()).map_err(|_| {
                    MoveError::Layout("`.dynstr` would outgrow 32-bit offsets".into())
                })?,
            );
            dynstr.extend_from_slice(name.as_bytes());
            dynstr.push(0);
        }
        let mut soname_offs = Vec::new();
        for t in targets {
            soname_offs.push(u64_of(dynstr.len()));
            dynstr.extend_from_slice(t.soname.as_bytes());
            dynstr.push(0);
        }
        Ok(GrownDynstr {
            bytes: dynstr,
            name_offs,
            soname_offs,
        })
    }
}

/// `.gnu.version` with `VER_NDX_GLOBAL` for the `k` new symbols at index `at`.
fn grown_versym(
    h: &Host<'_>,
    nsyms: u64,
    at: usize,
    k: u32,
) -> Result<Option<(u64, Vec<u8>)>, MoveError> {
    let Some(addr) = h.get(DT_VERSYM) else {
        return Ok(None);
    };
    let size = nsyms.saturating_mul(2);
    let off = h
        .elf
        .vaddr_to_offset(addr, size)
        .ok_or_else(|| MoveError::Malformed("DT_VERSYM is not file-backed".into()))?;
    let old = raw::bytes(h.bytes, off, size, "`.gnu.version`")?;
    let new: Vec<u8> = (0..k).flat_map(|_| VER_GLOBAL.to_le_bytes()).collect();
    Ok(Some((addr, tables::insert_entries(old, 2, at, &new)?)))
}

/// `.hash` rebuilt over the new `.dynsym` names, with the old bucket count.
fn rebuilt_hash(
    h: &Host<'_>,
    nsyms: u64,
    all_names: &[Vec<u8>],
) -> Result<Option<(u64, Vec<u8>)>, MoveError> {
    let Some(addr) = h.get(DT_HASH) else {
        return Ok(None);
    };
    let off = h
        .elf
        .vaddr_to_offset(addr, 8)
        .ok_or_else(|| MoveError::Malformed("DT_HASH is not file-backed".into()))?;
    let nbucket = raw::u32_at(h.bytes, off)?;
    let nchain = raw::u32_at(h.bytes, off.saturating_add(4))?;
    if u64::from(nchain) != nsyms {
        return Err(MoveError::Malformed(format!(
            "`.hash` has {nchain} chains for {nsyms} symbols"
        )));
    }
    let names: Vec<&[u8]> = all_names.iter().map(Vec::as_slice).collect();
    Ok(Some((addr, tables::sysv_rebuild(&names, nbucket)?)))
}

// ---------------------------------------------------------------------- relocation edits

/// `DT_RELA` after the edits: file offset, entries, and the new `DT_RELACOUNT`.
struct NewRela {
    off: u64,
    entries: Vec<Rela>,
    count: Option<u64>,
}

/// The RELR table after the wrappers left it: address, old size, new encoding.
struct NewRelr {
    addr: u64,
    size: u64,
    encoded: Vec<u8>,
}

/// The relocation tables with symbol indices shifted and the wrappers converted.
struct RelaEdits {
    /// The input's `DT_RELACOUNT`.
    relacount: Option<u64>,
    rela: Option<NewRela>,
    relr: Option<NewRelr>,
    /// `DT_JMPREL`: file offset and shifted entries.
    jmprel: Option<(u64, Vec<Rela>)>,
}

impl RelaEdits {
    fn build(
        h: &Host<'_>,
        relocs: &Relocs,
        w: &Wrappers,
        at: u32,
        k: u32,
    ) -> Result<RelaEdits, MoveError> {
        let relacount = h.get(DT_RELACOUNT);
        let mut rela = None;
        if let Some(t) = &relocs.rela {
            let mut entries = t.entries.clone();
            tables::shift_symbols(&mut entries, at, k)?;
            let conv: Vec<(usize, u32, i64)> = w
                .convert
                .iter()
                .map(|&(ri, s, a)| Ok((ri, new_index(at, s)?, a)))
                .collect::<Result<_, MoveError>>()?;
            let (entries, count) =
                tables::convert_and_reorder(&entries, relacount, &conv, h.symbolic)?;
            rela = Some(NewRela {
                off: t.off,
                entries,
                count,
            });
        }
        let relr = leave_relr(h, relocs, w, at, rela.as_mut())?;
        let mut jmprel = None;
        if let Some(t) = &relocs.jmprel {
            let mut entries = t.entries.clone();
            tables::shift_symbols(&mut entries, at, k)?;
            jmprel = Some((t.off, entries));
        }
        Ok(RelaEdits {
            relacount,
            rela,
            relr,
            jmprel,
        })
    }
}

/// The `.dynsym` index of new symbol `s`.
fn new_index(at: u32, s: usize) -> Result<u32, MoveError> {
    u32::try_from(s)
        .ok()
        .and_then(|s| at.checked_add(s))
        .ok_or_else(|| MoveError::Layout("symbol index".into()))
}

/// RELR wrappers: out of the RELR encoding (re-encoded without them, never longer), into
/// RELA (appended after the RELACOUNT prefix, at the end of the table, which then grows
/// and moves into the new segment).
fn leave_relr(
    h: &Host<'_>,
    relocs: &Relocs,
    w: &Wrappers,
    at: u32,
    rela: Option<&mut NewRela>,
) -> Result<Option<NewRelr>, MoveError> {
    let Some(first) = w.relr.first() else {
        return Ok(None);
    };
    let Some(rela) = rela else {
        return Err(MoveError::Layout(
            "a wrapper's pointer is a RELR relocation and the library has no DT_RELA table to take the symbolic relocation"
                .into(),
        ));
    };
    for r in &w.relr {
        rela.entries.push(Rela {
            offset: r.field,
            sym: new_index(at, r.symbol)?,
            kind: h.symbolic,
            addend: r.addend,
        });
    }
    let fields: Vec<u64> = w.relr.iter().map(|r| r.field).collect();
    let kept: Vec<u64> = relocs
        .relr
        .iter()
        .copied()
        .filter(|a| !fields.contains(a))
        .collect();
    let encoded = tables::relr_encode(&kept)?;
    let (addr, size) = match (h.get(DT_RELR), h.get(DT_RELRSZ)) {
        (Some(a), Some(s)) => (a, s),
        _ => return Err(MoveError::Malformed("DT_RELR without DT_RELRSZ".into())),
    };
    if u64_of(encoded.len()) > size {
        return Err(MoveError::Relr {
            section: first.section.to_string(),
            index: first.index,
        });
    }
    Ok(Some(NewRelr {
        addr,
        size,
        encoded,
    }))
}

// ---------------------------------------------------------------------- placement

/// Where the placed tables are in [`place::place`]'s list (`.dynsym` is always first).
struct Slots {
    hash: Option<usize>,
    versym: Option<usize>,
    rela: Option<usize>,
    dynstr: usize,
}

/// `.dynamic` after the edits: its entries (the new DT_NEEDED after the last old one), how
/// many slots it has, and whether it moves (its DT_NULL slack cannot take them).
struct NewDynamic {
    entries: Vec<DynEntry>,
    slots: usize,
    moves: bool,
}

impl NewDynamic {
    fn build(h: &Host<'_>, soname_offs: &[u64]) -> NewDynamic {
        let mut entries = h.dynamic.entries.clone();
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
        let moves = entries.len().saturating_add(1) > h.dynamic.slots;
        // A moved `.dynamic` gets four spare slots.
        let slots = if moves {
            entries.len().saturating_add(1).saturating_add(4)
        } else {
            h.dynamic.slots
        };
        NewDynamic {
            entries,
            slots,
            moves,
        }
    }

    fn set(&mut self, tag: u64, val: u64) {
        for e in self.entries.iter_mut().filter(|e| e.tag == tag) {
            e.val = val;
        }
    }

    fn encode(&self) -> Result<Vec<u8>, MoveError> {
        let mut bytes = vec![0u8; self.slots.saturating_mul(16)];
        if self.entries.len() >= self.slots {
            return Err(MoveError::Layout("dynamic slots".into()));
        }
        for (i, e) in self.entries.iter().enumerate() {
            let o = u64_of(i).saturating_mul(DYN_SIZE);
            raw::put_u64(&mut bytes, o, e.tag)?;
            raw::put_u64(&mut bytes, o.saturating_add(8), e.val)?;
        }
        Ok(bytes)
    }
}

/// Places the grown tables in the new PT_LOAD, points `.dynamic` at them and writes every
/// edit: the new host before the page cut, as edits over the input, and the notes so far.
fn lay_out<'b>(
    h: &Host<'b>,
    dynsym: &DynSym<'_>,
    new: &NewTables,
    edits: &RelaEdits,
    w: &Wrappers,
) -> Result<(place::Laid<'b>, Vec<String>), MoveError> {
    let mut dynamic = NewDynamic::build(h, &new.soname_offs);
    let (to_place, slots) = tables_to_place(h, dynsym, new, edits, w);
    let dyn_section = h
        .elf
        .shdrs
        .iter()
        .position(|s| s.sh_type == crate::elf::consts::SHT_DYNAMIC && s.in_file());
    // `.dynamic` is encoded once addresses are known; it is placed with a provisional
    // encoding of the right size when it moves.
    let provisional = vec![0u8; dynamic.slots.saturating_mul(16)];
    let placed = place::place(
        &h.elf,
        &to_place,
        dynamic.moves.then_some((dyn_section, provisional)),
    )?;
    set_tags(&mut dynamic, &placed, &slots, new, edits);
    let dyn_bytes = dynamic.encode()?;
    let mut out = placed.laid;
    let mut notes = placed.notes;
    // A moved `.dynamic` is where the new PT_LOAD maps it.
    let dyn_file_off = placed.dynamic_at.map_or(h.dynamic.offset, |(_, off)| off);
    out.put(dyn_file_off, &dyn_bytes)?;
    write_in_place(h, &mut out, new, edits, slots.rela.is_none(), w, &mut notes)?;
    Ok((out, notes))
}

/// The tables that move into the new segment, in order: `.dynsym`, `.hash`, `.gnu.version`,
/// `DT_RELA` (only when RELR wrappers made it grow), `.dynstr`.
fn tables_to_place(
    h: &Host<'_>,
    dynsym: &DynSym<'_>,
    new: &NewTables,
    edits: &RelaEdits,
    w: &Wrappers,
) -> (Vec<place::Table>, Slots) {
    let elf = &h.elf;
    let section_at = |addr: u64, ty: u32| {
        elf.shdrs
            .iter()
            .position(|s| s.in_file() && s.sh_addr == addr && s.sh_type == ty)
    };
    let size_of = |sec: Option<usize>| sec.and_then(|i| elf.shdrs.get(i)).map_or(0, |s| s.sh_size);
    let mut to_place = vec![place::Table {
        section: Some(dynsym.index),
        bytes: new.dynsym.clone(),
        align: 8,
        old_addr: dynsym.sh.sh_addr,
        old_size: dynsym.sh.sh_size,
    }];
    let mut slot = |table: place::Table| {
        to_place.push(table);
        to_place.len().saturating_sub(1)
    };
    let hash = new.sysv.as_ref().map(|(addr, bytes)| {
        let sec = section_at(*addr, crate::elf::consts::SHT_HASH);
        slot(place::Table {
            section: sec,
            bytes: bytes.clone(),
            align: 8,
            old_addr: *addr,
            old_size: size_of(sec),
        })
    });
    let versym = new.versym.as_ref().map(|(addr, bytes)| {
        let sec = section_at(*addr, crate::elf::consts::SHT_GNU_VERSYM);
        slot(place::Table {
            section: sec,
            bytes: bytes.clone(),
            align: 2,
            old_addr: *addr,
            old_size: size_of(sec),
        })
    });
    let mut rela = None;
    if !w.relr.is_empty()
        && let (Some(r), Some(addr)) = (&edits.rela, h.get(DT_RELA))
    {
        rela = Some(slot(place::Table {
            section: section_at(addr, SHT_RELA),
            bytes: tables::encode_all(&r.entries),
            align: 8,
            old_addr: addr,
            old_size: h.get(DT_RELASZ).unwrap_or(0),
        }));
    }
    let dynstr = slot(place::Table {
        section: section_at(h.strtab_addr, SHT_STRTAB),
        bytes: new.dynstr.clone(),
        align: 1,
        old_addr: h.strtab_addr,
        old_size: h.strsz,
    });
    let slots = Slots {
        hash,
        versym,
        rela,
        dynstr,
    };
    (to_place, slots)
}

/// Points the DT_* tags of `.dynamic` at the placed tables and gives them their new sizes.
fn set_tags(
    dynamic: &mut NewDynamic,
    placed: &place::Placed,
    slots: &Slots,
    new: &NewTables,
    edits: &RelaEdits,
) {
    let new_addr = |slot: usize| placed.at.get(slot).map(|a| a.0);
    if let Some(a) = new_addr(0) {
        dynamic.set(DT_SYMTAB, a);
    }
    if let Some(a) = slots.hash.and_then(new_addr) {
        dynamic.set(DT_HASH, a);
    }
    if let Some(a) = slots.versym.and_then(new_addr) {
        dynamic.set(DT_VERSYM, a);
    }
    if let Some(a) = new_addr(slots.dynstr) {
        dynamic.set(DT_STRTAB, a);
    }
    dynamic.set(DT_STRSZ, u64_of(new.dynstr.len()));
    if let (Some(a), Some(rela)) = (slots.rela.and_then(new_addr), &edits.rela) {
        dynamic.set(DT_RELA, a);
        dynamic.set(DT_RELASZ, u64_of(rela.entries.len()).saturating_mul(24));
    }
    if let Some(relr) = &edits.relr {
        dynamic.set(DT_RELRSZ, u64_of(relr.encoded.len()));
    }
    if let Some(count) = edits.rela.as_ref().and_then(|r| r.count) {
        dynamic.set(DT_RELACOUNT, count);
    }
}

/// The edits that stay in place (all before the end of the loaded content, so at their
/// input offsets): `.gnu.hash`, `DT_RELA` when it did not move, the re-encoded RELR table
/// and its section size, `DT_JMPREL`, and the zeroed wrapper words.
fn write_in_place(
    h: &Host<'_>,
    out: &mut place::Laid<'_>,
    new: &NewTables,
    edits: &RelaEdits,
    rela_stays: bool,
    w: &Wrappers,
    notes: &mut Vec<String>,
) -> Result<(), MoveError> {
    if let Some((off, table)) = &new.gnu {
        out.put(*off, table)?;
    }
    if let Some(rela) = &edits.rela
        && rela_stays
    {
        out.put(rela.off, &tables::encode_all(&rela.entries))?;
    }
    if let Some(relr) = &edits.relr {
        write_relr(h, out, relr)?;
        notes.push(format!(
            "took {} wrapper pointer(s) out of the RELR table ({:#x} → {:#x} bytes) and into RELA",
            w.relr.len(),
            relr.size,
            relr.encoded.len()
        ));
    }
    if let Some((off, entries)) = &edits.jmprel {
        out.put(*off, &tables::encode_all(entries))?;
    }
    for &field in &w.fields {
        if let Some(off) = h.elf.vaddr_to_offset(field, 8) {
            out.put_u64(off, 0)?;
        }
    }
    Ok(())
}

/// Writes the re-encoded RELR table over the old one (the freed tail zeroed) and shrinks its
/// section header with DT_RELRSZ.
fn write_relr(h: &Host<'_>, out: &mut place::Laid<'_>, relr: &NewRelr) -> Result<(), MoveError> {
    let off = h
        .elf
        .vaddr_to_offset(relr.addr, relr.size)
        .ok_or_else(|| MoveError::Malformed("DT_RELR is not file-backed".into()))?;
    let mut table = relr.encoded.clone();
    table.resize(to_usize(relr.size, "the RELR table")?, 0);
    out.put(off, &table)?;
    // The section headers keep their indices; the table may have moved (`e_shoff`).
    if let Some(i) = h
        .elf
        .shdrs
        .iter()
        .position(|s| s.sh_type == SHT_RELR && s.sh_addr == relr.addr)
    {
        let hdr = out
            .u64_at(40)?
            .saturating_add(u64_of(i).saturating_mul(64))
            .saturating_add(32);
        out.put_u64(hdr, u64_of(relr.encoded.len()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------- the page cut

/// The shrinker's edit of each device section the request names: the moved containers
/// dropped, the others as they are (their bytes copied out of the input host before it is
/// laid out).
fn kept_blocks(
    host: &[u8],
    sel: &Selection,
    apart: Option<&dyn Apart>,
) -> Result<Vec<SectionEdit>, MoveError> {
    let mut edits = Vec::new();
    for d in &sel.devs {
        let mut blocks = Vec::new();
        for &(off, len) in &d.containers {
            let moved = sel.seen.contains(&(d.name.clone(), off));
            let at = d.bytes_off.saturating_add(off);
            blocks.push(Block {
                old_offset: off,
                old_len: len,
                new_bytes: if moved {
                    Vec::new()
                } else {
                    container_bytes(host, at, len, apart)?
                },
                align: d.align,
            });
        }
        edits.push(SectionEdit {
            name: d.name.clone(),
            blocks,
        });
    }
    Ok(edits)
}

/// Drops the moved containers from their sections of the laid-out host `out` with the
/// shrinker (`edits`, from [`kept_blocks`]), so the host loses whole pages and every other
/// address stays.
fn cut_pages(
    out: &[u8],
    edits: &[SectionEdit],
    notes: &mut Vec<String>,
) -> Result<Vec<u8>, MoveError> {
    let shrunk = crate::elf::shrink::shrink(out, edits, true)
        .map_err(|e| MoveError::Shrink(e.to_string()))?;
    match &shrunk.method {
        ShrinkMethod::Cut { .. } => {}
        ShrinkMethod::Zeroed { reason } => notes.push(format!(
            "the moved containers were zeroed in place, not cut ({reason}): the library keeps its size but compresses smaller"
        )),
    }
    notes.extend(shrunk.notes.iter().cloned());
    Ok(shrunk.data)
}

// ---------------------------------------------------------------------- companions

/// The bytes of a companion's data blocks: each group's containers at their offsets
/// (`origins`: group index, offset in the group, offset in the host, length), zero between
/// them. A group whose containers lie in the host exactly as in the group, with only zeros
/// between them, is the host's own slice, borrowed (the usual case: neighbours packed
/// together); the others are copied into a buffer of their own.
fn gather<'h>(
    host: &'h [u8],
    groups: &[Group],
    origins: &[(usize, u64, u64, u64)],
) -> Result<Vec<std::borrow::Cow<'h, [u8]>>, MoveError> {
    let mut data = Vec::with_capacity(groups.len());
    for (gi, (_, _, len)) in groups.iter().enumerate() {
        let mine: Vec<(u64, u64, u64)> = origins
            .iter()
            .filter(|o| o.0 == gi)
            .map(|&(_, at, from, len)| (at, from, len))
            .collect();
        match borrowed(host, *len, &mine) {
            Some(slice) => data.push(std::borrow::Cow::Borrowed(slice)),
            None => data.push(std::borrow::Cow::Owned(copied(host, *len, &mine)?)),
        }
    }
    Ok(data)
}

/// Zero blocks of each group's length, for a companion whose containers are filled in after
/// it is written ([`fill_placed`]).
fn zeros(groups: &[Group]) -> Result<Vec<std::borrow::Cow<'static, [u8]>>, MoveError> {
    groups
        .iter()
        .map(|g| {
            Ok(std::borrow::Cow::Owned(vec![
                0u8;
                to_usize(
                    g.2,
                    "a companion block"
                )?
            ]))
        })
        .collect()
}

/// Puts each container into the written companion `file` (`placed`: offset in the host,
/// offset in the companion, length), read back in rising order of where it lies in the host.
fn fill_placed(
    host: &[u8],
    file: &mut [u8],
    placed: &[(u64, u64, u64)],
    apart: Option<&dyn Apart>,
) -> Result<(), MoveError> {
    let mut order = placed.to_vec();
    order.sort_unstable();
    for (from, at, len) in order {
        let dst = usize::try_from(at)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(at, l)| file.get_mut(at..at.checked_add(l)?))
            .ok_or_else(|| MoveError::Malformed("a container's place in its companion".into()))?;
        read_container(host, from, dst, apart)?;
    }
    Ok(())
}

/// Fills `dst` with the host's bytes from file offset `at`: from the bytes given, or read
/// back when they lie in one of `apart`'s holes.
fn read_container(
    host: &[u8],
    at: u64,
    dst: &mut [u8],
    apart: Option<&dyn Apart>,
) -> Result<(), MoveError> {
    let len = u64_of(dst.len());
    match apart.filter(|&a| in_hole(Some(a), at, len)) {
        Some(a) => a.read(at, dst).map_err(MoveError::ReadBack),
        None => {
            dst.copy_from_slice(raw::bytes(host, at, len, "a container")?);
            Ok(())
        }
    }
}

/// The `len` bytes of a container at file offset `at` of the host: from the bytes given, or
/// read back when it lies in a hole.
fn container_bytes(
    host: &[u8],
    at: u64,
    len: u64,
    apart: Option<&dyn Apart>,
) -> Result<Vec<u8>, MoveError> {
    let mut out = vec![0u8; to_usize(len, "a container")?];
    read_container(host, at, &mut out, apart)?;
    Ok(out)
}

/// The host's slice that is exactly a group of `len` bytes holding `mine` (offset in the
/// group, offset in the host, length): every container at the same distance from the slice's
/// start as in the group, and nothing but zeros elsewhere in it.
fn borrowed<'h>(host: &'h [u8], len: u64, mine: &[(u64, u64, u64)]) -> Option<&'h [u8]> {
    let &(at0, from0, _) = mine.first()?;
    let base = from0.checked_sub(at0)?;
    if mine
        .iter()
        .any(|&(at, from, _)| from.checked_sub(at) != Some(base))
    {
        return None;
    }
    let slice = raw::bytes(host, base, len, "a companion block").ok()?;
    let mut covered: Vec<(u64, u64)> = mine
        .iter()
        .map(|&(at, _, l)| (at, at.saturating_add(l)))
        .collect();
    covered.sort_unstable();
    let mut pos = 0u64;
    for (s, e) in covered.into_iter().chain(std::iter::once((len, len))) {
        let gap = slice.get(usize::try_from(pos).ok()?..usize::try_from(s.max(pos)).ok()?)?;
        if gap.iter().any(|&b| b != 0) {
            return None;
        }
        pos = pos.max(e);
    }
    Some(slice)
}

/// A group of `len` bytes holding `mine` (offset in the group, offset in the host, length),
/// copied out of the host, zero between the containers.
fn copied(host: &[u8], len: u64, mine: &[(u64, u64, u64)]) -> Result<Vec<u8>, MoveError> {
    let n = usize::try_from(len)
        .map_err(|_| MoveError::Malformed("a companion block's length".into()))?;
    let mut d = vec![0u8; n];
    for &(at, from, len) in mine {
        let bytes = raw::bytes(host, from, len, "a container")?;
        let dst = usize::try_from(at)
            .ok()
            .and_then(|at| d.get_mut(at..at.checked_add(bytes.len())?))
            .ok_or_else(|| MoveError::Malformed("a container's place in its companion".into()))?;
        dst.copy_from_slice(bytes);
    }
    Ok(d)
}

/// Where each companion's containers came from (see [`MoveOutcome::placements`]).
type Placements = Vec<Vec<(u64, u64, u64)>>;

/// What takes each companion as it is written: soname, bytes, where its containers came
/// from, and the input host they came from.
pub type Each<'a> = dyn FnMut(&str, Vec<u8>, &[(u64, u64, u64)], &[u8]) -> Result<(), String> + 'a;

/// One companion per target: a data block per section group, each named by its symbol,
/// handed to `each` as soon as it is written. Each target's groups go once its companion is
/// written, so one copy of the moved containers is held at a time.
fn write_companions(
    host: &[u8],
    machine: Machine,
    targets: &[CompanionTarget],
    sel: &mut Selection,
    apart: Option<&dyn Apart>,
    each: &mut Each<'_>,
) -> Result<Placements, MoveError> {
    let mut placements = Vec::new();
    let all_groups = std::mem::take(&mut sel.groups);
    if all_groups.len() != targets.len() {
        return Err(MoveError::Malformed("companion groups".into()));
    }
    for ((ti, t), groups) in targets.iter().enumerate().zip(all_groups) {
        let origins = sel.origins.get(ti).map_or(&[][..], Vec::as_slice);
        // Containers read back from the archive go straight into the companion's file once
        // it is laid out: it is written around blocks of zeros (pages never touched), so one
        // copy of them is held, not two.
        let data = match apart {
            Some(_) => zeros(&groups)?,
            None => gather(host, &groups, origins)?,
        };
        let blocks: Vec<DataBlock<'_>> = groups
            .iter()
            .zip(&data)
            .enumerate()
            .map(|(gi, ((section, align, _), bytes))| DataBlock {
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
        let placed: Vec<(u64, u64, u64)> = sel
            .origins
            .get(ti)
            .into_iter()
            .flatten()
            .filter_map(|&(gi, in_group, from, len)| {
                let at = c.blocks.get(gi)?.offset.checked_add(in_group)?;
                Some((from, at, len))
            })
            .collect();
        drop(data);
        let mut bytes = c.bytes;
        if apart.is_some() {
            fill_placed(host, &mut bytes, &placed, apart)?;
        }
        each(&t.soname, bytes, &placed, host).map_err(MoveError::Stopped)?;
        placements.push(placed);
    }
    Ok(placements)
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
