//! Decompressing entry payloads: raw LZ4 blocks and zstd frames, to an exact size under a cap.

use super::{Compression, Entry};
use crate::budget::Reservation;
use crate::fatbin::bytes::{slice, u64_of};
use crate::fatbin::{DEFAULT_DECOMPRESS_CAP, FatbinError};

/// Decompress an entry's payload, capped at [`DEFAULT_DECOMPRESS_CAP`].
///
/// Uncompressed entries return their payload as stored (padded to 8).
pub fn decompress_entry(section: &[u8], e: &Entry) -> Result<Vec<u8>, FatbinError> {
    decompress_entry_capped(section, e, DEFAULT_DECOMPRESS_CAP)
}

/// [`decompress_entry`] with a caller-chosen cap on the output size. The output must be exactly
/// `uncompressed_size` bytes: streams that produce more or less are errors.
pub fn decompress_entry_capped(
    section: &[u8],
    e: &Entry,
    cap: u64,
) -> Result<Vec<u8>, FatbinError> {
    decompress_entry_held(section, e, cap, 1).map(|(v, _)| v)
}

/// [`decompress_entry_capped`], and the reservation of [`crate::budget::DEVICE`] that must live
/// as long as the bytes do (`None` for an uncompressed payload, which is a copy of bytes the
/// member already holds). The reservation is `copies` times the decompressed size: 2 for a
/// caller that builds a copy of about that size from the bytes (a rebuilt concat group), so
/// that both are counted before either is allocated.
pub(crate) fn decompress_entry_held(
    section: &[u8],
    e: &Entry,
    cap: u64,
    copies: u64,
) -> Result<(Vec<u8>, Option<Reservation<'static>>), FatbinError> {
    let payload = slice(
        section,
        e.payload_offset(),
        u64_of(e.payload_size),
        "entry payload",
    )?;
    match e.compression {
        Compression::None => Ok((payload.to_vec(), None)),
        Compression::Unknown(flags) => Err(FatbinError::UnknownCompression {
            offset: e.offset,
            flags,
        }),
        Compression::Lz4 | Compression::Zstd => {
            let stream = slice(payload, 0, e.compressed_size, "compressed stream")?;
            decompress(
                e.compression,
                stream,
                e.uncompressed_size,
                cap,
                copies,
                "fatbin entry",
                e.offset,
            )
            .map(|(v, r)| (v, Some(r)))
        }
    }
}

/// Decompress `stream` (a raw LZ4 block or one zstd frame) to exactly `size` bytes, reserved
/// from [`crate::budget::DEVICE`] (`copies` times over, see [`decompress_entry_held`]) once the
/// claim has passed every check (the caller holds the reservation for as long as it holds the
/// bytes).
pub(crate) fn decompress(
    method: Compression,
    stream: &[u8],
    size: u64,
    cap: u64,
    copies: u64,
    what: &'static str,
    offset: usize,
) -> Result<(Vec<u8>, Reservation<'static>), FatbinError> {
    if size > cap {
        return Err(FatbinError::TooLarge {
            what,
            offset,
            size,
            cap,
        });
    }
    crate::fatbin::check_expansion(what, offset, stream.len(), size)?;
    let too_large = || FatbinError::TooLarge {
        what,
        offset,
        size,
        cap: u64_of(usize::MAX),
    };
    let usize_size = usize::try_from(size).map_err(|_| too_large())?;
    let held = crate::budget::DEVICE.reserve(size.saturating_mul(copies.max(1)));
    let fail = |method: &'static str, reason: String| FatbinError::Decompress {
        what,
        offset,
        method,
        reason,
    };
    match method {
        Compression::Lz4 => {
            // An LZ4 sequence of n bytes yields at most about 255·n bytes: refuse claims the
            // stream cannot back before allocating for them.
            if size > u64_of(stream.len()).saturating_mul(256) {
                return Err(fail(
                    "lz4",
                    format!("{} compressed bytes cannot expand to {size}", stream.len()),
                ));
            }
            let mut out = vec![0u8; usize_size];
            let n = lz4_flex::block::decompress_into(stream, &mut out)
                .map_err(|err| fail("lz4", err.to_string()))?;
            if n != usize_size {
                return Err(FatbinError::SizeMismatch {
                    what,
                    offset,
                    expected: size,
                    actual: u64_of(n),
                });
            }
            Ok((out, held))
        }
        Compression::Zstd => zstd_exact(stream, size, what, offset).map(|v| (v, held)),
        Compression::None | Compression::Unknown(_) => Err(fail(
            method.name(),
            "not a supported compression".to_string(),
        )),
    }
}

