//! Device code embedded in shared objects and shipped as loose files: CUDA fatbin containers
//! (`.nv_fatbin`, `__nv_relfatbin`), clang offload bundles (`.hip_fatbin`), and `.cubin`,
//! `.fatbin`, `.ptx`, `.hsaco`, `.co` files.
//!
//! Everything here is a pure function over byte slices: parse, choose what to keep, rebuild.
//! The inputs are attacker-made files, so every length and offset read from them is checked
//! before use, nothing is allocated from an untrusted size that the data present cannot back,
//! decompression has a cap, and every loop advances by at least one header.
//!
//! * [`cuda`]: fatbin containers and their entries, decompression, rebuilding.
//! * [`hip`]: clang offload bundles, plain and compressed (`CCOB`).
//! * [`select`]: which entries a set of target GPUs needs.
//! * [`loose`]: device code shipped as files of its own.

// A panic while rewriting a wheel corrupts its output: the parsers may not index, unwrap or
// overflow on hostile input. Tests opt out where they need to.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

pub mod cuda;
pub mod family;
pub mod hip;
pub mod loose;
pub mod select;

// The two bounds of one decompression are the memory budget's (`budget.rs` owns what memory
// device code may take; this module only applies it).
pub use crate::budget::{DEFAULT_DECOMPRESS_CAP, EXPANSION_FLOOR};

/// How many times its compressed stream a piece of device code may claim to expand to.
/// Compiled device code and PTX compress 3-30x with LZ4, zstd or zlib; a claim far past that
/// is a bomb, and refusing it bounds what any container can cost to a multiple of the bytes
/// that hold it (and so of the member those bytes came from).
pub const MAX_EXPANSION: u64 = 256;

/// The most bytes a stream of `compressed` bytes may honestly decompress to.
pub fn expansion_cap(compressed: usize) -> u64 {
    bytes::u64_of(compressed)
        .saturating_mul(MAX_EXPANSION)
        .max(EXPANSION_FLOOR)
}

/// The most bytes one decompression may produce in this process: a quarter of the command's
/// `--memory` (set by the command line through [`limit_decompression`]; see
/// [`crate::budget::Shares`]), so that decompressed device code and its rebuilt copy fit the
/// device share of the same budget members draw from.
static DECOMPRESS_LIMIT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_DECOMPRESS_CAP);

/// Sets the cap of every decompression of device code, and of all of them held at once, from
/// the command's `--memory` ([`crate::budget::Shares::of`]: a quarter of it per decompression,
/// never below [`EXPANSION_FLOOR`] nor above [`DEFAULT_DECOMPRESS_CAP`], and half of it for
/// all). Meant to be called once by a command.
pub fn limit_decompression(memory: u64) {
    let shares = crate::budget::Shares::of(memory, true);
    DECOMPRESS_LIMIT.store(
        shares.per_decompression,
        std::sync::atomic::Ordering::Relaxed,
    );
    crate::budget::DEVICE.set_cap(shares.device);
}

