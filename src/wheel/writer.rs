//! Writes wheels deterministically.
//!
//! Members are written in the order the caller gives (the caller sorts, `.dist-info` last,
//! `RECORD` last) with fixed timestamps and normalized modes. Untouched members are copied raw
//! (their compressed bytes as they are, no inflate/deflate), file to file through a handle of
//! the writer's own, so `std::io::copy` lets the kernel move them (`copy_file_range`) instead
//! of passing them through a user-space buffer; new and changed members arrive already
//! compressed, in memory or in a spill file (see [`deflate`](super::deflate)). No data descriptors are written: the
//! writer knows every size before it writes a header, which is what PyPI requires.
//!
//! Output goes to a temporary file in the target folder. [`WheelWriter::finish`] gives a
//! [`PendingFile`]; [`commit`] renames a whole set into place at once, so a failure before
//! that leaves nothing behind.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::deflate::Compressed;
use super::zip::{Member, Method, ZipArchive, ZipError};
use crate::error::Error;

/// An MS-DOS timestamp as zip headers hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipTime {
    pub date: u16,
    pub time: u16,
}

impl ZipTime {
    /// 1980-01-01 00:00:00, the earliest time a zip can hold.
    pub const EPOCH: ZipTime = ZipTime {
        date: (1 << 5) | 1,
        time: 0,
    };

    /// The time for `secs` seconds since the Unix epoch (UTC), clamped to 1980..=2107.
    pub fn from_unix(secs: i64) -> ZipTime {
        let min = 315_532_800; // 1980-01-01
        let max = 4_354_819_198; // 2107-12-31 23:59:58
        let secs = secs.clamp(min, max);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        ZipTime {
            date: (((year - 1980) << 9) | (month << 5) | day) as u16,
            time: ((h << 11) | (m << 5) | (s / 2)) as u16,
        }
    }

    /// `SOURCE_DATE_EPOCH` if set and valid, else 1980-01-01.
    pub fn from_env() -> Result<ZipTime, Error> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<i64>()
                .map(ZipTime::from_unix)
                .map_err(|_| {
                    Error::Usage(format!(
                        "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
                    ))
                }),
            _ => Ok(ZipTime::EPOCH),
        }
    }
}

/// Unix mode for a member: 0o644, or 0o755 when the source was executable.
pub fn normalized_mode(source_mode: Option<u32>) -> u32 {
    if source_mode.is_some_and(|m| m & 0o111 != 0) {
        0o100755
    } else {
        0o100644
    }
}

struct CentralEntry {
    name: String,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    offset: u64,
    mode: u32,
}

pub struct WheelWriter {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
    out: BufWriter<File>,
    offset: u64,
    entries: Vec<CentralEntry>,
    names: HashSet<String>,
    time: ZipTime,
    /// Handles on the archives members are copied from, one per archive path.
    sources: Vec<(PathBuf, Option<File>)>,
}

/// A finished wheel in a temporary file next to its target, not yet renamed into place.
#[derive(Debug)]
pub struct PendingFile {
    pub target: PathBuf,
    tmp: tempfile::TempPath,
    pub size: u64,
}

impl PendingFile {
    /// Where the finished bytes are until [`commit`] renames them.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
}

fn werr(target: &Path, e: io::Error) -> Error {
    Error::io("write", target, e)
}

