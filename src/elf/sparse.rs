//! Describing a large ELF object from the parts its readers look at.
//!
//! What the inspect pass learns from a host library (its dynamic section, the strings and
//! tables that section points at, its section headers, its device code) is a small part of it:
//! `libtriton.so` is 339 MiB, nearly all of it code and read-only data no reader of ours opens.
//! Holding such a member whole only to describe it put a command's peak memory at the largest
//! member of the wheel even when nothing was rewritten (issue 11). So a large member is
//! described from a buffer as long as the file in which only those parts are filled: the
//! buffer is allocated zeroed, so the pages of the *holes* (the parts left out) are never
//! touched and take no memory, and every offset the readers compute is the one they would
//! compute on the whole file.
//!
//! A hole is a `PROGBITS` section of at least [`MIN_HOLE`] bytes that is not device code and
//! that nothing the readers follow reaches, or of a section that begins in the head (the bytes
//! kept as the member streamed, the ELF header and what follows it), the part past the head.
//! (A hole in CUDA device code, for a caller that walks it again, is always a whole section.)
//! The conditions:
//!
//! - no other section lies over it unless it is `PROGBITS` or `NOBITS` too (tables, strings,
//!   relocations, notes and version sections are always read), and no section names it with
//!   `sh_link`, nor `e_shstrndx`;
//! - no segment other than `PT_LOAD`, `PT_GNU_RELRO`, `PT_GNU_STACK` or `PT_TLS` covers it
//!   (`PT_DYNAMIC`, `PT_INTERP`, `PT_NOTE` and the rest are read);
//! - none of the ranges the dynamic section points at (as the ELF reader, goblin, turns them
//!   into file offsets: strings, relocations, symbols, hash tables) overlaps or starts in it,
//!   and the GNU hash table, whose length only its contents tell, ends where it is filled.
//!
//! Anything unusual (another class or byte order, header tables that do not fit, a parser
//! error) fills the whole buffer, so the result is never different from describing the whole
//! file: only how much of it is in memory is.

use std::panic::{AssertUnwindSafe, catch_unwind};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::{Dynamic, ProgramHeader};

/// Sections smaller than this are read even when nobody looks at them: not worth a hole.
pub const MIN_HOLE: u64 = 1 << 20;

const SHT_PROGBITS: u32 = 1;
const SHT_NOBITS: u32 = 8;
const PT_LOAD: u32 = 1;
const PT_TLS: u32 = 7;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PT_GNU_RELRO: u32 = 0x6474_e552;

/// Half-open byte ranges `[start, end)`.
pub type Ranges = Vec<(u64, u64)>;

/// Reads the given ranges of the file into the same ranges of the buffer.
pub type Fill<'f, E> = dyn FnMut(&mut [u8], &[(u64, u64)]) -> Result<(), E> + 'f;

struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

impl Section {
    fn range(&self, len: u64) -> (u64, u64) {
        let a = self.offset.min(len);
        (a, self.offset.saturating_add(self.size).min(len))
    }
}

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[o..o + 4]);
    u64::from(u32::from_le_bytes(x))
}

fn le64(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
}

