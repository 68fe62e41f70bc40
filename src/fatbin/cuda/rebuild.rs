//! Rebuilding containers from the entries (and concat members) a selection keeps.
//!
//! Kept entries are copied verbatim: header and payload bytes exactly as they were, so nothing
//! is decompressed unless a concat group loses some of its members. Only the container's size
//! field changes.

use super::{
    Compression, Container, ENTRY_HEADER_MIN, Entry, EntryKind, parse_container, parse_entry,
};
use crate::fatbin::FatbinError;
use crate::fatbin::bytes::{align_up, le_u32, slice, u64_of};

/// zstd level for recompressed concat groups: close to the toolchain's ratio at a speed that
/// keeps trimming a multi-GB wheel practical.
const ZSTD_LEVEL: i32 = 9;

/// What to do with one entry of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryEdit {
    /// Copy the entry verbatim.
    Keep,
    /// Leave the entry out.
    Drop,
    /// A concat group keeping only the members flagged `true`: all of them (vacuously so for
    /// an entry without members) means [`EntryEdit::Keep`], none of a group's members means
    /// [`EntryEdit::Drop`], anything else rebuilds the group.
    KeepMembers(Vec<bool>),
}

/// A new container holding the entries flagged in `keep`, copied verbatim, behind the original
/// container header with only its size field patched. Keeping every entry gives back the
/// original bytes; keeping none gives a header-only container.
pub fn rebuild_container(
    section: &[u8],
    c: &Container,
    keep: &[bool],
) -> Result<Vec<u8>, FatbinError> {
    let edits: Vec<EntryEdit> = keep
        .iter()
        .map(|&k| if k { EntryEdit::Keep } else { EntryEdit::Drop })
        .collect();
    rebuild_container_with(section, c, &edits)
}

/// [`rebuild_container`] with per-entry edits, including partial concat groups.
pub fn rebuild_container_with(
    section: &[u8],
    c: &Container,
    edits: &[EntryEdit],
) -> Result<Vec<u8>, FatbinError> {
    if edits.len() != c.entries.len() {
        return Err(FatbinError::KeepLength {
            what: "container",
            expected: c.entries.len(),
            actual: edits.len(),
        });
    }
    // The container must still describe these bytes; a re-parse is cheap next to the copy.
    if parse_container(section, c.offset)? != *c {
        return Err(FatbinError::Stale {
            what: "fatbin container",
            offset: c.offset,
            problem: "it parses differently",
        });
    }
    let header = slice(section, c.offset, u64_of(c.header_size), "fatbin container")?;
    let mut out = header.to_vec();
    for (e, edit) in c.entries.iter().zip(edits) {
        match edit {
            EntryEdit::Keep => out.extend_from_slice(e.bytes(section)?),
            EntryEdit::Drop => {}
            EntryEdit::KeepMembers(flags) => {
                if flags.len() != e.members.len() {
                    return Err(FatbinError::KeepLength {
                        what: "concat group",
                        expected: e.members.len(),
                        actual: flags.len(),
                    });
                }
                if flags.iter().all(|&k| k) {
                    // Every member, or an entry without members: verbatim.
                    out.extend_from_slice(e.bytes(section)?);
                } else if flags.iter().any(|&k| k) {
                    out.extend_from_slice(&rebuild_concat_entry(section, e, flags)?);
                }
            }
        }
    }
    let size = u64_of(out.len().saturating_sub(c.header_size));
    if let Some(field) = out.get_mut(8..16) {
        field.copy_from_slice(&size.to_le_bytes());
    }
    Ok(out)
}

