//! Clang offload bundles (`docs/hip-bundles.md`): the `.hip_fatbin` section and loose bundle files.
//!
//! An uncompressed bundle is the 24-byte magic `__CLANG_OFFLOAD_BUNDLE__`, a u64 entry count
//! and, per entry, u64 offset (from the bundle start), u64 size, u64 triple length and the
//! triple; code objects follow at 4096-aligned offsets. A compressed bundle (`CCOB`) wraps a
//! whole bundle in a zlib or zstd stream behind a small header:
//!
//! | version | header | fields after magic, version (u16), method (u16: 0 zlib, 1 zstd) |
//! | --- | --- | --- |
//! | 1 | 20 bytes | u32 uncompressed size, u64 hash |
//! | 2 | 24 bytes | u32 total size (header included), u32 uncompressed size, u64 hash |
//! | 3 | 32 bytes | u64 total size, u64 uncompressed size, u64 hash |
//!
//! The hash is the first 8 bytes of the MD5 digest of the uncompressed bundle, read
//! little-endian (checked against clang-19's output: see the tests).
//!
//! In a section, bundles start at 4096-aligned offsets with zero bytes between them.

use std::borrow::Cow;
use std::io::Read;

use serde::Serialize;

use super::FatbinError;
use super::bytes::{align_up, header, le_u64, next_non_zero, show, slice, u64_of};

mod ccob;

pub use ccob::{
    CcobHeader, CcobMethod, bundle_hash, compress_ccob, decompress_ccob, decompress_ccob_capped,
};
use ccob::{ccob_header, ccob_stream, decoder};

pub const BUNDLE_MAGIC: &[u8; 24] = b"__CLANG_OFFLOAD_BUNDLE__";
pub const CCOB_MAGIC: &[u8; 4] = b"CCOB";
/// Bundles and their code objects start at multiples of this.
pub const BUNDLE_ALIGN: usize = 4096;

/// Bytes of a bundle before its entry table: the magic and the entry count.
const TABLE_START: usize = 32;
/// Bytes of an entry before its triple: offset, size, triple length.
const ENTRY_FIXED: usize = 24;
/// The most table bytes read from a compressed bundle: real tables hold a few dozen entries,
/// and a decompression bomb must not turn into millions of them.
const TABLE_CAP: u64 = 1 << 20;
/// The most entries a rebuilt bundle may hold. Each costs up to 4095 bytes of alignment
/// padding, so a hostile table of tiny entries could otherwise blow a small input up to
/// gigabytes; real bundles hold one entry per offload target plus the host.
const REBUILD_MAX_ENTRIES: usize = 4096;

/// One entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleEntry {
    /// `hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+`, `host-x86_64-unknown-linux--`.
    pub triple: String,
    /// Start of the code object, from the start of the (uncompressed) bundle.
    pub offset: u64,
    pub size: u64,
    /// The target ID (`gfx90a:xnack+`, `gfx9-generic`), `host` for the host entry, `None` when
    /// the triple names none.
    pub target: Option<String>,
}

impl BundleEntry {
    pub fn is_host(&self) -> bool {
        self.triple.starts_with("host-")
    }

    /// Whether the entry holds AMD GPU code (its triple's architecture is `amdgcn`).
    pub fn is_amdgcn(&self) -> bool {
        self.triple
            .split_once('-')
            .is_some_and(|(_, rest)| rest.starts_with("amdgcn-"))
    }

    /// The offload kind: `hipv4`, `hip`, `openmp`, `host`.
    pub fn offload_kind(&self) -> &str {
        self.triple.split_once('-').map_or(&self.triple, |(k, _)| k)
    }
}

