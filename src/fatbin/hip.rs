//! Clang offload bundles (FORMATS.md §3): the `.hip_fatbin` section and loose bundle files.
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

use md5::{Digest, Md5};
use serde::Serialize;

use super::bytes::{align_up, header, le_u16, le_u32, le_u64, next_non_zero, show, slice, u64_of};
use super::cuda::window_log_for;
use super::{DEFAULT_DECOMPRESS_CAP, FatbinError};

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
/// zstd level for recompressed bundles.
const ZSTD_LEVEL: i32 = 9;

/// The compression of a `CCOB` bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CcobMethod {
    Zlib,
    Zstd,
    #[serde(untagged)]
    Unknown(u16),
}

impl CcobMethod {
    fn from_code(code: u16) -> Self {
        match code {
            0 => CcobMethod::Zlib,
            1 => CcobMethod::Zstd,
            other => CcobMethod::Unknown(other),
        }
    }

    fn code(self) -> u16 {
        match self {
            CcobMethod::Zlib => 0,
            CcobMethod::Zstd => 1,
            CcobMethod::Unknown(c) => c,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CcobMethod::Zlib => "zlib",
            CcobMethod::Zstd => "zstd",
            CcobMethod::Unknown(_) => "unknown",
        }
    }
}

/// The header of a compressed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CcobHeader {
    pub version: u16,
    pub method: CcobMethod,
    /// Header plus compressed stream (versions 2 and 3; version 1 does not record it).
    pub total_size: Option<u64>,
    pub uncompressed_size: u64,
    /// The first 8 bytes of the MD5 digest of the uncompressed bundle, little-endian.
    pub hash: u64,
    pub header_len: usize,
}

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

/// Read the CCOB header at `offset`.
fn ccob_header(data: &[u8], offset: usize) -> Result<CcobHeader, FatbinError> {
    const WHAT: &str = "compressed offload bundle";
    let h = header(data, offset, 8, WHAT)?;
    let version = le_u16(h, 4).unwrap_or(0);
    let method = CcobMethod::from_code(le_u16(h, 6).unwrap_or(0));
    let header_len = match version {
        1 => 20,
        2 => 24,
        3 => 32,
        v => {
            return Err(FatbinError::UnsupportedVersion {
                what: WHAT,
                offset,
                version: v.into(),
            });
        }
    };
    let h = header(data, offset, header_len, WHAT)?;
    let field = |at: usize, wide: bool| {
        if wide {
            le_u64(h, at).unwrap_or(0)
        } else {
            u64::from(le_u32(h, at).unwrap_or(0))
        }
    };
    let (total_size, uncompressed_size, hash) = match version {
        1 => (None, field(8, false), field(12, true)),
        2 => (Some(field(8, false)), field(12, false), field(16, true)),
        _ => (Some(field(8, true)), field(16, true), field(24, true)),
    };
    Ok(CcobHeader {
        version,
        method,
        total_size,
        uncompressed_size,
        hash,
        header_len,
    })
}