fn put_u32(buf: &mut [u8], at: usize, value: u64, field: &'static str) -> Result<(), FatbinError> {
    let v = u32::try_from(value).map_err(|_| FatbinError::FieldOverflow {
        what: "concat group",
        field,
        value,
        max: u32::MAX.into(),
    })?;
    if let Some(dst) = buf.get_mut(at..at.saturating_add(4)) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    if let Some(dst) = buf.get_mut(at..at.saturating_add(8)) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// A concat group (kind 0x100) holding only the members flagged in `keep_members`.
///
/// The group is decompressed, the kept images are laid out again (in their original order,
/// 8-aligned), the member table is rebuilt with the new image offsets, the image is
/// recompressed with the group's algorithm, and the header's size fields (header size,
/// payload size, compressed and uncompressed size, member count, table size) are set to
/// match. Keeping every member returns the original bytes; keeping none is an error
/// ([`FatbinError::EmptyConcat`]): drop the whole entry instead.
pub fn rebuild_concat_entry(
    section: &[u8],
    e: &Entry,
    keep_members: &[bool],
) -> Result<Vec<u8>, FatbinError> {
    if e.kind != EntryKind::Concat {
        return Err(FatbinError::Stale {
            what: "fatbin entry",
            offset: e.offset,
            problem: "it is not a concat group",
        });
    }
    if keep_members.len() != e.members.len() {
        return Err(FatbinError::KeepLength {
            what: "concat group",
            expected: e.members.len(),
            actual: keep_members.len(),
        });
    }
    let original = e.bytes(section)?;
    if parse_entry(section, e.offset, e.offset.saturating_add(e.total_len()))? != *e {
        return Err(FatbinError::Stale {
            what: "fatbin entry",
            offset: e.offset,
            problem: "it parses differently",
        });
    }
    if keep_members.iter().all(|&k| k) {
        return Ok(original.to_vec());
    }
    if !keep_members.iter().any(|&k| k) {
        return Err(FatbinError::EmptyConcat { offset: e.offset });
    }
    let header = original.get(..e.header_size).unwrap_or(&[]);
    // The decompressed image and the new one built from it (at most as large) count against
    // the device-code budget while they are held, both reserved before either is allocated.
    let (image, _held) = super::decompress::decompress_entry_held(
        section,
        e,
        crate::fatbin::DEFAULT_DECOMPRESS_CAP,
        2,
    )?;

    // The new image and member table.
    let mut blob = Vec::new();
    let mut table = Vec::new();
    let mut kept = 0u64;
    for (m, _) in e.members.iter().zip(keep_members).filter(|(_, k)| **k) {
        let start = blob.len();
        let aligned = align_up(start, 8).unwrap_or(start);
        blob.resize(aligned, 0);
        let at = usize::try_from(m.offset).unwrap_or(usize::MAX);
        blob.extend_from_slice(slice(&image, at, m.size, "concat member image")?);
        let mut mh = slice(
            header,
            m.header_offset,
            u64_of(m.header_len),
            "concat member header",
        )?
        .to_vec();
        put_u32(&mut mh, 4, u64_of(aligned), "member offset")?;
        table.extend_from_slice(&mh);
        kept = kept.saturating_add(1);
    }

    // The options record is (count, record size, member headers); what surrounds it in the
    // header (an identifier, say) is kept, and an identifier after it moves with it.
    let rs = usize::try_from(le_u32(header, 20).unwrap_or(0)).unwrap_or(usize::MAX);
    let old_record_len =
        usize::try_from(le_u32(header, rs.saturating_add(4)).unwrap_or(0)).unwrap_or(usize::MAX);
    let old_record_end = rs.saturating_add(old_record_len);
    let before = header.get(ENTRY_HEADER_MIN..rs).unwrap_or(&[]);
    let after = header.get(old_record_end..).unwrap_or(&[]);
    let record_len = table.len().saturating_add(8);

    let mut new_header = header.get(..ENTRY_HEADER_MIN).unwrap_or(&[]).to_vec();
    new_header.extend_from_slice(before);
    let mut record = Vec::with_capacity(record_len);
    record.extend_from_slice(&[0; 8]);
    put_u32(&mut record, 0, kept, "member count")?;
    put_u32(&mut record, 4, u64_of(record_len), "record size")?;
    record.extend_from_slice(&table);
    new_header.extend_from_slice(&record);
    new_header.extend_from_slice(after);

    let id_offset = u64::from(le_u32(header, 32).unwrap_or(0));
    if id_offset != 0 && id_offset >= u64_of(old_record_end) {
        let moved = id_offset
            .saturating_sub(u64_of(old_record_len))
            .saturating_add(u64_of(record_len));
        put_u32(&mut new_header, 32, moved, "identifier offset")?;
    }

    let (payload, compressed_size, uncompressed_size) = recompress(e, blob)?;
    let padded = align_up(payload.len(), 8).unwrap_or(payload.len());
    let header_size = u64_of(new_header.len());
    put_u32(&mut new_header, 4, header_size, "header size")?;
    put_u64(&mut new_header, 8, u64_of(padded));
    put_u32(&mut new_header, 16, compressed_size, "compressed size")?;
    put_u64(&mut new_header, 56, uncompressed_size);

    let mut out = new_header;
    out.extend_from_slice(&payload);
    out.resize(
        out.len()
            .saturating_add(padded.saturating_sub(payload.len())),
        0,
    );
    // What is produced must parse back with the kept members.
    let check = |problem: String| FatbinError::RebuildCheck {
        what: "concat group",
        offset: e.offset,
        problem,
    };
    let again = parse_entry(&out, 0, out.len()).map_err(|err| check(err.to_string()))?;
    if u64_of(again.members.len()) != kept {
        return Err(check(format!(
            "it holds {} members, not {kept}",
            again.members.len()
        )));
    }
    Ok(out)
}

/// The rebuilt image compressed with the group's algorithm: (payload, compressed size,
/// uncompressed size), both sizes 0 for an uncompressed group.
fn recompress(e: &Entry, blob: Vec<u8>) -> Result<(Vec<u8>, u64, u64), FatbinError> {
    let (payload, compressed_size, uncompressed_size) = match e.compression {
        Compression::None => (blob, 0, 0),
        Compression::Zstd => {
            let z =
                zstd::bulk::compress(&blob, ZSTD_LEVEL).map_err(|err| FatbinError::Compress {
                    method: "zstd",
                    len: blob.len(),
                    reason: err.to_string(),
                })?;
            let n = u64_of(z.len());
            (z, n, u64_of(blob.len()))
        }
        Compression::Lz4 => {
            let z = lz4_flex::block::compress(&blob);
            let n = u64_of(z.len());
            (z, n, u64_of(blob.len()))
        }
        Compression::Unknown(flags) => {
            return Err(FatbinError::UnknownCompression {
                offset: e.offset,
                flags,
            });
        }
    };
    Ok((payload, compressed_size, uncompressed_size))
}
