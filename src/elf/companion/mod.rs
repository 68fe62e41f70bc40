//! Writes minimal *companion* shared objects: ELF64 `ET_DYN` files whose only content is device
//! code (CUDA fatbin containers, clang offload bundles) and the dynamic symbols that name it, so
//! that a host library can point its fatbin wrappers at the companion through `ld.so`
//! (issue 14). The host rewrite that moves containers out of a library and re-points its
//! wrappers is [`move_device_code`] (`host.rs`).
//!
//! # Layout
//!
//! ```text
//! file offset = vaddr                                   (first PT_LOAD, R, from offset 0)
//! [ELF header][4 program headers][.hash][.gnu.hash][.dynsym][.dynstr][device sections...]
//! dynamic_offset, vaddr = dynamic_offset + page         (second PT_LOAD, RW)
//! [.dynamic]
//! not loaded
//! [.shstrtab][section headers]
//! ```
//!
//! Why this shape:
//!
//! * **One read-only PT_LOAD from offset 0.** It maps the ELF header and the program header
//!   table (so `dl_iterate_phdr` users see them in memory, as with any linker output), the symbol
//!   and hash tables the loader reads, and the device code. Nothing is executable: a companion
//!   holds no host code, so it gets no `PF_X` segment at all, and file offset equals vaddr.
//! * **A separate writable PT_LOAD for `.dynamic` only.** glibc releases before 2.35 add the
//!   load base to the address entries of `.dynamic` in place while they load a library, which
//!   faults on a read-only mapping; every glibc a manylinux wheel may meet (2.17 and up) must
//!   load the file, so `.dynamic`
//!   sits in a writable segment of its own, with `PT_DYNAMIC` pointing at it. Its file offset
//!   directly follows the data (no padding in the file); its vaddr is that offset plus one page,
//!   so the two segments never share a page in memory and `p_offset ≡ p_vaddr (mod p_align)`.
//! * **`PT_GNU_STACK` without `PF_X`.** Without one, glibc assumes the library needs an
//!   executable stack: it makes the whole process's stack executable when the companion loads,
//!   or refuses the library where that is forbidden (SELinux policies, recent glibc defaults).
//! * **Page size per machine.** `p_align` is the largest page the machine's kernels use:
//!   4 KiB on x86_64; 64 KiB on aarch64 and ppc64le, whose kernels are often built with 64 KiB
//!   pages (a file aligned for 4 KiB fails to load there with "ELF load command address/offset
//!   not page-aligned"). No block may ask for more alignment than a page, since the load base is
//!   only page aligned.
//! * **Both hash tables.** glibc, musl and most tools prefer `.gnu.hash` (`DT_GNU_HASH`), but
//!   some readers and older loaders only know the System V `.hash` (`DT_HASH`), and `readelf
//!   -D`/`eu-elflint` check each table they find. Both cost a few bytes per symbol, so both are
//!   written, over the same `.dynsym`. `.gnu.hash` requires the symbols it hashes to be the tail
//!   of `.dynsym`, grouped by bucket: every exported symbol is defined, so all of them are
//!   hashed (only the null symbol 0 precedes them) and they are ordered by bucket, then name.
//! * **No symbol versions, no relocations, no NEEDED.** The companion depends on nothing and
//!   its symbols are unversioned, so `.gnu.version*` and `DT_RELA` would be empty; leaving them
//!   out keeps the file trivially correct.
//! * **Section headers** name each device section as the vendor does (`.nv_fatbin`,
//!   `.hip_fatbin`), because `cuobjdump` and `readelf` find device code by section name.
//!
//! Symbols are `STT_OBJECT`/`STB_GLOBAL`/default visibility with their size, defined in the
//! section that holds their block; at least one is required, or no host could refer to the
//! companion. The same input always gives the same bytes. Before returning, the writer runs
//! the crate's layout checker ([`super::check()`]) on its output and re-reads every symbol with
//! goblin, as every other writer of this crate does.

