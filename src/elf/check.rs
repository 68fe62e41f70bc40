//! Layout invariants of a loadable ELF object (shared library or executable), checked on every
//! output of [`super::patch`] and usable on inputs.
//!
//! What is checked:
//! - every segment and section lies inside the file;
//! - PT_LOADs are sorted by `p_vaddr`, do not overlap, have `p_filesz <= p_memsz`, a power-of-two
//!   `p_align`, and `p_offset ≡ p_vaddr (mod p_align)`;
//! - every SHF_ALLOC section lies in a PT_LOAD whose offset↔address mapping agrees with it;
//! - PT_PHDR (if any) describes the program header table and a PT_LOAD maps it; PT_DYNAMIC,
//!   PT_INTERP, PT_NOTE, PT_GNU_EH_FRAME, PT_GNU_PROPERTY and PT_TLS are mapped the same way;
//! - PT_DYNAMIC matches the `.dynamic` section header;
//! - the address-valued DT_* tags point inside a PT_LOAD, and the sized tables (DT_STRTAB +
//!   DT_STRSZ, DT_RELA + DT_RELASZ, ...) are file-backed inside one;
//! - DT_NEEDED/SONAME/RPATH/RUNPATH (and the other string tags), `vn_file`, `vna_name` and
//!   `vda_name` are NUL-terminated strings inside DT_STRSZ;
//! - every `.gnu.version_r` file name is one of the DT_NEEDED names (otherwise glibc's `ld.so`
//!   aborts with `_dl_check_map_versions: Assertion 'needed != NULL'`).

use super::ElfError;
use super::dynview::DynView;
use super::raw::{
    self, ADDRESS_TAGS, ET_DYN, ET_EXEC, Elf64, PHDR_SIZE, PT_DYNAMIC, PT_GNU_EH_FRAME,
    PT_GNU_PROPERTY, PT_INTERP, PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, SHF_TLS, SHT_DYNAMIC,
    SHT_NOBITS, SIZED_TABLES, STRING_TAGS, segment_name,
};

/// How many problems a failed check lists before "and N more".
const MAX_LISTED: usize = 8;

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, msg: String) {
        self.0.push(msg);
    }

    fn finish(self) -> Result<(), ElfError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let mut listed: Vec<String> = self.0.into_iter().take(MAX_LISTED).collect();
        if n > MAX_LISTED {
            listed.push(format!("and {} more", n - MAX_LISTED));
        }
        Err(ElfError::Layout(listed.join("; ")))
    }
}

/// Checks the layout invariants listed in the module documentation. Returns
/// `ElfError::Layout` listing the violations, or the parse error when the file cannot even be
/// read; 32-bit, big-endian and non-loadable (relocatable, core) objects are `Unsupported`.
pub fn check(data: &[u8]) -> Result<(), ElfError> {
    let elf = Elf64::parse(data)?;
    if !matches!(elf.header.e_type, ET_DYN | ET_EXEC) {
        return Err(ElfError::Unsupported(format!(
            "e_type {} is not a shared object or executable: there is no load layout to check",
            elf.header.e_type
        )));
    }
    let mut problems = Problems::default();
    check_segments(&elf, &mut problems);
    check_sections(&elf, &mut problems);
    match DynView::parse(&elf) {
        Ok(Some(view)) => check_dynamic(&elf, &view, &mut problems),
        Ok(None) => {}
        Err(e) => problems.push(format!("dynamic section: {e}")),
    }
    problems.finish()
}

fn is_pow2_or_zero(v: u64) -> bool {
    v == 0 || v.is_power_of_two()
}

/// True when a PT_LOAD maps `len` file bytes at `offset` to `vaddr`.
fn mapped_at(elf: &Elf64, offset: u64, vaddr: u64, len: u64) -> bool {
    elf.loads()
        .any(|p| p.file_offset_of(vaddr, len) == Some(offset))
}

