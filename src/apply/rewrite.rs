//! The tail every rewritten member goes through, in `split` and in `trim` alike: work out
//! which of the input's compressed blocks the new bytes can reuse, let the input go, read the
//! new bytes back, and compress them (into a spill file in the output folder when large).
//!
//! The order is what keeps the peak memory down: the input is dropped right after
//! [`Splice::prepare`] and before anything else is done with the output, so the input and the
//! compressed output are never held together.

use std::path::Path;

use crate::changes::Changes;
use crate::elf::ElfInfo;
use crate::error::Error;
use crate::output::sha2_digest;
use crate::wheel::deflate::{self, Compressed};
use crate::wheel::splice::{Bytes, Original, Splice};
use crate::wheel::zip::{BlockMark, Member, ZipArchive};

/// The input a rewritten member was made from, owned here so that it can go as soon as the
/// output knows what it may reuse of it (when it is held whole: an input edited in its own
/// buffer costs only its changes).
pub(crate) struct Input<'a> {
    pub archive: &'a ZipArchive,
    pub member: &'a Member,
    /// Its uncompressed bytes.
    pub data: Held,
    /// Where its deflate blocks begin.
    pub marks: Vec<BlockMark>,
}

/// How a rewrite holds the bytes it started from.
pub(crate) enum Held {
    /// Whole, in a buffer of their own beside the output.
    Whole(Vec<u8>),
    /// Whole but for these ranges, left zero ([`crate::facts::Kept::apart`]): never reused.
    Holed(Vec<u8>, Vec<(u64, u64)>),
    /// In the output's buffer: the output was made by editing them there, and these are the
    /// changes, from which the splice planner reads the input's bytes back.
    Edited(Changes),
}

impl Held {
    /// `data` with `holes` left zero: [`Held::Holed`], or [`Held::Whole`] when there are none.
    pub(crate) fn holed(data: Vec<u8>, holes: Vec<(u64, u64)>) -> Held {
        if holes.is_empty() {
            Held::Whole(data)
        } else {
            Held::Holed(data, holes)
        }
    }
}

/// A rewritten member, compressed and described.
pub(crate) struct Encoded {
    pub compressed: Compressed,
    pub sha256: [u8; 32],
    pub info: Option<ElfInfo>,
    /// Uncompressed bytes covered by reused input blocks.
    pub reused: u64,
}

/// Compresses the rewritten bytes `out`. With an `input`, its unchanged blocks are reused
/// (`shifts`: offsets at which `out` may hold the input's bytes besides its own moves); without
/// one, `out` is deflated afresh. `inspect` reads `out` back (each command has its own rule for
/// what must read back as a host object) once the input is gone. Large outputs go to a spill
/// file in `spill` when one is given.
pub(crate) fn encode(
    out: &[u8],
    input: Option<Input<'_>>,
    shifts: &[i64],
    spill: Option<&Path>,
    inspect: impl FnOnce(&[u8]) -> Result<Option<ElfInfo>, Error>,
) -> Result<Encoded, Error> {
    // `input` moves into the closure and is dropped when it returns: writing needs only the
    // output and the input's compressed bytes.
    let splice = input.map(|input| {
        let orig = Original {
            archive: input.archive,
            member: input.member,
            data: match &input.data {
                Held::Whole(d) => Bytes::Whole(d),
                Held::Edited(changes) => Bytes::Edited { out, changes },
                Held::Holed(data, holes) => Bytes::Holed {
                    data,
                    holes,
                    known: &[],
                },
            },
            marks: &input.marks,
        };
        Splice::prepare(out, &orig, shifts)
    });
    finish(out, splice, spill, inspect)
}

/// [`encode`] for a new member made of an input's bytes that the caller still holds (the
/// containers a companion takes from its host unchanged): `from`'s compressed blocks are
/// reused where `out` holds its bytes at one of `shifts`; without it, `out` is deflated
/// afresh.
pub(crate) fn encode_from(
    out: &[u8],
    from: Option<&Original<'_, '_>>,
    shifts: &[i64],
    spill: Option<&Path>,
    inspect: impl FnOnce(&[u8]) -> Result<Option<ElfInfo>, Error>,
) -> Result<Encoded, Error> {
    let splice = from.map(|orig| Splice::prepare(out, orig, shifts));
    finish(out, splice, spill, inspect)
}

/// The rest of [`encode`]: read the output back, then compress it (reusing what `splice`
/// found).
fn finish(
    out: &[u8],
    splice: Option<Splice<'_>>,
    spill: Option<&Path>,
    inspect: impl FnOnce(&[u8]) -> Result<Option<ElfInfo>, Error>,
) -> Result<Encoded, Error> {
    let info = inspect(out)?;
    let sha256 = sha2_digest(out);
    let io_err = |e| {
        let dir = spill.map(Path::to_path_buf).unwrap_or_default();
        Error::io("write a temporary file in", dir, e)
    };
    let level = deflate::DEFAULT_LEVEL;
    let (compressed, reused) = match (splice, spill) {
        (Some(splice), spill) => {
            let (c, stats) = splice.compress(out, level, spill).map_err(io_err)?;
            (c, stats.reused)
        }
        (None, Some(dir)) => (
            deflate::compress_spilled(out, level, dir).map_err(io_err)?,
            0,
        ),
        (None, None) => (deflate::compress(out, level), 0),
    };
    Ok(Encoded {
        compressed,
        sha256,
        info,
        reused,
    })
}
