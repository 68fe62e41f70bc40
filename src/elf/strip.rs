//! Debug information in ELF objects: how much of a file it takes.
//!
//! Debug sections (`.debug_*`, and the compressed `.zdebug_*` of older toolchains) are not
//! allocated (no `SHF_ALLOC`): the loader never maps them, so they cost download and disk
//! space but nothing at run time. A compiler wheel can carry hundreds of MB of them in one
//! library.

use super::inspect::{ElfInfo, SectionInfo};

const SHF_ALLOC: u64 = 0x2;

/// True for a section that holds debug information and is not part of the memory image.
pub fn is_debug_section(s: &SectionInfo) -> bool {
    s.in_file
        && s.flags & SHF_ALLOC == 0
        && (s.name.starts_with(".debug_") || s.name.starts_with(".zdebug_"))
}

/// Bytes of the file taken by non-allocated debug sections.
pub fn debug_bytes(info: &ElfInfo) -> u64 {
    info.sections
        .iter()
        .filter(|s| is_debug_section(s))
        .map(|s| s.size)
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, flags: u64, in_file: bool) -> SectionInfo {
        SectionInfo {
            name: name.into(),
            kind: "PROGBITS".into(),
            offset: 0,
            size: 100,
            addr: 0,
            flags,
            in_file,
        }
    }

    #[test]
    fn only_unallocated_debug_sections_count() {
        assert!(is_debug_section(&section(".debug_info", 0, true)));
        assert!(is_debug_section(&section(".zdebug_line", 0, true)));
        assert!(!is_debug_section(&section(".debug_info", SHF_ALLOC, true)));
        assert!(!is_debug_section(&section(".debug_info", 0, false)));
        assert!(!is_debug_section(&section(".symtab", 0, true)));
        assert!(!is_debug_section(&section(".gnu_debuglink", 0, true)));
    }
}