// A panic while writing a wheel corrupts its output: no indexing, unwrapping or unchecked
// arithmetic here (tests opt out).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod hash;
mod host;
#[cfg(test)]
mod tests;

pub use host::{
    Apart, CompanionTarget, MoveError, MoveOutcome, MovedBlock, move_device_code,
    move_device_code_apart, move_device_code_each,
};

use super::{ElfError, Machine};
use hash::{bucket_count, gnu_hash, gnu_table, rem, sysv_table};

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
const SYM_SIZE: u64 = 24;
const DYN_SIZE: u64 = 16;
const PHNUM: u16 = 4;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const SHT_PROGBITS: u32 = 1;
const SHT_STRTAB: u32 = 3;
const SHT_HASH: u32 = 5;
const SHT_DYNAMIC: u32 = 6;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_HASH: u32 = 0x6fff_fff6;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;

const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_SONAME: u64 = 14;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

/// `STB_GLOBAL << 4 | STT_OBJECT`.
const GLOBAL_OBJECT: u8 = 0x11;

/// Section names this writer uses for its own tables; a device block may not take one.
const RESERVED: [&str; 6] = [
    ".hash",
    ".gnu.hash",
    ".dynsym",
    ".dynstr",
    ".dynamic",
    ".shstrtab",
];

/// What to write: the machine, the soname, and the device-code blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanionSpec<'a> {
    /// `X86_64`, `Aarch64` or `Ppc64le`.
    pub machine: Machine,
    /// `DT_SONAME`, the name host libraries will list in `DT_NEEDED`.
    pub soname: String,
    /// Placed in this order; blocks naming the same section share it, in the order given.
    pub blocks: Vec<DataBlock<'a>>,
}

/// Bytes to place in a section of the companion, with the symbols that name parts of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataBlock<'a> {
    /// The section, as the vendor names it: `.nv_fatbin`, `__nv_relfatbin`, `.hip_fatbin`.
    pub section: String,
    /// Alignment of the block's address (a power of two, at most the machine's page).
    /// CUDA containers need 8, HIP bundles 4096.
    pub align: u64,
    pub bytes: &'a [u8],
    pub symbols: Vec<Export>,
}

/// A dynamic symbol naming `size` bytes at `offset` inside its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// A written companion and where its pieces landed (addresses relative to the load base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Companion {
    pub bytes: Vec<u8>,
    /// One per input block, in input order.
    pub blocks: Vec<PlacedBlock>,
    /// One per exported symbol, in `.dynsym` order (index 1 first).
    pub symbols: Vec<PlacedSymbol>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedBlock {
    pub section: String,
    /// File offset; equal to the vaddr, since the read-only segment maps the file from 0.
    pub offset: u64,
    pub vaddr: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedSymbol {
    pub name: String,
    /// `st_value`.
    pub vaddr: u64,
    pub size: u64,
    /// Index in `.dynsym`.
    pub index: u32,
}

/// Why a companion could not be written. Every one is a wrong request from the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompanionError {
    #[error("companions are written for x86_64, aarch64 and ppc64le, not {0}")]
    Machine(Machine),
    #[error("soname {0:?} is not usable: {1}")]
    Soname(String, &'static str),
    #[error("section name {0:?} is not usable: {1}")]
    SectionName(String, &'static str),
    #[error("symbol name {0:?} is not usable: {1}")]
    SymbolName(String, &'static str),
    #[error("the companion exports no symbol, so no host library could refer to its contents")]
    NoSymbols,
    #[error("symbol `{0}` is exported twice")]
    DuplicateSymbol(String),
    #[error(
        "block {block} of `{section}` asks for alignment {align}: it must be a power of two no larger than the {page}-byte page"
    )]
    Alignment {
        section: String,
        block: usize,
        align: u64,
        page: u64,
    },
    #[error("block {block} of `{section}` holds no bytes")]
    EmptyBlock { section: String, block: usize },
    #[error(
        "symbol `{name}` ({size} bytes at offset {offset}) does not lie inside its {len}-byte block"
    )]
    SymbolOutside {
        name: String,
        offset: u64,
        size: u64,
        len: u64,
    },
    #[error("the companion would be too large to address ({0})")]
    TooLarge(&'static str),
    /// The written bytes failed the layout check or the re-parse; nothing was produced.
    #[error("the written companion failed its own check, so it was not produced: {0}")]
    OutputCheck(String),
}

