//! The crate's error type.
//!
//! Every module has its own precise error enum (`wheel::ZipError`, `wheel::WheelError`,
//! `elf::ElfError`, `fatbin::FatbinError`, `profile::ProfileError`); this type attaches *where*
//! the problem is — the wheel and member, written `dist/x.whl!pkg/lib.so` — and a hint that says
//! what the user can do about it.

use std::io;
use std::path::PathBuf;

use crate::elf::ElfError;
use crate::fatbin::FatbinError;
use crate::input::InputError;
use crate::profile::ProfileError;
pub use crate::wheel::Location;
use crate::wheel::writer::WriteError;
use crate::wheel::{OpenError, WheelError, ZipError};

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
    /// A state wheelslim's own code should never reach (a bug, not the input's fault or the
    /// user's): the message, which starts with `internal`, says what broke.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        let hint = e.hint().map(str::to_string);
        match e {
            WriteError::BadEpoch(_) => Error::Usage(e.to_string()),
            WriteError::Io { action, path, err } => Error::Io { action, path, err },
            WriteError::Zip { location, err } => Error::Zip { location, err },
            // Its message says `internal error: …` already.
            WriteError::WrittenTwice { .. } => Error::Internal(e.to_string()),
            WriteError::InputChanged { .. } | WriteError::Differs { .. } => {
                Error::refused(e.to_string(), hint)
            }
        }
    }
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Error {
        let hint = e.hint();
        match e {
            InputError::ListFolder { path, err } => Error::Io {
                action: "list the folder",
                path,
                err,
            },
            InputError::NoWheels(_) | InputError::NotAFolder { .. } => {
                Error::refused(e.to_string(), hint)
            }
        }
    }
}

/// What [`Error::Usage`] says the user can do.
pub(crate) const USAGE_HINT: &str = "see `wheelslim --help`";

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::Read { path, err } => Error::io("read", path, err),
            OpenError::Zip { location, err } => Error::Zip { location, err },
            OpenError::Wheel { location, err } => Error::Wheel { location, err },
            e @ OpenError::NotAWheelName(_) => Error::Usage(e.to_string()),
        }
    }
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, err: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            err,
        }
    }

    /// A state that is a bug in wheelslim: `internal: {what}`.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Error::Internal(format!("internal: {what}"))
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
            Error::Internal(_) => "internal",
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
            Error::Usage(_) => Some(USAGE_HINT.to_string()),
            Error::Internal(_) => None,
        }
    }
}
