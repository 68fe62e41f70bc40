//! Findings that do not stop a run: what is wrong with one member, what a check found.

use serde::Serialize;

use crate::error::{Error, Location, USAGE_HINT};
use crate::wheel::OpenError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    /// Something could not be read or processed; the command exits 2 at the end.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `wheel!member`, or the wheel alone.
    pub location: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// True when any of the diagnostics is an error.
pub fn any_error<'a>(diagnostics: impl IntoIterator<Item = &'a Diagnostic>) -> bool {
    diagnostics
        .into_iter()
        .any(|d| d.severity == Severity::Error)
}

impl Diagnostic {
    pub fn new(severity: Severity, location: &Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            location: location.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An error turned into a diagnostic (its location and hint kept): the crate's error, or
    /// the wheel reader's.
    pub fn from_error(err: &impl AsDiagnostic) -> Self {
        err.as_diagnostic()
    }
}

/// An error that a run can report and go on: it becomes a [`Severity::Error`] diagnostic.
pub trait AsDiagnostic {
    fn as_diagnostic(&self) -> Diagnostic;
}

impl AsDiagnostic for Error {
    fn as_diagnostic(&self) -> Diagnostic {
        let err = self;
        let (location, message) = match err {
            Error::Zip { location, err } => (location.to_string(), err.to_string()),
            Error::Wheel { location, err } => (location.to_string(), err.to_string()),
            Error::Elf { location, err } => (location.to_string(), err.to_string()),
            Error::DeviceCode { location, err } => (location.to_string(), err.to_string()),
            // The file is the location; the message says what could not be done.
            Error::Io { action, path, err } => (
                path.display().to_string(),
                format!("cannot {action}: {err}"),
            ),
            other => (String::new(), other.to_string()),
        };
        Diagnostic {
            severity: Severity::Error,
            location,
            message,
            hint: err.hint(),
        }
    }
}

/// The same diagnostic as the [`Error`] this open error becomes.
impl AsDiagnostic for OpenError {
    fn as_diagnostic(&self) -> Diagnostic {
        let (location, message, hint) = match self {
            OpenError::Read { path, err } => (
                path.display().to_string(),
                format!("cannot read: {err}"),
                None,
            ),
            OpenError::Zip { location, err } => (
                location.to_string(),
                err.to_string(),
                err.hint().map(str::to_string),
            ),
            OpenError::Wheel { location, err } => (
                location.to_string(),
                err.to_string(),
                err.hint().map(str::to_string),
            ),
            OpenError::NotAWheelName(_) => (
                String::new(),
                self.to_string(),
                Some(USAGE_HINT.to_string()),
            ),
        };
        Diagnostic {
            severity: Severity::Error,
            location,
            message,
            hint,
        }
    }
}
