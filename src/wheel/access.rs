//! Reading any range of a member again without holding the member: an index of points where
//! inflate can resume.
//!
//! The inspect pass inflates every member once, to hash it. A large library that nothing will
//! rewrite need not be held whole to be described: its readers look at its headers and tables
//! and its device code, a small part of it (see [`crate::elf::sparse`]). Those parts are read
//! again afterwards from the archive, starting at the nearest point before them.
//!
//! A deflate decoder carries only its bit position and the last 32 KiB it produced from one
//! block to the next (see [`super::splice`]). So while the member streams, at a block boundary
//! every [`SPAN`] bytes or so, we keep the 32 KiB produced before it and find the exact bit the
//! next block begins at (a Huffman-coded block, at an even bit within its byte, so that a few
//! empty blocks in front of its bytes make a stream inflate decodes from there:
//! [`super::splice::resumable`]). The bit is confirmed by decoding 16 KiB from it and comparing
//! them with what the stream produced. A point costs 32 KiB; a range costs inflating it plus at
//! most the distance back to its point. Stored members need no index.

use rayon::prelude::*;
use zlib_rs::{Inflate, InflateFlush, Status};

use super::splice;
use super::zip::{BlockMark, Member, Method, ZipArchive, ZipError};

/// Uncompressed bytes between two points of the index, at least.
pub const SPAN: u64 = 4 << 20;
const WINDOW: usize = 32 * 1024;
/// Bytes after a boundary that confirm the bit it begins at.
const AHEAD: usize = 16 * 1024;
const IN_CHUNK: usize = 256 * 1024;
const OUT_CHUNK: usize = 256 * 1024;

/// A place inflate can start again: `out` bytes in, at compressed bit `bit`, with `window`
/// (the 32 KiB before, or all of them near the start) as its dictionary.
#[derive(Debug)]
struct Point {
    out: u64,
    bit: u64,
    window: Box<[u8]>,
}

/// The resume points of one member (none for a stored member, which is read directly).
#[derive(Debug, Default)]
pub struct Access {
    points: Vec<Point>,
}

impl Access {
    /// Bytes the index holds.
    pub fn bytes(&self) -> u64 {
        self.points.iter().map(|p| p.window.len() as u64).sum()
    }

    /// Fills `out` with the member's uncompressed bytes from offset `start`.
    pub fn read_into(
        &self,
        archive: &ZipArchive,
        m: &Member,
        start: u64,
        out: &mut [u8],
    ) -> Result<(), ZipError> {
        let end = start.saturating_add(out.len() as u64);
        if end > m.size {
            return Err(ZipError::BadDeflate(format!(
                "bytes {start}..{end} asked for past the member's {} bytes",
                m.size
            )));
        }
        if out.is_empty() {
            return Ok(());
        }
        match m.method {
            Method::Stored => archive.read_raw_at(m, start, out),
            Method::Deflated => self.reader(archive, m, start)?.read_exact(out),
            Method::Other(c) => Err(ZipError::UnsupportedMethod(c)),
        }
    }

    /// A reader of the member's bytes from offset `start` on, inflating from the nearest
    /// point before it; reading on from where it stopped costs no second inflate.
    pub fn reader<'a>(
        &'a self,
        archive: &'a ZipArchive,
        m: &'a Member,
        start: u64,
    ) -> Result<Reader<'a>, ZipError> {
        let i = self.points.partition_point(|p| p.out <= start);
        let (at, bit, window): (u64, u64, &[u8]) = match i {
            0 => (0, 0, &[]),
            _ => {
                let p = &self.points[i - 1];
                (p.out, p.bit, &p.window)
            }
        };
        let mut inf = Inflate::new(false, 15);
        if !window.is_empty() {
            inf.set_dictionary(window).map_err(|e| bad(e.as_str()))?;
        }
        let mut r = Reader {
            archive,
            member: m,
            inf,
            at,
            bit,
            raw_at: bit / 8,
            first: true,
            inbuf: Vec::new(),
            used: 0,
        };
        let mut scratch = vec![0u8; OUT_CHUNK];
        while r.at < start {
            let skip = (start - r.at).min(OUT_CHUNK as u64) as usize;
            r.read_exact(&mut scratch[..skip])?;
        }
        Ok(r)
    }

    /// Fills the byte ranges `ranges` (`[start, end)`, in the member) of `buf`, a buffer as
    /// long as the member, in parallel: each range is cut at the index's points, so that each
    /// piece is inflated from its own point.
    pub fn fill(
        &self,
        archive: &ZipArchive,
        m: &Member,
        buf: &mut [u8],
        ranges: &[(u64, u64)],
    ) -> Result<(), ZipError> {
        let mut cuts: Vec<(u64, u64)> = Vec::new();
        let mut sorted: Vec<(u64, u64)> = ranges
            .iter()
            .map(|&(a, b)| (a.min(buf.len() as u64), b.min(buf.len() as u64)))
            .filter(|(a, b)| a < b)
            .collect();
        sorted.sort_unstable();
        for (a, b) in sorted {
            let a = cuts.last().map_or(a, |&(_, e)| a.max(e));
            let mut x = a;
            while x < b {
                let next = self.points.partition_point(|p| p.out <= x);
                let y = self.points.get(next).map_or(b, |p| p.out.min(b));
                let y = if m.method == Method::Stored {
                    b.min(x + SPAN)
                } else {
                    y
                };
                cuts.push((x, y));
                x = y;
            }
        }
        let mut pieces: Vec<(u64, &mut [u8])> = Vec::with_capacity(cuts.len());
        let mut rest: &mut [u8] = buf;
        let mut offset = 0u64;
        for (a, b) in cuts {
            let tail = std::mem::take(&mut rest);
            let (_, tail) = tail.split_at_mut((a - offset) as usize);
            let (piece, tail) = tail.split_at_mut((b - a) as usize);
            pieces.push((a, piece));
            rest = tail;
            offset = b;
        }
        pieces
            .into_par_iter()
            .try_for_each(|(a, piece)| self.read_into(archive, m, a, piece))
    }
}

