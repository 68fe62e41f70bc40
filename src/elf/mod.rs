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

impl ElfError {
    pub fn hint(&self) -> &'static str {
        match self {
            ElfError::NotElf(_) | ElfError::Truncated(_) | ElfError::Malformed(_) => {
                "the member is named like a shared object but is not a valid ELF file; rebuild the wheel or remove the member"
            }
            ElfError::Unsupported(_) => {
                "wheelslim could not rewrite this object safely; run `wheelslim audit` on the wheel and report the layout if it looks ordinary"
            }
        }
    }
}

/// True when `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}
