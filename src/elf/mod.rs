//! ELF objects: read-only facts ([`inspect`]) for audits and plans; dynamic-section edits
//! ([`patch`]: RPATH/RUNPATH, NEEDED, SONAME) and the layout checker ([`check`]) that guards them.
//! The header tables are read by one reader, `file.rs`, for the patcher, the checker and the
//! shrinker alike (goblin, in [`inspect`], is the independent second parser).

mod bytes;
pub mod check;
pub mod companion;
mod consts;
mod dynview;
mod file;
pub mod inspect;
pub mod patch;
mod raw;
pub mod shrink;
pub mod sparse;
pub mod strip;
#[cfg(test)]
mod synth;

pub use check::check;
pub use inspect::{ElfInfo, Inspected, Machine, SectionInfo, SegmentInfo, UnsupportedElf, inspect};
pub use patch::{
    DynamicEdits, Method, PatchOutcome, PatchedInPlace, PathKind, patch, patch_in_place,
};

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
    /// A layout invariant does not hold (see [`check`]).
    #[error("ELF layout check failed: {0}")]
    Layout(String),
    /// `replace_needed` names a library the object does not list in DT_NEEDED.
    #[error("`{0}` is not a DT_NEEDED entry of this object")]
    NeededNotFound(String),
    /// The requested edit itself is not valid (empty name, NUL byte, `:` inside a path entry;
    /// device-code blocks that overlap, grow or fall outside their section).
    #[error("invalid edit: {0}")]
    InvalidEdit(String),
    /// The rewritten bytes failed the re-parse or the layout check; nothing was produced.
    #[error("the rewritten object failed its own check, so it was not produced: {0}")]
    OutputCheck(String),
    /// A shrunk file failed its comparison with the input; nothing was produced.
    #[error("the rewritten file failed its self-check: {0}")]
    SelfCheck(String),
}

impl ElfError {
    pub fn hint(&self) -> &'static str {
        match self {
            ElfError::NotElf(_) | ElfError::Truncated(_) | ElfError::Malformed(_) => {
                "the member is not a valid ELF file (cut off or damaged); rebuild the wheel or remove the member"
            }
            ElfError::Unsupported(_)
            | ElfError::Layout(_)
            | ElfError::OutputCheck(_)
            | ElfError::SelfCheck(_) => {
                "wheelslim could not rewrite this object safely; run `wheelslim audit` on the wheel and report the layout if it looks ordinary"
            }
            ElfError::NeededNotFound(_) | ElfError::InvalidEdit(_) => {
                "this is a wheelslim bug: the planned edit does not fit the object; please report it"
            }
        }
    }
}

/// True when `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

/// The shifts (offset in `after` minus offset in `before`) of the sections a rewrite moved
/// whole: sections with the same index, name and type in both that occupy file bytes, the
/// shift covering the most bytes first, at most `max`, 0 left out. They are hints for reusing
/// `before`'s compressed blocks ([`crate::wheel::splice`]) when a rewrite both cuts bytes and
/// adds some elsewhere, so that no single change in length says where the rest went (a
/// companion move: the page cut, then the new segment). A wrong hint costs only a comparison.
/// Empty when either does not parse.
pub fn section_shifts(before: &[u8], after: &[u8], max: usize) -> Vec<i64> {
    let (Ok(a), Ok(b)) = (file::Elf64::parse(before), file::Elf64::parse(after)) else {
        return Vec::new();
    };
    let mut by: Vec<(i64, u64)> = Vec::new();
    for (x, y) in a.shdrs.iter().zip(&b.shdrs) {
        if !x.in_file() || !y.in_file() || x.sh_name != y.sh_name || x.sh_type != y.sh_type {
            continue;
        }
        let (Ok(from), Ok(to)) = (i64::try_from(x.sh_offset), i64::try_from(y.sh_offset)) else {
            continue;
        };
        let shift = to.wrapping_sub(from);
        let bytes = x.sh_size.min(y.sh_size);
        match by.iter_mut().find(|(s, _)| *s == shift) {
            Some(e) => e.1 = e.1.saturating_add(bytes),
            None => by.push((shift, bytes)),
        }
    }
    by.retain(|&(s, n)| s != 0 && n > 0);
    by.sort_by(|p, q| q.1.cmp(&p.1).then(p.0.cmp(&q.0)));
    by.into_iter().take(max).map(|(s, _)| s).collect()
}
