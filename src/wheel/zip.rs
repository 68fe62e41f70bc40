//! A strict, read-only ZIP reader built for wheels.
//!
//! The central directory is read once into a [`ZipArchive`]; every member's local header is
//! checked against it; member data is read with positioned reads (`pread`), so one archive can be
//! shared by many threads. Nothing is extracted to disk. Members can be streamed (inflated in
//! chunks, CRC and size checked, stopping at the declared size), read whole into memory, or
//! copied raw (their compressed bytes as they are).
//!
//! Why not the `zip` crate: wheelslim must see exactly what PyPI's upload checks see — duplicate
//! names, data descriptors, local/central disagreements, trailing data — and report them instead
//! of having them smoothed over, and it needs the raw byte ranges of members for copying. The
//! `zip` crate is used in the tests as an independent reader of what we write.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zlib_rs::{Inflate, InflateFlush, Status};

const SIG_LOCAL: u32 = 0x0403_4b50;
const SIG_CENTRAL: u32 = 0x0201_4b50;
const SIG_EOCD: u32 = 0x0605_4b50;
const SIG_ZIP64_EOCD: u32 = 0x0606_4b50;
const SIG_ZIP64_LOCATOR: u32 = 0x0706_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// Deflate cannot expand data by more than about 1032:1; a member that declares more is lying.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// Resource limits for reading archives (hostile input protection). All are overridable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most members an archive may have.
    pub max_members: usize,
    /// Largest uncompressed size of one member.
    pub max_member_size: u64,
    /// Largest sum of uncompressed sizes over an archive.
    pub max_total_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 250_000,
            max_member_size: 8 << 30,
            max_total_size: 64 << 30,
        }
    }
}

/// Compression method of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Stored,
    Deflated,
    #[serde(untagged)]
    Other(u16),
}

impl Method {
    fn from_u16(v: u16) -> Method {
        match v {
            0 => Method::Stored,
            8 => Method::Deflated,
            o => Method::Other(o),
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Other(o) => o,
        }
    }
}

/// Problems with the archive as a whole (it cannot be read) or with one member (that member
/// cannot be read; the rest can).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a zip archive ({0})")]
    NotZip(&'static str),
    #[error("truncated archive: {0}")]
    Truncated(String),
    #[error("corrupt central directory: {0}")]
    CorruptCentralDirectory(String),
    #[error("multi-disk archives are not supported")]
    MultiDisk,
    #[error("archive has {count} members, more than the limit of {limit}")]
    TooManyMembers { count: u64, limit: usize },
    #[error("archive declares {total} uncompressed bytes in all, more than the limit of {limit}")]
    TotalTooLarge { total: u64, limit: u64 },
    #[error("unsafe member name {name:?}: {reason}")]
    UnsafeName { name: String, reason: &'static str },
    #[error("member name is not valid UTF-8")]
    NameNotUtf8,
    #[error("duplicate member name")]
    DuplicateName,
    #[error("members overlap in the file (`{other}` shares bytes with this one)")]
    Overlap { other: String },
    #[error("local header disagrees with the central directory on {field}")]
    LocalHeaderMismatch { field: &'static str },
    #[error("bad local header: {0}")]
    BadLocalHeader(String),
    #[error("member data lies outside the archive")]
    DataOutOfBounds,
    #[error("unsupported compression method {0} (only STORED and DEFLATE are allowed in wheels)")]
    UnsupportedMethod(u16),
    #[error("member is encrypted")]
    Encrypted,
    #[error(
        "declared size {declared} is impossible for {compressed} compressed bytes (deflate expands at most {MAX_DEFLATE_RATIO}:1)"
    )]
    AbsurdSize { declared: u64, compressed: u64 },
    #[error("declared size {declared} is larger than the per-member limit of {limit}")]
    MemberTooLarge { declared: u64, limit: u64 },
    #[error("STORED member has compressed size {compressed} but size {declared}")]
    StoredSizeMismatch { declared: u64, compressed: u64 },
    #[error("data inflates to more than the declared {declared} bytes")]
    InflatesTooLong { declared: u64 },
    #[error("data inflates to {actual} bytes, not the declared {declared}")]
    InflatesTooShort { declared: u64, actual: u64 },
    #[error("corrupt deflate stream: {0}")]
    BadDeflate(String),
    #[error("CRC-32 mismatch (central directory says {expected:08x}, data gives {actual:08x})")]
    Crc { expected: u32, actual: u32 },
    #[error("read failed: {0}")]
    Io(String),
    #[error("cannot hold the member's {size} bytes in memory")]
    NoMemory { size: u64 },
}

impl ZipError {
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            ZipError::NotZip(_) | ZipError::Truncated(_) | ZipError::CorruptCentralDirectory(_) => {
                "the file is not a complete wheel; download or build it again"
            }
            ZipError::UnsafeName { .. } | ZipError::NameNotUtf8 => {
                "installers refuse such names; rebuild the wheel without this member"
            }
            ZipError::DuplicateName => {
                "the archive holds the same name twice; rebuild the wheel so each file appears once"
            }
            ZipError::UnsupportedMethod(_) => {
                "PyPI accepts only STORED and DEFLATE members; rebuild the wheel with deflate"
            }
            ZipError::TooManyMembers { .. }
            | ZipError::TotalTooLarge { .. }
            | ZipError::MemberTooLarge { .. } => {
                "if the wheel is genuine, raise the limit with --max-members / --max-inflated"
            }
            ZipError::AbsurdSize { .. }
            | ZipError::Overlap { .. }
            | ZipError::InflatesTooLong { .. }
            | ZipError::InflatesTooShort { .. } => {
                "the archive's sizes are forged or corrupt (a zip bomb?); do not install it"
            }
            ZipError::NoMemory { .. } => {
                "free memory or raise the process's memory limit; if the wheel is not genuine, do not install it"
            }
            _ => return None,
        })
    }
}

