//! The apply stage: performs planned edits on member bytes.

pub(crate) mod rewrite;

use crate::elf::{DynamicEdits, ElfError, PathKind, patch};
use crate::plan::ElfEdit;

/// Applies a planned dynamic-section edit to an ELF object and returns the new bytes. The
/// patcher checks its own output (layout invariants and an independent re-parse) before it
/// returns it.
pub fn patch_elf(input: &[u8], edit: &ElfEdit) -> Result<Vec<u8>, ElfError> {
    let edits = DynamicEdits {
        soname: edit.set_soname.clone(),
        replace_needed: edit.rename_needed.clone(),
        search_path: edit.search_path.clone(),
        path_kind: PathKind::Keep,
    };
    Ok(patch(input, &edits)?.data)
}
