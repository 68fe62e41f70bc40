//! Deflating a rewritten member by reusing the original member's compressed blocks wherever
//! the bytes did not change.
//!
//! A rewrite changes little of a large library: a new RPATH touches a few pages near the start
//! and appends a few more; a device-code trim rewrites the fatbin section and shifts what follows
//! it. Deflating the whole output again costs about 15 ns a byte, ten times what inflating it
//! does, and was most of the time `split` spent on a wheel with a large library to rewire.
//!
//! A deflate decoder carries nothing from one block to the next but its bit position and the
//! last 32 KiB it produced. So a run of the original's blocks decodes to the same bytes anywhere
//! it is placed, as long as it starts at a block boundary and the 32 KiB before it are the same
//! there as in the original. The output stream is then assembled from pieces:
//!
//! - **reused** runs: the original's compressed bits, copied and shifted to start on a byte;
//!   each is followed by an empty stored block (3 header bits, padding, `00 00 FF FF`), which
//!   brings the stream back to a byte boundary;
//! - **fresh** ranges: deflated as [`super::deflate`] does it (1 MiB chunks, each with the 32 KiB
//!   before it as its dictionary, sync-flushed), in parallel.
//!
//! Block boundaries come from the inspect pass: inflate stops at each one and reports its byte
//! position ([`BlockMark`]); the exact bit is found here by decoding a little from each
//! candidate bit and keeping the one that gives back the original bytes. Only boundaries that
//! begin a Huffman-coded block are used, where a wrong bit cannot decode to the right bytes.
//! Runs are matched against the output with candidate shifts (the output's length minus the
//! input's covers an insertion or a cut; callers may add more) and compared byte for byte,
//! window included, so a wrong hint costs only a missed reuse.
//!
//! Before the assembled stream is used, every place a reused run meets the rest is decoded
//! and compared with the output: its first 64 KiB from its first byte, and from a block near
//! its end (found as the run's ends are) through the empty stored block that closes it, which
//! must be exactly where its bytes end. If either ever differed, the member is deflated from
//! scratch instead. The rest of a run is the input's own bits, compared byte for byte with the
//! output when the run was planned, and the input is checked to be unchanged, as for a member
//! copied raw. Inflating the whole stream again, as this module once did, added only a guard
//! against a bug in the middle of a copy (the tests inflate every output with another
//! inflater for that), and cost an inflate of every rewritten byte: 5 of the 30 CPU seconds
//! of `split --companions` on a 1 GiB library. The bytes depend only on the original member's bytes (compressed and not) and
//! the output, never on the thread count.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use zlib_rs::{Inflate, InflateFlush, Status};

use super::deflate::{self, CHUNK, Compressed, Stored};
use super::zip::{BlockMark, Member, ZipArchive};
use crate::changes::Changes;

const WINDOW: usize = 32 * 1024;
/// Runs shorter than this are deflated afresh: not worth a seam.
const MIN_RUN: usize = 256 * 1024;
/// How far back from a mark's byte the block header may start.
const MAX_BACK_BITS: u64 = 64;
/// Bytes decoded from a candidate bit to confirm it.
const PROBE_OUT: usize = 16 * 1024;
/// Compressed bytes given to a probe.
const PROBE_IN: usize = 64 * 1024;
/// Compressed bytes copied at a time.
const COPY_BUF: usize = 1 << 20;
/// Output bytes decoded from a reused run's first byte to check how it begins.
const SEAM_OUT: usize = 64 * 1024;
/// Compressed bytes given to that check (deflate never takes more than this for them).
const SEAM_IN: usize = 256 * 1024;
/// Boundaries tried, back from a run's end, for the block its end is checked from.
const TAIL_TRIES: usize = 8;

/// The uncompressed bytes of the member a rewrite started from.
#[derive(Clone, Copy)]
pub enum Bytes<'d> {
    /// Held whole, beside the output.
    Whole(&'d [u8]),
    /// Read back out of the output, which was made by editing them in their own buffer: the
    /// output is `out`, and `changes` says what the edit changed ([`Changes::original`]). The
    /// planner sees exactly the bytes it would see held whole, without a second buffer.
    Edited { out: &'d [u8], changes: &'d Changes },
    /// Held whole but for `holes` (sorted file ranges left zero, whose bytes are not known
    /// here), except for the `known` ranges of them, `(offset, bytes)`, whose bytes are held
    /// elsewhere (a companion holds containers read back from the archive): a range that
    /// meets a hole and is not inside one known range is never matched.
    Holed {
        data: &'d [u8],
        holes: &'d [(u64, u64)],
        known: &'d [(u64, &'d [u8])],
    },
    /// Only the bytes around offset `at` of a member of `len` bytes: `before` ends there and
    /// `after` begins there. Enough to find where a block begins ([`resume_bit`]).
    Window {
        at: usize,
        before: &'d [u8],
        after: &'d [u8],
        len: usize,
    },
}