/// The target ID named by a bundle entry triple.
///
/// `<kind>-<arch>-<vendor>-<os>-<env>-<target id>` (`hipv4-amdgcn-amd-amdhsa--gfx90a`), or the
/// older `<kind>-<arch>-<vendor>-<os>-<target id>` (`hip-amdgcn-amd-amdhsa-gfx906`).
pub fn target_of_triple(triple: &str) -> Option<String> {
    let (kind, rest) = triple.split_once('-')?;
    if kind == "host" {
        return Some("host".to_string());
    }
    let parts: Vec<&str> = rest.splitn(5, '-').collect();
    match parts.as_slice() {
        [_, _, _, fourth, ..] if fourth.starts_with("gfx") => parts.get(3..).map(|p| p.join("-")),
        [_, _, _, _, target] if !target.is_empty() => Some((*target).to_string()),
        _ => None,
    }
}

/// One bundle found in a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffloadBundle {
    /// Start, from the start of the parsed slice.
    pub offset: usize,
    /// Bytes the bundle occupies in the slice: a plain bundle up to the end of its last code
    /// object (or table); a CCOB of version 2/3 its total size; version 1 its header and zstd
    /// frame, or (zlib) everything up to the next bundle or the end of the slice.
    pub len: usize,
    pub ccob: Option<CcobHeader>,
    pub entries: Vec<BundleEntry>,
}

impl OffloadBundle {
    /// The bytes of the bundle as stored (compressed for a CCOB).
    pub fn stored<'a>(&self, section: &'a [u8]) -> Result<&'a [u8], FatbinError> {
        slice(section, self.offset, u64_of(self.len), "offload bundle")
    }

    /// The size of the uncompressed bundle.
    pub fn uncompressed_len(&self) -> u64 {
        self.ccob
            .as_ref()
            .map_or(u64_of(self.len), |h| h.uncompressed_size)
    }

    /// The target IDs of the entries, host included, in table order.
    pub fn targets(&self) -> Vec<Option<&str>> {
        self.entries.iter().map(|e| e.target.as_deref()).collect()
    }
}

/// Parse every bundle of a `.hip_fatbin` section (or a loose bundle file).
///
/// Bundles start at 4096-aligned offsets; anything between them must be zero bytes. A CCOB
/// is decompressed only as far as its entry table.
pub fn parse_section(data: &[u8]) -> Result<Vec<OffloadBundle>, FatbinError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    // Every bundle is at least one header long, so `pos` advances.
    while let Some((start, value)) = next_non_zero(data, pos) {
        if start % BUNDLE_ALIGN != 0 {
            return Err(if out.is_empty() && start < BUNDLE_ALIGN {
                FatbinError::Misaligned {
                    what: "offload bundle",
                    offset: start,
                    align: BUNDLE_ALIGN,
                }
            } else {
                FatbinError::NonZeroGap {
                    what: "offload bundle",
                    offset: start,
                    value,
                }
            });
        }
        let b = parse_bundle(data, start)?;
        pos = start.saturating_add(b.len.max(1));
        out.push(b);
    }
    out.shrink_to_fit();
    Ok(out)
}

/// Parse the bundle (plain or CCOB) at `offset` of `data`.
pub fn parse_bundle(data: &[u8], offset: usize) -> Result<OffloadBundle, FatbinError> {
    let rest = data.get(offset..).unwrap_or(&[]);
    if rest.starts_with(BUNDLE_MAGIC) {
        let (entries, table_end) = parse_table(rest, offset, u64_of(rest.len()))?;
        let end = entries
            .iter()
            .map(|e| e.offset.saturating_add(e.size))
            .fold(u64_of(table_end), u64::max);
        // parse_table checked every end against rest.len().
        let len = usize::try_from(end).unwrap_or(rest.len());
        return Ok(OffloadBundle {
            offset,
            len,
            ccob: None,
            entries,
        });
    }
    if rest.starts_with(CCOB_MAGIC) {
        return parse_ccob(data, offset);
    }
    Err(FatbinError::BadMagic {
        what: "offload bundle",
        offset,
        found: show(data, offset),
    })
}

