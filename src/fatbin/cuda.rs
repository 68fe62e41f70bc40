//! CUDA fatbin containers (`docs/cuda-fatbin.md`): parse, decompress, rebuild.
//!
//! A fatbin section (`.nv_fatbin`, `__nv_relfatbin`) or a loose `.fatbin` file holds containers
//! back to back, each 8-aligned, with zero bytes between them. A container is a 16-byte header
//! (magic `0xBA55ED50`, version 1, header size, size of the entries) followed by entries that
//! run exactly to its end. Each entry is a header of at least 64 bytes (its own size is in the
//! header) followed by its payload: PTX text, an ELF cubin, or a `--concat` group of several
//! images, each possibly LZ4- or zstd-compressed.
//!
//! What differs with the toolkit's age (checked on wheels built with CUDA 10.2, 11.0, 11.1,
//! 11.7 and 11.8 against cuobjdump 11.8, and on our own 13.4 fixtures):
//! * An empty options record. CUDA 10.2 and 11.x write the record as two zero words and
//!   nothing after it, so their PTX headers are 0x48 bytes; 12.x and later write an offset
//!   just past the record, a zero length and 8 bytes of padding (0x50). Both mean "no
//!   options"; a zero offset with a non-zero length is damage.
//! * Compression. 10.2 and 11.x compress PTX, and often cubins, as raw LZ4 blocks (flag
//!   0x2000), with the exact image length in the uncompressed-size field; zstd (0x8000)
//!   arrives with 12.x. The cubin ABI field reads 1.7 from 10.2 to 12.x.
//! * Records with text: 11.x PTX may carry ptxas options (`-regUsageLevel=4`) or
//!   `--compile-only` (in `__nv_relfatbin`), laid out as in later toolkits.
//! * Old architectures (sm_30 to sm_37, compute_30/35) are ordinary entries here; newer
//!   cuobjdump releases refuse to list files holding them, so 11.8 is the oracle for those.
//!
//! Offsets in [`Container`], [`Entry`] and errors are relative to the start of the slice given
//! to [`parse_section`]; offsets in [`ConcatMember`] are relative to the group's decompressed
//! image (`offset`, `size`) or to the entry's start (`header_offset`).

mod arch;
mod decompress;
mod rebuild;

use serde::Serialize;

use super::FatbinError;
use super::bytes::{header, le_u16, le_u32, le_u64, next_non_zero, show, slice, u64_of};

pub use arch::{ArchVariant, CudaArch, FLAG_ARCH_A, FLAG_ARCH_F};
pub(crate) use decompress::window_log_for;
pub use decompress::{decompress_entry, decompress_entry_capped};
pub use rebuild::{EntryEdit, rebuild_concat_entry, rebuild_container, rebuild_container_with};

/// Container magic, little-endian `50 ed 55 ba`.
pub const CONTAINER_MAGIC: u32 = 0xBA55_ED50;
/// Size of the container header.
pub const CONTAINER_HEADER_LEN: usize = 16;
/// Size of the fixed part of an entry header (and of a concat member header).
pub const ENTRY_HEADER_MIN: usize = 64;
/// Containers start at multiples of this within their section.
pub const CONTAINER_ALIGN: usize = 8;

/// Entry flag: 64-bit code.
pub const FLAG_64BIT: u64 = 0x1;
/// Entry flag: debug image (`-G`).
pub const FLAG_DEBUG: u64 = 0x2;
/// Entry flag: pre-LZ4 compression of old toolkits; its format is not known here.
pub const FLAG_COMPRESSED_OLD: u64 = 0x1000;
/// Entry flag: the payload is a raw LZ4 block.
pub const FLAG_LZ4: u64 = 0x2000;
/// Entry flag: the payload is a zstd frame.
pub const FLAG_ZSTD: u64 = 0x8000;
/// Entry flag: the options record holds a binary blob, not text (sm_100+ cubins).
pub const FLAG_BINARY_OPTIONS: u64 = 0x100_0000;

const COMPRESSION_BITS: u64 = FLAG_COMPRESSED_OLD | FLAG_LZ4 | FLAG_ZSTD;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// PTX text (kind 1), JIT-compiled by the driver.
    Ptx,
    /// An ELF cubin with SASS (kind 2).
    Elf,
    /// A `--concat` group (kind 0x100): several images compressed together.
    Concat,
    /// Anything else (4 was an old cubin format); never dropped.
    #[serde(untagged)]
    Unknown(u16),
}

