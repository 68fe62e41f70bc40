//! Compressed offload bundles (`CCOB`): headers, streams, decompression, compression.

use std::io::Read;

use md5::{Digest, Md5};
use serde::Serialize;

use super::{BUNDLE_ALIGN, BUNDLE_MAGIC, CCOB_MAGIC, OffloadBundle};
use crate::fatbin::bytes::{align_up, header, le_u16, le_u32, le_u64, slice, u64_of};
use crate::fatbin::cuda::window_log_for;
use crate::fatbin::{DEFAULT_DECOMPRESS_CAP, FatbinError};

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

    pub fn name(self) -> &'static str {
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

/// Read the CCOB header at `offset`.
pub(super) fn ccob_header(data: &[u8], offset: usize) -> Result<CcobHeader, FatbinError> {
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
pub(super) fn ccob_stream<'a>(
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

/// A streaming decoder for a CCOB stream.
pub(super) fn decoder<'a>(
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
    decompress_ccob_held(section, b, cap, 1).map(|(v, _)| v)
}

/// [`decompress_ccob_capped`], and the reservation of [`crate::budget::DEVICE`] that must live
/// as long as the bytes do: `copies` times their size, 2 for a caller that builds a bundle of
/// about that size from them ([`super::rebuild_bundle`]).
pub(crate) fn decompress_ccob_held(
    section: &[u8],
    b: &OffloadBundle,
    cap: u64,
    copies: u64,
) -> Result<(Vec<u8>, crate::budget::Reservation<'static>), FatbinError> {
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
    crate::fatbin::check_expansion(WHAT, b.offset, stream.len(), size)?;
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
    let held = crate::budget::DEVICE.reserve(size.saturating_mul(copies.max(1)));
    // One allocation of the checked, reserved size (doubling held up to twice it).
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX))
        .map_err(|e| fail(e.to_string()))?;
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
    Ok((out, held))
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
