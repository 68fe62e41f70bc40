//! Where a problem is: a wheel, and a member inside it, written `dist/x.whl!pkg/lib.so`.
//!
//! It lives with the wheel reader, which names it in its own errors; [`crate::Error`] and the
//! diagnostics carry it as it is.

use std::fmt;
use std::path::Path;

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