impl EntryKind {
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => EntryKind::Ptx,
            2 => EntryKind::Elf,
            0x100 => EntryKind::Concat,
            other => EntryKind::Unknown(other),
        }
    }
}

/// How an entry's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
    /// Another or several compression bits (for example the old 0x1000): the entry flags.
    #[serde(untagged)]
    Unknown(u64),
}

impl Compression {
    pub fn from_flags(flags: u64) -> Self {
        match flags & COMPRESSION_BITS {
            0 => Compression::None,
            FLAG_LZ4 => Compression::Lz4,
            FLAG_ZSTD => Compression::Zstd,
            _ => Compression::Unknown(flags),
        }
    }

    pub fn is_compressed(self) -> bool {
        self != Compression::None
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Unknown(_) => "unknown",
        }
    }
}

/// One image inside a `--concat` group (`docs/cuda-fatbin.md`, "Entries").
///
/// A member's header has the layout of an entry header, except that the field at +4 is the
/// member's offset inside the group's decompressed image instead of a header size. Its length
/// is 64 bytes plus the records it points at (identifier, options), each padded to 8 with at
/// least one NUL: the same rule that gives ordinary entries their header sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcatMember {
    pub kind: EntryKind,
    pub arch: CudaArch,
    /// Start of the image inside the group's decompressed bytes.
    pub offset: u64,
    pub size: u64,
    pub flags: u64,
    /// (major, minor): the PTX ISA or cubin ABI version.
    pub version: (u16, u16),
    /// Start of this member's header, from the start of the entry.
    pub header_offset: usize,
    pub header_len: usize,
}

/// One entry of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Start of the entry header, from the start of the parsed slice.
    pub offset: usize,
    pub header_size: usize,
    /// Payload bytes on disk (padded to 8 by the toolchain).
    pub payload_size: usize,
    pub kind: EntryKind,
    pub arch: CudaArch,
    pub compression: Compression,
    /// Exact length of the compressed stream at the start of the payload (0 if uncompressed).
    pub compressed_size: u64,
    /// Decompressed length (0 if uncompressed).
    pub uncompressed_size: u64,
    pub flags: u64,
    /// (major, minor): the PTX ISA version for PTX, the cubin ABI for ELF (1.7 from CUDA 10.2
    /// through 12.x, 1.8 from CUDA 13), 0.1 for concat groups.
    pub version: (u16, u16),
    pub debug: bool,
    /// The source file name recorded with `-G`/`-lineinfo`.
    pub identifier: Option<String>,
    /// Text options recorded for the entry (`--compile-only`, `-O1`...); binary option blobs
    /// (sm_100+ cubins) are not text and leave this `None`.
    pub options: Option<String>,
    /// Members of a concat group, in header order; empty for other kinds.
    pub members: Vec<ConcatMember>,
}

impl Entry {
    /// Header plus payload: the distance to the next entry.
    pub fn total_len(&self) -> usize {
        self.header_size.saturating_add(self.payload_size)
    }

    /// Bytes the entry occupies in the file (header and payload).
    pub fn stored_bytes(&self) -> u64 {
        u64_of(self.total_len())
    }

    /// Size of the image the driver sees: the uncompressed size if compressed, else the payload.
    pub fn image_bytes(&self) -> u64 {
        if self.compression.is_compressed() {
            self.uncompressed_size
        } else {
            u64_of(self.payload_size)
        }
    }

    /// Start of the payload, from the start of the parsed slice.
    pub fn payload_offset(&self) -> usize {
        self.offset.saturating_add(self.header_size)
    }

    /// The bytes this entry was parsed from (header and payload).
    pub fn bytes<'a>(&self, section: &'a [u8]) -> Result<&'a [u8], FatbinError> {
        slice(section, self.offset, self.stored_bytes(), "entry")
    }

    /// The name cuobjdump would give the image's architecture: `sm_90a` for cubins,
    /// `compute_90` for PTX.
    pub fn arch_name(&self) -> String {
        match self.kind {
            EntryKind::Ptx => self.arch.compute_name(),
            _ => self.arch.to_string(),
        }
    }
}

