//! Files the user names: wheelslim reads only regular files (or symlinks to them), and checks
//! that before opening one (opening a FIFO for reading waits for a writer, forever; a device
//! may never end). Text files that are not archives (profiles, `pyproject.toml`) are read up
//! to [`MAX_TEXT_FILE`] bytes.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The most wheelslim reads of a text file that is not an archive: profiles and
/// `pyproject.toml` are a few KiB; more is a mistake (`--profile /dev/zero`) or an attack.
pub const MAX_TEXT_FILE: u64 = 1 << 20;

/// Why a path cannot be read as an input.
#[derive(Debug)]
pub enum Unusable {
    /// Nothing is there.
    Missing,
    /// A symlink whose target does not exist.
    Dangling,
    /// Something that is not a regular file: "a folder", "a FIFO (named pipe)", ...
    NotRegular(&'static str),
    /// Anything else the system said (permission denied on a folder on the way, ...).
    Other(io::Error),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing => f.write_str("no such file"),
            Unusable::Dangling => f.write_str("a symlink to a file that does not exist"),
            Unusable::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            Unusable::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<Unusable> for io::Error {
    fn from(u: Unusable) -> io::Error {
        match u {
            Unusable::Other(e) => e,
            Unusable::Missing | Unusable::Dangling => {
                io::Error::new(io::ErrorKind::NotFound, u.to_string())
            }
            Unusable::NotRegular(_) => io::Error::new(io::ErrorKind::InvalidInput, u.to_string()),
        }
    }
}

/// What a file that is not a regular file is, in words; `None` for a regular file.
pub fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    })
}

/// Checks, without opening it, that `path` is a regular file or a symlink to one.
pub fn check_regular(path: &Path) -> Result<(), Unusable> {
    match std::fs::metadata(path) {
        Ok(meta) => not_regular(&meta).map_or(Ok(()), |k| Err(Unusable::NotRegular(k))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            Err(if link {
                Unusable::Dangling
            } else {
                Unusable::Missing
            })
        }
        Err(e) => Err(Unusable::Other(e)),
    }
}

/// Opens `path` for reading if it is a regular file (checked before opening, and again on the
/// opened file, in case the path changed in between).
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    check_regular(path)?;
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = not_regular(&meta) {
        return Err(Unusable::NotRegular(kind).into());
    }
    Ok((file, meta))
}

/// Reads a text file that is not an archive: a regular file of at most [`MAX_TEXT_FILE`]
/// bytes of UTF-8.
pub fn read_text(path: &Path) -> io::Result<String> {
    let (file, _) = open_regular(path)?;
    let mut bytes = Vec::new();
    // A file can grow after its size was read: read one byte past the cap to see that.
    file.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is larger than {} KiB, the most wheelslim reads of a profile or pyproject.toml",
                MAX_TEXT_FILE >> 10
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_and_links_to_them_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let file = d.join("a.toml");
        std::fs::write(&file, "x = 1\n").unwrap();
        std::os::unix::fs::symlink(&file, d.join("link.toml")).unwrap();
        std::os::unix::fs::symlink(d.join("gone"), d.join("dangling.toml")).unwrap();
        assert_eq!(read_text(&d.join("link.toml")).unwrap(), "x = 1\n");
        assert!(matches!(
            check_regular(&d.join("no")),
            Err(Unusable::Missing)
        ));
        assert!(matches!(
            check_regular(&d.join("dangling.toml")),
            Err(Unusable::Dangling)
        ));
        assert!(matches!(
            check_regular(d),
            Err(Unusable::NotRegular("a folder"))
        ));
        let e = read_text(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
    }

    #[test]
    fn text_files_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.toml");
        std::fs::write(&p, vec![b'#'; MAX_TEXT_FILE as usize]).unwrap();
        assert_eq!(read_text(&p).unwrap().len(), MAX_TEXT_FILE as usize);
        std::fs::write(&p, vec![b'#'; MAX_TEXT_FILE as usize + 1]).unwrap();
        let e = read_text(&p).unwrap_err();
        assert!(e.to_string().contains("larger than 1024 KiB"), "{e}");
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert_eq!(
            read_text(&p).unwrap_err().to_string(),
            "it is not UTF-8 text"
        );
    }
}