/// The cap [`limit_decompression`] set on one decompression.
pub fn decompression_limit() -> u64 {
    DECOMPRESS_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Refuse a claimed decompressed `size` that its `compressed` stream cannot honestly back, or
/// that is more than one decompression may hold in memory.
pub(crate) fn check_expansion(
    what: &'static str,
    offset: usize,
    compressed: usize,
    size: u64,
) -> Result<(), FatbinError> {
    if size > expansion_cap(compressed) {
        return Err(FatbinError::BadField {
            what,
            offset,
            field: "uncompressed size",
            value: size,
            problem: "is more than 256 times its compressed stream: a decompression bomb",
        });
    }
    let limit = DECOMPRESS_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if size > limit {
        return Err(FatbinError::TooLarge {
            what,
            offset,
            size,
            cap: limit,
        });
    }
    Ok(())
}

/// Problems in device code. Offsets are relative to the start of the section or file parsed
/// (for members of a decompressed bundle or concat group: relative to its decompressed bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatbinError {
    /// A structure does not fit in the bytes that remain.
    #[error("truncated {what} at offset {offset:#x}: needs {needed} bytes, {available} available")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        available: usize,
    },
    /// The bytes at `offset` are not the magic number of the structure expected there.
    #[error("no {what} magic at offset {offset:#x} (found {found})")]
    BadMagic {
        what: &'static str,
        offset: usize,
        found: String,
    },
    /// Non-zero bytes where only zero padding may be (between containers or bundles).
    #[error("non-zero byte {value:#04x} at offset {offset:#x} between {what}s")]
    NonZeroGap {
        what: &'static str,
        offset: usize,
        value: u8,
    },
    /// A structure starts at an offset that breaks the format's alignment.
    #[error("{what} at offset {offset:#x} is not {align}-byte aligned")]
    Misaligned {
        what: &'static str,
        offset: usize,
        align: usize,
    },
    #[error("unsupported {what} version {version} at offset {offset:#x}")]
    UnsupportedVersion {
        what: &'static str,
        offset: usize,
        version: u64,
    },
    /// A header field holds a value the format does not allow.
    #[error("{what} at offset {offset:#x}: `{field}` = {value:#x} {problem}")]
    BadField {
        what: &'static str,
        offset: usize,
        field: &'static str,
        value: u64,
        problem: &'static str,
    },
    /// A range named by a header reaches past the end of what encloses it.
    #[error(
        "{what} at offset {offset:#x} ends at {end:#x}, past the end {limit:#x} of its {within}"
    )]
    OutOfBounds {
        what: &'static str,
        offset: usize,
        end: u64,
        limit: u64,
        within: &'static str,
    },
    /// A record (identifier, options, member table) named by a header lies outside the part
    /// of the header that holds records: after the fixed 64 bytes, before the header's end.
    /// `start..end` and `min..limit` are relative to the header at `offset`.
    #[error(
        "{what} of the header at offset {offset:#x} covers its bytes {start:#x}..{end:#x}, \
         outside the record area {min:#x}..{limit:#x} that follows the fixed 64-byte part"
    )]
    RecordOutside {
        what: &'static str,
        offset: usize,
        start: u64,
        end: u64,
        min: u64,
        limit: u64,
    },
    #[error("entry at offset {offset:#x} uses an unknown compression (flags {flags:#x})")]
    UnknownCompression { offset: usize, flags: u64 },
    /// The entry or bundle at `offset` would decompress to more than the cap allows.
    #[error(
        "{what} at offset {offset:#x} claims {size} bytes uncompressed, more than the cap of {cap}"
    )]
    TooLarge {
        what: &'static str,
        offset: usize,
        size: u64,
        cap: u64,
    },
    #[error("cannot decompress the {method} stream of the {what} at offset {offset:#x}: {reason}")]
    Decompress {
        what: &'static str,
        offset: usize,
        method: &'static str,
        reason: String,
    },
    /// A stream decompressed to another size than its header says.
    #[error(
        "the {what} at offset {offset:#x} decompresses to {actual} bytes, its header says {expected}"
    )]
    SizeMismatch {
        what: &'static str,
        offset: usize,
        expected: u64,
        actual: u64,
    },
    #[error("cannot {method}-compress {len} bytes: {reason}")]
    Compress {
        method: &'static str,
        len: usize,
        reason: String,
    },
    /// A rebuilt structure does not fit the size field its format gives it.
    #[error("rebuilt {what} needs {value} in `{field}`, which holds at most {max}")]
    FieldOverflow {
        what: &'static str,
        field: &'static str,
        value: u64,
        max: u64,
    },
    /// A keep list whose length differs from the number of items it decides on.
    #[error("{what} has {expected} items but the keep list has {actual}")]
    KeepLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// Rebuilding a concat group without any member: drop the whole entry instead.
    #[error("concat group at offset {offset:#x} would keep no member; drop the entry instead")]
    EmptyConcat { offset: usize },
    #[error(
        "`{0}` is not a CUDA architecture (expected a form like 90, 90a, 100f, sm_90a or compute_90)"
    )]
    InvalidArch(String),
    #[error(
        "`{0}` is not an AMD GPU target (expected a form like gfx90a, gfx942 or gfx90a:xnack+)"
    )]
    InvalidGfx(String),
    /// The structure passed does not describe the bytes passed (a caller mix-up).
    #[error("{what} at offset {offset:#x} does not match the bytes given: {problem}")]
    Stale {
        what: &'static str,
        offset: usize,
        problem: &'static str,
    },
    /// A rebuilt structure does not parse back as what was meant; it is not produced.
    #[error("the rebuilt {what} for offset {offset:#x} fails its own check: {problem}")]
    RebuildCheck {
        what: &'static str,
        offset: usize,
        problem: String,
    },
}

/// Checked little-endian reads and range helpers shared by the parsers.
pub(crate) mod bytes {
    use super::FatbinError;

    pub fn le_u16(data: &[u8], at: usize) -> Option<u16> {
        let b = data.get(at..at.checked_add(2)?)?;
        Some(u16::from_le_bytes(b.try_into().ok()?))
    }

    pub fn le_u32(data: &[u8], at: usize) -> Option<u32> {
        let b = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    pub fn le_u64(data: &[u8], at: usize) -> Option<u64> {
        let b = data.get(at..at.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// `data[at..at + len]`, or a [`FatbinError::Truncated`] naming `what`.
    pub fn slice<'a>(
        data: &'a [u8],
        at: usize,
        len: u64,
        what: &'static str,
    ) -> Result<&'a [u8], FatbinError> {
        let truncated = || FatbinError::Truncated {
            what,
            offset: at,
            needed: len,
            available: data.len().saturating_sub(at),
        };
        let len = usize::try_from(len).map_err(|_| truncated())?;
        let end = at.checked_add(len).ok_or_else(truncated)?;
        data.get(at..end).ok_or_else(truncated)
    }

    /// A fixed-size header at `at`, or [`FatbinError::Truncated`].
    pub fn header<'a>(
        data: &'a [u8],
        at: usize,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], FatbinError> {
        slice(data, at, len as u64, what)
    }

    /// `value` rounded up to a multiple of `align` (a power of two), if that fits.
    pub fn align_up(value: usize, align: usize) -> Option<usize> {
        let mask = align.checked_sub(1)?;
        Some(value.checked_add(mask)? & !mask)
    }

    /// The first non-zero byte at or after `from`, as (offset, value).
    pub fn next_non_zero(data: &[u8], from: usize) -> Option<(usize, u8)> {
        let rest = data.get(from..)?;
        let i = rest.iter().position(|&b| b != 0)?;
        let v = *rest.get(i)?;
        Some((from.checked_add(i)?, v))
    }

    /// Up to 8 bytes at `at`, in hex, for error messages.
    pub fn show(data: &[u8], at: usize) -> String {
        let b = data.get(at..).unwrap_or(&[]);
        let b = b.get(..8).unwrap_or(b);
        if b.is_empty() {
            return "end of data".to_string();
        }
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Convert a validated in-memory length to u64 (lossless on every supported target).
    pub fn u64_of(n: usize) -> u64 {
        n as u64
    }
}