/// Structural facts about an archive that matter to PyPI's upload checks but do not stop reading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ZipFinding {
    Comment { bytes: u64 },
    LeadingData { bytes: u64 },
    TrailingData { bytes: u64 },
    Zip64,
    DataDescriptor { member: String },
    DuplicateName { member: String },
    Symlink { member: String },
    UnsupportedMethod { member: String, method: u16 },
}

/// One member of the archive, as the central directory (checked against its local header) says.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub method: Method,
    pub flags: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    pub local_header_offset: u64,
    /// Offset of the first byte of compressed data (after the local header).
    pub data_offset: u64,
    /// Unix mode from the external attributes, when the archive was made on Unix.
    pub unix_mode: Option<u32>,
    pub dos_time: u16,
    pub dos_date: u16,
    pub is_dir: bool,
    pub is_symlink: bool,
    /// Why this member cannot be read, if it cannot.
    pub problem: Option<ZipError>,
}

impl Member {
    /// End of this member's bytes in the file (data end; a data descriptor may follow).
    fn data_end(&self) -> u64 {
        self.data_offset.saturating_add(self.compressed_size)
    }
}

/// An opened archive: the central directory, indexed once.
#[derive(Debug)]
pub struct ZipArchive {
    path: PathBuf,
    file: File,
    file_len: u64,
    members: Vec<Member>,
    by_name: HashMap<String, usize>,
    findings: Vec<ZipFinding>,
    /// Where the central directory starts (= where member data must end).
    cd_offset: u64,
    /// The file as it was when it was opened, to tell whether it changed under us.
    identity: FileIdentity,
}

/// What tells one state of a file from another without reading it: device and inode, size,
/// and the modification and change times to the nanosecond. The change time cannot be set
/// back by anyone (copying old timestamps back sets the modification time only), so an
/// in-place rewrite shows there even when size and modification time were restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn io_err(e: io::Error) -> ZipError {
    ZipError::Io(e.to_string())
}

