//! ELF objects: read-only facts ([`inspect`]) for audits and plans.

pub mod inspect;

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
}

/// True when `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}
