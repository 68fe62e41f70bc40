//! Wheels: the filename, the archive, and the `.dist-info` files (`WHEEL`, `METADATA`,
//! `RECORD`), read once and kept in memory; member data stays in the archive until asked for.

pub mod access;
pub mod deflate;
pub mod filename;
pub mod headers;
mod location;
pub mod record;
pub mod splice;
pub mod temp;
pub mod writer;
pub mod zip;

use std::path::{Path, PathBuf};

pub use filename::{WheelFilename, normalize_name};
pub use headers::HeaderFile;
pub use location::Location;
pub use record::{Record, RecordEntry};
pub use zip::{Limits, Member, ZipArchive, ZipError};

/// The normalized project name a `Requires-Dist` value names (`nvidia-cublas-cu12>=12; ...` →
/// `nvidia-cublas-cu12`).
/// The first member that is a file while another member lies inside it (`pkg/a` and
/// `pkg/a/b`), as (file, member inside): no installer can write both.
fn file_and_folder(members: &[zip::Member]) -> Option<(String, String)> {
    let files: std::collections::HashSet<&str> = members
        .iter()
        .filter(|m| !m.is_dir)
        .map(|m| m.name.as_str())
        .collect();
    for m in members {
        let name = m.name.trim_end_matches('/');
        if m.is_dir && files.contains(name) {
            return Some((name.to_string(), m.name.clone()));
        }
        let mut rest = name;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            if files.contains(parent) {
                return Some((parent.to_string(), m.name.clone()));
            }
            rest = parent;
        }
    }
    None
}

pub fn requirement_name(requirement: &str) -> String {
    let name: String = requirement
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    normalize_name(&name)
}

/// Problems with the wheel layer above the zip format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WheelError {
    #[error("{0}")]
    Filename(#[from] filename::FilenameError),
    #[error("no `.dist-info` folder")]
    NoDistInfo,
    #[error("more than one `.dist-info` folder: {0}")]
    SeveralDistInfo(String),
    #[error("`.dist-info` folder `{found}` does not match the filename (expected `{expected}`)")]
    DistInfoMismatch { found: String, expected: String },
    #[error("METADATA names the project `{found}`, the filename `{expected}`")]
    MetadataName { found: String, expected: String },
    #[error("missing `{0}`")]
    Missing(String),
    #[error("`{file}` is not valid UTF-8")]
    NotUtf8 { file: String },
    #[error("`{file}`: {reason}")]
    BadHeaderFile { file: String, reason: String },
    #[error("{0}")]
    Record(#[from] record::RecordError),
    #[error("cannot read `{file}`: {err}")]
    Unreadable { file: String, err: ZipError },
    #[error("no such file")]
    NotFound,
    #[error("no such file: the shell left the pattern as it was, so nothing matches it")]
    PatternMatchesNothing,
    #[error("a symlink to a file that does not exist")]
    DanglingSymlink,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("cannot open: {0}")]
    CannotOpen(String),
    #[error("`{file}` is both a file and a folder (it holds `{inside}`)")]
    FileAndFolder { file: String, inside: String },
}

impl WheelError {
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            WheelError::Filename(_) => {
                "wheel files must be named `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`"
            }
            WheelError::NoDistInfo
            | WheelError::SeveralDistInfo(_)
            | WheelError::DistInfoMismatch { .. } => {
                "a wheel must hold exactly one `{name}-{version}.dist-info` folder; rebuild it"
            }
            WheelError::NotFound | WheelError::DanglingSymlink => {
                "check the path: wheelslim takes wheel files, such as dist/name-1.0-py3-none-any.whl"
            }
            WheelError::PatternMatchesNothing => {
                "check the folder and the pattern, or build the wheels first"
            }
            WheelError::NotRegular("a folder") => "give the wheel files in it, such as dir/*.whl",
            WheelError::NotRegular(_) => {
                "wheelslim reads wheels only from regular files (or symlinks to them); save it to a file first"
            }
            WheelError::CannotOpen(_) => "check the file's permissions",
            WheelError::FileAndFolder { .. } => {
                "no installer can write both (pip stops with \"Not a directory\"); rebuild the wheel without one of them"
            }
            _ => "the wheel's metadata is damaged; rebuild the wheel",
        })
    }

    /// Why an input path is not a wheel file wheelslim can open, before its name is looked at.
    fn unusable(path: &Path, why: crate::input::Unusable) -> WheelError {
        use crate::input::Unusable;
        match why {
            Unusable::Missing
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(['*', '?', '['])) =>
            {
                WheelError::PatternMatchesNothing
            }
            Unusable::Missing => WheelError::NotFound,
            Unusable::Dangling => WheelError::DanglingSymlink,
            Unusable::NotRegular(kind) => WheelError::NotRegular(kind),
            Unusable::Other(e) => WheelError::CannotOpen(e.to_string()),
        }
    }
}

