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

use super::Location;
use super::deflate::Compressed;
use super::zip::{Member, Method, ZipArchive, ZipError};

/// What can stop a wheel from being written or put in place. The wheel layer needs nothing of
/// the crate's error; [`crate::Error`] takes each over with the same message and hint.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// `SOURCE_DATE_EPOCH` is set to something that is not a number.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds since 1970")]
    BadEpoch(String),
    #[error("cannot {action} `{}`: {err}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// A member that cannot be copied raw (an unknown method, an unreadable header).
    #[error("{location}: {err}")]
    Zip { location: Location, err: ZipError },
    /// The caller gave one member name twice (a bug in wheelslim).
    #[error("internal error: `{name}` would be written twice into `{}`", target.display())]
    WrittenTwice { name: String, target: PathBuf },
    /// The input wheel changed while its members were copied.
    #[error("{location}: {err}")]
    InputChanged { location: Location, err: io::Error },
    /// A target that must match (a runtime wheel) exists with other bytes.
    #[error(
        "`{}` already exists with other content than the wheel of that name this run made; \
         nothing was written",
        target.display()
    )]
    Differs { target: PathBuf },
}

impl WriteError {
    fn io(action: &'static str, path: impl Into<PathBuf>, err: io::Error) -> WriteError {
        WriteError::Io {
            action,
            path: path.into(),
            err,
        }
    }

    /// What the user can do about it, for the refusals.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            WriteError::InputChanged { .. } => Some(
                "the input wheel must not change while wheelslim runs (is a build still \
                 writing it?); nothing was written; run again once it is complete",
            ),
            WriteError::Differs { .. } => Some(
                "another run wrote a different wheel of the same name there; remove it if nothing needs it, or write to another folder",
            ),
            _ => None,
        }
    }
}

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
    pub fn from_env() -> Result<ZipTime, WriteError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<i64>()
                .map(ZipTime::from_unix)
                .map_err(|_| WriteError::BadEpoch(v.clone())),
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
    tmp: super::temp::TempFile,
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
    pub size: u64,
    /// What [`commit`] does when the target already exists.
    pub existing: Existing,
    // Dropped in this order: the file is deleted, its lock let go, then it leaves the list of
    // files an interrupt removes.
    tmp: tempfile::TempPath,
    _lock: File,
    _registered: super::temp::Registered,
}

/// What [`commit`] does with a file already at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (restored if the commit fails).
    Replace,
    /// Keep it if it holds the same bytes (nothing is rewritten), refuse the commit if not.
    MustMatch,
}

impl PendingFile {
    /// Where the finished bytes are until [`commit`] renames them.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
}

fn werr(target: &Path, e: io::Error) -> WriteError {
    WriteError::io("write", target, e)
}

impl WheelWriter {
    /// Starts a wheel that will become `target` (created in `target`'s folder).
    pub fn create(target: &Path, time: ZipTime) -> Result<WheelWriter, WriteError> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = super::temp::create_in(dir)
            .map_err(|e| WriteError::io("create a temporary file in", dir, e))?;
        let file = tmp
            .file
            .as_file()
            .try_clone()
            .map_err(|e| werr(target, e))?;
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