/// One fatbin container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Start of the container header, from the start of the parsed slice.
    pub offset: usize,
    /// Header plus entries: `header_size + size field` (16 + size for every known toolchain).
    pub len: usize,
    pub version: u16,
    pub header_size: usize,
    pub entries: Vec<Entry>,
}

impl Container {
    pub fn end(&self) -> usize {
        self.offset.saturating_add(self.len)
    }
}

/// Parse every container of a fatbin section (or a loose `.fatbin` file).
///
/// Containers must start 8-aligned; the bytes between them, and after the last one, must be
/// zero. An empty or all-zero slice has no containers.
pub fn parse_section(data: &[u8]) -> Result<Vec<Container>, FatbinError> {
    let mut out = containers(data).collect::<Result<Vec<_>, _>>()?;
    // Growth by doubling leaves up to half the list unused.
    out.shrink_to_fit();
    Ok(out)
}

/// The containers of a fatbin section one at a time, with the checks of [`parse_section`]
/// (the first error ends the iteration). A section of millions of tiny containers is walked
/// without holding a description of each (issue 11 item 2).
pub fn containers(data: &[u8]) -> Containers<'_> {
    Containers {
        data,
        pos: 0,
        first: true,
        failed: false,
        check_streams: true,
    }
}

/// Iterator returned by [`containers`].
#[derive(Debug, Clone)]
pub struct Containers<'a> {
    data: &'a [u8],
    pos: usize,
    first: bool,
    failed: bool,
    check_streams: bool,
}

impl Containers<'_> {
    /// Skips the walk over each compressed stream's block headers, for a section that already
    /// passed [`containers`] with it (a second pass over bytes known to be sound).
    pub fn rechecked(mut self) -> Self {
        self.check_streams = false;
        self
    }
}