fn check_segments(elf: &Elf64, problems: &mut Problems) {
    let len = elf.data.len() as u64;
    let mut prev_load: Option<(usize, u64, u64)> = None;
    let mut phdr_count = 0;
    for (i, p) in elf.phdrs.iter().enumerate() {
        let kind = segment_name(p.p_type);
        if p.p_filesz > 0 && p.file_end().is_none_or(|e| e > len) {
            problems.push(format!(
                "segment [{i}] {kind} at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                p.p_offset, p.p_filesz
            ));
        }
        if p.p_type == PT_LOAD {
            if p.p_filesz > p.p_memsz {
                problems.push(format!(
                    "segment [{i}] LOAD has p_filesz {:#x} > p_memsz {:#x}",
                    p.p_filesz, p.p_memsz
                ));
            }
            if !is_pow2_or_zero(p.p_align) {
                problems.push(format!(
                    "segment [{i}] LOAD has p_align {:#x}, not a power of two",
                    p.p_align
                ));
            } else if p.p_align > 1 && p.p_offset % p.p_align != p.p_vaddr % p.p_align {
                problems.push(format!(
                    "segment [{i}] LOAD: p_offset {:#x} and p_vaddr {:#x} differ modulo p_align {:#x}",
                    p.p_offset, p.p_vaddr, p.p_align
                ));
            }
            let Some(end) = p.mem_end() else {
                problems.push(format!("segment [{i}] LOAD: p_vaddr + p_memsz overflows"));
                continue;
            };
            if let Some((j, pstart, pend)) = prev_load {
                if p.p_vaddr < pstart {
                    problems.push(format!(
                        "PT_LOADs are not sorted by address: [{i}] at {:#x} follows [{j}] at {pstart:#x}",
                        p.p_vaddr
                    ));
                } else if p.p_vaddr < pend {
                    problems.push(format!(
                        "PT_LOADs [{j}] (ends {pend:#x}) and [{i}] (starts {:#x}) overlap",
                        p.p_vaddr
                    ));
                }
            }
            prev_load = Some((i, p.p_vaddr, end));
        }
    }
    for (i, p) in elf.phdrs.iter().enumerate() {
        let kind = segment_name(p.p_type);
        match p.p_type {
            PT_PHDR => {
                phdr_count += 1;
                let table = u64::from(elf.header.e_phnum) * PHDR_SIZE;
                if p.p_offset != elf.header.e_phoff || p.p_filesz != table {
                    problems.push(format!(
                        "PT_PHDR ({:#x}+{:#x}) does not describe the program header table \
                         ({:#x}+{table:#x})",
                        p.p_offset, p.p_filesz, elf.header.e_phoff
                    ));
                }
                if !mapped_at(elf, p.p_offset, p.p_vaddr, p.p_filesz) {
                    problems.push(format!(
                        "PT_PHDR at {:#x} (offset {:#x}) is not mapped by a PT_LOAD",
                        p.p_vaddr, p.p_offset
                    ));
                }
            }
            PT_DYNAMIC | PT_INTERP | PT_NOTE | PT_GNU_EH_FRAME | PT_GNU_PROPERTY | PT_TLS
                if p.p_filesz > 0 && !mapped_at(elf, p.p_offset, p.p_vaddr, p.p_filesz) =>
            {
                problems.push(format!(
                    "segment [{i}] {kind} at {:#x} (offset {:#x}, {:#x} bytes) is not mapped \
                     by a PT_LOAD at the same offset",
                    p.p_vaddr, p.p_offset, p.p_filesz
                ));
            }
            _ => {}
        }
    }
    if phdr_count > 1 {
        problems.push(format!("{phdr_count} PT_PHDR segments"));
    }
}

