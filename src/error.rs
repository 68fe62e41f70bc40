//! The crate's error type.
//!
//! Every module has its own precise error enum (`wheel::ZipError`, `wheel::WheelError`,
//! `elf::ElfError`, `fatbin::FatbinError`, `profile::ProfileError`); this type attaches *where*
//! the problem is — the wheel and member, written `dist/x.whl!pkg/lib.so` — and a hint that says
//! what the user can do about it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::elf::ElfError;
use crate::fatbin::FatbinError;
use crate::profile::ProfileError;
use crate::wheel::{WheelError, ZipError};

/// Where a problem is: a wheel (as the user named it) and optionally a member inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub wheel: String,
    pub member: Option<String>,
}

impl Location {
    pub fn wheel(path: &Path) -> Self {
        Location {
            wheel: path.display().to_string(),
            member: None,
        }
    }

    pub fn member(path: &Path, member: &str) -> Self {
        Location {
            wheel: path.display().to_string(),
            member: Some(member.to_string()),
        }
    }

    pub fn with_member(&self, member: &str) -> Self {
        Location {
            wheel: self.wheel.clone(),
            member: Some(member.to_string()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.member {
            Some(m) => write!(f, "{}!{}", self.wheel, m),
            None => f.write_str(&self.wheel),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} `{}`: {err}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("{location}: {err}")]
    Zip { location: Location, err: ZipError },
    #[error("{location}: {err}")]
    Wheel { location: Location, err: WheelError },
    #[error("{location}: {err}")]
    Elf { location: Location, err: ElfError },
    #[error("{location}: {err}")]
    DeviceCode {
        location: Location,
        err: FatbinError,
    },
    #[error("{0}")]
    Profile(#[from] ProfileError),
    /// A decision the planner or the writer refuses to make, with what would make it possible.
    #[error("{message}")]
    Refused {
        message: String,
        hint: Option<String>,
    },
    /// A command-line or configuration mistake.
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, err: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            err,
        }
    }

    pub fn refused(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Refused {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A short stable name for the kind of error, used in `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Zip { .. } => "zip",
            Error::Wheel { .. } => "wheel",
            Error::Elf { .. } => "elf",
            Error::DeviceCode { .. } => "device-code",
            Error::Profile(_) => "profile",
            Error::Refused { .. } => "refused",
            Error::Usage(_) => "usage",
        }
    }

    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Zip { location, .. }
            | Error::Wheel { location, .. }
            | Error::Elf { location, .. }
            | Error::DeviceCode { location, .. } => Some(location),
            _ => None,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Io { .. } => None,
            Error::Zip { err, .. } => err.hint().map(str::to_string),
            Error::Wheel { err, .. } => err.hint().map(str::to_string),
            Error::Elf { err, .. } => Some(err.hint().to_string()),
            Error::DeviceCode { .. } => Some(
                "the embedded device code is damaged; rebuild the library, or run without device-code trimming"
                    .to_string(),
            ),
            Error::Profile(_) => Some(
                "check the profile's TOML against `wheelslim profiles show cuda12`".to_string(),
            ),
            Error::Refused { hint, .. } => hint.clone(),
            Error::Usage(_) => Some("see `wheelslim --help`".to_string()),
        }
    }
}