    fn begin(&mut self, name: &str) -> Result<(), WriteError> {
        if !self.names.insert(name.to_string()) {
            return Err(WriteError::WrittenTwice {
                name: name.to_string(),
                target: self.target.clone(),
            });
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
    pub fn add_compressed(
        &mut self,
        name: &str,
        c: &Compressed,
        mode: u32,
    ) -> Result<(), WriteError> {
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
    ) -> Result<(), WriteError> {
        self.begin(name)?;
        let method = match member.method {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Other(m) => {
                return Err(WriteError::Zip {
                    location: Location::member(from.path(), &member.name),
                    err: ZipError::UnsupportedMethod(m),
                });
            }
        };
        let mut reader = from.raw_reader(member).map_err(|err| WriteError::Zip {
            location: Location::member(from.path(), &member.name),
            err,
        })?;
        test_pause();
        // The bytes go out as they are, under the CRC-32 and sizes read when the input was
        // opened, and RECORD carries the hashes computed then: an input written to since
        // would give a member that fails its CRC. Checked before and after the copy, which is
        // the last time this member's bytes are read.
        let changed = |err: io::Error| WriteError::InputChanged {
            location: Location::member(from.path(), &member.name),
            err,
        };
        from.check_unchanged().map_err(changed)?;
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
        let copy_err = |e| WriteError::io("copy a member out of", from.path().to_path_buf(), e);
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
            from.check_unchanged().map_err(changed)?;
            return Err(copy_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive shrank while being read",
            )));
        }
        from.check_unchanged().map_err(changed)?;
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
    pub fn finish(mut self) -> Result<PendingFile, WriteError> {
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
        let super::temp::TempFile {
            file: tmp,
            registered,
        } = self.tmp;
        Ok(PendingFile {
            target,
            size: self.offset,
            existing: Existing::Replace,
            tmp: tmp.into_temp_path(),
            // The writer's own handle keeps the lock the temporary file was created with.
            _lock: file,
            _registered: registered,
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

/// For wheelslim's own tests only: when `WHEELSLIM_TEST_PAUSE_BEFORE_COPY` names a file, the
/// first raw copy of the run creates that file and waits until it is removed, so a test can
/// act (send a signal, change an input) at a known point while an output is being written.
fn test_pause() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    let Some(marker) = std::env::var_os("WHEELSLIM_TEST_PAUSE_BEFORE_COPY") else {
        return;
    };
    if DONE.swap(true, Ordering::SeqCst) || std::fs::write(&marker, b"paused").is_err() {
        return;
    }
    while Path::new(&marker).exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// How to take back one step of a commit.
enum Undo {
    /// The target did not exist: remove what was put there.
    Remove(PathBuf),
    /// The target was moved aside (or linked) to `backup`: put it back.
    Restore { backup: PathBuf, target: PathBuf },
}

/// Renames every pending file into place, all or nothing, including what was there before:
/// a file already at a target is first hard-linked to a backup name in the same folder (so
/// the target never goes missing; moved there by rename where links are not supported); if a
/// later step fails, every step is taken back in reverse order (backups renamed over the
/// targets, new files removed) and the remaining temporary files are deleted. Backups are
/// removed once every file is in place. A target that is a folder is never moved: the rename
/// over it fails and the commit is taken back. An interrupt waits until the commit is done or
/// taken back (see [`super::temp`]).
///
/// Files marked [`Existing::MustMatch`] are put in place only where the target does not exist
/// (atomically: no other process can slip one in between); where it exists with the same
/// bytes it is kept as it is, and where it differs the commit fails.
pub fn commit(files: Vec<PendingFile>) -> Result<Vec<PathBuf>, WriteError> {
    let _guard = super::temp::commit_guard();
    let mut undo: Vec<Undo> = Vec::new();
    let mut done: Vec<PathBuf> = Vec::new();
    let mut iter = files.into_iter();
    while let Some(p) = iter.next() {
        let target = p.target.clone();
        match commit_one(p) {
            Ok(step) => {
                undo.extend(step);
                done.push(target);
            }
            Err(e) => {
                drop(iter); // the remaining temporary files delete themselves
                roll_back(undo);
                return Err(e);
            }
        }
    }
    super::temp::note_committed();
    for u in undo {
        if let Undo::Restore { backup, .. } = u {
            let _ = std::fs::remove_file(backup);
        }
    }
    Ok(done)
}

fn roll_back(undo: Vec<Undo>) {
    for u in undo.into_iter().rev() {
        match u {
            Undo::Remove(target) => {
                let _ = std::fs::remove_file(target);
            }
            Undo::Restore { backup, target } => {
                let _ = std::fs::rename(backup, target);
            }
        }
    }
}

fn commit_one(p: PendingFile) -> Result<Option<Undo>, WriteError> {
    let PendingFile {
        target,
        existing,
        tmp,
        ..
    } = p;
    let rename_err = |target: &Path, e| WriteError::io("rename the finished wheel to", target, e);
    if existing == Existing::MustMatch {
        return match tmp.persist_noclobber(&target) {
            Ok(()) => Ok(Some(Undo::Remove(target))),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                if same_bytes(&e.path, &target).unwrap_or(false) {
                    Ok(None) // the temporary file deletes itself
                } else {
                    Err(WriteError::Differs { target })
                }
            }
            Err(e) => Err(rename_err(&target, e.error)),
        };
    }
    let backup = match std::fs::symlink_metadata(&target) {
        Ok(m) if !m.is_dir() => Some(back_up(&target)?),
        _ => None,
    };
    match tmp.persist(&target) {
        Ok(()) => Ok(Some(match backup {
            Some((backup, _)) => Undo::Restore { backup, target },
            None => Undo::Remove(target),
        })),
        Err(e) => {
            // This step is taken back here; the caller takes back the earlier ones.
            match backup {
                Some((backup, true)) => {
                    let _ = std::fs::remove_file(backup);
                }
                Some((backup, false)) => {
                    let _ = std::fs::rename(backup, &target);
                }
                None => {}
            }
            Err(rename_err(&target, e.error))
        }
    }
}

/// Makes a backup of `target` under a new name in its folder: a hard link where the file
/// system has them (`true`), else the target itself renamed (`false`).
fn back_up(target: &Path) -> Result<(PathBuf, bool), WriteError> {
    let err = |e| WriteError::io("keep a backup of the previous", target, e);
    let mut n = 0;
    loop {
        let backup = super::temp::backup_name(target, n);
        n += 1;
        match std::fs::hard_link(target, &backup) {
            Ok(()) => return Ok((backup, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) if backup.exists() => continue,
            Err(_) => {
                return std::fs::rename(target, &backup)
                    .map(|()| (backup, false))
                    .map_err(err);
            }
        }
    }
}

/// Whether two files hold the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(target: &Path) -> PendingFile {
        let mut w = WheelWriter::create(target, ZipTime::EPOCH).unwrap();
        let c = crate::wheel::deflate::compress(b"new bytes", 6);
        w.add_compressed("pkg/data.txt", &c, 0o100644).unwrap();
        w.finish().unwrap()
    }

    /// The names in `dir` wheelslim made for itself (temporary files, backups).
    fn ours(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".wheelslim-"))
            .collect()
    }