impl<'d> Bytes<'d> {
    fn len(&self) -> usize {
        match self {
            Bytes::Whole(d) => d.len(),
            Bytes::Edited { changes, .. } => changes.len,
            Bytes::Holed { data, .. } => data.len(),
            Bytes::Window { len, .. } => *len,
        }
    }

    /// The bytes `[a, b)`; `None` when the range is not inside.
    fn get(&self, a: usize, b: usize) -> Option<Cow<'d, [u8]>> {
        match self {
            Bytes::Whole(d) => d.get(a..b).map(Cow::Borrowed),
            Bytes::Edited { out, changes } => changes.original(out, a, b),
            Bytes::Holed { data, holes, known } => {
                let (x, y) = (a as u64, b as u64);
                if holes.iter().any(|&(s, e)| s < y && x < e) {
                    let &(at, bytes) = known
                        .iter()
                        .find(|&&(at, k)| at <= x && y <= at.saturating_add(k.len() as u64))?;
                    let from = usize::try_from(x - at).ok()?;
                    return bytes.get(from..from + (b - a)).map(Cow::Borrowed);
                }
                data.get(a..b).map(Cow::Borrowed)
            }
            Bytes::Window {
                at, before, after, ..
            } => {
                if b <= *at && a >= at - before.len() {
                    let from = before.len() - (at - a);
                    Some(Cow::Borrowed(&before[from..from + (b - a)]))
                } else if a >= *at && b <= at + after.len() {
                    Some(Cow::Borrowed(&after[a - at..b - at]))
                } else {
                    None
                }
            }
        }
    }

    /// True when `[a, b)` holds exactly `other`.
    fn holds(&self, a: usize, b: usize, other: &[u8]) -> bool {
        self.get(a, b).is_some_and(|d| *d == *other)
    }
}

/// The member a rewrite started from.
pub struct Original<'a, 'd> {
    pub archive: &'a ZipArchive,
    pub member: &'a Member,
    /// Its uncompressed bytes.
    pub data: Bytes<'d>,
    /// Where its deflate blocks begin, from inflating it.
    pub marks: &'d [BlockMark],
}

/// One piece of the output stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// `out[start..end]`, deflated afresh.
    Fresh {
        start: usize,
        end: usize,
    },
    Reuse(Run),
}

/// A run of the original's blocks reused: its compressed bits `[bit_start, bit_end)` decode
/// to `out[out_start..out_start + len]`; with `bit_end == None` they run to the end of the
/// original stream (its final block included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    out_start: usize,
    len: usize,
    bit_start: u64,
    bit_end: Option<u64>,
    /// A block of the run near its end, `(bytes into the run, bit)`, where checking how the
    /// run ends starts decoding; `None`: from the run's start.
    tail: Option<(usize, u64)>,
}

/// What a splice reused, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Uncompressed bytes covered by reused blocks.
    pub reused: u64,
    /// Uncompressed bytes deflated afresh.
    pub fresh: u64,
    pub runs: usize,
}

/// A boundary of the original stream we can start or end a run at.
#[derive(Debug, Clone, Copy)]
struct Boundary {
    /// Uncompressed offset.
    at: usize,
    /// Compressed byte from [`BlockMark::input`] (the end of the stream for the last one).
    byte: u64,
}

fn bit(buf: &[u8], i: u64) -> u8 {
    (buf[(i / 8) as usize] >> (i % 8)) & 1
}

/// Empty fixed-Huffman blocks (not final; 10 bits each: header `0 10`, end-of-block `0000000`)
/// that bring a byte-aligned stream to bit `residue` (2, 4 or 6) of a byte: the whole bytes
/// they fill. The bits they leave in the next byte are zero.
fn noop_prefix(residue: u32) -> &'static [u8] {
    match residue {
        2 => &[0x02],
        4 => &[0x02, 0x08],
        6 => &[0x02, 0x08, 0x20],
        _ => &[],
    }
}

