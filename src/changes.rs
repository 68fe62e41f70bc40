//! What an edit made in a member's own buffer changed, so that the member's bytes before the
//! edit can still be read (by the splice planner, [`crate::wheel::splice`]) or put back (when
//! the edited bytes fail their check), without a second buffer as large as the member.
//!
//! The edits this describes are the ELF patcher's ([`crate::elf::patch`]): bytes inserted at
//! one place (everything after moves down) and a few small ranges written over. The bytes
//! written over are saved here; they are small (string tables, dynamic arrays, headers).

use std::borrow::Cow;

/// An in-place edit: `inserted` bytes at `at`, and the original's bytes wherever the edit
/// wrote over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Where the bytes were inserted: the same offset in the original and in the edited
    /// buffer. The original's bytes from `at` on are `inserted` bytes further down.
    pub at: usize,
    pub inserted: usize,
    /// The original's length.
    pub len: usize,
    /// The original's bytes where the edited buffer differs from them (or may), as (original
    /// offset, bytes): sorted, disjoint and apart (never adjacent).
    pub saved: Vec<(usize, Vec<u8>)>,
}

impl Changes {
    /// Inserts `inserted` zero bytes at `at` in `buf`, then writes each of `writes` (offsets
    /// in the result), in order, and returns what they changed. `None`, with `buf` untouched,
    /// when `at` is past the end or a write does not fit in the result.
    pub fn apply(
        buf: &mut Vec<u8>,
        at: usize,
        inserted: usize,
        writes: &[(usize, &[u8])],
    ) -> Option<Changes> {
        let len = buf.len();
        let total = len.checked_add(inserted)?;
        if at > len {
            return None;
        }
        // Where each write lands in the original, the inserted bytes left out.
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(writes.len());
        for &(off, bytes) in writes {
            let end = off.checked_add(bytes.len()).filter(|&e| e <= total)?;
            if off < at {
                ranges.push((off, end.min(at)));
            }
            let after = off.max(at + inserted);
            if end > after {
                ranges.push((after - inserted, end - inserted));
            }
        }
        ranges.retain(|r| r.0 < r.1);
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let saved = merged
            .into_iter()
            .map(|(a, b)| (a, buf[a..b].to_vec()))
            .collect();
        if inserted > 0 {
            // One reservation: a large buffer grows where it is (`mremap`), not by a copy.
            buf.reserve_exact(inserted);
            buf.resize(total, 0);
            buf.copy_within(at..len, at + inserted);
            buf[at..at + inserted].fill(0);
        }
        for &(off, bytes) in writes {
            buf[off..off + bytes.len()].copy_from_slice(bytes);
        }
        Some(Changes {
            at,
            inserted,
            len,
            saved,
        })
    }

    /// True when the edit changed nothing.
    pub fn is_empty(&self) -> bool {
        self.inserted == 0 && self.saved.is_empty()
    }

    /// Puts back in `buf` (the edited buffer) the bytes it held before the edit.
    pub fn undo(&self, buf: &mut Vec<u8>) {
        if buf.len() != self.len + self.inserted {
            return;
        }
        if self.inserted > 0 {
            buf.copy_within(self.at + self.inserted.., self.at);
            buf.truncate(self.len);
        }
        for (a, bytes) in &self.saved {
            buf[*a..*a + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// Where the original's byte `i` (not a saved one) is in the edited buffer.
    fn edited_offset(&self, i: usize) -> usize {
        if i < self.at { i } else { i + self.inserted }
    }

    /// The original's bytes `[a, b)`, read from `edited` (the edited buffer) and the saved
    /// bytes: borrowed when no saved range and no insertion falls inside. `None` when the
    /// range is not inside the original or `edited` is not the edited buffer's length.
    pub fn original<'e>(&self, edited: &'e [u8], a: usize, b: usize) -> Option<Cow<'e, [u8]>> {
        if a > b || b > self.len || edited.len() != self.len + self.inserted {
            return None;
        }
        // The first saved range that ends after `a`.
        let first = self
            .saved
            .partition_point(|(s, bytes)| s + bytes.len() <= a);
        let touched = self.saved.get(first).is_some_and(|(s, _)| *s < b);
        let one_side = b <= self.at || a >= self.at;
        if !touched && one_side {
            let (ea, eb) = (self.edited_offset(a), self.edited_offset(a) + (b - a));
            return edited.get(ea..eb).map(Cow::Borrowed);
        }
        let mut out = Vec::with_capacity(b - a);
        if a < self.at {
            out.extend_from_slice(edited.get(a..b.min(self.at))?);
        }
        if b > self.at {
            let from = a.max(self.at);
            out.extend_from_slice(edited.get(from + self.inserted..b + self.inserted)?);
        }
        for (s, bytes) in &self.saved[first..] {
            if *s >= b {
                break;
            }
            let (lo, hi) = ((*s).max(a), (s + bytes.len()).min(b));
            out[lo - a..hi - a].copy_from_slice(&bytes[lo - s..hi - s]);
        }
        Some(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where bytes are inserted, how many, and the writes after.
    type Case<'a> = (usize, usize, Vec<(usize, &'a [u8])>);

    fn edit(before: &[u8], at: usize, inserted: usize, writes: &[(usize, &[u8])]) -> Vec<u8> {
        let mut out = before[..at].to_vec();
        out.resize(at + inserted, 0);
        out.extend_from_slice(&before[at..]);
        for &(off, b) in writes {
            out[off..off + b.len()].copy_from_slice(b);
        }
        out
    }

    #[test]
    fn every_range_of_the_original_reads_back_and_undo_restores_it() {
        let before: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        let cases: Vec<Case> = vec![
            (200, 0, vec![]),
            (50, 0, vec![(10, b"abc"), (11, b"xyzw"), (120, b"q")]),
            (
                60,
                24,
                vec![(58, b"123456"), (70, b"in"), (82, b"edge"), (199, b"zz")],
            ),
            (0, 8, vec![(0, b"head"), (5, b"xx"), (204, b"tail")]),
            (200, 16, vec![(198, b"across")]),
        ];
        for (at, ins, writes) in cases {
            let mut buf = before.clone();
            let c = Changes::apply(&mut buf, at, ins, &writes).unwrap();
            assert_eq!(buf, edit(&before, at, ins, &writes));
            for a in 0..=before.len() {
                for b in a..=before.len() {
                    assert_eq!(&*c.original(&buf, a, b).unwrap(), &before[a..b], "{a}..{b}");
                }
            }
            assert!(c.original(&buf, 0, before.len() + 1).is_none());
            c.undo(&mut buf);
            assert_eq!(buf, before);
        }
    }

    #[test]
    fn a_write_that_does_not_fit_leaves_the_buffer_alone() {
        let mut buf = vec![1u8; 10];
        assert!(Changes::apply(&mut buf, 4, 2, &[(11, b"ab")]).is_none());
        assert!(Changes::apply(&mut buf, 11, 0, &[]).is_none());
        assert_eq!(buf, vec![1u8; 10]);
        let c = Changes::apply(&mut buf, 10, 0, &[(3, b"\x01")]).unwrap();
        assert!(
            !c.is_empty(),
            "a write counts even when it writes the same byte"
        );
    }
}