fn parse_ccob(data: &[u8], offset: usize) -> Result<OffloadBundle, FatbinError> {
    let h = ccob_header(data, offset)?;
    let (stream, len) = ccob_stream(data, offset, &h)?;
    super::check_expansion(
        "compressed offload bundle",
        offset,
        stream.len(),
        h.uncompressed_size,
    )?;
    // Only the table is decompressed here; a zstd frame that records its content size shows
    // a header that lies about the rest.
    if h.method == CcobMethod::Zstd
        && let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(stream)
        && n != h.uncompressed_size
    {
        return Err(FatbinError::SizeMismatch {
            what: "compressed offload bundle",
            offset,
            expected: h.uncompressed_size,
            actual: n,
        });
    }
    let mut reader = decoder(h.method, stream, h.uncompressed_size, offset)?;
    let entries = read_table(&mut reader, h.uncompressed_size, offset, h.method.name())?;
    Ok(OffloadBundle {
        offset,
        len,
        ccob: Some(h),
        entries,
    })
}

/// Reads a decompressing stream on demand, never past `limit` bytes in all.
struct Pull<'r> {
    reader: &'r mut dyn Read,
    buf: Vec<u8>,
    limit: u64,
    offset: usize,
    method: &'static str,
}

impl Pull<'_> {
    /// Make the first `n` bytes available, or fail if the bundle is shorter.
    fn need(&mut self, n: u64) -> Result<&[u8], FatbinError> {
        if n > TABLE_CAP {
            return Err(FatbinError::BadField {
                what: "compressed offload bundle",
                offset: self.offset,
                field: "entry table size",
                value: n,
                problem: "exceeds the 1 MiB a real table could need",
            });
        }
        if n > self.limit {
            return Err(FatbinError::Truncated {
                what: "decompressed offload bundle table",
                offset: self.offset,
                needed: n,
                available: usize::try_from(self.limit).unwrap_or(usize::MAX),
            });
        }
        let have = u64_of(self.buf.len());
        if n > have {
            let want = n.saturating_sub(have);
            let got = (&mut *self.reader)
                .take(want)
                .read_to_end(&mut self.buf)
                .map_err(|e| FatbinError::Decompress {
                    what: "compressed offload bundle",
                    offset: self.offset,
                    method: self.method,
                    reason: e.to_string(),
                })?;
            if u64_of(got) < want {
                return Err(FatbinError::SizeMismatch {
                    what: "compressed offload bundle",
                    offset: self.offset,
                    expected: self.limit,
                    actual: u64_of(self.buf.len()),
                });
            }
        }
        Ok(&self.buf)
    }
}

/// Read a bundle's entry table from a decompressing stream of a bundle of `size` bytes.
fn read_table(
    reader: &mut dyn Read,
    size: u64,
    offset: usize,
    method: &'static str,
) -> Result<Vec<BundleEntry>, FatbinError> {
    let mut pull = Pull {
        reader,
        buf: Vec::new(),
        limit: size,
        offset,
        method,
    };
    let head = pull.need(u64_of(TABLE_START))?;
    if !head.starts_with(BUNDLE_MAGIC) {
        return Err(FatbinError::BadMagic {
            what: "decompressed offload bundle",
            offset,
            found: show(head, 0),
        });
    }
    let count = le_u64(head, 24).unwrap_or(0);
    check_count(count, size, offset)?;
    let mut entries = Vec::new();
    let mut at = u64_of(TABLE_START);
    for _ in 0..count {
        let fixed_end = at.saturating_add(u64_of(ENTRY_FIXED));
        let buf = pull.need(fixed_end)?;
        let i = usize::try_from(at).unwrap_or(usize::MAX);
        let (eo, es, tl) = (
            le_u64(buf, i).unwrap_or(0),
            le_u64(buf, i.saturating_add(8)).unwrap_or(0),
            le_u64(buf, i.saturating_add(16)).unwrap_or(0),
        );
        let end = fixed_end.saturating_add(tl);
        let buf = pull.need(end)?;
        let t = buf
            .get(usize::try_from(fixed_end).unwrap_or(usize::MAX)..)
            .and_then(|b| b.get(..usize::try_from(tl).unwrap_or(usize::MAX)))
            .unwrap_or(&[]);
        entries.push(entry(eo, es, t, size, offset)?);
        at = end;
    }
    Ok(entries)
}