/// The compressed bytes `raw` (which begin with the byte that holds bit `p`), made into a
/// stream that starts decoding at bit `p`: behind the no-op prefix when `p`'s bit within its
/// byte is even (exactly how a reused run is written), else shifted down to bit 0 (enough to
/// confirm where a run ends).
fn from_bit(raw: &[u8], p: u64) -> Vec<u8> {
    let residue = (p % 8) as u32;
    let mut out = Vec::with_capacity(raw.len() + 4);
    if residue % 2 == 0 {
        out.extend_from_slice(noop_prefix(residue));
        out.extend_from_slice(raw);
        if let Some(first) = out.get_mut(noop_prefix(residue).len()) {
            *first &= !((1u8 << residue) - 1);
        }
    } else {
        for i in 0..raw.len() {
            let lo = raw[i] >> residue;
            let hi = raw.get(i + 1).map_or(0, |b| b << (8 - residue));
            out.push(lo | hi);
        }
    }
    out
}

/// Decodes from the original's compressed bit `p` with the window before `at`, and says whether
/// it gives back the original bytes from `at` on.
fn probe(orig: &Original, p: u64, at: usize) -> bool {
    let start = p / 8;
    let avail = orig.member.compressed_size.saturating_sub(start);
    let take = avail.min(PROBE_IN as u64) as usize;
    if take == 0 {
        return false;
    }
    let mut raw = vec![0u8; take];
    if orig
        .archive
        .read_raw_at(orig.member, start, &mut raw)
        .is_err()
    {
        return false;
    }
    let input = from_bit(&raw, p);
    let mut inf = Inflate::new(false, 15);
    let w = at.min(WINDOW);
    if w > 0 {
        let Some(dict) = orig.data.get(at - w, at) else {
            return false;
        };
        if inf.set_dictionary(&dict).is_err() {
            return false;
        }
    }
    let Some(want) = orig.data.get(at, (at + PROBE_OUT).min(orig.data.len())) else {
        return false;
    };
    let mut got = vec![0u8; want.len() + 1];
    let mut have = 0usize;
    let mut used = 0usize;
    loop {
        let (i0, o0) = (inf.total_in(), inf.total_out());
        let r = inf.decompress(&input[used..], &mut got[have..], InflateFlush::NoFlush);
        used += (inf.total_in() - i0) as usize;
        have += (inf.total_out() - o0) as usize;
        match r {
            Err(_) => return false,
            Ok(Status::StreamEnd) => break,
            Ok(_) if have >= want.len() || used == input.len() => break,
            Ok(_) if inf.total_in() == i0 && inf.total_out() == o0 => break,
            Ok(_) => {}
        }
    }
    have >= want.len() && got[..want.len()] == *want
}

/// The exact bit where the block that begins at `b` starts, when exactly one candidate bit
/// decodes back to the original and it begins a Huffman-coded block (a stored block's header
/// is followed by padding, so neighbouring bits would pass too).
fn resolve(orig: &Original, b: &Boundary, start: bool) -> Option<u64> {
    if b.at == 0 && b.byte == 0 {
        // The stream's first block starts at bit 0.
        return Some(0);
    }
    let hi = b.byte * 8;
    let lo = hi.saturating_sub(MAX_BACK_BITS);
    let first = lo / 8;
    let n = (b.byte - first + 1).min(orig.member.compressed_size - first) as usize;
    let mut head = vec![0u8; n];
    orig.archive
        .read_raw_at(orig.member, first, &mut head)
        .ok()?;
    let mut found = None;
    for p in lo..=hi {
        let rel = p - first * 8;
        if rel + 3 > n as u64 * 8 {
            continue;
        }
        let btype = bit(&head, rel + 1) | (bit(&head, rel + 2) << 1);
        // A run can only start where the no-op prefix can bring the output to the same bit.
        if (btype != 1 && btype != 2) || (start && p % 2 == 1) {
            continue;
        }
        if probe(orig, p, b.at) {
            if found.is_some() {
                return None;
            }
            found = Some(p);
        }
    }
    found
}

