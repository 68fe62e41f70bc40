//! The one set of bounds-checked accessors of `elf/`: little-endian fields read from and
//! written to a byte slice at a file offset, plus the two pieces of range arithmetic every
//! rewriter needs (`align_up`, `overlaps`). The reader (`file.rs`), the patcher, the
//! dynamic-section view, the companion writer and the shrinker all go through these, so a
//! short or hostile file gets the same refusal whichever stage reads it: an
//! [`ElfError::Truncated`] naming what was read, where, and how much of the file there is.
//! Nothing here panics: every sum is overflow-checked and every slice taken with `get`.

use std::ops::Range;

use super::ElfError;

/// `off..off+len` as a slice range of a buffer of `total` bytes, or `Truncated` naming `what`.
pub(crate) fn range(
    off: u64,
    len: u64,
    total: usize,
    what: &str,
) -> Result<Range<usize>, ElfError> {
    let past = || {
        ElfError::Truncated(format!(
            "{what} at {off:#x}+{len:#x} ends past the {total:#x} bytes available"
        ))
    };
    let end = off
        .checked_add(len)
        .filter(|&e| e <= total as u64)
        .ok_or_else(past)?;
    // Both fit in usize: off <= end <= total, which is a usize.
    let start = usize::try_from(off).map_err(|_| past())?;
    let end = usize::try_from(end).map_err(|_| past())?;
    Ok(start..end)
}

/// `len` bytes at `off`, or `Truncated` naming `what`.
pub(crate) fn bytes_at<'a>(
    d: &'a [u8],
    off: u64,
    len: u64,
    what: &str,
) -> Result<&'a [u8], ElfError> {
    let r = range(off, len, d.len(), what)?;
    d.get(r)
        .ok_or_else(|| ElfError::Truncated(format!("{what} at {off:#x}")))
}

/// The `N` bytes at `off` as an array, or `Truncated` naming `what`.
fn array_at<const N: usize>(d: &[u8], off: u64, what: &str) -> Result<[u8; N], ElfError> {
    let b = bytes_at(d, off, N as u64, what)?;
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    Ok(a)
}

pub(crate) fn u16_at(d: &[u8], off: u64) -> Result<u16, ElfError> {
    array_at(d, off, "a 16-bit field").map(u16::from_le_bytes)
}

pub(crate) fn u32_at(d: &[u8], off: u64) -> Result<u32, ElfError> {
    array_at(d, off, "a 32-bit field").map(u32::from_le_bytes)
}

pub(crate) fn u64_at(d: &[u8], off: u64) -> Result<u64, ElfError> {
    array_at(d, off, "a 64-bit field").map(u64::from_le_bytes)
}

/// The `len` bytes at `off` of `out`, writable, or `Truncated` naming `what`.
fn slot<'a>(out: &'a mut [u8], off: u64, len: u64, what: &str) -> Result<&'a mut [u8], ElfError> {
    let r = range(off, len, out.len(), what)?;
    out.get_mut(r)
        .ok_or_else(|| ElfError::Truncated(format!("{what} at {off:#x}")))
}

/// Writes `src` at `off` in `out`; an error (never a panic) if it does not fit.
pub(crate) fn put(out: &mut [u8], off: u64, src: &[u8]) -> Result<(), ElfError> {
    slot(out, off, src.len() as u64, "a write")?.copy_from_slice(src);
    Ok(())
}

pub(crate) fn put_u16(out: &mut [u8], off: u64, v: u16) -> Result<(), ElfError> {
    put(out, off, &v.to_le_bytes())
}

pub(crate) fn put_u64(out: &mut [u8], off: u64, v: u64) -> Result<(), ElfError> {
    put(out, off, &v.to_le_bytes())
}

/// Fills `len` bytes at `off` with zeros; an error (never a panic) if they do not fit.
pub(crate) fn zero_range(out: &mut [u8], off: u64, len: u64) -> Result<(), ElfError> {
    slot(out, off, len, "a zeroed range")?.fill(0);
    Ok(())
}

/// `v` rounded up to a multiple of `align` (0 and 1 mean no alignment), or `None` on overflow.
/// Any alignment works, not only powers of two: a hostile `p_align` must give a wrong-looking
/// answer the caller's checks refuse, never a silently masked one.
pub(crate) fn align_up(v: u64, align: u64) -> Option<u64> {
    if align <= 1 {
        return Some(v);
    }
    match v % align {
        0 => Some(v),
        rem => v.checked_add(align - rem),
    }
}

/// True when the non-empty half-open ranges `[a, a+a_len)` and `[b, b+b_len)` share a byte.
pub(crate) fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a_len > 0 && b_len > 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_refuse_past_the_end_without_panicking() {
        let mut d = vec![0u8; 8];
        put_u64(&mut d, 0, 0x0807_0605_0403_0201).unwrap();
        assert_eq!(u16_at(&d, 6).unwrap(), 0x0807);
        assert_eq!(u32_at(&d, 4).unwrap(), 0x0807_0605);
        let e = u32_at(&d, 6).unwrap_err().to_string();
        assert!(
            e.contains("a 32-bit field at 0x6+0x4 ends past the 0x8 bytes"),
            "{e}"
        );
        assert!(u64_at(&d, u64::MAX).is_err());
        assert!(put(&mut d, u64::MAX - 1, &[1, 2, 3]).is_err());
        assert!(zero_range(&mut d, 4, 5).is_err());
        zero_range(&mut d, 4, 4).unwrap();
        assert_eq!(u64_at(&d, 0).unwrap(), 0x0403_0201);
        assert_eq!(bytes_at(&d, 8, 0, "nothing").unwrap(), &[] as &[u8]);
    }

    #[test]
    fn align_up_takes_any_alignment_and_reports_overflow() {
        assert_eq!(align_up(0x1001, 0x1000), Some(0x2000));
        assert_eq!(align_up(0x1000, 0x1000), Some(0x1000));
        assert_eq!(align_up(7, 0), Some(7));
        assert_eq!(align_up(7, 3), Some(9));
        assert_eq!(align_up(u64::MAX, 0x1000), None);
        assert!(overlaps(0, 4, 3, 1) && !overlaps(0, 4, 4, 1) && !overlaps(0, 0, 0, 4));
    }
}