impl WheelWriter {
    /// Starts a wheel that will become `target` (created in `target`'s folder).
    pub fn create(target: &Path, time: ZipTime) -> Result<WheelWriter, Error> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".wheelslim-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        let file = tmp.as_file().try_clone().map_err(|e| werr(target, e))?;
        Ok(WheelWriter {
            target: target.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
            entries: Vec::new(),
            names: HashSet::new(),
            time,
            sources: Vec::new(),
        })
    }

    fn begin(&mut self, name: &str) -> Result<(), Error> {
        if !self.names.insert(name.to_string()) {
            return Err(Error::refused(
                format!(
                    "internal error: `{name}` would be written twice into `{}`",
                    self.target.display()
                ),
                None,
            ));
        }
        Ok(())
    }

    fn write_local_header(
        &mut self,
        name: &str,
        method: u16,
        crc32: u32,
        csize: u64,
        size: u64,
    ) -> io::Result<()> {
        let zip64 = csize >= 0xFFFF_FFFF || size >= 0xFFFF_FFFF;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
        let flags: u16 = if name.is_ascii() { 0 } else { 0x0800 };
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&method.to_le_bytes());
        h.extend_from_slice(&self.time.time.to_le_bytes());
        h.extend_from_slice(&self.time.date.to_le_bytes());
        h.extend_from_slice(&crc32.to_le_bytes());
        if zip64 {
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h.extend_from_slice(&u32::MAX.to_le_bytes());
        } else {
            h.extend_from_slice(&(csize as u32).to_le_bytes());
            h.extend_from_slice(&(size as u32).to_le_bytes());
        }
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if zip64 { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&csize.to_le_bytes());
        }
        self.out.write_all(&h)?;
        self.offset += h.len() as u64;
        Ok(())
    }

    /// Adds a member from already-compressed bytes.
    pub fn add_compressed(&mut self, name: &str, c: &Compressed, mode: u32) -> Result<(), Error> {
        self.begin(name)?;
        let offset = self.offset;
        let method = if c.deflated { 8 } else { 0 };
        let target = self.target.clone();
        let len = c.stored_len();
        self.write_local_header(name, method, c.crc32, len, c.size)
            .and_then(|()| c.write_to(&mut self.out))
            .map_err(|e| werr(&target, e))?;
        self.offset += len;
        self.entries.push(CentralEntry {
            name: name.to_string(),
            method,
            crc32: c.crc32,
            compressed_size: len,
            size: c.size,
            offset,
            mode,
        });
        Ok(())
    }

    /// Copies a member's compressed bytes from another archive without inflating them.
    pub fn add_raw(
        &mut self,
        name: &str,
        from: &ZipArchive,
        member: &Member,
        mode: u32,
    ) -> Result<(), Error> {
        self.begin(name)?;
        let method = match member.method {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Other(m) => {
                return Err(Error::Zip {
                    location: crate::error::Location::member(from.path(), &member.name),
                    err: ZipError::UnsupportedMethod(m),
                });
            }
        };
        let mut reader = from.raw_reader(member).map_err(|err| Error::Zip {
            location: crate::error::Location::member(from.path(), &member.name),
            err,
        })?;
        let offset = self.offset;
        let target = self.target.clone();
        self.write_local_header(
            name,
            method,
            member.crc32,
            member.compressed_size,
            member.size,
        )
        .map_err(|e| werr(&target, e))?;
        let copy_err = |e| Error::io("copy a member out of", from.path().to_path_buf(), e);
        let copied = match source(&mut self.sources, from) {
            // File to file: the kernel copies the bytes (copy_file_range), with no pass
            // through a user-space buffer.
            Some(f) => {
                let mut f: &File = f;
                f.seek(SeekFrom::Start(member.data_offset))
                    .map_err(copy_err)?;
                io::copy(&mut f.take(member.compressed_size), &mut self.out).map_err(copy_err)?
            }
            None => io::copy(&mut reader, &mut self.out).map_err(copy_err)?,
        };
        if copied != member.compressed_size {
            return Err(copy_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive shrank while being read",
            )));
        }
        self.offset += copied;
        self.entries.push(CentralEntry {
            name: name.to_string(),
            method,
            crc32: member.crc32,
            compressed_size: member.compressed_size,
            size: member.size,
            offset,
            mode,
        });
        Ok(())
    }

    /// Writes the central directory and returns the finished temporary file.
    pub fn finish(mut self) -> Result<PendingFile, Error> {
        let target = self.target.clone();
        self.write_central().map_err(|e| werr(&target, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| werr(&target, e.into_error()))?;
        // Temporary files are created 0600; a finished wheel is an ordinary readable file.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| werr(&target, e))?;
        file.sync_all().map_err(|e| werr(&target, e))?;
        Ok(PendingFile {
            target,
            size: self.offset,
            tmp: self.tmp.into_temp_path(),
        })
    }

    fn write_central(&mut self) -> io::Result<()> {
        let cd_start = self.offset;
        let mut cd = Vec::new();
        for e in &self.entries {
            let zip64_sizes = e.compressed_size >= 0xFFFF_FFFF || e.size >= 0xFFFF_FFFF;
            let zip64_off = e.offset >= 0xFFFF_FFFF;
            let mut extra = Vec::new();
            if zip64_sizes || zip64_off {
                let mut body = Vec::new();
                if zip64_sizes {
                    body.extend_from_slice(&e.size.to_le_bytes());
                    body.extend_from_slice(&e.compressed_size.to_le_bytes());
                }
                if zip64_off {
                    body.extend_from_slice(&e.offset.to_le_bytes());
                }
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(body.len() as u16).to_le_bytes());
                extra.extend_from_slice(&body);
            }
            let needs64 = zip64_sizes || zip64_off;
            cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            cd.extend_from_slice(&(0x0300u16 | if needs64 { 45 } else { 20 }).to_le_bytes());
            cd.extend_from_slice(&(if needs64 { 45u16 } else { 20 }).to_le_bytes());
            let flags: u16 = if e.name.is_ascii() { 0 } else { 0x0800 };
            cd.extend_from_slice(&flags.to_le_bytes());
            cd.extend_from_slice(&e.method.to_le_bytes());
            cd.extend_from_slice(&self.time.time.to_le_bytes());
            cd.extend_from_slice(&self.time.date.to_le_bytes());
            cd.extend_from_slice(&e.crc32.to_le_bytes());
            let sat = |v: u64, big: bool| if big { u32::MAX } else { v as u32 };
            cd.extend_from_slice(&sat(e.compressed_size, zip64_sizes).to_le_bytes());
            cd.extend_from_slice(&sat(e.size, zip64_sizes).to_le_bytes());
            cd.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes()); // comment
            cd.extend_from_slice(&0u16.to_le_bytes()); // disk
            cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            cd.extend_from_slice(&(e.mode << 16).to_le_bytes());
            cd.extend_from_slice(&sat(e.offset, zip64_off).to_le_bytes());
            cd.extend_from_slice(e.name.as_bytes());
            cd.extend_from_slice(&extra);
        }
        self.out.write_all(&cd)?;
        self.offset += cd.len() as u64;
        let count = self.entries.len() as u64;
        let cd_size = cd.len() as u64;
        let need64 = count >= 0xFFFF || cd_size >= 0xFFFF_FFFF || cd_start >= 0xFFFF_FFFF;
        let mut tail = Vec::new();
        if need64 {
            let z64_offset = self.offset;
            tail.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            tail.extend_from_slice(&44u64.to_le_bytes());
            tail.extend_from_slice(&0x032du16.to_le_bytes());
            tail.extend_from_slice(&45u16.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&count.to_le_bytes());
            tail.extend_from_slice(&cd_size.to_le_bytes());
            tail.extend_from_slice(&cd_start.to_le_bytes());
            tail.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            tail.extend_from_slice(&0u32.to_le_bytes());
            tail.extend_from_slice(&z64_offset.to_le_bytes());
            tail.extend_from_slice(&1u32.to_le_bytes());
        }
        let sat16 = |v: u64| if need64 { 0xFFFF } else { v as u16 };
        let sat32 = |v: u64| if need64 { u32::MAX } else { v as u32 };
        tail.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        tail.extend_from_slice(&sat16(count).to_le_bytes());
        tail.extend_from_slice(&sat16(count).to_le_bytes());
        tail.extend_from_slice(&sat32(cd_size).to_le_bytes());
        tail.extend_from_slice(&sat32(cd_start).to_le_bytes());
        tail.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&tail)?;
        self.offset += tail.len() as u64;
        self.out.flush()
    }
}