/// A bundle of `size` bytes has room for at most one entry per 24 bytes after its header.
fn check_count(count: u64, size: u64, offset: usize) -> Result<(), FatbinError> {
    let room = size.saturating_sub(u64_of(TABLE_START)) / 24;
    if count > room {
        return Err(FatbinError::BadField {
            what: "offload bundle",
            offset,
            field: "entry count",
            value: count,
            problem: "does not fit in the bundle",
        });
    }
    Ok(())
}

fn entry(
    offset: u64,
    size: u64,
    triple: &[u8],
    bundle_len: u64,
    at: usize,
) -> Result<BundleEntry, FatbinError> {
    if triple.is_empty() {
        return Err(FatbinError::BadField {
            what: "offload bundle entry",
            offset: at,
            field: "triple length",
            value: 0,
            problem: "is zero",
        });
    }
    let end = offset.saturating_add(size);
    if end > bundle_len {
        return Err(FatbinError::OutOfBounds {
            what: "offload bundle entry",
            offset: at,
            end,
            limit: bundle_len,
            within: "bundle",
        });
    }
    let triple = String::from_utf8_lossy(triple).into_owned();
    Ok(BundleEntry {
        target: target_of_triple(&triple),
        triple,
        offset,
        size,
    })
}

/// Parse the entry table of an uncompressed bundle (`bundle` starts with the magic and holds
/// everything the entries point at). Returns the entries and the end of the table. `at` is
/// the bundle's offset, for error messages; `bundle_len` bounds the code objects.
pub fn parse_table(
    bundle: &[u8],
    at: usize,
    bundle_len: u64,
) -> Result<(Vec<BundleEntry>, usize), FatbinError> {
    let head = header(bundle, 0, TABLE_START, "offload bundle")?;
    if !head.starts_with(BUNDLE_MAGIC) {
        return Err(FatbinError::BadMagic {
            what: "offload bundle",
            offset: at,
            found: show(bundle, 0),
        });
    }
    let count = le_u64(head, 24).unwrap_or(0);
    let bundle_len = bundle_len.min(u64_of(bundle.len()));
    check_count(count, bundle_len, at)?;
    let mut entries = Vec::new();
    let mut pos = TABLE_START;
    for _ in 0..count {
        let fixed = header(bundle, pos, ENTRY_FIXED, "offload bundle entry").map_err(|_| {
            FatbinError::Truncated {
                what: "offload bundle entry",
                offset: at.saturating_add(pos),
                needed: u64_of(ENTRY_FIXED),
                available: bundle.len().saturating_sub(pos),
            }
        })?;
        let (eo, es, tl) = (
            le_u64(fixed, 0).unwrap_or(0),
            le_u64(fixed, 8).unwrap_or(0),
            le_u64(fixed, 16).unwrap_or(0),
        );
        let tpos = pos.saturating_add(ENTRY_FIXED);
        let triple = slice(bundle, tpos, tl, "offload bundle triple").map_err(|_| {
            FatbinError::OutOfBounds {
                what: "offload bundle triple",
                offset: at.saturating_add(tpos),
                end: u64_of(tpos).saturating_add(tl),
                limit: u64_of(bundle.len()),
                within: "bundle",
            }
        })?;
        entries.push(entry(eo, es, triple, bundle_len, at)?);
        pos = tpos.saturating_add(triple.len());
    }
    // No unused room kept per bundle (millions of tiny bundles, issue 11 item 2).
    entries.shrink_to_fit();
    Ok((entries, pos))
}

/// The uncompressed bytes of a bundle: borrowed for a plain bundle, decompressed for a CCOB.
pub fn bundle_bytes<'a>(
    section: &'a [u8],
    b: &OffloadBundle,
) -> Result<Cow<'a, [u8]>, FatbinError> {
    match b.ccob {
        Some(_) => decompress_ccob(section, b).map(Cow::Owned),
        None => b.stored(section).map(Cow::Borrowed),
    }
}