/// The compressed stream of the CCOB at `offset` and the bundle's stored length.
fn ccob_stream<'a>(
    data: &'a [u8],
    offset: usize,
    h: &CcobHeader,
) -> Result<(&'a [u8], usize), FatbinError> {
    const WHAT: &str = "compressed offload bundle";
    let start = offset.saturating_add(h.header_len);
    if let Some(total) = h.total_size {
        if total < u64_of(h.header_len) {
            return Err(FatbinError::BadField {
                what: WHAT,
                offset,
                field: "total size",
                value: total,
                problem: "is smaller than the header",
            });
        }
        let all = slice(data, offset, total, WHAT).map_err(|_| FatbinError::OutOfBounds {
            what: WHAT,
            offset,
            end: u64_of(offset).saturating_add(total),
            limit: u64_of(data.len()),
            within: "section",
        })?;
        let stream = all.get(h.header_len..).unwrap_or(&[]);
        return Ok((stream, all.len()));
    }
    // Version 1 has no total size: the stream runs to the next 4096-aligned bundle magic
    // or the end of the data.
    let mut next = align_up(offset.saturating_add(1), BUNDLE_ALIGN).unwrap_or(data.len());
    while next < data.len() {
        let at = data.get(next..).unwrap_or(&[]);
        if at.starts_with(CCOB_MAGIC) || at.starts_with(BUNDLE_MAGIC) {
            break;
        }
        next = next.saturating_add(BUNDLE_ALIGN);
    }
    let end = next.min(data.len());
    let span = data.get(start..end).unwrap_or(&[]);
    let len = match h.method {
        CcobMethod::Zstd => match zstd::zstd_safe::find_frame_compressed_size(span) {
            Ok(n) => h.header_len.saturating_add(n),
            Err(code) => {
                return Err(FatbinError::Decompress {
                    what: WHAT,
                    offset,
                    method: "zstd",
                    reason: zstd::zstd_safe::get_error_name(code).to_string(),
                });
            }
        },
        _ => end.saturating_sub(offset),
    };
    let stream = span.get(..len.saturating_sub(h.header_len)).unwrap_or(span);
    Ok((stream, len))
}

fn parse_ccob(data: &[u8], offset: usize) -> Result<OffloadBundle, FatbinError> {
    let h = ccob_header(data, offset)?;
    let (stream, len) = ccob_stream(data, offset, &h)?;
    let mut reader = decoder(h.method, stream, h.uncompressed_size, offset)?;
    let entries = read_table(&mut reader, h.uncompressed_size, offset, h.method.name())?;
    Ok(OffloadBundle {
        offset,
        len,
        ccob: Some(h),
        entries,
    })
}

/// A streaming decoder for a CCOB stream.
fn decoder<'a>(
    method: CcobMethod,
    stream: &'a [u8],
    size: u64,
    offset: usize,
) -> Result<Box<dyn Read + 'a>, FatbinError> {
    let fail = |reason: String| FatbinError::Decompress {
        what: "compressed offload bundle",
        offset,
        method: method.name(),
        reason,
    };
    match method {
        CcobMethod::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(stream)
                .map_err(|e| fail(e.to_string()))?
                .single_frame();
            d.window_log_max(window_log_for(size))
                .map_err(|e| fail(e.to_string()))?;
            Ok(Box::new(d))
        }
        CcobMethod::Zlib => Ok(Box::new(flate2::read::ZlibDecoder::new(stream))),
        CcobMethod::Unknown(_) => Err(fail("unknown compression method".to_string())),
    }
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
    Ok((entries, pos))
}

/// The hash a CCOB header records for an uncompressed bundle.
pub fn bundle_hash(uncompressed: &[u8]) -> u64 {
    let digest = Md5::digest(uncompressed);
    let mut low = [0u8; 8];
    if let Some(d) = digest.get(..8) {
        low.copy_from_slice(d);
    }
    u64::from_le_bytes(low)
}

/// Decompress a CCOB bundle completely (capped at [`DEFAULT_DECOMPRESS_CAP`]).
pub fn decompress_ccob(section: &[u8], b: &OffloadBundle) -> Result<Vec<u8>, FatbinError> {
    decompress_ccob_capped(section, b, DEFAULT_DECOMPRESS_CAP)
}