/// Checks a member name the way installers and PyPI do: relative, no `..`, no control characters.
pub fn check_member_name(name: &str) -> Result<(), ZipError> {
    let bad = |reason| {
        Err(ZipError::UnsafeName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return bad("absolute path");
    }
    if name.len() >= 2 && name.as_bytes()[1] == b':' && name.as_bytes()[0].is_ascii_alphabetic() {
        return bad("drive letter");
    }
    if name.contains('\\') {
        return bad("backslash in name");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("control character in name");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` or `..` path component"),
            _ => {}
        }
    }
    Ok(())
}

/// The end-of-central-directory record: where it starts, its fixed 22 bytes, and the length
/// of the comment after them.
struct EndRecord {
    offset: u64,
    bytes: [u8; EOCD_LEN],
    comment_len: u64,
}

/// Where the central directory lies (`size` bytes at `offset`, ending at most at
/// `end_limit`, where its end record starts) and how many entries it claims.
#[derive(Clone, Copy)]
struct Directory {
    count: u64,
    size: u64,
    offset: u64,
    end_limit: u64,
}

/// Reads the `count` entries of the central directory `cd`: the members, by name. A bad
/// member is kept with its [`Member::problem`]; the directory as a whole must be sound, hold
/// exactly `count` entries and stay under the limits.
fn read_directory(
    cd: &[u8],
    count: u64,
    limits: &Limits,
    findings: &mut Vec<ZipFinding>,
) -> Result<(Vec<Member>, HashMap<String, usize>), ZipError> {
    let mut members: Vec<Member> = Vec::with_capacity(count as usize);
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(count as usize);
    let mut pos = 0usize;
    let mut total: u64 = 0;
    for n in 0..count {
        let (mut member, next) = central_entry(cd, pos, n, count, limits, findings)?;
        pos = next;
        total = total.saturating_add(member.size);
        let idx = members.len();
        if by_name.contains_key(&member.name) {
            findings.push(ZipFinding::DuplicateName {
                member: member.name.clone(),
            });
            member.problem.get_or_insert(ZipError::DuplicateName);
            if let Some(&first) = by_name.get(&member.name) {
                let first: &mut Member = &mut members[first];
                first.problem.get_or_insert(ZipError::DuplicateName);
            }
        } else {
            by_name.insert(member.name.clone(), idx);
        }
        members.push(member);
    }
    // Installers read the directory to its end, whatever the count says: entries past the
    // count would be installed without being seen here.
    if pos != cd.len() {
        return Err(ZipError::CorruptCentralDirectory(format!(
            "{} bytes of the directory follow its {count} counted entries",
            cd.len() - pos
        )));
    }
    if total > limits.max_total_size {
        return Err(ZipError::TotalTooLarge {
            total,
            limit: limits.max_total_size,
        });
    }
    Ok((members, by_name))
}

/// Entry `n` of `count`, at `pos` in the central directory: the member it describes (with
/// what is wrong with it, and the findings it adds), and where the next entry starts.
fn central_entry(
    cd: &[u8],
    pos: usize,
    n: u64,
    count: u64,
    limits: &Limits,
    findings: &mut Vec<ZipFinding>,
) -> Result<(Member, usize), ZipError> {
    if pos + CENTRAL_LEN > cd.len() || le32(cd, pos) != SIG_CENTRAL {
        return Err(ZipError::CorruptCentralDirectory(format!(
            "entry {n} of {count} is missing or has a bad signature"
        )));
    }
    let h = &cd[pos..pos + CENTRAL_LEN];
    let version_made_by = le16(h, 4);
    let flags = le16(h, 8);
    let method = Method::from_u16(le16(h, 10));
    let crc32 = le32(h, 16);
    let name_len = le16(h, 28) as usize;
    let extra_len = le16(h, 30) as usize;
    let comment_len = le16(h, 32) as usize;
    let disk = le16(h, 34);
    let external = le32(h, 38);
    let var_end = pos + CENTRAL_LEN + name_len + extra_len + comment_len;
    if var_end > cd.len() {
        return Err(ZipError::CorruptCentralDirectory(format!(
            "entry {n} runs past the end of the directory"
        )));
    }
    let name_bytes = &cd[pos + CENTRAL_LEN..pos + CENTRAL_LEN + name_len];
    let extra = &cd[pos + CENTRAL_LEN + name_len..pos + CENTRAL_LEN + name_len + extra_len];
    if disk != 0 && disk != 0xFFFF {
        return Err(ZipError::MultiDisk);
    }
    let mut sizes = [
        le32(h, 24) as u64, // size
        le32(h, 20) as u64, // compressed size
        le32(h, 42) as u64, // local header offset
    ];
    read_zip64_extra(extra, n, &mut sizes)?;
    let [size, compressed_size, local_header_offset] = sizes;
    let mut problem = None;
    let name = match std::str::from_utf8(name_bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            problem = Some(ZipError::NameNotUtf8);
            String::from_utf8_lossy(name_bytes).into_owned()
        }
    };
    if problem.is_none()
        && let Err(err) = check_member_name(&name)
    {
        problem = Some(err);
    }
    let host = version_made_by >> 8;
    let unix_mode = (host == 3).then_some(external >> 16);
    let is_symlink = unix_mode.is_some_and(|m| m & 0o170000 == 0o120000);
    let is_dir = name.ends_with('/');
    if is_symlink {
        findings.push(ZipFinding::Symlink {
            member: name.clone(),
        });
    }
    let mut member = Member {
        name,
        method,
        flags,
        crc32,
        compressed_size,
        size,
        local_header_offset,
        data_offset: 0,
        unix_mode,
        dos_time: le16(h, 12),
        dos_date: le16(h, 14),
        is_dir,
        is_symlink,
        problem,
    };
    check_entry(&mut member, limits, findings);
    Ok((member, var_end))
}

/// ZIP64 extended information in an entry's extra fields: only the fields saturated at
/// 0xFFFF_FFFF are present, in the order size, compressed size, local header offset.
fn read_zip64_extra(extra: &[u8], n: u64, sizes: &mut [u64; 3]) -> Result<(), ZipError> {
    let mut e = 0;
    while e + 4 <= extra.len() {
        let id = le16(extra, e);
        let len = le16(extra, e + 2) as usize;
        let body = extra.get(e + 4..e + 4 + len).ok_or_else(|| {
            ZipError::CorruptCentralDirectory(format!("entry {n} has a truncated extra field"))
        })?;
        if id == 0x0001 {
            let saturated = sizes.map(|v| v == 0xFFFF_FFFF);
            let mut b = 0;
            for (v, sat) in sizes.iter_mut().zip(saturated) {
                if sat {
                    if b + 8 > body.len() {
                        return Err(ZipError::CorruptCentralDirectory(format!(
                            "entry {n} has a short ZIP64 field"
                        )));
                    }
                    *v = le64(body, b);
                    b += 8;
                }
            }
        }
        e += 4 + len;
    }
    Ok(())
}

/// What the entry's own fields say is wrong with the member (encryption, an unknown method,
/// sizes that cannot be, over the limit), and the findings it adds.
fn check_entry(m: &mut Member, limits: &Limits, findings: &mut Vec<ZipFinding>) {
    let (size, compressed_size) = (m.size, m.compressed_size);
    if m.flags & 0x0001 != 0 {
        m.problem.get_or_insert(ZipError::Encrypted);
    }
    if let Method::Other(method) = m.method {
        findings.push(ZipFinding::UnsupportedMethod {
            member: m.name.clone(),
            method,
        });
        m.problem.get_or_insert(ZipError::UnsupportedMethod(method));
    }
    if m.flags & 0x0008 != 0 {
        findings.push(ZipFinding::DataDescriptor {
            member: m.name.clone(),
        });
    }
    match m.method {
        Method::Stored if size != compressed_size => {
            m.problem.get_or_insert(ZipError::StoredSizeMismatch {
                declared: size,
                compressed: compressed_size,
            });
        }
        Method::Deflated
            if size
                > compressed_size
                    .saturating_mul(MAX_DEFLATE_RATIO)
                    .saturating_add(1024) =>
        {
            m.problem.get_or_insert(ZipError::AbsurdSize {
                declared: size,
                compressed: compressed_size,
            });
        }
        _ => {}
    }
    if size > limits.max_member_size {
        m.problem.get_or_insert(ZipError::MemberTooLarge {
            declared: size,
            limit: limits.max_member_size,
        });
    }
}

impl ZipArchive {
    /// Opens and indexes an archive. Fails only when the archive as a whole cannot be read;
    /// a bad member is recorded in [`Member::problem`].
    pub fn open(path: &Path, limits: &Limits) -> Result<ZipArchive, ArchiveOpenError> {
        // Only a regular file, checked before opening: opening a FIFO would wait forever.
        let (file, meta) = crate::input::open_regular(path).map_err(ArchiveOpenError::Io)?;
        let identity = FileIdentity::of(&meta);
        Self::index(path, file, identity, limits).map_err(ArchiveOpenError::Zip)
    }

    /// Fails when the file is no longer what was opened and indexed (written to, truncated or
    /// touched since): what was read from it before (the index, the facts, the hashes that
    /// become RECORD) may then not describe what a raw copy takes from it now.
    pub fn check_unchanged(&self) -> io::Result<()> {
        let now = FileIdentity::of(&self.file.metadata()?);
        if now != self.identity {
            let what = if now.len != self.identity.len {
                format!(
                    "its size went from {} to {} bytes",
                    self.identity.len, now.len
                )
            } else {
                "its modification or change time moved".to_string()
            };
            return Err(io::Error::other(format!(
                "the file was changed while wheelslim was reading it ({what})"
            )));
        }
        Ok(())
    }

    fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), ZipError> {
        file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ZipError::Truncated(format!("unexpected end of file at offset {offset}"))
            } else {
                io_err(e)
            }
        })
    }

    fn index(
        path: &Path,
        file: File,
        identity: FileIdentity,
        limits: &Limits,
    ) -> Result<Self, ZipError> {
        let file_len = identity.len;
        let end = Self::find_end_record(&file, file_len)?;
        let mut findings = Vec::new();
        if end.comment_len > 0 {
            findings.push(ZipFinding::Comment {
                bytes: end.comment_len,
            });
        }
        let trailing = file_len - (end.offset + EOCD_LEN as u64 + end.comment_len);
        if trailing > 0 {
            findings.push(ZipFinding::TrailingData { bytes: trailing });
        }
        let dir = Self::locate_directory(&file, &end, limits, &mut findings)?;
        let mut cd = vec![0u8; dir.size as usize];
        Self::read_exact_at(&file, &mut cd, dir.offset)?;
        let (members, by_name) = read_directory(&cd, dir.count, limits, &mut findings)?;
        let cd_offset = dir.offset;
        let mut archive = ZipArchive {
            path: path.to_path_buf(),
            file,
            file_len,
            members,
            by_name,
            findings,
            cd_offset,
            identity,
        };
        archive.check_local_headers();
        archive.check_overlaps();
        Ok(archive)
    }

    /// Finds the end-of-central-directory record, which lies within the last 22 + 65535
    /// bytes: the last signature whose comment fits in the file.
    fn find_end_record(file: &File, file_len: u64) -> Result<EndRecord, ZipError> {
        if file_len < EOCD_LEN as u64 {
            return Err(ZipError::NotZip(
                "file is shorter than an end-of-central-directory record",
            ));
        }
        let tail_len = file_len.min((EOCD_LEN + 0xFFFF) as u64) as usize;
        let tail_start = file_len - tail_len as u64;
        let mut tail = vec![0u8; tail_len];
        Self::read_exact_at(file, &mut tail, tail_start)?;
        let mut eocd_pos = None;
        let mut i = tail_len - EOCD_LEN;
        loop {
            if le32(&tail, i) == SIG_EOCD {
                let comment_len = le16(&tail, i + 20) as usize;
                if i + EOCD_LEN + comment_len <= tail_len {
                    eocd_pos = Some(i);
                    break;
                }
            }
            if i == 0 {
                break;
            }
            i -= 1;
        }
        let Some(e) = eocd_pos else {
            let mut magic = [0u8; 4];
            let _ = file.read_exact_at(&mut magic, 0);
            return Err(if magic == SIG_LOCAL.to_le_bytes() {
                ZipError::Truncated("the end-of-central-directory record is missing".into())
            } else {
                ZipError::NotZip("no end-of-central-directory record")
            });
        };
        let mut bytes = [0u8; EOCD_LEN];
        bytes.copy_from_slice(&tail[e..e + EOCD_LEN]);
        Ok(EndRecord {
            offset: tail_start + e as u64,
            comment_len: le16(&bytes, 20) as u64,
            bytes,
        })
    }

    /// Where the central directory is and how many entries it holds, from the end record
    /// (or the ZIP64 record it points to), checked against the file and the limits.
    fn locate_directory(
        file: &File,
        end: &EndRecord,
        limits: &Limits,
        findings: &mut Vec<ZipFinding>,
    ) -> Result<Directory, ZipError> {
        let eocd = &end.bytes;
        if le16(eocd, 4) != 0 || le16(eocd, 6) != 0 {
            return Err(ZipError::MultiDisk);
        }
        let mut dir = Directory {
            count: le16(eocd, 10) as u64,
            size: le32(eocd, 12) as u64,
            offset: le32(eocd, 16) as u64,
            end_limit: end.offset,
        };
        if dir.count == 0xFFFF || dir.size == 0xFFFF_FFFF || dir.offset == 0xFFFF_FFFF {
            dir = Self::read_zip64_end(file, end.offset)?;
            findings.push(ZipFinding::Zip64);
        }
        let Directory {
            count,
            size: cd_size,
            offset: cd_offset,
            end_limit: cd_end_limit,
        } = dir;
        if count > limits.max_members as u64 {
            return Err(ZipError::TooManyMembers {
                count,
                limit: limits.max_members,
            });
        }
        if cd_offset
            .checked_add(cd_size)
            .is_none_or(|end| end > cd_end_limit)
        {
            return Err(ZipError::Truncated(format!(
                "central directory ({cd_size} bytes at offset {cd_offset}) extends past its end record"
            )));
        }
        // Each central entry is at least 46 bytes; a count the directory cannot hold is a lie.
        if count.saturating_mul(CENTRAL_LEN as u64) > cd_size {
            return Err(ZipError::CorruptCentralDirectory(format!(
                "{count} entries cannot fit in {cd_size} bytes"
            )));
        }
        let leading = cd_end_limit - cd_offset - cd_size;
        if leading > 0 {
            // Bytes between the directory and its end record, or prepended data shifting offsets.
            findings.push(ZipFinding::LeadingData { bytes: leading });
        }
        Ok(dir)
    }

    /// ZIP64: the locator just before the end record at `eocd_offset` points to the ZIP64 end
    /// record, which holds the directory's real count, size and offset.
    fn read_zip64_end(file: &File, eocd_offset: u64) -> Result<Directory, ZipError> {
        if eocd_offset < 20 {
            return Err(ZipError::CorruptCentralDirectory(
                "ZIP64 values without a ZIP64 locator".into(),
            ));
        }
        let mut loc = [0u8; 20];
        Self::read_exact_at(file, &mut loc, eocd_offset - 20)?;
        if le32(&loc, 0) != SIG_ZIP64_LOCATOR {
            return Err(ZipError::CorruptCentralDirectory(
                "ZIP64 values without a ZIP64 locator".into(),
            ));
        }
        let z64_offset = le64(&loc, 8);
        if z64_offset
            .checked_add(56)
            .is_none_or(|end| end > eocd_offset - 20)
        {
            return Err(ZipError::CorruptCentralDirectory(
                "ZIP64 end record outside the file".into(),
            ));
        }
        let mut rec = [0u8; 56];
        Self::read_exact_at(file, &mut rec, z64_offset)?;
        if le32(&rec, 0) != SIG_ZIP64_EOCD {
            return Err(ZipError::CorruptCentralDirectory(
                "bad ZIP64 end record signature".into(),
            ));
        }
        Ok(Directory {
            count: le64(&rec, 32),
            size: le64(&rec, 40),
            offset: le64(&rec, 48),
            end_limit: z64_offset,
        })
    }

    /// Reads every local header and checks that it agrees with the central directory.
    fn check_local_headers(&mut self) {
        let cd_offset = self.cd_offset;
        for m in &mut self.members {
            if m.local_header_offset
                .checked_add(LOCAL_LEN as u64)
                .is_none_or(|end| end > cd_offset)
            {
                m.problem.get_or_insert(ZipError::DataOutOfBounds);
                continue;
            }
            let mut buf = [0u8; LOCAL_LEN];
            if let Err(e) = self.file.read_exact_at(&mut buf, m.local_header_offset) {
                m.problem.get_or_insert(io_err(e));
                continue;
            }
            if le32(&buf, 0) != SIG_LOCAL {
                m.problem
                    .get_or_insert(ZipError::BadLocalHeader("bad signature".into()));
                continue;
            }
            let flags = le16(&buf, 6);
            let method = le16(&buf, 8);
            let crc = le32(&buf, 14);
            let csize = le32(&buf, 18) as u64;
            let usize_ = le32(&buf, 22) as u64;
            let name_len = le16(&buf, 26) as u64;
            let extra_len = le16(&buf, 28) as u64;
            let data_offset = m.local_header_offset + LOCAL_LEN as u64 + name_len + extra_len;
            let mismatch = if method != m.method.code() {
                Some("compression method")
            } else if (flags ^ m.flags) & 0x0009 != 0 {
                Some("flags")
            } else if flags & 0x0008 == 0 && crc != m.crc32 {
                Some("CRC-32")
            } else if flags & 0x0008 == 0
                && csize != 0xFFFF_FFFF
                && (csize != m.compressed_size || usize_ != m.size)
            {
                Some("sizes")
            } else {
                None
            };
            if let Some(field) = mismatch {
                m.problem
                    .get_or_insert(ZipError::LocalHeaderMismatch { field });
            }
            if data_offset > cd_offset {
                m.problem.get_or_insert(ZipError::DataOutOfBounds);
                continue;
            }
            let mut name = vec![0u8; name_len as usize];
            if self
                .file
                .read_exact_at(&mut name, m.local_header_offset + LOCAL_LEN as u64)
                .is_err()
                || name != m.name.as_bytes()
            {
                m.problem
                    .get_or_insert(ZipError::LocalHeaderMismatch { field: "name" });
            }
            m.data_offset = data_offset;
            if data_offset
                .checked_add(m.compressed_size)
                .is_none_or(|end| end > cd_offset)
            {
                m.problem.get_or_insert(ZipError::DataOutOfBounds);
            }
        }
    }

    /// Members whose bytes overlap are the signature of a "better zip bomb" or of corruption.
    fn check_overlaps(&mut self) {
        let mut order: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].data_offset != 0)
            .collect();
        order.sort_by_key(|&i| self.members[i].local_header_offset);
        for w in order.windows(2) {
            let (a, b) = (&self.members[w[0]], &self.members[w[1]]);
            if a.data_end() > b.local_header_offset {
                let (an, bn) = (a.name.clone(), b.name.clone());
                self.members[w[1]]
                    .problem
                    .get_or_insert(ZipError::Overlap { other: an });
                self.members[w[0]]
                    .problem
                    .get_or_insert(ZipError::Overlap { other: bn });
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn findings(&self) -> &[ZipFinding] {
        &self.findings
    }

    /// The first member with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.index_of(name).map(|i| &self.members[i])
    }

    fn readable(&self, m: &Member) -> Result<(), ZipError> {
        match &m.problem {
            Some(p) => Err(p.clone()),
            None => Ok(()),
        }
    }

    /// Reads a member's compressed bytes as they are stored.
    pub fn read_raw(&self, m: &Member) -> Result<Vec<u8>, ZipError> {
        self.readable(m)?;
        let mut buf = vec![0u8; m.compressed_size as usize];
        Self::read_exact_at(&self.file, &mut buf, m.data_offset)?;
        Ok(buf)
    }

    /// Reads `buf.len()` compressed bytes of a member, starting `at` bytes into its data.
    pub fn read_raw_at(&self, m: &Member, at: u64, buf: &mut [u8]) -> Result<(), ZipError> {
        self.readable(m)?;
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > m.compressed_size) {
            return Err(ZipError::Io(format!(
                "read past the end of a member's data ({at:#x} + {:#x} > {:#x})",
                buf.len(),
                m.compressed_size
            )));
        }
        Self::read_exact_at(&self.file, buf, m.data_offset + at)
    }

    /// Reads a member's uncompressed bytes (size and CRC checked), with its deflate block
    /// marks (see [`stream_marked`](Self::stream_marked)).
    pub fn read_marked(&self, m: &Member) -> Result<(Vec<u8>, Vec<BlockMark>), ZipError> {
        self.readable(m)?;
        let mut out = buffer_for(m.size)?;
        let mut marks = Vec::new();
        self.stream_marked(m, Some(&mut marks), |chunk| {
            out.extend_from_slice(chunk);
            Ok(true)
        })?;
        Ok((out, marks))
    }

    /// A second handle on the archive's file, with a cursor of its own, for copying raw
    /// member bytes file to file (which lets `std::io::copy` use `copy_file_range`). It is
    /// opened by path, so it is refused unless it is still the same file (device and inode)
    /// that was indexed.
    pub fn reopen(&self) -> io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let f = File::open(&self.path)?;
        let (a, b) = (self.file.metadata()?, f.metadata()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(io::Error::other(
                "the archive was replaced while being read",
            ));
        }
        Ok(f)
    }

    /// A reader over a member's compressed bytes (positioned reads; no shared cursor).
    pub fn raw_reader<'a>(&'a self, m: &Member) -> Result<RawReader<'a>, ZipError> {
        self.readable(m)?;
        Ok(RawReader {
            file: &self.file,
            pos: m.data_offset,
            end: m.data_offset + m.compressed_size,
        })
    }

    /// Streams a member's uncompressed bytes to `sink` in chunks, checking the declared size and
    /// the CRC-32. Inflation stops as soon as the data would exceed the declared size.
    pub fn stream(
        &self,
        m: &Member,
        mut sink: impl FnMut(&[u8]) -> Result<(), ZipError>,
    ) -> Result<(), ZipError> {
        self.stream_until(m, |chunk| sink(chunk).map(|()| true))
    }

    /// Like [`stream`](Self::stream), but `sink` may return `false` to stop early (no CRC check then).
    pub fn stream_until(
        &self,
        m: &Member,
        sink: impl FnMut(&[u8]) -> Result<bool, ZipError>,
    ) -> Result<(), ZipError> {
        self.stream_marked(m, None, sink)
    }

    /// Like [`stream_until`](Self::stream_until), and for a deflated member also notes in
    /// `marks` where its deflate blocks begin (see [`BlockMark`]), for
    /// [`crate::wheel::splice`] to reuse the compressed blocks of bytes that a rewrite leaves
    /// as they were.
    pub fn stream_marked(
        &self,
        m: &Member,
        mut marks: Option<&mut Vec<BlockMark>>,
        mut sink: impl FnMut(&[u8]) -> Result<bool, ZipError>,
    ) -> Result<(), ZipError> {
        if let Some(marks) = marks.as_deref_mut() {
            marks.clear();
        }
        let want = marks.is_some();
        self.stream_events(m, want, |e| match e {
            Event::Data(d) => sink(d),
            Event::Block(b) => {
                if let Some(marks) = marks.as_deref_mut() {
                    marks.push(b);
                }
                Ok(true)
            }
        })
    }

    /// Inflates a member, handing `sink` its bytes in order and, when `marks` is set, an
    /// [`Event::Block`] right after the bytes that end each deflate block (never twice for
    /// one place). Size and CRC are checked at the end, as in [`Self::stream_until`].
    pub fn stream_events(
        &self,
        m: &Member,
        marks: bool,
        mut sink: impl FnMut(Event<'_>) -> Result<bool, ZipError>,
    ) -> Result<(), ZipError> {
        const IN_CHUNK: usize = 256 * 1024;
        const OUT_CHUNK: usize = 512 * 1024;
        let mut raw = self.raw_reader(m)?;
        let mut crc = crc32fast::Hasher::new();
        let mut produced: u64 = 0;
        // Buffers no larger than the member needs: wheels hold thousands of tiny files, and
        // zeroing 768 KiB for each was most of the time spent on them.
        let fit = |n: u64, cap: usize| usize::try_from(n).map_or(cap, |n| n.clamp(1, cap));
        match m.method {
            Method::Stored => {
                let mut buf = vec![0u8; fit(m.compressed_size, IN_CHUNK)];
                loop {
                    let n = raw.read(&mut buf).map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    crc.update(&buf[..n]);
                    produced += n as u64;
                    if !sink(Event::Data(&buf[..n]))? {
                        return Ok(());
                    }
                }
            }
            Method::Deflated => {
                // zlib-rs (the engine behind flate2 here) used directly: asked to stop at each
                // block boundary, it tells us where the blocks are, at no cost to speed.
                let mut inflater = Inflate::new(false, 15);
                let mut inbuf = vec![0u8; fit(m.compressed_size, IN_CHUNK)];
                let mut outbuf = vec![0u8; fit(m.size.saturating_add(1), OUT_CHUNK)];
                let (mut in_start, mut in_end) = (0usize, 0usize);
                let mut input_done = false;
                let mut last_mark: Option<BlockMark> = None;
                loop {
                    if in_start == in_end && !input_done {
                        in_end = raw.read(&mut inbuf).map_err(io_err)?;
                        in_start = 0;
                        input_done = in_end == 0;
                    }
                    let before_in = inflater.total_in();
                    let before_out = inflater.total_out();
                    let status = inflater
                        .decompress(&inbuf[in_start..in_end], &mut outbuf, InflateFlush::Block)
                        .map_err(|e| ZipError::BadDeflate(e.as_str().to_string()))?;
                    let consumed = (inflater.total_in() - before_in) as usize;
                    let out = (inflater.total_out() - before_out) as usize;
                    in_start += consumed;
                    if out > 0 {
                        produced += out as u64;
                        if produced > m.size {
                            return Err(ZipError::InflatesTooLong { declared: m.size });
                        }
                        crc.update(&outbuf[..out]);
                        if !sink(Event::Data(&outbuf[..out]))? {
                            return Ok(());
                        }
                    }
                    if status == Status::StreamEnd {
                        break;
                    }
                    // Input left and room left: inflate stopped because a block ended.
                    if status == Status::Ok && in_start < in_end && out < outbuf.len() && marks {
                        let mark = BlockMark {
                            input: inflater.total_in(),
                            output: inflater.total_out(),
                        };
                        if last_mark != Some(mark) {
                            last_mark = Some(mark);
                            if !sink(Event::Block(mark))? {
                                return Ok(());
                            }
                        }
                    }
                    if consumed == 0 && out == 0 && input_done {
                        return Err(ZipError::BadDeflate(
                            "stream ends before its final block".into(),
                        ));
                    }
                }
            }
            Method::Other(c) => return Err(ZipError::UnsupportedMethod(c)),
        }
        if produced != m.size {
            return Err(ZipError::InflatesTooShort {
                declared: m.size,
                actual: produced,
            });
        }
        let actual = crc.finalize();
        if actual != m.crc32 {
            return Err(ZipError::Crc {
                expected: m.crc32,
                actual,
            });
        }
        Ok(())
    }

    /// Reads a member's uncompressed bytes into memory (size and CRC checked).
    pub fn read(&self, m: &Member) -> Result<Vec<u8>, ZipError> {
        self.readable(m)?;
        let mut out = buffer_for(m.size)?;
        self.stream(m, |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads up to `n` leading uncompressed bytes of a member (no CRC check).
    pub fn read_prefix(&self, m: &Member, n: usize) -> Result<Vec<u8>, ZipError> {
        let mut out = Vec::with_capacity(n.min(m.size as usize));
        self.stream_until(m, |chunk| {
            let take = (n - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..take]);
            Ok(out.len() < n)
        })?;
        Ok(out)
    }
}

/// What [`ZipArchive::stream_events`] hands its sink.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The next uncompressed bytes.
    Data(&'a [u8]),
    /// A deflate block ends after the bytes handed so far, and the next begins here.
    Block(BlockMark),
}

/// Where a deflate block of a member begins, as inflate saw it: `output` bytes had been produced
/// and the next block's header starts in the last few bits before byte `input` of the compressed
/// stream (inflate hands back whole unused bytes, not bits; [`crate::wheel::splice`] finds the
/// bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMark {
    pub input: u64,
    pub output: u64,
}

/// Estimated compressed bytes of `start..end` of a member of `size` bytes that deflate made
/// `compressed` bytes of, from the block boundaries inflate saw (`marks`): the compressed
/// offset of an uncompressed offset is interpolated between the boundaries around it. With
/// no marks (a stored member, or none kept) this is the member's average ratio.
pub fn compressed_range(
    marks: &[BlockMark],
    size: u64,
    compressed: u64,
    start: u64,
    end: u64,
) -> u64 {
    let at = |x: u64| -> u64 {
        let x = x.min(size);
        // The last boundary at or before x, and the first after it.
        let i = marks.partition_point(|m| m.output <= x);
        let (o0, c0) = if i == 0 {
            (0, 0)
        } else {
            (marks[i - 1].output, marks[i - 1].input)
        };
        let (o1, c1) = marks
            .get(i)
            .map_or((size, compressed), |m| (m.output, m.input));
        if o1 <= o0 {
            return c0.min(compressed);
        }
        let c = c0 as u128 + (c1.saturating_sub(c0) as u128 * (x - o0) as u128) / (o1 - o0) as u128;
        (c as u64).min(compressed)
    };
    at(end).saturating_sub(at(start))
}

/// An empty buffer with room for a member of `size` bytes. The size comes from the archive, so
/// a machine (or a memory limit) that cannot back it is an error, not an abort.
pub fn buffer_for(size: u64) -> Result<Vec<u8>, ZipError> {
    let mut v = Vec::new();
    usize::try_from(size)
        .ok()
        .and_then(|n| v.try_reserve_exact(n).ok())
        .ok_or(ZipError::NoMemory { size })?;
    Ok(v)
}

/// A zeroed buffer of `size` bytes whose pages are not touched until written: `vec![0; n]`
/// asks the allocator for zeroed memory, which a large block gets straight from the system,
/// so the parts never written take no memory ([`crate::elf::sparse`]). That allocation aborts
/// when it fails, so the same size is first tried (and given back) the fallible way: a machine
/// or a memory limit that cannot back it gives an error, not an abort.
pub fn zeroed_for(size: u64) -> Result<Vec<u8>, ZipError> {
    let n = usize::try_from(size).map_err(|_| ZipError::NoMemory { size })?;
    drop(buffer_for(size)?);
    Ok(vec![0u8; n])
}

/// Error from [`ZipArchive::open`]: the file could not be read, or it is not a usable archive.
#[derive(Debug)]
pub enum ArchiveOpenError {
    Io(io::Error),
    Zip(ZipError),
}

/// Reads a byte range of a file with positioned reads.
pub struct RawReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RawReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive shrank while being read",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip written by the `zip` crate holding `files` (deflated), as bytes.
    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut z = ::zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Deflated);
        for (name, data) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    fn open_bytes(
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<(ZipArchive, tempfile::TempPath), ZipError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let path = f.into_temp_path();
        match ZipArchive::open(&path, limits) {
            Ok(a) => Ok((a, path)),
            Err(ArchiveOpenError::Zip(e)) => Err(e),
            Err(ArchiveOpenError::Io(e)) => panic!("{e}"),
        }
    }

    fn eocd(bytes: &[u8]) -> usize {
        bytes.len() - EOCD_LEN
    }

    /// Entries past the count of the end record would be installed (pip reads the directory to
    /// its end) without being audited: refused.
    #[test]
    fn directory_entries_past_the_count_are_refused() {
        let mut z = zip_of(&[("a.py", b"a"), ("b.py", b"b")]);
        let e = eocd(&z);
        z[e + 8..e + 12].copy_from_slice(&[1, 0, 1, 0]);
        let err = open_bytes(&z, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ZipError::CorruptCentralDirectory(ref m) if m.contains("follow its 1 counted")),
            "{err}"
        );
    }

    /// `--max-members` counts the directory's entries, `--max-inflated` the declared sizes.
    #[test]
    fn limits_refuse_the_archive() {
        let z = zip_of(&[("a.py", &[0u8; 5000]), ("b.py", b"b"), ("c.py", b"c")]);
        let few = Limits {
            max_members: 2,
            ..Limits::default()
        };
        assert!(matches!(
            open_bytes(&z, &few).unwrap_err(),
            ZipError::TooManyMembers { count: 3, limit: 2 }
        ));
        let small = Limits {
            max_total_size: 4096,
            ..Limits::default()
        };
        assert!(matches!(
            open_bytes(&z, &small).unwrap_err(),
            ZipError::TotalTooLarge {
                total: 5002,
                limit: 4096
            }
        ));
        assert!(open_bytes(&z, &Limits::default()).is_ok());
    }

    /// A member that inflates past its declared size stops there: the sink never sees more than
    /// the declared bytes, so what is inflated is bounded by the declared sizes the limits check.
    #[test]
    fn inflation_stops_at_the_declared_size() {
        let data = vec![7u8; 3 << 20];
        let mut z = zip_of(&[("big.bin", &data)]);
        // Declare 1000 bytes in both headers.
        let e = eocd(&z);
        let cd = u32::from_le_bytes(z[e + 16..e + 20].try_into().unwrap()) as usize;
        z[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
        z[22..26].copy_from_slice(&1000u32.to_le_bytes());
        let (a, _keep) = open_bytes(&z, &Limits::default()).unwrap();
        let m = &a.members()[0];
        assert!(m.problem.is_none(), "{:?}", m.problem);
        let mut seen = 0usize;
        let err = a
            .stream(m, |chunk| {
                seen += chunk.len();
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err, ZipError::InflatesTooLong { declared: 1000 });
        assert!(seen <= 1000, "the sink saw {seen} bytes");
        assert_eq!(a.read(m).unwrap_err(), err);
    }

    /// A size no allocation can back is an error, not an abort.
    #[test]
    fn unbackable_sizes_are_errors() {
        assert_eq!(
            buffer_for(u64::MAX).unwrap_err(),
            ZipError::NoMemory { size: u64::MAX }
        );
        assert!(buffer_for(1 << 62).is_err());
        assert!(buffer_for(4096).unwrap().capacity() >= 4096);
    }
}
