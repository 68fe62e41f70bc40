//! The inspect stage: turns an opened wheel into plain facts. Every member is inflated once, in
//! parallel, hashed for RECORD on the way; ELF objects and loose device files are kept in memory
//! just long enough to be described (under a shared memory budget), then dropped. A host
//! library of [`SPARSE_FROM`] bytes or more is not kept whole: only the parts its readers look
//! at are read back from the archive after it has streamed ([`crate::elf::sparse`],
//! [`crate::wheel::access`]), and it is read whole again only for a work that needs it.

use serde::Serialize;

use crate::budget::Budget;
use crate::diagnostic::{Diagnostic, Severity};
use crate::elf::{self, Inspected};
use crate::error::Error;
use crate::progress::Progress;
use std::sync::Arc;

use crate::wheel::Wheel;
use crate::wheel::access::{Access, Sequential};
use crate::wheel::record::{HashState, sha256_field};
use crate::wheel::zip::{Member, ZipError};

/// True for names that look like shared objects (`x.so`, `x.so.1.2`, `x.cpython-311-x86_64-linux-gnu.so`).
pub fn looks_like_shared_object(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.ends_with(".so") || crate::profile::soname_version(base).is_some()
}

/// What a member holds.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Content {
    /// Not an object wheelslim looks into.
    Other,
    Elf {
        elf: Inspected,
    },
    /// Could not be read or described; see the wheel's diagnostics.
    Unreadable,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberFacts {
    pub name: String,
    pub size: u64,
    pub compressed_size: u64,
    #[serde(skip)]
    pub sha256: Option<[u8; 32]>,
    pub content: Content,
    /// Device code inside the member (fatbin sections, offload bundles) or the member itself
    /// (a loose cubin, PTX, code object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::device::DeviceFacts>,
    /// Where the member's deflate blocks begin, kept only for ELF objects with device-code
    /// sections: how many compressed bytes each container takes is read off them (see
    /// [`crate::wheel::zip::compressed_range`]).
    #[serde(skip)]
    pub block_marks: Vec<crate::wheel::zip::BlockMark>,
    /// For a library described from its parts with its CUDA sections as holes
    /// ([`InspectOptions::cuda_apart`]) and not kept by the pass: the index its stream left,
    /// so that [`read_apart`] reads again only what lies outside its CUDA sections.
    #[serde(skip)]
    pub access: Option<Arc<Access>>,
}

impl MemberFacts {
    pub fn elf(&self) -> Option<&Inspected> {
        match &self.content {
            Content::Elf { elf } => Some(elf),
            _ => None,
        }
    }

    pub fn host_elf(&self) -> Option<&elf::ElfInfo> {
        match self.elf() {
            Some(Inspected::Host(info)) => Some(info),
            _ => None,
        }
    }

    pub fn file_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// Estimated compressed bytes of the member's bytes `start..end`.
    pub fn compressed_range(&self, start: u64, end: u64) -> u64 {
        crate::wheel::zip::compressed_range(
            &self.block_marks,
            self.size,
            self.compressed_size,
            start,
            end,
        )
    }
}

/// How the archive's members and RECORD agree.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordCheck {
    /// Members with no RECORD line.
    pub unlisted: Vec<String>,
    /// RECORD lines naming no member.
    pub missing: Vec<String>,
    /// Members whose hash or size differs from RECORD.
    pub mismatched: Vec<String>,
    /// Members listed without a hash (other than RECORD and its signatures).
    pub unhashed: Vec<String>,
}

impl RecordCheck {
    pub fn is_clean(&self) -> bool {
        self.unlisted.is_empty()
            && self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.unhashed.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WheelFacts {
    pub members: Vec<MemberFacts>,
    pub record: RecordCheck,
    pub diagnostics: Vec<Diagnostic>,
}

impl WheelFacts {
    /// Device-code reports for every member that holds device code. (Here rather than in
    /// `device`, so that `device` needs nothing from this module and the two do not import
    /// each other.)
    pub fn device_reports(&self) -> Vec<crate::device::DeviceReport> {
        self.members
            .iter()
            .filter_map(|m| {
                m.device
                    .as_ref()
                    .and_then(|d| crate::device::report(&m.name, d))
            })
            .collect()
    }
}

/// Options for the inspect stage.
#[derive(Debug, Clone, Copy)]
pub struct InspectOptions<'a> {
    /// Keep and describe ELF objects and device files (false: hash only).
    pub describe: bool,
    /// Advanced by each member's uncompressed bytes as they are inflated (the rest of its size
    /// once it is done, see [`MemberProgress`]). The library only counts; whether and how it
    /// is drawn is the command line's business.
    pub progress: Option<&'a dyn Progress>,
    /// Bytes reserved for each kept member, in multiples of its size: 2 where the work given to
    /// [`inspect_wheel_with`] builds a rewritten copy beside the member (`trim`). The copy is
    /// then counted before the member is admitted; growing the reservation afterwards cannot
    /// wait (see [`crate::budget`]), so it could take the budget past its cap.
    pub copies: u64,
    /// Which members described from their parts ([`crate::elf::sparse`]) the work given to
    /// [`inspect_wheel_with`] needs whole; those are read whole again, the others never reach
    /// it.
    pub whole: Whole<'a>,
    /// Which host ELF objects are held only in the parts their readers look at while they
    /// are described, and how.
    pub sparse: Sparse,
    /// The work reads the CUDA sections of a member held in parts itself, through
    /// [`Kept::apart`]: a member it needs whole is handed over with them left out, so that the
    /// work can hold the few containers it keeps instead of every one (`trim`).
    pub cuda_apart: bool,
    /// Large host objects ([`Sparse::from`]) this says yes to are held in parts even where
    /// holding one whole would fit the budget, and read again whole only if
    /// [`InspectOptions::whole`] wants them: for members the work is unlikely to rewrite,
    /// judged before they are read, so that a large library it leaves alone never costs its
    /// size (`split` without a trim or strip; a second inflate of a library it does rewrite
    /// after all is the price).
    pub parts_first: Option<MemberTest<'a>>,
}

/// Members of at least this many bytes are described from their parts: below it, holding one
/// whole per worker stays well under the 256 MiB over what is rewritten that issue 11 allows.
pub const SPARSE_FROM: u64 = 64 << 20;

/// Which host ELF objects the inspect pass holds in parts ([`crate::elf::sparse`]), and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sparse {
    /// Objects this large or larger ([`SPARSE_FROM`]): always when the pass only describes
    /// ([`Whole::Never`]), and otherwise when holding one whole would not fit the budget.
    pub from: u64,
    /// Sections this large or larger may be left out ([`elf::sparse::MIN_HOLE`]).
    pub hole: u64,
    /// Bytes kept as the object streams ([`PARTS_HEAD`]): the ELF header and, nearly
    /// always, the program headers. Nothing in them is left out.
    pub head: usize,
}

