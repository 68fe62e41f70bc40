//! The apply stage: performs planned edits on member bytes.

pub(crate) mod rewrite;
pub mod trim;

use crate::changes::Changes;
use crate::elf::{DynamicEdits, ElfError, PathKind, patch_in_place};
use crate::plan::ElfEdit;

/// Applies a planned dynamic-section edit to the ELF object in `buf`, in `buf` itself
/// ([`crate::elf::patch_in_place`]: no second buffer as large as the object), and returns what
/// changed, from which the input's bytes can be read back. The patcher checks its own output
/// (layout invariants and an independent re-parse) first; on an error `buf` holds the input
/// again.
pub fn patch_elf_in_place(buf: &mut Vec<u8>, edit: &ElfEdit) -> Result<Changes, ElfError> {
    Ok(patch_in_place(buf, &dynamic_edits(edit))?.changes)
}

fn dynamic_edits(edit: &ElfEdit) -> DynamicEdits {
    DynamicEdits {
        soname: edit.set_soname.clone(),
        replace_needed: edit.rename_needed.clone(),
        search_path: edit.search_path.clone(),
        path_kind: PathKind::Keep,
    }
}