fn check_sections(elf: &Elf64, problems: &mut Problems) {
    let len = elf.data.len() as u64;
    let dynamic = elf.dynamic_segment().ok().flatten().map(|(_, p)| p);
    for (i, s) in elf.shdrs.iter().enumerate().skip(1) {
        if s.sh_size == 0 {
            continue;
        }
        let name = || elf.section_name(s);
        if s.in_file() && s.sh_offset.checked_add(s.sh_size).is_none_or(|e| e > len) {
            problems.push(format!(
                "section [{i}] `{}` at {:#x}+{:#x} ends past the file's {len:#x} bytes",
                name(),
                s.sh_offset,
                s.sh_size
            ));
            continue;
        }
        if s.is_alloc() && !(s.sh_type == SHT_NOBITS && s.sh_flags & SHF_TLS != 0) {
            let ok = if s.in_file() {
                mapped_at(elf, s.sh_offset, s.sh_addr, s.sh_size)
            } else {
                elf.loads().any(|p| p.contains_vaddr(s.sh_addr, s.sh_size))
            };
            if !ok {
                problems.push(format!(
                    "section [{i}] `{}` (address {:#x}, offset {:#x}, {:#x} bytes) is not mapped \
                     by a PT_LOAD at the same offset",
                    name(),
                    s.sh_addr,
                    s.sh_offset,
                    s.sh_size
                ));
            }
        }
        if s.sh_type == SHT_DYNAMIC {
            match dynamic {
                Some(d)
                    if d.p_offset == s.sh_offset
                        && d.p_vaddr == s.sh_addr
                        && d.p_filesz == s.sh_size => {}
                Some(d) => problems.push(format!(
                    "PT_DYNAMIC ({:#x}, offset {:#x}, {:#x} bytes) does not match section `{}` \
                     ({:#x}, offset {:#x}, {:#x} bytes)",
                    d.p_vaddr,
                    d.p_offset,
                    d.p_filesz,
                    name(),
                    s.sh_addr,
                    s.sh_offset,
                    s.sh_size
                )),
                None => problems.push(format!(
                    "section `{}` has type SHT_DYNAMIC but there is no PT_DYNAMIC",
                    name()
                )),
            }
        }
    }
}

fn tag_name(tag: u64) -> String {
    match tag {
        raw::DT_NEEDED => "DT_NEEDED".into(),
        raw::DT_SONAME => "DT_SONAME".into(),
        raw::DT_RPATH => "DT_RPATH".into(),
        raw::DT_RUNPATH => "DT_RUNPATH".into(),
        t => ADDRESS_TAGS
            .iter()
            .find(|(x, _)| *x == t)
            .map_or_else(|| format!("tag {t:#x}"), |(_, n)| (*n).to_string()),
    }
}

fn check_dynamic(elf: &Elf64, view: &DynView, problems: &mut Problems) {
    let entries = &view.dynamic.entries;
    for e in entries {
        if e.val != 0
            && ADDRESS_TAGS.iter().any(|(t, _)| *t == e.tag)
            && !elf.loads().any(|p| p.contains_vaddr(e.val, 0))
        {
            problems.push(format!(
                "{} {:#x} points outside every PT_LOAD",
                tag_name(e.tag),
                e.val
            ));
        }
        if STRING_TAGS.contains(&e.tag)
            && let Err(err) = view.string(e.val)
        {
            problems.push(format!("{}: {err}", tag_name(e.tag)));
        }
    }
    for (addr_tag, size_tag, what) in SIZED_TABLES {
        if let (Some(addr), Some(size)) = (view.dynamic.get(addr_tag), view.dynamic.get(size_tag))
            && size > 0
            && elf.vaddr_to_offset(addr, size).is_none()
        {
            problems.push(format!(
                "{what} ({addr:#x}+{size:#x}) is not file-backed inside one PT_LOAD"
            ));
        }
    }
    let needed = view.needed().unwrap_or_default();
    for vn in &view.verneed {
        match view.string(u64::from(vn.file)) {
            Ok(file) if needed.contains(&file) => {}
            Ok(file) => problems.push(format!(
                "`.gnu.version_r` names file `{}`, which is not a DT_NEEDED entry \
                 (ld.so would abort: needed != NULL)",
                String::from_utf8_lossy(file)
            )),
            Err(err) => problems.push(format!("`.gnu.version_r` file name: {err}")),
        }
        for &name in &vn.names {
            if let Err(err) = view.string(u64::from(name)) {
                problems.push(format!("`.gnu.version_r` version name: {err}"));
            }
        }
    }
    for &name in &view.verdef_names {
        if let Err(err) = view.string(u64::from(name)) {
            problems.push(format!("`.gnu.version_d` version name: {err}"));
        }
    }
}
