//! What the patcher ([`super::patch`]) and the dynamic-section view (`dynview.rs`) read and
//! write *through* the headers: the dynamic array and the symbol-version tables. The
//! bounds-checked accessors are `bytes.rs`'s, re-exported under the names the patcher uses.
//!
//! The headers themselves are read by the one ELF reader, `file.rs` ([`Elf64`]).

use super::ElfError;
use super::file::{DynEntry, Elf64, ProgramHeader};
use crate::elf::consts::{
    DYN_SIZE, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_GNU_PROPERTY, PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL,
    PT_PHDR, PT_TLS,
};

/// A readable name for a segment type, as readelf prints it.
pub(crate) fn segment_name(p_type: u32) -> String {
    match p_type {
        PT_NULL => "NULL".into(),
        PT_LOAD => "LOAD".into(),
        PT_DYNAMIC => "DYNAMIC".into(),
        PT_INTERP => "INTERP".into(),
        PT_NOTE => "NOTE".into(),
        PT_PHDR => "PHDR".into(),
        PT_TLS => "TLS".into(),
        PT_GNU_EH_FRAME => "GNU_EH_FRAME".into(),
        0x6474_e551 => "GNU_STACK".into(),
        0x6474_e552 => "GNU_RELRO".into(),
        PT_GNU_PROPERTY => "GNU_PROPERTY".into(),
        o => format!("{o:#x}"),
    }
}

pub(crate) use super::bytes::{
    align_up, bytes_at as bytes, overlaps, put_u64, range, u16_at, u32_at, u64_at,
};

impl Elf64<'_> {
    /// The single PT_DYNAMIC segment, if any.
    pub fn dynamic_segment(&self) -> Result<Option<(usize, ProgramHeader)>, ElfError> {
        let mut found = None;
        for (i, p) in self.phdrs.iter().enumerate() {
            if p.p_type == PT_DYNAMIC {
                if found.is_some() {
                    return Err(ElfError::Malformed(
                        "more than one PT_DYNAMIC segment".into(),
                    ));
                }
                found = Some((i, *p));
            }
        }
        Ok(found)
    }

    /// Reads the dynamic array of PT_DYNAMIC (through its file offset).
    pub fn dynamic(&self) -> Result<Option<Dynamic>, ElfError> {
        let Some((_, seg)) = self.dynamic_segment()? else {
            return Ok(None);
        };
        let raw = bytes(
            self.data,
            seg.p_offset,
            seg.p_filesz,
            "the PT_DYNAMIC segment",
        )?;
        let slots = raw.len() / DYN_SIZE as usize;
        let (entries, terminated) = super::file::read_dynamic(raw)?;
        if !terminated {
            return Err(ElfError::Malformed(
                "the dynamic array has no DT_NULL terminator".into(),
            ));
        }
        Ok(Some(Dynamic {
            offset: seg.p_offset,
            slots,
            entries,
        }))
    }
}

/// The dynamic array: the entries before the first DT_NULL, and how many 16-byte slots the
/// segment holds in all (the rest is DT_NULL slack).
#[derive(Debug, Clone)]
pub(crate) struct Dynamic {
    pub offset: u64,
    pub slots: usize,
    pub entries: Vec<DynEntry>,
}

impl Dynamic {
    pub fn get(&self, tag: u64) -> Option<u64> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.val)
    }
}

/// One `Elf64_Verneed` entry: where its `vn_file` field is, its value, and its auxiliary
/// `vna_name` values.
#[derive(Debug, Clone)]
pub(crate) struct Verneed {
    pub file_field: u64,
    pub file: u32,
    pub names: Vec<u32>,
}