/// Where a Huffman-coded block of member `m`'s stream begins, at an even bit, when inflate
/// stopped at a block boundary just before compressed byte `byte` with `at` bytes produced:
/// `before` holds (up to) the 32 KiB produced before it and `after` (up to) the 16 KiB after.
/// `None` when no single candidate decodes back to `after` (the caller tries another
/// boundary). This is how [`super::access`] finds the bits it can resume inflating at.
pub(crate) fn resume_bit(
    archive: &ZipArchive,
    member: &Member,
    at: u64,
    byte: u64,
    before: &[u8],
    after: &[u8],
) -> Option<u64> {
    let (Ok(at), Ok(len)) = (usize::try_from(at), usize::try_from(member.size)) else {
        return None;
    };
    let orig = Original {
        archive,
        member,
        data: Bytes::Window {
            at,
            before,
            after,
            len,
        },
        marks: &[],
    };
    resolve(&orig, &Boundary { at, byte }, true)
}

/// Compressed bytes that begin with the byte holding bit `p` (even within its byte, as
/// [`resume_bit`] gives), made into input that inflate decodes from bit `p` on; the bytes that
/// follow `raw` in the stream are then given to inflate unchanged.
pub(crate) fn resumable(raw: &[u8], p: u64) -> Vec<u8> {
    debug_assert!(p % 2 == 0);
    from_bit(raw, p)
}

/// Finds runs of the original's blocks that the output holds unchanged (at one of `shifts`),
/// and lays out the pieces of the output stream.
fn plan(out: &[u8], orig: &Original, extra_shifts: &[i64]) -> Vec<Piece> {
    let bounds = boundaries(orig);
    let shifts = candidate_shifts(out.len(), orig.data.len(), extra_shifts);
    let runs = find_runs(out, &orig.data, &bounds, &shifts);
    let reuse = pin_runs(orig, &bounds, runs);
    let mut pieces = Vec::new();
    let mut pos = 0usize;
    for run in reuse {
        let oa = run.out_start;
        if oa < pos {
            continue; // overlapping matches at two shifts: keep the first
        }
        if oa > pos {
            pieces.push(Piece::Fresh {
                start: pos,
                end: oa,
            });
        }
        pieces.push(Piece::Reuse(run));
        pos = oa + run.len;
    }
    if pos < out.len() || pieces.is_empty() {
        pieces.push(Piece::Fresh {
            start: pos,
            end: out.len(),
        });
    }
    pieces
}

/// Where the original's blocks begin, in its uncompressed bytes and its compressed stream,
/// from its start to its end; empty blocks between collapse to the one with data.
fn boundaries(orig: &Original) -> Vec<Boundary> {
    let data = &orig.data;
    let mut bounds: Vec<Boundary> = Vec::with_capacity(orig.marks.len() + 2);
    bounds.push(Boundary { at: 0, byte: 0 });
    for m in orig.marks {
        let (Ok(at), true) = (
            usize::try_from(m.output),
            m.input <= orig.member.compressed_size,
        ) else {
            continue;
        };
        let last = bounds.last().map_or(0, |b| b.at);
        if at > last && at < data.len() {
            bounds.push(Boundary { at, byte: m.input });
        } else if at == last
            && bounds.len() > 1
            && let Some(b) = bounds.last_mut()
        {
            // Empty blocks between (a sync flush's stored block): the last block to begin
            // here is the one with data, the one a run can start or end at.
            b.byte = m.input;
        }
    }
    let end = Boundary {
        at: data.len(),
        byte: orig.member.compressed_size,
    };
    bounds.push(end);

    bounds
}

/// The shifts (output offset minus input offset) a run may have: none, the change in
/// length, and the caller's.
fn candidate_shifts(out_len: usize, data_len: usize, extra_shifts: &[i64]) -> Vec<i64> {
    let mut shifts: Vec<i64> = Vec::new();
    for s in [0, out_len as i64 - data_len as i64]
        .into_iter()
        .chain(extra_shifts.iter().copied())
    {
        if !shifts.contains(&s) {
            shifts.push(s);
        }
    }

    shifts
}