impl Default for Sparse {
    fn default() -> Self {
        Sparse {
            from: SPARSE_FROM,
            hole: elf::sparse::MIN_HOLE,
            head: PARTS_HEAD,
        }
    }
}

impl Sparse {
    /// Every host object held in parts, with every section left out that can be: what tests
    /// use to take that path with small fixtures.
    pub const EVERYTHING: Sparse = Sparse {
        from: 0,
        hole: 1,
        head: 64,
    };

    /// Never: every object is held whole.
    pub const NEVER: Sparse = Sparse {
        from: u64::MAX,
        hole: u64::MAX,
        head: PARTS_HEAD,
    };
}

/// A test of a member from its central-directory entry alone, before it is read.
#[derive(Clone, Copy)]
pub struct MemberTest<'a>(pub &'a (dyn Fn(&Member) -> bool + Sync));

impl std::fmt::Debug for MemberTest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberTest(..)")
    }
}

/// Which members described from their parts the inspect pass's work needs whole.
#[derive(Clone, Copy)]
pub enum Whole<'a> {
    /// None: the work does nothing with them (describing only).
    Never,
    /// Every one (the safe default for a work that does not say).
    Always,
    /// Those the test says yes to, from their facts.
    When(&'a (dyn Fn(&MemberFacts) -> bool + Sync)),
    /// Those the test says yes to, which the work keeps past the pass ([`Kept::retain`]):
    /// only when the budget would let it keep them, else they are left to be read again
    /// later rather than made whole and dropped.
    Retained(&'a (dyn Fn(&MemberFacts) -> bool + Sync)),
}

impl Whole<'_> {
    fn wants(&self, f: &MemberFacts) -> bool {
        match self {
            Whole::Never => false,
            Whole::Always => true,
            Whole::When(test) | Whole::Retained(test) => test(f),
        }
    }
}

impl std::fmt::Debug for Whole<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Whole::Never => "Never",
            Whole::Always => "Always",
            Whole::When(_) => "When(..)",
            Whole::Retained(_) => "Retained(..)",
        })
    }
}

impl Default for InspectOptions<'_> {
    fn default() -> Self {
        InspectOptions {
            describe: true,
            progress: None,
            copies: 1,
            whole: Whole::Always,
            sparse: Sparse::default(),
            cuda_apart: false,
            parts_first: None,
        }
    }
}

struct Streamed {
    hash: HashState,
    kept: Option<Vec<u8>>,
    marks: Vec<crate::wheel::zip::BlockMark>,
    /// For a member held in parts: its first bytes and where inflate can resume.
    parts: Option<(Vec<u8>, Arc<Access>)>,
}

/// How the inspect pass holds a member while it is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Not at all: hashed as it streams.
    No,
    Whole,
    /// In the parts its readers look at ([`crate::elf::sparse`]).
    Parts,
}

/// Bytes of a member held in parts that the inspect pass keeps as they stream: the ELF
/// header and, nearly always, the program headers.
const PARTS_HEAD: usize = 64 * 1024;

/// A member's uncompressed bytes, kept in memory under the shared budget (see
/// [`inspect_wheel_with`]). Dropping it returns its bytes to the budget.
#[derive(Debug)]
pub struct Kept<'b> {
    pub bytes: Vec<u8>,
    /// Where the member's deflate blocks begin (empty for a stored member), for a rewrite to
    /// reuse the blocks it leaves unchanged ([`crate::wheel::splice`]).
    pub marks: Vec<crate::wheel::zip::BlockMark>,
    reservation: Option<crate::budget::Reservation<'b>>,
    /// The largest reservation the pass may still make when these bytes were described (see
    /// [`Pending`]): retaining them must leave that much room in the budget.
    room: u64,
    /// The CUDA sections left out of `bytes` (zero there), with [`InspectOptions::cuda_apart`].
    pub apart: Option<Apart>,
}

/// The CUDA sections of a member held in parts that [`Kept::bytes`] leaves out, and the index
/// to read them from the archive again. The member's CRC is not yet checked: a work that
/// writes anything made from these bytes checks it first ([`ApartReader::check`]).
#[derive(Debug)]
pub struct Apart {
    /// File ranges `[start, end)`, sorted.
    pub holes: elf::sparse::Ranges,
    access: Arc<Access>,
}

impl Apart {
    /// A reader of the member that notes the CRC-32 of each hole as it is read through.
    pub fn reader<'a>(&'a self, wheel: &'a Wheel, m: &'a Member) -> ApartReader<'a> {
        ApartReader {
            apart: self,
            seq: Sequential::new(&self.access, &wheel.archive, m),
            member: m,
            crcs: std::cell::RefCell::new(
                self.holes
                    .iter()
                    .map(|&(a, _)| (a, crc32fast::Hasher::new()))
                    .collect(),
            ),
        }
    }
}

/// Reads a member's bytes again ([`Apart::reader`]), hashing each hole that is read in order
/// from its start.
pub struct ApartReader<'a> {
    apart: &'a Apart,
    seq: Sequential<'a>,
    member: &'a Member,
    /// Per hole: the offset up to which it was hashed, and the hash of its bytes so far.
    crcs: std::cell::RefCell<Vec<(u64, crc32fast::Hasher)>>,
}