impl Iterator for Containers<'_> {
    type Item = Result<Container, FatbinError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Each container is at least 16 bytes long, so the walk ends.
        let (start, value) = next_non_zero(self.data, self.pos)?;
        let item = if start % CONTAINER_ALIGN != 0 {
            Err(if self.first && start < CONTAINER_ALIGN {
                FatbinError::Misaligned {
                    what: "fatbin container",
                    offset: start,
                    align: CONTAINER_ALIGN,
                }
            } else {
                FatbinError::NonZeroGap {
                    what: "fatbin container",
                    offset: start,
                    value,
                }
            })
        } else {
            parse_container_with(self.data, start, self.check_streams)
        };
        match &item {
            Ok(c) => {
                self.pos = c.end();
                self.first = false;
            }
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

/// Reads the bytes at an offset of a section into the buffer given.
pub type ReadAt<'r> = dyn Fn(u64, &mut [u8]) -> Result<(), String> + 'r;

/// Bytes of a section held at once by [`walk_windows`], unless one container is larger.
pub const WINDOW: usize = 32 << 20;

/// Walks the containers of a section of `len` bytes read window by window through `read`,
/// holding `window` bytes ([`WINDOW`]; or one container, when larger) at a time: hands `each` the
/// containers [`containers`] would give over the whole section, in order, with offsets from
/// its start. `None` as soon as the walk cannot be sure of giving exactly that (a container
/// [`containers`] would refuse, a read that fails): the caller then walks the section whole,
/// which gives the same containers or the exact error.
pub fn walk_windows(
    len: usize,
    window: usize,
    read: &ReadAt,
    checked: bool,
    each: &mut dyn FnMut(Container),
) -> Option<()> {
    walk_windows_with_bytes(len, window, read, checked, &mut |mut c, _, base| {
        c.offset = c.offset.checked_add(base)?;
        for e in &mut c.entries {
            e.offset = e.offset.checked_add(base)?;
        }
        each(c);
        Some(())
    })
}

/// What [`walk_windows_with_bytes`] calls for each container: the container (offsets
/// relative to the window), the window's bytes, and the window's offset in the section.
pub type WindowVisit<'a> = dyn FnMut(Container, &[u8], usize) -> Option<()> + 'a;

/// [`walk_windows`], handing `each` every container with the window that holds it and the
/// window's offset in the section (`base`): the container's offsets are the window's, so
/// that it can be rebuilt from the window's bytes. `each` returning `None` stops the walk
/// with `None`.
pub fn walk_windows_with_bytes(
    len: usize,
    window: usize,
    read: &ReadAt,
    checked: bool,
    each: &mut WindowVisit,
) -> Option<()> {
    // The window from `at` on: what the old one holds of it is kept, and only the rest is
    // read, so a reader that reads on from where it stopped inflates each byte once.
    let slide = |old: Vec<u8>, base: usize, at: usize, want: usize| -> Option<Vec<u8>> {
        let want = want.min(len.checked_sub(at)?);
        let end = base.saturating_add(old.len());
        let mut v = if at >= base && at < end {
            let mut v = old;
            v.drain(..at.checked_sub(base)?);
            v
        } else {
            Vec::new()
        };
        let have = v.len();
        if want > have {
            v.resize(want, 0);
            let from = at.checked_add(have)?;
            read(u64_of(from), v.get_mut(have..)?).ok()?;
        }
        Some(v)
    };
    let (mut base, mut win) = (0usize, Vec::new());
    let mut pos = 0usize;
    while pos < len {
        let end = base.saturating_add(win.len());
        if pos < base || pos >= end {
            win = slide(std::mem::take(&mut win), base, pos, window)?;
            base = pos;
        }
        let Some((i, _)) = next_non_zero(&win, pos.checked_sub(base)?) else {
            pos = base.saturating_add(win.len());
            continue;
        };
        let start = base.checked_add(i)?;
        if start % CONTAINER_ALIGN != 0 {
            return None;
        }
        if i.saturating_add(CONTAINER_HEADER_LEN) > win.len() {
            // The header runs past the window: start the next one here.
            if start.checked_add(CONTAINER_HEADER_LEN)? > len {
                return None;
            }
            win = slide(
                std::mem::take(&mut win),
                base,
                start,
                window.max(CONTAINER_HEADER_LEN),
            )?;
            (base, pos) = (start, start);
            continue;
        }
        let (h, size) = (
            le_u16(&win, i.checked_add(6)?)?,
            le_u64(&win, i.checked_add(8)?)?,
        );
        let need = usize::from(h).checked_add(usize::try_from(size).ok()?)?;
        if start.checked_add(need)? > len {
            return None;
        }
        if i.saturating_add(need) > win.len() {
            // Loaded from `start`, the container fits: `start + need` is within the section.
            win = slide(std::mem::take(&mut win), base, start, window.max(need))?;
            (base, pos) = (start, start);
            continue;
        }
        let c = parse_container_with(&win, i, checked).ok()?;
        if c.end() > win.len() || c.len != need {
            return None;
        }
        pos = base.checked_add(c.end())?;
        each(c, &win, base)?;
    }
    Some(())
}

/// Parse the container whose header starts at `offset` of `data`.
pub fn parse_container(data: &[u8], offset: usize) -> Result<Container, FatbinError> {
    parse_container_with(data, offset, true)
}

/// [`parse_container`], walking each compressed stream's headers only with `check_streams`.
fn parse_container_with(
    data: &[u8],
    offset: usize,
    check_streams: bool,
) -> Result<Container, FatbinError> {
    const WHAT: &str = "fatbin container";
    let h = header(data, offset, CONTAINER_HEADER_LEN, WHAT)?;
    let magic = le_u32(h, 0).unwrap_or(0);
    if magic != CONTAINER_MAGIC {
        return Err(FatbinError::BadMagic {
            what: WHAT,
            offset,
            found: show(data, offset),
        });
    }
    let version = le_u16(h, 4).unwrap_or(0);
    if version != 1 {
        return Err(FatbinError::UnsupportedVersion {
            what: WHAT,
            offset,
            version: version.into(),
        });
    }
    let header_size = usize::from(le_u16(h, 6).unwrap_or(0));
    if header_size < CONTAINER_HEADER_LEN {
        return Err(FatbinError::BadField {
            what: WHAT,
            offset,
            field: "header size",
            value: u64_of(header_size),
            problem: "is smaller than the 16-byte header",
        });
    }
    let size = le_u64(h, 8).unwrap_or(0);
    let out_of_bounds = || FatbinError::OutOfBounds {
        what: WHAT,
        offset,
        end: u64_of(offset)
            .saturating_add(u64_of(header_size))
            .saturating_add(size),
        limit: u64_of(data.len()),
        within: "section",
    };
    let len = usize::try_from(size)
        .ok()
        .and_then(|s| s.checked_add(header_size))
        .ok_or_else(out_of_bounds)?;
    let end = offset.checked_add(len).ok_or_else(out_of_bounds)?;
    if end > data.len() {
        return Err(out_of_bounds());
    }
    let mut entries = Vec::new();
    let mut pos = offset.saturating_add(header_size);
    // parse_entry guarantees progress of at least ENTRY_HEADER_MIN bytes.
    while pos < end {
        let e = parse_entry_with(data, pos, end, check_streams)?;
        pos = pos.saturating_add(e.total_len());
        entries.push(e);
    }
    // A vector's first push reserves room for four entries of about 200 bytes; most
    // containers hold one or two. Without this, millions of tiny containers cost about 900
    // bytes of heap each (issue 11 item 2).
    entries.shrink_to_fit();
    Ok(Container {
        offset,
        len,
        version,
        header_size,
        entries,
    })
}

/// The fixed 64-byte part of an entry or concat member header.
struct RawHeader {
    kind: u16,
    /// +4: header size for entries, image offset for concat members.
    word4: u32,
    /// +8: payload size for entries, image size for concat members.
    size: u64,
    compressed_size: u32,
    options_offset: u32,
    minor: u16,
    major: u16,
    sm: u32,
    id_offset: u32,
    id_len: u32,
    flags: u64,
    uncompressed_size: u64,
}

impl RawHeader {
    fn read(h: &[u8]) -> Option<RawHeader> {
        Some(RawHeader {
            kind: le_u16(h, 0)?,
            word4: le_u32(h, 4)?,
            size: le_u64(h, 8)?,
            compressed_size: le_u32(h, 16)?,
            options_offset: le_u32(h, 20)?,
            minor: le_u16(h, 24)?,
            major: le_u16(h, 26)?,
            sm: le_u32(h, 28)?,
            id_offset: le_u32(h, 32)?,
            id_len: le_u32(h, 36)?,
            flags: le_u64(h, 40)?,
            uncompressed_size: le_u64(h, 56)?,
        })
    }
}

/// A record inside a header: `[start, start + len)` relative to the header start, which must
/// lie within `[ENTRY_HEADER_MIN, limit)` (`limit` = the header's length).
fn record(
    what: &'static str,
    base: usize,
    start: u64,
    len: u64,
    limit: usize,
) -> Result<(usize, usize), FatbinError> {
    let end = start.saturating_add(len);
    if start < u64_of(ENTRY_HEADER_MIN) || end > u64_of(limit) {
        return Err(FatbinError::RecordOutside {
            what,
            offset: base,
            start,
            end,
            min: u64_of(ENTRY_HEADER_MIN),
            limit: u64_of(limit),
        });
    }
    // Both are at most `limit`, a usize.
    let s = usize::try_from(start).unwrap_or(usize::MAX);
    let e = usize::try_from(end).unwrap_or(usize::MAX);
    Ok((s, e))
}

/// The string of an identifier or options record; trailing NULs and padding dropped.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(b)).into_owned()
}