/// [`decompress_ccob`] with a caller-chosen cap. The output must be exactly the header's
/// uncompressed size, and for versions 2 and 3 the stream must fill the stated total size.
pub fn decompress_ccob_capped(
    section: &[u8],
    b: &OffloadBundle,
    cap: u64,
) -> Result<Vec<u8>, FatbinError> {
    const WHAT: &str = "compressed offload bundle";
    let h = ccob_header(section, b.offset)?;
    if b.ccob.as_ref() != Some(&h) {
        return Err(FatbinError::Stale {
            what: WHAT,
            offset: b.offset,
            problem: "its header differs",
        });
    }
    let size = h.uncompressed_size;
    if size > cap {
        return Err(FatbinError::TooLarge {
            what: WHAT,
            offset: b.offset,
            size,
            cap,
        });
    }
    let (stream, _) = ccob_stream(section, b.offset, &h)?;
    let fail = |reason: String| FatbinError::Decompress {
        what: WHAT,
        offset: b.offset,
        method: h.method.name(),
        reason,
    };
    if h.method == CcobMethod::Zstd {
        match zstd::zstd_safe::find_frame_compressed_size(stream) {
            Ok(n) if n == stream.len() => {}
            Ok(n) => {
                return Err(fail(format!(
                    "the frame is {n} bytes long, the header says {}",
                    stream.len()
                )));
            }
            Err(code) => return Err(fail(zstd::zstd_safe::get_error_name(code).to_string())),
        }
    }
    let mut out = Vec::new();
    let n = match h.method {
        CcobMethod::Zlib => {
            let mut z = flate2::read::ZlibDecoder::new(stream);
            let n = (&mut z)
                .take(size.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| fail(e.to_string()))?;
            if h.total_size.is_some() && z.total_in() != u64_of(stream.len()) {
                return Err(fail(format!(
                    "the stream ends after {} of its {} bytes",
                    z.total_in(),
                    stream.len()
                )));
            }
            n
        }
        _ => decoder(h.method, stream, size, b.offset)?
            .take(size.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| fail(e.to_string()))?,
    };
    if u64_of(n) != size {
        return Err(FatbinError::SizeMismatch {
            what: WHAT,
            offset: b.offset,
            expected: size,
            actual: u64_of(n),
        });
    }
    Ok(out)
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
    let data = bundle_bytes(section, b)?;
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

/// Wrap an uncompressed bundle in a CCOB header of `version` compressed with `method`.
pub fn compress_ccob(
    bundle: &[u8],
    version: u16,
    method: CcobMethod,
) -> Result<Vec<u8>, FatbinError> {
    let fail = |reason: String| FatbinError::Compress {
        method: method.name(),
        len: bundle.len(),
        reason,
    };
    let stream = match method {
        CcobMethod::Zstd => {
            zstd::bulk::compress(bundle, ZSTD_LEVEL).map_err(|e| fail(e.to_string()))?
        }
        CcobMethod::Zlib => {
            use std::io::Write;
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(bundle).map_err(|e| fail(e.to_string()))?;
            z.finish().map_err(|e| fail(e.to_string()))?
        }
        CcobMethod::Unknown(_) => return Err(fail("unknown compression method".to_string())),
    };
    let header_len: usize = match version {
        1 => 20,
        2 => 24,
        3 => 32,
        v => {
            return Err(FatbinError::UnsupportedVersion {
                what: "compressed offload bundle",
                offset: 0,
                version: v.into(),
            });
        }
    };
    let total = u64_of(header_len).saturating_add(u64_of(stream.len()));
    let usize_ = u64_of(bundle.len());
    let narrow = |value: u64, field: &'static str| {
        u32::try_from(value).map_err(|_| FatbinError::FieldOverflow {
            what: "compressed offload bundle",
            field,
            value,
            max: u32::MAX.into(),
        })
    };
    let mut out = Vec::with_capacity(header_len.saturating_add(stream.len()));
    out.extend_from_slice(CCOB_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&method.code().to_le_bytes());
    match version {
        1 => out.extend_from_slice(&narrow(usize_, "uncompressed size")?.to_le_bytes()),
        2 => {
            out.extend_from_slice(&narrow(total, "total size")?.to_le_bytes());
            out.extend_from_slice(&narrow(usize_, "uncompressed size")?.to_le_bytes());
        }
        _ => {
            out.extend_from_slice(&total.to_le_bytes());
            out.extend_from_slice(&usize_.to_le_bytes());
        }
    }
    out.extend_from_slice(&bundle_hash(bundle).to_le_bytes());
    out.extend_from_slice(&stream);
    Ok(out)
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
