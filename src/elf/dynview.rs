//! The dynamic section seen through the program headers, as `ld.so` sees it: the dynamic array,
//! the dynamic string table (DT_STRTAB/DT_STRSZ) and the symbol-version tables.

use super::ElfError;
use super::file::{self, Elf64, ProgramHeader};
use super::raw::{self, Dynamic, Verneed};
use crate::elf::consts::{
    DT_NEEDED, DT_STRSZ, DT_STRTAB, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM,
};

/// Where the dynamic string table is: file offset, link-time address and DT_STRSZ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StrTab {
    pub offset: u64,
    pub vaddr: u64,
    pub size: u64,
}

#[derive(Debug)]
pub(crate) struct DynView<'a> {
    pub segment: ProgramHeader,
    pub dynamic: Dynamic,
    pub strtab: StrTab,
    /// The `DT_STRSZ` bytes of the string table.
    pub strings: &'a [u8],
    pub verneed: Vec<Verneed>,
    pub verdef_names: Vec<u32>,
}

/// The end of the file-backed bytes of the PT_LOAD that holds `vaddr`.
fn load_file_end(elf: &Elf64, vaddr: u64) -> Option<u64> {
    elf.loads()
        .find(|p| p.file_offset_of(vaddr, 0).is_some())
        .and_then(ProgramHeader::file_end)
}

fn table_offset(
    elf: &Elf64,
    dynamic: &Dynamic,
    tag: u64,
    what: &str,
) -> Result<Option<(u64, u64)>, ElfError> {
    let Some(addr) = dynamic.get(tag) else {
        return Ok(None);
    };
    let off = elf.vaddr_to_offset(addr, 1).ok_or_else(|| {
        ElfError::Malformed(format!(
            "{what} {addr:#x} is not file-backed in any PT_LOAD"
        ))
    })?;
    let limit = load_file_end(elf, addr).unwrap_or(off);
    Ok(Some((off, limit)))
}

impl<'a> DynView<'a> {
    /// Reads the dynamic section of `elf`; `None` when the object has no PT_DYNAMIC.
    pub fn parse(elf: &Elf64<'a>) -> Result<Option<Self>, ElfError> {
        let Some((_, segment)) = elf.dynamic_segment()? else {
            return Ok(None);
        };
        let Some(dynamic) = elf.dynamic()? else {
            return Ok(None);
        };
        let (Some(vaddr), Some(size)) = (dynamic.get(DT_STRTAB), dynamic.get(DT_STRSZ)) else {
            return Err(ElfError::Malformed(
                "the dynamic section has no DT_STRTAB/DT_STRSZ".into(),
            ));
        };
        let offset = elf.vaddr_to_offset(vaddr, size).ok_or_else(|| {
            ElfError::Malformed(format!(
                "DT_STRTAB {vaddr:#x} + DT_STRSZ {size:#x} is not file-backed inside one PT_LOAD"
            ))
        })?;
        let strings = raw::bytes(elf.data, offset, size, "the dynamic string table")?;
        let verneed = match table_offset(elf, &dynamic, DT_VERNEED, "DT_VERNEED")? {
            Some((off, limit)) => {
                let count = dynamic.get(DT_VERNEEDNUM).ok_or_else(|| {
                    ElfError::Malformed("DT_VERNEED without DT_VERNEEDNUM".into())
                })?;
                raw::read_verneed(elf.data, off, count, limit)?
            }
            None => Vec::new(),
        };
        let verdef_names = match table_offset(elf, &dynamic, DT_VERDEF, "DT_VERDEF")? {
            Some((off, limit)) => {
                let count = dynamic
                    .get(DT_VERDEFNUM)
                    .ok_or_else(|| ElfError::Malformed("DT_VERDEF without DT_VERDEFNUM".into()))?;
                raw::read_verdef_names(elf.data, off, count, limit)?
            }
            None => Vec::new(),
        };
        Ok(Some(DynView {
            segment,
            dynamic,
            strtab: StrTab {
                offset,
                vaddr,
                size,
            },
            strings,
            verneed,
            verdef_names,
        }))
    }

    /// The string at `off` in the dynamic string table, NUL excluded.
    pub fn string(&self, off: u64) -> Result<&'a [u8], ElfError> {
        file::c_str(self.strings, off).ok_or_else(|| {
            ElfError::Malformed(format!(
                "string offset {off:#x} is not a NUL-terminated string inside DT_STRSZ {:#x}",
                self.strtab.size
            ))
        })
    }

    /// The DT_NEEDED names, in order.
    pub fn needed(&self) -> Result<Vec<&'a [u8]>, ElfError> {
        self.dynamic
            .entries
            .iter()
            .filter(|e| e.tag == DT_NEEDED)
            .map(|e| self.string(e.val))
            .collect()
    }
}