/// `n + 1` rounded up to 8: a string with its NUL, padded as the toolchain pads it.
fn padded_string_len(n: u64) -> u64 {
    n.saturating_add(1).saturating_add(7) & !7
}

/// Parse one entry header starting at `pos`, which must end by `end` (its container's end).
pub(crate) fn parse_entry(data: &[u8], pos: usize, end: usize) -> Result<Entry, FatbinError> {
    parse_entry_with(data, pos, end, true)
}

fn parse_entry_with(
    data: &[u8],
    pos: usize,
    end: usize,
    check_streams: bool,
) -> Result<Entry, FatbinError> {
    const WHAT: &str = "fatbin entry";
    let room = end.saturating_sub(pos);
    let container = data.get(..end).unwrap_or(data);
    let h = header(container, pos, ENTRY_HEADER_MIN, WHAT)?;
    let raw = RawHeader::read(h).ok_or(FatbinError::Truncated {
        what: WHAT,
        offset: pos,
        needed: u64_of(ENTRY_HEADER_MIN),
        available: room,
    })?;
    let bad = |field: &'static str, value: u64, problem: &'static str| FatbinError::BadField {
        what: WHAT,
        offset: pos,
        field,
        value,
        problem,
    };
    let header_size = usize::try_from(raw.word4).unwrap_or(usize::MAX);
    if header_size < ENTRY_HEADER_MIN {
        return Err(bad(
            "header size",
            raw.word4.into(),
            "is smaller than the 64-byte fixed header",
        ));
    }
    let total = u64_of(header_size).saturating_add(raw.size);
    if total > u64_of(room) {
        return Err(FatbinError::OutOfBounds {
            what: WHAT,
            offset: pos,
            end: u64_of(pos).saturating_add(total),
            limit: u64_of(end),
            within: "container",
        });
    }
    // Both fit in `room` now.
    let payload_size = usize::try_from(raw.size).unwrap_or(usize::MAX);
    let hdr = container
        .get(pos..pos.saturating_add(header_size))
        .unwrap_or(&[]);

    let kind = EntryKind::from_code(raw.kind);
    let arch = CudaArch::from_entry(raw.sm, raw.flags).ok_or_else(|| {
        bad(
            "flags",
            raw.flags,
            "set both the arch-specific and the family bit",
        )
    })?;
    let compression = Compression::from_flags(raw.flags);
    let compressed_size = u64::from(raw.compressed_size);
    if compression.is_compressed() {
        if compressed_size == 0 {
            return Err(bad("compressed size", 0, "is zero in a compressed entry"));
        }
        if compressed_size > raw.size {
            return Err(bad(
                "compressed size",
                compressed_size,
                "is larger than the payload",
            ));
        }
        let stream = slice(
            container,
            pos.saturating_add(header_size),
            compressed_size,
            "compressed stream",
        )?;
        super::check_expansion(WHAT, pos, stream.len(), raw.uncompressed_size)?;
        if check_streams {
            decompress::check_stream(compression, stream, raw.uncompressed_size, WHAT, pos)?;
        }
    }

    let identifier = if raw.id_offset != 0 {
        let (s, e) = record(
            "entry identifier",
            pos,
            raw.id_offset.into(),
            raw.id_len.into(),
            header_size,
        )?;
        Some(text(hdr.get(s..e).unwrap_or(&[])))
    } else {
        None
    };

    let (options, members) = options_record(hdr, pos, header_size, &raw, kind, compression, &bad)?;

    Ok(Entry {
        offset: pos,
        header_size,
        payload_size,
        kind,
        arch,
        compression,
        compressed_size,
        uncompressed_size: raw.uncompressed_size,
        flags: raw.flags,
        version: (raw.major, raw.minor),
        debug: raw.flags & FLAG_DEBUG != 0,
        identifier,
        options,
        members,
    })
}