/// Runs of whole blocks between `bounds` that `out` holds unchanged at one shift, as (first
/// boundary index, last boundary index, shift). A run starts only where the window before it
/// matches too.
fn find_runs(
    out: &[u8],
    data: &Bytes,
    bounds: &[Boundary],
    shifts: &[i64],
) -> Vec<(usize, usize, i64)> {
    let mut runs: Vec<(usize, usize, i64)> = Vec::new();
    let mut current: Option<(usize, usize, i64)> = None;
    let fits = |i: usize, s: i64, fresh_start: bool| -> bool {
        let (a, b) = (bounds[i].at, bounds[i + 1].at);
        let (Ok(oa), Ok(ob)) = (usize::try_from(a as i64 + s), usize::try_from(b as i64 + s))
        else {
            return false;
        };
        if ob > out.len() {
            return false;
        }
        // The final block ends the stream: only where the output ends too.
        if b == data.len() && ob != out.len() {
            return false;
        }
        if fresh_start {
            let w = a.min(WINDOW);
            if oa < w || !data.holds(a - w, a, &out[oa - w..oa]) {
                return false;
            }
        }
        data.holds(a, b, &out[oa..ob])
    };
    for i in 0..bounds.len() - 1 {
        let mut next = None;
        if let Some((_, _, s)) = current
            && fits(i, s, false)
        {
            next = Some(s);
        }
        if next.is_none() {
            next = shifts.iter().copied().find(|&s| fits(i, s, true));
            if let Some(run) = current.take() {
                runs.push(run);
            }
        }
        match (next, current.as_mut()) {
            (Some(_), Some(run)) => run.1 = i + 1,
            (Some(s), None) => current = Some((i, i + 1, s)),
            (None, _) => {}
        }
    }
    runs.extend(current);

    runs
}

/// Pins each run to exact bits, shrinking it to boundaries that resolve, and finds a block
/// near its end to check it from ([`Run::tail`]); drops runs too short to be worth it. Sorted
/// by output offset.
fn pin_runs(orig: &Original, bounds: &[Boundary], runs: Vec<(usize, usize, i64)>) -> Vec<Run> {
    let mut reuse: Vec<Run> = Vec::new();
    for (mut a, mut b, s) in runs {
        let start_bit = loop {
            if a >= b {
                break None;
            }
            match resolve(orig, &bounds[a], true) {
                Some(p) => break Some(p),
                None => a += 1,
            }
        };
        let Some(start_bit) = start_bit else { continue };
        let end_bit = loop {
            if b <= a {
                break None;
            }
            if b == bounds.len() - 1 {
                break Some(None);
            }
            match resolve(orig, &bounds[b], false) {
                Some(p) => break Some(Some(p)),
                None => b -= 1,
            }
        };
        let Some(end_bit) = end_bit else { continue };
        let (ua, ub) = (bounds[a].at, bounds[b].at);
        if ub - ua < MIN_RUN || end_bit.is_some_and(|e| e <= start_bit) {
            continue;
        }
        let tail = (a + 1..b)
            .rev()
            .take(TAIL_TRIES)
            .find_map(|k| resolve(orig, &bounds[k], true).map(|p| (bounds[k].at - ua, p)));
        reuse.push(Run {
            out_start: (ua as i64 + s) as usize,
            len: ub - ua,
            bit_start: start_bit,
            bit_end: end_bit,
            tail,
        });
    }
    reuse.sort_by_key(|r| r.out_start);

    reuse
}

/// One unit of the output stream, in order.
enum Unit {
    /// Fresh chunk `[start, end)`.
    Chunk {
        start: usize,
        end: usize,
    },
    Reuse(Run),
}

fn units(pieces: &[Piece], total: usize) -> Vec<Unit> {
    let mut units = Vec::new();
    for p in pieces {
        match *p {
            Piece::Fresh { start, end } => {
                let mut s = start;
                while s < end {
                    let e = (s + CHUNK).min(end);
                    units.push(Unit::Chunk { start: s, end: e });
                    s = e;
                }
            }
            Piece::Reuse(run) => units.push(Unit::Reuse(run)),
        }
    }
    // A stream must end with a final block: after a run that stops short of the original's
    // end, an empty fresh chunk deflated with `Finish` is one.
    if matches!(units.last(), Some(Unit::Reuse(r)) if r.bit_end.is_some()) {
        units.push(Unit::Chunk {
            start: total,
            end: total,
        });
    }
    units
}