fn bad(what: &str) -> ZipError {
    ZipError::BadDeflate(format!("reading the member again: {what}"))
}

/// Reads a deflated member's bytes in order from some offset on ([`Access::reader`]).
pub struct Reader<'a> {
    archive: &'a ZipArchive,
    member: &'a Member,
    inf: Inflate,
    /// The member offset of the next byte.
    at: u64,
    bit: u64,
    raw_at: u64,
    first: bool,
    inbuf: Vec<u8>,
    used: usize,
}

impl Reader<'_> {
    /// The member offset of the next byte it reads.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// Fills `out` with the next bytes.
    pub fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ZipError> {
        let m = self.member;
        let mut filled = 0usize;
        while filled < out.len() {
            if self.used == self.inbuf.len() {
                let left = m.compressed_size.saturating_sub(self.raw_at);
                if left == 0 {
                    return Err(bad("the stream ends early"));
                }
                let mut raw = vec![0u8; left.min(IN_CHUNK as u64) as usize];
                self.archive.read_raw_at(m, self.raw_at, &mut raw)?;
                self.raw_at += raw.len() as u64;
                self.inbuf = if self.first {
                    splice::resumable(&raw, self.bit)
                } else {
                    raw
                };
                self.first = false;
                self.used = 0;
            }
            let (i0, o0) = (self.inf.total_in(), self.inf.total_out());
            let status = self
                .inf
                .decompress(
                    &self.inbuf[self.used..],
                    &mut out[filled..],
                    InflateFlush::NoFlush,
                )
                .map_err(|e| bad(e.as_str()))?;
            self.used += (self.inf.total_in() - i0) as usize;
            let n = (self.inf.total_out() - o0) as usize;
            filled += n;
            self.at += n as u64;
            if filled < out.len() && status == Status::StreamEnd {
                return Err(bad("the stream ends early"));
            }
            if n == 0 && self.inf.total_in() == i0 && self.used < self.inbuf.len() {
                return Err(bad("inflate makes no progress"));
            }
        }
        Ok(())
    }
}

/// Reads a member at the offsets asked for, going on with the same inflate while each read
/// starts where the last one stopped (so a walk in order inflates each byte once), and from
/// the nearest point before it otherwise. A stored member is read directly.
pub struct Sequential<'a> {
    access: &'a Access,
    archive: &'a ZipArchive,
    member: &'a Member,
    reader: std::cell::RefCell<Option<Reader<'a>>>,
}

impl<'a> Sequential<'a> {
    pub fn new(access: &'a Access, archive: &'a ZipArchive, member: &'a Member) -> Self {
        Sequential {
            access,
            archive,
            member,
            reader: std::cell::RefCell::new(None),
        }
    }

    /// Fills `out` with the member's bytes from offset `at`.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), ZipError> {
        if self.member.method != Method::Deflated {
            return self.access.read_into(self.archive, self.member, at, out);
        }
        let mut r = self.reader.borrow_mut();
        let reader = match r.take() {
            Some(reader) if reader.position() == at => reader,
            _ => self.access.reader(self.archive, self.member, at)?,
        };
        let reader = r.insert(reader);
        reader.read_exact(out)
    }
}

/// A boundary waiting for the bytes after it before its bit is looked for.
struct Candidate {
    at: u64,
    byte: u64,
    window: Vec<u8>,
    ahead: Vec<u8>,
}

/// Builds an [`Access`] from a member's stream: give it every [`super::zip::Event`] in order.
pub struct Builder<'a> {
    archive: &'a ZipArchive,
    member: &'a Member,
    /// The last bytes produced (up to twice the window, trimmed to one when it grows past).
    recent: Vec<u8>,
    produced: u64,
    last: u64,
    pending: Option<Candidate>,
    points: Vec<Point>,
}

