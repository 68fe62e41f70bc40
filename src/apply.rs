//! The apply stage: performs planned edits on member bytes.

use crate::elf::ElfError;
use crate::plan::ElfEdit;

/// Applies a planned dynamic-section edit to an ELF object and returns the new bytes (checked).
pub fn patch_elf(input: &[u8], edit: &ElfEdit) -> Result<Vec<u8>, ElfError> {
    let _ = (input, edit);
    Err(ElfError::Unsupported(
        "the ELF patcher is not wired in yet".into(),
    ))
}