/// Sorted, merged, non-empty ranges.
fn normalize(mut r: Ranges) -> Ranges {
    r.retain(|(a, b)| a < b);
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `[a, b)` minus the sorted, disjoint `holes`.
pub(crate) fn subtract(a: u64, b: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut x = a;
    for &(s, e) in holes {
        if e <= x || s >= b {
            continue;
        }
        if s > x {
            out.push((x, s));
        }
        x = x.max(e);
    }
    if x < b {
        out.push((x, b));
    }
    out
}

fn overlaps(r: &[(u64, u64)], a: u64, b: u64) -> bool {
    r.iter().any(|&(x, y)| x < b && a < y)
}

fn covered(r: &[(u64, u64)], a: u64, b: u64) -> bool {
    r.iter().any(|&(x, y)| x <= a && b <= y)
}

/// Fills `buf` (as long as the file, zeroed, its first `head` bytes already filled) with the
/// parts of the ELF object its readers look at, by calling `fill` with the ranges to read; and
/// returns the holes, the ranges left zero (none when the whole file was filled).
///
/// Only sections of at least `min_hole` bytes are left out ([`MIN_HOLE`] outside tests), and
/// CUDA device-code sections only with `cuda_holes` (for a caller that walks them from the
/// archive again, [`crate::device::scan_elf_parts`]).
pub fn assemble<E>(
    buf: &mut [u8],
    head: usize,
    min_hole: u64,
    cuda_holes: bool,
    fill: &mut Fill<'_, E>,
) -> Result<Ranges, E> {
    let len = buf.len() as u64;
    let mut filled: Ranges = vec![(0, head as u64)];
    let holes = plan(buf, &mut filled, min_hole, cuda_holes, fill)?.unwrap_or_default();
    let taken = normalize(filled.iter().chain(&holes).copied().collect());
    fill(buf, &subtract(0, len, &taken))?;
    Ok(holes)
}

/// The holes, once the ranges their choice depends on are filled (and added to `filled`);
/// `None` when the file must be read whole.
fn plan<E>(
    buf: &mut [u8],
    filled: &mut Ranges,
    min_hole: u64,
    cuda_holes: bool,
    fill: &mut Fill<'_, E>,
) -> Result<Option<Ranges>, E> {
    let len = buf.len() as u64;
    let mut read = |buf: &mut [u8], filled: &mut Ranges, want: Ranges| -> Result<(), E> {
        let want = normalize(want);
        let have = normalize(filled.clone());
        let todo: Ranges = want
            .iter()
            .flat_map(|&(a, b)| subtract(a, b, &have))
            .collect();
        fill(buf, &todo)?;
        filled.extend(want);
        Ok(())
    };
    let h = filled[0].1 as usize;
    if h < 64 || buf[4] != 2 || buf[5] != 1 {
        return Ok(None);
    }
    let (phoff, phentsize, phnum) = (le64(buf, 0x20), le16(buf, 0x36), le16(buf, 0x38));
    let (shoff, shentsize, shnum) = (le64(buf, 0x28), le16(buf, 0x3A), le16(buf, 0x3C));
    let shstrndx = le16(buf, 0x3E);
    let table = |off: u64, size: u64, n: u64| {
        off.checked_add(size * n)
            .filter(|&end| end <= len)
            .map(|end| (off, end))
    };
    let (Some(ph), Some(sht)) = (
        table(phoff, phentsize, phnum),
        table(shoff, shentsize, shnum),
    ) else {
        return Ok(None);
    };
    if (phnum > 0 && phentsize != 56) || shnum == 0 || shentsize != 64 {
        return Ok(None);
    }
    read(buf, filled, vec![ph, sht])?;
    let phdrs: Vec<(u32, u64, u64)> = (0..phnum)
        .map(|i| {
            let o = (phoff + i * 56) as usize;
            (le32(buf, o) as u32, le64(buf, o + 8), le64(buf, o + 32))
        })
        .collect();
    let sections: Vec<Section> = (0..shnum)
        .map(|i| {
            let o = (shoff + i * 64) as usize;
            Section {
                name: le32(buf, o) as u32,
                kind: le32(buf, o + 4) as u32,
                offset: le64(buf, o + 24),
                size: le64(buf, o + 32),
                link: le32(buf, o + 40) as u32,
            }
        })
        .collect();
    let strndx = if shstrndx == 0xFFFF {
        u64::from(sections[0].link)
    } else {
        shstrndx
    };
    let Some(shstr) = sections.get(strndx as usize) else {
        return Ok(None);
    };
    // What the readers always read: tables of every kind but code and data, the sections
    // those name, and the segments they open. The head is read already; it is not among
    // them, so that a section that merely begins in it can still be left out past it.
    let head = filled[0].1;
    let mut needed: Ranges = vec![ph, sht, shstr.range(len)];
    for s in &sections {
        if s.kind != SHT_PROGBITS && s.kind != SHT_NOBITS {
            needed.push(s.range(len));
        }
        if s.link != 0
            && let Some(t) = sections.get(s.link as usize)
        {
            needed.push(t.range(len));
        }
    }
    for &(kind, off, filesz) in &phdrs {
        if ![PT_LOAD, PT_TLS, PT_GNU_STACK, PT_GNU_RELRO].contains(&kind) {
            needed.push((off.min(len), off.saturating_add(filesz).min(len)));
        }
    }
    read(buf, filled, needed.clone())?;
    // What the dynamic section points at, as the reader turns it into file offsets.
    let Some((ranges, starts, gnu_hash)) = dynamic_targets(buf) else {
        return Ok(None);
    };
    read(buf, filled, ranges.clone())?;
    needed.extend(ranges);
    let needed = normalize(needed);
    if let Some(at) = gnu_hash {
        match gnu_hash_end(buf, at) {
            Some(end) if end <= head || covered(&needed, at, end) => {}
            _ => return Ok(None),
        }
    }
    let reached = Reached {
        needed: &needed,
        starts: &starts,
        head,
    };
    Ok(Some(pick_holes(
        buf,
        &sections,
        shstr.range(len),
        &reached,
        min_hole,
        cuda_holes,
    )))
}

/// What the readers reach: `needed` (normalized), the tables that begin at `starts`, and the
/// head, read already.
struct Reached<'r> {
    needed: &'r [(u64, u64)],
    starts: &'r [u64],
    head: u64,
}