impl ApartReader<'_> {
    /// The file ranges left out.
    pub fn holes(&self) -> &[(u64, u64)] {
        &self.apart.holes
    }

    /// Fills `out` with the member's bytes from `at`.
    pub fn read(&self, at: u64, out: &mut [u8]) -> Result<(), ZipError> {
        self.seq.read(at, out)?;
        let mut crcs = self.crcs.borrow_mut();
        let end = at.saturating_add(out.len() as u64);
        let hole = self
            .apart
            .holes
            .iter()
            .position(|&(a, b)| a <= at && end <= b);
        if let Some((upto, h)) = hole.and_then(|i| crcs.get_mut(i))
            && *upto == at
        {
            h.update(out);
            *upto = end;
        }
        Ok(())
    }

    /// [`ApartReader::read`], first reading through what of the hole lies between where its
    /// bytes were last read in order and `at`, so that the hole goes on being hashed in order:
    /// a work that reads a hole's pieces in rising order (a companion's containers) then
    /// inflates each byte once, and [`ApartReader::check`] need not read any of it again. A
    /// read behind that point is read as it is.
    pub fn read_on(&self, at: u64, out: &mut [u8]) -> Result<(), ZipError> {
        const CHUNK: usize = 1 << 20;
        let end = at.saturating_add(out.len() as u64);
        let upto = self
            .apart
            .holes
            .iter()
            .position(|&(a, b)| a <= at && end <= b)
            .and_then(|i| self.crcs.borrow().get(i).map(|c| c.0));
        if let Some(mut pos) = upto.filter(|&u| u < at) {
            let mut buf = vec![0u8; CHUNK];
            while pos < at {
                let n = (at - pos).min(CHUNK as u64) as usize;
                self.read(pos, &mut buf[..n])?;
                pos += n as u64;
            }
        }
        self.read(at, out)
    }

    /// Reads the holes `ranges` (each one whole) into `bytes`.
    pub fn fill(&self, bytes: &mut [u8], ranges: &[(u64, u64)]) -> Result<(), ZipError> {
        for &(a, b) in ranges {
            let out = usize::try_from(a)
                .ok()
                .zip(usize::try_from(b).ok())
                .and_then(|(a, b)| bytes.get_mut(a..b))
                .ok_or_else(|| ZipError::BadDeflate("a hole past the member's end".into()))?;
            self.read(a, out)?;
        }
        Ok(())
    }

    /// Checks the member against the archive's CRC-32: `bytes` (the member with the holes
    /// left zero) outside the holes, each hole as it was read, and what of a hole was not
    /// read in order read again now.
    pub fn check(&self, bytes: &[u8]) -> Result<(), ZipError> {
        const CHUNK: usize = 1 << 20;
        let mut crcs = self.crcs.borrow_mut();
        for (&(_, b), (upto, h)) in self.apart.holes.iter().zip(crcs.iter_mut()) {
            let mut buf = vec![0u8; CHUNK];
            while *upto < b {
                let n = (b - *upto).min(CHUNK as u64) as usize;
                self.seq.read(*upto, &mut buf[..n])?;
                h.update(&buf[..n]);
                *upto += n as u64;
            }
        }
        let mut all = crc32fast::Hasher::new();
        let mut at = 0usize;
        for (&(a, b), (_, h)) in self.apart.holes.iter().zip(crcs.iter()) {
            let (a, b) = (a as usize, b as usize);
            all.update(bytes.get(at..a).unwrap_or_default());
            all.combine(h);
            at = b;
        }
        all.update(bytes.get(at..).unwrap_or_default());
        let actual = all.finalize();
        if actual != self.member.crc32 {
            return Err(ZipError::Crc {
                expected: self.member.crc32,
                actual,
            });
        }
        Ok(())
    }
}

impl<'b> Kept<'b> {
    /// Reserves `more` bytes beside these (for a rewritten copy), without waiting for itself.
    pub fn grow(&mut self, more: u64) {
        if let Some(r) = self.reservation.as_mut() {
            r.grow(more);
        }
    }

    /// The bytes, and the reservation that must live as long as they are held.
    pub fn into_parts(self) -> (Vec<u8>, Option<crate::budget::Reservation<'b>>) {
        (self.bytes, self.reservation)
    }

    /// Keeps the bytes past the inspect pass: they stay reserved, as retained bytes, until
    /// this is dropped (see [`Budget`]). `None` (the bytes are dropped) when the budget has
    /// no room left for them beside the largest member the pass may still inflate.
    pub fn retain(mut self) -> Option<Kept<'b>> {
        let room = self.room;
        match self.reservation.take().map(|r| r.try_retain_leaving(room)) {
            Some(Err(_)) => None,
            Some(Ok(r)) => {
                self.reservation = Some(r);
                Some(self)
            }
            None => Some(self),
        }
    }
}

/// Counts one member's uncompressed bytes on a progress bar as they are inflated, so that a
/// large member moves the bar while it streams instead of all at once when it is done. When
/// it is dropped it adds what was not streamed (a folder, an unreadable member, a stream that
/// stopped early), so each member counts exactly its size, once.
pub(crate) struct MemberProgress<'a> {
    bar: Option<&'a dyn Progress>,
    size: u64,
    counted: std::cell::Cell<u64>,
}

impl<'a> MemberProgress<'a> {
    pub(crate) fn new(bar: Option<&'a dyn Progress>, size: u64) -> Self {
        MemberProgress {
            bar,
            size,
            counted: std::cell::Cell::new(0),
        }
    }

    /// `n` more bytes were inflated (never counted past the member's size).
    pub(crate) fn add(&self, n: usize) {
        let counted = self.counted.get();
        let n = (n as u64).min(self.size - counted);
        if n > 0 {
            self.counted.set(counted + n);
            if let Some(b) = self.bar {
                b.inc(n);
            }
        }
    }
}

impl Drop for MemberProgress<'_> {
    fn drop(&mut self) {
        let rest = self.size - self.counted.get();
        if let (Some(b), true) = (self.bar, rest > 0) {
            b.inc(rest);
        }
    }
}

/// Inflates one member once: hashes it, and keeps its bytes (whole, or the first of them and
/// an index to read the rest again) as `hold(first_bytes)` says.
fn stream_member<'b>(
    wheel: &Wheel,
    m: &Member,
    budget: &'b Budget,
    copies: u64,
    sparse_head: usize,
    hold: impl Fn(&[u8]) -> Hold,
    progress: &MemberProgress,
) -> Result<(Streamed, Option<crate::budget::Reservation<'b>>), ZipError> {
    use crate::wheel::zip::Event;
    let mut hash = HashState::default();
    let mut kept: Option<Vec<u8>> = None;
    let mut how: Option<Hold> = None;
    let mut reservation = None;
    // Bytes seen before the decision (the sniff needs the first few), and the first bytes of
    // a member held in parts.
    let mut head: Vec<u8> = Vec::new();
    let mut marks = Vec::new();
    let mut index: Option<crate::wheel::access::Builder> = None;
    wheel.archive.stream_events(m, true, |event| {
        let chunk = match event {
            Event::Data(chunk) => chunk,
            Event::Block(mark) => {
                marks.push(mark);
                if let Some(b) = index.as_mut() {
                    b.block(mark);
                }
                return Ok(true);
            }
        };
        progress.add(chunk.len());
        hash.update(chunk);
        match how {
            None => {
                head.extend_from_slice(chunk);
                if head.len() >= 64 || head.len() as u64 == m.size {
                    let h = hold(&head);
                    how = Some(h);
                    if h != Hold::No {
                        reservation = Some(budget.reserve(m.size.saturating_mul(copies.max(1))));
                    }
                    match h {
                        Hold::Whole => {
                            let mut v = crate::wheel::zip::buffer_for(m.size)?;
                            v.extend_from_slice(&head);
                            kept = Some(v);
                        }
                        Hold::Parts => {
                            let mut b = crate::wheel::access::Builder::new(&wheel.archive, m);
                            b.data(&head);
                            head.truncate(sparse_head);
                            index = Some(b);
                        }
                        Hold::No => {}
                    }
                }
            }
            Some(Hold::Whole) => {
                if let Some(v) = kept.as_mut() {
                    v.extend_from_slice(chunk);
                }
            }
            Some(Hold::Parts) => {
                let room = sparse_head.saturating_sub(head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..room]);
                if let Some(b) = index.as_mut() {
                    b.data(chunk);
                }
            }
            Some(Hold::No) => {}
        }
        Ok(true)
    })?;
    if how.is_none() && hold(&head) != Hold::No {
        // Empty member: nothing was streamed.
        kept = Some(head);
        return Ok((
            Streamed {
                hash,
                kept,
                marks: Vec::new(),
                parts: None,
            },
            reservation,
        ));
    }
    let parts = index.map(|b| (head, Arc::new(b.finish())));
    if kept.is_none() && parts.is_none() {
        marks = Vec::new();
    }
    Ok((
        Streamed {
            hash,
            kept,
            marks,
            parts,
        },
        reservation,
    ))
}