/// Decode one zstd frame that must fill `stream` exactly and produce exactly `size` bytes.
/// The output is allocated once at `size` (the claim has passed the expansion and memory
/// checks and is reserved): growing it by doubling held up to twice the claim while copying.
fn zstd_exact(
    stream: &[u8],
    size: u64,
    what: &'static str,
    offset: usize,
) -> Result<Vec<u8>, FatbinError> {
    use std::io::Read;
    let fail = |reason: String| FatbinError::Decompress {
        what,
        offset,
        method: "zstd",
        reason,
    };
    match zstd::zstd_safe::find_frame_compressed_size(stream) {
        Ok(n) if n == stream.len() => {}
        Ok(n) => {
            return Err(fail(format!(
                "the frame is {n} bytes long, the header says {}",
                stream.len()
            )));
        }
        Err(code) => {
            return Err(fail(zstd::zstd_safe::get_error_name(code).to_string()));
        }
    }
    let mut dec = zstd::stream::read::Decoder::with_buffer(stream)
        .map_err(|err| fail(err.to_string()))?
        .single_frame();
    // The window never needs to exceed the output; this bounds the decoder's own allocation.
    dec.window_log_max(window_log_for(size))
        .map_err(|err| fail(err.to_string()))?;
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX))
        .map_err(|err| fail(err.to_string()))?;
    let n = dec
        .by_ref()
        .take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|err| fail(err.to_string()))?;
    if u64_of(n) != size {
        return Err(FatbinError::SizeMismatch {
            what,
            offset,
            expected: size,
            actual: u64_of(n),
        });
    }
    Ok(out)
}

/// Checks that a compressed entry's stream is what its header says, without decoding it: one
/// zstd frame filling the stream exactly (and decoding to `size` bytes where the frame says),
/// or a raw LZ4 block whose sequences stay inside the stream, refer back only to bytes
/// already produced and add up to `size` bytes. Costs a walk over the block and frame headers,
/// not a decompression, so a container whose stream is damaged is refused when it is parsed,
/// even where nothing ever decompresses it.
pub(crate) fn check_stream(
    method: Compression,
    stream: &[u8],
    size: u64,
    what: &'static str,
    offset: usize,
) -> Result<(), FatbinError> {
    let fail = |reason: String| FatbinError::Decompress {
        what,
        offset,
        method: method.name(),
        reason,
    };
    let produced = match method {
        Compression::Lz4 => lz4_block_len(stream).map_err(|r| fail(r.to_string()))?,
        Compression::Zstd => {
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
            match zstd::zstd_safe::get_frame_content_size(stream) {
                Ok(Some(n)) => n,
                _ => return Ok(()),
            }
        }
        Compression::None | Compression::Unknown(_) => return Ok(()),
    };
    if produced != size {
        return Err(FatbinError::SizeMismatch {
            what,
            offset,
            expected: size,
            actual: produced,
        });
    }
    Ok(())
}

/// The number of bytes a raw LZ4 block decodes to, found by walking its sequences: a token,
/// literal-length bytes, the literals, then (except after the last literals) a 2-byte match
/// offset and match-length bytes.
fn lz4_block_len(block: &[u8]) -> Result<u64, &'static str> {
    // A length nibble of 15 continues in bytes; each 255 adds and continues.
    fn extended(block: &[u8], pos: &mut usize, mut len: u64) -> Result<u64, &'static str> {
        if len == 15 {
            loop {
                let b = *block
                    .get(*pos)
                    .ok_or("a length runs past the end of the block")?;
                *pos = pos.saturating_add(1);
                len = len.saturating_add(u64::from(b));
                if b != 255 {
                    break;
                }
            }
        }
        Ok(len)
    }
    let mut pos = 0usize;
    let mut out = 0u64;
    loop {
        let token = *block.get(pos).ok_or("the block ends before a sequence")?;
        pos = pos.saturating_add(1);
        let literals = extended(block, &mut pos, u64::from(token >> 4))?;
        pos = usize::try_from(literals)
            .ok()
            .and_then(|n| pos.checked_add(n))
            .filter(|&end| end <= block.len())
            .ok_or("literals run past the end of the block")?;
        out = out.saturating_add(literals);
        if pos == block.len() {
            return Ok(out);
        }
        let lo = *block
            .get(pos)
            .ok_or("a match offset runs past the end of the block")?;
        let hi = *block
            .get(pos.saturating_add(1))
            .ok_or("a match offset runs past the end of the block")?;
        pos = pos.saturating_add(2);
        let back = u64::from(u16::from_le_bytes([lo, hi]));
        if back == 0 || back > out {
            return Err("a match refers to bytes before the start of the block");
        }
        let matched = extended(block, &mut pos, u64::from(token & 15))?;
        out = out.saturating_add(matched).saturating_add(4);
        if pos == block.len() {
            return Ok(out);
        }
    }
}

/// log2 of the smallest power of two ≥ `size`, clamped to zstd's limits (10..=31).
pub(crate) fn window_log_for(size: u64) -> u32 {
    let bits = u64::BITS.saturating_sub(size.saturating_sub(1).leading_zeros());
    bits.clamp(10, 31)
}