/// The holes among `sections` (names in `strtab`), given what the readers reach.
fn pick_holes(
    buf: &[u8],
    sections: &[Section],
    strtab: (u64, u64),
    reached: &Reached,
    min_hole: u64,
    cuda_holes: bool,
) -> Ranges {
    let len = buf.len() as u64;
    let (needed, starts, head) = (reached.needed, reached.starts, reached.head);
    let name_of = |s: &Section| -> Option<&[u8]> {
        let at = strtab.0.checked_add(u64::from(s.name))?;
        let names = buf.get(at as usize..strtab.1 as usize)?;
        names.iter().position(|&c| c == 0).map(|n| &names[..n])
    };
    let is_device_section = |name: &[u8]| {
        let is = |list: &[&str]| list.iter().any(|d| d.as_bytes() == name);
        is(crate::device::HIP_SECTIONS) || is(crate::device::CUDA_SECTIONS)
    };
    let device = |name: &[u8]| {
        let is = |list: &[&str]| list.iter().any(|d| d.as_bytes() == name);
        is(crate::device::HIP_SECTIONS) || (!cuda_holes && is(crate::device::CUDA_SECTIONS))
    };
    let mut holes = Vec::new();
    for s in sections.iter().skip(1) {
        let (a, b) = s.range(len);
        if s.kind != SHT_PROGBITS || b - a < min_hole.max(1) {
            continue;
        }
        let Some(name) = name_of(s) else { continue };
        if device(name) || overlaps(needed, a, b) || starts.iter().any(|&p| a <= p && p < b) {
            continue;
        }
        // A section that begins in the head is left out from the head's end on, except device
        // code, whose holes are read again as whole sections.
        let a = if a >= head {
            a
        } else if is_device_section(name) {
            continue;
        } else {
            head
        };
        if b.saturating_sub(a) < min_hole.max(1) {
            continue;
        }
        holes.push((a, b));
    }
    normalize(holes)
}

/// The file ranges the dynamic section points at with a length, the offsets of the tables
/// it points at without one (symbols, hash tables), and the GNU hash table's offset; `None`
/// when the reader would not get that far.
fn dynamic_targets(buf: &[u8]) -> Option<(Ranges, Vec<u64>, Option<u64>)> {
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let phoff = usize::try_from(le64(buf, 0x20)).ok()?;
        let phdrs = ProgramHeader::parse(buf, phoff, le16(buf, 0x38) as usize, ctx).ok()?;
        Dynamic::parse(buf, &phdrs, ctx).ok()
    }))
    .ok()??;
    let Some(d) = parsed else {
        return Some((Vec::new(), Vec::new(), None));
    };
    let i = &d.info;
    let span = |at: usize, n: usize| (at as u64, (at as u64).saturating_add(n as u64));
    let ranges = vec![
        span(i.strtab, i.strsz),
        span(i.rela, i.relasz),
        span(i.rel, i.relsz),
        span(i.jmprel, i.pltrelsz),
        // The hash table's header, read for the symbol count.
        span(
            i.hash.unwrap_or(0) as usize,
            if i.hash.is_some() { 8 } else { 0 },
        ),
    ];
    let mut starts = vec![i.symtab as u64];
    starts.extend(i.gnu_hash);
    starts.extend(i.hash);
    Some((ranges, starts, i.gnu_hash))
}

