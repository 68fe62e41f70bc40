//! Profiles: which vendor libraries exist, and what to do with them.

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{0}")]
    Invalid(String),
}