    #[test]
    fn a_failed_commit_puts_back_what_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a-1.0-py3-none-any.whl");
        let b = dir.path().join("b-1.0-py3-none-any.whl");
        let c = dir.path().join("c-1.0-py3-none-any.whl");
        std::fs::write(&a, b"previous a").unwrap();
        // The second rename fails: a non-empty folder cannot be renamed over.
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("keep"), b"x").unwrap();
        let files = vec![pending(&a), pending(&b), pending(&c)];
        let e = commit(files).unwrap_err().to_string();
        assert!(e.contains("b-1.0-py3-none-any.whl"), "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"previous a");
        assert_eq!(std::fs::read(b.join("keep")).unwrap(), b"x");
        assert!(!c.exists());
        assert_eq!(ours(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_commit_replaces_and_leaves_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a-1.0-py3-none-any.whl");
        std::fs::write(&a, b"previous a").unwrap();
        let p = pending(&a);
        let new = std::fs::read(p.temp_path()).unwrap();
        commit(vec![p]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), new);
        assert_eq!(ours(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn must_match_keeps_identical_and_refuses_different() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a-1.0-py3-none-any.whl");
        commit(vec![pending(&a)]).unwrap();
        let ino = std::fs::metadata(&a).unwrap().ino();
        let mut p = pending(&a);
        p.existing = Existing::MustMatch;
        commit(vec![p]).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().ino(), ino, "not rewritten");
        std::fs::write(&a, b"another build's").unwrap();
        let mut p = pending(&a);
        p.existing = Existing::MustMatch;
        let e = commit(vec![p]).unwrap_err().to_string();
        assert!(e.contains("already exists with other content"), "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"another build's");
        assert_eq!(ours(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_raw_copy_from_an_input_changed_since_it_was_opened_is_refused() {
        use std::io::Write as _;
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.zip");
        {
            let mut z = ::zip::ZipWriter::new(File::create(&input).unwrap());
            let opts = ::zip::write::SimpleFileOptions::default()
                .compression_method(::zip::CompressionMethod::Stored);
            z.start_file("pkg/lib.so", opts).unwrap();
            z.write_all(&[7u8; 4096]).unwrap();
            z.finish().unwrap();
        }
        // An old modification time, so the rewrite below moves it whatever the clock's grain.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let archive = ZipArchive::open(&input, &crate::wheel::Limits::default()).unwrap();
        let m = archive.member("pkg/lib.so").unwrap().clone();
        // Rewritten in place, same size: only the file's times tell.
        let f = File::options().write(true).open(&input).unwrap();
        f.write_all_at(&[8u8; 16], m.data_offset).unwrap();
        drop(f);
        let out = dir.path().join("out-1.0-py3-none-any.whl");
        let mut w = WheelWriter::create(&out, ZipTime::EPOCH).unwrap();
        let e = w
            .add_raw("pkg/lib.so", &archive, &m, 0o100644)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in.zip!pkg/lib.so"), "{e}");
        assert!(e.contains("changed while wheelslim was reading it"), "{e}");
    }

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