/// Reads back the parts of a member held in parts that its readers look at, into a buffer as
/// long as the member whose other pages are never touched; returns it and its holes.
fn read_parts(
    wheel: &Wheel,
    m: &Member,
    min_hole: u64,
    cuda_holes: bool,
    head: &[u8],
    access: &crate::wheel::access::Access,
) -> Result<(Vec<u8>, elf::sparse::Ranges), ZipError> {
    let mut bytes = crate::wheel::zip::zeroed_for(m.size)?;
    let n = head.len().min(bytes.len());
    bytes[..n].copy_from_slice(&head[..n]);
    let holes = elf::sparse::assemble(&mut bytes, n, min_hole, cuda_holes, &mut |buf, ranges| {
        access.fill(&wheel.archive, m, buf, ranges)
    })?;
    Ok((bytes, holes))
}

/// Fills the holes of a member read in parts, making it whole, and checks it against the
/// archive's CRC.
fn fill_holes(
    wheel: &Wheel,
    m: &Member,
    bytes: &mut [u8],
    holes: &[(u64, u64)],
    access: &crate::wheel::access::Access,
) -> Result<(), ZipError> {
    access.fill(&wheel.archive, m, bytes, holes)?;
    let actual = crc32fast::hash(bytes);
    if actual != m.crc32 {
        return Err(ZipError::Crc {
            expected: m.crc32,
            actual,
        });
    }
    Ok(())
}

/// Inspects every member of a wheel. Problems with single members become diagnostics; the rest
/// of the wheel is still described.
pub fn inspect_wheel(wheel: &Wheel, opts: InspectOptions, budget: &Budget) -> WheelFacts {
    let opts = InspectOptions {
        whole: Whole::Never,
        ..opts
    };
    inspect_wheel_with(wheel, opts, budget, &|_: &MemberFacts, _: Kept| None::<()>).0
}