/// Where the GNU hash table at `at` ends, read as the ELF reader reads it to count symbols:
/// header, bloom words, buckets, then the chain of the last bucket to its end marker.
fn gnu_hash_end(buf: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let word = |o: usize| -> Option<u64> {
        let b = buf.get(o..o.checked_add(4)?)?;
        Some(le32(b, 0))
    };
    let buckets = word(at)? as usize;
    let min_chain = word(at + 4)? as usize;
    let bloom = word(at + 8)? as usize;
    if buckets == 0 || min_chain == 0 || bloom == 0 {
        return Some(at as u64 + 12);
    }
    let buckets_at = at.checked_add(16)?.checked_add(bloom.checked_mul(8)?)?;
    let mut max_chain = 0usize;
    for k in 0..buckets {
        max_chain = max_chain.max(word(buckets_at.checked_add(k.checked_mul(4)?)?)? as usize);
    }
    let chains_at = buckets_at.checked_add(buckets.checked_mul(4)?)?;
    if max_chain < min_chain {
        return Some(chains_at as u64);
    }
    let mut o = chains_at.checked_add((max_chain - min_chain).checked_mul(4)?)?;
    loop {
        let h = word(o)?;
        o += 4;
        if h & 1 != 0 {
            return Some(o as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_and_normalize() {
        let n = normalize(vec![(5, 9), (0, 2), (8, 12), (3, 3)]);
        assert_eq!(n, vec![(0, 2), (5, 12)]);
        assert_eq!(subtract(0, 20, &n), vec![(2, 5), (12, 20)]);
        assert_eq!(subtract(3, 11, &n), vec![(3, 5)]);
        assert_eq!(subtract(0, 4, &[]), vec![(0, 4)]);
    }

    #[test]
    fn a_file_that_is_not_64_bit_little_endian_is_filled_whole() {
        let mut buf = vec![0u8; 4096];
        buf[..4].copy_from_slice(b"\x7fELF");
        buf[4] = 1;
        let mut asked = Vec::new();
        let holes = assemble::<()>(&mut buf, 64, MIN_HOLE, false, &mut |_, r| {
            asked.extend_from_slice(r);
            Ok(())
        })
        .unwrap();
        assert!(holes.is_empty());
        assert_eq!(asked, vec![(64, 4096)]);
    }

    /// Every fixture library, described from its parts with every code and data section of a
    /// byte or more left out, gives exactly the facts and device code of the whole file; the
    /// holes stay zero and everything else is the file's. With a head of 9000 bytes, sections
    /// that begin in it are left out past it.
    #[test]
    fn fixture_libraries_read_the_same_from_their_parts() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut checked = 0;
        let mut with_holes = 0;
        let mut past_head = 0;
        for dir in ["cuda", "cuda_old", "hip", "aarch64", "ppc64le"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if !name.contains(".so") {
                    continue;
                }
                let whole = std::fs::read(&path).unwrap();
                for head in [64, 9000] {
                    let holes = check_parts(&name, &whole, head);
                    assert!(holes.iter().all(|&(a, _)| a >= head as u64), "{name}");
                    past_head += holes.iter().filter(|h| h.0 == head as u64).count();
                    if head == 64 {
                        checked += 1;
                        with_holes += usize::from(!holes.is_empty());
                    }
                }
            }
        }
        assert!(checked >= 10, "{checked} libraries");
        assert!(
            with_holes >= checked - 1,
            "{with_holes} of {checked} had holes"
        );
        assert!(past_head > 0, "no section began in a 9000-byte head");
    }

    /// Describes `whole` from its parts, its first `head` bytes given: the same facts and
    /// device code as the whole file, holes zero and the rest the file's. Returns the holes.
    fn check_parts(name: &str, whole: &[u8], head: usize) -> Ranges {
        let head = head.min(whole.len());
        let mut buf = vec![0u8; whole.len()];
        buf[..head].copy_from_slice(&whole[..head]);
        let holes = assemble::<()>(&mut buf, head, 1, false, &mut |b, r| {
            for &(x, y) in r {
                b[x as usize..y as usize].copy_from_slice(&whole[x as usize..y as usize]);
            }
            Ok(())
        })
        .unwrap();
        let mut outside = 0u64;
        for (i, (&got, &want)) in buf.iter().zip(whole).enumerate() {
            let i = i as u64;
            if holes.iter().any(|&(a, b)| a <= i && i < b) {
                assert_eq!(got, 0, "{name} (head {head}): hole byte {i:#x}");
            } else {
                assert_eq!(got, want, "{name} (head {head}): byte {i:#x}");
                outside += 1;
            }
        }
        let a = crate::elf::inspect(whole).unwrap();
        let b = crate::elf::inspect(&buf).unwrap();
        assert_eq!(a, b, "{name} (head {head})");
        if let crate::elf::Inspected::Host(info) = &a {
            let da = crate::device::scan_elf(whole, info).unwrap();
            let db = crate::device::scan_elf(&buf, info).unwrap();
            assert_eq!(
                serde_json::to_string(&da).unwrap(),
                serde_json::to_string(&db).unwrap(),
                "{name} (head {head})"
            );
        }
        if !holes.is_empty() {
            assert!(outside < whole.len() as u64, "{name}");
        }
        holes
    }
}
