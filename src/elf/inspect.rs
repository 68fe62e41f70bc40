//! Facts about an ELF object, read with goblin: SONAME, NEEDED, RPATH/RUNPATH, the symbol
//! versions it requires (GLIBC, GLIBCXX...), sections with sizes, and PT_LOAD alignment.

use goblin::elf::{Elf, dynamic, program_header as ph, section_header as sh};
use serde::Serialize;

use super::ElfError;

/// The machines wheelslim rewrites; others are described but left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    X86_64,
    Aarch64,
    Ppc64le,
    /// An NVIDIA GPU code object (`EM_CUDA`): a cubin.
    Cuda,
    /// An AMD GPU code object (`EM_AMDGPU`): an hsaco.
    Amdgpu,
    #[serde(untagged)]
    Other(u16),
}

impl Machine {
    fn from_e_machine(m: u16) -> Machine {
        match m {
            62 => Machine::X86_64,
            183 => Machine::Aarch64,
            21 => Machine::Ppc64le,
            190 => Machine::Cuda,
            224 => Machine::Amdgpu,
            o => Machine::Other(o),
        }
    }

    pub fn is_device(self) -> bool {
        matches!(self, Machine::Cuda | Machine::Amdgpu)
    }

    /// The CPU part of a platform tag (`x86_64`, `aarch64`, `ppc64le`).
    pub fn platform_arch(self) -> Option<&'static str> {
        match self {
            Machine::X86_64 => Some("x86_64"),
            Machine::Aarch64 => Some("aarch64"),
            Machine::Ppc64le => Some("ppc64le"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Machine::X86_64 => f.write_str("x86_64"),
            Machine::Aarch64 => f.write_str("aarch64"),
            Machine::Ppc64le => f.write_str("ppc64le"),
            Machine::Cuda => f.write_str("cuda"),
            Machine::Amdgpu => f.write_str("amdgpu"),
            Machine::Other(m) => write!(f, "e_machine {m}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionInfo {
    pub name: String,
    /// `sh_type`, as readelf names it where known.
    pub kind: String,
    pub offset: u64,
    pub size: u64,
    pub addr: u64,
    pub flags: u64,
    /// Occupies bytes in the file (not NOBITS).
    pub in_file: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub kind: String,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
    /// `R`, `W`, `X` letters.
    pub flags: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionNeed {
    pub file: String,
    pub versions: Vec<String>,
}

/// Facts about a host ELF object (64-bit little-endian).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    pub machine: Machine,
    /// `shared-object`, `executable` (a PIE included), `relocatable`, `core`, `other`.
    pub kind: &'static str,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
    pub interpreter: Option<String>,
    pub version_needs: Vec<VersionNeed>,
    /// Highest `GLIBC_x.y` version required, if any.
    pub glibc: Option<String>,
    /// Highest `GLIBCXX_3.4.x` version required, if any.
    pub glibcxx: Option<String>,
    /// Highest `CXXABI_1.3.x` version required, if any.
    pub cxxabi: Option<String>,
    pub sections: Vec<SectionInfo>,
    pub segments: Vec<SegmentInfo>,
    /// Largest PT_LOAD alignment (page size the object was linked for).
    pub load_align: u64,
    /// Has a `.symtab` (not stripped).
    pub has_symtab: bool,
    pub has_debug_info: bool,
}

impl ElfInfo {
    pub fn section(&self, name: &str) -> Option<&SectionInfo> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// An ELF object wheelslim describes but does not rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnsupportedElf {
    /// 32 or 64.
    pub class: u8,
    pub big_endian: bool,
    pub machine: Machine,
    pub reason: String,
}

/// What a member that starts with the ELF magic turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Inspected {
    Host(Box<ElfInfo>),
    /// A GPU code object (cubin, hsaco); `flags` is `e_flags` (it encodes the target).
    Device {
        machine: Machine,
        flags: u32,
    },
    Unsupported(UnsupportedElf),
}

fn section_kind(t: u32) -> String {
    match t {
        sh::SHT_NULL => "NULL".into(),
        sh::SHT_PROGBITS => "PROGBITS".into(),
        sh::SHT_SYMTAB => "SYMTAB".into(),
        sh::SHT_STRTAB => "STRTAB".into(),
        sh::SHT_RELA => "RELA".into(),
        sh::SHT_HASH => "HASH".into(),
        sh::SHT_DYNAMIC => "DYNAMIC".into(),
        sh::SHT_NOTE => "NOTE".into(),
        sh::SHT_NOBITS => "NOBITS".into(),
        sh::SHT_REL => "REL".into(),
        sh::SHT_DYNSYM => "DYNSYM".into(),
        sh::SHT_INIT_ARRAY => "INIT_ARRAY".into(),
        sh::SHT_FINI_ARRAY => "FINI_ARRAY".into(),
        sh::SHT_GNU_HASH => "GNU_HASH".into(),
        sh::SHT_GNU_VERSYM => "VERSYM".into(),
        sh::SHT_GNU_VERNEED => "VERNEED".into(),
        sh::SHT_GNU_VERDEF => "VERDEF".into(),
        0x6fff_4c03 => "RELR".into(),
        19 => "RELR".into(),
        o => format!("{o:#x}"),
    }
}

fn segment_kind(t: u32) -> String {
    match t {
        ph::PT_LOAD => "LOAD".into(),
        ph::PT_DYNAMIC => "DYNAMIC".into(),
        ph::PT_INTERP => "INTERP".into(),
        ph::PT_NOTE => "NOTE".into(),
        ph::PT_PHDR => "PHDR".into(),
        ph::PT_TLS => "TLS".into(),
        ph::PT_GNU_EH_FRAME => "GNU_EH_FRAME".into(),
        ph::PT_GNU_STACK => "GNU_STACK".into(),
        ph::PT_GNU_RELRO => "GNU_RELRO".into(),
        0x6474_e553 => "GNU_PROPERTY".into(),
        o => format!("{o:#x}"),
    }
}

/// Compares dotted versions numerically (`2.17` < `2.34`).
fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn highest(versions: &[VersionNeed], prefix: &str) -> Option<String> {
    versions
        .iter()
        .flat_map(|n| n.versions.iter())
        .filter_map(|v| v.strip_prefix(prefix))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .max_by_key(|v| version_key(v))
        .map(str::to_string)
}

fn split_paths(list: &[&str]) -> Vec<String> {
    list.iter()
        .flat_map(|s| s.split(':'))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Describes an ELF object. 32-bit and big-endian objects are described as unsupported (not an
/// error); GPU code objects are recognised by their machine.
pub fn inspect(data: &[u8]) -> Result<Inspected, ElfError> {
    if !super::is_elf(data) {
        let head: String = data
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(ElfError::NotElf(if head.is_empty() {
            "nothing: the file is empty".into()
        } else {
            head
        }));
    }
    if data.len() < 20 {
        return Err(ElfError::Truncated("shorter than an ELF header".into()));
    }
    let class = data[4];
    let big_endian = data[5] == 2;
    let e_machine = if big_endian {
        u16::from_be_bytes([data[18], data[19]])
    } else {
        u16::from_le_bytes([data[18], data[19]])
    };
    let machine = Machine::from_e_machine(e_machine);
    if class != 2 || big_endian {
        let what = match (class, big_endian) {
            (1, false) => "32-bit",
            (1, true) => "32-bit big-endian",
            (2, true) => "big-endian",
            _ => "unknown ELF class",
        };
        return Ok(Inspected::Unsupported(UnsupportedElf {
            class: if class == 1 { 32 } else { 64 },
            big_endian,
            machine,
            reason: format!("{what} objects are listed but not inspected or rewritten"),
        }));
    }
    if data.len() < 64 {
        return Err(ElfError::Truncated(
            "shorter than a 64-bit ELF header".into(),
        ));
    }
    if machine.is_device() {
        device_tables_in_file(data)?;
        let flags = u32::from_le_bytes([data[48], data[49], data[50], data[51]]);
        return Ok(Inspected::Device { machine, flags });
    }
    // goblin is a third-party parser of hostile input: a panic inside it must become an error.
    let parsed = std::panic::catch_unwind(|| parse_host(data, machine));
    match parsed {
        Ok(r) => r.map(|info| Inspected::Host(Box::new(info))),
        Err(_) => Err(ElfError::Malformed(
            "the ELF parser failed on this file (internal parser panic)".into(),
        )),
    }
}

/// A GPU code object is described from its header only (it is kept or dropped whole, never
/// rewritten), but its header tables must at least lie in the file: a cut-off cubin is
/// damaged, not a cubin.
fn device_tables_in_file(data: &[u8]) -> Result<(), ElfError> {
    let le16 = |o: usize| u64::from(u16::from_le_bytes([data[o], data[o + 1]]));
    let le64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let len = data.len() as u64;
    for (what, off, size, count) in [
        ("program headers", le64(0x20), le16(0x36), le16(0x38)),
        ("section headers", le64(0x28), le16(0x3A), le16(0x3C)),
    ] {
        if count > 0 && off.checked_add(size * count).is_none_or(|end| end > len) {
            return Err(ElfError::Truncated(format!(
                "{what} at {off:#x} end past the file's {len:#x} bytes"
            )));
        }
    }
    Ok(())
}

fn check_bounds(data: &[u8], elf: &Elf) -> Result<(), ElfError> {
    let shnum = elf.section_headers.len();
    let shstrndx = match elf.header.e_shstrndx {
        0xFFFF => elf
            .section_headers
            .first()
            .map_or(0, |s| s.sh_link as usize),
        i => usize::from(i),
    };
    if shnum > 0 && shstrndx >= shnum {
        return Err(ElfError::Malformed(format!(
            "e_shstrndx {shstrndx} names no section (there are {shnum}): no section has a name"
        )));
    }
    let len = data.len() as u64;
    let shoff = elf.header.e_shoff;
    let shsize = u64::from(elf.header.e_shnum) * u64::from(elf.header.e_shentsize);
    if elf.header.e_shnum > 0 && shoff.checked_add(shsize).is_none_or(|e| e > len) {
        return Err(ElfError::Truncated(format!(
            "section headers at {shoff:#x} end past the file's {len:#x} bytes"
        )));
    }
    for p in elf.program_headers.iter() {
        if p.p_filesz > 0 && p.p_offset.checked_add(p.p_filesz).is_none_or(|e| e > len) {
            return Err(ElfError::Truncated(format!(
                "a {} segment at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                segment_kind(p.p_type),
                p.p_offset,
                p.p_filesz
            )));
        }
    }
    for s in &elf.section_headers {
        if s.sh_type != sh::SHT_NOBITS
            && s.sh_size > 0
            && s.sh_offset.checked_add(s.sh_size).is_none_or(|e| e > len)
        {
            let name = elf.shdr_strtab.get_at(s.sh_name).unwrap_or("?");
            return Err(ElfError::Truncated(format!(
                "section `{name}` at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                s.sh_offset, s.sh_size
            )));
        }
    }
    Ok(())
}

/// An ET_DYN object that is a position-independent executable rather than a library: the
/// linker marked it `DF_1_PIE`, or (linkers before that flag) it asks for a program
/// interpreter and has no soname. A library that can also be run (glibc's `libc.so.6` has
/// PT_INTERP) keeps its soname and stays a shared object.
fn is_pie(elf: &Elf) -> bool {
    let flagged = elf
        .dynamic
        .as_ref()
        .is_some_and(|d| d.info.flags_1 & dynamic::DF_1_PIE != 0);
    let interp = elf
        .program_headers
        .iter()
        .any(|p| p.p_type == ph::PT_INTERP);
    flagged || (interp && elf.soname.is_none())
}

/// Every DT_NEEDED entry must name a string of `.dynstr`. The ELF reader quietly skips one whose
/// offset lies outside, which would let audit and verify pass a library the loader cannot load
/// (and that split refuses): refuse it here too, so every command gives the same verdict.
fn check_needed_names(elf: &Elf) -> Result<(), ElfError> {
    let Some(d) = elf.dynamic.as_ref() else {
        return Ok(());
    };
    for e in d.dyns.iter().filter(|e| e.d_tag == dynamic::DT_NEEDED) {
        if usize::try_from(e.d_val)
            .ok()
            .and_then(|at| elf.dynstrtab.get_at(at))
            .is_none()
        {
            return Err(ElfError::Malformed(format!(
                "a DT_NEEDED entry's string offset {:#x} lies outside .dynstr ({:#x} bytes)",
                e.d_val,
                elf.dynstrtab.len()
            )));
        }
    }
    Ok(())
}

fn parse_host(data: &[u8], machine: Machine) -> Result<ElfInfo, ElfError> {
    let elf = Elf::parse(data).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("too small") || msg.contains("offset") || msg.contains("bad offset") {
            ElfError::Truncated(msg)
        } else {
            ElfError::Malformed(msg)
        }
    })?;
    check_bounds(data, &elf)?;
    check_needed_names(&elf)?;
    let kind = match elf.header.e_type {
        goblin::elf::header::ET_DYN if is_pie(&elf) => "executable",
        goblin::elf::header::ET_DYN => "shared-object",
        goblin::elf::header::ET_EXEC => "executable",
        goblin::elf::header::ET_REL => "relocatable",
        goblin::elf::header::ET_CORE => "core",
        _ => "other",
    };
    let mut version_needs = Vec::new();
    if let Some(vn) = &elf.verneed {
        for need in vn.iter() {
            let file = elf
                .dynstrtab
                .get_at(need.vn_file)
                .unwrap_or("?")
                .to_string();
            let versions = need
                .iter()
                .filter_map(|aux| elf.dynstrtab.get_at(aux.vna_name))
                .map(str::to_string)
                .collect();
            version_needs.push(VersionNeed { file, versions });
        }
    }
    let sections: Vec<SectionInfo> = elf
        .section_headers
        .iter()
        .skip(1)
        .map(|s| SectionInfo {
            name: elf.shdr_strtab.get_at(s.sh_name).unwrap_or("").to_string(),
            kind: section_kind(s.sh_type),
            offset: s.sh_offset,
            size: s.sh_size,
            addr: s.sh_addr,
            flags: s.sh_flags,
            in_file: s.sh_type != sh::SHT_NOBITS,
        })
        .collect();
    let segments: Vec<SegmentInfo> = elf
        .program_headers
        .iter()
        .map(|p| SegmentInfo {
            kind: segment_kind(p.p_type),
            offset: p.p_offset,
            vaddr: p.p_vaddr,
            filesz: p.p_filesz,
            memsz: p.p_memsz,
            align: p.p_align,
            flags: format!(
                "{}{}{}",
                if p.p_flags & ph::PF_R != 0 { "R" } else { "" },
                if p.p_flags & ph::PF_W != 0 { "W" } else { "" },
                if p.p_flags & ph::PF_X != 0 { "X" } else { "" }
            ),
        })
        .collect();
    let load_align = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == ph::PT_LOAD)
        .map(|p| p.p_align)
        .max()
        .unwrap_or(0);
    let has_dynamic_tag = |tag| {
        elf.dynamic
            .as_ref()
            .is_some_and(|d| d.dyns.iter().any(|d| d.d_tag == tag))
    };
    let _ = has_dynamic_tag(dynamic::DT_NULL);
    Ok(ElfInfo {
        machine,
        kind,
        soname: elf.soname.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split_paths(&elf.rpaths),
        runpath: split_paths(&elf.runpaths),
        interpreter: elf.interpreter.map(str::to_string),
        glibc: highest(&version_needs, "GLIBC_"),
        glibcxx: highest(&version_needs, "GLIBCXX_"),
        cxxabi: highest(&version_needs, "CXXABI_"),
        version_needs,
        has_symtab: sections.iter().any(|s| s.kind == "SYMTAB"),
        has_debug_info: sections.iter().any(|s| s.name.starts_with(".debug_info")),
        sections,
        segments,
        load_align,
    })
}