/// Walks `.gnu.version_r` (`count` entries at file offset `off`, inside `data[..limit]`).
pub(crate) fn read_verneed(
    data: &[u8],
    off: u64,
    count: u64,
    limit: u64,
) -> Result<Vec<Verneed>, ElfError> {
    let area = bytes(data, 0, limit, "the version-needs table")?;
    // Every entry takes 16 bytes, so a count beyond the area is a lie; refuse before allocating.
    if count > limit / 16 {
        return Err(ElfError::Malformed(format!(
            "DT_VERNEEDNUM {count} does not fit in the version-needs table"
        )));
    }
    let mut out = Vec::new();
    let mut at = advance(off, 0, limit, "DT_VERNEED")?;
    // Auxiliary entries are 16 bytes each too: more of them than fit means overlapping chains.
    let mut budget = limit / 16;
    for i in 0..count {
        let cnt = u16_at(area, at + 2)?;
        budget = budget.checked_sub(u64::from(cnt)).ok_or_else(|| {
            ElfError::Malformed("the version-needs auxiliary entries overlap".into())
        })?;
        let file = u32_at(area, at + 4)?;
        let aux = u32_at(area, at + 8)?;
        let next = u32_at(area, at + 12)?;
        let mut names = Vec::new();
        let mut a = advance(at, aux, limit, "vn_aux")?;
        for j in 0..cnt {
            names.push(u32_at(area, a + 8)?);
            let anext = u32_at(area, a + 12)?;
            if j + 1 < cnt {
                if anext == 0 {
                    return Err(ElfError::Malformed(
                        "a version-needs entry ends its auxiliary list early".into(),
                    ));
                }
                a = advance(a, anext, limit, "vna_next")?;
            }
        }
        out.push(Verneed {
            file_field: at + 4,
            file,
            names,
        });
        if i + 1 < count {
            if next == 0 {
                return Err(ElfError::Malformed(format!(
                    "the version-needs list ends after {} of {count} entries",
                    i + 1
                )));
            }
            at = advance(at, next, limit, "vn_next")?;
        }
    }
    Ok(out)
}

/// Walks `.gnu.version_d` and returns every `vda_name` value.
pub(crate) fn read_verdef_names(
    data: &[u8],
    off: u64,
    count: u64,
    limit: u64,
) -> Result<Vec<u32>, ElfError> {
    let area = bytes(data, 0, limit, "the version-definitions table")?;
    if count > limit / 20 {
        return Err(ElfError::Malformed(format!(
            "DT_VERDEFNUM {count} does not fit in the version-definitions table"
        )));
    }
    let mut names = Vec::new();
    let mut at = advance(off, 0, limit, "DT_VERDEF")?;
    let mut budget = limit / 8;
    for i in 0..count {
        let cnt = u16_at(area, at + 6)?;
        budget = budget.checked_sub(u64::from(cnt)).ok_or_else(|| {
            ElfError::Malformed("the version-definition auxiliary entries overlap".into())
        })?;
        let aux = u32_at(area, at + 12)?;
        let next = u32_at(area, at + 16)?;
        let mut a = advance(at, aux, limit, "vd_aux")?;
        for j in 0..cnt {
            names.push(u32_at(area, a)?);
            let anext = u32_at(area, a + 4)?;
            if j + 1 < cnt {
                if anext == 0 {
                    return Err(ElfError::Malformed(
                        "a version definition ends its auxiliary list early".into(),
                    ));
                }
                a = advance(a, anext, limit, "vda_next")?;
            }
        }
        if i + 1 < count {
            if next == 0 {
                return Err(ElfError::Malformed(format!(
                    "the version-definitions list ends after {} of {count} entries",
                    i + 1
                )));
            }
            at = advance(at, next, limit, "vd_next")?;
        }
    }
    Ok(names)
}

/// `at + step`, refused unless it stays below `limit` (so later `+ 16` reads cannot overflow).
fn advance(at: u64, step: u32, limit: u64, field: &str) -> Result<u64, ElfError> {
    at.checked_add(u64::from(step))
        .filter(|&n| n < limit)
        .ok_or_else(|| ElfError::Malformed(format!("{field} points past the version table")))
}