impl CompanionError {
    pub fn hint(&self) -> &'static str {
        "this is a wheelslim bug: the planned companion library is not valid; please report it"
    }
}

impl From<CompanionError> for ElfError {
    fn from(e: CompanionError) -> ElfError {
        ElfError::InvalidEdit(e.to_string())
    }
}

/// `(e_machine, e_flags, page size)` of a host machine.
fn machine_facts(m: Machine) -> Result<(u16, u32, u64), CompanionError> {
    match m {
        Machine::X86_64 => Ok((62, 0, 0x1000)),
        Machine::Aarch64 => Ok((183, 0, 0x10000)),
        // ELFv2 ABI (e_flags 2), as every little-endian ppc64 toolchain writes it.
        Machine::Ppc64le => Ok((21, 2, 0x10000)),
        other => Err(CompanionError::Machine(other)),
    }
}

/// The page size companions for `m` are aligned to, or `None` for a machine not written for.
pub fn page_size(m: Machine) -> Option<u64> {
    machine_facts(m).ok().map(|f| f.2)
}

// ------------------------------------------------------------------------- checked arithmetic

pub(super) fn add(a: u64, b: u64) -> Result<u64, CompanionError> {
    a.checked_add(b)
        .ok_or(CompanionError::TooLarge("an offset overflows"))
}

fn mul(a: u64, b: u64) -> Result<u64, CompanionError> {
    a.checked_mul(b)
        .ok_or(CompanionError::TooLarge("a table size overflows"))
}

/// `v` rounded up to `align` (a power of two).
fn align_up(v: u64, align: u64) -> Result<u64, CompanionError> {
    let mask = align
        .checked_sub(1)
        .ok_or(CompanionError::TooLarge("zero alignment"))?;
    Ok(add(v, mask)? & !mask)
}

pub(super) fn len64(n: usize) -> Result<u64, CompanionError> {
    u64::try_from(n).map_err(|_| CompanionError::TooLarge("a length does not fit 64 bits"))
}

pub(super) fn u32_of(v: u64, what: &'static str) -> Result<u32, CompanionError> {
    u32::try_from(v).map_err(|_| CompanionError::TooLarge(what))
}

// ---------------------------------------------------------------------------------- checking

fn check_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    }
}