/// The entry's options record: the member table of a concat entry, else the options
/// string (`None` when empty or binary).
fn options_record(
    hdr: &[u8],
    pos: usize,
    header_size: usize,
    raw: &RawHeader,
    kind: EntryKind,
    compression: Compression,
    bad: &dyn Fn(&'static str, u64, &'static str) -> FatbinError,
) -> Result<(Option<String>, Vec<ConcatMember>), FatbinError> {
    let mut options = None;
    let mut members = Vec::new();
    if raw.options_offset != 0 {
        let (rs, _) = record(
            "options record",
            pos,
            raw.options_offset.into(),
            8,
            header_size,
        )?;
        let first = le_u32(hdr, rs).unwrap_or(0);
        let second = le_u32(hdr, rs.saturating_add(4)).unwrap_or(0);
        if kind == EntryKind::Concat {
            let image = if compression.is_compressed() {
                raw.uncompressed_size
            } else {
                raw.size
            };
            members = parse_members(hdr, pos, rs, first, second, image)?;
            // The identifier lies before or after the member table, never across it (a
            // rebuilt group resizes the table and moves what follows it).
            if raw.id_offset != 0 {
                let id_start = u64::from(raw.id_offset);
                let id_end = id_start.saturating_add(raw.id_len.into());
                let table_start = u64_of(rs);
                let table_end = table_start.saturating_add(second.into());
                if id_start < table_end && table_start < id_end {
                    return Err(bad(
                        "identifier offset",
                        id_start,
                        "overlaps the concat member table",
                    ));
                }
            }
        } else if first == 0 && second == 0 {
            // An empty record: no string at all. CUDA 10.2 and 11.x write PTX headers this
            // way (0x48 long); 12.x and later point an empty string just past the record.
        } else {
            // (offset of the string from the entry start, its length)
            let (s, e) = record(
                "options string",
                pos,
                first.into(),
                second.into(),
                header_size,
            )?;
            if raw.flags & FLAG_BINARY_OPTIONS == 0 && e > s {
                options = Some(text(hdr.get(s..e).unwrap_or(&[])));
            }
        }
    }
    Ok((options, members))
}