/// Writes the original's bits `[bit_start, bit_end)` (to the end of its stream when `None`)
/// to `w`, which is on a byte boundary. The bits keep their place within each byte (a stored
/// block inside the run must find its padding where it was): no-op blocks first bring the
/// stream to `bit_start`'s bit, which must be even. A run that does not end the stream is
/// closed with an empty stored block, which brings the stream back to a byte boundary.
fn copy_bits<W: Write>(
    orig: &Source,
    bit_start: u64,
    bit_end: Option<u64>,
    w: &mut W,
) -> io::Result<u64> {
    let residue = (bit_start % 8) as u32;
    if residue % 2 == 1 {
        return Err(io::Error::other(
            "internal: a reused run starts on an odd bit",
        ));
    }
    let first = bit_start / 8;
    let end = match bit_end {
        Some(e) => e.div_ceil(8),
        None => orig.member.compressed_size,
    };
    let prefix = noop_prefix(residue);
    w.write_all(prefix)?;
    let mut written = prefix.len() as u64;
    let mut buf = vec![0u8; COPY_BUF];
    let mut at = first;
    while at < end {
        let n = (end - at).min(COPY_BUF as u64) as usize;
        let chunk = &mut buf[..n];
        orig.archive
            .read_raw_at(orig.member, at, chunk)
            .map_err(|e| io::Error::other(e.to_string()))?;
        if at == first {
            chunk[0] &= !((1u8 << residue) - 1);
        }
        if at + n as u64 == end
            && let Some(e) = bit_end
            && e % 8 != 0
        {
            chunk[n - 1] &= (1u8 << (e % 8)) - 1;
        }
        w.write_all(chunk)?;
        written += n as u64;
        at += n as u64;
    }
    if let Some(e) = bit_end {
        // An empty stored block, not final: 3 zero bits, padding, LEN 0, NLEN 0xffff.
        let r = e % 8;
        if r == 0 || r > 5 {
            w.write_all(&[0])?;
            written += 1;
        }
        w.write_all(&[0x00, 0x00, 0xff, 0xff])?;
        written += 4;
    }
    Ok(written)
}

/// Says whether a reused run, placed at bytes `[at, at + n)` of the assembled stream (`read`
/// gives its bytes), meets the rest of the stream as planned: decoding from its first byte
/// with the output's window gives the output's first [`SEAM_OUT`] bytes of the run, and
/// decoding from a block near its end ([`Run::tail`]) gives the output to the run's end and
/// stops exactly where the run's bytes do (at the empty stored block that closes it, or at
/// the end of the stream). The run's bits are the input's, and its bytes were compared with
/// the output when it was planned; so this proves what inflating the whole stream again
/// would, at the cost of a block or two per run.
fn seams_hold(read: &Read, run: &Run, at: u64, n: u64, out: &[u8]) -> io::Result<bool> {
    let end = run.out_start + run.len;
    let head = Seam {
        bit: at * 8,
        to_byte: at + n.min(SEAM_IN as u64),
        from: run.out_start,
        to: (run.out_start + SEAM_OUT).min(end),
        ends: None,
    };
    if !head.holds(read, out)? {
        return Ok(false);
    }
    // Where the tail's block begins in the stream: the run's bits keep their place within
    // each byte, behind the no-op prefix.
    let prefix = noop_prefix((run.bit_start % 8) as u32).len() as u64;
    let (from, bit) = match run.tail {
        Some((into, bit)) => (
            run.out_start + into,
            (at + prefix) * 8 + bit - run.bit_start / 8 * 8,
        ),
        None => (run.out_start, at * 8),
    };
    let tail = Seam {
        bit,
        to_byte: at + n,
        from,
        to: end,
        ends: Some(run.bit_end.is_none()),
    };
    tail.holds(read, out)
}

/// Reads bytes `[at, at + n)` of an assembled stream.
type Read<'r> = dyn Fn(u64, usize) -> io::Result<Vec<u8>> + 'r;

/// A stretch of an assembled stream to decode and compare with the output.
struct Seam {
    /// Where to start decoding: a block's first bit, even within its byte.
    bit: u64,
    /// The stream bytes up to here are given to the decoder.
    to_byte: u64,
    /// What it must give: `out[from..to]`, with the 32 KiB before `from` as its window.
    from: usize,
    to: usize,
    /// `Some(e)`: it must give exactly that, use every byte given, and end the stream there
    /// exactly when `e`. `None`: it may go on.
    ends: Option<bool>,
}