impl<'a> Builder<'a> {
    pub fn new(archive: &'a ZipArchive, member: &'a Member) -> Builder<'a> {
        Builder {
            archive,
            member,
            recent: Vec::new(),
            produced: 0,
            last: 0,
            pending: None,
            points: Vec::new(),
        }
    }

    /// The next uncompressed bytes.
    pub fn data(&mut self, chunk: &[u8]) {
        if let Some(c) = self.pending.as_mut() {
            let take = (AHEAD - c.ahead.len()).min(chunk.len());
            c.ahead.extend_from_slice(&chunk[..take]);
            if c.ahead.len() == AHEAD {
                self.settle();
            }
        }
        self.produced += chunk.len() as u64;
        // The window is wanted only near the next point; skip the copy elsewhere.
        if self.produced + (WINDOW as u64) < self.last + SPAN {
            self.recent.clear();
            return;
        }
        if chunk.len() >= WINDOW {
            self.recent.clear();
            self.recent
                .extend_from_slice(&chunk[chunk.len() - WINDOW..]);
        } else {
            self.recent.extend_from_slice(chunk);
            if self.recent.len() > 2 * WINDOW {
                let cut = self.recent.len() - WINDOW;
                self.recent.drain(..cut);
            }
        }
    }

    /// A block boundary, right after the bytes given so far.
    pub fn block(&mut self, mark: BlockMark) {
        if self.member.method != Method::Deflated
            || self.pending.is_some()
            || mark.output != self.produced
            || mark.output < self.last + SPAN
        {
            return;
        }
        let w = self.recent.len().min(WINDOW);
        self.pending = Some(Candidate {
            at: mark.output,
            byte: mark.input,
            window: self.recent[self.recent.len() - w..].to_vec(),
            ahead: Vec::with_capacity(AHEAD),
        });
    }

    fn settle(&mut self) {
        let Some(c) = self.pending.take() else {
            return;
        };
        // Points lie at least SPAN in, so a whole window was kept before each.
        if c.window.len() != WINDOW {
            return;
        }
        if let Some(bit) =
            splice::resume_bit(self.archive, self.member, c.at, c.byte, &c.window, &c.ahead)
        {
            self.points.push(Point {
                out: c.at,
                bit,
                window: c.window.into_boxed_slice(),
            });
            self.last = c.at;
        }
    }

    /// The index, once the member has streamed to its end.
    pub fn finish(mut self) -> Access {
        self.settle();
        Access {
            points: self.points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wheel::zip::Event;

    use crate::wheel::splice::tests::{archive_of, library_like};

    fn index(a: &ZipArchive, m: &Member) -> Access {
        let mut b = Builder::new(a, m);
        a.stream_events(m, true, |e| {
            match e {
                Event::Data(d) => b.data(d),
                Event::Block(k) => b.block(k),
            }
            Ok(true)
        })
        .unwrap();
        b.finish()
    }

    #[test]
    fn any_range_reads_back_the_same_bytes() {
        let n = 22 << 20;
        let data = library_like(n, 7);
        for ours in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let a = archive_of(dir.path(), &data, ours);
            let m = a.members()[0].clone();
            let access = index(&a, &m);
            let points = access.points.len();
            assert!(points >= 3, "ours {ours}: {points} points");
            assert!(access.points.iter().all(|p| p.bit % 2 == 0));
            assert!(access.bytes() <= (points * WINDOW) as u64);
            let p1 = access.points[1].out;
            for (start, len) in [
                (0u64, 100usize),
                (5 << 20, 70_000),
                (n as u64 - 10, 10),
                (p1 - 3, 10),
                (p1, 1 << 20),
            ] {
                let mut out = vec![0u8; len];
                access.read_into(&a, &m, start, &mut out).unwrap();
                let s = start as usize;
                assert!(out == data[s..s + len], "ours {ours}: {start}+{len}");
            }
            let mut buf = vec![0u8; n];
            access
                .fill(&a, &m, &mut buf, &[(10, 9 << 20), (12 << 20, n as u64)])
                .unwrap();
            assert!(buf[10..9 << 20] == data[10..9 << 20]);
            assert!(buf[12 << 20..] == data[12 << 20..]);
            assert!(
                buf[..10]
                    .iter()
                    .chain(&buf[9 << 20..12 << 20])
                    .all(|&b| b == 0)
            );
        }
    }

    #[test]
    fn a_range_past_the_end_is_an_error() {
        let data = library_like(1 << 20, 7);
        let dir = tempfile::tempdir().unwrap();
        let a = archive_of(dir.path(), &data, false);
        let m = a.members()[0].clone();
        let access = index(&a, &m);
        let mut out = vec![0u8; 10];
        assert!(access.read_into(&a, &m, (1 << 20) - 5, &mut out).is_err());
        access.read_into(&a, &m, (1 << 20) - 10, &mut out).unwrap();
        assert!(out == data[(1 << 20) - 10..]);
    }
}