/// Like [`inspect_wheel`], and while each kept member's bytes are in memory (ELF objects and
/// device files, right after they are described), `work` may turn them into something else —
/// this is how `trim` rewrites a member and `split` keeps the members it will rewrite, without
/// inflating them a second time. Its results come back in member order.
///
/// Members are inflated in parallel, the largest first (see [`crate::schedule`]).
pub fn inspect_wheel_with<'b, T: Send>(
    wheel: &Wheel,
    opts: InspectOptions,
    budget: &'b Budget,
    work: &(dyn Fn(&MemberFacts, Kept<'b>) -> Option<T> + Sync),
) -> (WheelFacts, Vec<Option<T>>) {
    let members = wheel.archive.members();
    let sizes: Vec<u64> = members.iter().map(|m| m.size).collect();
    let pending = Pending::new(members, opts);
    let results: Vec<(MemberFacts, Vec<Diagnostic>, Option<T>)> =
        crate::schedule::largest_first(&sizes, |i| {
            let progress = MemberProgress::new(opts.progress, sizes[i]);
            inspect_member(wheel, &members[i], opts, budget, work, &progress, || {
                pending.done(i)
            })
        });
    let mut diagnostics = Vec::new();
    let mut facts = Vec::with_capacity(results.len());
    let mut outputs = Vec::with_capacity(results.len());
    for (f, d, t) in results {
        facts.push(f);
        diagnostics.extend(d);
        outputs.push(t);
    }
    let record = check_record(wheel, &facts, &mut diagnostics);
    (
        WheelFacts {
            members: facts,
            record,
            diagnostics,
        },
        outputs,
    )
}

/// The members of one inspect pass that have not been inflated yet, for the room a retained
/// member must leave ([`Kept::retain`]). Every member that is not a folder or unreadable
/// counts, by what its reservation would be (its size times [`InspectOptions::copies`]): which
/// ones are ELF is known only once their first bytes are read. A member counts until it has
/// streamed, so one being inflated beside the retained member is counted too (its bytes are
/// held at once with the retained ones).
struct Pending {
    /// Member indexes, the largest reservation first.
    order: Vec<(u64, usize)>,
    done: Vec<std::sync::atomic::AtomicBool>,
    /// Every entry of `order` before this one is done.
    first: std::sync::atomic::AtomicUsize,
}

impl Pending {
    fn new(members: &[Member], opts: InspectOptions) -> Pending {
        let mut order: Vec<(u64, usize)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| opts.describe && !m.is_dir && m.problem.is_none())
            .map(|(i, m)| (m.size.saturating_mul(opts.copies.max(1)), i))
            .collect();
        order.sort_by_key(|&(bytes, i)| (std::cmp::Reverse(bytes), i));
        let done = (0..members.len())
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect();
        Pending {
            order,
            done,
            first: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Member `i` has streamed; returns the largest reservation of a member that has not.
    fn done(&self, i: usize) -> u64 {
        use std::sync::atomic::Ordering;
        if let Some(d) = self.done.get(i) {
            d.store(true, Ordering::SeqCst);
        }
        let mut k = self.first.load(Ordering::SeqCst);
        while let Some(&(bytes, j)) = self.order.get(k) {
            if !self.done[j].load(Ordering::SeqCst) {
                return bytes;
            }
            k += 1;
            self.first.fetch_max(k, Ordering::SeqCst);
        }
        0
    }
}

fn inspect_member<'b, T>(
    wheel: &Wheel,
    m: &Member,
    opts: InspectOptions,
    budget: &'b Budget,
    work: &(dyn Fn(&MemberFacts, Kept<'b>) -> Option<T> + Sync),
    progress: &MemberProgress,
    streamed: impl FnOnce() -> u64,
) -> (MemberFacts, Vec<Diagnostic>, Option<T>) {
    let mut diags = Vec::new();
    let loc = wheel.member_location(&m.name);
    let mut facts = MemberFacts {
        name: m.name.clone(),
        size: m.size,
        compressed_size: m.compressed_size,
        sha256: None,
        content: Content::Other,
        device: None,
        block_marks: Vec::new(),
        access: None,
    };
    if m.is_dir {
        return (facts, diags, None);
    }
    if let Some(p) = &m.problem {
        diags.push(Diagnostic::from_error(&Error::Zip {
            location: loc,
            err: p.clone(),
        }));
        facts.content = Content::Unreadable;
        return (facts, diags, None);
    }
    let name = m.name.clone();
    let so_like = looks_like_shared_object(&name);
    // A symlink member holds its target's path, not the library: it is reported as a symlink
    // (checks.rs), never parsed as what its name suggests.
    // A member named like a library whose first bytes are not ELF is judged from those bytes
    // alone: it is hashed as it streams but never held whole (a 4 GiB text file named `x.so`
    // must not cost 4 GiB).
    let not_elf_head: std::cell::RefCell<Option<Vec<u8>>> = std::cell::RefCell::new(None);
    let hold = |head: &[u8]| {
        if !opts.describe || m.is_symlink {
            return Hold::No;
        }
        let loose = crate::fatbin::loose::classify(&name, head).is_some();
        // A work that may need the member whole (a rewrite) gets it whole from the stream,
        // inflated once, unless holding it would not fit `--memory`: then it is described
        // from its parts and read whole again only if the work needs it (CPU for memory).
        let whole_fits = !matches!(opts.whole, Whole::Never)
            && !opts.parts_first.is_some_and(|test| (test.0)(m))
            && m.size.saturating_mul(opts.copies.max(1)) <= budget.cap();
        if !loose && !whole_fits && m.size >= opts.sparse.from && is_host_elf64(head) {
            return Hold::Parts;
        }
        if elf::is_elf(head) || loose {
            return Hold::Whole;
        }
        if so_like {
            *not_elf_head.borrow_mut() = Some(head.to_vec());
        }
        Hold::No
    };
    let result = stream_member(
        wheel,
        m,
        budget,
        opts.copies,
        opts.sparse.head,
        hold,
        progress,
    );
    let room = streamed();
    let (streamed, reservation) = match result {
        Ok(s) => s,
        Err(err) => {
            diags.push(Diagnostic::from_error(&Error::Zip { location: loc, err }));
            facts.content = Content::Unreadable;
            return (facts, diags, None);
        }
    };
    facts.sha256 = Some(streamed.hash.digest());
    if streamed.kept.is_none()
        && let Some(head) = not_elf_head.take()
        && let Err(err) = elf::inspect(&head)
    {
        diags.push(Diagnostic::from_error(&Error::Elf {
            location: loc.clone(),
            err,
        }));
        facts.content = Content::Unreadable;
        return (facts, diags, None);
    }
    let mut out = None;
    let kept = streamed.kept;
    if let Some((head, access)) = &streamed.parts {
        let held = Held {
            head,
            access,
            marks: streamed.marks,
            reservation,
            room,
        };
        let out = describe_parts(wheel, m, opts, held, work, &mut facts, &mut diags);
        return (facts, diags, out);
    }
    if let Some(bytes) = kept {
        describe(&name, &bytes, &loc, so_like, None, &mut facts, &mut diags);
        if facts
            .device
            .as_ref()
            .is_some_and(|d| !d.cuda.is_empty() || !d.hip.is_empty())
        {
            facts.block_marks = streamed.marks.clone();
        }
        if !matches!(facts.content, Content::Unreadable) {
            out = work(
                &facts,
                Kept {
                    bytes,
                    marks: streamed.marks,
                    reservation,
                    room,
                    apart: None,
                },
            );
        }
    }
    (facts, diags, out)
}

/// What the inspect pass holds of a member held in parts once it has streamed.
struct Held<'h, 'b> {
    head: &'h [u8],
    access: &'h Arc<Access>,
    marks: Vec<crate::wheel::zip::BlockMark>,
    reservation: Option<crate::budget::Reservation<'b>>,
    room: u64,
}

/// Describes a member held in parts from the parts its readers look at, and reads it whole
/// for `work` when [`InspectOptions::whole`] says the work needs it.
fn describe_parts<'b, T>(
    wheel: &Wheel,
    m: &Member,
    opts: InspectOptions,
    held: Held<'_, 'b>,
    work: &(dyn Fn(&MemberFacts, Kept<'b>) -> Option<T> + Sync),
    facts: &mut MemberFacts,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let loc = wheel.member_location(&m.name);
    let so_like = looks_like_shared_object(&m.name);
    // Device code is walked from the archive again, a window at a time, unless the work
    // may need the member whole and does not read device code itself (then it is read once,
    // with the rest); a member held in parts first (`parts_first`) is unlikely to be needed.
    let cuda_holes = matches!(opts.whole, Whole::Never)
        || opts.cuda_apart
        || opts.parts_first.is_some_and(|test| (test.0)(m));
    // Windows are read in order: a reader that goes on from where the last one stopped
    // inflates each byte once.
    let seq = Sequential::new(held.access, &wheel.archive, m);
    let again = |at: u64, out: &mut [u8]| seq.read(at, out).map_err(|e| e.to_string());
    let read = read_parts(
        wheel,
        m,
        opts.sparse.hole,
        cuda_holes,
        held.head,
        held.access,
    )
    .and_then(|(mut bytes, holes)| {
        let parts: Again = Some((&holes, &again));
        describe(&m.name, &bytes, &loc, so_like, parts, facts, diags);
        let keepable = || match (&opts.whole, held.reservation.as_ref()) {
            (Whole::Retained(_), Some(r)) => r.could_retain_leaving(held.room),
            _ => true,
        };
        let wanted =
            !matches!(facts.content, Content::Unreadable) && opts.whole.wants(facts) && keepable();
        if !wanted {
            return Ok(None);
        }
        let apart = if opts.cuda_apart {
            cuda_ranges(facts, &holes)
        } else {
            Vec::new()
        };
        if apart.is_empty() {
            fill_holes(wheel, m, &mut bytes, &holes, held.access)?;
            return Ok(Some((bytes, None)));
        }
        let rest: elf::sparse::Ranges = holes
            .iter()
            .flat_map(|&(a, b)| elf::sparse::subtract(a, b, &apart))
            .collect();
        held.access.fill(&wheel.archive, m, &mut bytes, &rest)?;
        let apart = Apart {
            holes: apart,
            access: Arc::clone(held.access),
        };
        Ok(Some((bytes, Some(apart))))
    });
    let kept = match read {
        Ok(whole) => whole,
        Err(err) => {
            diags.push(Diagnostic::from_error(&Error::Zip {
                location: loc.clone(),
                err,
            }));
            facts.content = Content::Unreadable;
            None
        }
    };
    if facts
        .device
        .as_ref()
        .is_some_and(|d| !d.cuda.is_empty() || !d.hip.is_empty())
    {
        facts.block_marks = held.marks.clone();
    }
    let Some((bytes, apart)) = kept else {
        // Not kept: a later rewrite may read it again, and the index spares it the CUDA
        // sections and every byte before what it reads (a few MiB per GiB).
        if opts.cuda_apart && !cuda_ranges(facts, &[(0, u64::MAX)]).is_empty() {
            facts.access = Some(Arc::clone(held.access));
        }
        return None;
    };
    work(
        facts,
        Kept {
            bytes,
            marks: held.marks,
            reservation: held.reservation,
            room: held.room,
            apart,
        },
    )
}

/// Reads a member again whole but for its CUDA sections, inflating it once: the sections
/// are left zero and an index is kept to read them again a window at a time ([`Apart`]), as
/// [`InspectOptions::cuda_apart`] hands a member over. For a work that must read again a
/// large library the inspect pass could not keep (`split --sm`). `None` when the member is
/// under `from` bytes ([`Sparse::from`]) or has no CUDA section in its file; the member's
/// size and CRC are checked as it streams.
#[allow(clippy::type_complexity)]
pub fn read_apart(
    wheel: &Wheel,
    m: &Member,
    facts: &MemberFacts,
    from: u64,
) -> Result<Option<(Vec<u8>, Vec<crate::wheel::zip::BlockMark>, Apart)>, ZipError> {
    use crate::wheel::zip::Event;
    let holes = cuda_ranges(facts, &[(0, u64::MAX)]);
    if holes.is_empty() || m.size < from {
        return Ok(None);
    }
    if let Some(access) = &facts.access {
        // The inspect pass left an index: only the bytes outside the holes are inflated,
        // from the nearest point before each range, in parallel.
        let mut bytes = crate::wheel::zip::zeroed_for(m.size)?;
        let rest = elf::sparse::subtract(0, m.size, &holes);
        access.fill(&wheel.archive, m, &mut bytes, &rest)?;
        let apart = Apart {
            holes,
            access: Arc::clone(access),
        };
        return Ok(Some((bytes, facts.block_marks.clone(), apart)));
    }
    let mut bytes = crate::wheel::zip::zeroed_for(m.size)?;
    let mut marks = Vec::new();
    let mut index = crate::wheel::access::Builder::new(&wheel.archive, m);
    let mut at = 0u64;
    wheel.archive.stream_events(m, true, |event| {
        let chunk = match event {
            Event::Data(chunk) => chunk,
            Event::Block(mark) => {
                marks.push(mark);
                index.block(mark);
                return Ok(true);
            }
        };
        index.data(chunk);
        let end = at.saturating_add(chunk.len() as u64);
        for (a, b) in elf::sparse::subtract(at, end, &holes) {
            let (Ok(a), Ok(b)) = (usize::try_from(a), usize::try_from(b)) else {
                continue;
            };
            let from = a - at as usize;
            if let (Some(out), Some(src)) = (bytes.get_mut(a..b), chunk.get(from..from + (b - a))) {
                out.copy_from_slice(src);
            }
        }
        at = end;
        Ok(true)
    })?;
    let apart = Apart {
        holes,
        access: Arc::new(index.finish()),
    };
    Ok(Some((bytes, marks, apart)))
}

/// The file ranges of the member's CUDA sections that lie in its holes (adjacent sections
/// make one hole), sorted.
fn cuda_ranges(facts: &MemberFacts, holes: &[(u64, u64)]) -> elf::sparse::Ranges {
    let Some(info) = facts.host_elf() else {
        return Vec::new();
    };
    let mut out: elf::sparse::Ranges = info
        .sections
        .iter()
        .filter(|s| s.in_file && s.size > 0)
        .filter(|s| crate::device::CUDA_SECTIONS.contains(&s.name.as_str()))
        .map(|s| (s.offset, s.offset.saturating_add(s.size)))
        .filter(|&(a, b)| holes.iter().any(|&(x, y)| x <= a && b <= y))
        .collect();
    out.sort_unstable();
    out.dedup();
    // Sections that overlap one another (never in a real object) are read with the rest.
    if out.windows(2).any(|w| w[1].0 < w[0].1) {
        return Vec::new();
    }
    out
}

/// A 64-bit little-endian ELF object for a CPU (not a GPU code object): what
/// [`crate::elf::sparse`] can describe from its parts.
fn is_host_elf64(head: &[u8]) -> bool {
    head.len() >= 64
        && elf::is_elf(head)
        && head[4] == 2
        && head[5] == 1
        && !matches!(u16::from_le_bytes([head[18], head[19]]), 190 | 224)
}

/// Describes a kept member: ELF facts, device code inside it, or a loose device file.
/// For a member held in parts: its holes, and how to read its bytes again (see
/// [`crate::device::scan_elf_parts`]).
type Again<'a> = Option<(&'a [(u64, u64)], &'a crate::fatbin::cuda::ReadAt<'a>)>;

fn describe(
    name: &str,
    bytes: &[u8],
    loc: &crate::error::Location,
    so_like: bool,
    again: Again,
    facts: &mut MemberFacts,
    diags: &mut Vec<Diagnostic>,
) {
    let device_error = |section: Option<&str>, err: crate::fatbin::FatbinError| {
        let what = section.map(|s| format!(" in `{s}`")).unwrap_or_default();
        Diagnostic::new(Severity::Error, loc, format!("device code{what}: {err}")).with_hint(
            "the embedded device code is damaged; rebuild the library, or leave it out of trimming",
        )
    };
    // Loose device files first: a cubin or hsaco is an ELF file too, but a device one.
    match crate::fatbin::loose::inspect(name, bytes) {
        Ok(Some(info)) => {
            use crate::fatbin::loose::LooseKind;
            let mut d = crate::device::DeviceFacts::default();
            // Containers and bundles in loose files get the same per-entry view as sections.
            let parsed = match info.kind {
                LooseKind::Fatbin => crate::device::scan_cuda(&[("(file)", bytes)])
                    .map(|(counts, summary)| {
                        d.cuda.push(crate::device::CudaSection {
                            name: "(file)".into(),
                            size: bytes.len() as u64,
                            containers: counts.first().copied().unwrap_or(0),
                            spans: Vec::new(),
                            families: Vec::new(),
                        });
                        d.cuda_summary = summary;
                    })
                    .map_err(|(_, e)| e),
                LooseKind::OffloadBundle => {
                    crate::fatbin::hip::parse_section(bytes).map(|bundles| {
                        d.hip.push(crate::device::HipSection {
                            name: "(file)".into(),
                            size: bytes.len() as u64,
                            bundles,
                        })
                    })
                }
                _ => Ok(()),
            };
            if let Err(err) = parsed {
                diags.push(device_error(None, err));
                facts.content = Content::Unreadable;
                return;
            }
            d.loose = Some(info);
            facts.device = Some(d);
            if !elf::is_elf(bytes) {
                return;
            }
        }
        Ok(None) => {}
        Err(err) => {
            diags.push(device_error(None, err));
            facts.content = Content::Unreadable;
            return;
        }
    }
    if !elf::is_elf(bytes) && !so_like {
        return;
    }
    match elf::inspect(bytes) {
        Ok(inspected) => {
            match &inspected {
                Inspected::Unsupported(u) => {
                    diags.push(Diagnostic::new(Severity::Note, loc, u.reason.clone()));
                }
                Inspected::Host(info) => match again.map_or_else(
                    || crate::device::scan_elf(bytes, info),
                    |(holes, read)| crate::device::scan_elf_parts(bytes, info, holes, read),
                ) {
                    Ok(d) if !d.is_empty() => facts.device = Some(d),
                    Ok(_) => {}
                    Err((section, err)) => diags.push(device_error(Some(&section), err)),
                },
                Inspected::Device { .. } => {}
            }
            facts.content = Content::Elf { elf: inspected };
        }
        Err(err) => {
            diags.push(Diagnostic::from_error(&Error::Elf {
                location: loc.clone(),
                err,
            }));
            facts.content = Content::Unreadable;
        }
    }
}

fn is_record_signature(path: &str, dist_info: &str) -> bool {
    path == format!("{dist_info}/RECORD.jws") || path == format!("{dist_info}/RECORD.p7s")
}

fn check_record(wheel: &Wheel, facts: &[MemberFacts], diags: &mut Vec<Diagnostic>) -> RecordCheck {
    let mut check = RecordCheck::default();
    let record_path = format!("{}/RECORD", wheel.dist_info);
    let mut by_path = std::collections::HashMap::new();
    for e in &wheel.record.entries {
        by_path.insert(e.path.as_str(), e);
    }
    let mut seen = std::collections::HashSet::new();
    for f in facts {
        if f.name.ends_with('/') {
            continue;
        }
        seen.insert(f.name.as_str());
        if f.name == record_path || is_record_signature(&f.name, &wheel.dist_info) {
            continue;
        }
        let Some(entry) = by_path.get(f.name.as_str()) else {
            check.unlisted.push(f.name.clone());
            continue;
        };
        let Some(digest) = f.sha256 else { continue };
        match entry.hash.as_deref() {
            None => check.unhashed.push(f.name.clone()),
            Some(h) if h.starts_with("sha256=") => {
                if h != sha256_field(&digest) || entry.size.is_some_and(|s| s != f.size) {
                    check.mismatched.push(f.name.clone());
                }
            }
            // sha384/sha512 lines: the size is still checked.
            Some(_) => {
                if entry.size.is_some_and(|s| s != f.size) {
                    check.mismatched.push(f.name.clone());
                }
            }
        }
    }
    for e in &wheel.record.entries {
        if !seen.contains(e.path.as_str()) {
            check.missing.push(e.path.clone());
        }
    }
    let loc = wheel.member_location(&record_path);
    for (list, what) in [
        (&check.mismatched, "hash or size differs from RECORD"),
        (&check.unlisted, "member is not listed in RECORD"),
        (&check.unhashed, "RECORD lists the member without a hash"),
    ] {
        for name in list {
            diags.push(
                Diagnostic::new(Severity::Warning, &wheel.member_location(name), what)
                    .with_hint("installers reject wheels whose RECORD does not match; rebuild the wheel or regenerate RECORD"),
            );
        }
    }
    for name in &check.missing {
        diags.push(Diagnostic::new(
            Severity::Warning,
            &loc,
            format!("RECORD lists `{name}`, which is not in the archive"),
        ));
    }
    check
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn a_member_counts_as_it_streams_and_exactly_its_size_once() {
        let bar = crate::progress::Counter::default();
        {
            let p = MemberProgress::new(Some(&bar), 10);
            p.add(4);
            assert_eq!(bar.position(), 4);
            p.add(4);
            assert_eq!(bar.position(), 8);
            // A stream that claims more than the member's size never counts past it.
            p.add(5);
            assert_eq!(bar.position(), 10);
        }
        assert_eq!(bar.position(), 10);
        {
            // A member that stopped early (or was never streamed) counts the rest when done.
            let p = MemberProgress::new(Some(&bar), 7);
            p.add(3);
            assert_eq!(bar.position(), 13);
        }
        assert_eq!(bar.position(), 17);
        drop(MemberProgress::new(None, 5));
    }

    /// While a member is still being worked on (its bytes just inflated, `work` not yet
    /// returned) its bytes are already on the bar: before, the bar moved only once a member
    /// was done, so one large member left it at 0 for the whole inflate.
    #[test]
    fn inspecting_counts_bytes_before_the_member_is_done() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "fixtures/wheels/slimdemo-0.1.0-cp38-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        );
        let wheel = Wheel::open(&path, &crate::wheel::Limits::default()).unwrap();
        let total: u64 = wheel.archive.members().iter().map(|m| m.size).sum();
        let bar = crate::progress::Counter::default();
        bar.set_length(total);
        let budget = Budget::new(u64::MAX);
        let seen: std::sync::Mutex<Vec<(String, u64, u64)>> = Default::default();
        let work = |f: &MemberFacts, _k: Kept| {
            seen.lock()
                .unwrap()
                .push((f.name.clone(), f.size, bar.position()));
            None::<()>
        };
        let opts = InspectOptions {
            progress: Some(&bar),
            ..InspectOptions::default()
        };
        // One worker: members go one after the other, the largest first.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| inspect_wheel_with(&wheel, opts, &budget, &work));
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        // The largest member is inspected first: the bar holds exactly its bytes.
        let (name, size, at) = &seen[0];
        assert_eq!(
            (name.as_str(), *at),
            ("slimdemo.libs/libcublas-d368dffb.so.12", *size)
        );
        for (name, size, at) in &seen {
            assert!(at >= size, "{name}: {at} counted of its {size} bytes");
        }
        assert_eq!(bar.position(), total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, size: u64, is_dir: bool) -> Member {
        Member {
            name: name.to_string(),
            method: crate::wheel::zip::Method::Stored,
            flags: 0,
            crc32: 0,
            compressed_size: size,
            size,
            local_header_offset: 0,
            data_offset: 0,
            unix_mode: None,
            dos_time: 0,
            dos_date: 0,
            is_dir,
            is_symlink: false,
            problem: None,
        }
    }

    /// Every fixture and hostile wheel gives the same facts, diagnostics, hashes and block
    /// marks when every host ELF member is held in parts with every section left out that can
    /// be, as when it is held whole; and a member read whole again for the work is exactly
    /// the archive's bytes.
    #[test]
    fn members_held_in_parts_give_the_facts_of_whole_ones() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut wheels: Vec<std::path::PathBuf> = ["wheels", "hostile"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        wheels.sort();
        let budget = Budget::new(u64::MAX);
        let parts = InspectOptions {
            sparse: Sparse::EVERYTHING,
            ..InspectOptions::default()
        };
        let mut compared = 0;
        for path in &wheels {
            let Ok(wheel) = Wheel::open(path, &crate::wheel::Limits::default()) else {
                continue;
            };
            let key = |f: &WheelFacts| {
                let extra: Vec<_> = f
                    .members
                    .iter()
                    .map(|m| (m.sha256, m.block_marks.clone()))
                    .collect();
                (serde_json::to_string(f).unwrap(), extra)
            };
            let a = inspect_wheel(&wheel, InspectOptions::default(), &budget);
            let b = inspect_wheel(&wheel, parts, &budget);
            assert!(key(&a) == key(&b), "{}", path.display());
            let work = |f: &MemberFacts, k: Kept| {
                let m = wheel.archive.member(&f.name).unwrap();
                Some(wheel.archive.read(m).is_ok_and(|d| d == k.bytes))
            };
            // Under a budget too small to hold them whole, members are read in parts and made
            // whole for the work.
            let small = Budget::new(1);
            let (_, same) = inspect_wheel_with(&wheel, parts, &small, &work);
            assert!(same.iter().flatten().all(|&s| s), "{}", path.display());
            compared += 1;
        }
        assert!(compared > 60, "{compared} wheels");
    }

    /// A work that reads CUDA sections itself gets a member held in parts with exactly those
    /// left out: zero in its bytes, read back from the archive as they are, and checked with
    /// the rest against the archive's CRC (which a changed byte fails).
    #[test]
    fn cuda_sections_left_out_read_back_and_check() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wheels");
        let path = root.join("cudafix-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl");
        let wheel = Wheel::open(&path, &crate::wheel::Limits::default()).unwrap();
        let opts = InspectOptions {
            sparse: Sparse::EVERYTHING,
            cuda_apart: true,
            ..InspectOptions::default()
        };
        let budget = Budget::new(1);
        let work = |f: &MemberFacts, mut k: Kept| {
            let a = k.apart.take()?;
            let m = wheel.archive.member(&f.name).unwrap();
            let whole = wheel.archive.read(m).unwrap();
            let info = f.host_elf().unwrap();
            let cuda: Vec<(u64, u64)> = info
                .sections
                .iter()
                .filter(|s| crate::device::CUDA_SECTIONS.contains(&s.name.as_str()))
                .map(|s| (s.offset, s.offset + s.size))
                .collect();
            assert_eq!(a.holes, cuda, "{}", f.name);
            let r = a.reader(&wheel, m);
            for &(x, y) in &a.holes {
                let (x, y) = (x as usize, y as usize);
                assert!(k.bytes[x..y].iter().all(|&b| b == 0), "{}", f.name);
                // In two reads, the second going on from the first.
                let mut got = vec![0u8; y - x];
                let half = got.len() / 2;
                r.read(x as u64, &mut got[..half]).unwrap();
                r.read((x + half) as u64, &mut got[half..]).unwrap();
                assert!(got == whole[x..y], "{}", f.name);
            }
            let outside = (0..whole.len())
                .find(|&i| {
                    !a.holes
                        .iter()
                        .any(|&(x, y)| x as usize <= i && i < y as usize)
                })
                .unwrap();
            assert_eq!(k.bytes[outside], whole[outside]);
            let checked = r.check(&k.bytes).is_ok();
            k.bytes[outside] ^= 1;
            let caught = matches!(r.check(&k.bytes), Err(ZipError::Crc { .. }));
            // A hole never read is read for the check.
            let fresh = a.reader(&wheel, m);
            k.bytes[outside] ^= 1;
            Some(checked && caught && fresh.check(&k.bytes).is_ok())
        };
        let (_, done) = inspect_wheel_with(&wheel, opts, &budget, &work);
        let done: Vec<bool> = done.into_iter().flatten().collect();
        assert!(
            done.len() >= 5,
            "{} members had sections left out",
            done.len()
        );
        assert!(done.iter().all(|&ok| ok));
    }

    #[test]
    fn pending_is_the_largest_reservation_not_yet_streamed() {
        let members = [
            member("big.so", 800, false),
            member("dir/", 5000, true),
            member("mid.so", 400, false),
            member("small.py", 10, false),
        ];
        let opts = InspectOptions {
            copies: 2,
            ..InspectOptions::default()
        };
        let p = Pending::new(&members, opts);
        // The largest is done: the next largest, times the copies, is still to come (folders
        // hold nothing).
        assert_eq!(p.done(0), 800);
        // Done out of order: the middle one still counts until it has streamed.
        assert_eq!(p.done(3), 800);
        assert_eq!(p.done(2), 0);
        // A pass that describes nothing holds nothing.
        let hash_only = InspectOptions {
            describe: false,
            ..opts
        };
        assert_eq!(Pending::new(&members, hash_only).done(3), 0);
    }
}