impl Seam {
    fn holds(&self, read: &Read, out: &[u8]) -> io::Result<bool> {
        let want = &out[self.from..self.to];
        let mut inf = Inflate::new(false, 15);
        let w = self.from.min(WINDOW);
        if w > 0 && inf.set_dictionary(&out[self.from - w..self.from]).is_err() {
            return Ok(false);
        }
        let mut buf = vec![0u8; 256 * 1024];
        let (mut have, mut pos) = (0usize, self.bit / 8);
        let (mut input, mut used) = (Vec::new(), 0usize);
        let mut finished = false;
        loop {
            if used == input.len() && pos < self.to_byte {
                let n = (self.to_byte - pos).min(COPY_BUF as u64) as usize;
                let raw = read(pos, n)?;
                input = if pos == self.bit / 8 {
                    from_bit(&raw, self.bit)
                } else {
                    raw
                };
                pos += n as u64;
                used = 0;
            }
            let (i0, o0) = (inf.total_in(), inf.total_out());
            let r = inf.decompress(&input[used..], &mut buf, InflateFlush::NoFlush);
            used += (inf.total_in() - i0) as usize;
            let got = (inf.total_out() - o0) as usize;
            let take = got.min(want.len() - have);
            if buf[..take] != want[have..have + take] || (got > take && self.ends.is_some()) {
                return Ok(false);
            }
            have += take;
            match r {
                Err(_) => return Ok(false),
                Ok(Status::StreamEnd) => {
                    finished = true;
                    break;
                }
                Ok(_) if self.ends.is_none() && have == want.len() => break,
                Ok(_) if got == 0 && inf.total_in() == i0 => {
                    if used < input.len() {
                        return Ok(false); // stuck with input left
                    }
                    if pos == self.to_byte {
                        break;
                    }
                }
                Ok(_) => {}
            }
        }
        Ok(match self.ends {
            None => have == want.len(),
            Some(e) => {
                have == want.len() && used == input.len() && pos == self.to_byte && finished == e
            }
        })
    }
}

/// Where a splice copies compressed bytes from.
#[derive(Clone, Copy)]
struct Source<'a> {
    archive: &'a ZipArchive,
    member: &'a Member,
}

/// How one output will be assembled. It is worked out while the original's uncompressed
/// bytes are at hand ([`Splice::prepare`]); writing it ([`Splice::compress`]) needs only the
/// output and the original's compressed bytes, so the caller can let go of the original first.
pub struct Splice<'a> {
    source: Source<'a>,
    /// Empty: nothing to reuse, deflate afresh.
    pieces: Vec<Piece>,
    /// The output length the pieces were made for.
    len: usize,
    pub stats: SpliceStats,
}

