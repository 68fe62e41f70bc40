//! Files the user names: wheelslim reads only regular files (or symlinks to them), and checks
//! that before opening one (opening a FIFO for reading waits for a writer, forever; a device
//! may never end). Text files that are not archives (profiles, `pyproject.toml`) are read up
//! to [`MAX_TEXT_FILE`] bytes.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The most wheelslim reads of a text file that is not an archive: profiles and
/// `pyproject.toml` are a few KiB; more is a mistake (`--profile /dev/zero`) or an attack.
pub const MAX_TEXT_FILE: u64 = 1 << 20;

/// Why the paths the user named cannot be taken as inputs or outputs. This module needs nothing
/// of the crate's error; [`crate::Error`] takes each over with the same message and hint.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot list the folder `{}`: {err}", path.display())]
    ListFolder { path: PathBuf, err: io::Error },
    #[error("{}: a folder with no wheels (`*.whl` files) in it", .0.display())]
    NoWheels(PathBuf),
    /// An output folder that is a file, or inside one: `what` says which, `hint` what to give.
    #[error("{what}")]
    NotAFolder { what: String, hint: String },
}

impl InputError {
    pub fn hint(&self) -> Option<String> {
        match self {
            InputError::ListFolder { .. } => None,
            InputError::NoWheels(_) => Some(
                "a folder given as input stands for the wheels directly in it, not in its subfolders; build the wheels first, or name them"
                    .to_string(),
            ),
            InputError::NotAFolder { hint, .. } => Some(hint.clone()),
        }
    }
}

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

/// The wheels the user named: a folder stands for the `*.whl` files directly in it (not in its
/// subfolders, not hidden ones), sorted by name so the order does not depend on the file
/// system; files stay as they are. A wheel both a folder and its own path name is read once. A
/// folder with no wheels is an error.
pub fn expand_folders(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(paths.len());
    let mut from_folders: Vec<PathBuf> = Vec::new();
    for p in paths {
        if !std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
            if !from_folders.contains(p) {
                out.push(p.clone());
            }
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|err| InputError::ListFolder {
            path: p.clone(),
            err,
        })?;
        let mut found: Vec<PathBuf> = Vec::new();
        for e in entries {
            let e = e.map_err(|err| InputError::ListFolder {
                path: p.clone(),
                err,
            })?;
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue; // not a wheel name, which is ASCII
            };
            if name.starts_with('.') || !name.ends_with(".whl") {
                continue;
            }
            let path = p.join(name);
            // A subfolder is not searched, even one named like a wheel; anything else (a FIFO,
            // a dangling link) is passed on, to be refused with its own reason.
            if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            found.push(path);
        }
        if found.is_empty() {
            return Err(InputError::NoWheels(p.clone()));
        }
        found.sort();
        for f in found {
            if !out.contains(&f) {
                from_folders.push(f.clone());
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Checks that an output folder (`-w`, `--runtime-dir`) is not a file, nor inside one, before
/// anything is read: `option` names it in the message.
pub fn check_output_dir(dir: &Path, option: &str) -> Result<(), InputError> {
    for at in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::metadata(at) else {
            continue; // made when the outputs are written
        };
        if meta.is_dir() {
            return Ok(());
        }
        let kind = not_regular(&meta).unwrap_or("a file");
        let what = if at == dir {
            format!("{option} {}: it is {kind}, not a folder", dir.display())
        } else {
            format!(
                "{option} {}: `{}` is {kind}, not a folder",
                dir.display(),
                at.display()
            )
        };
        let parent = at
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or(".".to_string(), |p| p.display().to_string());
        let hint = if at.extension().is_some_and(|e| e == "whl") {
            format!(
                "{option} takes the folder to write the wheels into (made if missing), such as `{option} {parent}`; each output keeps its wheel's file name"
            )
        } else {
            format!(
                "{option} takes a folder to write into (made if missing): name a new or existing folder, such as `{option} wheelhouse`"
            )
        };
        return Err(InputError::NotAFolder { what, hint });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_stand_for_their_wheels_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "b-1.0-py3-none-any.whl",
            "a-1.0-py3-none-any.whl",
            ".hidden.whl",
            "notes.txt",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub.whl")).unwrap();
        std::fs::write(d.join("sub.whl/c-1.0-py3-none-any.whl"), b"x").unwrap();
        let one = PathBuf::from("x.whl");
        let got = expand_folders(&[
            one.clone(),
            d.to_path_buf(),
            d.join("a-1.0-py3-none-any.whl"),
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                one,
                d.join("a-1.0-py3-none-any.whl"),
                d.join("b-1.0-py3-none-any.whl"),
            ]
        );
        // Given itself, a folder named like a wheel is a folder like any other.
        assert_eq!(
            expand_folders(&[d.join("sub.whl")]).unwrap(),
            [d.join("sub.whl/c-1.0-py3-none-any.whl")]
        );
        let empty = d.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = expand_folders(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}: a folder with no wheels (`*.whl` files) in it",
                empty.display()
            )
        );
    }

    #[test]
    fn an_output_folder_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pkg-1.0-py3-none-any.whl");
        std::fs::write(&file, b"x").unwrap();
        let e = check_output_dir(&file, "-w").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("-w {}: it is a file, not a folder", file.display())
        );
        assert!(
            e.hint()
                .unwrap()
                .contains(&format!("`-w {}`", dir.path().display()))
        );
        let e = check_output_dir(&file.join("sub"), "--runtime-dir").unwrap_err();
        assert!(e.to_string().contains("is a file, not a folder"), "{e}");
        assert!(check_output_dir(&dir.path().join("new/deeper"), "-w").is_ok());
        assert!(check_output_dir(dir.path(), "-w").is_ok());
        assert!(check_output_dir(Path::new("relative-new"), "-w").is_ok());
    }

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
