//! Writes minimal *companion* shared objects: ELF64 `ET_DYN` files whose only content is device
//! code (CUDA fatbin containers, clang offload bundles) and the dynamic symbols that name it, so
//! that a host library can later point its fatbin wrappers at the companion through `ld.so`
//! (issue 14). This module only writes companions; rewriting the host is still to come.
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
//! * **A separate writable PT_LOAD for `.dynamic` only.** glibc before 2.35 adds the load base
//!   to the address entries of `.dynamic` in place while it loads a library, which faults on a
//!   read-only mapping; every glibc a manylinux wheel may meet must load the file, so `.dynamic`
//!   sits in a writable segment of its own, with `PT_DYNAMIC` pointing at it. Its file offset
//!   directly follows the data (no padding in the file); its vaddr is that offset plus one page,
//!   so the two segments never share a page in memory and `p_offset ≡ p_vaddr (mod p_align)`.
//! * **`PT_GNU_STACK` without `PF_X`,** or glibc (and SELinux policies) would make the whole
//!   process's stack executable when the companion loads.
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
//! section that holds their block. The same input always gives the same bytes.

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

use super::{ElfError, Machine};

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

fn add(a: u64, b: u64) -> Result<u64, CompanionError> {
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

fn len64(n: usize) -> Result<u64, CompanionError> {
    u64::try_from(n).map_err(|_| CompanionError::TooLarge("a length does not fit 64 bits"))
}

fn u32_of(v: u64, what: &'static str) -> Result<u32, CompanionError> {
    u32::try_from(v).map_err(|_| CompanionError::TooLarge(what))
}

// ------------------------------------------------------------------------------ hash functions

/// The System V ELF hash (`.hash`).
pub(crate) fn sysv_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// The GNU hash (`.gnu.hash`): Bernstein's `h * 33 + c` from 5381.
pub(crate) fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// `h` modulo `n` (a bucket or bloom word count, never 0 here; 0 gives 0).
fn rem(h: u32, n: u64) -> u64 {
    u64::from(h).checked_rem(n).unwrap_or(0)
}

/// Bucket count for `n` symbols: about two symbols a bucket, odd, at least 1.
fn bucket_count(n: u64) -> u64 {
    (n / 2) | 1
}

/// `.hash` for `.dynsym` entries `names` (index 0 = the null symbol, not listed).
fn sysv_table(names: &[&str], nbucket: u64) -> Result<Vec<u8>, CompanionError> {
    let nchain = add(len64(names.len())?, 1)?;
    let nb = usize::try_from(nbucket).map_err(|_| CompanionError::TooLarge("bucket count"))?;
    let nc = usize::try_from(nchain).map_err(|_| CompanionError::TooLarge("chain count"))?;
    let mut buckets = vec![0u32; nb];
    let mut chains = vec![0u32; nc];
    // Chains are built by pushing each symbol in front of its bucket's list.
    for (i, name) in names.iter().enumerate() {
        let index = u32_of(add(len64(i)?, 1)?, "symbol index")?;
        let b = rem(sysv_hash(name.as_bytes()), nbucket);
        let b = usize::try_from(b).map_err(|_| CompanionError::TooLarge("bucket"))?;
        let head = buckets
            .get_mut(b)
            .ok_or(CompanionError::TooLarge("bucket"))?;
        let prev = std::mem::replace(head, index);
        let slot = chains
            .get_mut(usize::try_from(index).map_err(|_| CompanionError::TooLarge("index"))?)
            .ok_or(CompanionError::TooLarge("chain"))?;
        *slot = prev;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(nbucket, "bucket count")?.to_le_bytes());
    out.extend_from_slice(&u32_of(nchain, "chain count")?.to_le_bytes());
    for w in buckets.iter().chain(chains.iter()) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

/// `.gnu.hash` for `.dynsym` entries `names` (index 0 = the null symbol; all of `names` are
/// hashed, so `symoffset` is 1), which must already be sorted by `gnu_hash % nbucket`.
fn gnu_table(names: &[&str], nbucket: u64) -> Result<Vec<u8>, CompanionError> {
    let n = len64(names.len())?;
    // About 8 bloom bits a symbol, in a power-of-two number of 64-bit words.
    let words = (n.div_ceil(8)).max(1).next_power_of_two();
    let shift = 6u32.saturating_add(words.trailing_zeros());
    let nw = usize::try_from(words).map_err(|_| CompanionError::TooLarge("bloom size"))?;
    let nb = usize::try_from(nbucket).map_err(|_| CompanionError::TooLarge("bucket count"))?;
    let mut bloom = vec![0u64; nw];
    let mut buckets = vec![0u32; nb];
    let mut chains = Vec::with_capacity(names.len());
    let hashes: Vec<u32> = names.iter().map(|s| gnu_hash(s.as_bytes())).collect();
    for (i, &h) in hashes.iter().enumerate() {
        let word = rem(h / 64, words);
        let word = bloom
            .get_mut(usize::try_from(word).map_err(|_| CompanionError::TooLarge("bloom"))?)
            .ok_or(CompanionError::TooLarge("bloom"))?;
        *word |= (1u64 << (h % 64)) | (1u64 << ((h >> shift) % 64));
        let b = rem(h, nbucket);
        let head = buckets
            .get_mut(usize::try_from(b).map_err(|_| CompanionError::TooLarge("bucket"))?)
            .ok_or(CompanionError::TooLarge("bucket"))?;
        if *head == 0 {
            *head = u32_of(add(len64(i)?, 1)?, "symbol index")?;
        }
        // The low bit marks the last symbol of a bucket's run.
        let last = hashes
            .get(i.saturating_add(1))
            .is_none_or(|&next| rem(next, nbucket) != b);
        chains.push(if last { h | 1 } else { h & !1 });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&u32_of(nbucket, "bucket count")?.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&u32_of(words, "bloom size")?.to_le_bytes());
    out.extend_from_slice(&shift.to_le_bytes());
    for w in &bloom {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for w in buckets.iter().chain(chains.iter()) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
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

    // Device sections, in order of first appearance.
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

    // Symbols, ordered by GNU hash bucket (then name), as `.gnu.hash` requires.
    struct Sym<'s> {
        name: &'s str,
        block: usize,
        offset: u64,
        size: u64,
    }
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
    let mut cursor = add(dynstr_off, dynstr_size)?;
    let mut block_at = vec![0u64; spec.blocks.len()];
    for s in &mut sections {
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
    let ro_end = cursor;

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
    let mut shstr = Strings::new();
    let n_hash = shstr.add(".hash")?;
    let n_gnu = shstr.add(".gnu.hash")?;
    let n_dynsym = shstr.add(".dynsym")?;
    let n_dynstr = shstr.add(".dynstr")?;
    let mut n_dev = Vec::with_capacity(sections.len());
    for s in &sections {
        n_dev.push(shstr.add(&s.name)?);
    }
    let n_dynamic = shstr.add(".dynamic")?;
    let n_shstrtab = shstr.add(".shstrtab")?;
    const FIRST_DEVICE: u64 = 5;
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
    // ELF header.
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
    out.at(hash_off)?;
    out.put(&hash);
    out.at(gnu_off)?;
    out.put(&gnu);
    out.at(dynsym_off)?;
    out.put(&[0; 24]);
    let mut placed_syms = Vec::with_capacity(syms.len());
    for (i, (s, &name)) in syms.iter().zip(&sym_names).enumerate() {
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
    out.put(&dynstr.bytes);
    for s in &sections {
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
    out.at(dyn_off)?;
    for (tag, value) in dynamic {
        out.u64(tag);
        // Address entries hold vaddrs; in the read-only segment those equal file offsets.
        out.u64(value);
    }
    out.put(&shstr.bytes);
    out.at(shoff)?;
    out.put(&[0; 64]);
    let dynstr_index = 4;
    let dynsym_index = 3;
    out.shdr(
        n_hash,
        SHT_HASH,
        SHF_ALLOC,
        hash_off,
        hash_off,
        len64(hash.len())?,
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
        len64(gnu.len())?,
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
    for (s, &name) in sections.iter().zip(&n_dev) {
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
        n_shstrtab,
        SHT_STRTAB,
        0,
        0,
        shstr_off,
        len64(shstr.bytes.len())?,
        0,
        0,
        1,
        0,
    );
    if len64(out.bytes.len())? != total {
        return Err(CompanionError::TooLarge("the planned size was not met"));
    }

    let mut blocks = Vec::with_capacity(spec.blocks.len());
    for (b, &at) in spec.blocks.iter().zip(&block_at) {
        blocks.push(PlacedBlock {
            section: b.section.clone(),
            offset: at,
            vaddr: at,
            len: len64(b.bytes.len())?,
        });
    }
    Ok(Companion {
        bytes: out.bytes,
        blocks,
        symbols: placed_syms,
    })
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    fn rd32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn rd64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn export(name: &str, offset: u64, size: u64) -> Export {
        Export {
            name: name.into(),
            offset,
            size,
        }
    }

    /// Two CUDA-like blocks in `.nv_fatbin`, one HIP-like block in `.hip_fatbin`.
    fn spec<'a>(machine: Machine, a: &'a [u8], b: &'a [u8], c: &'a [u8]) -> CompanionSpec<'a> {
        CompanionSpec {
            machine,
            soname: "libdemo_device0.so".into(),
            blocks: vec![
                DataBlock {
                    section: ".nv_fatbin".into(),
                    align: 8,
                    bytes: a,
                    symbols: vec![export("fatbin_a0", 0, 16), export("fatbin_a1", 16, 5)],
                },
                DataBlock {
                    section: ".hip_fatbin".into(),
                    align: 4096,
                    bytes: c,
                    symbols: vec![export("bundle_c", 0, c.len() as u64)],
                },
                DataBlock {
                    section: ".nv_fatbin".into(),
                    align: 8,
                    bytes: b,
                    symbols: vec![export("fatbin_b", 3, 4)],
                },
            ],
        }
    }

    fn data() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            (0..21u8).collect(),
            (100..140u8).collect(),
            (0..5000u32).map(|i| (i % 251) as u8).collect(),
        )
    }

    #[test]
    fn hash_functions_match_published_values() {
        assert_eq!(gnu_hash(b""), 5381);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(sysv_hash(b""), 0);
        assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
        assert_eq!(sysv_hash(b"syscall"), 0x0b09_985c);
    }

    #[test]
    fn goblin_reads_what_was_written_on_every_machine() {
        let (a, b, c) = data();
        for (m, e_machine, page) in [
            (Machine::X86_64, 62, 0x1000),
            (Machine::Aarch64, 183, 0x10000),
            (Machine::Ppc64le, 21, 0x10000),
        ] {
            let s = spec(m, &a, &b, &c);
            let out = write(&s).unwrap();
            assert_eq!(out, write(&s).unwrap(), "not deterministic");
            let elf = goblin::elf::Elf::parse(&out.bytes).expect("goblin parses the companion");
            assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
            assert_eq!(elf.header.e_machine, e_machine);
            assert_eq!(elf.soname, Some("libdemo_device0.so"));
            assert!(elf.libraries.is_empty());
            let loads: Vec<_> = elf
                .program_headers
                .iter()
                .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
                .collect();
            assert_eq!(loads.len(), 2);
            for p in &loads {
                assert_eq!(p.p_align, page);
                assert_eq!(p.p_offset % page, p.p_vaddr % page);
                assert!(!p.is_executable());
            }
            assert!(loads[0].p_vaddr + loads[0].p_memsz <= loads[1].p_vaddr & !(page - 1));
            let stack = elf
                .program_headers
                .iter()
                .find(|p| p.p_type == goblin::elf::program_header::PT_GNU_STACK)
                .expect("PT_GNU_STACK");
            assert!(!stack.is_executable());
            // Each symbol names the bytes it was given, found through the section headers.
            let want = [
                ("fatbin_a0", &a[0..16]),
                ("fatbin_a1", &a[16..21]),
                ("fatbin_b", &b[3..7]),
                ("bundle_c", &c[..]),
            ];
            assert_eq!(elf.dynsyms.len(), want.len() + 1);
            for (name, bytes) in want {
                let sym = elf
                    .dynsyms
                    .iter()
                    .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(name))
                    .unwrap_or_else(|| panic!("{name} missing"));
                assert_eq!(sym.st_type(), goblin::elf::sym::STT_OBJECT);
                assert_eq!(sym.st_bind(), goblin::elf::sym::STB_GLOBAL);
                assert_eq!(sym.st_visibility(), goblin::elf::sym::STV_DEFAULT);
                assert_eq!(sym.st_size, bytes.len() as u64);
                let sh = &elf.section_headers[sym.st_shndx];
                assert!(sym.st_value >= sh.sh_addr);
                assert!(sym.st_value + sym.st_size <= sh.sh_addr + sh.sh_size);
                let at = (sym.st_value - sh.sh_addr + sh.sh_offset) as usize;
                assert_eq!(&out.bytes[at..at + bytes.len()], bytes, "{name}");
                let placed = out.symbols.iter().find(|p| p.name == name).unwrap();
                assert_eq!(placed.vaddr, sym.st_value);
            }
            let names: Vec<_> = elf
                .section_headers
                .iter()
                .map(|sh| elf.shdr_strtab.get_at(sh.sh_name).unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    "",
                    ".hash",
                    ".gnu.hash",
                    ".dynsym",
                    ".dynstr",
                    ".nv_fatbin",
                    ".hip_fatbin",
                    ".dynamic",
                    ".shstrtab"
                ]
            );
            // Blocks sharing a section keep their order and alignment; HIP stays 4096-aligned.
            assert_eq!(out.blocks[0].section, ".nv_fatbin");
            assert_eq!(out.blocks[2].offset, out.blocks[0].offset + 24);
            assert_eq!(out.blocks[1].offset % 4096, 0);
            assert_eq!(elf.section_headers[5].sh_size, 24 + 40);
        }
    }

    /// A `.gnu.hash` lookup written from the format description, not from the writer.
    fn gnu_lookup(file: &[u8], name: &str) -> Option<usize> {
        let elf = goblin::elf::Elf::parse(file).unwrap();
        let sh = elf
            .section_headers
            .iter()
            .find(|s| s.sh_type == SHT_GNU_HASH)
            .unwrap();
        let t = &file[sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize];
        let (nbucket, symoffset, words, shift) = (rd32(t, 0), rd32(t, 4), rd32(t, 8), rd32(t, 12));
        let h = gnu_hash(name.as_bytes());
        let word = rd64(t, 16 + 8 * ((h / 64) % words) as usize);
        if word & (1 << (h % 64)) == 0 || word & (1 << ((h >> shift) % 64)) == 0 {
            return None;
        }
        let buckets = 16 + 8 * words as usize;
        let chains = buckets + 4 * nbucket as usize;
        let mut i = rd32(t, buckets + 4 * (h % nbucket) as usize) as usize;
        if i == 0 {
            return None;
        }
        loop {
            let c = rd32(t, chains + 4 * (i - symoffset as usize));
            let sym = &elf.dynsyms.get(i).unwrap();
            if c | 1 == h | 1 && elf.dynstrtab.get_at(sym.st_name) == Some(name) {
                return Some(i);
            }
            if c & 1 == 1 {
                return None;
            }
            i += 1;
        }
    }

    /// A `.hash` lookup, likewise.
    fn sysv_lookup(file: &[u8], name: &str) -> Option<usize> {
        let elf = goblin::elf::Elf::parse(file).unwrap();
        let sh = elf
            .section_headers
            .iter()
            .find(|s| s.sh_type == SHT_HASH)
            .unwrap();
        let t = &file[sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize];
        let (nbucket, nchain) = (rd32(t, 0), rd32(t, 4));
        let dynsym = elf
            .section_headers
            .iter()
            .find(|s| s.sh_type == SHT_DYNSYM)
            .unwrap();
        assert_eq!(u64::from(nchain), dynsym.sh_size / SYM_SIZE);
        let mut i = rd32(t, 8 + 4 * (sysv_hash(name.as_bytes()) % nbucket) as usize) as usize;
        let mut steps = 0;
        while i != 0 {
            let sym = elf.dynsyms.get(i).unwrap();
            if elf.dynstrtab.get_at(sym.st_name) == Some(name) {
                return Some(i);
            }
            i = rd32(t, 8 + 4 * (nbucket as usize + i)) as usize;
            steps += 1;
            assert!(steps <= nchain, "chain loops");
        }
        None
    }

    #[test]
    fn both_hash_tables_find_every_symbol_and_nothing_else() {
        let blob = vec![7u8; 4096];
        for n in [0usize, 1, 2, 3, 17, 200] {
            let symbols = (0..n)
                .map(|i| export(&format!("__wheelslim_fatbin_{i}"), i as u64 * 8, 8))
                .collect();
            let spec = CompanionSpec {
                machine: Machine::X86_64,
                soname: "libx.so".into(),
                blocks: vec![DataBlock {
                    section: ".nv_fatbin".into(),
                    align: 8,
                    bytes: &blob,
                    symbols,
                }],
            };
            let out = write(&spec).unwrap();
            for p in &out.symbols {
                assert_eq!(gnu_lookup(&out.bytes, &p.name), Some(p.index as usize));
                assert_eq!(sysv_lookup(&out.bytes, &p.name), Some(p.index as usize));
            }
            for absent in ["", "__wheelslim_fatbin_x", "libx.so", "printf"] {
                assert_eq!(gnu_lookup(&out.bytes, absent), None, "{n} {absent}");
                assert_eq!(sysv_lookup(&out.bytes, absent), None, "{n} {absent}");
            }
            // Hashed symbols are grouped by bucket, in increasing bucket order.
            let elf = goblin::elf::Elf::parse(&out.bytes).unwrap();
            let nb = bucket_count(n as u64);
            let buckets: Vec<u64> = elf
                .dynsyms
                .iter()
                .skip(1)
                .map(|s| {
                    u64::from(gnu_hash(
                        elf.dynstrtab.get_at(s.st_name).unwrap().as_bytes(),
                    )) % nb
                })
                .collect();
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        }
    }

    #[test]
    fn wrong_requests_are_typed_errors() {
        let (a, b, c) = data();
        let base = spec(Machine::X86_64, &a, &b, &c);
        let with = |f: &dyn Fn(&mut CompanionSpec<'_>)| {
            let mut s = base.clone();
            f(&mut s);
            write(&s).unwrap_err()
        };
        assert_eq!(
            with(&|s| s.machine = Machine::Cuda),
            CompanionError::Machine(Machine::Cuda)
        );
        assert!(matches!(
            with(&|s| s.soname = String::new()),
            CompanionError::Soname(..)
        ));
        assert!(matches!(
            with(&|s| s.soname = "lib/x.so".into()),
            CompanionError::Soname(..)
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].section = ".dynsym".into()),
            CompanionError::SectionName(..)
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].section = "a\0b".into()),
            CompanionError::SectionName(..)
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].align = 12),
            CompanionError::Alignment { .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[1].align = 0x10000),
            CompanionError::Alignment { page: 0x1000, .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].bytes = &[]),
            CompanionError::EmptyBlock { block: 0, .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].symbols[1].size = 6),
            CompanionError::SymbolOutside { .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].symbols[1] = export("end", 21, 0)),
            CompanionError::SymbolOutside { .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[0].symbols[1].offset = u64::MAX),
            CompanionError::SymbolOutside { .. }
        ));
        assert!(matches!(
            with(&|s| s.blocks[2].symbols[0].name = "fatbin_a0".into()),
            CompanionError::DuplicateSymbol(_)
        ));
        assert!(matches!(
            with(&|s| s.blocks[2].symbols[0].name = "x@V1".into()),
            CompanionError::SymbolName(..)
        ));
        assert!(matches!(
            with(&|s| s.blocks[2].symbols[0].name = String::new()),
            CompanionError::SymbolName(..)
        ));
        // On 64 KiB machines a 64 KiB alignment is fine.
        let mut big = base.clone();
        big.machine = Machine::Aarch64;
        big.blocks[1].align = 0x10000;
        let out = write(&big).unwrap();
        assert_eq!(out.blocks[1].offset % 0x10000, 0);
        let e: ElfError = CompanionError::DuplicateSymbol("x".into()).into();
        assert!(matches!(e, ElfError::InvalidEdit(_)));
    }
}