/// A writer's own handle on `from`'s file (see [`ZipArchive::reopen`]), opened once per
/// archive; `None` when it cannot be had, and the bytes are then copied through positioned
/// reads.
fn source<'s>(
    sources: &'s mut Vec<(PathBuf, Option<File>)>,
    from: &ZipArchive,
) -> Option<&'s File> {
    let i = match sources.iter().position(|(p, _)| p == from.path()) {
        Some(i) => i,
        None => {
            sources.push((from.path().to_path_buf(), from.reopen().ok()));
            sources.len() - 1
        }
    };
    sources[i].1.as_ref()
}

/// Renames every pending file into place. If one rename fails, the ones already renamed are
/// removed again and the rest are deleted, so a failed run leaves no output behind.
pub fn commit(files: Vec<PendingFile>) -> Result<Vec<PathBuf>, Error> {
    let mut done: Vec<PathBuf> = Vec::new();
    let mut iter = files.into_iter();
    while let Some(p) = iter.next() {
        let target = p.target.clone();
        if let Err(e) = p.tmp.persist(&target) {
            for d in &done {
                let _ = std::fs::remove_file(d);
            }
            drop(iter); // remaining temporary files delete themselves
            return Err(Error::io("rename the finished wheel to", target, e.error));
        }
        done.push(target);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_from_unix() {
        // 2024-02-29 13:37:42 UTC
        let t = ZipTime::from_unix(1_709_213_862);
        assert_eq!(t.date >> 9, 2024 - 1980);
        assert_eq!((t.date >> 5) & 0xF, 2);
        assert_eq!(t.date & 0x1F, 29);
        assert_eq!(t.time >> 11, 13);
        assert_eq!((t.time >> 5) & 0x3F, 37);
        assert_eq!((t.time & 0x1F) * 2, 42);
        assert_eq!(ZipTime::from_unix(0), ZipTime::EPOCH);
    }
}