/// A new bundle holding the entries flagged in `keep` (the host entry is kept whatever its
/// flag), in the original table order, with code objects at 4096-aligned offsets. A CCOB
/// input gives a CCOB of the same version and method, with sizes and hash recomputed. Keeping
/// every entry returns the stored bytes unchanged.
///
/// The result has no trailing padding; [`pack_bundles`] lays several out in a section.
pub fn rebuild_bundle(
    section: &[u8],
    b: &OffloadBundle,
    keep: &[bool],
) -> Result<Vec<u8>, FatbinError> {
    if keep.len() != b.entries.len() {
        return Err(FatbinError::KeepLength {
            what: "offload bundle",
            expected: b.entries.len(),
            actual: keep.len(),
        });
    }
    // A CCOB's decompressed bytes, and the bundle rebuilt from them (at most as large), count
    // against the device-code budget while they are held.
    let (data, _held) = match b.ccob {
        Some(_) => {
            let (v, r) =
                ccob::decompress_ccob_held(section, b, crate::fatbin::DEFAULT_DECOMPRESS_CAP, 2)?;
            (Cow::Owned(v), Some(r))
        }
        None => (Cow::Borrowed(b.stored(section)?), None),
    };
    let (entries, _) = parse_table(&data, b.offset, u64_of(data.len()))?;
    if entries != b.entries {
        return Err(FatbinError::Stale {
            what: "offload bundle",
            offset: b.offset,
            problem: "its entry table differs",
        });
    }
    let kept: Vec<&BundleEntry> = entries
        .iter()
        .zip(keep)
        .filter(|(e, k)| **k || e.is_host())
        .map(|(e, _)| e)
        .collect();
    if kept.len() == entries.len() {
        return Ok(b.stored(section)?.to_vec());
    }
    if kept.len() > REBUILD_MAX_ENTRIES {
        return Err(FatbinError::BadField {
            what: "offload bundle",
            offset: b.offset,
            field: "entry count",
            value: u64_of(kept.len()),
            problem: "is more than a rebuilt bundle may hold (4096)",
        });
    }

    let table_len = kept.iter().fold(TABLE_START, |n, e| {
        n.saturating_add(ENTRY_FIXED).saturating_add(e.triple.len())
    });
    let mut offsets = Vec::with_capacity(kept.len());
    let mut cursor = table_len;
    for e in &kept {
        let at = align_up(cursor, BUNDLE_ALIGN).unwrap_or(cursor);
        offsets.push(at);
        cursor = at.saturating_add(usize::try_from(e.size).unwrap_or(usize::MAX));
    }
    let mut out = Vec::with_capacity(cursor);
    out.extend_from_slice(BUNDLE_MAGIC);
    out.extend_from_slice(&u64_of(kept.len()).to_le_bytes());
    for (e, &at) in kept.iter().zip(&offsets) {
        out.extend_from_slice(&u64_of(at).to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&u64_of(e.triple.len()).to_le_bytes());
        out.extend_from_slice(e.triple.as_bytes());
    }
    for (e, &at) in kept.iter().zip(&offsets) {
        out.resize(at, 0);
        let code = slice(
            &data,
            usize::try_from(e.offset).unwrap_or(usize::MAX),
            e.size,
            "offload bundle code object",
        )?;
        out.extend_from_slice(code);
    }
    match &b.ccob {
        None => Ok(out),
        Some(h) => compress_ccob(&out, h.version, h.method),
    }
}

/// Lay bundles out as a section: each at a 4096-aligned offset, zero bytes between them, no
/// padding after the last. Returns the section bytes and each bundle's offset.
pub fn pack_bundles(bundles: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut offsets = Vec::with_capacity(bundles.len());
    for b in bundles {
        let at = align_up(out.len(), BUNDLE_ALIGN).unwrap_or(out.len());
        out.resize(at, 0);
        offsets.push(at);
        out.extend_from_slice(b);
    }
    (out, offsets)
}

#[cfg(test)]
mod tests;