impl<'a> Splice<'a> {
    /// Finds what of `out` can be copied from the original's compressed blocks (see the
    /// module notes), trying `extra_shifts` besides no shift and the difference in length.
    pub fn prepare(out: &[u8], orig: &Original<'a, '_>, extra_shifts: &[i64]) -> Splice<'a> {
        let usable = orig.member.method == super::zip::Method::Deflated
            && orig.data.len() as u64 == orig.member.size
            && out.len() >= MIN_RUN;
        let mut pieces = if usable {
            plan(out, orig, extra_shifts)
        } else {
            Vec::new()
        };
        let mut stats = SpliceStats::default();
        for p in &pieces {
            match p {
                Piece::Fresh { start, end } => stats.fresh += (end - start) as u64,
                Piece::Reuse(run) => {
                    stats.reused += run.len as u64;
                    stats.runs += 1;
                }
            }
        }
        if stats.runs == 0 {
            pieces.clear();
            stats = SpliceStats {
                fresh: out.len() as u64,
                ..SpliceStats::default()
            };
        }
        Splice {
            source: Source {
                archive: orig.archive,
                member: orig.member,
            },
            pieces,
            len: out.len(),
            stats,
        }
    }

    /// Deflates `out` as planned. Members of at least [`deflate::SPILL_OVER`] bytes go to an
    /// unnamed temporary file in `spill` when one is given. Falls back to a fresh deflate
    /// ([`deflate::compress`]'s bytes) when nothing is reused or the assembled stream does not
    /// inflate back to `out`.
    pub fn compress(
        &self,
        out: &[u8],
        level: u32,
        spill: Option<&Path>,
    ) -> io::Result<(Compressed, SpliceStats)> {
        let fallback = || -> io::Result<(Compressed, SpliceStats)> {
            let c = match spill {
                Some(dir) => deflate::compress_spilled(out, level, dir)?,
                None => deflate::compress(out, level),
            };
            let stats = SpliceStats {
                fresh: out.len() as u64,
                ..SpliceStats::default()
            };
            Ok((c, stats))
        };
        if self.pieces.is_empty() || out.len() != self.len {
            return fallback();
        }
        let orig = &self.source;
        let units = units(&self.pieces, out.len());
        let crc32 = deflate::crc(out);
        let last_chunk = units
            .iter()
            .rposition(|u| matches!(u, Unit::Chunk { .. }))
            .filter(|&i| i == units.len() - 1);
        let chunk = |i: usize| -> Vec<u8> {
            match units[i] {
                Unit::Chunk { start, end } => {
                    let dict = &out[start.saturating_sub(WINDOW)..start];
                    deflate::deflate_piece(dict, &out[start..end], Some(i) == last_chunk, level)
                }
                Unit::Reuse(_) => Vec::new(),
            }
        };
        let spill_to = spill.filter(|_| out.len() >= deflate::SPILL_OVER);
        // Each reused run as placed in the stream: (run, its first byte, its bytes).
        let mut placed: Vec<(Run, u64, u64)> = Vec::new();
        let data = match spill_to {
            None => {
                let fresh: Vec<Vec<u8>> = (0..units.len()).into_par_iter().map(chunk).collect();
                let mut v = Vec::new();
                for (u, f) in units.iter().zip(fresh) {
                    match u {
                        Unit::Chunk { .. } => v.extend_from_slice(&f),
                        Unit::Reuse(run) => {
                            let at = v.len() as u64;
                            let n = copy_bits(orig, run.bit_start, run.bit_end, &mut v)?;
                            placed.push((*run, at, n));
                        }
                    }
                }
                Stored::Memory(v)
            }
            Some(dir) => {
                let file = tempfile::tempfile_in(dir)?;
                let mut w = io::BufWriter::with_capacity(1 << 20, &file);
                let mut len = 0u64;
                let mut i = 0;
                while i < units.len() {
                    // A batch of consecutive fresh chunks at a time, in parallel.
                    let mut j = i;
                    while j < units.len() && j - i < 16 && matches!(units[j], Unit::Chunk { .. }) {
                        j += 1;
                    }
                    if j > i {
                        let fresh: Vec<Vec<u8>> = (i..j).into_par_iter().map(chunk).collect();
                        for f in fresh {
                            w.write_all(&f)?;
                            len += f.len() as u64;
                        }
                        let done: usize = units[i..j]
                            .iter()
                            .map(|u| match *u {
                                Unit::Chunk { start, end } => end - start,
                                Unit::Reuse(_) => 0,
                            })
                            .sum();
                        deflate::report(done as u64);
                        i = j;
                    } else if let Unit::Reuse(run) = units[i] {
                        let n = copy_bits(orig, run.bit_start, run.bit_end, &mut w)?;
                        placed.push((run, len, n));
                        len += n;
                        i += 1;
                    }
                }
                w.flush()?;
                drop(w);
                Stored::File(Arc::new(file), len)
            }
        };
        let c = Compressed {
            deflated: true,
            crc32,
            size: out.len() as u64,
            data,
        };
        // The reused bits are the input's as the inspect pass inflated them, as long as the
        // input is unchanged (what a raw copy of a member relies on too); what is checked is
        // where each run meets the rest.
        orig.archive.check_unchanged()?;
        let read = |at: u64, n: usize| -> io::Result<Vec<u8>> {
            match &c.data {
                Stored::Memory(v) => v
                    .get(at as usize..at as usize + n)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| io::Error::other("internal: a seam past the stream's end")),
                Stored::File(f, _) => {
                    let mut buf = vec![0u8; n];
                    std::os::unix::fs::FileExt::read_exact_at(&**f, &mut buf, at)?;
                    Ok(buf)
                }
            }
        };
        let mut good = true;
        for (run, at, n) in &placed {
            if !seams_hold(&read, run, *at, *n, out)? {
                good = false;
                break;
            }
        }
        if !good || c.stored_len() >= out.len() as u64 {
            return fallback();
        }
        Ok((c, self.stats))
    }
}

/// [`Splice::prepare`] and [`Splice::compress`] in one, for callers that hold the original
/// anyway.
pub fn compress_reusing(
    out: &[u8],
    orig: &Original,
    extra_shifts: &[i64],
    level: u32,
    spill: Option<&Path>,
) -> io::Result<(Compressed, SpliceStats)> {
    Splice::prepare(out, orig, extra_shifts).compress(out, level, spill)
}

#[cfg(test)]
pub(crate) mod tests;