fn check_spec(spec: &CompanionSpec<'_>, page: u64) -> Result<(), CompanionError> {
    if let Some(why) = check_name(&spec.soname) {
        return Err(CompanionError::Soname(spec.soname.clone(), why));
    }
    if spec.soname.contains('/') {
        return Err(CompanionError::Soname(
            spec.soname.clone(),
            "a soname is a file name, not a path",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, b) in spec.blocks.iter().enumerate() {
        if let Some(why) = check_name(&b.section) {
            return Err(CompanionError::SectionName(b.section.clone(), why));
        }
        if RESERVED.contains(&b.section.as_str()) {
            return Err(CompanionError::SectionName(
                b.section.clone(),
                "the companion's own tables use that name",
            ));
        }
        if !b.align.is_power_of_two() || b.align > page {
            return Err(CompanionError::Alignment {
                section: b.section.clone(),
                block: i,
                align: b.align,
                page,
            });
        }
        if b.bytes.is_empty() {
            return Err(CompanionError::EmptyBlock {
                section: b.section.clone(),
                block: i,
            });
        }
        let len = len64(b.bytes.len())?;
        for s in &b.symbols {
            if let Some(why) = check_name(&s.name) {
                return Err(CompanionError::SymbolName(s.name.clone(), why));
            }
            if s.name.contains('@') {
                return Err(CompanionError::SymbolName(
                    s.name.clone(),
                    "`@` would read as a symbol version",
                ));
            }
            // Half-open: a symbol at the very end would name whatever follows the block.
            let inside = s.offset < len && s.offset.checked_add(s.size).is_some_and(|e| e <= len);
            if !inside {
                return Err(CompanionError::SymbolOutside {
                    name: s.name.clone(),
                    offset: s.offset,
                    size: s.size,
                    len,
                });
            }
            if !seen.insert(s.name.as_str()) {
                return Err(CompanionError::DuplicateSymbol(s.name.clone()));
            }
        }
    }
    if seen.is_empty() {
        return Err(CompanionError::NoSymbols);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------ writing

/// A device section of the output: its name, alignment, and the blocks (indices) it holds.
struct Section {
    name: String,
    align: u64,
    blocks: Vec<usize>,
    offset: u64,
    size: u64,
}

/// A byte sink that only appends, padding with zeros up to each planned offset.
struct Out {
    bytes: Vec<u8>,
}

impl Out {
    fn at(&mut self, offset: u64) -> Result<(), CompanionError> {
        let now = len64(self.bytes.len())?;
        let want = usize::try_from(offset).map_err(|_| CompanionError::TooLarge("file size"))?;
        if offset < now {
            // The layout below is computed so that this never happens.
            return Err(CompanionError::TooLarge(
                "the planned layout overlaps itself",
            ));
        }
        self.bytes.resize(want, 0);
        Ok(())
    }
    fn put(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn phdr(&mut self, kind: u32, flags: u32, off: u64, vaddr: u64, size: u64, align: u64) {
        self.u32(kind);
        self.u32(flags);
        self.u64(off);
        self.u64(vaddr);
        self.u64(vaddr);
        self.u64(size);
        self.u64(size);
        self.u64(align);
    }
    #[allow(clippy::too_many_arguments)]
    fn shdr(
        &mut self,
        name: u32,
        kind: u32,
        flags: u64,
        addr: u64,
        off: u64,
        size: u64,
        link: u32,
        info: u32,
        align: u64,
        entsize: u64,
    ) {
        self.u32(name);
        self.u32(kind);
        self.u64(flags);
        self.u64(addr);
        self.u64(off);
        self.u64(size);
        self.u32(link);
        self.u32(info);
        self.u64(align);
        self.u64(entsize);
    }
}

/// A string table under construction (offset 0 is the empty string).
struct Strings {
    bytes: Vec<u8>,
}

impl Strings {
    fn new() -> Strings {
        Strings { bytes: vec![0] }
    }
    fn add(&mut self, s: &str) -> Result<u32, CompanionError> {
        let at = u32_of(len64(self.bytes.len())?, "string table size")?;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        Ok(at)
    }
}

/// Writes the companion `spec` describes.
pub fn write(spec: &CompanionSpec<'_>) -> Result<Companion, CompanionError> {
    let (e_machine, e_flags, page) = machine_facts(spec.machine)?;
    check_spec(spec, page)?;

    let mut sections = device_sections(spec);

    let (syms, nsyms, nbucket) = hash_ordered_symbols(spec)?;
    let names: Vec<&str> = syms.iter().map(|s| s.name).collect();

    let mut dynstr = Strings::new();
    let soname_at = dynstr.add(&spec.soname)?;
    let mut sym_names = Vec::with_capacity(syms.len());
    for s in &syms {
        sym_names.push(dynstr.add(s.name)?);
    }
    let hash = sysv_table(&names, nbucket)?;
    let gnu = gnu_table(&names, nbucket)?;

    // Read-only segment layout.
    let phdrs_end = add(EHDR_SIZE, mul(u64::from(PHNUM), PHDR_SIZE)?)?;
    let hash_off = align_up(phdrs_end, 8)?;
    let gnu_off = align_up(add(hash_off, len64(hash.len())?)?, 8)?;
    let dynsym_off = align_up(add(gnu_off, len64(gnu.len())?)?, 8)?;
    let dynsym_size = mul(add(nsyms, 1)?, SYM_SIZE)?;
    let dynstr_off = add(dynsym_off, dynsym_size)?;
    let dynstr_size = len64(dynstr.bytes.len())?;
    let (block_at, ro_end) = place_sections(spec, &mut sections, add(dynstr_off, dynstr_size)?)?;

    // Writable segment: `.dynamic`, one page above its file offset.
    let dynamic: [(u64, u64); 8] = [
        (DT_SONAME, u64::from(soname_at)),
        (DT_HASH, hash_off),
        (DT_GNU_HASH, gnu_off),
        (DT_STRTAB, dynstr_off),
        (DT_SYMTAB, dynsym_off),
        (DT_STRSZ, dynstr_size),
        (DT_SYMENT, SYM_SIZE),
        (DT_NULL, 0),
    ];
    let dyn_off = align_up(ro_end, 8)?;
    let dyn_vaddr = add(dyn_off, page)?;
    let dyn_size = mul(len64(dynamic.len())?, DYN_SIZE)?;

    // Section names; section indices: 0 null, 1 .hash, 2 .gnu.hash, 3 .dynsym, 4 .dynstr,
    // then the device sections, then .dynamic and .shstrtab.
    let (shstr, shnames) = section_names(&sections)?;
    let shnum = add(len64(sections.len())?, FIRST_DEVICE + 2)?;
    let shnum16 = u16::try_from(shnum).map_err(|_| CompanionError::TooLarge("section count"))?;
    let dynamic_index = add(len64(sections.len())?, FIRST_DEVICE)?;
    let shstrndx = u16::try_from(add(dynamic_index, 1)?)
        .map_err(|_| CompanionError::TooLarge("section count"))?;

    let shstr_off = add(dyn_off, dyn_size)?;
    let shoff = align_up(add(shstr_off, len64(shstr.bytes.len())?)?, 8)?;
    let total = add(shoff, mul(shnum, SHDR_SIZE)?)?;
    let capacity = usize::try_from(total).map_err(|_| CompanionError::TooLarge("file size"))?;

    let mut out = Out {
        bytes: Vec::with_capacity(capacity),
    };
    let layout = Layout {
        page,
        hash_off,
        hash_size: len64(hash.len())?,
        gnu_off,
        gnu_size: len64(gnu.len())?,
        dynsym_off,
        dynsym_size,
        dynstr_off,
        dynstr_size,
        ro_end,
        dyn_off,
        dyn_vaddr,
        dyn_size,
        shstr_off,
        shstr_size: len64(shstr.bytes.len())?,
        shoff,
    };
    write_elf_header(&mut out, e_machine, e_flags, shnum16, shstrndx, &layout);
    out.at(hash_off)?;
    out.put(&hash);
    out.at(gnu_off)?;
    out.put(&gnu);
    out.at(dynsym_off)?;
    out.put(&[0; 24]);
    let placed_syms = write_symbols(&mut out, &syms, &sym_names, &block_at, &sections)?;
    out.put(&dynstr.bytes);
    write_blocks(&mut out, spec, &sections, &block_at)?;
    out.at(dyn_off)?;
    for (tag, value) in dynamic {
        out.u64(tag);
        // Address entries hold vaddrs; in the read-only segment those equal file offsets.
        out.u64(value);
    }
    out.put(&shstr.bytes);
    out.at(shoff)?;
    write_section_headers(&mut out, &layout, &shnames, &sections);
    if len64(out.bytes.len())? != total {
        return Err(CompanionError::TooLarge("the planned size was not met"));
    }
    let blocks = placed_blocks(spec, &block_at)?;
    self_check(&out.bytes, &placed_syms)?;
    Ok(Companion {
        bytes: out.bytes,
        blocks,
        symbols: placed_syms,
    })
}

/// The data blocks' bytes, section by section, each at its planned offset.
fn write_blocks(
    out: &mut Out,
    spec: &CompanionSpec<'_>,
    sections: &[Section],
    block_at: &[u64],
) -> Result<(), CompanionError> {
    for s in sections {
        for &i in &s.blocks {
            let b = spec
                .blocks
                .get(i)
                .ok_or(CompanionError::TooLarge("block index"))?;
            out.at(*block_at
                .get(i)
                .ok_or(CompanionError::TooLarge("block index"))?)?;
            out.put(b.bytes);
        }
    }
    Ok(())
}

/// Where each block of `spec` landed, in the order of the spec.
fn placed_blocks(
    spec: &CompanionSpec<'_>,
    block_at: &[u64],
) -> Result<Vec<PlacedBlock>, CompanionError> {
    let mut blocks = Vec::with_capacity(spec.blocks.len());
    for (b, &at) in spec.blocks.iter().zip(block_at) {
        blocks.push(PlacedBlock {
            section: b.section.clone(),
            offset: at,
            vaddr: at,
            len: len64(b.bytes.len())?,
        });
    }
    Ok(blocks)
}

/// The device sections, in order of first appearance, each with its blocks.
fn device_sections(spec: &CompanionSpec<'_>) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, b) in spec.blocks.iter().enumerate() {
        match sections.iter_mut().find(|s| s.name == b.section) {
            Some(s) => {
                s.align = s.align.max(b.align);
                s.blocks.push(i);
            }
            None => sections.push(Section {
                name: b.section.clone(),
                align: b.align,
                blocks: vec![i],
                offset: 0,
                size: 0,
            }),
        }
    }
    sections
}

/// A symbol to write: its block and its place in that block.
struct Sym<'s> {
    name: &'s str,
    block: usize,
    offset: u64,
    size: u64,
}

/// The symbols ordered by GNU hash bucket (then name), as `.gnu.hash` requires, with their
/// count and the bucket count.
fn hash_ordered_symbols<'s>(
    spec: &'s CompanionSpec<'_>,
) -> Result<(Vec<Sym<'s>>, u64, u64), CompanionError> {
    let mut syms: Vec<Sym<'_>> = Vec::new();
    for (i, b) in spec.blocks.iter().enumerate() {
        for s in &b.symbols {
            syms.push(Sym {
                name: &s.name,
                block: i,
                offset: s.offset,
                size: s.size,
            });
        }
    }
    let nsyms = len64(syms.len())?;
    u32_of(add(nsyms, 1)?, "too many symbols")?;
    let nbucket = bucket_count(nsyms);
    syms.sort_by(|a, b| {
        let ka = rem(gnu_hash(a.name.as_bytes()), nbucket);
        let kb = rem(gnu_hash(b.name.as_bytes()), nbucket);
        ka.cmp(&kb).then_with(|| a.name.cmp(b.name))
    });
    Ok((syms, nsyms, nbucket))
}

/// Lays the device sections and their blocks out from `cursor`: returns each block's file
/// offset and where the read-only segment ends.
fn place_sections(
    spec: &CompanionSpec<'_>,
    sections: &mut [Section],
    mut cursor: u64,
) -> Result<(Vec<u64>, u64), CompanionError> {
    let mut block_at = vec![0u64; spec.blocks.len()];
    for s in sections.iter_mut() {
        s.offset = align_up(cursor, s.align)?;
        let mut end = s.offset;
        for &i in &s.blocks {
            let b = spec
                .blocks
                .get(i)
                .ok_or(CompanionError::TooLarge("block index"))?;
            let at = align_up(end, b.align)?;
            if let Some(slot) = block_at.get_mut(i) {
                *slot = at;
            }
            end = add(at, len64(b.bytes.len())?)?;
        }
        s.size = end
            .checked_sub(s.offset)
            .ok_or(CompanionError::TooLarge("section size"))?;
        cursor = end;
    }
    Ok((block_at, cursor))
}

/// Index of the first device section (after null, .hash, .gnu.hash, .dynsym, .dynstr).
const FIRST_DEVICE: u64 = 5;

/// The `.shstrtab` offsets of each section's name.
struct ShNames {
    n_hash: u32,
    n_gnu: u32,
    n_dynsym: u32,
    n_dynstr: u32,
    n_dev: Vec<u32>,
    n_dynamic: u32,
    n_shstrtab: u32,
}

/// Where [`write()`] puts each part of the file (in the read-only segment vaddrs equal offsets).
#[derive(Clone, Copy)]
struct Layout {
    page: u64,
    hash_off: u64,
    hash_size: u64,
    gnu_off: u64,
    gnu_size: u64,
    dynsym_off: u64,
    dynsym_size: u64,
    dynstr_off: u64,
    dynstr_size: u64,
    ro_end: u64,
    dyn_off: u64,
    dyn_vaddr: u64,
    dyn_size: u64,
    shstr_off: u64,
    shstr_size: u64,
    shoff: u64,
}

/// The section-name string table and where each name lies in it.
fn section_names(sections: &[Section]) -> Result<(Strings, ShNames), CompanionError> {
    let mut shstr = Strings::new();
    let n_hash = shstr.add(".hash")?;
    let n_gnu = shstr.add(".gnu.hash")?;
    let n_dynsym = shstr.add(".dynsym")?;
    let n_dynstr = shstr.add(".dynstr")?;
    let mut n_dev = Vec::with_capacity(sections.len());
    for s in sections {
        n_dev.push(shstr.add(&s.name)?);
    }
    let n_dynamic = shstr.add(".dynamic")?;
    let n_shstrtab = shstr.add(".shstrtab")?;
    Ok((
        shstr,
        ShNames {
            n_hash,
            n_gnu,
            n_dynsym,
            n_dynstr,
            n_dev,
            n_dynamic,
            n_shstrtab,
        },
    ))
}

/// The ELF header, then the program headers (PT_LOADs in vaddr order).
fn write_elf_header(
    out: &mut Out,
    e_machine: u16,
    e_flags: u32,
    shnum16: u16,
    shstrndx: u16,
    l: &Layout,
) {
    let Layout {
        shoff,
        ro_end,
        page,
        dyn_off,
        dyn_vaddr,
        dyn_size,
        ..
    } = *l;
    out.put(b"\x7fELF");
    out.put(&[2, 1, 1, 0]); // ELFCLASS64, little-endian, version 1, System V ABI
    out.put(&[0; 8]);
    out.u16(3); // ET_DYN
    out.u16(e_machine);
    out.u32(1);
    out.u64(0); // no entry point
    out.u64(EHDR_SIZE);
    out.u64(shoff);
    out.u32(e_flags);
    out.u16(64);
    out.u16(56);
    out.u16(PHNUM);
    out.u16(64);
    out.u16(shnum16);
    out.u16(shstrndx);
    // Program headers, PT_LOADs in vaddr order.
    out.phdr(PT_LOAD, PF_R, 0, 0, ro_end, page);
    out.phdr(PT_LOAD, PF_R | PF_W, dyn_off, dyn_vaddr, dyn_size, page);
    out.phdr(PT_DYNAMIC, PF_R | PF_W, dyn_off, dyn_vaddr, dyn_size, 8);
    out.phdr(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16);
}

/// The `.dynsym` entries after the null symbol; returns where each symbol was placed.
fn write_symbols(
    out: &mut Out,
    syms: &[Sym<'_>],
    sym_names: &[u32],
    block_at: &[u64],
    sections: &[Section],
) -> Result<Vec<PlacedSymbol>, CompanionError> {
    let mut placed_syms = Vec::with_capacity(syms.len());
    for (i, (s, &name)) in syms.iter().zip(sym_names).enumerate() {
        let block_off = *block_at
            .get(s.block)
            .ok_or(CompanionError::TooLarge("block index"))?;
        let value = add(block_off, s.offset)?;
        let section = sections
            .iter()
            .position(|x| x.blocks.contains(&s.block))
            .ok_or(CompanionError::TooLarge("block without section"))?;
        let shndx = u16::try_from(add(len64(section)?, FIRST_DEVICE)?)
            .map_err(|_| CompanionError::TooLarge("section count"))?;
        out.u32(name);
        out.put(&[GLOBAL_OBJECT, 0]);
        out.u16(shndx);
        out.u64(value);
        out.u64(s.size);
        placed_syms.push(PlacedSymbol {
            name: s.name.to_string(),
            vaddr: value,
            size: s.size,
            index: u32_of(add(len64(i)?, 1)?, "symbol index")?,
        });
    }
    Ok(placed_syms)
}

/// The section headers after the null one: the dynamic-linking tables, the device
/// sections, `.dynamic` and `.shstrtab`.
fn write_section_headers(out: &mut Out, l: &Layout, shnames: &ShNames, sections: &[Section]) {
    let Layout {
        hash_off,
        hash_size,
        gnu_off,
        gnu_size,
        dynsym_off,
        dynsym_size,
        dynstr_off,
        dynstr_size,
        dyn_off,
        dyn_vaddr,
        dyn_size,
        shstr_off,
        shstr_size,
        ..
    } = *l;
    let ShNames {
        n_hash,
        n_gnu,
        n_dynsym,
        n_dynstr,
        ref n_dev,
        n_dynamic,
        n_shstrtab,
    } = *shnames;
    out.put(&[0; 64]);
    let dynstr_index = 4;
    let dynsym_index = 3;
    out.shdr(
        n_hash,
        SHT_HASH,
        SHF_ALLOC,
        hash_off,
        hash_off,
        hash_size,
        dynsym_index,
        0,
        8,
        4,
    );
    out.shdr(
        n_gnu,
        SHT_GNU_HASH,
        SHF_ALLOC,
        gnu_off,
        gnu_off,
        gnu_size,
        dynsym_index,
        0,
        8,
        0,
    );
    // sh_info: index of the first non-local symbol.
    out.shdr(
        n_dynsym,
        SHT_DYNSYM,
        SHF_ALLOC,
        dynsym_off,
        dynsym_off,
        dynsym_size,
        dynstr_index,
        1,
        8,
        SYM_SIZE,
    );
    out.shdr(
        n_dynstr,
        SHT_STRTAB,
        SHF_ALLOC,
        dynstr_off,
        dynstr_off,
        dynstr_size,
        0,
        0,
        1,
        0,
    );
    for (s, &name) in sections.iter().zip(n_dev) {
        out.shdr(
            name,
            SHT_PROGBITS,
            SHF_ALLOC,
            s.offset,
            s.offset,
            s.size,
            0,
            0,
            s.align,
            0,
        );
    }
    out.shdr(
        n_dynamic,
        SHT_DYNAMIC,
        SHF_ALLOC | SHF_WRITE,
        dyn_vaddr,
        dyn_off,
        dyn_size,
        dynstr_index,
        0,
        8,
        DYN_SIZE,
    );
    out.shdr(
        n_shstrtab, SHT_STRTAB, 0, 0, shstr_off, shstr_size, 0, 0, 1, 0,
    );
}

/// The checks every output of this crate passes: the layout invariants of [`super::check()`],
/// and an independent parser (goblin) that finds each symbol where it was placed.
fn self_check(bytes: &[u8], symbols: &[PlacedSymbol]) -> Result<(), CompanionError> {
    super::check(bytes).map_err(|e| CompanionError::OutputCheck(e.to_string()))?;
    let elf = goblin::elf::Elf::parse(bytes)
        .map_err(|e| CompanionError::OutputCheck(format!("goblin cannot parse it: {e}")))?;
    if elf.dynsyms.len() != symbols.len().saturating_add(1) {
        return Err(CompanionError::OutputCheck(format!(
            "goblin sees {} dynamic symbols, {} were written",
            elf.dynsyms.len(),
            symbols.len().saturating_add(1)
        )));
    }
    for (sym, placed) in elf.dynsyms.iter().skip(1).zip(symbols) {
        let name = elf.dynstrtab.get_at(sym.st_name);
        if name != Some(placed.name.as_str())
            || sym.st_value != placed.vaddr
            || sym.st_size != placed.size
        {
            return Err(CompanionError::OutputCheck(format!(
                "symbol {} reads back as {name:?} at {:#x}",
                placed.name, sym.st_value
            )));
        }
    }
    Ok(())
}