/// The member table of a concat group: `count` member headers filling the options record of
/// `record_size` bytes at `rs` (relative to the entry at `pos`), each describing an image
/// inside the group's decompressed bytes (`image` long).
fn parse_members(
    hdr: &[u8],
    pos: usize,
    rs: usize,
    count: u32,
    record_size: u32,
    image: u64,
) -> Result<Vec<ConcatMember>, FatbinError> {
    const WHAT: &str = "concat member table";
    let at = pos.saturating_add(rs);
    let bad = |field: &'static str, value: u64, problem: &'static str| FatbinError::BadField {
        what: WHAT,
        offset: at,
        field,
        value,
        problem,
    };
    let (_, rec_end) = record(WHAT, pos, u64_of(rs), record_size.into(), hdr.len())?;
    let table_len = u64::from(record_size).saturating_sub(8);
    if u64::from(record_size) < 8 || u64::from(count).saturating_mul(64) > table_len {
        return Err(bad(
            "member count",
            count.into(),
            "does not fit in the member table",
        ));
    }
    if count == 0 {
        return Err(bad("member count", 0, "is zero"));
    }
    // Bounded by the record's length: at most one member per 64 bytes present.
    let mut members = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut m = rs.saturating_add(8);
    for _ in 0..count {
        let mh = header(hdr, m, ENTRY_HEADER_MIN, "concat member header")
            .map_err(|_| bad("member count", count.into(), "overruns the member table"))?;
        let raw = RawHeader::read(mh).ok_or(bad(
            "member count",
            count.into(),
            "overruns the member table",
        ))?;
        let member_at = pos.saturating_add(m);
        let mbad = |field: &'static str, value: u64, problem: &'static str| FatbinError::BadField {
            what: "concat member",
            offset: member_at,
            field,
            value,
            problem,
        };
        // The member's records are relative to the member header; it ends after the last one.
        let room = rec_end.saturating_sub(m);
        let mut len = u64_of(ENTRY_HEADER_MIN);
        if raw.id_offset != 0 {
            let (_, e) = record(
                "concat member identifier",
                member_at,
                raw.id_offset.into(),
                padded_string_len(raw.id_len.into()),
                room,
            )?;
            len = len.max(u64_of(e));
        }
        if raw.options_offset != 0 {
            let (os, _) = record(
                "concat member options",
                member_at,
                raw.options_offset.into(),
                8,
                room,
            )?;
            let mhdr = hdr.get(m..rec_end).unwrap_or(&[]);
            let str_off = le_u32(mhdr, os).unwrap_or(0);
            let str_len = le_u32(mhdr, os.saturating_add(4)).unwrap_or(0);
            let e = if str_off == 0 && str_len == 0 {
                // An empty record (as in CUDA 10.2/11.x entries): the header ends after it.
                os.saturating_add(8)
            } else {
                record(
                    "concat member options string",
                    member_at,
                    str_off.into(),
                    padded_string_len(str_len.into()),
                    room,
                )?
                .1
            };
            len = len.max(u64_of(e));
        }
        let header_len = usize::try_from(len).unwrap_or(usize::MAX);
        let offset = u64::from(raw.word4);
        if offset.saturating_add(raw.size) > image {
            return Err(FatbinError::OutOfBounds {
                what: "concat member image",
                offset: member_at,
                end: offset.saturating_add(raw.size),
                limit: image,
                within: "group image",
            });
        }
        let arch = CudaArch::from_entry(raw.sm, raw.flags).ok_or_else(|| {
            mbad(
                "flags",
                raw.flags,
                "set both the arch-specific and the family bit",
            )
        })?;
        members.push(ConcatMember {
            kind: EntryKind::from_code(raw.kind),
            arch,
            offset,
            size: raw.size,
            flags: raw.flags,
            version: (raw.major, raw.minor),
            header_offset: m,
            header_len,
        });
        m = m.saturating_add(header_len);
    }
    if m != rec_end {
        return Err(bad(
            "record size",
            record_size.into(),
            "differs from the size of its member headers",
        ));
    }
    Ok(members)
}

#[cfg(test)]
pub(crate) mod tests;
