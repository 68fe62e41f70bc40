//! ELF objects: read-only facts ([`inspect`]) for audits and plans.

pub mod inspect;
pub(crate) mod shrink_layout;
pub mod shrink;
mod shrink_cut;
mod shrink_pack;
mod shrink_phdrs;
mod shrink_refs;
mod shrink_verify;
pub(crate) mod tables;

pub use inspect::{ElfInfo, Inspected, Machine, SectionInfo, SegmentInfo, UnsupportedElf, inspect};

/// Problems reading or editing an ELF object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file (starts with {0})")]
    NotElf(String),
    #[error("truncated ELF file ({0})")]
    Truncated(String),
    #[error("malformed ELF file: {0}")]
    Malformed(String),
    #[error("cannot rewrite: {0}")]
    Unsupported(String),
    #[error("invalid section edit: {0}")]
    InvalidEdit(String),
    #[error("the rewritten file failed its self-check: {0}")]
    SelfCheck(String),
}

/// True when `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}