/// Why [`Wheel::open`] failed. The wheel layer has its own error so it needs nothing of the
/// crate's; [`crate::Error`] takes each variant over as it is, with the same message.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be read.
    #[error("cannot read `{}`: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{location}: {err}")]
    Zip { location: Location, err: ZipError },
    #[error("{location}: {err}")]
    Wheel { location: Location, err: WheelError },
    /// The path ends in no file name a wheel could have (`..`, `/`, not UTF-8).
    #[error("`{}` is not a wheel file name", .0.display())]
    NotAWheelName(PathBuf),
}

/// An opened wheel.
#[derive(Debug)]
pub struct Wheel {
    /// The path as the user gave it (used in messages).
    pub path: PathBuf,
    pub filename: WheelFilename,
    pub archive: ZipArchive,
    /// `{name}-{version}.dist-info`, without a trailing slash.
    pub dist_info: String,
    pub wheel_file: HeaderFile,
    pub metadata: HeaderFile,
    pub record: Record,
}

/// Where a member lands when the wheel is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Purelib,
    Platlib,
    Scripts,
    Headers,
    Data,
}

impl Wheel {
    pub fn open(path: &Path, limits: &Limits) -> Result<Wheel, OpenError> {
        Self::open_as(path, path, limits)
    }

    /// Opens the file at `file`, named and reported as `path` (used for finished wheels that
    /// still sit in a temporary file).
    pub fn open_as(file: &Path, path: &Path, limits: &Limits) -> Result<Wheel, OpenError> {
        let location = Location::wheel(path);
        // What the path is comes first: a missing file is not a badly named one.
        crate::input::check_regular(file).map_err(|why| OpenError::Wheel {
            location: location.clone(),
            err: WheelError::unusable(path, why),
        })?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| OpenError::NotAWheelName(path.to_path_buf()))?;
        let filename: WheelFilename = name.parse().map_err(|e| OpenError::Wheel {
            location: location.clone(),
            err: WheelError::Filename(e),
        })?;
        let archive = ZipArchive::open(file, limits).map_err(|e| match e {
            zip::ArchiveOpenError::Io(err) => OpenError::Read {
                path: file.to_path_buf(),
                err,
            },
            zip::ArchiveOpenError::Zip(err) => OpenError::Zip {
                location: location.clone(),
                err,
            },
        })?;
        let werr = |err| OpenError::Wheel {
            location: location.clone(),
            err,
        };
        if let Some((file, inside)) = file_and_folder(archive.members()) {
            return Err(werr(WheelError::FileAndFolder { file, inside }));
        }
        let mut dist_infos: Vec<&str> = archive
            .members()
            .iter()
            .filter_map(|m| m.name.split_once('/').map(|(top, _)| top))
            .filter(|top| top.ends_with(".dist-info"))
            .collect();
        dist_infos.sort_unstable();
        dist_infos.dedup();
        let dist_info = match dist_infos.as_slice() {
            [] => return Err(werr(WheelError::NoDistInfo)),
            [one] => one.to_string(),
            many => return Err(werr(WheelError::SeveralDistInfo(many.join(", ")))),
        };
        let expected = format!("{}.dist-info", filename.dist_info_prefix());
        let (found_name, found_version) = dist_info
            .trim_end_matches(".dist-info")
            .rsplit_once('-')
            .unwrap_or((&dist_info, ""));
        if normalize_name(found_name) != filename.normalized_name()
            || found_version != filename.version
        {
            return Err(werr(WheelError::DistInfoMismatch {
                found: dist_info,
                expected,
            }));
        }
        let read_text = |file: &str| -> Result<String, OpenError> {
            let full = format!("{dist_info}/{file}");
            let m = archive
                .member(&full)
                .ok_or_else(|| werr(WheelError::Missing(full.clone())))?;
            let bytes = archive.read(m).map_err(|err| OpenError::Zip {
                location: location.with_member(&full),
                err,
            })?;
            String::from_utf8(bytes).map_err(|_| werr(WheelError::NotUtf8 { file: full.clone() }))
        };
        let parse_headers = |file: &str| -> Result<HeaderFile, OpenError> {
            let text = read_text(file)?;
            HeaderFile::parse(&text).map_err(|e| {
                werr(WheelError::BadHeaderFile {
                    file: format!("{dist_info}/{file}"),
                    reason: e.to_string(),
                })
            })
        };
        let wheel_file = parse_headers("WHEEL")?;
        // pip refuses a wheel whose Wheel-Version major is above 1 (its format may differ in
        // ways this reader cannot know), so an output built from it would not install either.
        if let Some(v) = wheel_file.get("Wheel-Version")
            && let Some(major) = v
                .trim()
                .split('.')
                .next()
                .and_then(|m| m.parse::<u64>().ok())
            && major > 1
        {
            return Err(werr(WheelError::BadHeaderFile {
                file: format!("{dist_info}/WHEEL"),
                reason: format!(
                    "Wheel-Version {} is not supported (installers such as pip accept only \
                     major version 1); rebuild the wheel with a current build backend",
                    v.trim()
                ),
            }));
        }
        let metadata = parse_headers("METADATA")?;
        // The project name becomes file and folder names of the outputs (runtime wheels), so
        // it must be the filename's, as installers require too.
        if let Some(found) = metadata.get("Name")
            && normalize_name(found) != filename.normalized_name()
        {
            return Err(OpenError::Wheel {
                location: location.with_member(&format!("{dist_info}/METADATA")),
                err: WheelError::MetadataName {
                    found: found.to_string(),
                    expected: filename.name.clone(),
                },
            });
        }
        let record = Record::parse(&read_text("RECORD")?).map_err(|e| werr(e.into()))?;
        Ok(Wheel {
            path: path.to_path_buf(),
            filename,
            archive,
            dist_info,
            wheel_file,
            metadata,
            record,
        })
    }

    pub fn location(&self) -> Location {
        Location::wheel(&self.path)
    }

    pub fn member_location(&self, member: &str) -> Location {
        Location::member(&self.path, member)
    }

    pub fn root_is_purelib(&self) -> bool {
        self.wheel_file
            .get("Root-Is-Purelib")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// `{name}-{version}.data`
    pub fn data_dir(&self) -> String {
        format!("{}.data", self.dist_info.trim_end_matches(".dist-info"))
    }

    /// Where a member is installed: the scheme and the path inside it.
    pub fn install_path<'a>(&self, member: &'a str) -> (Scheme, &'a str) {
        let data = self.data_dir();
        if let Some(rest) = member
            .strip_prefix(data.as_str())
            .and_then(|r| r.strip_prefix('/'))
            && let Some((scheme, inner)) = rest.split_once('/')
        {
            let s = match scheme {
                "purelib" => Scheme::Purelib,
                "platlib" => Scheme::Platlib,
                "scripts" => Scheme::Scripts,
                "headers" => Scheme::Headers,
                _ => Scheme::Data,
            };
            return (s, inner);
        }
        let root = if self.root_is_purelib() {
            Scheme::Purelib
        } else {
            Scheme::Platlib
        };
        (root, member)
    }

    /// The project name from METADATA (falls back to the filename).
    pub fn project_name(&self) -> String {
        self.metadata
            .get("Name")
            .map(str::to_string)
            .unwrap_or_else(|| self.filename.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> zip::Member {
        zip::Member {
            name: name.to_string(),
            method: zip::Method::Stored,
            flags: 0,
            crc32: 0,
            compressed_size: 0,
            size: 0,
            local_header_offset: 0,
            data_offset: 0,
            unix_mode: None,
            dos_time: 0,
            dos_date: 0,
            is_dir: name.ends_with('/'),
            is_symlink: false,
            problem: None,
        }
    }

    fn clash(names: &[&str]) -> Option<(String, String)> {
        file_and_folder(&names.iter().map(|n| member(n)).collect::<Vec<_>>())
    }

    /// Issue 11 item 7: pip fails on these with "Not a directory" / "Is a directory".
    #[test]
    fn a_file_that_is_also_a_folder_is_found_in_any_order() {
        let want = Some(("pkg/a".to_string(), "pkg/a/b/c.py".to_string()));
        assert_eq!(clash(&["pkg/a", "pkg/a/b/c.py"]), want);
        assert_eq!(clash(&["pkg/a/b/c.py", "pkg/a"]), want);
        assert_eq!(
            clash(&["pkg/a/", "pkg/a"]),
            Some(("pkg/a".to_string(), "pkg/a/".to_string()))
        );
        assert_eq!(clash(&["pkg/a.py", "pkg/ab/c.py", "pkg/", "pkg/ab/"]), None);
    }
}
